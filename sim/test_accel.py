"""cocotb tests of the whole accelerator (``pow2det_accel``) against sim.reference, bit for bit.

Run through pytest (tests/test_rtl_accel.py), which builds the Verilog once with Verilator and
runs one cocotb test function per simulator launch. The layer and network tests are
parametrized (``cocotb.parametrize``) over their seeds and memory-stall probabilities, so one
launch runs all of them; to rerun one failure, set both environment variables:

* ``ACCEL_SEED``: seed of every random choice (layers, data, memory pauses); printed on failure.
* ``ACCEL_PAUSE``: probability that the memory model stalls a channel in a given cycle.

Memory is cocotbext-axi's AxiRam with random pause generators on all five channels, so the
RTL sees back-pressure and irregular latency on every handshake.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterator

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from sim.ddr import (
    DdrImage,
    add_descriptor,
    choose_strip,
    conv_const_blob,
    conv_descriptor,
    conv_out_shape,
    conv_weight_blob,
    tensor_bytes,
)
from sim.reference import layout, network
from sim.reference.randnet import (
    random_add,
    random_conv,
    random_network,
    random_quant,
    with_small_shifts,
)
from sim.reference.ties import layer_ties
from sw.artifact import Node, Quant
from sw.contract import cycles as cycle_model
from sw.contract.config import DEFAULT_CONFIG, AccelConfig
from sw.contract.descriptor import Descriptor, pack_program
from sw.contract.registers import (
    ACCEL_ID,
    ERR_BUFFER,
    ERR_OPCODE,
    ERR_SHAPE,
    ERR_SIZES,
    ERR_STRIP,
    INTERFACE_VERSION,
    REG_CONFIG,
    REG_CONFIG2,
    REG_CTRL,
    REG_DESC_ADDR,
    REG_DESC_COUNT,
    REG_DESC_DONE,
    REG_ERROR_CODE,
    REG_ERROR_INDEX,
    REG_ID,
    REG_PERF_DENSE,
    REG_PERF_DW,
    REG_PERF_ELTWISE,
    REG_PERF_MEM_STALL,
    REG_PERF_TOTAL,
    REG_STATUS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    config_registers,
    decode_config,
)

# The build's AccelConfig (sim/rtl_build.py passes the one the model was built for).
CFG = (
    AccelConfig(**json.loads(os.environ["ACCEL_CONFIG"]))
    if "ACCEL_CONFIG" in os.environ
    else DEFAULT_CONFIG
)
L = CFG.lanes
MEM_SIZE = int(os.environ.get("ACCEL_MEM", str(1 << 22)))
SEED = int(os.environ.get("ACCEL_SEED", "1"))
PAUSE = float(os.environ.get("ACCEL_PAUSE", "0.2"))
RESULTS = os.environ.get("ACCEL_RESULTS")  # JSON lines of per-layer cycles, for the model check


def _runs(default: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The (seed, pause) pairs of a parametrized test: ``default``, or the one the environment
    names (to reproduce a failure)."""
    if "ACCEL_SEED" in os.environ:
        return [(SEED, PAUSE)]
    return default


LAYER_RUNS = _runs([(1, 0.0), (2, 0.3)])  # ideal memory (PERF_TOTAL checked too), then stalls
NETWORK_RUNS = _runs([(4, 0.15), (5, 0.15)])  # the two sizes / depthwise / dense formats


def pauses(rng: random.Random, p: float) -> Iterator[bool]:
    while True:
        yield rng.random() < p


class Harness:
    def __init__(self, dut: object, seed: int, pause: float) -> None:
        self.dut = dut
        self.pause = pause
        self.ram = AxiRam(
            AxiBus.from_prefix(dut, "m_axi_gmem"), dut.aclk, dut.aresetn,
            reset_active_level=False, size=MEM_SIZE,
        )  # fmt: skip
        self.lite = AxiLiteMaster(
            AxiLiteBus.from_prefix(dut, "s_axi_control"), dut.aclk, dut.aresetn,
            reset_active_level=False,
        )  # fmt: skip
        # Per-transaction INFO lines of cocotbext-axi would drown the report.
        logging.getLogger("cocotb.pow2det_accel").setLevel(logging.WARNING)
        rng = random.Random(seed)
        if pause > 0:
            for ch in (
                self.ram.read_if.ar_channel, self.ram.read_if.r_channel,
                self.ram.write_if.aw_channel, self.ram.write_if.w_channel,
                self.ram.write_if.b_channel,
            ):  # fmt: skip
                ch.set_pause_generator(pauses(random.Random(rng.random()), pause))
        self.records: list[dict[str, object]] = []

    async def reset(self) -> None:
        cocotb.start_soon(Clock(self.dut.aclk, 5, unit="ns").start())
        self.dut.aresetn.value = 0
        await ClockCycles(self.dut.aclk, 5)
        self.dut.aresetn.value = 1
        await ClockCycles(self.dut.aclk, 2)

    def load(self, img: DdrImage) -> None:
        assert img.top <= MEM_SIZE, f"DDR image of {img.top} bytes > model size {MEM_SIZE}"
        for addr, raw in img.chunks.items():
            self.ram.write(addr, raw)

    async def run(self, descs: list[Descriptor], img: DdrImage, timeout: int = 5_000_000) -> int:
        """Write the program, START, wait for DONE or ERROR; return STATUS."""
        prog = img.put(pack_program(descs))
        self.ram.write(prog, pack_program(descs))
        await self.lite.write_dword(REG_DESC_ADDR, prog)
        await self.lite.write_dword(REG_DESC_COUNT, len(descs))
        await self.lite.write_dword(REG_CTRL, 1)
        for _ in range(timeout // 64):
            await ClockCycles(self.dut.aclk, 64)
            if int(self.dut.irq.value) or not (await self.status()) & STATUS_BUSY:
                break
        else:
            raise AssertionError(f"accelerator did not finish within {timeout} cycles")
        return await self.status()

    async def status(self) -> int:
        return await self.lite.read_dword(REG_STATUS)

    async def perf(self) -> dict[str, int]:
        regs = {
            "total": REG_PERF_TOTAL, "dense": REG_PERF_DENSE, "dw": REG_PERF_DW,
            "eltwise": REG_PERF_ELTWISE, "mem_stall": REG_PERF_MEM_STALL,
        }  # fmt: skip
        return {k: await self.lite.read_dword(v) for k, v in regs.items()}

    def read_tensor(self, addr: int, shape: tuple[int, int, int]) -> np.ndarray:
        raw = np.frombuffer(self.ram.read(addr, tensor_bytes(shape, L)), dtype=np.uint8)
        return layout.activation_from_ddr(raw, shape, L)


def compare(name: str, got: np.ndarray, want: np.ndarray, seed: int) -> None:
    if got.shape != want.shape or not np.array_equal(got, want):
        bad = np.argwhere(got != want) if got.shape == want.shape else []
        first = [
            (tuple(int(x) for x in b), int(got[tuple(b)]), int(want[tuple(b)])) for b in bad[:8]
        ]
        raise AssertionError(
            f"{name}: RTL != reference (seed {seed}, {len(bad)} of {want.size} codes differ; "
            f"first (c, i, j, rtl, ref): {first})"
        )


async def run_conv(
    h: Harness, node: Node, x: np.ndarray, q_in: Quant, strip: int, seed: int, name: str
) -> np.ndarray:
    """One conv layer as a one-descriptor program; checks output and perf counters."""
    img = DdrImage()
    addrs = {
        "in": img.put(layout.activation_to_ddr(x, L, q_in.zero)),
        "weight": img.put(conv_weight_blob(node, L)),
        "const": img.put(conv_const_blob(node, L)),
    }
    out_shape = conv_out_shape(node, x.shape)
    addrs["out"] = img.alloc(tensor_bytes(out_shape, L))
    d = conv_descriptor(node, x.shape, q_in, addrs, strip)
    h.load(img)
    status = await h.run([d], img)
    assert status & STATUS_DONE and not status & STATUS_ERROR, (
        f"{name}: STATUS {status:#x} ERROR_CODE {await h.lite.read_dword(REG_ERROR_CODE)} "
        f"(seed {seed})"
    )
    got = h.read_tensor(addrs["out"], out_shape)
    want = network.run_node(node, [x], [q_in])
    compare(name, got, want, seed)
    await check_cycles(h, d, name)
    return got


async def check_cycles(h: Harness, d: Descriptor, name: str) -> None:
    """Engine counters must equal the cycle model's engine cycles (it is exact for them)."""
    perf = await h.perf()
    model = cycle_model.layer_cycles(d.as_dict(), CFG)
    rec = {"name": name, "desc": d.as_dict(), "perf": perf, "model": model.as_dict()}
    h.records.append(rec)
    if RESULTS:
        with open(RESULTS, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
    for key in ("dense", "dw", "eltwise"):
        want = getattr(model, key)
        got = perf[key]
        assert abs(got - want) <= 0.05 * max(want, 1), (
            f"{name}: PERF_{key.upper()} = {got}, cycle model {want} (more than 5% apart)"
        )
    if h.pause == 0:  # ideal memory: the model's total must hold too
        # 5%, with a floor of 16 cycles: a 1x1-pixel layer is all fixed costs.
        assert abs(perf["total"] - model.total) <= max(0.05 * model.total, 16), (
            f"{name}: PERF_TOTAL = {perf['total']}, cycle model {model.total} (> 5% apart)"
        )


def layer_cases(rng: np.random.Generator) -> list[dict[str, object]]:
    """Every layer type of the detectors, with awkward sizes and several strip widths."""
    cases: list[dict[str, object]] = [
        # first conv: dense 3x3 stride 2 on the 3-channel image, odd sizes
        dict(kind="conv", c=3, h=17, w=13, co=8, k=3, st=2, strip=5, z_in=0),
        dict(kind="conv", c=20, h=9, w=11, co=35, k=1, st=1, strip=4),  # pointwise
        dict(kind="conv", c=40, h=5, w=37, co=17, k=1, st=1, strip=32),  # W > max strip
        dict(kind="conv", c=16, h=7, w=7, co=21, k=1, st=1, strip=3, act="linear"),  # head
        dict(kind="conv", c=5, h=8, w=9, co=12, k=3, st=1, strip=4, fmt="binary", bits=1),
        dict(kind="conv", c=9, h=6, w=7, co=7, k=3, st=1, strip=2, bits=3),
        dict(kind="conv", c=6, h=9, w=8, co=10, k=5, st=1, strip=3),
        dict(kind="conv", c=17, h=9, w=7, co=9, k=3, st=2, strip=1),
        dict(kind="conv", c=16, h=1, w=1, co=16, k=1, st=1, strip=1),  # 1x1 map
        dict(kind="conv", c=7, h=1, w=1, co=5, k=3, st=1, strip=2),  # 3x3 on a 1x1 map
        dict(kind="dw", c=19, h=10, w=7, k=3, st=1, strip=3, fmt="int", bits=8),
        dict(kind="dw", c=16, h=9, w=9, k=3, st=2, strip=2, fmt="pow2", bits=4),
        dict(kind="dw", c=8, h=7, w=12, k=5, st=1, strip=5, fmt="int", bits=8),
        dict(kind="dw", c=24, h=11, w=9, k=5, st=2, strip=4, fmt="int", bits=8),
        dict(kind="dw", c=3, h=1, w=1, k=3, st=1, strip=1, fmt="int", bits=8),
        dict(kind="dw", c=33, h=6, w=40, k=3, st=1, strip=32, fmt="pow2", bits=3),
        dict(kind="dw", c=12, h=5, w=6, k=3, st=2, strip=2, fmt="binary", bits=1),
        dict(kind="dw", c=10, h=6, w=5, k=5, st=1, strip=3, fmt="int", bits=5),
        dict(kind="add", c=20, h=7, w=9, relu=False),
        dict(kind="add", c=16, h=9, w=10, relu=True),
        # two-term pow2: two passes over each input vector, two term blocks per block position
        dict(kind="conv", c=20, h=9, w=11, co=35, k=1, st=1, strip=4, fmt="pow2x2", bits=8),
        dict(kind="conv", c=9, h=7, w=8, co=12, k=3, st=2, strip=3, fmt="pow2x2", bits=8),
        # shifts of 1..3: rounding ties by the dozen through the shared requantizer (trained
        # layers' shifts of 10-20 almost never make one), leaky and linear, dense and depthwise
        dict(kind="conv", c=3, h=9, w=10, co=16, k=1, st=1, strip=4, shifts="small"),
        dict(kind="conv", c=2, h=8, w=7, co=8, k=1, st=1, strip=3, shifts="small", act="linear"),
        dict(kind="dw", c=16, h=6, w=9, k=3, st=1, strip=4, fmt="pow2", bits=4, shifts="small"),
    ]
    for cs in cases:
        cs.setdefault("seed", int(rng.integers(1 << 30)))
    return cases


async def run_case(h: Harness, cs: dict[str, object], idx: int) -> None:
    rng = np.random.default_rng(int(cs["seed"]))
    name = str(cs.get("name", f"case {idx}")) + " " + json.dumps(cs)
    c, hh, ww = int(cs["c"]), int(cs["h"]), int(cs["w"])
    qa = random_quant(rng)
    if "z_in" in cs:
        qa = Quant(8, int(cs["z_in"]), qa.scale)
    x = rng.integers(0, 256, size=(c, hh, ww)).astype(np.uint8)
    if cs["kind"] == "add":
        qc = random_quant(rng)
        y = rng.integers(0, 256, size=(c, hh, ww)).astype(np.uint8)
        node = random_add(rng, "add", "a", qa, "c", qc, relu=bool(cs["relu"]))
        img = DdrImage()
        addrs = {
            "in": img.put(layout.activation_to_ddr(x, L, qa.zero)),
            "in2": img.put(layout.activation_to_ddr(y, L, qc.zero)),
        }
        addrs["out"] = img.alloc(tensor_bytes(x.shape, L))
        d = add_descriptor(node, x.shape, [qa, qc], addrs)
        h.load(img)
        status = await h.run([d], img)
        assert status & STATUS_DONE and not status & STATUS_ERROR, f"{name}: STATUS {status:#x}"
        got = h.read_tensor(addrs["out"], x.shape)
        compare(name, got, network.run_node(node, [x, y], [qa, qc]), int(cs["seed"]))
        await check_cycles(h, d, name)
        return
    node = random_conv(
        rng, "conv", "x", x.shape, qa,
        out_channels=int(cs.get("co", c)), kernel=int(cs["k"]), stride=int(cs["st"]),
        depthwise=cs["kind"] == "dw", weight_format=str(cs.get("fmt", "pow2")),
        weight_bits=int(cs.get("bits", 4)), activation=str(cs.get("act", "leaky")),
    )  # fmt: skip
    if cs.get("shifts") == "small":
        node = with_small_shifts(rng, node)
        ties = layer_ties(node, x, qa)
        assert ties >= 12, f"{name}: only {ties} rounding ties in range, the case tests too few"
    await run_conv(h, node, x, qa, int(cs["strip"]), int(cs["seed"]), name)


@cocotb.test()
async def test_registers(dut: object) -> None:
    """ID/CONFIG registers and an empty program (DESC_COUNT = 0) completing at once."""
    h = Harness(dut, SEED, PAUSE)
    await h.reset()
    assert await h.lite.read_dword(REG_ID) == ACCEL_ID
    have = decode_config(await h.lite.read_dword(REG_CONFIG), await h.lite.read_dword(REG_CONFIG2))
    assert (have["lanes"], have["max_strip"]) == (L, CFG.max_strip)
    assert have["interface version"] == INTERFACE_VERSION
    assert (await h.lite.read_dword(REG_CONFIG), await h.lite.read_dword(REG_CONFIG2)) == (
        config_registers(CFG)
    )
    status = await h.run([], DdrImage())
    assert status & STATUS_DONE, f"STATUS {status:#x}"
    await h.lite.write_dword(REG_STATUS, STATUS_DONE)
    assert not (await h.status()) & STATUS_DONE, "DONE is write-1-to-clear"


@cocotb.test()
@cocotb.parametrize((("seed", "pause"), LAYER_RUNS))
async def test_layers(dut: object, seed: int, pause: float) -> None:
    """Every layer type on awkward shapes, one descriptor each, under random memory stalls."""
    h = Harness(dut, seed, pause)
    await h.reset()
    only = os.environ.get("ACCEL_CASE")
    for idx, cs in enumerate(layer_cases(np.random.default_rng(seed))):
        if only is not None and int(only) != idx:
            continue
        await run_case(h, cs, idx)


@cocotb.test()
async def test_errors(dut: object) -> None:
    """Impossible descriptors stop with ERROR, the right code and the descriptor's index."""
    h = Harness(dut, SEED, PAUSE)
    await h.reset()
    good = Descriptor(
        op=1, kernel=1, stride=1, pad=0, weight_bits=4, in_channels=16, out_channels=16,
        in_height=4, in_width=4, out_height=4, out_width=4, strip_width=4,
        in_addr=0x1000, weight_addr=0x2000, const_addr=0x3000, out_addr=0x4000,
    )  # fmt: skip
    cases = [
        (dict(op=7), ERR_OPCODE),
        (dict(kernel=7, pad=0), ERR_SHAPE),
        (dict(stride=3), ERR_SHAPE),
        (dict(weight_format=2, weight_bits=8), ERR_SHAPE),  # int weights in the dense engine
        (dict(strip_width=0), ERR_STRIP),
        (dict(strip_width=CFG.max_strip + 1), ERR_STRIP),
        (dict(out_height=5), ERR_SIZES),
        (
            dict(
                in_channels=CFG.max_channels * 8,
                out_channels=16,
                in_width=64,
                out_width=64,
                strip_width=CFG.max_strip,
            ),
            ERR_BUFFER,
        ),  # fmt: skip
    ]
    for fields, code in cases:
        d = Descriptor(**{**good.as_dict(), **fields})
        img = DdrImage(base=0x8000)
        status = await h.run([good, d], img)
        assert status & STATUS_ERROR, f"{fields}: no ERROR (STATUS {status:#x})"
        got = await h.lite.read_dword(REG_ERROR_CODE)
        assert got == code, f"{fields}: ERROR_CODE {got}, expected {code}"
        assert await h.lite.read_dword(REG_ERROR_INDEX) == 1
        assert await h.lite.read_dword(REG_DESC_DONE) == 1
        await h.lite.write_dword(REG_STATUS, STATUS_ERROR | STATUS_DONE)


def node_shapes(art: object) -> dict[str, tuple[int, int, int]]:
    """Shapes (C, H, W) of every node of the artifact, without validating it."""
    shapes = {art.input_name: tuple(art.input_shape)}
    for n in art.nodes:
        c, hh, ww = shapes[n.inputs[0]]
        if n.op == "conv":
            shapes[n.name] = conv_out_shape(n, (c, hh, ww))
        elif n.op == "upsample":
            shapes[n.name] = (c, 2 * hh, 2 * ww)
        elif n.op == "concat":
            shapes[n.name] = (sum(shapes[s][0] for s in n.inputs), hh, ww)
        else:
            a = n.attrs
            if n.op == "maxpool":
                k, s_, p0, p1 = a["kernel"], a["stride"], a["pad_before"], a["pad_after"]
                shapes[n.name] = (c, (hh + p0 + p1 - k) // s_ + 1, (ww + p0 + p1 - k) // s_ + 1)
            else:
                shapes[n.name] = (c, hh, ww)
    return shapes


async def run_network(
    h: Harness, art: object, image: np.ndarray, strip: int, seed: int
) -> dict[str, np.ndarray]:
    """Run the network: conv and add on the accelerator, consecutive ones in one program;
    maxpool, upsample and concat on the CPU (the reference) between programs."""
    shapes = node_shapes(art)
    quant = {art.input_name: art.input_quant}
    quant.update({n.name: n.quant for n in art.nodes})
    img = DdrImage()
    addr: dict[str, int] = {}

    def place(name: str, q: np.ndarray) -> None:
        raw = layout.activation_to_ddr(q, L, quant[name].zero).tobytes()
        if name not in addr:
            addr[name] = img.put(raw)
        h.ram.write(addr[name], raw)

    values = {art.input_name: image}
    place(art.input_name, image)
    pending: list[tuple[Node, Descriptor]] = []

    async def flush() -> None:
        if not pending:
            return
        h.load(img)
        status = await h.run([d for _, d in pending], img)
        assert status & STATUS_DONE and not status & STATUS_ERROR, (
            f"network (seed {seed}): STATUS {status:#x}, ERROR_CODE "
            f"{await h.lite.read_dword(REG_ERROR_CODE)} at descriptor "
            f"{await h.lite.read_dword(REG_ERROR_INDEX)}"
        )
        for n, _ in pending:
            values[n.name] = h.read_tensor(addr[n.name], shapes[n.name])
        pending.clear()

    for n in art.nodes:
        ins = [quant[s] for s in n.inputs]
        if n.op in ("conv", "add"):
            for s in n.inputs:  # a CPU-made input must be in DDR before the program runs
                if s not in addr:
                    place(s, values[s])
            addr[n.name] = img.alloc(tensor_bytes(shapes[n.name], L))
            if n.op == "conv":
                a = {
                    "in": addr[n.inputs[0]], "out": addr[n.name],
                    "weight": img.put(conv_weight_blob(n, L)),
                    "const": img.put(conv_const_blob(n, L)),
                }  # fmt: skip
                d = conv_descriptor(n, shapes[n.inputs[0]], ins[0], a, strip)
                # Narrower strips where a wide one would not fit the line buffer (error 4).
                d.strip_width = min(strip, choose_strip(d.as_dict(), CFG))
            else:
                a = {"in": addr[n.inputs[0]], "in2": addr[n.inputs[1]], "out": addr[n.name]}
                d = add_descriptor(n, shapes[n.name], ins, a)
            pending.append((n, d))
        else:
            await flush()
            values[n.name] = network.run_node(n, [values[s] for s in n.inputs], ins)
    await flush()
    return values


@cocotb.test()
@cocotb.parametrize((("seed", "pause"), NETWORK_RUNS))
async def test_network(dut: object, seed: int, pause: float) -> None:
    """A whole random detector-shaped network, layer after layer, equal to the reference."""
    h = Harness(dut, seed, pause)
    await h.reset()
    rng = np.random.default_rng(seed)
    size = [(16, 12), (13, 11)][seed % 2]
    art = random_network(rng, *size, depthwise_format=["int", "pow2"][seed % 2],
                         dense_format=["pow2", "pow2x2"][seed % 2])  # fmt: skip
    image = rng.integers(0, 256, size=(3, *size)).astype(np.uint8)
    strip = int(rng.integers(2, 9))
    got = await run_network(h, art, image, strip, seed)
    want = network.run_network(art, image, keep_all=True)
    for n in art.nodes:
        compare(f"network node {n.name} (strip {strip})", got[n.name], want[n.name], seed)


@cocotb.test(skip=os.environ.get("ACCEL_FRAME") is None)
async def test_frame(dut: object) -> None:
    """Slow: a whole frame. ACCEL_ARTIFACT (a quantized model) with ACCEL_IMAGE (.npy input
    codes), or ACCEL_FRAME (a darknet cfg: random weights of the real shapes)."""
    from sim.darknet_net import random_artifact_from_cfg
    from sw import artifact as artifact_io

    h = Harness(dut, SEED, PAUSE)
    await h.reset()
    if os.environ.get("ACCEL_ARTIFACT"):
        art = artifact_io.load(os.environ["ACCEL_ARTIFACT"])
        image = np.load(os.environ["ACCEL_IMAGE"], allow_pickle=False)
    else:
        size = int(os.environ.get("ACCEL_FRAME_SIZE", "512"))
        art = random_artifact_from_cfg(os.environ["ACCEL_FRAME"], size, SEED)
        rng = np.random.default_rng(SEED)
        image = rng.integers(0, 256, size=(3, size, size)).astype(np.uint8)
    got = await run_network(h, art, image, CFG.max_strip, SEED)
    want = network.run_network(art, image, keep_all=True)
    for o in art.outputs:
        compare(f"frame output {o.node}", got[o.node], want[o.node], SEED)
    await RisingEdge(dut.aclk)


@cocotb.test(skip=os.environ.get("ACCEL_CASES") is None)
async def test_cases_file(dut: object) -> None:
    """Layer cases from a JSON file (ACCEL_CASES), e.g. real detector shapes for the bench."""
    h = Harness(dut, SEED, PAUSE)
    await h.reset()
    with open(os.environ["ACCEL_CASES"]) as fh:
        cases = json.load(fh)
    for idx, cs in enumerate(cases):
        cs.setdefault("seed", SEED + idx)
        await run_case(h, cs, idx)
