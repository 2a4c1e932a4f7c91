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

``tests/test_sw_compiler_emu.py`` checks equality with ``sim.reference`` on random networks.
"""

from __future__ import annotations

import numpy as np

EXACT_F32 = 2**24  # float32 holds every integer of magnitude up to 2^24 exactly


def acc_dtype(bias: np.ndarray, v: np.ndarray, a_in: int) -> type[np.floating]:
    """float32 when the section 4.3 bound of every output channel is below 2^24 (then every
    partial sum is an exact float32 integer, and BLAS runs twice as fast), else float64."""
    taps = np.abs(v).reshape(v.shape[0], -1).sum(axis=1)
    bound = np.abs(bias.astype(np.float64)) + float(a_in) * taps
    return np.float32 if bound.max(initial=0) < EXACT_F32 else np.float64


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
    x: np.ndarray, z_in: int, taps: np.ndarray, bias: np.ndarray, stride: int, pad: int
) -> np.ndarray:
    """A dense conv's accumulator on channels-last codes: ``x`` (H, W, Cin), ``taps``
    (k*k, Cin, Cout) integer weights in the accumulator's dtype (``acc_dtype``), ``bias``
    (Cout,); returns (Ho*Wo, Cout). The same sums as :func:`conv_dense` (exact for the same
    reason, in any order); channels last, because the accelerator's DDR words are channels
    last and the emulator then needs no transposing copy when a layer has one channel group."""
    h, w, cin = x.shape
    k = int(round(np.sqrt(taps.shape[0])))
    dt = taps.dtype
    ho, wo = conv_out_size(h, w, k, stride, pad)
    if pad == 0:
        d = x.astype(dt)
        d -= z_in
    else:
        d = np.zeros((h + 2 * pad, w + 2 * pad, cin), dtype=dt)
        inner = d[pad : pad + h, pad : pad + w]
        inner[...] = x
        inner -= z_in
    if k == 1 and stride == 1:
        acc = d.reshape(h * w, cin) @ taps[0]
        acc += bias
        return acc
    acc = np.empty((ho * wo, taps.shape[2]), dtype=dt)
    acc[:] = bias
    for u in range(k):
        for t in range(k):
            tap = d[u : u + stride * (ho - 1) + 1 : stride, t : t + stride * (wo - 1) + 1 : stride]
            acc += np.ascontiguousarray(tap).reshape(ho * wo, cin) @ taps[u * k + t]
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
    d = np.zeros((g, h + 2 * pad, w + 2 * pad, lanes), dtype=dt)
    inner = d[:, pad : pad + h, pad : pad + w]
    inner[...] = x
    inner -= z_in
    acc = np.empty((g, ho, wo * lanes), dtype=dt)
    acc[:] = bias
    tmp = np.empty_like(acc)
    rows, cols = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    for u in range(k):
        for t in range(k):
            tap = d[:, u : u + rows : stride, t : t + cols : stride]
            # a view for stride 1 (a row's Wo*L values are contiguous), a copy for stride 2
            np.multiply(tap.reshape(g, ho, wo * lanes), taps[u * k + t], out=tmp)
            acc += tmp
    return acc


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
