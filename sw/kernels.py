"""Fast, exact integer kernels of the arithmetic contract (docs/arithmetic.md) on (C, H, W) arrays.

The emulator backend and the CPU steps of a plan both compute with these. They are vectorized
and use float64 where BLAS makes it fast; that is exact, not approximate, for these reasons:

* Section 4.3 bounds every partial sum of an accumulator, in any order of summation, by
  ``2^31 - 1`` (the artifact loader rejects layers that could exceed it). Every such integer and
  every product ``v * (q - z)`` is far below ``2^53``, so float64 represents all of them exactly
  and a float64 BLAS matmul, whatever order it sums in, returns the exact integer accumulator.
* Requantization ``P = acc * M`` is below ``2^31 * 2^16 = 2^47``; ``P * 2^-S + 1/2`` needs at
  most 48 significant bits, so it is exact in float64 and its ``floor`` is round half up, bit
  for bit. The zero point is added after the floor (see :func:`requantize` for why).
* float32 (24-bit mantissa) is used for an accumulator only when the layer's own section 4.3
  bound, evaluated for 8-bit codes, is below ``2^24`` (:func:`acc_dtype`): then it is exact
  too, and twice as fast. Layers with larger bounds (big biases) stay in float64.

* :func:`requantize_rows` (the emulator's fast requantizer) computes the same section 5 with
  OpenCV's saturating float64 -> uint8 conversion, which rounds to nearest with ties to even.
  It adds ``2^-(S_max + 2)`` to every value, which makes a tie impossible and moves no value to
  another integer (the argument is in its docstring); where that argument does not hold for a
  layer, :func:`row_requant` says so and the emulator takes :func:`requantize_bc`.

``tests/test_sw_compiler_emu.py`` checks equality with ``sim.reference`` on random networks;
``tests/test_rounding_ties.py`` feeds both requantizers the directed ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

try:  # the fast requantizer's conversion; without OpenCV every layer takes the NumPy path
    import cv2
except ImportError:  # pragma: no cover - OpenCV ships with PYNQ images and the dev venv
    cv2 = None

EXACT_F32 = 2**24  # float32 holds every integer of magnitude up to 2^24 exactly


def acc_bounds(bias: np.ndarray, v: np.ndarray, a_in: int) -> np.ndarray:
    """Section 4.3 bound of each output channel, float64 (C_out,): no partial sum of its
    accumulator exceeds it in magnitude when every ``|q - z_in| <= a_in``."""
    taps = np.abs(v).reshape(v.shape[0], -1).sum(axis=1)
    return np.abs(bias.astype(np.float64)) + float(a_in) * taps


def dtype_for_bounds(bounds: np.ndarray) -> type[np.floating]:
    """float32 when every channel's section 4.3 bound is below 2^24 (then every partial sum is
    an exact float32 integer, and BLAS runs twice as fast), else float64."""
    return np.float32 if bounds.max(initial=0) < EXACT_F32 else np.float64


def acc_dtype(bias: np.ndarray, v: np.ndarray, a_in: int) -> type[np.floating]:
    """:func:`dtype_for_bounds` of the layer's :func:`acc_bounds`."""
    return dtype_for_bounds(acc_bounds(bias, v, a_in))


def _padded_diff(q: np.ndarray, z_in: int, pad: int, dtype: type[np.floating]) -> np.ndarray:
    """``q - z_in`` in ``dtype``, with ``pad`` rows and columns of real zero around it."""
    c, h, w = q.shape
    if pad == 0:
        d = q.astype(dtype)
        d -= z_in
        return d
    d = np.zeros((c, h + 2 * pad, w + 2 * pad), dtype=dtype)
    inner = d[:, pad : pad + h, pad : pad + w]
    inner[...] = q
    inner -= z_in
    return d


def _tap(d: np.ndarray, u: int, t: int, stride: int, ho: int, wo: int) -> np.ndarray:
    return d[:, u : u + stride * (ho - 1) + 1 : stride, t : t + stride * (wo - 1) + 1 : stride]


def conv_out_size(h: int, w: int, k: int, stride: int, pad: int) -> tuple[int, int]:
    return (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1


def _a_in(z_in: int) -> int:
    return max(z_in, 255 - z_in)  # codes are bytes: the largest |q - z_in| of any build


def conv_dense(
    q: np.ndarray, z_in: int, v: np.ndarray, bias: np.ndarray, stride: int, pad: int
) -> np.ndarray:
    """Section 4.2 accumulator of a dense conv, exact integers in float32/64, (Cout, Ho, Wo).

    ``q`` (Cin, H, W) codes, ``v`` (Cout, Cin, k, k) integer weights. One BLAS matmul per kernel
    tap instead of an im2col matrix: the same flops without a k*k-times larger copy of the map.
    """
    cin, h, w = q.shape
    cout, cin_w, k, _ = v.shape
    assert cin_w == cin, "weights do not match the input channels"
    ho, wo = conv_out_size(h, w, k, stride, pad)
    dt = acc_dtype(bias, v, _a_in(z_in))
    d = _padded_diff(q, z_in, pad, dt)
    vf = v.astype(dt)
    acc = np.empty((cout, ho * wo), dtype=dt)
    acc[:] = bias.astype(dt)[:, None]
    for u in range(k):
        for t in range(k):
            tap = _tap(d, u, t, stride, ho, wo)
            if not tap.flags.c_contiguous:
                tap = np.ascontiguousarray(tap)
            acc += vf[:, :, u, t] @ tap.reshape(cin, ho * wo)
    return acc.reshape(cout, ho, wo)


def conv_depthwise(
    q: np.ndarray, z_in: int, v: np.ndarray, bias: np.ndarray, stride: int, pad: int
) -> np.ndarray:
    """Depthwise accumulator (channel o reads channel o alone), exact, (C, Ho, Wo)."""
    c, h, w = q.shape
    assert v.shape[0] == c and v.shape[1] == 1, "depthwise weights must be (C, 1, k, k)"
    k = v.shape[2]
    ho, wo = conv_out_size(h, w, k, stride, pad)
    dt = acc_dtype(bias, v, _a_in(z_in))
    d = _padded_diff(q, z_in, pad, dt)
    vf = v.astype(dt)[:, 0]
    acc = np.empty((c, ho, wo), dtype=dt)
    acc[:] = bias.astype(dt)[:, None, None]
    tmp = np.empty_like(acc)
    for u in range(k):
        for t in range(k):
            np.multiply(_tap(d, u, t, stride, ho, wo), vf[:, u, t, None, None], out=tmp)
            acc += tmp
    return acc


def conv_dense_hwc(
    x: np.ndarray,
    z_in: int,
    taps: np.ndarray,
    bias: np.ndarray,
    stride: int,
    pad: int,
    out_groups: int = 1,
) -> np.ndarray:
    """A dense conv's accumulator on channels-last codes: ``x`` (H, W, Cin) or the blocked
    words themselves (Gi, H, W, L), ``taps`` (k*k, Cin, Cout) integer weights in the
    accumulator's dtype (``acc_dtype``), ``bias`` (Cout,); returns (out_groups, Ho*Wo,
    Cout / out_groups): output channel group ``g`` is ``[g*n, (g+1)*n)``, so that each group
    is a contiguous block, as the DDR words of a blocked output are. The same sums as
    :func:`conv_dense` (exact for the same reason, in any order); channels last, because the
    accelerator's DDR words are channels last. Blocked input is gathered into channels last
    while it is converted (one pass)."""
    if x.ndim == 4:
        gi, h, w, lanes = x.shape
        cin = gi * lanes
        src = x.transpose(1, 2, 0, 3)  # (H, W, Gi, L): pixel-major, channel gi*L + l
    else:
        h, w, cin = x.shape
        src = x
    k = int(round(np.sqrt(taps.shape[0])))
    dt = taps.dtype
    ho, wo = conv_out_size(h, w, k, stride, pad)
    if pad == 0:
        d = np.empty((h, w, cin), dtype=dt)
    else:
        d = np.zeros((h + 2 * pad, w + 2 * pad, cin), dtype=dt)
    # split the channels as src has them on the contiguous array (always a view), then slice
    inner = d.reshape(*d.shape[:2], *src.shape[2:])[pad : pad + h, pad : pad + w]
    inner[...] = src
    inner -= z_in
    cout = taps.shape[2]
    n = cout // out_groups
    acc = np.empty((out_groups, ho * wo, n), dtype=dt)
    if k == 1 and stride == 1:
        flat = d.reshape(h * w, cin)
        for g in range(out_groups):
            np.matmul(flat, taps[0, :, g * n : (g + 1) * n], out=acc[g])
            acc[g] += bias[g * n : (g + 1) * n]
        return acc
    acc[:] = bias.reshape(out_groups, 1, n)
    part = np.empty((ho * wo, n), dtype=dt)
    for u in range(k):
        for t in range(k):
            tap = d[u : u + stride * (ho - 1) + 1 : stride, t : t + stride * (wo - 1) + 1 : stride]
            tap = np.ascontiguousarray(tap).reshape(ho * wo, cin)
            for g in range(out_groups):
                np.matmul(tap, taps[u * k + t, :, g * n : (g + 1) * n], out=part)
                acc[g] += part
    return acc


def conv_depthwise_blocked(
    x: np.ndarray, z_in: int, taps: np.ndarray, bias: np.ndarray, stride: int, pad: int
) -> np.ndarray:
    """A depthwise conv's accumulator on the DDR layout itself: ``x`` (G, H, W, L) codes,
    ``taps`` (k*k, G, 1, Wo*L) weights in the accumulator's dtype and ``bias`` (G, 1, Wo*L),
    both tiled along an output row; returns (G, Ho, Wo*L).

    Channel ``g*L + l`` reads lane ``l`` of group ``g`` alone, so the blocked words need no
    reordering; with the weights tiled along the row, every multiply-add runs over whole
    output rows (Wo*L contiguous values) instead of L-lane pieces."""
    g, h, w, lanes = x.shape
    k = int(round(np.sqrt(taps.shape[0])))
    dt = taps.dtype
    ho, wo = conv_out_size(h, w, k, stride, pad)
    assert taps.shape[-1] == wo * lanes, "taps not tiled for this output width"
    acc = np.empty((g, ho, wo * lanes), dtype=dt)
    acc[:] = bias
    if cv2 is not None and ho * wo * lanes >= DEPTHWISE_CV_MIN:
        _depthwise_taps_cv(_phases(x, z_in, pad, stride, k, dt), taps, stride, lanes, acc)
        return acc
    d = np.zeros((g, h + 2 * pad, w + 2 * pad, lanes), dtype=dt)
    inner = d[:, pad : pad + h, pad : pad + w]
    inner[...] = x
    inner -= z_in
    tmp = np.empty_like(acc)
    rows, cols = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    for u in range(k):
        for t in range(k):
            tap = d[:, u : u + rows : stride, t : t + cols : stride]
            # a view for stride 1 (a row's Wo*L values are contiguous), a copy for stride 2
            np.multiply(tap.reshape(g, ho, wo * lanes), taps[u * k + t], out=tmp)
            acc += tmp
    return acc


def _phases(
    x: np.ndarray, z_in: int, pad: int, stride: int, k: int, dt: type[np.floating]
) -> dict[tuple[int, int], np.ndarray]:
    """The zero-padded ``x - z_in`` (G, H + 2 pad, W + 2 pad, L) split into its stride x stride
    phase images, rows and columns ``= a, b (mod stride)`` of the padded map, each
    (G, rows, columns * L): every value of ``x`` is written once, into the one phase it
    belongs to, and every tap of a strided conv is then a 2-D view with contiguous rows."""
    g, h, w, lanes = x.shape
    hp, wp = h + 2 * pad, w + 2 * pad
    out = {}
    for a in range(min(stride, k)):
        for b in range(min(stride, k)):
            rows, cols = -(-(hp - a) // stride), -(-(wp - b) // stride)
            ph = np.zeros((g, rows, cols, lanes), dtype=dt)
            # padded row a + stride * i is x row a + stride * i - pad: the first i inside x
            i0, j0 = -(-max(0, pad - a) // stride), -(-max(0, pad - b) // stride)
            r0, c0 = a + stride * i0 - pad, b + stride * j0 - pad
            src = x[:, r0::stride, c0::stride]
            dst = ph[:, i0 : i0 + src.shape[1], j0 : j0 + src.shape[2]]
            dst[...] = src
            dst -= z_in
            out[a, b] = ph.reshape(g, rows, cols * lanes)
    return out


DEPTHWISE_CHUNK = 65536  # values of an accumulator chunk (and of a weight tile): 256 KB float32
DEPTHWISE_CV_MIN = 8192  # values per channel group below which NumPy's loop (fewer calls) wins


def _depthwise_taps_cv(
    phases: dict[tuple[int, int], np.ndarray],
    taps: np.ndarray,
    stride: int,
    lanes: int,
    acc: np.ndarray,
) -> None:
    """``acc += sum over taps of tap view * weights`` with OpenCV's fused multiply-accumulate,
    one pass a tap instead of NumPy's two, over the phase images of :func:`_phases`.

    Exact for the reason the NumPy loop is: the products and every partial sum are integers
    within the layer's section 4.3 bound, exact in the accumulator's dtype in any order. The
    weights of a tap are one output row long, so they are tiled over the rows of a chunk
    (OpenCV does not broadcast)."""
    g, ho, p = acc.shape
    k = int(round(np.sqrt(taps.shape[0])))
    step = max(1, min(ho, DEPTHWISE_CHUNK // p))
    tile = np.empty((step, p), dtype=acc.dtype)
    for gi in range(g):
        for u in range(k):
            for t in range(k):
                src = phases[u % stride, t % stride][gi]
                r, c = u // stride, (t // stride) * lanes
                tile[:] = taps[u * k + t, gi]
                for r0 in range(0, ho, step):
                    n = min(step, ho - r0)
                    cv2.accumulateProduct(src[r + r0 : r + r0 + n, c : c + p], tile[:n],
                                          acc[gi, r0 : r0 + n])  # fmt: skip


def requantize(
    acc: np.ndarray,
    m_pos: np.ndarray,
    m_neg: np.ndarray,
    shift: np.ndarray,
    z_out: int,
    bits_out: int,
) -> np.ndarray:
    """Section 5 on a (C, ...) accumulator of exact integers, per-channel constants (C,)."""
    bc = (slice(None),) + (None,) * (acc.ndim - 1)
    return requantize_bc(acc, m_pos[bc], m_neg[bc], shift[bc], z_out, bits_out)


# Largest shift for which z_out can be added before the floor: see requantize_bc.
FUSED_ZERO_POINT_MAX_SHIFT = 44


def requantize_bc(
    acc: np.ndarray,
    m_pos: np.ndarray,
    m_neg: np.ndarray,
    shift: np.ndarray,
    z_out: int,
    bits_out: int,
) -> np.ndarray:
    """Section 5 in float64, exactly, with constants already shaped to broadcast against
    ``acc`` (channels first, last, or blocked (G, 1, 1, L) as the emulator keeps them).

    ``acc * (M * 2^-S)`` is exact: ``M * 2^-S`` is representable, and the true product
    ``P * 2^-S`` (``P = acc * M``, ``|P| < 2^47``) has at most 47 significant bits. Adding the
    rounding half keeps it within 48 bits, so ``floor`` gives ``round_shift(P, S)`` exactly for
    every shift 0..47. When every shift is <= 44 the zero point goes in with the half: the sum
    ``(P + (2 z_out + 1) 2^(S-1)) / 2^S`` has a numerator below ``2^48`` and at most 44 fraction
    bits, so it is exact too (53 bits); clamping it to ``[0, qmax]`` and truncating (it is then
    >= 0) is the floor, clamped - one pass less. Larger shifts add the zero point after the
    floor, where it needs no fraction bits.
    """
    s = shift.astype(np.int64)
    mp = np.ldexp(m_pos.astype(np.float64), -s)
    half = np.where(s > 0, 0.5, 0.0)
    if np.array_equal(m_pos, m_neg):
        r = np.multiply(acc, mp, dtype=np.float64)
    else:
        r = np.where(acc >= 0, mp, np.ldexp(m_neg.astype(np.float64), -s))
        r *= acc
    qmax = (1 << bits_out) - 1
    if s.max(initial=0) <= FUSED_ZERO_POINT_MAX_SHIFT:
        r += z_out + half
        np.clip(r, 0, qmax, out=r)
        return r.astype(np.uint8)
    r += half
    np.floor(r, out=r)
    # Clamp round_shift(P, S) to [-z_out, qmax - z_out], then add z_out while casting: one pass
    # less over the float64 array, and the sum is an exact small integer either way.
    np.clip(r, -z_out, qmax - z_out, out=r)
    out = np.empty(r.shape, dtype=np.uint8)
    np.add(r, z_out, out=out, casting="unsafe")
    return out


# requantize_rows: the largest shift its exactness argument covers, the largest value OpenCV's
# rounding conversion takes (cvRound returns an int: beyond 2^31 it wraps, so a layer that
# could get there takes requantize_bc), and the rows of a chunk (~32K values: cache-resident).
ROWS_MAX_SHIFT = 42
ROWS_MAX_VALUE = 2.0**30
ROWS_CHUNK = 32768


@dataclass(frozen=True)
class RowRequant:
    """Section 5 constants of a layer for :func:`requantize_rows`: ``M * 2^-S`` per value of an
    accumulator row (a row's channels, or a row of pixels x channels), float32 (exact: M has 16
    bits); ``mn`` for the negative side where it differs (leaky layers), combined with ``max``
    when ``m_neg <= m_pos`` in every channel, else ``min``. One row only: a chunk's tile is made
    when it is used, so that a network's worth of layers holds no tiles."""

    mp: np.ndarray  # (P,) float32
    mn: np.ndarray | None
    neg_max: bool
    offset: float  # z_out + 2^-(S_max + 2)
    qmax: int


def row_requant(
    m_pos: np.ndarray,
    m_neg: np.ndarray,
    shift: np.ndarray,
    z_out: int,
    bits_out: int,
    bound: np.ndarray | float,
) -> RowRequant | None:
    """:class:`RowRequant` for per-value constants along a row (``m_pos``, ``m_neg``, ``shift``
    of shape (P,)) and accumulators of magnitude <= ``bound`` (per value, or one for all);
    None where :func:`requantize_rows` would not be exact or cannot run (then use
    :func:`requantize_bc`): no OpenCV, a shift above ``ROWS_MAX_SHIFT``, a value that could
    pass ``ROWS_MAX_VALUE``, or a leaky layer whose negative multiplier is the larger one in
    some channels and the smaller in others."""
    s = shift.astype(np.int64)
    if cv2 is None or s.max(initial=0) > ROWS_MAX_SHIFT:
        return None
    mp = np.ldexp(m_pos.astype(np.float64), -s)
    mn = np.ldexp(m_neg.astype(np.float64), -s)
    if (np.asarray(bound) * np.maximum(mp, mn)).max(initial=0) + 512 > ROWS_MAX_VALUE:
        return None
    leaky = not np.array_equal(m_pos, m_neg)
    neg_max = bool((m_neg <= m_pos).all())
    if leaky and not neg_max and not (m_neg >= m_pos).all():
        return None
    offset = z_out + 2.0 ** -(int(s.max(initial=0)) + 2)
    mp32, mn32 = mp.astype(np.float32), mn.astype(np.float32)
    assert (mp32 == mp).all() and (mn32 == mn).all(), "a 16-bit multiplier is a float32"
    return RowRequant(mp32, mn32 if leaky else None, neg_max, offset, (1 << bits_out) - 1)


def requantize_rows(acc: np.ndarray, rq: RowRequant, out: np.ndarray) -> np.ndarray:
    """Section 5 of a (N, P) accumulator of exact integers into the (N, P) uint8 ``out``, in
    chunks of rows that stay in cache, four OpenCV passes a chunk (six for a leaky layer).

    Exact: ``x = acc * M * 2^-S`` is exact in float64 (``|acc| < 2^31``, ``M < 2^16``; OpenCV
    converts both operands to float64 first), and
    ``y = x + z_out + e`` with ``e = 2^-(S_max + 2)`` is exact whenever the result is in the
    output range (9 integer and at most 44 fraction bits). x is a multiple of 2^-S. For S >= 1,
    if ``floor(x + 1/2) = n`` then ``n <= x + 1/2 <= n + 1 - 2^-S``, so with ``0 < e < 2^-S``,
    ``n - 1/2 < x + e < n + 1/2``: the nearest integer to ``y - z_out`` is n, never a tie, so
    OpenCV's round-to-nearest (ties to even) gives round half up. For S = 0, x is an integer and
    ``e <= 1/4`` rounds back to it. The conversion saturates to [0, 255] (the clamp; a 4-bit
    layer then takes a min), and ``|y| < 2^30`` keeps cvRound's int from wrapping
    (:func:`row_requant`). Leaky: the rounding and saturation are monotonic, so the larger (or
    smaller) of the two conversions is the conversion of ``acc * m_pos`` for acc >= 0 and of
    ``acc * m_neg`` for acc < 0."""
    n_rows, p = acc.shape
    step = max(1, min(n_rows, ROWS_CHUNK // max(1, p)))
    mp = np.broadcast_to(rq.mp, (step, p)).copy()  # OpenCV does not broadcast: one chunk's tile
    mn = np.broadcast_to(rq.mn, (step, p)).copy() if rq.mn is not None else None
    buf = np.empty((step, p), dtype=np.float64)
    tmp = np.empty((step, p), dtype=np.uint8) if mn is not None else None
    for i in range(0, n_rows, step):
        a, o = acc[i : i + step], out[i : i + step]
        n = a.shape[0]
        b = buf[:n]
        cv2.multiply(a, mp[:n], dst=b, dtype=cv2.CV_64F)
        cv2.add(b, rq.offset, dst=o, dtype=cv2.CV_8U)
        if mn is not None and tmp is not None:
            cv2.multiply(a, mn[:n], dst=b, dtype=cv2.CV_64F)
            cv2.add(b, rq.offset, dst=tmp[:n], dtype=cv2.CV_8U)
            (cv2.max if rq.neg_max else cv2.min)(o, tmp[:n], dst=o)
        if rq.qmax < 255:
            cv2.min(o, rq.qmax, dst=o)
    return out


def add(
    a: np.ndarray,
    z_a: int,
    c: np.ndarray,
    z_c: int,
    m_a: int,
    m_c: int,
    shift: int,
    z_out: int,
    bits_out: int,
    relu: bool = False,
) -> np.ndarray:
    """Section 6 residual add, in int64 (|T| < 2^25, but the rounding term 2^(S-1) may reach
    2^46 for a large shift)."""
    t = m_a * (a.astype(np.int64) - z_a) + m_c * (c.astype(np.int64) - z_c)
    if relu:
        np.maximum(t, 0, out=t)
    if shift > 0:
        t = (t + (1 << (shift - 1))) >> shift
    return np.clip(t + z_out, 0, (1 << bits_out) - 1).astype(np.uint8)


def add_rows(
    a: np.ndarray,
    z_a: int,
    c: np.ndarray,
    z_c: int,
    m_a: int,
    m_c: int,
    shift: int,
    z_out: int,
    bits_out: int,
    relu: bool,
    out: np.ndarray,
) -> np.ndarray | None:
    """Section 6 as :func:`add`, into ``out`` (uint8, C-contiguous, ``a``'s shape), with one
    OpenCV weighted sum in float64 rounded like :func:`requantize_rows`; None (nothing
    written) without OpenCV or for a shift above ``ROWS_MAX_SHIFT``: then use :func:`add`.

    Exact: ``y = m_a 2^-S a + m_c 2^-S c + (z_out + e - m_a 2^-S z_a - m_c 2^-S z_c)`` is
    ``T 2^-S + z_out + e`` with ``e = 2^-(S + 2)``; every partial sum is a multiple of
    ``2^-(S+2)`` below ``2^(25-S) + 2^10`` (``|T| < 2^25``), so at most 36 significant bits:
    exact in float64 in any order, and ``T 2^-S`` is a multiple of ``2^-S``, so the nearest
    integer to ``y`` is never a tie and is ``z_out + round_shift(T, S)`` (the argument of
    :func:`requantize_rows`). ReLU on T commutes with the monotonic rounding and clamp:
    ``max(q, z_out)``."""
    if cv2 is None or shift > ROWS_MAX_SHIFT:
        return None
    ka, kc = np.ldexp(float(m_a), -shift), np.ldexp(float(m_c), -shift)
    gamma = z_out + 2.0 ** -(shift + 2) - ka * z_a - kc * z_c
    two_d = (-1, a.shape[-1]) if a.ndim > 1 else (1, -1)
    a64 = a.reshape(two_d).astype(np.float64)  # OpenCV weighs uint8 in float32: not exact
    c64 = c.reshape(two_d).astype(np.float64)
    o = out.reshape(two_d)
    cv2.addWeighted(a64, ka, c64, kc, gamma, dst=o, dtype=cv2.CV_8U)
    if relu:
        cv2.max(o, z_out, dst=o)
    if bits_out < 8:
        cv2.min(o, (1 << bits_out) - 1, dst=o)
    return out


def upsample2x(q: np.ndarray) -> np.ndarray:
    """Section 7 nearest upsampling by 2 of a (C, H, W) map."""
    c, h, w = q.shape
    out = np.empty((c, h, 2, w, 2), dtype=q.dtype)
    out[...] = q[:, :, None, :, None]
    return out.reshape(c, 2 * h, 2 * w)


def maxpool(q: np.ndarray, kernel: int, stride: int, pad_before: int, pad_after: int) -> np.ndarray:
    """Section 7 maxpool; padded taps never win (they hold 0, and a window always has a real
    tap whose code is >= 0, so a 0 pad cannot exceed the true maximum)."""
    c, h, w = q.shape
    ho = (h + pad_before + pad_after - kernel) // stride + 1
    wo = (w + pad_before + pad_after - kernel) // stride + 1
    x = np.pad(q, ((0, 0), (pad_before, pad_after), (pad_before, pad_after)))
    # Separable: max over window columns, then over window rows (same result, k+k not k*k ops).
    cols = x[:, :, 0 : stride * (wo - 1) + 1 : stride].copy()
    for t in range(1, kernel):
        np.maximum(cols, x[:, :, t : t + stride * (wo - 1) + 1 : stride], out=cols)
    out = cols[:, 0 : stride * (ho - 1) + 1 : stride].copy()
    for u in range(1, kernel):
        np.maximum(out, cols[:, u : u + stride * (ho - 1) + 1 : stride], out=out)
    return out


def avgpool(
    q: np.ndarray, z_in: int, multiplier: int, shift: int, z_out: int, bits_out: int
) -> np.ndarray:
    """Section 7.1 global average pool of a (C, H, W) map -> (C, 1, 1), in int64: the sum of
    the codes minus ``H * W * z_in`` (the loader bounds it by 2^31 and its product with the
    multiplier by 2^47), round half up once, clamp."""
    c, h, w = q.shape
    t = q.reshape(c, h * w).sum(axis=1, dtype=np.int64) - h * w * int(z_in)
    p = t * int(multiplier)
    if shift > 0:
        p = (p + (1 << (shift - 1))) >> shift
    return np.clip(p + z_out, 0, (1 << bits_out) - 1).astype(np.uint8).reshape(c, 1, 1)
