"""AXI4 master read/write engines: requests of N beats become legal INCR bursts.

Both engines take ``(addr, beats)`` requests and split them into bursts of at most
``max_burst`` beats that never cross a 4 KiB boundary (AXI rule), keep several bursts in flight
(DDR latency is then paid once per stream, not once per burst) and obey valid/ready on every
channel. Reads return in order (one ID), so the consumer walks the same request order itself.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from sw.contract.config import AccelConfig


def _log2(x: int) -> int:
    assert x & (x - 1) == 0
    return x.bit_length() - 1


class BurstSplitter(wiring.Component):
    """Walks one request, offering the next legal burst; ``take`` consumes it.

    ``len`` is the beat count of the burst at ``addr`` (1..max_burst). Used by both engines.
    """

    def __init__(self, cfg: AccelConfig) -> None:
        self._cfg = cfg
        super().__init__(
            {
                "req_valid": In(1),
                "req_ready": Out(1),
                "req_addr": In(32),
                "req_beats": In(20),
                "busy": Out(1),
                "addr": Out(32),
                "len": Out(range(cfg.max_burst + 1)),
                "take": In(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self._cfg
        sh = _log2(cfg.lanes)
        page, mb = 4096 >> sh, cfg.max_burst  # beats of a 4 KiB page, of the longest burst
        left = Signal(20)
        # Beats from addr to the next 4 KiB boundary and min(that, max_burst), kept as registers
        # and stepped with addr, so that a burst's length is one compare and one mux away from
        # registers (computing them from addr made a 9-level path back into addr).
        to4k = Signal(range(page + 1))
        lim = Signal(range(mb + 1))
        n = Signal.like(self.len)
        m.d.comb += n.eq(Mux(left < lim, left, lim))
        m.d.comb += [self.len.eq(n), self.req_ready.eq(~self.busy)]

        def set_page(beats: object) -> list[object]:
            """to4k and lim for ``beats`` (1..page) beats left in the page."""
            return [to4k.eq(beats), lim.eq(Mux(beats < mb, beats, mb))]

        with m.If(self.req_valid & ~self.busy & (self.req_beats != 0)):
            m.d.sync += [self.addr.eq(self.req_addr), left.eq(self.req_beats), self.busy.eq(1)]
            m.d.sync += set_page(page - self.req_addr[sh:12])
        with m.If(self.take & self.busy):
            rem = Signal.like(to4k)
            m.d.comb += rem.eq(to4k - n)
            m.d.sync += [self.addr.eq(self.addr + (n << sh)), left.eq(left - n)]
            with m.If(rem == 0):  # the burst ended on the boundary: a whole page follows
                m.d.sync += [to4k.eq(page), lim.eq(mb)]
            with m.Else():
                m.d.sync += set_page(rem)
            with m.If(left == n):
                m.d.sync += self.busy.eq(0)
        return m


class AxiReader(wiring.Component):
    """AR channel driver; R data goes straight to the consumer (which drives ``rready``)."""

    def __init__(self, cfg: AccelConfig) -> None:
        self._cfg = cfg
        super().__init__(
            {
                "req_valid": In(1),
                "req_ready": Out(1),
                "req_addr": In(32),
                "req_beats": In(20),
                "arvalid": Out(1),
                "arready": In(1),
                "araddr": Out(32),
                "arlen": Out(8),
                "rlast_fire": In(1),  # the consumer took the last beat of a burst
                "idle": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self._cfg
        m.submodules.split = split = BurstSplitter(cfg)
        outstanding = Signal(range(cfg.max_reads_outstanding + 1))
        m.d.comb += [
            split.req_valid.eq(self.req_valid),
            split.req_addr.eq(self.req_addr),
            split.req_beats.eq(self.req_beats),
            self.req_ready.eq(split.req_ready),
        ]
        fire = self.arvalid & self.arready
        room = outstanding < cfg.max_reads_outstanding
        issue = split.busy & (~self.arvalid | fire) & room
        m.d.comb += split.take.eq(issue)
        with m.If(issue):
            m.d.sync += [
                self.arvalid.eq(1),
                self.araddr.eq(split.addr),
                self.arlen.eq(split.len - 1),
            ]
        with m.Elif(fire):
            m.d.sync += self.arvalid.eq(0)
        m.d.sync += outstanding.eq(outstanding + issue - self.rlast_fire)
        m.d.comb += self.idle.eq(~split.busy & ~self.arvalid & (outstanding == 0))
        return m


class AxiWriter(wiring.Component):
    """AW/W/B driver: ``(addr, beats)`` commands, data from a valid/ready stream."""

    def __init__(self, cfg: AccelConfig) -> None:
        self._cfg = cfg
        super().__init__(
            {
                "cmd_valid": In(1),
                "cmd_ready": Out(1),
                "cmd_addr": In(32),
                "cmd_beats": In(20),
                "data_valid": In(1),
                "data_ready": Out(1),
                "data": In(8 * cfg.lanes),
                "awvalid": Out(1),
                "awready": In(1),
                "awaddr": Out(32),
                "awlen": Out(8),
                "wvalid": Out(1),
                "wready": In(1),
                "wdata": Out(8 * cfg.lanes),
                "wlast": Out(1),
                "bvalid": In(1),
                "bready": Out(1),
                "idle": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self._cfg
        m.submodules.split = split = BurstSplitter(cfg)
        # Burst lengths travel from AW issue to the W channel, so W may run ahead of AWREADY
        # (the AXI rule: a master must not wait for AWREADY before driving WVALID).
        m.submodules.lens = lens = SyncFIFOBuffered(width=8, depth=cfg.max_writes_outstanding)
        outstanding = Signal(range(cfg.max_writes_outstanding + 1))
        m.d.comb += [
            split.req_valid.eq(self.cmd_valid),
            split.req_addr.eq(self.cmd_addr),
            split.req_beats.eq(self.cmd_beats),
            self.cmd_ready.eq(split.req_ready),
        ]
        fire = self.awvalid & self.awready
        room = (outstanding < cfg.max_writes_outstanding) & lens.w_rdy
        issue = split.busy & (~self.awvalid | fire) & room
        m.d.comb += [
            split.take.eq(issue),
            lens.w_en.eq(issue),
            lens.w_data.eq(split.len - 1),
        ]
        with m.If(issue):
            m.d.sync += [
                self.awvalid.eq(1),
                self.awaddr.eq(split.addr),
                self.awlen.eq(split.len - 1),
            ]
        with m.Elif(fire):
            m.d.sync += self.awvalid.eq(0)

        beat = Signal(8)
        last = lens.r_rdy & (beat == lens.r_data)
        m.d.comb += [
            self.wvalid.eq(lens.r_rdy & self.data_valid),
            self.data_ready.eq(lens.r_rdy & self.wready),
            self.wdata.eq(self.data),
            self.wlast.eq(last),
            self.bready.eq(1),
        ]
        wfire = self.wvalid & self.wready
        with m.If(wfire):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
        m.d.comb += lens.r_en.eq(wfire & last)
        bfire = self.bvalid & self.bready
        m.d.sync += outstanding.eq(outstanding + issue - bfire)
        m.d.comb += self.idle.eq(
            ~split.busy & ~self.awvalid & (outstanding == 0) & ~lens.r_rdy & ~self.cmd_valid
        )
        return m
