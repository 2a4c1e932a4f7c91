"""Cycle model of ``pow2det_accel``: per-layer cycles from a descriptor and an AccelConfig.

Why it lives in the contract package and not in ``hw/``: the runtime needs it on the board (the
plan table's predicted cycles, the emulator's PERF counters) where ``hw/`` and amaranth are not
installed, and the RTL tests and ``bench/accelerator.py`` check the RTL against it. Pure Python
on the contract's sizes, it is what the PERF registers of the interface should read for a
descriptor; ``hw/cycle_model.py`` re-exports it under its old name. Whoever changes the RTL's
state machines updates the costs below (the RTL tests fail by more than 5% otherwise).

It follows the RTL's loops exactly for the engine counters:

* dense (PERF_DENSE): one issue cycle per (strip, output row, output group, pixel, input group,
  kernel row, kernel column): ``W_out * H_out * G_out * G_in * k * k``;
* depthwise (PERF_DW): per (strip, output row, group) the column streamer of ``hw/compute.py``
  (one column shifted in per cycle, ``ceil(k*k / 9)`` compute cycles per output pixel, the last
  one overlapping the next column), emulated below;
* eltwise (PERF_ELTWISE): one cycle per L-channel word.

The total adds the controller's fixed costs and the memory side, which overlaps with compute
(rows are prefetched up to ``BANKS`` ahead): per layer
``fixed + constants + weights + first rows + max(compute, row reads, writes) + drain``, with the
memory side divided by the sustained beats per cycle of the memory system (``MemoryModel``).
A shared DDR (reads + writes under one cap) limits each phase by what is in flight in it: the
constant, weight and first-row loads are reads alone (held to ``min(read, shared)``); the rows
that stream in while results stream out share the cap with the writes; an add's two operand
reads share it with its writes. Checked against whole networks on the RTL with a capped,
latent memory (tests/test_fast_rtl.py; ``make bench-hw``: within 2.5 %).
The RTL tests assert engine counters within 5% always and the total within 5% with ideal memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

from sw.contract.buffers import (
    ADD_CHUNK,
    DENSE_CODE_BITS,
    DW_TAPS,
    dw_phases,
    weight_container_bits,
)
from sw.contract.codes import weight_terms
from sw.contract.config import AccelConfig
from sw.contract.descriptor import (
    DESCRIPTOR_BYTES,
    FMT_BINARY,
    OP_ADD,
    OP_DENSE,
    WEIGHT_FORMAT_NAMES,
)
from sw.contract.layout import CHANNEL_RECORD_BYTES, groups

# Controller costs in cycles, read off the RTL's state machines (hw/controller.py, hw/sequencer.py,
# hw/compute.py):
# NEXT, FETCH, 4 SETUP, CHECK, GO, RUN exit, first tag pops; plus the descriptor's beats.
LAYER_FIXED = 15
SEG_OVERHEAD = 2  # SEG (queue the write command) + NEXTSEG per output group of a row
ROW_OVERHEAD = 2  # ROW and ROW_WAIT states per output row
STRIP_OVERHEAD = 1  # STRIP state
TAG_OVERHEAD = 1  # the data router pops one tag per request (one per input row and group)
PIPE_DRAIN = 14  # issue -> line buffer -> engine -> accumulate -> requant -> output FIFO
# Extra drain of the engines' registered adder trees (hw/dense.py, hw/depthwise.py).
DRAIN_DENSE, DRAIN_DW = 2, 3
DW_WEIGHT_PIPE = 2  # the router's select and decode stages before the last weight lands


@dataclass(frozen=True)
class MemoryModel:
    """What the memory system sustains, in AXI beats per accelerator clock cycle."""

    read_beats_per_cycle: float = 1.0
    write_beats_per_cycle: float = 1.0
    # Combined limit of a shared DDR (reads + writes); inf = separate channels never collide.
    total_beats_per_cycle: float = float("inf")
    latency: int = 2  # cycles from AR to first R beat (cocotbext AxiRam answers in about 2)


IDEAL = MemoryModel()


@dataclass
class LayerCycles:
    dense: int = 0
    dw: int = 0
    eltwise: int = 0
    compute: int = 0  # engine issue cycles plus controller overheads (compute-bound time)
    read_beats: int = 0
    write_beats: int = 0
    macs: int = 0  # useful multiply-accumulates (unpadded channels)
    peak_macs: int = 0  # MACs the engine slots could have done in its busy cycles
    total: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def strips(width_out: int, strip: int) -> list[int]:
    return [min(strip, width_out - j0) for j0 in range(0, width_out, strip)]


@lru_cache(maxsize=4096)
def dw_segment_cycles(ws_cur: int, k: int, st: int) -> int:
    """Cycles of one (output row, channel group) of the depthwise column streamer."""
    phases = dw_phases(k)
    wcur = (ws_cur - 1) * st + k
    c, nxt, pix, pend, ph, cycles = 0, k - 1, 0, False, 0, 0
    while True:
        cycles += 1
        can_shift = c < wcur
        comp = pend
        shift = can_shift and (not pend or ph == phases - 1)
        end = not can_shift and (not pend or ph == phases - 1)
        if comp:
            pend, ph = (False, 0) if ph == phases - 1 else (True, ph + 1)
        if shift:
            if c == nxt and pix < ws_cur:
                pend, ph, nxt, pix = True, 0, nxt + st, pix + 1
            c += 1
        if end:
            return cycles


def layer_cycles(d: dict[str, int], cfg: AccelConfig, mem: MemoryModel = IDEAL) -> LayerCycles:
    """Cycles of one descriptor (a dict of sw.descriptors fields)."""
    lanes = cfg.lanes
    r = LayerCycles()
    op = d["op"]
    cin, cout = d["in_channels"], d["out_channels"]
    h, w, ho, wo = d["in_height"], d["in_width"], d["out_height"], d["out_width"]
    gi, go = groups(cin, lanes), groups(cout, lanes)
    rb, wb, shared = mem.read_beats_per_cycle, mem.write_beats_per_cycle, mem.total_beats_per_cycle
    # While only reads are in flight (constants, weights, the first rows) they alone meet the
    # shared cap; while rows stream in and results stream out, both count against it.
    rb_alone = min(rb, shared)
    fixed = LAYER_FIXED + DESCRIPTOR_BYTES // lanes
    if op == OP_ADD:
        words = gi * h * w
        r.eltwise = words
        r.read_beats = 2 * words
        r.write_beats = words
        r.macs = 2 * cin * h * w
        r.peak_macs = 2 * lanes * words
        chunks = groups(words, ADD_CHUNK)
        # Operands come back in order: A chunk then C chunk; the router pops 2 tags per chunk.
        reads = (
            max(r.read_beats / rb, words / wb, (r.read_beats + r.write_beats) / shared)
            + 2 * chunks * TAG_OVERHEAD
        )
        r.compute = words
        r.total = round(fixed + mem.latency + reads + PIPE_DRAIN)
        return r
    k, st, p, ws = d["kernel"], d["stride"], d["pad"], d["strip_width"]
    kk = k * k
    widths = strips(wo, ws)
    dense = op == OP_DENSE
    wwin = [(wc - 1) * st + k for wc in widths]
    # Input columns of each strip window that lie inside the map (the rest is border padding).
    n_in = []
    starts = range(0, wo, ws)
    # One start per strip by construction; checked here because the contract imports nothing
    # but numpy and itself (so not sw.compat's zip_strict; zip(strict=) needs Python 3.10).
    if len(starts) != len(widths):
        raise ValueError(f"{len(starts)} strip starts for {len(widths)} strip widths")
    for j0, wc in zip(starts, widths):
        first = j0 * st - p
        last = first + (wc - 1) * st + k - 1
        n_in.append(min(last, w - 1) - max(first, 0) + 1)
    row_tags = len(widths) * h * gi
    row_beats = h * gi * sum(n_in)
    row_router = h * gi * sum(wwin) + row_tags * TAG_OVERHEAD  # router writes pads as well
    # A group's lanes records of CHANNEL_RECORD_BYTES are that many lanes-byte beats.
    const_beats = go * CHANNEL_RECORD_BYTES
    if dense:
        # A block of lanes x dense_out_lanes codes: 1-bit codes or 4-bit containers.
        code_bits = 1 if d["weight_format"] == FMT_BINARY else DENSE_CODE_BITS
        # pow2x2: two 4-bit blocks per (og, ig, u, w), each input vector issued once per term.
        terms = weight_terms(WEIGHT_FORMAT_NAMES[d["weight_format"]])
        lo = cfg.dense_out_lanes
        block_beats = groups(lo * lanes * code_bits, 8 * lanes)
        weight_beats = groups(cout, lo) * gi * kk * terms * block_beats
        r.dense = sum(wc for wc in widths) * ho * go * gi * kk * terms
        engine = r.dense
        r.macs = wo * ho * cout * cin * kk
        r.peak_macs = r.dense * lanes * cfg.dense_out_lanes
    else:
        cb = weight_container_bits(d["weight_format"], d["weight_bits"])
        weight_beats = groups(go * kk * cb, 8)
        r.dw = sum(dw_segment_cycles(wc, k, st) for wc in widths) * ho * go
        engine = r.dw
        r.macs = wo * ho * cout * kk
        r.peak_macs = r.dw * lanes * DW_TAPS
    segs = len(widths) * ho * go
    r.compute = (
        engine + segs * SEG_OVERHEAD + len(widths) * ho * ROW_OVERHEAD
        + len(widths) * STRIP_OVERHEAD
    )  # fmt: skip
    r.read_beats = const_beats + weight_beats + row_beats
    r.write_beats = wo * ho * go
    # Before the first output row: the rows it needs, all groups, of the first strip.
    first_rows = min(k - p, h)
    fill = first_rows * gi * (wwin[0] + TAG_OVERHEAD) / min(rb_alone, 1.0)
    first_beats = first_rows * gi * n_in[0]  # read during the fill, before any write
    steady = max(
        r.compute,
        row_router,
        row_beats / rb,
        r.write_beats / wb,
        (row_beats - first_beats + r.write_beats) / shared,
    )
    # The router widens depthwise weights one L-lane vector per cycle (8 / container per beat).
    load_w = weight_beats / rb_alone
    if not dense:
        load_w = max(load_w, go * kk) + DW_WEIGHT_PIPE
    load = const_beats / rb_alone + load_w + 2 * mem.latency
    drain = PIPE_DRAIN + (DRAIN_DENSE if dense else DRAIN_DW)
    r.total = round(fixed + load + fill + steady + drain)
    return r


def network_cycles(
    descs: list[dict[str, int]], cfg: AccelConfig, mem: MemoryModel = IDEAL
) -> list[LayerCycles]:
    return [layer_cycles(d, cfg, mem) for d in descs]
