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
@pytest.mark.parametrize("impl", ["reference", "emulator", "torch"])
def test_add_ties(impl: str, shift: int) -> None:
    seed = SEED + shift
    ties = add_ties(np.random.default_rng(seed), shift)
    want = ties.expected(Z_OUT, BITS)
    if impl == "torch":
        p = dict(m_a=ties.m_a, m_c=ties.m_c, shift=shift, z_a=ties.z_a, z_c=ties.z_c,
                 q_out=Quant(BITS, Z_OUT, 1.0))  # fmt: skip
        ins = [torch.tensor(t, dtype=torch.float64).view(1, -1, 1, 1) for t in (ties.a, ties.c)]
        got = run_int_op("add", {"activation": "linear"}, ins, p).view(-1).numpy()
    else:
        fn = ops.add if impl == "reference" else kernels.add
        got = fn(ties.a, ties.z_a, ties.c, ties.z_c, ties.m_a, ties.m_c, shift, Z_OUT, BITS)
    assert np.array_equal(np.asarray(got).astype(np.uint8), want), f"{impl} seed {seed}"


def test_count_conv_ties() -> None:
    acc = np.array([3, -3, 4, 5, 1001]).reshape(5, 1, 1)
    one = np.ones(5, np.int64)
    # S = 1: odd products are ties; the last saturates (z 128 + 500 > 255) and does not count
    assert count_conv_ties(acc, one, one, one, Z_OUT, BITS) == 3
