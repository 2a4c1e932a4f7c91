"""Integer operations of the arithmetic contract (docs/arithmetic.md), exact in int64.

Every function takes and returns integer NumPy arrays; no floating-point value enters the integer
path. Activations are ``(C, H, W)`` arrays of codes; weights are decoded integers ``v``.
The code favours being obviously equal to the text of the contract over speed.
"""

from __future__ import annotations

import numpy as np


def round_shift(p: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """Section 1: round half up, ``(p + 2^(S-1)) >> S`` for ``S >= 1`` and ``p`` for ``S = 0``."""
    p = np.asarray(p, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return np.right_shift(p + half, s)


def _pad_window(
    q: np.ndarray, top: int, bottom: int, left: int, right: int, value: int
) -> np.ndarray:
    return np.pad(q, ((0, 0), (top, bottom), (left, right)), constant_values=value)


def conv2d(
    q: np.ndarray,
    z_in: int,
    v: np.ndarray,
    bias: np.ndarray,
    stride: int,
    pad: int | tuple[int, int],
    groups: int = 1,
) -> np.ndarray:
    """Section 4.2: the int64 accumulator ``acc[o, i, j]`` of a dense or depthwise convolution.

    ``q`` (C_in, H, W) codes, ``v`` (C_out, C_in/groups, k, k) integer weights, ``bias`` (C_out).
    Positions outside the map read ``z_in`` (real zero). ``pad`` is one value for rows and
    columns, or ``(rows, columns)``: the strip tiler pads the columns of a strip itself.
    """
    pad_r, pad_c = (pad, pad) if isinstance(pad, int) else pad
    cin, h, w = q.shape
    cout, cpg, k, k2 = v.shape
    assert k == k2 and cpg * groups == cin, "weight shape does not match the input"
    ho = (h + 2 * pad_r - k) // stride + 1
    wo = (w + 2 * pad_c - k) // stride + 1
    d = _pad_window(q.astype(np.int64), pad_r, pad_r, pad_c, pad_c, z_in) - z_in
    acc = np.broadcast_to(bias.astype(np.int64)[:, None, None], (cout, ho, wo)).copy()
    v = v.astype(np.int64)
    for u in range(k):
        for t in range(k):
            tap = d[
                :, u : u + stride * (ho - 1) + 1 : stride, t : t + stride * (wo - 1) + 1 : stride
            ]
            if groups == 1:
                acc += np.tensordot(v[:, :, u, t], tap, axes=(1, 0))
            else:  # depthwise: output channel o reads input channel o alone
                acc += v[:, 0, u, t][:, None, None] * tap
    return acc


def requantize(
    acc: np.ndarray,
    m_pos: np.ndarray,
    m_neg: np.ndarray,
    shift: np.ndarray,
    z_out: int,
    bits_out: int,
) -> np.ndarray:
    """Section 5: per-channel multiplier (sign-selected, which is the activation), round, clamp."""
    acc = np.asarray(acc, dtype=np.int64)
    bc = (slice(None),) + (None,) * (acc.ndim - 1)  # broadcast per-channel constants over H, W
    m = np.where(acc >= 0, m_pos.astype(np.int64)[bc], m_neg.astype(np.int64)[bc])
    r = round_shift(acc * m, shift.astype(np.int64)[bc])
    return np.clip(z_out + r, 0, (1 << bits_out) - 1).astype(np.uint8)


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
    """Section 6: residual add of two tensors with different scales, rounded once."""
    t = m_a * (a.astype(np.int64) - z_a) + m_c * (c.astype(np.int64) - z_c)
    if relu:
        t = np.maximum(t, 0)
    return np.clip(z_out + round_shift(t, shift), 0, (1 << bits_out) - 1).astype(np.uint8)


def concat(tensors: list[np.ndarray]) -> np.ndarray:
    """Section 7: channel concatenation of tensors that share their quantization."""
    return np.concatenate(tensors, axis=0)


def upsample2x(q: np.ndarray) -> np.ndarray:
    """Section 7: nearest-neighbour upsampling by 2, ``out[c, i, j] = q[c, i//2, j//2]``."""
    return q.repeat(2, axis=1).repeat(2, axis=2)


def maxpool(
    q: np.ndarray,
    kernel: int,
    stride: int,
    pad_before: int,
    pad_after: int,
    pad_cols: tuple[int, int] | None = None,
) -> np.ndarray:
    """Section 7: max over the in-map taps of each window; padding never wins.

    ``pad_cols`` overrides the column padding (the strip tiler marks border columns itself).
    """
    pc0, pc1 = (pad_before, pad_after) if pad_cols is None else pad_cols
    c, h, w = q.shape
    ho = (h + pad_before + pad_after - kernel) // stride + 1
    wo = (w + pc0 + pc1 - kernel) // stride + 1
    # -1 is below every code, so it plays darknet's minus infinity exactly.
    x = _pad_window(q.astype(np.int64), pad_before, pad_after, pc0, pc1, -1)
    out = np.full((c, ho, wo), -1, dtype=np.int64)
    for u in range(kernel):
        for t in range(kernel):
            tap = x[
                :, u : u + stride * (ho - 1) + 1 : stride, t : t + stride * (wo - 1) + 1 : stride
            ]
            out = np.maximum(out, tap)
    assert out.min(initial=0) >= 0, "a maxpool window without any in-map tap"
    return out.astype(np.uint8)


def avgpool(
    q: np.ndarray, z_in: int, multiplier: int, shift: int, z_out: int, bits_out: int
) -> np.ndarray:
    """Section 7.1: global average pool, the exact sum of ``q - z_in`` over the map times one
    multiplier, rounded once (``round_shift``) and clamped; output (C, 1, 1)."""
    t = (q.astype(np.int64) - z_in).sum(axis=(1, 2), keepdims=True)
    r = round_shift(t * np.int64(multiplier), shift)
    return np.clip(z_out + r, 0, (1 << bits_out) - 1).astype(np.uint8)
