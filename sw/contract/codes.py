"""Weight codes (docs/arithmetic.md section 3): what a ``bits``-bit code of each format means.

The artifact loader (sw/artifact.py) checks every code with :func:`invalid_codes`, the exporter
(quant/export.py) writes them with :func:`encode_codes`, and the emulator, the CPU fallback and
the reference decode them with :func:`decode_codes`; the RTL's decoders (hw/router.py,
hw/dense.py) implement the same table in gates. Numpy only.
"""

from __future__ import annotations

import numpy as np


class CodeError(ValueError):
    """Weights that the requested code format cannot represent (one line naming why)."""


def pow2_max_exponent(bits: int) -> int:
    """E_B: the largest exponent a ``bits``-bit pow2 code may carry."""
    return min((1 << (bits - 1)) - 2, 15)


POW2X2_BITS = 8  # two 4-bit pow2 terms in one byte
POW2X2_TERM_BITS = 4


def weight_terms(fmt: str) -> int:
    """Passes of the dense engine per weight: two for pow2x2 (one 4-bit block per term)."""
    return 2 if fmt == "pow2x2" else 1


def _pow2x2_terms(c: np.ndarray) -> tuple[np.ndarray, ...]:
    """(sign_a, m_a, sign_b, m_b) of pow2x2 codes: low nibble the first term, high the second."""
    lo, hi = c & 0xF, (c >> 4) & 0xF
    return (lo >> 3) & 1, lo & 7, (hi >> 3) & 1, hi & 7


def decode_codes(codes: np.ndarray, fmt: str, bits: int) -> np.ndarray:
    """Integer weights (int64) of valid codes. Validity is checked by :func:`invalid_codes`."""
    c = codes.astype(np.int64)
    if fmt == "pow2x2":
        lo = decode_codes(c & 0xF, "pow2", POW2X2_TERM_BITS)
        return lo + decode_codes((c >> 4) & 0xF, "pow2", POW2X2_TERM_BITS)
    if fmt == "pow2":
        sign = (c >> (bits - 1)) & 1
        m = c & ((1 << (bits - 1)) - 1)
        mag = np.where(m > 0, np.left_shift(1, np.maximum(m - 1, 0)), 0)
        return np.where(sign == 1, -mag, mag)
    if fmt == "binary":
        return 1 - 2 * (c & 1)
    if fmt == "int":
        return np.where(c >= (1 << (bits - 1)), c - (1 << bits), c)
    raise CodeError(f"unknown weight format {fmt!r}")


def invalid_codes(codes: np.ndarray, fmt: str, bits: int) -> np.ndarray:
    """Boolean mask of codes that no valid writer emits for this format and width."""
    c = codes.astype(np.int64)
    bad = (c < 0) | (c >= (1 << bits))
    if fmt == "pow2":
        sign = (c >> (bits - 1)) & 1
        m = c & ((1 << (bits - 1)) - 1)
        bad |= (sign == 1) & (m == 0)  # negative zero: each weight has one encoding
        bad |= m > pow2_max_exponent(bits) + 1
    elif fmt == "pow2x2":
        # Each nibble a valid 4-bit pow2 code, and the canonical form (section 3.4): a second
        # term only after a first, exponents strictly decreasing, opposite signs only 3 or
        # more octaves apart (closer pairs equal a one-term or a same-sign pair).
        bad |= bits != POW2X2_BITS
        sa, ma, sb, mb = _pow2x2_terms(c)
        emax = pow2_max_exponent(POW2X2_TERM_BITS) + 1
        bad |= ((sa == 1) & (ma == 0)) | ((sb == 1) & (mb == 0)) | (ma > emax) | (mb > emax)
        bad |= (mb > 0) & (ma == 0)
        both = (ma > 0) & (mb > 0)
        bad |= both & (ma <= mb)
        bad |= both & (sa != sb) & (ma - mb <= 2)
    elif fmt == "int":
        bad |= c == (1 << (bits - 1))  # -2^(B-1): the range is symmetric
    return bad


def encode_pow2(values: np.ndarray, bits: int) -> np.ndarray:
    """Codes of integer weights that are 0 or +-2^e with 0 <= e <= E_B (raises otherwise)."""
    v = np.asarray(values, dtype=np.int64)
    mag = np.abs(v)
    e = np.zeros_like(mag)
    nz = mag > 0
    e[nz] = np.round(np.log2(mag[nz])).astype(np.int64)
    if np.any(nz & ((np.left_shift(1, e) != mag) | (e > pow2_max_exponent(bits)))):
        raise CodeError(f"weights are not {bits}-bit powers of two")
    m = np.where(nz, e + 1, 0)
    sign = (v < 0).astype(np.int64)
    return ((sign << (bits - 1)) | m).astype(np.uint8)


def encode_int(values: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement codes of integer weights in the symmetric ``bits``-bit range."""
    v = np.asarray(values, dtype=np.int64)
    lim = (1 << (bits - 1)) - 1
    if np.any(np.abs(v) > lim):
        raise CodeError(f"weights exceed the symmetric {bits}-bit range +-{lim}")
    return (v & ((1 << bits) - 1)).astype(np.uint8)


def encode_binary(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.int64)
    if np.any(np.abs(v) != 1):
        raise CodeError("binary weights must be +1 or -1")
    return (v < 0).astype(np.uint8)


def _pow2x2_table() -> tuple[np.ndarray, np.ndarray]:
    """Sorted integer values of every canonical pow2x2 code, and those codes."""
    c = np.arange(256, dtype=np.int64)
    ok = ~invalid_codes(c, "pow2x2", POW2X2_BITS)
    v = decode_codes(c[ok], "pow2x2", POW2X2_BITS)
    order = np.argsort(v, kind="stable")
    return v[order], c[ok][order]


def pow2x2_values() -> np.ndarray:
    """Every integer a pow2x2 weight can take, ascending (0, +-1, ..., +-96)."""
    return _pow2x2_table()[0]


def encode_pow2x2(values: np.ndarray) -> np.ndarray:
    """The canonical codes of integer weights representable as +-2^a +-2^b (raises otherwise)."""
    v = np.asarray(values, dtype=np.int64)
    table_v, table_c = _pow2x2_table()
    i = np.clip(np.searchsorted(table_v, v), 0, table_v.size - 1)
    if np.any(table_v[i] != v):
        raise CodeError("weights are not sums of two 4-bit powers of two (pow2x2)")
    return table_c[i].astype(np.uint8)


def encode_codes(values: np.ndarray, fmt: str, bits: int) -> np.ndarray:
    """Codes of integer weights in the given format (the inverse of :func:`decode_codes`)."""
    if fmt == "pow2x2":
        if bits != POW2X2_BITS:
            raise CodeError(f"pow2x2 codes are {POW2X2_BITS}-bit, not {bits}-bit")
        return encode_pow2x2(values)
    if fmt == "pow2":
        return encode_pow2(values, bits)
    if fmt == "int":
        return encode_int(values, bits)
    if fmt == "binary":
        return encode_binary(values)
    raise CodeError(f"unknown weight format {fmt!r}")
