"""Directed rounding ties: operands whose product lands exactly halfway between two results.

Random operands almost never hit a tie once the shift is large (a tie needs the low ``S`` bits
of the product to be exactly ``2^(S-1)``), so a test driven by random stimulus alone passes
with round-half-down, half-even or half-away-from-zero in place of the contract's round half up
(docs/arithmetic.md section 1). These generators build ties by construction, for every shift,
both signs and odd and even quotients, so that each of those mutations changes some result.

``expected`` is the oracle: exact rationals (``fractions.Fraction``), independent of the
shift-and-add formula every implementation uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from sim.reference import ops
from sw.artifact import Node, Quant, decode_codes
from sw.contract.arith import ACC_MAX, ACC_MIN, MULT_MAX, SHIFT_MAX


def round_half_up(num: int, shift: int) -> int:
    """``num / 2^shift`` rounded to the nearest integer, ties toward +infinity, exactly."""
    return math.floor(Fraction(num, 1 << shift) + Fraction(1, 2))


def _odd_up_to(rng: np.random.Generator, hi: int) -> int:
    """A random odd integer in 1..hi (hi >= 1)."""
    return 2 * int(rng.integers(0, (hi + 1) // 2)) + 1


@dataclass(frozen=True)
class ConvTies:
    """Per-row requantizer operands: row ``i`` is one accumulator with its channel constants."""

    acc: np.ndarray  # int64, the accumulator after the bias, |acc| < 2^31
    m: np.ndarray  # the multiplier the accumulator's sign selects (M_pos or M_neg)
    shift: np.ndarray  # 1..SHIFT_MAX

    def expected(self, z_out: int, bits: int) -> np.ndarray:
        qmax = (1 << bits) - 1
        return np.array(
            [
                min(max(z_out + round_half_up(int(a) * int(m), int(s)), 0), qmax)
                for a, m, s in zip(self.acc, self.m, self.shift, strict=True)
            ],
            dtype=np.uint8,
        )


def conv_ties(rng: np.random.Generator, reach: int = 100) -> ConvTies:
    """Ties of ``acc * M`` for every shift 1..SHIFT_MAX, each with positive and negative
    accumulators and odd and even rounded results, all within ``reach`` of zero after the shift
    (so a zero point near mid-range keeps them off the clamp).

    ``acc * M = t * m_odd * 2^(S-1)`` with ``t`` and ``m_odd`` odd is a tie: write
    ``M = m_odd * 2^j`` (``j <= S-1``) and ``acc = t * 2^(S-1-j)``. ``j`` grows with ``S`` so
    that ``acc`` stays a 32-bit accumulator; at ``S = 47`` the only tie in range is
    ``acc = -2^31``, ``M = 2^15`` (``-2^46``, halfway between -1 and 0).
    """
    acc, mult, shift = [], [], []
    for s in range(1, SHIFT_MAX):  # S = SHIFT_MAX has one tie in range, added below
        j_lo, j_hi = max(0, s - 31), min(MULT_MAX.bit_length() - 1, s - 1)
        for t_sign in (1, -1):
            for _ in range(2):
                j = int(rng.integers(j_lo, j_hi + 1))
                m_odd = _odd_up_to(rng, min(MULT_MAX >> j, 2 * reach))
                unit = 1 << (s - 1 - j)
                t = _odd_up_to(rng, min(2 * reach // m_odd, ACC_MAX // unit))
                acc.append(t_sign * t * unit)
                mult.append(m_odd << j)
                shift.append(s)
    acc.append(ACC_MIN)
    mult.append(1 << 15)
    shift.append(SHIFT_MAX)
    out = ConvTies(np.array(acc, np.int64), np.array(mult, np.int64), np.array(shift, np.int64))
    assert all(
        (int(a) * int(m)) % (1 << int(s)) == 1 << (int(s) - 1)
        for a, m, s in zip(out.acc, out.m, out.shift, strict=True)
    ), "not a tie"
    assert (out.m <= MULT_MAX).all() and (out.m > 0).all()
    return out


@dataclass(frozen=True)
class AddTies:
    """Residual-add operands (docs/arithmetic.md section 6) at one shift, every row a tie."""

    a: np.ndarray  # uint8 codes
    c: np.ndarray
    z_a: int
    z_c: int
    m_a: int
    m_c: int
    shift: int

    def expected(self, z_out: int, bits: int, relu: bool = False) -> np.ndarray:
        qmax = (1 << bits) - 1
        out = []
        for a, c in zip(self.a.tolist(), self.c.tolist(), strict=True):
            t = self.m_a * (a - self.z_a) + self.m_c * (c - self.z_c)
            t = max(t, 0) if relu else t
            out.append(min(max(z_out + round_half_up(t, self.shift), 0), qmax))
        return np.array(out, dtype=np.uint8)


def add_ties(rng: np.random.Generator, shift: int, n: int = 32) -> AddTies:
    """``n`` ties of ``T = M_a (a - z_a) + M_c (c - z_c)`` at ``shift`` (1..22), half of them
    negative: ``M_a = 2^(S-1) * odd``, ``M_c = 2^S * k`` and ``a - z_a`` odd make every ``T`` an
    odd multiple of ``2^(S-1)``, while ``c`` still varies and moves the result."""
    assert 1 <= shift <= 22, "a tie needs |a - z_a| * M_a = 2^(S-1) * odd with M_a < 2^16"
    z_a, z_c = 128, int(rng.integers(96, 160))
    ja = min(shift - 1, 15)
    unit_a = 1 << (shift - 1 - ja)  # |a - z_a| must carry the rest of 2^(S-1)
    m_a = 1 << ja
    m_c = 1 << shift if shift <= 15 else 0  # a whole number of output steps per code of c
    da = np.array([_odd_up_to(rng, 127 // unit_a) * unit_a for _ in range(n)])
    da = np.where(np.arange(n) % 2 == 0, da, -da)
    a = (z_a + da).astype(np.uint8)
    c = rng.integers(z_c - 3, z_c + 4, size=n).astype(np.uint8)
    out = AddTies(a, c, z_a, z_c, m_a, m_c, shift)
    t = m_a * (a.astype(np.int64) - z_a) + m_c * (c.astype(np.int64) - z_c)
    assert ((t % (1 << shift)) == (1 << (shift - 1))).all(), "not a tie"
    assert (t < 0).any() and (t > 0).any()
    return out


def count_conv_ties(
    acc: np.ndarray,
    m_pos: np.ndarray,
    m_neg: np.ndarray,
    shift: np.ndarray,
    z_out: int,
    bits: int,
) -> int:
    """How many of a layer's ``(C, H, W)`` accumulators are ties whose result the clamp keeps:
    a whole-layer test states this count, so that it cannot pass with no tie in it."""
    acc = np.asarray(acc, dtype=np.int64)
    bc = (slice(None),) + (None,) * (acc.ndim - 1)
    m = np.where(acc >= 0, m_pos.astype(np.int64)[bc], m_neg.astype(np.int64)[bc])
    s = np.broadcast_to(shift.astype(np.int64)[bc], acc.shape)
    p = acc * m
    low = p & ((np.int64(1) << s) - 1)
    tie = (s > 0) & (low == np.left_shift(np.int64(1), np.maximum(s - 1, 0)))
    r = (p >> s) + 1  # the rounded-up result of a tie
    kept = (z_out + r - 1 >= 0) & (z_out + r <= (1 << bits) - 1)  # both neighbours in range
    return int((tie & kept).sum())


def layer_ties(node: Node, x: np.ndarray, q_in: Quant) -> int:
    """``count_conv_ties`` of a conv node on input codes ``x`` (the reference's accumulators)."""
    t, a = node.tensors, node.attrs
    v = decode_codes(t["codes"], a["weight_format"], a["weight_bits"])
    acc = ops.conv2d(x, q_in.zero, v, t["bias"], a["stride"], a["pad"], a["groups"])
    return count_conv_ties(acc, t["m_pos"], t["m_neg"], t["shift"], node.quant.zero,
                           node.quant.bits)  # fmt: skip
