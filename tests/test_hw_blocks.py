"""Unit tests of the accelerator's control blocks and engines, each alone in Amaranth's simulator.

The register file against the contract's register table, the descriptor controller's CHECK
against the emulator's refusals on random descriptors, the address sequencer against the
reference tiling (sim/reference/tiling.py) with the row credit held and released, the
depthwise engine against a NumPy dot product, the AXI writer against the AXI rules under
random back-pressure, and the register slice for order and throughput. Seeds are fixed and
printed in every failure message.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.sim import Simulator

from hw.axi import AxiWriter
from hw.controller import DescriptorController
from hw.depthwise import DepthwiseArray
from hw.interfaces import TagKind
from hw.params import ADD_CHUNK, BANKS, check
from hw.regfile import RegisterFile
from hw.sequencer import AddressSequencer
from hw.slice import RegisterSlice
from sim.reference.tiling import strips, window_columns
from sw.contract.config import DEFAULT_CONFIG
from sw.contract.descriptor import (
    DESCRIPTOR_BYTES,
    FMT_BINARY,
    FMT_INT,
    FMT_POW2,
    FMT_POW2X2,
    OP_ADD,
    OP_DENSE,
    OP_DEPTHWISE,
    Descriptor,
)
from sw.contract.registers import (
    ACCEL_ID,
    BY_NAME,
    CTRL_IRQ_EN,
    CTRL_START,
    ERR_AXI,
    ERROR_NAMES,
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
    REG_PERF_MEM_STALL,
    REG_PERF_TOTAL,
    REG_STATUS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    config_registers,
)
from sw.emu import DeviceFault, EmuDevice

SEED = 20261202
CFG = DEFAULT_CONFIG
HP = check(CFG)
L = CFG.lanes


def _run(dut: object, bench: object) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# ------------------------------------------------------------------------------ register file


def test_register_file_follows_the_register_table() -> None:
    dut = RegisterFile(CFG)
    starts: list[int] = []  # cycle numbers of control.start pulses
    now = [0]

    async def tick(ctx):  # type: ignore[no-untyped-def]
        if ctx.get(dut.control.start):
            starts.append(now[0])
        now[0] += 1
        await ctx.tick()

    async def write(ctx, addr: int, value: int) -> None:  # type: ignore[no-untyped-def]
        ctx.set(dut.awaddr, addr)
        ctx.set(dut.wdata, value)
        ctx.set(dut.awvalid, 1)
        ctx.set(dut.wvalid, 1)
        for _ in range(4):
            ready = ctx.get(dut.awready) and ctx.get(dut.wready)
            await tick(ctx)
            if ready:
                break
        else:
            raise AssertionError(f"write {addr:#x} not taken")
        ctx.set(dut.awvalid, 0)
        ctx.set(dut.wvalid, 0)
        assert ctx.get(dut.bvalid) and ctx.get(dut.bresp) == 0
        ctx.set(dut.bready, 1)
        await tick(ctx)
        ctx.set(dut.bready, 0)
        assert not ctx.get(dut.bvalid)

    async def read(ctx, addr: int) -> int:  # type: ignore[no-untyped-def]
        ctx.set(dut.araddr, addr)
        ctx.set(dut.arvalid, 1)
        assert ctx.get(dut.arready)
        await tick(ctx)
        ctx.set(dut.arvalid, 0)
        assert ctx.get(dut.rvalid) and ctx.get(dut.rresp) == 0
        value = ctx.get(dut.rdata)
        ctx.set(dut.rready, 1)
        await tick(ctx)
        ctx.set(dut.rready, 0)
        return value

    async def pulse(ctx, sig) -> None:  # type: ignore[no-untyped-def]
        ctx.set(sig, 1)
        await tick(ctx)
        ctx.set(sig, 0)

    async def bench(ctx):  # type: ignore[no-untyped-def]
        ctl = dut.control
        config, config2 = config_registers(CFG)
        assert await read(ctx, REG_ID) == ACCEL_ID
        assert await read(ctx, REG_CONFIG) == config
        assert await read(ctx, REG_CONFIG2) == config2
        # RW registers store whole words; RO registers ignore writes; gaps read 0.
        await write(ctx, REG_DESC_ADDR, 0x8765_4320)
        await write(ctx, REG_DESC_COUNT, 0x0001_0007)
        assert ctx.get(ctl.desc_addr) == 0x8765_4320 and ctx.get(ctl.desc_count) == 0x1_0007
        assert await read(ctx, REG_DESC_ADDR) == 0x8765_4320
        assert await read(ctx, REG_DESC_COUNT) == 0x0001_0007
        await write(ctx, REG_ID, 0)
        assert await read(ctx, REG_ID) == ACCEL_ID
        mapped = {r.offset for r in BY_NAME.values()}
        gaps = [a for a in range(0, 0x48, 4) if a not in mapped]
        assert gaps, "the register map has no gap to read"
        for a in gaps:
            assert await read(ctx, a) == 0, f"unmapped {a:#x}"
        # START (W1P) pulses once when idle, reads 0; IRQ_EN is stored.
        await write(ctx, REG_CTRL, CTRL_START | CTRL_IRQ_EN)
        assert len(starts) == 1
        assert await read(ctx, REG_CTRL) == CTRL_IRQ_EN
        # While busy START is ignored; PERF_TOTAL counts busy cycles, the others their strobes.
        ctx.set(ctl.busy, 1)
        busy_at = now[0]
        await write(ctx, REG_CTRL, CTRL_START | CTRL_IRQ_EN)
        assert len(starts) == 1, "START while busy must not start"
        assert await read(ctx, REG_STATUS) & STATUS_BUSY
        for _ in range(3):
            await pulse(ctx, dut.perf.dense)
        ctx.set(dut.perf.stall, 1)
        await tick(ctx)
        await tick(ctx)
        ctx.set(dut.perf.stall, 0)
        at = now[0]  # the read takes the value of this cycle: every busy cycle before it
        assert await read(ctx, REG_PERF_TOTAL) == at - busy_at
        assert await read(ctx, REG_PERF_DENSE) == 3
        assert await read(ctx, REG_PERF_MEM_STALL) == 2
        # DONE and the interrupt; W1C clears DONE, a 0 leaves it.
        ctx.set(ctl.busy, 0)
        assert not ctx.get(dut.irq)
        await pulse(ctx, ctl.finish)
        assert ctx.get(dut.irq)
        assert await read(ctx, REG_STATUS) == STATUS_DONE
        await write(ctx, REG_STATUS, 0)
        assert await read(ctx, REG_STATUS) == STATUS_DONE
        await write(ctx, REG_STATUS, STATUS_DONE)
        assert await read(ctx, REG_STATUS) == 0 and not ctx.get(dut.irq)
        # ERROR latches code and index; layer_done counts DESC_DONE.
        for _ in range(2):
            await pulse(ctx, ctl.layer_done)
        ctx.set(ctl.fail_code, 3)
        ctx.set(ctl.fail_index, 5)
        await pulse(ctx, ctl.fail)
        assert await read(ctx, REG_STATUS) == STATUS_ERROR and ctx.get(dut.irq)
        assert await read(ctx, REG_ERROR_CODE) == 3
        assert await read(ctx, REG_ERROR_INDEX) == 5
        assert await read(ctx, REG_DESC_DONE) == 2
        # Without IRQ_EN no interrupt; a new START clears status, code, DESC_DONE and counters.
        await write(ctx, REG_CTRL, 0)
        assert not ctx.get(dut.irq)
        await write(ctx, REG_CTRL, CTRL_START)
        assert len(starts) == 2
        for reg in (REG_STATUS, REG_ERROR_CODE, REG_DESC_DONE, REG_PERF_DENSE, REG_PERF_MEM_STALL):
            assert await read(ctx, reg) == 0, f"register {reg:#x} not cleared by START"

    _run(dut, bench)


# ------------------------------------------------------------------------------ CHECK


def _random_descriptor(rng: np.random.Generator) -> Descriptor:
    """A valid layer with zero to two fields pushed towards (or over) a limit."""
    op = int(rng.choice([OP_DENSE, OP_DEPTHWISE, OP_ADD]))
    k = int(rng.choice([1, 3, 5]))
    s = int(rng.choice([1, 2]))
    pad = int(rng.integers(0, k))
    c = int(rng.choice([1, 16, 17, 40, 256, 1024]))
    cout = c if op != OP_DENSE else int(rng.choice([1, 16, 33, 128, 1024]))
    h, w = int(rng.integers(1, 70)), int(rng.integers(1, 70))
    if op == OP_ADD:
        k, s, pad = 1, 1, 0
    h, w = max(h, k), max(w, k)
    ho, wo = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    fmt, bits = (FMT_POW2, int(rng.choice([3, 4])))
    if op == OP_DEPTHWISE and rng.random() < 0.4:
        fmt, bits = FMT_INT, int(rng.integers(2, 9))
    elif rng.random() < 0.2:
        fmt, bits = FMT_BINARY, 1
    elif op == OP_DENSE and rng.random() < 0.3:
        fmt, bits = FMT_POW2X2, 8
    d = Descriptor(
        op=op, kernel=k, stride=s, pad=pad, weight_format=fmt, weight_bits=bits,
        out_bits=int(rng.integers(2, 9)), in_channels=c, out_channels=cout, in_height=h,
        in_width=w, out_height=ho, out_width=wo, strip_width=int(rng.integers(1, 33)),
    )  # fmt: skip
    pushes = {
        "op": [0, 4, 7], "kernel": [0, 2, 4, 7], "stride": [0, 3], "pad": [k, k + 1],
        "weight_format": [2, 3], "weight_bits": [0, 1, 2, 5, 8, 9], "out_bits": [0, 1, 9, 15],
        "in_channels": [0, 1025, 2048, 4095], "out_channels": [0, 1025, 2048],
        "in_height": [0, 1, 2], "in_width": [0, 1, 2, 1000], "out_height": [ho + 1, max(ho - 1, 0)],
        "out_width": [wo + 1, 0], "strip_width": [0, 32, 33, 255],
    }  # fmt: skip
    for _ in range(int(rng.choice([0, 1, 1, 2]))):
        name = str(rng.choice(sorted(pushes)))
        setattr(d, name, int(rng.choice(pushes[name])))
    return d


def _emulator_code(d: Descriptor) -> int:
    try:
        EmuDevice(CFG, 4096).check(d)
    except DeviceFault as e:
        return e.code
    return 0


def test_check_refuses_what_the_emulator_refuses() -> None:
    """CHECK (decoded and sized by the descriptor controller) gives the emulator's error code on
    random descriptors near every limit; every code of the contract but ERR_AXI occurs."""
    rng = np.random.default_rng(SEED)
    descs = [_random_descriptor(rng) for _ in range(160)]
    # Exactly at the buffer limits and one block / one group over them.
    for cin, cout, k in ((128, 1024, 1), (48, 304, 3), (16, 1040, 1), (1024, 1024, 1)):
        descs.append(Descriptor(op=OP_DENSE, kernel=k, pad=k // 2, weight_format=FMT_POW2,
                                in_channels=cin, out_channels=cout, in_height=4, in_width=40,
                                out_height=4, out_width=40, strip_width=32))  # fmt: skip
    # pow2x2: two blocks per position, so half the output channels fit.
    for cout in (512, 528):
        descs.append(Descriptor(op=OP_DENSE, kernel=1, weight_format=FMT_POW2X2, weight_bits=8,
                                in_channels=128, out_channels=cout, in_height=4, in_width=40,
                                out_height=4, out_width=40, strip_width=32))  # fmt: skip
    want = [_emulator_code(d) for d in descs]
    dut = DescriptorController(HP)
    got: list[int] = []

    async def bench(ctx):  # type: ignore[no-untyped-def]
        ctl = dut.control
        ctx.set(ctl.desc_count, 1)
        ctx.set(dut.req.ready, 1)
        for d in descs:
            raw = int.from_bytes(d.pack(), "little")
            ctx.set(ctl.start, 1)
            await ctx.tick()
            ctx.set(ctl.start, 0)
            for _ in range(4):  # NEXT, FETCH
                if ctx.get(dut.req.valid):
                    break
                await ctx.tick()
            assert ctx.get(dut.req.payload.beats) == DESCRIPTOR_BYTES // L
            await ctx.tick()
            beats = DESCRIPTOR_BYTES // L
            for i in range(beats):
                ctx.set(dut.desc.valid, 1)
                ctx.set(dut.desc.index, i)
                ctx.set(dut.desc.data, (raw >> (8 * L * i)) & ((1 << (8 * L)) - 1))
                ctx.set(dut.desc.last, int(i == beats - 1))
                await ctx.tick()
            ctx.set(dut.desc.valid, 0)
            for _ in range(12):
                if ctx.get(ctl.fail):
                    got.append(ctx.get(ctl.fail_code))
                    await ctx.tick()
                    break
                if ctx.get(dut.seq_start):
                    got.append(0)
                    assert ctx.get(dut.compute_start) == (d.op in (OP_DENSE, OP_DEPTHWISE))
                    await ctx.tick()
                    ctx.set(dut.layer_idle, 1)
                    assert ctx.get(ctl.layer_done)
                    await ctx.tick()
                    assert ctx.get(ctl.finish)
                    await ctx.tick()
                    ctx.set(dut.layer_idle, 0)
                    break
                await ctx.tick()
            else:
                raise AssertionError(f"no verdict for {d}")
            assert not ctx.get(ctl.busy)

    _run(dut, bench)
    bad = [(d, g, w) for d, g, w in zip(descs, got, want, strict=True) if g != w]
    assert not bad, f"seed {SEED}: RTL code != emulator code for {bad[:3]}"
    seen = set(got)
    assert seen >= {c for c in ERROR_NAMES if c not in (0, ERR_AXI)} | {0}, f"seed {SEED}: {seen}"


# ------------------------------------------------------------------------------ sequencer


def _conv_layer(d: Descriptor) -> dict[str, int]:
    """The fields the descriptor controller's SETUP derives, by their definitions."""
    gi, go = -(-d.in_channels // L), -(-d.out_channels // L)
    return {
        **dataclasses.asdict(d), "gi": gi, "go": go,
        "wwin": (d.strip_width - 1) * d.stride + d.kernel,
        "in_plane": d.in_height * d.in_width * L, "in_row": d.in_width * L,
        "wbeats": 37, "add_words": gi * d.in_height * d.in_width,
    }  # fmt: skip


def _expected_requests(d: Descriptor) -> list[tuple]:
    lay = _conv_layer(d)
    if d.op == OP_ADD:
        out = []
        for off in range(0, lay["add_words"], ADD_CHUNK):
            n = min(ADD_CHUNK, lay["add_words"] - off)
            out.append((TagKind.ADD_A, d.in_addr + off * L, n, n))
            out.append((TagKind.ADD_C, d.weight_addr + off * L, n, n))
        return out
    out = [(TagKind.CONST, d.const_addr, lay["go"] * L), (TagKind.WEIGHTS, d.weight_addr, 37)]
    seq = 0
    for j0, j1 in strips(d.out_width, d.strip_width):
        first, last = window_columns(d.kernel, d.stride, d.pad, j0, j1)
        clo, chi = max(first, 0), min(last, d.in_width - 1)
        n = chi - clo + 1
        lpad = clo - first
        rpad = (last - first + 1) - lpad - n
        for r in range(d.in_height):
            for g in range(lay["gi"]):
                addr = d.in_addr + g * lay["in_plane"] + r * lay["in_row"] + clo * L
                tag = (seq % BANKS, g * lay["wwin"], lpad, n, rpad, int(g == lay["gi"] - 1))
                out.append((TagKind.ROW, addr, n, tag, seq))
            seq += 1
    return out


def _sequence(d: Descriptor, seed: int, hold: int) -> tuple[list[tuple], list[tuple], int]:
    """Run the sequencer on ``d`` with random back-pressure; the row credit stays at 0 for
    ``hold`` cycles, then advances at random (never past the rows requested)."""
    rng = np.random.default_rng(seed)
    dut = AddressSequencer(HP)
    got: list[tuple] = []
    cmds: list[tuple[int, int]] = []
    rows_while_held = [0]

    async def bench(ctx):  # type: ignore[no-untyped-def]
        ctx.set(dut.layer, _conv_layer(d))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        free, rows = 0, 0
        for cycle in range(20000):
            ready = int(rng.random() < 0.7)
            ctx.set(dut.req.ready, ready)
            ctx.set(dut.cmd.ready, int(rng.random() < 0.8))
            if cycle >= hold and free < rows and rng.random() < 0.3:
                free += 1
            ctx.set(dut.free.rows, free)
            if ctx.get(dut.cmd.valid):
                assert ctx.get(dut.cmd.ready), "a write command offered without room"
                p = ctx.get(dut.cmd.payload)
                cmds.append((p["addr"], p["beats"]))
            if ctx.get(dut.req.valid) and ready:
                p = ctx.get(dut.req.payload)
                t = p["tag"]
                kind = TagKind(t["kind"])
                if kind == TagKind.ROW:
                    tag = (t["bank"], t["base"], t["lpad"], t["n"], t["rpad"], t["last_g"])
                    assert rows < free + BANKS, f"row {rows} fetched with credit {free}"
                    got.append((kind, p["addr"], p["beats"], tag, rows))
                    rows += t["last_g"]
                elif kind in (TagKind.ADD_A, TagKind.ADD_C):
                    got.append((kind, p["addr"], p["beats"], t["n"]))
                else:
                    got.append((kind, p["addr"], p["beats"]))
            if cycle == hold:
                rows_while_held[0] = rows
            await ctx.tick()
            if ctx.get(dut.done) and cycle > hold:
                break
        else:
            raise AssertionError("the sequencer never finished")

    _run(dut, bench)
    return got, cmds, rows_while_held[0]


def test_sequencer_walks_the_reference_tiling_within_the_row_credit() -> None:
    d = Descriptor(
        op=OP_DENSE, kernel=3, stride=2, pad=1, in_channels=40, out_channels=24, in_height=9,
        in_width=23, out_height=5, out_width=12, strip_width=5, in_addr=0x10000,
        weight_addr=0x4000, const_addr=0x2000,
    )  # fmt: skip
    got, cmds, held = _sequence(d, SEED + 1, hold=400)
    want = _expected_requests(d)
    first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    assert got == want, f"seed {SEED + 1}: {len(got)} vs {len(want)} requests, first diff {first}"
    assert held == BANKS, f"with no credit the prefetch must stop at {BANKS} rows, got {held}"
    assert not cmds


def test_sequencer_residual_add_pairs_reads_with_write_commands() -> None:
    d = Descriptor(op=OP_ADD, in_channels=33, out_channels=33, in_height=5, in_width=11,
                   out_height=5, out_width=11, in_addr=0x100, weight_addr=0x9000,
                   out_addr=0x20000)  # fmt: skip
    got, cmds, _ = _sequence(d, SEED + 2, hold=0)
    want = _expected_requests(d)
    assert got == want, f"seed {SEED + 2}"
    chunks = [(0x20000 + off * L, n) for _, addr, n, _ in want[1::2]
              for off in [(addr - 0x9000) // L]]  # fmt: skip
    assert cmds == chunks and len(cmds) > 1


# ------------------------------------------------------------------------------ engines


def test_depthwise_array_is_a_dot_product_per_lane() -> None:
    rng = np.random.default_rng(SEED + 3)
    lanes, n = 4, 30
    dut = DepthwiseArray(lanes, tag_bits=4)
    taps = 9
    d = rng.integers(-255, 256, size=(n, taps, lanes))
    w = rng.integers(-128, 128, size=(n, taps, lanes))
    d[0], w[0] = -255, -128  # the extremes of both operands
    d[1], w[1] = 255, 127
    want = np.einsum("ntl,ntl->nl", d, w)
    got: list[list[int]] = []
    tags: list[int] = []

    async def bench(ctx):  # type: ignore[no-untyped-def]
        for i in range(n + DepthwiseArray.LATENCY + 2):
            ctx.set(dut.valid_in, int(i < n and i % 3 != 2))  # gaps between valid cycles
            if i < n:
                ctx.set(dut.d, [[int(x) for x in row] for row in d[i]])
                ctx.set(dut.w, [[int(x) for x in row] for row in w[i]])
                ctx.set(dut.tag_in, i % 16)
            if ctx.get(dut.valid_out):
                got.append(list(ctx.get(dut.sums)))
                tags.append(ctx.get(dut.tag_out))
            await ctx.tick()

    _run(dut, bench)
    sent = [i for i in range(n) if i % 3 != 2]
    assert np.array_equal(np.array(got), want[sent]), f"seed {SEED + 3}"
    assert tags == [i % 16 for i in sent], "the tag must travel with its sums"


def test_axi_writer_obeys_the_axi_rules() -> None:
    """Bursts <= max_burst beats, never across 4 KiB, covering the commands in order; W beats
    in order with WLAST on each burst's last; AW stable until taken; at most
    max_writes_outstanding bursts without a response; idle at the end."""
    cfg = CFG
    rng = np.random.default_rng(SEED + 4)
    cmds = [(0x1000 - 16 * 3, 20), (0x2000, 1), (0x3FF0, 33), (0x8000, 16), (0x10, 5)]
    total = sum(n for _, n in cmds)
    dut = AxiWriter(cfg)
    bursts: list[tuple[int, int]] = []
    beats: list[tuple[int, int]] = []  # (data, wlast)
    max_out = [0]

    async def bench(ctx):  # type: ignore[no-untyped-def]
        ci, sent = 0, 0
        w_bursts, queued, responses = 0, 0, 0
        pending_b: list[int] = []  # cycles until each complete burst's response
        aw_hold = None
        for _ in range(5000):
            ctx.set(dut.cmd_valid, int(ci < len(cmds)))
            if ci < len(cmds):
                ctx.set(dut.cmd_addr, cmds[ci][0])
                ctx.set(dut.cmd_beats, cmds[ci][1])
            ctx.set(dut.data_valid, int(sent < total))
            ctx.set(dut.data, 0xA000 + sent)
            awready, wready = int(rng.random() < 0.5), int(rng.random() < 0.6)
            ctx.set(dut.awready, awready)
            ctx.set(dut.wready, wready)
            bvalid = bool(pending_b) and pending_b[0] <= 0
            ctx.set(dut.bvalid, int(bvalid))
            if ctx.get(dut.awvalid):
                cur = (ctx.get(dut.awaddr), ctx.get(dut.awlen))
                assert aw_hold in (None, cur), "AW changed while waiting for AWREADY"
                aw_hold = None if awready else cur
                if awready:
                    bursts.append((cur[0], cur[1] + 1))
            took_cmd = ci < len(cmds) and ctx.get(dut.cmd_ready)
            if ctx.get(dut.wvalid) and wready:
                assert ctx.get(dut.wdata) == 0xA000 + sent
                beats.append((ctx.get(dut.wdata), ctx.get(dut.wlast)))
                w_bursts += ctx.get(dut.wlast)
                sent += 1
            if bvalid and ctx.get(dut.bready):
                pending_b.pop(0)
                responses += 1
            # A response comes only after both the burst's address and its last beat.
            while queued < min(len(bursts), w_bursts):
                pending_b.append(int(rng.integers(0, 6)))
                queued += 1
            max_out[0] = max(max_out[0], len(bursts) - responses)
            pending_b = [c - 1 for c in pending_b]
            await ctx.tick()
            ci += int(took_cmd)
            if ci == len(cmds) and sent == total and not pending_b and ctx.get(dut.idle):
                break
        else:
            raise AssertionError("the writer never drained")

    _run(dut, bench)
    covered = []
    for addr, n in bursts:
        assert 1 <= n <= cfg.max_burst, f"seed {SEED + 4}: burst of {n}"
        assert addr // 4096 == (addr + L * n - 1) // 4096, f"burst {addr:#x}+{n} crosses 4 KiB"
        covered.extend(range(addr, addr + L * n, L))
    assert covered == [a for addr, n in cmds for a in range(addr, addr + L * n, L)]
    lasts = [i for i, (_, last) in enumerate(beats) if last]
    assert lasts == list(np.cumsum([n for _, n in bursts]) - 1), "WLAST not on burst ends"
    assert max_out[0] <= cfg.max_writes_outstanding, f"seed {SEED + 4}: {max_out[0]} in flight"


# ------------------------------------------------------------------------------ register slice


def test_register_slice_keeps_order_and_full_throughput() -> None:
    """Every item once and in order under random valid/ready on both sides; in.ready is a
    register (it never follows out.ready in the same cycle); with out always ready, one item
    a cycle after the first."""
    rng = np.random.default_rng(SEED + 5)
    dut = RegisterSlice(16)
    n = 400

    def drive(p_in: float, p_out: float) -> tuple[list[int], int]:
        got: list[int] = []
        cycles = [0]

        async def bench(ctx):  # type: ignore[no-untyped-def]
            sent = 0
            for cyc in range(20 * n):
                offer = sent < n and rng.random() < p_in
                ready = rng.random() < p_out
                ctx.set(dut.i.valid, int(offer))
                ctx.set(dut.i.payload, sent)
                ready_before = ctx.get(dut.i.ready)
                ctx.set(dut.o.ready, int(ready))
                assert ctx.get(dut.i.ready) == ready_before, "in.ready follows out.ready"
                if ctx.get(dut.o.valid) and ready:
                    got.append(ctx.get(dut.o.payload))
                took = offer and ctx.get(dut.i.ready)
                await ctx.tick()
                sent += int(took)
                if len(got) == n:
                    cycles[0] = cyc + 1
                    break

        _run(dut, bench)
        return got, cycles[0]

    for p_in, p_out in ((0.7, 0.5), (0.3, 0.9), (1.0, 0.2)):
        got, _ = drive(p_in, p_out)
        assert got == list(range(n)), f"seed {SEED + 5}, p_in {p_in}, p_out {p_out}"
    got, cycles = drive(1.0, 1.0)
    assert got == list(range(n)) and cycles == n + 1, f"{cycles} cycles for {n} items"
