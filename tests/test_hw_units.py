"""Block-level tests of the accelerator in Amaranth's simulator (async testbenches).

Each block is checked against sim.reference (or the AXI rules) with random vectors; the whole
design is checked on Verilator in tests/test_rtl_accel.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hw.axi import AxiReader
from hw.cycle_model import dw_segment_cycles
from hw.dense import DenseArray
from hw.params import check
from hw.requant import Eltwise, Requant
from hw.top import Pow2DetAccel
from sim.reference import ops
from sim.reference.ties import add_ties, conv_ties
from sw.accel_config import DEFAULT_CONFIG, ConfigError
from sw.artifact import decode_codes

SEED = 20240601


def _run(dut: object, bench: object) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _requant_rtl(
    acc: np.ndarray,
    bias: np.ndarray,
    m_pos: np.ndarray,
    m_neg: np.ndarray,
    shift: np.ndarray,
    z_out: int,
    bits: int,
) -> np.ndarray:
    """Rows of ``(n, lanes)`` operands through hw.requant.Requant; the ``(n, lanes)`` codes."""
    n, lanes = acc.shape
    dut = Requant(lanes)
    got: list[list[int]] = []

    async def bench(ctx):  # type: ignore[no-untyped-def]
        ctx.set(dut.z_out, z_out)
        ctx.set(dut.qmax, (1 << bits) - 1)
        for i in range(n + Requant.LATENCY + 2):
            if i < n:
                ctx.set(dut.valid_in, 1)
                ctx.set(dut.acc, [int(a) for a in acc[i]])
                ctx.set(dut.consts, [
                    {"bias": int(bias[i, j]), "m_pos": int(m_pos[i, j]),
                     "m_neg": int(m_neg[i, j]), "shift": int(shift[i, j])}
                    for j in range(lanes)
                ])  # fmt: skip
            else:
                ctx.set(dut.valid_in, 0)
            await ctx.tick()
            if ctx.get(dut.valid_out):
                out = ctx.get(dut.out)
                got.append([(out >> (8 * j)) & 0xFF for j in range(lanes)])

    _run(dut, bench)
    return np.array(got)


def test_requant_matches_reference() -> None:
    rng = np.random.default_rng(SEED)
    lanes, n = 4, 40
    acc = rng.integers(-(2**24), 2**24, size=(n, lanes))
    acc[:3] = [[2**31 - 1, -(2**31), 0, -1]] * 3  # extremes of the 32-bit accumulator
    bias = rng.integers(-(2**20), 2**20, size=(n, lanes))
    bias[:3] = 0
    m_pos = rng.integers(0, 2**16, size=(n, lanes))
    m_neg = rng.integers(0, 2**16, size=(n, lanes))
    shift = rng.integers(0, 48, size=(n, lanes))
    shift[3] = 0
    z_out, bits = int(rng.integers(0, 16)), 4
    want = np.stack([
        ops.requantize(acc[i] + bias[i], m_pos[i], m_neg[i], shift[i], z_out, bits)
        for i in range(n)
    ])  # fmt: skip
    got = _requant_rtl(acc, bias, m_pos, m_neg, shift, z_out, bits)
    assert np.array_equal(got, want), f"seed {SEED}"


def test_requant_rounds_ties_up() -> None:
    """Directed ties at every shift 1..47 (sim.reference.ties), both signs: random operands
    almost never produce one, so without these round-half-down would pass the test above."""
    rng = np.random.default_rng(SEED + 7)
    ties = conv_ties(rng)
    lanes = 4
    n = -(-len(ties.acc) // lanes)
    pad = n * lanes - len(ties.acc)

    def rows(x: np.ndarray, fill: int) -> np.ndarray:
        return np.concatenate([x, np.full(pad, fill, np.int64)]).reshape(n, lanes)

    # The accumulator arrives without its bias: split each tie between the two, so the sum
    # inside the requantizer is what makes the tie.
    bias = rng.integers(-(2**16), 2**16, size=len(ties.acc))
    bias = np.where(np.abs(ties.acc - bias) < 2**31 - 1, bias, 0)
    pos = ties.acc >= 0
    # The multiplier the sign does not select gets a decoy value, so a swapped M_pos/M_neg
    # selection changes the result too.
    m_pos = np.where(pos, ties.m, ties.m // 2 + 1)
    m_neg = np.where(pos, ties.m // 2 + 1, ties.m)
    z_out, bits = 128, 8
    got = _requant_rtl(rows(ties.acc - bias, 1), rows(bias, 0), rows(m_pos, 1), rows(m_neg, 1),
                       rows(ties.shift, 1), z_out, bits).reshape(-1)[: len(ties.acc)]  # fmt: skip
    want = ties.expected(z_out, bits)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"seed {SEED + 7}: {bad.size} ties wrong, first " + (
        f"acc {ties.acc[bad[0]]} M {ties.m[bad[0]]} S {ties.shift[bad[0]]}: got {got[bad[0]]}, "
        f"want {want[bad[0]]}"
        if bad.size
        else ""
    )


def _eltwise_rtl(
    a: np.ndarray, c: np.ndarray, consts: dict[str, int], relu: bool, z_out: int, bits: int
) -> np.ndarray:
    """Rows of ``(n, lanes)`` codes through hw.requant.Eltwise; ``consts`` has z_a, z_c, m_a,
    m_c and shift."""
    n, lanes = a.shape
    dut = Eltwise(lanes)
    got: list[list[int]] = []

    async def bench(ctx):  # type: ignore[no-untyped-def]
        for key, v in {**consts, "relu": int(relu), "z_out": z_out,
                       "qmax": (1 << bits) - 1}.items():  # fmt: skip
            ctx.set(getattr(dut, key), v)
        for i in range(n + Eltwise.LATENCY + 2):
            ctx.set(dut.valid_in, int(i < n))
            if i < n:
                ctx.set(dut.a, sum(int(v) << (8 * j) for j, v in enumerate(a[i])))
                ctx.set(dut.c, sum(int(v) << (8 * j) for j, v in enumerate(c[i])))
            await ctx.tick()
            if ctx.get(dut.valid_out):
                out = ctx.get(dut.out)
                got.append([(out >> (8 * j)) & 0xFF for j in range(lanes)])

    _run(dut, bench)
    return np.array(got)


def test_eltwise_matches_reference() -> None:
    rng = np.random.default_rng(SEED + 1)
    lanes, n = 4, 30
    a = rng.integers(0, 256, size=(n, lanes))
    c = rng.integers(0, 256, size=(n, lanes))
    za, zc, zy = (int(x) for x in rng.integers(0, 256, size=3))
    ma, mc = (int(x) for x in rng.integers(0, 2**16, size=2))
    for relu, sh in ((False, 17), (True, 0), (False, 40)):
        want = ops.add(a, za, c, zc, ma, mc, sh, zy, 8, relu=relu)
        consts = dict(z_a=za, z_c=zc, m_a=ma, m_c=mc, shift=sh)
        got = _eltwise_rtl(a, c, consts, relu, zy, 8)
        assert np.array_equal(got, want), f"relu={relu} shift={sh} seed {SEED + 1}"


@pytest.mark.parametrize("shift", [1, 6, 15, 22])
def test_eltwise_rounds_ties_up(shift: int) -> None:
    ties = add_ties(np.random.default_rng(SEED + shift), shift, n=32)
    consts = dict(z_a=ties.z_a, z_c=ties.z_c, m_a=ties.m_a, m_c=ties.m_c, shift=shift)
    got = _eltwise_rtl(ties.a.reshape(8, 4), ties.c.reshape(8, 4), consts, False, 100, 8)
    assert np.array_equal(got.reshape(-1), ties.expected(100, 8)), f"seed {SEED + shift}"


@pytest.mark.parametrize(("bits", "li", "lo"), [(4, 4, 3), (3, 4, 3), (4, 16, 2), (4, 5, 2)])
def test_dense_array_shift_add(bits: int, li: int, lo: int) -> None:
    """The shift-and-add array equals the integer dot product of the decoded weights; with 16
    (and an odd 5) input lanes every carry-in of the adder tree is used, and the first vectors
    make every weight negative at the largest shift on inputs of -255 / 255 (every owed +1)."""
    rng = np.random.default_rng(SEED + bits + li)
    n = 25
    d = rng.integers(-255, 256, size=(n, li))
    d[:3] = [[-255] * li, [255] * li, [(-255) ** (k % 2) for k in range(li)]]
    e_max = 6 if bits == 4 else 2
    codes4 = np.zeros((n, lo, li), dtype=np.int64)
    v = np.zeros((n, lo, li), dtype=np.int64)
    for idx in np.ndindex(n, lo, li):
        m = int(rng.integers(0, e_max + 2)) if idx[0] >= 3 else e_max + 1
        s = (int(rng.integers(0, 2)) if m else 0) if idx[0] >= 3 else 1
        codes4[idx] = (s << 3) | m  # the internal 4-bit code the loader produces
        raw = (s << (bits - 1)) | m  # the artifact's code, decoded by the contract's rule
        v[idx] = decode_codes(np.array([raw], dtype=np.uint8), "pow2", bits)[0]
    want = np.einsum("noi,ni->no", v, d)
    dut = DenseArray(li, lo, tag_bits=1)
    got: list[list[int]] = []

    async def bench(ctx):  # type: ignore[no-untyped-def]
        for i in range(n + dut.LATENCY + 1):
            ctx.set(dut.valid_in, int(i < n))
            if i < n:
                ctx.set(dut.d, [int(x) for x in d[i]])
                flat = codes4[i].reshape(-1)
                ctx.set(dut.codes, sum(int(cv) << (4 * k) for k, cv in enumerate(flat)))
            await ctx.tick()
            if ctx.get(dut.valid_out):
                got.append(list(ctx.get(dut.sums)))

    _run(dut, bench)
    assert np.array_equal(np.array(got), want)


def test_axi_reader_bursts_are_legal() -> None:
    """Bursts <= max_burst beats, never across 4 KiB, covering each request exactly, under
    random ARREADY and with the outstanding limit respected."""
    cfg = DEFAULT_CONFIG
    rng = np.random.default_rng(SEED + 7)
    reqs = [(0x1000 - 16 * 5, 40), (0x2FF0, 1), (0x4000, 16), (0x7FC0, 300), (0x10, 17)]
    dut = AxiReader(cfg)
    bursts: list[tuple[int, int]] = []
    max_out = [0]

    async def bench(ctx):  # type: ignore[no-untyped-def]
        pending: list[int] = []  # beats left of accepted bursts (the R side, faked)
        i = 0
        for _ in range(2000):
            if i < len(reqs):
                ctx.set(dut.req_valid, 1)
                ctx.set(dut.req_addr, reqs[i][0])
                ctx.set(dut.req_beats, reqs[i][1])
            else:
                ctx.set(dut.req_valid, 0)
            ready = int(rng.random() < 0.6)
            ctx.set(dut.arready, ready)
            last = bool(pending) and rng.random() < 0.3
            ctx.set(dut.rlast_fire, int(last))
            accepted = i < len(reqs) and ctx.get(dut.req_ready)
            if ctx.get(dut.arvalid) and ready:
                bursts.append((ctx.get(dut.araddr), ctx.get(dut.arlen) + 1))
                pending.append(1)
            await ctx.tick()
            if last:
                pending.pop(0)
            max_out[0] = max(max_out[0], len(pending))
            if accepted:
                i += 1
            if i == len(reqs) and ctx.get(dut.idle) and not pending:
                break

    _run(dut, bench)
    covered = []
    for addr, n in bursts:
        assert 1 <= n <= cfg.max_burst
        assert addr // 4096 == (addr + 16 * n - 1) // 4096, f"burst {addr:#x}+{n} crosses 4 KiB"
        covered.extend(range(addr, addr + 16 * n, 16))
    want = [a for addr, n in reqs for a in range(addr, addr + 16 * n, 16)]
    assert covered == want
    assert max_out[0] <= cfg.max_reads_outstanding


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"lanes": 12}, "lanes"),
        ({"lanes": 64, "dense_out_lanes": 64}, "lanes = 64"),
        ({"lanes": 4, "dense_out_lanes": 4}, "lanes = 4"),
        ({"dense_out_lanes": 8}, "dense_out_lanes"),
        ({"max_strip": 300}, "max_strip"),
        ({"input_buffer_words": 8 * 100}, "input_buffer_words"),
        ({"weight_buffer_bytes": 96 * 1024}, "weight_buffer_bytes"),
        ({"max_channels": 100}, "max_channels"),
        ({"max_burst": 512}, "max_burst"),
    ],
)
def test_impossible_configs_are_named(change: dict[str, int], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        check(dataclasses.replace(DEFAULT_CONFIG, **change))


def test_default_config_elaborates_into_its_blocks() -> None:
    """The default build passes the RTL's checks with the contract's sizes and elaborates into
    the blocks hw/top.py wires (a missing or renamed block fails here, not in Verilator)."""
    hp = check(DEFAULT_CONFIG)
    assert hp.bank_words == 2048 and hp.weight_blocks == 512 and hp.channel_groups == 64
    frag = Fragment.get(Pow2DetAccel(DEFAULT_CONFIG), None)
    names = {name for _, name, _ in frag.subfragments}
    want = {"regs", "ctrl", "seq", "router", "compute", "datapath", "buffers", "reader", "writer",
            "tags", "cmds", "outq"}  # fmt: skip
    assert want <= names, f"missing blocks: {want - names}"


def test_dw_segment_cycles() -> None:
    # 3x3 stride 1: one column per cycle, each pixel's compute overlaps the next column.
    assert dw_segment_cycles(32, 3, 1) == 34 + 1
    # 5x5: three compute cycles per pixel, the last one overlapping the next column.
    assert dw_segment_cycles(1, 5, 1) == 5 + 3
    assert dw_segment_cycles(32, 5, 1) == 4 + 3 * 32 + 1
