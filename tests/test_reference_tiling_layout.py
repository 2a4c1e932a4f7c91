"""Column-strip tiling equals untiled execution; DDR layouts round-trip and match their formulas."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sim.reference import layout, run_network, run_node, tiling
from sim.reference.randnet import random_conv, random_network, random_quant
from sw.artifact import Node, Quant, validate

SETTINGS = settings(max_examples=200, deadline=None)


@SETTINGS
@given(
    c=st.integers(1, 9),
    h=st.integers(1, 12),
    w=st.integers(1, 23),
    k=st.sampled_from([1, 3, 5]),
    stride=st.sampled_from([1, 2]),
    depthwise=st.booleans(),
    padded=st.booleans(),
    strip=st.integers(1, 25),
    seed=st.integers(0, 2**32 - 1),
)
def test_conv_tiled_equals_untiled(
    c: int,
    h: int,
    w: int,
    k: int,
    stride: int,
    depthwise: bool,
    padded: bool,
    strip: int,
    seed: int,
) -> None:
    pad = k // 2 if padded else 0
    assume(h + 2 * pad >= k and w + 2 * pad >= k)
    rng = np.random.default_rng(seed)
    qin = random_quant(rng)
    fmt, bits = ("int", 8) if depthwise else ("pow2", 4)
    node = random_conv(rng, "c", "x", (c, h, w), qin, kernel=k, stride=stride, depthwise=depthwise,
                       weight_format=fmt, weight_bits=bits, pad=pad)  # fmt: skip
    x = rng.integers(0, 256, (c, h, w)).astype(np.uint8)
    whole = run_node(node, [x], [qin])
    np.testing.assert_array_equal(run_node(node, [x], [qin], strip_width=strip), whole)


@SETTINGS
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 19),
    k=st.sampled_from([3, 5, 9]),
    strip=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_maxpool_and_upsample_tiled_equal_untiled(
    h: int, w: int, k: int, strip: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    q = Quant(8, 3, 0.1)
    x = rng.integers(0, 256, (3, h, w)).astype(np.uint8)
    p0 = (k - 1) // 2
    pool = Node("p", "maxpool", ["x"], {"kernel": k, "stride": 1, "pad_before": p0,
                                         "pad_after": k - 1 - p0}, q)  # fmt: skip
    up = Node("u", "upsample", ["x"], {}, q)
    for node in (pool, up):
        whole = run_node(node, [x], [q])
        np.testing.assert_array_equal(run_node(node, [x], [q], strip_width=strip), whole)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(5, 20),
    w=st.integers(5, 20),
    strip=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    dw_fmt=st.sampled_from(["int", "pow2"]),
    act_bits=st.sampled_from([4, 8]),
)
def test_whole_network_tiled_equals_untiled(
    h: int, w: int, strip: int, seed: int, dw_fmt: str, act_bits: int
) -> None:
    rng = np.random.default_rng(seed)
    art = random_network(rng, h, w, act_bits=act_bits, depthwise_format=dw_fmt)
    validate(art)
    img = rng.integers(0, 256, art.input_shape).astype(np.uint8)
    whole = run_network(art, img, keep_all=True)
    tiled = run_network(art, img, strip_width=strip, keep_all=True)
    for name, v in whole.items():
        np.testing.assert_array_equal(tiled[name], v, err_msg=f"{name}, seed {seed}")
        assert int(v.max()) <= (1 << art.quant_of(name).bits) - 1


def test_random_network_covers_every_op_and_is_not_degenerate() -> None:
    art = random_network(np.random.default_rng(1))
    assert {n.op for n in art.nodes} == {"conv", "add", "concat", "upsample", "maxpool"}
    assert {n.attrs.get("groups", 1) > 1 for n in art.nodes if n.op == "conv"} == {True, False}
    outs = run_network(art, np.random.default_rng(2).integers(0, 256, art.input_shape, np.uint8))
    for v in outs.values():  # the heads must carry information, not one saturated value
        assert len(np.unique(v)) > 10


def test_strips_cover_the_map_once() -> None:
    assert list(tiling.strips(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(tiling.strips(3, 8)) == [(0, 3)]
    # A 3x3 stride-1 pad-1 conv: strip [4, 8) reads columns 3..8, a halo of k - st = 2.
    assert tiling.window_columns(3, 1, 1, 4, 8) == (3, 8)
    assert tiling.window_columns(3, 2, 1, 0, 4) == (-1, 7)


# ---------------------------------------------------------------------------------------------
# DDR layout


@SETTINGS
@given(
    c=st.integers(1, 40),
    h=st.integers(1, 6),
    w=st.integers(1, 7),
    lanes=st.sampled_from([1, 4, 8, 16, 32]),
    zero=st.integers(0, 255),
    seed=st.integers(0, 99),
)
def test_activation_layout_round_trip_and_address(
    c: int, h: int, w: int, lanes: int, zero: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 256, (c, h, w)).astype(np.uint8)
    buf = layout.activation_to_ddr(q, lanes, zero)
    assert buf.size == -(-c // lanes) * lanes * h * w
    np.testing.assert_array_equal(layout.activation_from_ddr(buf, (c, h, w), lanes), q)
    for _ in range(10):
        ci, i, j = int(rng.integers(c)), int(rng.integers(h)), int(rng.integers(w))
        assert buf[layout.activation_address(ci, i, j, (c, h, w), lanes)] == q[ci, i, j]
    pad_channels = [cc for cc in range(c, -(-c // lanes) * lanes)]
    for cc in pad_channels:  # padding lanes read as real zero
        assert buf[((cc // lanes * h) * w) * lanes + cc % lanes] == zero


@SETTINGS
@given(bits=st.sampled_from([1, 2, 3, 4, 5, 8]), n=st.integers(0, 50), seed=st.integers(0, 99))
def test_code_packing_round_trip(bits: int, n: int, seed: int) -> None:
    codes = np.random.default_rng(seed).integers(0, 2**bits, n).astype(np.uint8)
    packed = layout.pack_codes(codes, bits)
    cb = layout.container_bits(bits)
    assert packed.size == -(-n * cb // 8)
    np.testing.assert_array_equal(layout.unpack_codes(packed, bits, n), codes)


def test_code_packing_is_little_endian() -> None:
    assert layout.pack_codes(np.array([0x1, 0xF, 0x3]), 4).tolist() == [0xF1, 0x03]
    assert layout.pack_codes(np.array([1, 0, 1, 1, 0, 0, 0, 1, 1]), 1).tolist() == [0b10001101, 1]


def test_weight_orders_follow_the_formula() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, (5, 7, 3, 3)).astype(np.uint8)
    t = layout.dense_weight_order(codes, lanes_in=4, lanes_out=2)
    assert t.shape == (3, 2, 3, 3, 2, 4)
    for o, i, u, w in [(0, 0, 0, 0), (4, 6, 2, 1), (3, 5, 1, 2)]:
        assert t[o // 2, i // 4, u, w, o % 2, i % 4] == codes[o, i, u, w]
    assert t[2, 1, 0, 0, 1, 3] == 0  # padding (output 5, input 7) is the zero code
    dw = layout.depthwise_weight_order(codes[:, :1], lanes=4)
    assert dw.shape == (2, 3, 3, 4) and dw[1, 2, 1, 0] == codes[4, 0, 2, 1] and dw[1, 0, 0, 3] == 0


def test_channel_records() -> None:
    rec = layout.channel_records(
        np.array([-2, 70000], np.int32), np.array([40000, 1], np.uint16),
        np.array([4000, 0], np.uint16), np.array([20, 47], np.uint8), lanes_out=4,
    )  # fmt: skip
    assert rec.size == 4 * 16
    assert rec[:16].tobytes() == (
        (-2).to_bytes(4, "little", signed=True) + (40000).to_bytes(2, "little")
        + (4000).to_bytes(2, "little") + bytes([20]) + bytes(7)
    )  # fmt: skip
    assert rec[32:].tobytes() == bytes(32)
