"""The address sequencer: every DDR read of one layer, in the order the router expects them.

A convolution reads its constants, its weights, then for every column strip (docs/arithmetic.md
section 10) every input row of the strip's window, one request per channel group; the row's tag
says which line-buffer bank and base word it goes to and how many border columns the router
fills with ``z_in`` on each side. Row ``n`` is fetched only when its bank is free
(``n < free.rows + BANKS``): that is how far the prefetch runs ahead of the compute. A residual
add reads both inputs chunk by chunk (ADD_CHUNK vectors) and queues one write command per chunk.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.interfaces import (
    GROUP_BITS,
    REQ_BEATS_BITS,
    ROW_SEQ_BITS,
    RowCount,
    TagKind,
    WriteCommand,
    layer_layout,
    read_request,
)
from hw.params import ADD_CHUNK, BANKS, HwParams
from sw.contract.descriptor import OP_ADD
from sw.contract.layout import CHANNEL_RECORD_BYTES


class AddressSequencer(wiring.Component):
    """``start`` a layer described by ``layer``; ``req``: read requests with their tags;
    ``cmd``: the residual add's write commands; ``free``: the compute's row credit; ``done``:
    idle (high from reset and after the last request)."""

    def __init__(self, hp: HwParams) -> None:
        self._hp = hp
        super().__init__({
            "layer": In(layer_layout(hp)), "start": In(1), "done": Out(1),
            "req": Out(read_request(hp)), "cmd": Out(stream.Signature(WriteCommand)),
            "free": In(RowCount),
        })  # fmt: skip

    def elaborate(self, platform: object) -> Module:  # noqa: C901 - one FSM, one state a block
        m = Module()
        hp, f = self._hp, self.layer
        L = hp.lanes
        req, tag = self.req, self.req.payload.tag
        k, pad, ws = f.kernel, f.pad, f.strip_width
        W, Wo, H = f.in_width, f.out_width, f.in_height
        stride_sh = f.stride == 2
        seq = Signal(ROW_SEQ_BITS)  # sequence number of the next row (all strips)
        j0 = Signal(16)  # first output column of the strip
        r = Signal(16)  # input row within the strip
        g = Signal(GROUP_BITS)
        off = Signal(32)  # residual add: vectors done
        add_left = Signal(32)  # residual add: vectors left
        rowaddr, gaddr, base = Signal(32), Signal(32), Signal(range(hp.bank_words))
        geo_lpad, geo_rpad, geo_n = Signal(3), Signal(3), Signal(REQ_BEATS_BITS)
        geo_clo = Signal(16)
        ws_cur = Signal(16)  # output columns of this strip
        cf, cend = Signal(signed(18)), Signal(signed(18))  # first, last window column (unclipped)
        wcur = Signal(signed(18))  # window columns
        chi = Signal(signed(18))  # last window column inside the map

        def request(kind: TagKind, addr: object, beats: object, valid: object = 1) -> None:
            m.d.comb += [
                req.valid.eq(valid), req.payload.addr.eq(addr), req.payload.beats.eq(beats),
                tag.kind.eq(kind),
            ]  # fmt: skip

        with m.FSM(name="addrseq"):
            with m.State("IDLE"):
                m.d.comb += self.done.eq(1)
                with m.If(self.start):
                    m.d.sync += [seq.eq(0), j0.eq(0), off.eq(0), add_left.eq(f.add_words)]
                    with m.If(f.op == OP_ADD):
                        m.next = "ADD_A"
                    with m.Else():
                        m.next = "CONST"
            with m.State("CONST"):
                # L records of CHANNEL_RECORD_BYTES per group = CHANNEL_RECORD_BYTES L-byte beats.
                request(TagKind.CONST, f.const_addr, f.go * CHANNEL_RECORD_BYTES)
                with m.If(req.ready):
                    m.next = "WGT"
            with m.State("WGT"):
                request(TagKind.WEIGHTS, f.weight_addr, f.wbeats)
                with m.If(req.ready):
                    m.next = "STRIP"
            # Window of this strip (docs/arithmetic.md section 10) and its border padding, over
            # four states of one or two carry chains each (one state was a 19-level path):
            # output columns and first input column, then the window's width, left padding,
            # first and last column, then the last column inside the map, then the columns read.
            with m.State("STRIP"):
                m.d.sync += [
                    ws_cur.eq(Mux(Wo - j0 < ws, Wo - j0, ws)), cf.eq((j0 << stride_sh) - pad),
                    r.eq(0),
                ]  # fmt: skip
                m.next = "STRIP_W"
            with m.State("STRIP_W"):
                m.d.sync += [
                    wcur.eq(((ws_cur - 1) << stride_sh) + k),
                    cend.eq(cf + (((ws_cur - 1) << stride_sh) + (k - 1))),
                    geo_lpad.eq(Mux(cf < 0, -cf, 0)), geo_clo.eq(Mux(cf < 0, 0, cf)),
                ]  # fmt: skip
                m.next = "STRIP_E"
            with m.State("STRIP_E"):
                m.d.sync += chi.eq(Mux(cend > W - 1, W - 1, cend))
                m.next = "STRIP_N"
            with m.State("STRIP_N"):
                m.d.sync += [geo_n.eq(chi - geo_clo + 1), rowaddr.eq(f.in_addr + geo_clo * L)]
                m.next = "ROW"
            with m.State("ROW"):
                m.d.sync += [
                    g.eq(0), gaddr.eq(rowaddr), base.eq(0),
                    geo_rpad.eq(wcur - geo_lpad - geo_n),  # the same every row of the strip
                ]  # fmt: skip
                with m.If(seq < self.free.rows + BANKS):
                    m.next = "GRP"
            with m.State("GRP"):
                request(TagKind.ROW, gaddr, geo_n)
                m.d.comb += [
                    tag.bank.eq(seq[: BANKS.bit_length() - 1]), tag.base.eq(base),
                    tag.lpad.eq(geo_lpad), tag.n.eq(geo_n), tag.rpad.eq(geo_rpad),
                    tag.last_g.eq(g == f.gi - 1),
                ]  # fmt: skip
                with m.If(req.ready):
                    m.d.sync += [g.eq(g + 1), gaddr.eq(gaddr + f.in_plane), base.eq(base + f.wwin)]
                    with m.If(g == f.gi - 1):
                        m.d.sync += [seq.eq(seq + 1), r.eq(r + 1), rowaddr.eq(rowaddr + f.in_row)]
                        with m.If(r == H - 1):
                            m.d.sync += j0.eq(j0 + ws)
                            with m.If(j0 + ws >= Wo):
                                m.next = "IDLE"
                            with m.Else():
                                m.next = "STRIP"
                        with m.Else():
                            m.next = "ROW"
            # add_left = add_words - off, kept as a register: subtracting, comparing, adding and
            # comparing again in ADD_C was a 10-level path into the state register.
            add_n = Mux(add_left < ADD_CHUNK, add_left, ADD_CHUNK)
            with m.State("ADD_A"):
                request(TagKind.ADD_A, f.in_addr + off * L, add_n)
                m.d.comb += tag.n.eq(add_n)
                with m.If(req.ready):
                    m.next = "ADD_C"
            with m.State("ADD_C"):
                # The second input's read and the chunk's write command go together: the read
                # is offered only while the command FIFO has room, the command queued with it.
                request(TagKind.ADD_C, f.weight_addr + off * L, add_n, valid=self.cmd.ready)
                m.d.comb += [
                    tag.n.eq(add_n),
                    self.cmd.valid.eq(req.valid & req.ready),
                    self.cmd.payload.addr.eq(f.out_addr + off * L),
                    self.cmd.payload.beats.eq(add_n),
                ]  # fmt: skip
                with m.If(req.valid & req.ready):
                    m.d.sync += [off.eq(off + add_n), add_left.eq(add_left - add_n)]
                    with m.If(add_left <= ADD_CHUNK):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "ADD_A"
        return m
