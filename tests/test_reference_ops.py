"""Property tests of the NumPy reference against independent arithmetic (docs/arithmetic.md).

Where float math is exact (integer convolutions far below 2^53) the reference is compared with
PyTorch's float64 operators; the rounding and saturation rules are compared with Python's exact
rationals; everything else with straightforward loops written from the contract's text.
"""

from __future__ import annotations

from fractions import Fraction
from math import floor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sim.reference import ops
from sim.reference.randnet import random_weights
from sim.reference.requant import add_constants, conv_constants, quantize_multiplier
from sw.artifact import decode_codes, encode_codes, invalid_codes, pow2_max_exponent

SETTINGS = settings(max_examples=200, deadline=None)
FORMATS = [
    ("pow2", 3),
    ("pow2", 4),
    ("pow2", 5),
    ("pow2", 8),
    ("binary", 1),
    ("int", 8),
    ("int", 4),
]


def exact_round_half_up(num: int, den_pow: int) -> int:
    """floor(num / 2^S + 1/2) with exact rationals: the contract's rule written differently."""
    return floor(Fraction(num, 2**den_pow) + Fraction(1, 2)) if den_pow else num


# ---------------------------------------------------------------------------------------------
# Rounding and requantization


@SETTINGS
@given(st.integers(-(2**48), 2**48), st.integers(0, 47))
def test_round_shift_is_round_half_up(p: int, s: int) -> None:
    assert int(ops.round_shift(p, s)) == exact_round_half_up(p, s)


@pytest.mark.parametrize(
    ("p", "s", "want"),
    [
        (3, 1, 2),
        (-3, 1, -1),
        (-5, 2, -1),
        (-6, 2, -1),
        (-7, 2, -2),
        (5, 0, 5),
        (1, 1, 1),
        (-1, 1, 0),
    ],
)
def test_round_shift_ties_go_up(p: int, s: int, want: int) -> None:
    assert int(ops.round_shift(p, s)) == want


@SETTINGS
@given(
    acc=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=20),
    m_pos=st.integers(0, 2**16 - 1),
    m_neg=st.integers(0, 2**16 - 1),
    shift=st.integers(0, 47),
    bits=st.integers(2, 8),
    data=st.data(),
)
def test_requantize_matches_exact_rationals(
    acc: list[int], m_pos: int, m_neg: int, shift: int, bits: int, data: st.DataObject
) -> None:
    z = data.draw(st.integers(0, 2**bits - 1))
    a = np.array(acc, dtype=np.int64)[:, None, None]  # one channel per value
    n = len(acc)
    got = ops.requantize(
        a,
        np.full(n, m_pos, np.uint16),
        np.full(n, m_neg, np.uint16),
        np.full(n, shift, np.uint8),
        z,
        bits,
    )
    for x, g in zip(acc, got.reshape(-1), strict=True):
        m = m_pos if x >= 0 else m_neg
        want = min(max(z + exact_round_half_up(x * m, shift), 0), 2**bits - 1)
        assert int(g) == want


def test_requantize_saturates_and_keeps_zero() -> None:
    one = np.ones(1, np.uint16)
    acc = np.array([0, 2**31 - 1, -(2**31)], np.int64).reshape(3, 1, 1)
    c = {"m_pos": np.full(3, 65535, np.uint16), "m_neg": np.full(3, 65535, np.uint16)}
    out = ops.requantize(acc, c["m_pos"], c["m_neg"], np.zeros(3, np.uint8), 100, 8)
    assert out.reshape(-1).tolist() == [100, 255, 0]
    # A result exactly at the top code stays, one above clamps.
    at_top = ops.requantize(np.array([[[155]]]), one, one, np.zeros(1, np.uint8), 100, 8)
    above = ops.requantize(np.array([[[156]]]), one, one, np.zeros(1, np.uint8), 100, 8)
    assert int(at_top[0, 0, 0]) == 255 and int(above[0, 0, 0]) == 255
    below = ops.requantize(np.array([[[-101]]]), one, one, np.zeros(1, np.uint8), 100, 8)
    assert int(below[0, 0, 0]) == 0


@SETTINGS
@given(m=st.floats(1e-9, 60000.0), slope=st.sampled_from([0.1]))
def test_quantize_multiplier_is_normalised_and_accurate(m: float, slope: float) -> None:
    mq, s = quantize_multiplier(m)
    assert 0 <= mq <= 65535 and 0 <= s <= 47
    if s < 47:  # a larger shift would have overflowed 16 bits, so M is normalised
        assert round(m * 2.0 ** (s + 1)) > 65535
    if mq >= 2**15:
        assert abs(mq / 2**s - m) / m <= 2**-16
    mp, mn, sh = conv_constants(np.array([m]), "leaky", slope)
    if mp[0] >= 2**15:
        assert abs(int(mn[0]) / int(mp[0]) - slope) < 2**-12


@SETTINGS
@given(
    acc=st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=30),
    m=st.floats(1e-5, 0.5),
    z=st.integers(0, 255),
)
def test_leaky_requantization_is_within_one_code_of_float(acc: list[int], m: float, z: int) -> None:
    """Against float math: z + round(leaky(acc) * m), clamped; fixed point may differ by 1."""
    mp, mn, sh = conv_constants(np.array([m]), "leaky")
    a = np.array(acc, np.int64).reshape(1, 1, -1)
    got = ops.requantize(a, mp, mn, sh, z, 8).reshape(-1).astype(np.int64)
    x = np.array(acc, np.float64)
    want = np.clip(z + np.floor(np.where(x >= 0, x, 0.1 * x) * m + 0.5), 0, 255)
    assert np.all(np.abs(got - want) <= 1)


@SETTINGS
@given(
    s_a=st.floats(0.001, 1.0),
    s_c=st.floats(0.001, 1.0),
    s_y=st.floats(0.001, 1.0),
    seed=st.integers(0, 2**32 - 1),
    relu=st.booleans(),
)
def test_add_matches_exact_rationals(
    s_a: float, s_c: float, s_y: float, seed: int, relu: bool
) -> None:
    assume(max(s_a, s_c) / s_y < 60000)
    rng = np.random.default_rng(seed)
    a, c = rng.integers(0, 256, (2, 3, 4, 5))
    za, zc, zy = (int(x) for x in rng.integers(0, 256, 3))
    m_a, m_c, sh = add_constants(s_a, s_c, s_y)
    got = ops.add(a, za, c, zc, m_a, m_c, sh, zy, 8, relu=relu)
    for idx in np.ndindex(a.shape):
        t = m_a * (int(a[idx]) - za) + m_c * (int(c[idx]) - zc)
        t = max(t, 0) if relu else t
        assert int(got[idx]) == min(max(zy + exact_round_half_up(t, sh), 0), 255)


# ---------------------------------------------------------------------------------------------
# Weight codes


@pytest.mark.parametrize(("fmt", "bits"), FORMATS)
def test_every_code_decodes_as_the_table_says(fmt: str, bits: int) -> None:
    codes = np.arange(2**bits, dtype=np.uint8)
    bad = invalid_codes(codes, fmt, bits)
    vals = decode_codes(codes[~bad], fmt, bits)
    if fmt == "pow2":
        e = pow2_max_exponent(bits)
        want = {0} | {s * 2**k for s in (1, -1) for k in range(e + 1)}
        assert int(bad.sum()) == 2**bits - (2 * (e + 1) + 1)
        assert bad[1 << (bits - 1)]  # negative zero is rejected
    elif fmt == "binary":
        want = {1, -1}
    else:
        lim = 2 ** (bits - 1) - 1
        want = set(range(-lim, lim + 1))
        assert bad.tolist().count(True) == 1 and bad[1 << (bits - 1)]
    assert sorted(vals.tolist()) == sorted(want)  # each value has exactly one code
    np.testing.assert_array_equal(encode_codes(vals, fmt, bits), codes[~bad])


def test_pow2_decoding_examples() -> None:
    # 4-bit: sign bit 3, magnitude field m: v = +-2^(m-1)
    assert decode_codes(np.array([0b0001, 0b0111, 0b1001, 0b1111]), "pow2", 4).tolist() == [
        1,
        64,
        -1,
        -64,
    ]
    assert invalid_codes(np.array([0b10000]), "pow2", 5).all()
    assert decode_codes(np.array([16, 144]), "pow2", 8).tolist() == [2**15, -(2**15)]
    assert invalid_codes(np.array([17]), "pow2", 8).all()


# ---------------------------------------------------------------------------------------------
# Convolution against float64 PyTorch (exact here: every sum is an integer far below 2^53)

conv_cases = st.fixed_dictionaries(
    {
        "cin": st.integers(1, 19),
        "cout": st.integers(1, 19),
        "h": st.integers(1, 13),
        "w": st.integers(1, 13),
        "k": st.sampled_from([1, 3, 5]),
        "stride": st.sampled_from([1, 2]),
        "depthwise": st.booleans(),
        "fmt": st.sampled_from(FORMATS),
        "zero": st.integers(0, 255),
        "padded": st.booleans(),
        "seed": st.integers(0, 2**32 - 1),
    }
)


def make_conv(case: dict) -> tuple:
    rng = np.random.default_rng(case["seed"])
    k = case["k"]
    pad = k // 2 if case["padded"] else 0
    assume(case["h"] + 2 * pad >= k and case["w"] + 2 * pad >= k)
    cin = case["cin"]
    groups = cin if case["depthwise"] else 1
    cout = cin if case["depthwise"] else case["cout"]
    fmt, bits = case["fmt"]
    v = random_weights(rng, (cout, cin // groups, k, k), fmt, bits)
    q = rng.integers(0, 256, (cin, case["h"], case["w"]))
    bias = rng.integers(-(2**20), 2**20, cout)
    return q, v, bias, pad, groups


@SETTINGS
@given(conv_cases)
def test_conv_equals_float64_torch(case: dict) -> None:
    q, v, bias, pad, groups = make_conv(case)
    z = case["zero"]
    got = ops.conv2d(q, z, v, bias, case["stride"], pad, groups)
    x = torch.from_numpy((q - z).astype(np.float64))[None]
    want = F.conv2d(
        x, torch.from_numpy(v.astype(np.float64)), torch.from_numpy(bias.astype(np.float64)),
        stride=case["stride"], padding=pad, groups=groups,
    )[0].numpy()  # fmt: skip
    np.testing.assert_array_equal(got, want.astype(np.int64))


def test_conv_padding_reads_the_zero_point() -> None:
    """A 1x1 map through a padded 3x3: only the centre tap sees data."""
    q = np.array([[[200]]])
    v = np.ones((1, 1, 3, 3), np.int64)
    assert ops.conv2d(q, 50, v, np.array([7]), 1, 1).item() == 7 + 150
    # Zero-point folding (section 4.3) gives the same number at the border.
    folded = ops.conv2d(q, 0, v, np.array([7 - 50 * 9]), 1, 1)
    assert folded.item() != 157  # padding with 0 instead of z is *not* the contract...
    q_padded = np.pad(q, ((0, 0), (1, 1), (1, 1)), constant_values=50)
    assert (
        ops.conv2d(q_padded, 0, v, np.array([7 - 50 * 9]), 1, 0).item() == 157
    )  # ...padding with z is


# ---------------------------------------------------------------------------------------------
# Maxpool and upsample


def naive_maxpool(q: np.ndarray, k: int, s: int, p0: int, p1: int) -> np.ndarray:
    c, h, w = q.shape
    ho, wo = (h + p0 + p1 - k) // s + 1, (w + p0 + p1 - k) // s + 1
    out = np.zeros((c, ho, wo), np.int64)
    for ch in range(c):
        for i in range(ho):
            for j in range(wo):
                taps = [
                    q[ch, i * s - p0 + u, j * s - p0 + t]
                    for u in range(k)
                    for t in range(k)
                    if 0 <= i * s - p0 + u < h and 0 <= j * s - p0 + t < w
                ]
                out[ch, i, j] = max(taps)
    return out


@SETTINGS
@given(
    c=st.integers(1, 5),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    k=st.sampled_from([2, 3, 5, 9]),
    s=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**32 - 1),
)
def test_maxpool_matches_naive_loops(c: int, h: int, w: int, k: int, s: int, seed: int) -> None:
    p0 = (k - 1) // 2
    p1 = k - 1 - p0
    q = np.random.default_rng(seed).integers(0, 256, (c, h, w)).astype(np.uint8)
    np.testing.assert_array_equal(ops.maxpool(q, k, s, p0, p1), naive_maxpool(q, k, s, p0, p1))


@SETTINGS
@given(c=st.integers(1, 4), h=st.integers(1, 7), w=st.integers(1, 7), seed=st.integers(0, 99))
def test_upsample_equals_torch_nearest(c: int, h: int, w: int, seed: int) -> None:
    q = np.random.default_rng(seed).integers(0, 256, (c, h, w)).astype(np.uint8)
    want = F.interpolate(
        torch.from_numpy(q.astype(np.float32))[None], scale_factor=2, mode="nearest"
    )
    np.testing.assert_array_equal(ops.upsample2x(q), want[0].numpy().astype(np.uint8))
