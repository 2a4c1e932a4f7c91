"""The engines' pipelines: issue cycle in, requantized output vectors out.

Stage 1 reads the line buffer (every bank at the issued word) and the dense weight block. Then
the dense engine (hw/dense.py) takes the bank word of kernel row u minus ``z_in`` (0 outside
the map), and the depthwise engine (hw/depthwise.py) a 5 x 5 window of such vectors, shifted one
column per issue cycle, of which each phase feeds 9 taps. Both accumulate over their cycles of
one pixel; the finished sum waits one cycle for its group's constants and goes through the
shared requantization unit (hw/requant.py). The residual add's vectors (hw/requant.py Eltwise)
join at the output, which goes to the output FIFO.
"""

from __future__ import annotations

import functools
import operator

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.buffers import TAPS, read_members
from hw.dense import D_BITS, DenseArray
from hw.depthwise import DepthwiseArray
from hw.interfaces import GROUP_BITS, issue_signature, issue_tag, layer_layout
from hw.params import BANKS, DW_TAPS, MAX_KERNEL, HwParams
from hw.requant import CONST_BITS, ChannelConst, Eltwise, Requant
from hw.router import eltwise_signature
from sw.contract.descriptor import KERNELS


class Datapath(wiring.Component):
    """``issue``: one engine cycle (compute controller); ``elt``: one residual-add vector
    (router); the buffers' read ports; ``out_valid``/``out``: one vector for the output FIFO."""

    def __init__(self, hp: HwParams) -> None:
        self._hp = hp
        reads = read_members(hp)
        super().__init__({
            "layer": In(layer_layout(hp)), "issue": In(issue_signature(hp)),
            "elt": In(eltwise_signature(hp.lanes)),
            "lb_r": reads["lb_r"], "wmem_r": reads["wmem_r"], "dwm_r": reads["dwm_r"],
            "cmem_r": reads["cmem_r"],
            "out_valid": Out(1), "out": Out(8 * hp.lanes),
        })  # fmt: skip

    def elaborate(self, platform: object) -> Module:
        m = Module()
        L = self._hp.lanes
        DW = 8 * L
        f = self.layer
        k, z_in = f.kernel, f.z_in
        IssueTag = issue_tag()
        for b in range(BANKS):
            m.d.comb += [self.lb_r[b].addr.eq(self.issue.la), self.lb_r[b].en.eq(1)]
        m.d.comb += [self.wmem_r.addr.eq(self.issue.waddr), self.wmem_r.en.eq(1)]
        v1 = Signal()
        t1 = Signal(IssueTag)
        m.d.sync += [v1.eq(self.issue.valid), t1.eq(self.issue.tag)]
        bank_words = [self.lb_r[b].data for b in range(BANKS)]

        def bank_sel(sel: object) -> Signal:
            out = Signal(DW, name="banksel")
            with m.Switch(sel):
                for b in range(BANKS):
                    with m.Case(b):
                        m.d.comb += out.eq(bank_words[b])
            return out

        def diff(q: object, valid: object, lane: int) -> object:
            return Mux(valid, q[8 * lane : 8 * lane + 8] - z_in, 0)

        # Dense: bank word of kernel row u, minus z_in (0 outside the map).
        m.submodules.dense = dense = DenseArray(L, L, tag_bits=IssueTag.size)
        qd = bank_sel(t1.bank)
        for lane in range(L):
            m.d.comb += dense.d[lane].eq(diff(qd, t1.rowmask[0], lane))
        m.d.comb += [
            dense.valid_in.eq(v1 & t1.dense), dense.tag_in.eq(t1),
            dense.codes.eq(self.wmem_r.data),
        ]  # fmt: skip
        d_tag = data.View(IssueTag, dense.tag_out)
        d_acc = [Signal(signed(32), name=f"dacc{i}") for i in range(L)]
        fin_valid = Signal()
        fin_acc = Signal(data.ArrayLayout(signed(32), L))
        fin_o = Signal(GROUP_BITS)
        with m.If(dense.valid_out):
            for lane in range(L):
                nxt = Mux(d_tag.first, dense.sums[lane], d_acc[lane] + dense.sums[lane])
                m.d.sync += d_acc[lane].eq(nxt)
                m.d.sync += fin_acc[lane].eq(nxt)

        # Depthwise: 5 x 5 window of d vectors, newest column at index 4.
        win = [[Signal(data.ArrayLayout(signed(D_BITS), L), name=f"win{u}_{c}")
                for c in range(MAX_KERNEL)] for u in range(MAX_KERNEL)]  # fmt: skip
        col = []
        for u in range(MAX_KERNEL):
            q = bank_sel((t1.bank + u)[:3])
            cv = Signal(data.ArrayLayout(signed(D_BITS), L), name=f"col{u}")
            for lane in range(L):
                m.d.comb += cv[lane].eq(diff(q, t1.rowmask[u], lane))
            col.append(cv)
        with m.If(v1 & t1.dw & t1.shift):
            for u in range(MAX_KERNEL):
                for c in range(MAX_KERNEL - 1):
                    m.d.sync += win[u][c].eq(win[u][c + 1])
                m.d.sync += win[u][MAX_KERNEL - 1].eq(col[u])
        m.submodules.dwa = dwa = DepthwiseArray(L, tag_bits=IssueTag.size)
        wt = [self.dwm_r[t].data for t in range(TAPS)]
        for t in range(TAPS):
            m.d.comb += self.dwm_r[t].addr.eq(t1.o)
        d_in = Signal.like(dwa.d)
        w_in = Signal.like(dwa.w)
        # Tap slot n of phase p holds kernel tap 9p + n, (u, w) = divmod(tap, k); the window's
        # column of kernel column w is 5 - k + w (the window is right-aligned).
        # The (kernel, phase) case, decoded once and registered beside t1 (one-hot), so that every
        # d_in / w_in bit is an AND-OR of its few sources: decoding k and the phase in each bit's
        # cone (the If chain on (k == kv) & (phase == p)) cost ~1,800 LUTs as its own module.
        cases = [(kv, p) for kv in KERNELS for p in range((kv * kv + DW_TAPS - 1) // DW_TAPS)]
        sel = Signal(len(cases))
        m.d.sync += sel.eq(Cat(*[(k == kv) & (self.issue.tag.phase == p) for kv, p in cases]))
        with m.If(sel.any()):
            for n in range(DW_TAPS):
                d_terms, w_terms = [], []
                for i, (kv, p) in enumerate(cases):
                    tap = DW_TAPS * p + n
                    if tap < kv * kv:  # otherwise the slot is zero in this case
                        u, wcol = divmod(tap, kv)
                        d_terms.append(Mux(sel[i], win[u][MAX_KERNEL - kv + wcol].as_value(), 0))
                        w_terms.append(Mux(sel[i], wt[tap], 0))
                m.d.sync += [
                    d_in[n].eq(functools.reduce(operator.or_, d_terms)),
                    w_in[n].eq(functools.reduce(operator.or_, w_terms)),
                ]
        v2 = Signal()
        t2 = Signal(IssueTag)
        m.d.sync += [v2.eq(v1 & t1.dw & t1.comp), t2.eq(t1)]
        m.d.comb += [dwa.valid_in.eq(v2), dwa.tag_in.eq(t2), dwa.d.eq(d_in), dwa.w.eq(w_in)]
        w_tag = data.View(IssueTag, dwa.tag_out)
        dw_acc = [Signal(signed(32), name=f"wacc{i}") for i in range(L)]
        with m.If(dwa.valid_out):
            for lane in range(L):
                nxt = Mux(w_tag.phase == 0, dwa.sums[lane], dw_acc[lane] + dwa.sums[lane])
                m.d.sync += [dw_acc[lane].eq(nxt), fin_acc[lane].eq(nxt)]

        m.d.sync += fin_valid.eq((dense.valid_out & d_tag.last) | (dwa.valid_out & w_tag.lastph))
        m.d.sync += fin_o.eq(Mux(dense.valid_out, d_tag.o, w_tag.o))
        # Constants of the group: one cycle of BRAM read, so the accumulator waits one cycle.
        m.d.comb += [self.cmem_r.addr.eq(fin_o), self.cmem_r.en.eq(1)]
        v_rq = Signal()
        acc_rq = Signal.like(fin_acc)
        m.d.sync += [v_rq.eq(fin_valid), acc_rq.eq(fin_acc)]
        m.submodules.rq = rq = Requant(L)
        for lane in range(L):
            raw = self.cmem_r.data[CONST_BITS * lane : CONST_BITS * lane + CONST_BITS]
            m.d.comb += rq.consts[lane].as_value().eq(raw[: ChannelConst.size])
        m.d.comb += [rq.valid_in.eq(v_rq), rq.acc.eq(acc_rq), rq.z_out.eq(f.z_out),
                     rq.qmax.eq(f.qmax)]  # fmt: skip

        m.submodules.elt = elt = Eltwise(L)
        m.d.comb += [
            elt.valid_in.eq(self.elt.valid), elt.a.eq(self.elt.a), elt.c.eq(self.elt.c),
            elt.z_a.eq(z_in), elt.z_c.eq(f.z_in2), elt.m_a.eq(f.m_a), elt.m_c.eq(f.m_b),
            elt.shift.eq(f.shift), elt.relu.eq(f.add_relu), elt.z_out.eq(f.z_out),
            elt.qmax.eq(f.qmax),
            self.out_valid.eq(rq.valid_out | elt.valid_out),
            self.out.eq(Mux(elt.valid_out, elt.out, rq.out)),
        ]  # fmt: skip
        return m
