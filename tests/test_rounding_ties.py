"""Rounding ties through every software implementation of the contract's requantizers.

docs/arithmetic.md section 1 rounds half up. Random operands rarely land on a tie once the shift
is large, so these tests feed the directed ties of sim.reference.ties (every shift, both signs)
to the NumPy reference, the emulator's float64 kernels and the PyTorch integer mode, against an
exact-rational oracle. The RTL gets the same vectors in tests/test_hw_units.py (the requantizer
and the residual add alone) and in sim/test_accel.py (a whole conv layer with small shifts);
``make mutation-check`` proves that each implementation's rounding is pinned by them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quant.integer import run_int_op
from sim.reference import ops
from sim.reference.ties import add_ties, conv_ties, count_conv_ties, round_half_up
from sw import kernels
from sw.artifact import Quant

SEED = 20261203
Z_OUT, BITS = 128, 8


def test_oracle_is_round_half_up() -> None:
    assert [round_half_up(p, 1) for p in (-3, -1, 1, 3)] == [-1, 0, 1, 2]
    assert [round_half_up(p, 2) for p in (-6, -2, 2, 6, 5, 7)] == [-1, 0, 1, 2, 1, 2]


def test_tie_vectors_cover_every_shift_and_sign() -> None:
    ties = conv_ties(np.random.default_rng(SEED))
    assert set(ties.shift.tolist()) == set(range(1, 48))
    want = ties.expected(Z_OUT, BITS)
    assert 0 < want.min() and want.max() < 255, "a tie on the clamp would not test the rounding"
    for sign in (1, -1):
        rows = np.sign(ties.acc) == sign
        assert rows.sum() >= 40
        # round half up and half down differ at every tie, half-even at about half of them
        assert (want[rows] % 2 == 0).any() and (want[rows] % 2 == 1).any()


def _per_channel(ties_field: np.ndarray) -> np.ndarray:
    return ties_field.reshape(-1, 1, 1)


def test_reference_requantize_ties() -> None:
    ties = conv_ties(np.random.default_rng(SEED))
    m = ties.m.astype(np.uint16)
    got = ops.requantize(_per_channel(ties.acc), m, m, ties.shift.astype(np.uint8), Z_OUT, BITS)
    assert np.array_equal(got.reshape(-1), ties.expected(Z_OUT, BITS)), f"seed {SEED}"


@pytest.mark.parametrize("max_shift", [kernels.FUSED_ZERO_POINT_MAX_SHIFT, 47])
@pytest.mark.parametrize("same_m", [True, False])
def test_emulator_requantize_ties(same_m: bool, max_shift: int) -> None:
    """Every path of the kernel: one multiplier for both signs (linear) or two (leaky), and
    shifts that let the zero point go in before the floor (<= 44) or not."""
    ties = conv_ties(np.random.default_rng(SEED))
    keep = ties.shift <= max_shift
    ties = type(ties)(ties.acc[keep], ties.m[keep], ties.shift[keep])
    m = ties.m.astype(np.uint16)
    pos = ties.acc >= 0
    m_pos = m if same_m else np.where(pos, m, m // 2 + 1).astype(np.uint16)
    m_neg = m if same_m else np.where(pos, m // 2 + 1, m).astype(np.uint16)
    acc = _per_channel(ties.acc).astype(np.float64)
    got = kernels.requantize(acc, m_pos, m_neg, ties.shift.astype(np.uint8), Z_OUT, BITS)
    assert np.array_equal(got.reshape(-1), ties.expected(Z_OUT, BITS)), f"seed {SEED}"


@pytest.mark.parametrize("mode", ["linear", "leaky, m_neg <= m_pos", "leaky, m_neg >= m_pos"])
def test_emulator_row_requantize_ties(mode: str) -> None:
    """The emulator's fast requantizer (OpenCV's ties-to-even conversion made exact by an
    offset): every tie with a shift it takes, as one accumulator row repeated over more rows
    than a chunk holds; the multiplier the tie does not use is set to the other side's extreme,
    so both sides of the leaky combination are exercised."""
    ties = conv_ties(np.random.default_rng(SEED))
    keep = ties.shift <= kernels.ROWS_MAX_SHIFT
    assert (~keep).any(), "the larger shifts must be left to requantize_bc"
    acc, m, shift = ties.acc[keep], ties.m[keep].astype(np.uint16), ties.shift[keep]
    pos = acc >= 0
    m_pos, m_neg = m.copy(), m.copy()
    if mode == "leaky, m_neg <= m_pos":
        m_neg[pos], m_pos[~pos] = m[pos] // 2 + 1, 65535
    elif mode == "leaky, m_neg >= m_pos":
        m_neg[pos], m_pos[~pos] = 65535, m[~pos] // 2 + 1
    bound = np.abs(acc).astype(np.float64)  # per value, as the emulator gives it
    rq = kernels.row_requant(m_pos, m_neg, shift.astype(np.uint8), Z_OUT, BITS, bound)
    assert rq is not None and (rq.mn is None) == (mode == "linear")
    rows = 3 * (kernels.ROWS_CHUNK // acc.size) + 1  # several chunks and a partial one
    out = np.zeros((rows, acc.size), dtype=np.uint8)
    kernels.requantize_rows(np.tile(acc.astype(np.float64), (rows, 1)), rq, out)
    want = ties.expected(Z_OUT, BITS)[keep]
    assert (out == want).all(), f"seed {SEED}"
    wide = kernels.row_requant(m, m, ties.shift.astype(np.uint8), Z_OUT, BITS, 1.0)
    assert wide is None, "a shift above ROWS_MAX_SHIFT must take requantize_bc"


@pytest.mark.parametrize("bits", [8, 4])
def test_emulator_row_requantize_small_shifts(bits: int) -> None:
    """Shift 0 (no rounding: the offset must not push an integer to a tie) and shifts 1-2 on
    random accumulators, against the reference; and the layers it must refuse."""
    rng = np.random.default_rng(SEED + bits)
    p = 64
    m_pos = rng.integers(1, 9, p).astype(np.uint16)  # small: outputs spread over the range
    m_neg = np.maximum(1, m_pos // 3).astype(np.uint16)
    acc = rng.integers(-12, 13, (50, p))
    for shifts in (np.zeros(p, np.uint8), rng.integers(0, 3, p).astype(np.uint8)):
        for mn in (m_pos, m_neg):
            rq = kernels.row_requant(m_pos, mn, shifts, 3, bits, 12.0)
            assert rq is not None
            got = kernels.requantize_rows(acc.astype(np.float32), rq,
                                          np.empty(acc.shape, np.uint8))  # fmt: skip
            want = ops.requantize(acc.T[..., None], m_pos, mn, shifts, 3, bits)[..., 0].T
            assert np.array_equal(got, want), f"seed {SEED + bits}, shifts {shifts.max()}"
            assert (got == 0).any() and len(np.unique(got)) > 10  # the clamp and a spread
            assert bits == 8 or (got == 15).any()
    ones = np.ones(p, np.uint16)
    assert kernels.row_requant(ones, ones, np.zeros(p, np.uint8), 0, 8, 2.0**30) is None
    mixed = np.where(np.arange(p) % 2 == 0, m_pos // 2, m_pos).astype(np.uint16)
    mixed_neg = np.where(np.arange(p) % 2 == 0, m_pos, m_pos // 2).astype(np.uint16)
    assert kernels.row_requant(mixed, mixed_neg, np.ones(p, np.uint8), 0, 8, 10.0) is None


def test_torch_integer_conv_ties() -> None:
    """A depthwise 1x1 conv whose bias completes each tie: the integer mode's conv path."""
    rng = np.random.default_rng(SEED)
    ties = conv_ties(rng)
    n, z_in = len(ties.acc), 100
    x = rng.integers(0, 256, size=n)
    pos = ties.acc >= 0
    p = {
        "v": np.ones((n, 1, 1, 1)),
        "bias": (ties.acc - (x - z_in)).astype(np.int64),
        "m_pos": np.where(pos, ties.m, ties.m // 2 + 1),
        "m_neg": np.where(pos, ties.m // 2 + 1, ties.m),
        "shift": ties.shift,
        "z_in": z_in,
        "q_out": Quant(BITS, Z_OUT, 1.0),
    }
    attrs = {"stride": 1, "pad": 0, "groups": n}
    got = run_int_op("conv", attrs, [torch.tensor(x, dtype=torch.float64).view(1, n, 1, 1)], p)
    assert np.array_equal(got.view(-1).numpy().astype(np.uint8), ties.expected(Z_OUT, BITS))


@pytest.mark.parametrize("shift", [1, 2, 9, 15, 16, 22])
@pytest.mark.parametrize("impl", ["reference", "emulator", "fast-emulator", "torch"])
def test_add_ties(impl: str, shift: int) -> None:
    seed = SEED + shift
    ties = add_ties(np.random.default_rng(seed), shift)
    want = ties.expected(Z_OUT, BITS)
    if impl == "torch":
        p = dict(m_a=ties.m_a, m_c=ties.m_c, shift=shift, z_a=ties.z_a, z_c=ties.z_c,
                 q_out=Quant(BITS, Z_OUT, 1.0))  # fmt: skip
        ins = [torch.tensor(t, dtype=torch.float64).view(1, -1, 1, 1) for t in (ties.a, ties.c)]
        got = run_int_op("add", {"activation": "linear"}, ins, p).view(-1).numpy()
    elif impl == "fast-emulator":  # the emulator's fast path, on a (4, n) tensor
        args = (ties.z_a, ties.z_c, ties.m_a, ties.m_c, shift, Z_OUT, BITS, False)
        rows = lambda t: np.tile(t, (4, 1))  # noqa: E731
        out = np.zeros((4, ties.a.size), np.uint8)
        got = kernels.add_rows(rows(ties.a), args[0], rows(ties.c), *args[1:], out)
        assert got is out and (out == out[0]).all()
        got = out[0]
    else:
        fn = ops.add if impl == "reference" else kernels.add
        got = fn(ties.a, ties.z_a, ties.c, ties.z_c, ties.m_a, ties.m_c, shift, Z_OUT, BITS)
    assert np.array_equal(np.asarray(got).astype(np.uint8), want), f"{impl} seed {seed}"


@pytest.mark.parametrize("bits", [8, 4])
def test_emulator_add_rows_equals_reference(bits: int) -> None:
    """The fast residual add on random codes, with ReLU and without, shifts 0..42 (0 needs the
    offset below 1/2), against the reference; a larger shift is refused, nothing written."""
    seed = SEED + 7 * bits
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << bits, (3, 40, 16)).astype(np.uint8)  # codes of a `bits` layer
    c = rng.integers(0, 1 << bits, (3, 40, 16)).astype(np.uint8)
    for shift in (0, 1, 2, 7, 16, 30, kernels.ROWS_MAX_SHIFT):
        for relu in (False, True):
            # multipliers that map the codes' range onto ~+-60 output steps where they can
            gain = 1 if bits == 8 else 2
            m_a, m_c = (min(2**16 - 1, max(1, int(gain * v * 2**shift)))
                        for v in rng.uniform(0.05, 0.3, 2))  # fmt: skip
            z_a, z_c, z = (int(v) for v in rng.integers(1 << (bits - 2), 3 << (bits - 2), 3))
            want = ops.add(a, z_a, c, z_c, m_a, m_c, shift, z, bits, relu=relu)
            out = np.empty_like(a)
            kernels.add_rows(a, z_a, c, z_c, m_a, m_c, shift, z, bits, relu, out)
            assert np.array_equal(out, want), f"seed {seed} shift {shift} relu {relu}"
            spread = len(np.unique(out))
            assert shift > 17 or spread > (20 if bits == 8 else 3), "nearly constant"
    out = np.zeros_like(a)
    assert kernels.add_rows(a, 0, c, 0, 1, 1, kernels.ROWS_MAX_SHIFT + 1, 0, 8, False, out) is None
    assert not out.any()


def test_count_conv_ties() -> None:
    acc = np.array([3, -3, 4, 5, 1001]).reshape(5, 1, 1)
    one = np.ones(5, np.int64)
    # S = 1: odd products are ties; the last saturates (z 128 + 500 > 255) and does not count
    assert count_conv_ties(acc, one, one, one, Z_OUT, BITS) == 3
