"""Memory layout of tensors, weights and constants in DDR (docs/arithmetic.md section 9).

The packing the compiler writes, the emulator and the RTL read, and the testbenches build their
DDR images with: one implementation (numpy only), so the runtime never needs the testbench
folder. ``sim.reference.layout`` re-exports it for the reference and the testbenches.
"""

from __future__ import annotations

import numpy as np

ALIGN = 64  # bytes; every DDR address the accelerator sees (tensors, weights, descriptors)
CHANNEL_RECORD_BYTES = 16  # one channel's constants (bias, multipliers, shift)


def align(n: int, a: int = ALIGN) -> int:
    """``n`` rounded up to a multiple of ``a``."""
    return -(-n // a) * a


def groups(c: int, lanes: int) -> int:
    """Channel groups (memory words of ``lanes`` channels) that ``c`` channels take."""
    return -(-c // lanes)


def _groups(c: int, lanes: int) -> int:
    if lanes < 1 or lanes & (lanes - 1):
        raise ValueError(f"lane width {lanes} must be a power of two")
    return groups(c, lanes)


def activation_to_ddr(q: np.ndarray, lanes: int, zero: int) -> np.ndarray:
    """(C, H, W) codes -> bytes in channel-blocked order ``[g][i][j][lane]``, padding = zero."""
    c, h, w = q.shape
    g = _groups(c, lanes)
    buf = np.full((g * lanes, h, w), zero, dtype=np.uint8)
    buf[:c] = q
    return np.ascontiguousarray(buf.reshape(g, lanes, h, w).transpose(0, 2, 3, 1)).reshape(-1)


def activation_from_ddr(buf: np.ndarray, shape: tuple[int, int, int], lanes: int) -> np.ndarray:
    """Inverse of :func:`activation_to_ddr` (drops the padding channels)."""
    c, h, w = shape
    g = _groups(c, lanes)
    if buf.size != g * h * w * lanes:
        raise ValueError(f"buffer of {buf.size} bytes, expected {g * h * w * lanes} for {shape}")
    t = buf.reshape(g, h, w, lanes).transpose(0, 3, 1, 2).reshape(g * lanes, h, w)
    return np.ascontiguousarray(t[:c])


def activation_address(c: int, i: int, j: int, shape: tuple[int, int, int], lanes: int) -> int:
    """Byte offset of element (c, i, j) from the tensor's base (the formula of section 9)."""
    _, h, w = shape
    return ((c // lanes * h + i) * w + j) * lanes + c % lanes


def container_bits(bits: int) -> int:
    """Bits a code occupies in DDR: the smallest of 1, 2, 4, 8 that holds it."""
    for b in (1, 2, 4, 8):
        if bits <= b:
            return b
    raise ValueError(f"{bits}-bit codes do not fit a byte")


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack a flat sequence of codes little-endian into bytes (first code in the low bits)."""
    cb = container_bits(bits)
    per = 8 // cb
    flat = codes.reshape(-1).astype(np.uint8)
    flat = np.concatenate([flat, np.zeros((-flat.size) % per, dtype=np.uint8)])
    lanes = flat.reshape(-1, per).astype(np.uint16) << (cb * np.arange(per, dtype=np.uint16))
    return lanes.sum(axis=1).astype(np.uint8)


def unpack_codes(buf: np.ndarray, bits: int, count: int) -> np.ndarray:
    cb = container_bits(bits)
    per = 8 // cb
    v = (buf.astype(np.uint16)[:, None] >> (cb * np.arange(per, dtype=np.uint16))) & ((1 << cb) - 1)
    return v.reshape(-1)[:count].astype(np.uint8)


def dense_weight_order(codes: np.ndarray, lanes_in: int, lanes_out: int) -> np.ndarray:
    """(C_out, C_in, k, k) codes -> ``[og][ig][u][w][ol][il]`` with zero-code padding."""
    co, ci, k, _ = codes.shape
    go, gi = _groups(co, lanes_out), _groups(ci, lanes_in)
    buf = np.zeros((go * lanes_out, gi * lanes_in, k, k), dtype=np.uint8)
    buf[:co, :ci] = codes
    t = buf.reshape(go, lanes_out, gi, lanes_in, k, k).transpose(0, 2, 4, 5, 1, 3)
    return np.ascontiguousarray(t)


def split_terms(order: np.ndarray) -> np.ndarray:
    """pow2x2 codes in dense order ``[og][ig][u][w][ol][il]`` -> the two 4-bit term blocks of
    each (og, ig, u, w): ``[og][ig][u][w][t][ol][il]``, t = 0 the low nibbles (first term)."""
    return np.ascontiguousarray(np.stack([order & 0xF, order >> 4], axis=4))


def join_terms(split: np.ndarray) -> np.ndarray:
    """Inverse of :func:`split_terms`."""
    return (split[..., 0, :, :] | (split[..., 1, :, :] << 4)).astype(np.uint8)


def pack_weights(order: np.ndarray, fmt: str, bits: int) -> np.ndarray:
    """The DDR bytes of weight codes in engine order (``dense_weight_order`` or
    ``depthwise_weight_order``): pow2x2 as its two 4-bit term blocks, the rest packed as is."""
    if fmt == "pow2x2":
        return pack_codes(split_terms(order), 4)
    return pack_codes(order, bits)


def unpack_weights(buf: np.ndarray, fmt: str, bits: int, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_weights`: the codes of ``shape`` (engine order, the last two axes
    the lanes of one block) from their DDR bytes."""
    n = int(np.prod(shape))
    if fmt == "pow2x2":
        split = unpack_codes(buf, 4, 2 * n).reshape(*shape[:-2], 2, *shape[-2:])
        return join_terms(split)
    return unpack_codes(buf, bits, n).reshape(shape)


def depthwise_weight_order(codes: np.ndarray, lanes: int) -> np.ndarray:
    """(C, 1, k, k) codes -> ``[g][u][w][l]`` with zero-code padding."""
    c, _, k, _ = codes.shape
    g = _groups(c, lanes)
    buf = np.zeros((g * lanes, k, k), dtype=np.uint8)
    buf[:c] = codes[:, 0]
    return np.ascontiguousarray(buf.reshape(g, lanes, k, k).transpose(0, 2, 3, 1))


CHANNEL_RECORD = np.dtype(
    [("bias", "<i4"), ("m_pos", "<u2"), ("m_neg", "<u2"), ("shift", "u1"), ("reserved", "u1", 7)]
)
assert CHANNEL_RECORD.itemsize == CHANNEL_RECORD_BYTES


def channel_records(
    bias: np.ndarray, m_pos: np.ndarray, m_neg: np.ndarray, shift: np.ndarray, lanes_out: int
) -> np.ndarray:
    """The 16-byte per-channel constant records, padded with zero records to the lanes."""
    n = _groups(bias.size, lanes_out) * lanes_out
    rec = np.zeros(n, dtype=CHANNEL_RECORD)
    rec["bias"][: bias.size] = bias
    rec["m_pos"][: bias.size] = m_pos
    rec["m_neg"][: bias.size] = m_neg
    rec["shift"][: bias.size] = shift
    return rec.view(np.uint8)
