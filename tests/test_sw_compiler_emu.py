"""The compiler and the emulator backend: bit-exact against sim.reference on random networks,
and the plan's resource, layout and memory-reuse rules checked directly."""

from __future__ import annotations

import numpy as np
import pytest

from sim.reference import run_network
from sim.reference.randnet import conv_chain, random_conv, random_network
from sw.accel_config import AccelConfig
from sw.artifact import Artifact, Node, Output, Quant
from sw.backends.emu import EmuBackend
from sw.compiler import CompileError, compile_model, layer_limit, lower
from sw.contract.layout import CHANNEL_RECORD, unpack_codes
from sw.descriptors import OP_ADD, Descriptor
from sw.plan import CPUStep, InputWindows, PLStep

CONFIGS = [
    AccelConfig(),
    AccelConfig(lanes=8, dense_out_lanes=16, max_strip=7, input_buffer_words=2048),
    AccelConfig(lanes=4, dense_out_lanes=4, max_strip=3, input_buffer_words=512),
    AccelConfig(lanes=16, dense_out_lanes=8, max_strip=64, weight_buffer_bytes=8192),
]


def _check_equal(
    art: Artifact, cfg: AccelConfig, rng: np.random.Generator, frames: int = 2, **kw: object
) -> None:
    plan = compile_model(art, cfg, **kw)
    with EmuBackend(plan) as be:
        for _ in range(frames):  # a second frame catches state leaking between frames
            qmax = art.input_quant.qmax
            img = rng.integers(0, qmax + 1, art.input_shape).astype(np.uint8)
            want = run_network(art, img)
            got = be.run(img)
            assert set(got) == set(want)
            for name in want:
                np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("seed", range(16))
def test_emu_equals_reference_random_networks(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    h, w = (int(x) for x in rng.integers(8, 41, size=2))
    art = random_network(
        rng,
        height=h,
        width=w,
        weight_bits=int(rng.choice([3, 4, 4, 5])),  # 5-bit dense runs on the CPU
        act_bits=int(rng.choice([4, 8])),
        depthwise_format=str(rng.choice(["int", "pow2"])),
    )
    cfg = CONFIGS[seed % len(CONFIGS)]
    _check_equal(art, cfg, rng, base=int(rng.integers(0, 1 << 20)) * 64)


@pytest.mark.parametrize("seed", range(8))
def test_emu_equals_reference_pow2x2_dense(seed: int) -> None:
    """Every dense conv two-term pow2 (two passes of the dense engine, two term blocks)."""
    rng = np.random.default_rng(2000 + seed)
    h, w = (int(x) for x in rng.integers(8, 33, size=2))
    art = random_network(
        rng,
        height=h,
        width=w,
        act_bits=int(rng.choice([4, 8])),
        depthwise_format=str(rng.choice(["int", "pow2"])),
        dense_format="pow2x2",
    )
    cfg = CONFIGS[seed % len(CONFIGS)]
    plan = compile_model(art, cfg)
    assert not [s for s in plan.steps if isinstance(s, CPUStep) and s.node.op == "conv"]
    _check_equal(art, cfg, rng)


def test_binary_and_pow2_3bit_and_all_kernels() -> None:
    rng = np.random.default_rng(7)
    art = conv_chain(
        rng,
        [
            {"out_channels": 20, "kernel": 3, "stride": 2},
            {"out_channels": 17, "kernel": 1, "weight_format": "binary", "weight_bits": 1},
            {
                "kernel": 5,
                "stride": 2,
                "depthwise": True,
                "weight_format": "pow2",
                "weight_bits": 3,
            },
            {"kernel": 3, "depthwise": True, "weight_format": "int", "weight_bits": 8, "pad": 0},
            {"out_channels": 9, "kernel": 3, "weight_format": "pow2", "weight_bits": 3},
            {"out_channels": 5, "kernel": 5},  # dense 5x5: the RTL takes it
            {"out_channels": 6, "kernel": 1, "weight_format": "pow2", "weight_bits": 8},  # CPU
            {"out_channels": 7, "kernel": 3, "weight_format": "int", "weight_bits": 8},  # CPU
        ],
        shape=(3, 29, 23),
        bits=4,
    )
    for cfg in CONFIGS:
        plan = compile_model(art, cfg)
        engines = {li.name: li.engine for li in plan.layers}
        assert [engines[f"c{i}"] for i in range(8)] == ["PL"] * 6 + ["CPU"] * 2
        assert "8-bit pow2 weights not supported by the dense engine" in plan.layers[6].note
        assert "8-bit int weights not supported by the dense engine" in plan.layers[7].note
        _check_equal(art, cfg, rng)


def test_strips_fit_the_buffers_and_are_balanced() -> None:
    rng = np.random.default_rng(3)
    art = conv_chain(
        rng,
        [
            {"out_channels": 48, "kernel": 3},
            {"out_channels": 40, "kernel": 3},
            {"kernel": 5, "depthwise": True, "weight_format": "int", "weight_bits": 8},
        ],
        shape=(3, 9, 100),
    )
    cfg = AccelConfig(lanes=8, max_strip=40, input_buffer_words=1200)
    plan = compile_model(art, cfg)
    for li, d in zip(plan.layers, plan.descriptors, strict=True):
        kind = "dense" if d.op == 1 else "depthwise"
        assert d.strip_width <= cfg.max_strip
        assert not layer_limit(kind, d.in_channels, d.out_channels, d.kernel, d.stride,
                               d.strip_width, cfg)  # fmt: skip
        assert li.strips == -(-d.out_width // d.strip_width)
        assert (li.strips - 1) * d.strip_width < d.out_width
    # 6 input groups x (s + 2) columns <= 1200 / 8 banks gives s <= 23: 5 strips of 20
    assert (plan.layers[1].strips, plan.layers[1].strip_width) == (5, 20)
    # the depthwise 5x5 reads 5 groups x (s + 4) <= 150: s <= 26 -> 4 strips of 25
    assert (plan.layers[2].strips, plan.layers[2].strip_width) == (4, 25)
    _check_equal(art, cfg, rng, frames=1)


def test_resource_formulas_agree_with_the_rtl_parameters() -> None:
    """The compiler and the RTL size the buffers with the same contract formulas
    (sw/contract/buffers.py): one definition, imported by both."""
    params = pytest.importorskip("hw.params")
    from sw import compiler
    from sw.contract import buffers

    assert compiler.BANKS == params.BANKS == buffers.BANKS
    assert params.DENSE_CODE_BITS == buffers.DENSE_CODE_BITS
    for cfg in [
        AccelConfig(),
        AccelConfig(input_buffer_words=8192, weight_buffer_bytes=32768),
        AccelConfig(max_strip=64, input_buffer_words=32768, max_channels=512),
    ]:
        p = params.check(cfg)
        assert compiler.bank_words(cfg) == p.bank_words
        assert compiler.weight_block_capacity(cfg) == p.weight_blocks
        assert compiler.max_channels(cfg) // cfg.lanes == p.channel_groups


def test_limits_fail_with_layer_and_limit_or_fall_back() -> None:
    rng = np.random.default_rng(5)
    # 3x3 64 -> 16: one group of 16 output channels needs 36 blocks (4608 bytes) on its own
    art = conv_chain(rng, [{"out_channels": 64, "kernel": 1}, {"out_channels": 16, "kernel": 3}])
    cfg = AccelConfig(weight_buffer_bytes=4096)
    with pytest.raises(
        CompileError, match=r"layer 'c1' .*4608 bytes.*16 output channels at a time"
    ) as e:
        compile_model(art, cfg)
    assert "\n" not in str(e.value)
    plan = compile_model(art, cfg, cpu_fallback=True)
    assert [li.engine for li in plan.layers] == ["PL", "CPU"]
    _check_equal(art, cfg, rng, frames=1, cpu_fallback=True)

    wide = conv_chain(
        rng, [{"out_channels": 8, "kernel": 3}, {"out_channels": 8, "kernel": 3}], shape=(300, 6, 6)
    )
    small = AccelConfig(lanes=4, max_strip=8, input_buffer_words=300)
    with pytest.raises(CompileError, match=r"layer 'c0'.*input_buffer_words = 300 / 8 banks"):
        compile_model(wide, small)


def test_concat_by_addressing_and_memory_reuse() -> None:
    rng = np.random.default_rng(11)
    inq = Quant(8, 0, float(np.float32(1 / 255)))
    shared = Quant(8, 20, 0.05)
    nodes = [random_conv(rng, "a", "image", (3, 16, 16), inq, out_channels=16, kernel=3)]
    nodes.append(
        random_conv(
            rng, "b", "a", (16, 16, 16), nodes[0].quant, out_channels=16, kernel=1, out_quant=shared
        )
    )
    nodes.append(
        Node(
            "up_src",
            "maxpool",
            ["b"],
            {"kernel": 3, "stride": 1, "pad_before": 1, "pad_after": 1},
            shared,
        )
    )
    nodes.append(
        random_conv(
            rng, "c", "a", (16, 16, 16), nodes[0].quant, out_channels=5, kernel=3, out_quant=shared
        )
    )
    nodes.append(Node("cat", "concat", ["b", "up_src", "c"], {}, shared))
    nodes.append(random_conv(rng, "d", "cat", (37, 16, 16), shared, out_channels=8, kernel=1))
    nodes.append(random_conv(rng, "e", "d", (8, 16, 16), nodes[-1].quant, out_channels=8, kernel=3))
    nodes.append(random_conv(rng, "f", "e", (8, 16, 16), nodes[-1].quant, out_channels=8, kernel=3))
    art = Artifact("cat", "image", (3, 16, 16), inq, nodes, [Output("f"), Output("cat")])
    art.shapes()
    plan = compile_model(art, AccelConfig(lanes=16))
    by_name = {li.name: li for li in plan.layers}
    assert by_name["cat"].engine == "addr"
    cat = plan.regions["cat"]
    assert plan.regions["b"].offset == cat.offset
    assert plan.regions["up_src"].offset == cat.offset + 16 * 16 * 16
    assert plan.regions["c"].offset == cat.offset + 2 * 16 * 16 * 16
    # 'a' dies after 'c'; 'e' and 'f' come later and may take its place
    acts = [r for r in plan.regions.values() if r.kind == "activation" and r.root == r.name]
    assert plan.size - plan.static_size < sum(r.size for r in acts)
    _check_equal(art, AccelConfig(lanes=16), rng)
    # with 8 lanes the parts still fill whole groups; with 32 lanes 'b' (16 ch) does not
    assert {li.name: li.engine for li in compile_model(art, AccelConfig(lanes=8)).layers}[
        "cat"
    ] == "addr"
    wide = compile_model(art, AccelConfig(lanes=32, max_strip=16))
    assert {li.name: li.engine for li in wide.layers}["cat"] == "CPU"
    _check_equal(art, AccelConfig(lanes=32, max_strip=16), rng)


@pytest.mark.parametrize("seed", range(4))
def test_live_tensors_never_share_memory(seed: int) -> None:
    rng = np.random.default_rng(seed)
    art = random_network(rng, height=32, width=32)
    cfg = AccelConfig(lanes=4)
    plan = compile_model(art, cfg)
    g = lower(art, cfg)
    order = [layer.name for layer in g.layers]
    last = {n: i for i, layer in enumerate(g.layers) for n in layer.inputs}
    for o in art.outputs:
        last[o.node] = len(order)
    span = {n: (i, max(i, last.get(n, i))) for i, n in enumerate(order)}
    span[plan.input_name] = (-1, len(order))  # the frame's tensor (packed windows here)
    regs = plan.regions
    names = list(span)
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            (a0, a1), (b0, b1) = span[x], span[y]
            rx, ry = regs[x], regs[y]
            if a0 <= b1 and b0 <= a1 and rx.root != ry.root:
                assert rx.offset + rx.size <= ry.offset or ry.offset + ry.size <= rx.offset, (x, y)
    for r in regs.values():
        assert r.offset % 64 == 0 and (plan.base + r.offset) % 64 == 0


def test_ddr_image_padding_and_descriptors() -> None:
    rng = np.random.default_rng(2)
    art = random_network(rng, height=16, width=16)
    cfg = AccelConfig(lanes=16, dense_out_lanes=8)
    plan = compile_model(art, cfg, base=0x3000_0000)
    prog = plan.memory[plan.regions["program"].offset :][: 64 * len(plan.descriptors)]
    for i, d in enumerate(plan.descriptors):
        assert Descriptor.unpack(prog[64 * i : 64 * i + 64].tobytes()) == d
        assert d.in_addr >= 0x3000_0000 and d.out_addr >= 0x3000_0000
    for li in plan.layers:
        if li.engine != "PL" or li.op == "add":
            continue
        node = art.node(li.name)
        cout = node.attrs["out_channels"]
        recs = plan.memory[plan.regions[f"{li.name}.consts"].offset :][
            : plan.regions[f"{li.name}.consts"].size
        ].view(CHANNEL_RECORD)
        np.testing.assert_array_equal(recs["bias"][:cout], node.tensors["bias"])
        assert not recs[cout:].view(np.uint8).any(), "padded channel records must be zero"
        wr = plan.regions[f"{li.name}.weights"]
        bits = node.attrs["weight_bits"]
        codes = unpack_codes(plan.memory[wr.offset : wr.offset + wr.size], bits, wr.size * 8)
        assert np.count_nonzero(codes) == np.count_nonzero(node.tensors["codes"])
    steps = plan.steps
    assert sum(s.count for s in steps if isinstance(s, PLStep)) == len(plan.descriptors)
    assert all(isinstance(s, CPUStep) for s in steps if not isinstance(s, PLStep))
    adds = [d for d in plan.descriptors if d.op == OP_ADD]
    assert adds and all(d.const_addr == 0 for d in adds)
    text = plan.table()
    assert all(li.name in text for li in plan.layers) and "DDR" in text
    # the input padding lanes hold the input zero point in the static image
    inp = plan.regions[plan.input_name]  # the packed windows of the 3x3/2 first conv
    c, h, w = inp.shape
    assert (c, h, w) == (27, 8, 8)
    lanes = plan.memory[inp.offset : inp.offset + inp.size].reshape(2, h, w, 16)
    assert (lanes[1, :, :, c - 16 :] == art.input_quant.zero).all()


def test_max_channels_limit() -> None:
    """More output channels than the constant buffer holds: a dense conv runs in passes (its
    note gives the limit), a depthwise one is refused (its passes would need input slices)."""
    rng = np.random.default_rng(9)
    art = conv_chain(rng, [{"out_channels": 40, "kernel": 1}])
    cfg = AccelConfig(lanes=8, max_channels=32)  # type: ignore[call-arg]
    plan = compile_model(art, cfg)
    assert [li.name for li in plan.layers] == ["c0.oc0-32", "c0.oc32-40", "c0"]
    assert "40 output channels > max_channels = 32" in plan.layers[0].note
    _check_equal(art, cfg, rng, frames=1)
    dw = conv_chain(rng, [{"out_channels": 40, "kernel": 1}, {"kernel": 3, "depthwise": True}])
    with pytest.raises(CompileError, match=r"layer 'c1' .*40 output channels > max_channels = 32"):
        compile_model(dw, cfg)
    _check_equal(dw, cfg, rng, frames=1, cpu_fallback=True)


@pytest.mark.parametrize("fmt", ["pow2", "pow2x2"])
@pytest.mark.parametrize("cfg_index", range(len(CONFIGS)))
def test_large_dense_conv_runs_in_output_channel_passes(fmt: str, cfg_index: int) -> None:
    """The issue's case: a 3x3 128 -> 128 conv (73,728 bytes of 4-bit weights, twice that as
    pow2x2) over a 64 KiB weight buffer runs on the PL in equal passes of whole channel groups,
    their outputs side by side in the layer's buffer (no copy), bit-exact with the reference;
    the next layer reads the joined tensor."""
    cfg = CONFIGS[cfg_index]
    seed = 40 + cfg_index
    rng = np.random.default_rng(seed)
    bits = 8 if fmt == "pow2x2" else 4
    art = conv_chain(
        rng,
        [
            {"out_channels": 128, "kernel": 1},
            {"out_channels": 128, "kernel": 3, "weight_format": fmt, "weight_bits": bits},
            {"out_channels": 24, "kernel": 1},
        ],
        shape=(3, 8, 6),
    )
    terms = 2 if fmt == "pow2x2" else 1
    group = int(np.lcm(cfg.lanes, cfg.dense_out_lanes))
    one = layer_limit("dense", 128, group, 3, 1, 1, cfg, terms)
    if one:  # one channel group alone overflows a buffer: no pass can help, the error says so
        assert "input_buffer_words" in one or "weight_buffer_bytes" in one
        with pytest.raises(CompileError, match=rf"layer 'c1' .*{group} output channels at a"):
            compile_model(art, cfg)
        return
    plan = compile_model(art, cfg)
    passes = [li for li in plan.layers if li.name.startswith("c1.")]
    whole = layer_limit("dense", 128, 128, 3, 1, 1, cfg, terms)
    assert bool(whole) == (len(passes) > 1), f"{whole!r}, {[li.name for li in passes]}"
    if passes:
        assert all(li.engine == "PL" and "pass" in li.note for li in passes)
        sizes = [li.out_shape[0] for li in passes]
        assert sum(sizes) == 128 and all(c % group == 0 for c in sizes[:-1])
        assert max(sizes) - min(sizes) <= group, f"passes not even: {sizes}"
        assert plan.layers[[li.name for li in plan.layers].index("c1")].engine == "addr"
    assert not [s for s in plan.steps if isinstance(s, CPUStep)], "nothing on the CPU"
    _check_equal(art, cfg, rng)


def test_output_channel_passes_on_an_odd_map_join_on_the_cpu() -> None:
    """On a 9x7 map a pass of 3 channel groups does not start 64-byte aligned (3 x 63 x 16
    bytes), so the passes cannot share the output buffer: the join is a CPU concat, still exact."""
    rng = np.random.default_rng(44)
    art = conv_chain(
        rng,
        [
            {"out_channels": 128, "kernel": 1},
            {"out_channels": 128, "kernel": 3, "weight_format": "pow2x2", "weight_bits": 8},
        ],
        shape=(3, 9, 7),
    )
    plan = compile_model(art, AccelConfig())
    assert [li.engine for li in plan.layers] == ["PL", "PL", "PL", "PL", "CPU"]
    assert [li.out_shape[0] for li in plan.layers[1:4]] == [48, 48, 32]
    _check_equal(art, AccelConfig(), rng)


def test_large_accumulators_take_the_float64_path_exactly() -> None:
    """Biases near 2^30 push the section 4.3 bound past 2^24: the kernels must switch to
    float64 (float32 would round) and requantize products near 2^47 exactly."""
    from sim.reference.requant import conv_constants
    from sw import kernels

    rng = np.random.default_rng(21)
    art = conv_chain(rng, [{"out_channels": 24, "kernel": 3},
                       {"kernel": 3, "depthwise": True, "weight_format": "int", "weight_bits": 8},
                       {"out_channels": 16, "kernel": 1, "activation": "linear"}])  # fmt: skip
    for node in art.nodes:
        cout = node.attrs["out_channels"]
        big = rng.integers(-(2**30), 2**30, size=cout)
        node.tensors["bias"] = big.astype(np.int32)
        # multipliers that spread +-2^30 over the code range, with odd shifts and rounding ties
        mp, mn, sh = conv_constants(rng.uniform(0.5, 2.0, cout) * 255 / 2**31,
                                    node.attrs["activation"])  # fmt: skip
        node.tensors.update(m_pos=mp, m_neg=mn, shift=sh)
        v = np.ones((1, 1, 1, 1))
        assert kernels.acc_dtype(node.tensors["bias"], v, 255) == np.float64
    art.shapes()
    _check_equal(art, AccelConfig(), rng, frames=3)
    assert kernels.acc_dtype(np.array([100]), np.ones((1, 8, 3, 3)), 255) == np.float32


@pytest.mark.parametrize("seed", range(3))
def test_requantize_exact_for_every_shift(seed: int) -> None:
    """All shifts 0..47, accumulators over the whole 32-bit range, and products just below a
    rounding tie at large shifts, where z_out + P / 2^S would round in float64."""
    from sim.reference import ops
    from sw import kernels

    rng = np.random.default_rng(seed)
    c, n = 48, 2000
    shift = np.arange(c, dtype=np.uint8)
    m_pos = rng.integers(0, 2**16, c).astype(np.uint16)
    m_neg = (m_pos // 10).astype(np.uint16)
    acc = rng.integers(-(2**31), 2**31, (c, n), dtype=np.int64)
    # P = acc * M = 2^45 - 1 with S = 46: P / 2^S + 1/2 = 1 - 2^-46, whose floor is 0; added to
    # z_out = 200 first it would round up to 201. (M, acc) pairs with that product:
    for i, (m, a) in enumerate([(19561, 1798700071), (23311, 1509346321), (32767, 1073774593)]):
        m_pos[46 - i] = m
        acc[46 - i, :4] = [a, -a, a + 1, a - 1]
    shift[44:47] = 46
    for z, bits in [(0, 8), (200, 8), (255, 8), (7, 4), (128, 8)]:
        for mn in (m_neg, m_pos):  # leaky-like and linear
            want = ops.requantize(acc, m_pos, mn, shift, z, bits)
            got = kernels.requantize(acc.astype(np.float64), m_pos, mn, shift, z, bits)
            np.testing.assert_array_equal(got, want)


# -- the first conv over packed input windows (compiler pass pack_input_windows) -----------------


WINDOWS = [(3, 2, 1, 0), (3, 1, 1, 37), (3, 1, 0, 200), (5, 2, 2, 9)]


@pytest.mark.parametrize(("kernel", "stride", "pad", "zero"), WINDOWS)
def test_input_windows_pack_is_the_conv_window(kernel: int, stride: int, pad: int,
                                               zero: int) -> None:  # fmt: skip
    """InputWindows.pack against the definition, element by element (border taps = zero)."""
    rng = np.random.default_rng(kernel * 100 + stride * 10 + pad)
    src = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    win = InputWindows(kernel, stride, pad, zero)
    got = win.pack(src)
    c, ho, wo = win.out_shape(3, 9, 11)
    assert got.shape == (ho, wo, c) == (ho, wo, kernel * kernel * 3)
    for i in range(ho):
        for j in range(wo):
            for u in range(kernel):
                for t in range(kernel):
                    y, x = i * stride + u - pad, j * stride + t - pad
                    inside = 0 <= y < 9 and 0 <= x < 11
                    want = src[y, x] if inside else np.full(3, zero, np.uint8)
                    k = (u * kernel + t) * 3
                    np.testing.assert_array_equal(got[i, j, k : k + 3], want, err_msg=f"{i, j}")


@pytest.mark.parametrize("cfg_index", range(len(CONFIGS)))
@pytest.mark.parametrize("zero", [0, 113])
def test_packed_first_conv_is_bit_exact_and_cheaper(cfg_index: int, zero: int) -> None:
    """A 3-channel first conv (3x3, stride 2 and 1) runs packed: the plan says so, the emulator
    equals the reference through both input paths (zero-copy fill and encoded write, CHW and
    HWC frames), and the packed descriptor needs fewer cycles than the conv itself would."""
    import dataclasses

    from sim.ddr import conv_descriptor
    from sw.contract.cycles import layer_cycles

    cfg = CONFIGS[cfg_index]
    rng = np.random.default_rng(500 + cfg_index + zero)
    specs = [{"stride": 2, "out_channels": 8}, {"stride": 1, "out_channels": 8}]
    art = conv_chain(rng, specs, shape=(3, 13, 18))
    art = dataclasses.replace(art, input_quant=Quant(8, zero, float(np.float32(1 / 255))))
    plan = compile_model(art, cfg)
    assert plan.input_windows == InputWindows(3, 2, 1, zero)
    assert plan.regions[plan.input_name].shape == (27, 7, 9)
    assert "input windows packed" in plan.layers[0].note
    img = rng.integers(0, 256, art.input_shape).astype(np.uint8)
    want = run_network(art, img)
    with EmuBackend(plan) as be:
        np.testing.assert_array_equal(be.run(img)["c1"], want["c1"])
        np.testing.assert_array_equal(be.run(img.transpose(1, 2, 0), hwc=True)["c1"], want["c1"])
    mem = plan.memory.copy()  # the encoded path the RTL transport takes
    off, size = plan.tensor_bytes(plan.input_name)
    mem[off : off + size] = plan.encode_tensor(plan.input_name, plan.input_codes(img))
    filled = plan.memory.copy()
    plan.write_input(filled, img)
    np.testing.assert_array_equal(mem, filled)
    first = art.nodes[0]
    zeros = {"in": 0, "weight": 0, "const": 0, "out": 0}
    unpacked = conv_descriptor(
        first, art.input_shape, art.input_quant, zeros, plan.layers[0].strip_width
    )
    assert plan.layers[0].cycles < layer_cycles(unpacked.as_dict(), cfg).total


def test_input_windows_only_where_they_pay() -> None:
    rng = np.random.default_rng(77)
    wide = conv_chain(rng, [{"stride": 1, "out_channels": 8}], shape=(16, 8, 8))
    assert compile_model(wide, AccelConfig()).input_windows is None  # 16 channels fill the lanes
    one = conv_chain(rng, [{"kernel": 1, "stride": 1, "out_channels": 8}])
    assert compile_model(one, AccelConfig()).input_windows is None  # 1x1: nothing to pack
    dw = conv_chain(rng, [{"depthwise": True}])
    assert compile_model(dw, AccelConfig()).input_windows is None  # depthwise: one lane each


# -- the emulator's OpenCV depthwise path (maps of >= kernels.DEPTHWISE_CV_MIN values a group) ---


@pytest.mark.parametrize(("h", "w", "kernel", "stride", "pad"),
                         [(64, 64, 3, 1, 1), (67, 45, 3, 2, 1), (40, 53, 5, 2, 2),
                          (48, 37, 5, 1, 2), (41, 64, 3, 2, 0), (33, 40, 3, 1, 0)])  # fmt: skip
def test_depthwise_opencv_path_equals_reference(h: int, w: int, kernel: int, stride: int,
                                                pad: int) -> None:  # fmt: skip
    """Large enough maps for the fused multiply-accumulate over phase images, odd sizes and
    every pad: the accumulator equals sim.reference's int64 one, in float32 and float64."""
    from sim.reference import ops
    from sw import kernels

    seed = 1000 * h + w + kernel + stride + pad
    rng = np.random.default_rng(seed)
    g, lanes, z_in = 2, 16, int(rng.integers(0, 256))
    ho, wo = kernels.conv_out_size(h, w, kernel, stride, pad)
    assert ho * wo * lanes >= kernels.DEPTHWISE_CV_MIN, "the test would miss the OpenCV path"
    x = rng.integers(0, 256, (g, h, w, lanes), dtype=np.uint8)
    v = rng.integers(-128, 128, (g * lanes, 1, kernel, kernel))
    for dt, bias_hi in ((np.float32, 1000), (np.float64, 2**30)):
        bias = rng.integers(-bias_hi, bias_hi, g * lanes)
        q = x.transpose(0, 3, 1, 2).reshape(g * lanes, h, w)
        want = ops.conv2d(q, z_in, v, bias, stride, pad, groups=g * lanes)
        taps = v[:, 0].transpose(1, 2, 0).reshape(kernel * kernel, g, 1, lanes)
        taps = np.tile(taps, wo).astype(dt)
        b = np.tile(bias.reshape(g, 1, lanes), wo).astype(dt)
        got = kernels.conv_depthwise_blocked(x, z_in, taps, b, stride, pad)
        got = got.reshape(g, ho, wo, lanes).transpose(0, 3, 1, 2).reshape(g * lanes, ho, wo)
        assert np.array_equal(got, want), f"seed {seed} {np.dtype(dt).name}"
