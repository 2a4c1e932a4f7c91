"""Choosing the integer constants from real scales (docs/arithmetic.md section 11, informative).

These helpers are how ``quant/`` (and the tests) turn real scales into the integers the contract
computes with; they use floats, but only to *choose* constants, never inside the integer path.
They live in the contract package because whoever writes an artifact must choose constants
within its limits (MULT_MAX, SHIFT_MAX) the same way; ``sim.reference.requant`` re-exports them.
"""

from __future__ import annotations

import math

import numpy as np

from sw.contract.arith import MULT_MAX, SHIFT_MAX


def quantize_multiplier(m: float) -> tuple[int, int]:
    """``(M, S)`` with ``M = round(m * 2^S) <= 65535`` and ``S`` the largest shift in 0..47.

    The largest shift keeps ``M`` normalised in [32768, 65535] whenever ``m`` allows it, so the
    relative error of the fixed-point multiplier stays below 2^-16.
    """
    if not (math.isfinite(m) and m >= 0):
        raise ValueError(f"multiplier {m!r} must be finite and non-negative")
    if m == 0:
        return 0, 0
    if round(m) > MULT_MAX:
        raise ValueError(f"multiplier {m:g} exceeds {MULT_MAX}: the output scale is too small")
    s = min(SHIFT_MAX, max(0, 15 - math.floor(math.log2(m))))
    while s > 0 and round(m * 2.0**s) > MULT_MAX:  # log2 rounding at the boundary
        s -= 1
    while s < SHIFT_MAX and round(m * 2.0 ** (s + 1)) <= MULT_MAX:
        s += 1
    return int(round(m * 2.0**s)), s


def conv_constants(
    m_real: np.ndarray, activation: str, leaky_slope: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel ``(m_pos, m_neg, shift)`` for real multipliers ``s_in * s_w / s_out``."""
    mp, mn, sh = [], [], []
    for m in np.asarray(m_real, dtype=np.float64):
        p, s = quantize_multiplier(float(m))
        if activation == "linear":
            n = p
        elif activation == "relu":
            n = 0
        elif activation == "leaky":
            n = int(round(leaky_slope * float(m) * 2.0**s))
        else:
            raise ValueError(f"unknown activation {activation!r}")
        mp.append(p)
        mn.append(n)
        sh.append(s)
    return (
        np.array(mp, dtype=np.uint16),
        np.array(mn, dtype=np.uint16),
        np.array(sh, dtype=np.uint8),
    )


def add_constants(s_a: float, s_c: float, s_out: float) -> tuple[int, int, int]:
    """``(M_a, M_c, S)`` for a residual add: one shift, the largest both multipliers allow."""
    big = max(s_a, s_c) / s_out
    _, s = quantize_multiplier(big)
    return int(round(s_a / s_out * 2.0**s)), int(round(s_c / s_out * 2.0**s)), s


def range_to_quant(lo: float, hi: float, bits: int) -> tuple[int, float]:
    """``(zero, scale)`` of a clip range ``[lo, hi]`` (widened to contain 0), section 11.4."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        hi = lo + 1e-8
    scale = (hi - lo) / ((1 << bits) - 1)
    zero = int(np.clip(round(-lo / scale), 0, (1 << bits) - 1))
    return zero, float(np.float32(scale))
