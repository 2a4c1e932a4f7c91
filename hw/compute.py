"""The compute controller: the engines' cycles of one convolution, in output order.

For every column strip, output row and output channel group it queues one write command (the
group's output row segment is contiguous in DDR) and then issues the dense or the depthwise
engine cycle by cycle. It waits for the weights, waits for the input rows an output row needs
(``loaded``, from the router) and stalls while the output FIFO is nearly full; it hands back the
rows it no longer needs (``free``, to the address sequencer). Every issue cycle carries its tag
(hw/interfaces.py issue_tag) down the engine pipelines.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.interfaces import (
    GROUP_BITS,
    ROW_SEQ_BITS,
    PerfEvents,
    RowCount,
    WriteCommand,
    issue_signature,
    layer_layout,
)
from hw.params import MAX_KERNEL, HwParams
from sw.contract.descriptor import OP_DENSE


class ComputeController(wiring.Component):
    """``start`` a convolution described by ``layer``; ``issue``: one engine cycle;
    ``cmd``: the output segments' write commands; ``loaded``/``free``: the row credit;
    ``wgt_done``: weights are in; ``out_room``: the output FIFO can take what is in flight."""

    def __init__(self, hp: HwParams) -> None:
        self._hp = hp
        super().__init__({
            "layer": In(layer_layout(hp)), "start": In(1), "done": Out(1),
            "wgt_done": In(1), "out_room": In(1),
            "loaded": In(RowCount), "free": Out(RowCount),
            "cmd": Out(stream.Signature(WriteCommand)), "issue": Out(issue_signature(hp)),
            "perf": Out(PerfEvents),
        })  # fmt: skip

    def elaborate(self, platform: object) -> Module:  # noqa: C901 - one FSM, one state a step
        m = Module()
        hp, f = self._hp, self.layer
        L = hp.lanes
        k, st, pad, ws = f.kernel, f.stride, f.pad, f.strip_width
        H, Ho, Wo = f.in_height, f.out_height, f.out_width
        stride_sh = st == 2
        iss, itag = self.issue, self.issue.tag
        free_seq = self.free.rows
        j0 = Signal(16)  # first output column of the strip
        wscur = Signal(16)  # output columns of this strip
        i = Signal(16)  # output row
        r0 = Signal(signed(18))  # input row of kernel row 0 (negative in the top padding)
        seqbase = Signal(ROW_SEQ_BITS)  # sequence number of the strip's input row 0
        o = Signal(GROUP_BITS)  # output channel group
        rowout, segout = Signal(32), Signal(32)  # DDR address of the row / of the segment
        wseg = Signal(range(hp.weight_blocks + 1))  # first weight block of group o
        # dense issue counters: pixel, input group, kernel row, kernel column
        dj, dg, du, dw_ = Signal(16), Signal(GROUP_BITS), Signal(3), Signal(3)
        dt = Signal()  # pow2x2: the term (block 2b, then 2b + 1) of the same input vector
        la_j, la_g = Signal(range(hp.bank_words * 2)), Signal(range(hp.bank_words * 2))
        wa = Signal(range(hp.weight_blocks + 1))
        # depthwise issue counters: window column shifted in, column of the next pixel, pixels,
        # a pixel pending computation and its phase
        c_col = Signal(range(hp.max_window + 2))
        c_next = Signal(range(hp.max_window + 8))
        c_pix = Signal(16)
        c_pend, c_ph = Signal(), Signal(2)
        c_wcur = Signal(range(hp.max_window + 1))
        c_la = Signal(range(hp.bank_words * 2))
        rb = Signal(3)  # bank holding input row r0 of the current output row
        rowmask = Signal(MAX_KERNEL)  # kernel rows u inside the map
        need = Signal(ROW_SEQ_BITS + 1)  # sequence number of the row's last input row
        stall = ~self.out_room
        seg_end = Signal()
        with m.FSM(name="compute"):
            with m.State("IDLE"):
                m.d.comb += self.done.eq(1)
                with m.If(self.start):
                    m.d.sync += [j0.eq(0), seqbase.eq(0), free_seq.eq(0)]
                    m.next = "WAITW"
            with m.State("WAITW"):
                with m.If(self.wgt_done):
                    m.next = "STRIP"
                with m.Else():
                    m.d.comb += self.perf.stall.eq(1)
            with m.State("STRIP"):
                m.d.sync += [
                    wscur.eq(Mux(Wo - j0 < ws, Wo - j0, ws)),
                    i.eq(0), r0.eq(-pad), free_seq.eq(seqbase),
                    rowout.eq(f.out_addr + j0 * L),
                ]  # fmt: skip
                m.next = "ROW"
            with m.State("ROW"):
                # The row's last input row is registered first and compared with the credit
                # in ROW_WAIT: both in one state were a 12-level path into the state register.
                last_row = Mux(r0 + k - 1 > H - 1, H - 1, r0 + k - 1)
                m.d.sync += [
                    free_seq.eq(seqbase + Mux(r0 < 0, 0, r0)),
                    rb.eq(seqbase + r0),
                    o.eq(0), segout.eq(rowout), wseg.eq(0),
                    need.eq(seqbase + last_row),
                ]  # fmt: skip
                for u in range(MAX_KERNEL):
                    m.d.sync += rowmask[u].eq((r0 + u >= 0) & (r0 + u < H) & (u < k))
                m.next = "ROW_WAIT"
            with m.State("ROW_WAIT"):
                with m.If(self.loaded.rows > need):
                    m.next = "SEG"
                with m.Else():
                    m.d.comb += self.perf.stall.eq(1)
            with m.State("SEG"):
                m.d.comb += [
                    self.cmd.valid.eq(1), self.cmd.payload.addr.eq(segout),
                    self.cmd.payload.beats.eq(wscur),
                ]  # fmt: skip
                m.d.sync += [
                    dj.eq(0), dg.eq(0), du.eq(0), dw_.eq(0), dt.eq(0), la_j.eq(0), la_g.eq(0),
                    wa.eq(wseg), c_col.eq(0), c_next.eq(k - 1), c_pix.eq(0), c_pend.eq(0),
                    c_ph.eq(0), c_wcur.eq(((wscur - 1) << stride_sh) + k),
                    c_la.eq(o * f.wwin),
                ]  # fmt: skip
                with m.If(self.cmd.ready):
                    with m.If(f.op == OP_DENSE):
                        m.next = "DENSE"
                    with m.Else():
                        m.next = "DW"
            with m.State("DENSE"):
                m.d.comb += [
                    iss.valid.eq(~stall), iss.la.eq(la_g + dw_), iss.waddr.eq(wa),
                    itag.dense.eq(1),
                    itag.first.eq((dg == 0) & (du == 0) & (dw_ == 0) & ~dt),
                    itag.last.eq((dg == f.gi - 1) & (du == k - 1) & (dw_ == k - 1)
                                 & (dt == f.terms2)),
                    itag.bank.eq(rb + du), itag.rowmask.eq(rowmask >> du), itag.o.eq(o),
                ]  # fmt: skip
                with m.If(stall):
                    m.d.comb += self.perf.stall.eq(1)
                with m.Else():
                    m.d.comb += self.perf.dense.eq(1)
                    m.d.sync += wa.eq(wa + 1)
                    with m.If(f.terms2 & ~dt):  # pow2x2: the same vector again, second term
                        m.d.sync += dt.eq(1)
                    with m.Else():
                        m.d.sync += [dt.eq(0), dw_.eq(dw_ + 1)]
                    with m.If((dt == f.terms2) & (dw_ == k - 1)):
                        m.d.sync += [dw_.eq(0), du.eq(du + 1)]
                        with m.If(du == k - 1):
                            m.d.sync += [du.eq(0), dg.eq(dg + 1), la_g.eq(la_g + f.wwin)]
                            with m.If(dg == f.gi - 1):
                                m.d.sync += [
                                    dg.eq(0), dj.eq(dj + 1), wa.eq(wseg),
                                    la_j.eq(la_j + st), la_g.eq(la_j + st),
                                ]  # fmt: skip
                                with m.If(dj == wscur - 1):
                                    m.d.comb += seg_end.eq(1)
                # A segment's last issue cycle goes straight to the bookkeeping state.
                with m.If(seg_end):
                    m.next = "NEXTSEG"
            with m.State("DW"):
                shift_now = Signal()
                comp_now = Signal()
                can_shift = c_col < c_wcur
                with m.If(c_pend):
                    m.d.comb += comp_now.eq(1)
                    m.d.comb += shift_now.eq((c_ph == f.phases - 1) & can_shift)
                with m.Else():
                    m.d.comb += shift_now.eq(can_shift)
                m.d.comb += [
                    iss.valid.eq(~stall & (shift_now | comp_now)),
                    iss.la.eq(c_la + c_col),
                    itag.dw.eq(1), itag.shift.eq(shift_now), itag.comp.eq(comp_now),
                    itag.phase.eq(c_ph), itag.lastph.eq(c_ph == f.phases - 1),
                    itag.bank.eq(rb), itag.rowmask.eq(rowmask), itag.o.eq(o),
                ]  # fmt: skip
                with m.If(stall):
                    m.d.comb += self.perf.stall.eq(1)
                with m.Else():
                    m.d.comb += self.perf.dw.eq(1)
                    with m.If(comp_now):
                        with m.If(c_ph == f.phases - 1):
                            m.d.sync += [c_pend.eq(0), c_ph.eq(0)]
                        with m.Else():
                            m.d.sync += c_ph.eq(c_ph + 1)
                    with m.If(shift_now):
                        m.d.sync += c_col.eq(c_col + 1)
                        with m.If((c_col == c_next) & (c_pix < wscur)):
                            m.d.sync += [
                                c_pend.eq(1), c_ph.eq(0), c_next.eq(c_next + st),
                                c_pix.eq(c_pix + 1),
                            ]  # fmt: skip
                    with m.If(~can_shift & (~c_pend | (c_ph == f.phases - 1))):
                        m.d.comb += seg_end.eq(1)
                with m.If(seg_end):
                    m.next = "NEXTSEG"
            with m.State("NEXTSEG"):
                m.d.sync += [o.eq(o + 1), segout.eq(segout + f.out_plane), wseg.eq(wseg + f.T)]
                with m.If(o == f.go - 1):
                    m.d.sync += [i.eq(i + 1), r0.eq(r0 + st), rowout.eq(rowout + f.out_row)]
                    with m.If(i == Ho - 1):
                        m.d.sync += [j0.eq(j0 + ws), seqbase.eq(seqbase + H)]
                        with m.If(j0 + ws >= Wo):
                            m.d.sync += free_seq.eq(seqbase + H)
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "STRIP"
                    with m.Else():
                        m.next = "ROW"
                with m.Else():
                    m.next = "SEG"
        return m
