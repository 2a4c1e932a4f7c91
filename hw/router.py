"""The data router: every returning read beat to where its tag says it goes.

Reads return in request order (one AXI ID), so the router pops one tag per request from the tag
FIFO and routes that many beats: the descriptor to the controller, constants to ``cmem`` (one
CONST_BITS record per lane), weights to ``wmem`` (dense: every code widened to the engine's 4-bit
pow2 code) or to the per-tap ``dwm`` memories (depthwise: codes decoded to int8), input rows to
their line-buffer bank with the strip window's border columns written as ``z_in``, and the
residual add's two inputs to ``abuf`` and, beside it, the element-wise unit. It counts whole
input rows (``loaded``, one side of the row credit) and says when the weights are in.
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.buffers import TAPS, read_members, write_members
from hw.interfaces import (
    GROUP_BITS,
    REQ_BEATS_BITS,
    ROW_SEQ_BITS,
    PerfEvents,
    RowCount,
    TagKind,
    descriptor_beat,
    layer_layout,
    tag_layout,
)
from hw.params import BANKS, HwParams
from hw.requant import CONST_BITS, ChannelConst
from sw.contract.arith import SHIFT_BITS
from sw.contract.descriptor import DESCRIPTOR_BYTES, FMT_BINARY, FMT_INT, OP_DENSE
from sw.contract.layout import CHANNEL_RECORD_BYTES


def eltwise_signature(lanes: int) -> wiring.Signature:
    """One residual-add vector: ``a`` from abuf, ``c`` the beat returning beside it."""
    return wiring.Signature({"valid": Out(1), "a": Out(8 * lanes), "c": Out(8 * lanes)})


class DataRouter(wiring.Component):
    """``tags``: the tag FIFO's read side; ``r``: the AXI read data; ``desc``, the buffers'
    write ports and ``elt``: where beats go; ``loaded``: whole rows in the line buffer;
    ``wgt_done``: the layer's weights are in; ``out_room``: the output FIFO can take a vector."""

    def __init__(self, hp: HwParams) -> None:
        self._hp = hp
        dw = 8 * hp.lanes
        super().__init__({
            "layer": In(layer_layout(hp)), "layer_reset": In(1),
            "tags": In(stream.Signature(tag_layout(hp))), "r": In(stream.Signature(dw)),
            "desc": Out(descriptor_beat(hp.lanes)), "elt": Out(eltwise_signature(hp.lanes)),
            "loaded": Out(RowCount), "wgt_done": Out(1), "idle": Out(1), "out_room": In(1),
            "perf": Out(PerfEvents),
            **write_members(hp), "abuf_r": read_members(hp)["abuf_r"],
        })  # fmt: skip

    def elaborate(self, platform: object) -> Module:  # noqa: C901 - one FSM, one state a kind
        m = Module()
        hp, f = self._hp, self.layer
        L = hp.lanes
        rfire = self.r.valid & self.r.ready
        rbeat = self.r.payload
        tag = Signal(tag_layout(hp))
        cnt = Signal(26)  # beats (or columns) done in the current tag
        sub = Signal(4)  # sub-vector of a depthwise weight beat
        grp, tap = Signal(GROUP_BITS), Signal(5)
        rows_loaded = Signal(ROW_SEQ_BITS)
        # A ROW tag's column bounds, added up when the tag is popped (not on the R path).
        data_end = Signal(REQ_BEATS_BITS + 4)
        cnt_last = Signal.like(cnt)  # cnt at the tag's last beat (or column, or vector)
        m.d.comb += self.loaded.rows.eq(rows_loaded)
        desc_beats = DESCRIPTOR_BYTES // L
        # The depthwise weights' pipeline registers (stage A in WEIGHTS, stage B always).
        # sub_last / tap_last: the last sub-vector of a beat and the last tap, per layer.
        dw = {"vec": Signal(8 * L), "a_grp": Signal(GROUP_BITS), "a_tap": Signal(5),
              "a_en": Signal(), "sub_last": Signal(3), "tap_last": Signal(5)}  # fmt: skip
        m.d.sync += [dw["a_en"].eq(0), dw["tap_last"].eq(f.kk - 1)]
        with m.Switch(f.cbits):
            for cb in (1, 2, 4, 8):
                with m.Case(cb):
                    m.d.sync += dw["sub_last"].eq(8 // cb - 1)
        self._depthwise_decode(m, dw)
        with m.If(self.layer_reset):
            m.d.sync += [rows_loaded.eq(0), self.wgt_done.eq(0)]
        with m.FSM(name="router"):
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(1), self.tags.ready.eq(1)]
                with m.If(self.tags.valid):
                    t = self.tags.payload
                    m.d.sync += [
                        tag.eq(t), cnt.eq(0), sub.eq(0), grp.eq(0), tap.eq(0),
                        data_end.eq(t.lpad + t.n),
                    ]  # fmt: skip
                    # The tag's last count, so that no state subtracts on the R path.
                    last = {
                        TagKind.DESC: desc_beats - 1,
                        TagKind.CONST: (f.go << (CHANNEL_RECORD_BYTES - 1).bit_length()) - 1,
                        TagKind.WEIGHTS: Mux(f.op == OP_DENSE, f.wbeats - 1, f.dw_vecs - 1),
                        TagKind.ROW: t.lpad + t.n + t.rpad - 1,
                        TagKind.ADD_A: t.n - 1, TagKind.ADD_C: t.n - 1,
                    }  # fmt: skip
                    assert set(last) == set(TagKind), "a tag kind without its last count"
                    with m.Switch(t.kind):
                        for kind, value in last.items():
                            with m.Case(kind):
                                m.d.sync += cnt_last.eq(value)
                                m.next = kind.name
            with m.State("DESC"):
                m.d.comb += [
                    self.r.ready.eq(1), self.desc.valid.eq(rfire), self.desc.data.eq(rbeat),
                    self.desc.index.eq(cnt), self.desc.last.eq(cnt == cnt_last),
                ]  # fmt: skip
                with m.If(rfire):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == cnt_last):
                        m.next = "IDLE"
            with m.State("CONST"):
                m.d.comb += self.r.ready.eq(1)
                self._constants(m, rfire, rbeat, cnt, cnt_last)
            with m.State("WEIGHTS"):
                with m.If(f.op == OP_DENSE):
                    self._dense_weights(m, rfire, rbeat, cnt, cnt_last)
                with m.Else():
                    self._depthwise_weights(m, rbeat, cnt, cnt_last, sub, grp, tap, dw)
            with m.State("DWDRAIN"):
                # The last vector is in stage B; its write lands at the end of DWDRAIN2.
                m.next = "DWDRAIN2"
            with m.State("DWDRAIN2"):
                m.d.sync += self.wgt_done.eq(1)
                m.next = "IDLE"
            with m.State("ROW"):
                # cnt walks the window's columns: left border, DDR beats, right border.
                in_lpad = cnt < tag.lpad
                in_data = ~in_lpad & (cnt < data_end)
                m.d.comb += self.r.ready.eq(in_data)
                wr_now = Mux(in_data, rfire, 1)
                zvec = Cat(*([f.z_in] * L))
                for b in range(BANKS):
                    m.d.comb += [
                        self.lb_w[b].addr.eq(tag.base + cnt),
                        self.lb_w[b].data.eq(Mux(in_data, rbeat, zvec)),
                        self.lb_w[b].en.eq(wr_now & (tag.bank == b)),
                    ]
                with m.If(wr_now):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == cnt_last):
                        with m.If(tag.last_g):
                            m.d.sync += rows_loaded.eq(rows_loaded + 1)
                        m.next = "IDLE"
            with m.State("ADD_A"):
                m.d.comb += [
                    self.r.ready.eq(1), self.abuf_w.addr.eq(cnt), self.abuf_w.data.eq(rbeat),
                    self.abuf_w.en.eq(rfire),
                ]  # fmt: skip
                with m.If(rfire):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == cnt_last):
                        m.next = "IDLE"
            with m.State("ADD_C"):
                m.d.comb += [self.r.ready.eq(self.out_room), self.abuf_r.addr.eq(cnt),
                             self.elt.valid.eq(rfire)]  # fmt: skip
                with m.If(self.r.valid & ~self.out_room):
                    m.d.comb += self.perf.stall.eq(1)
                with m.If(rfire):
                    m.d.comb += self.perf.eltwise.eq(1)
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == cnt_last):
                        m.next = "IDLE"
        m.d.comb += [self.elt.a.eq(self.abuf_r.data), self.elt.c.eq(rbeat)]
        return m

    def _constants(self, m: Module, rfire: object, rbeat: object, cnt: Signal,
                   cnt_last: Signal) -> None:  # fmt: skip
        """Channel records (CHANNEL_RECORD_BYTES each, lane order) into ``cmem``: a group's L
        records are 16 beats at any L, so an 8-lane beat is half a record (the low half waits in
        a register), a 16-lane beat one record and a 32-lane beat two."""
        L = self._hp.lanes
        rec_bits, dw = 8 * CHANNEL_RECORD_BYTES, 8 * L
        used = ChannelConst.size  # the record's bits up to the shift's low SHIFT_BITS

        def widen(r: object) -> object:
            return Cat(r[0 : used - SHIFT_BITS], r[used - SHIFT_BITS : used],
                       C(0, CONST_BITS - used))  # fmt: skip

        beat_sh = (CHANNEL_RECORD_BYTES - 1).bit_length()  # beats of one group, as a shift
        m.d.comb += self.cmem_w.addr.eq(cnt >> beat_sh)
        if dw < rec_bits:
            per = rec_bits // dw  # beats per record
            psh = per.bit_length() - 1
            low = Signal(rec_bits - dw)
            with m.If(rfire):
                m.d.sync += low.eq(Cat(low[dw:], rbeat)[: rec_bits - dw])
            lane = cnt[psh:beat_sh]
            last = cnt[:psh] == per - 1
            m.d.comb += [
                self.cmem_w.data.eq(Cat(*([widen(Cat(low, rbeat))] * L))),
                self.cmem_w.en.eq(Mux(rfire & last, 1 << lane, 0)),
            ]
        else:
            per = dw // rec_bits  # records per beat
            recs = [widen(rbeat[j * rec_bits : (j + 1) * rec_bits]) for j in range(per)]
            first = cnt[:beat_sh] << (per.bit_length() - 1)  # lane of the beat's first record
            m.d.comb += [
                self.cmem_w.data.eq(Cat(*[recs[lane % per] for lane in range(L)])),
                self.cmem_w.en.eq(Mux(rfire, ((1 << per) - 1) << first, 0)),
            ]
        with m.If(rfire):
            m.d.sync += cnt.eq(cnt + 1)
            with m.If(cnt == cnt_last):
                m.next = "IDLE"

    def _dense_weights(self, m: Module, rfire: object, rbeat: object, cnt: Signal,
                       cnt_last: Signal) -> None:  # fmt: skip
        """Widen every code to the internal 4-bit pow2 code (sign bit 3, magnitude in 2:0);
        binary weights become +-1 codes. A block (L x L codes, L / 2 beat-wide granules of
        ``wmem``) takes L / 2 beats of 4-bit codes or L / 8 beats of 1-bit codes, each of the
        latter filling 4 granules."""
        f, L = self.layer, self._hp.lanes
        dw = 8 * L
        m.d.comb += self.r.ready.eq(1)
        c4 = []
        for i in range(dw // 4):
            code = rbeat[4 * i : 4 * i + 4]
            c4.append(Mux(f.weight_bits == 3, Cat(code[0:2], C(0, 1), code[2]), code))
        bexp = Cat(*[Cat(C(1, 1), C(0, 2), rbeat[i]) for i in range(dw)])
        binary = f.weight_format == FMT_BINARY
        p_sh = (L // 2).bit_length() - 1  # pow2 beats per block, as a shift
        b_sh = (L // 8).bit_length() - 1  # binary beats per block, as a shift
        b_en = C(0xF, 4) << (cnt[:b_sh] << 2) if b_sh else C(0xF, 4)
        m.d.comb += [
            self.wmem_w.addr.eq(Mux(binary, cnt >> b_sh, cnt >> p_sh)),
            self.wmem_w.data.eq(Mux(binary, Cat(*([bexp] * (L // 8))), Cat(*(c4 * (L // 2))))),
            self.wmem_w.en.eq(Mux(rfire, Mux(binary, b_en, 1 << cnt[:p_sh]), 0)),
        ]
        with m.If(rfire):
            m.d.sync += cnt.eq(cnt + 1)
            with m.If(cnt == cnt_last):
                m.d.sync += self.wgt_done.eq(1)
                m.next = "IDLE"

    def _depthwise_weights(self, m: Module, rbeat: object, cnt: Signal, cnt_last: Signal,
                           sub: Signal, grp: Signal, tap: Signal,
                           dw: dict[str, Signal]) -> None:  # fmt: skip
        """Stage A of the depthwise weights: 8 / cbits vectors of L codes per beat, in
        [g][u][w][l] order, one a cycle into ``dw["vec"]`` with its group and tap."""
        f, L = self.layer, self._hp.lanes
        cbits = f.cbits
        for cb in (1, 2, 4, 8):
            with m.If(cbits == cb):
                per = 8 // cb
                m.d.sync += dw["vec"][: cb * L].eq(
                    rbeat.word_select(sub[: max(per.bit_length() - 1, 1)], cb * L)
                    if per > 1 else rbeat
                )  # fmt: skip
        last_sub = (sub == dw["sub_last"]) | (cnt == cnt_last)
        with m.If(self.r.valid):
            m.d.sync += [dw["a_en"].eq(1), dw["a_grp"].eq(grp), dw["a_tap"].eq(tap)]
            m.d.comb += self.r.ready.eq(last_sub)
            m.d.sync += [cnt.eq(cnt + 1), sub.eq(sub + 1)]
            with m.If(last_sub):
                m.d.sync += sub.eq(0)
            with m.If(tap == dw["tap_last"]):
                m.d.sync += [tap.eq(0), grp.eq(grp + 1)]
            with m.Else():
                m.d.sync += tap.eq(tap + 1)
            with m.If(cnt == cnt_last):
                m.next = "DWDRAIN"

    def _depthwise_decode(self, m: Module, dw: dict[str, Signal]) -> None:
        """Stage B: stage A's codes decoded to int8 into registers that write the tap's memory.
        Select and decode in one cycle were a 16-level path into the LUT-RAM's data."""
        f, L = self.layer, self._hp.lanes
        wbits, wfmt, cbits, vec = f.weight_bits, f.weight_format, f.cbits, dw["vec"]
        # int codes: two's complement of `bits` bits inside the container; `half` depends on
        # the layer only, so it is a register too.
        half = Signal(9)
        m.d.sync += half.eq(C(1, 9) << (wbits - 1).as_unsigned()[:3])
        lanes_w = []
        for lane in range(L):
            wv = Signal(signed(8), name=f"dwv{lane}")
            with m.Switch(cbits):
                for cb in (1, 2, 4, 8):
                    with m.Case(cb):
                        code = vec[cb * lane : cb * lane + cb]
                        ival = Mux(code >= half, code - (half << 1), code)
                        if cb == 1:
                            m.d.comb += wv.eq(Mux(code[0], -1, 1))
                        elif cb == 4:
                            # pow2: sign at bit bits-1, magnitude field below it.
                            sgn = Mux(wbits == 3, code[2], code[3])
                            mfield = Mux(wbits == 3, code[0:2], code[0:3])
                            mag = Mux(mfield == 0, 0, (1 << mfield) >> 1)
                            m.d.comb += wv.eq(Mux(wfmt == FMT_INT, ival, Mux(sgn, -mag, mag)))
                        else:
                            m.d.comb += wv.eq(ival)
            lanes_w.append(wv)
        b_data, b_grp, b_tap, b_en = (Signal(8 * L), Signal.like(dw["a_grp"]),
                                      Signal.like(dw["a_tap"]), Signal())  # fmt: skip
        m.d.sync += [b_data.eq(Cat(*lanes_w)), b_grp.eq(dw["a_grp"]), b_tap.eq(dw["a_tap"]),
                     b_en.eq(dw["a_en"])]  # fmt: skip
        for t in range(TAPS):
            m.d.comb += [
                self.dwm_w[t].addr.eq(b_grp),
                self.dwm_w[t].data.eq(b_data),
                self.dwm_w[t].en.eq(b_en & (b_tap == t)),
            ]
