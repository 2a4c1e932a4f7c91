"""The descriptor controller: one layer after another, from START to DONE or ERROR.

For every descriptor of the list it requests the 64 bytes (tag DESC), waits for the router to
deliver them, decodes the fields (sw/contract/descriptor.py LAYOUT), derives the layer's sizes
over four SETUP cycles (each a few narrow multiplies, so none sits in one long path), registers
CHECK's error code, and then either refuses the layer or starts the address sequencer (and the
compute controller for a convolution) and waits until every block has drained. A read or write
response other than OKAY during a layer ends the run with ERR_AXI.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.check import DescriptorCheck
from hw.interfaces import (
    TagKind,
    control_signature,
    descriptor_beat,
    layer_layout,
    read_request,
)
from hw.params import HwParams
from sw.contract.descriptor import (
    DESCRIPTOR_BYTES,
    FMT_BINARY,
    FMT_POW2,
    FMT_POW2X2,
    LAYOUT,
    OP_DENSE,
    OP_DEPTHWISE,
)
from sw.contract.registers import ERR_AXI, ERROR_BITS


class DescriptorController(wiring.Component):
    """``control``: the register file; ``desc``: descriptor beats from the router; ``req``: the
    descriptor read; ``layer``: the running layer, for every other block; ``layer_reset``: one
    cycle before each descriptor's fetch; ``seq_start``/``compute_start``: start pulses;
    ``layer_idle``: every block and FIFO has drained; ``bus_error``: a non-OKAY response."""

    def __init__(self, hp: HwParams) -> None:
        self._hp = hp
        super().__init__({
            "control": In(control_signature()),
            "desc": In(descriptor_beat(hp.lanes)),
            "req": Out(read_request(hp)),
            "layer": Out(layer_layout(hp)),
            "layer_reset": Out(1), "seq_start": Out(1), "compute_start": Out(1),
            "layer_idle": In(1), "bus_error": In(1),
        })  # fmt: skip

    def elaborate(self, platform: object) -> Module:
        m = Module()
        L = self._hp.lanes
        ctl, f = self.control, self.layer
        m.submodules.check = check = DescriptorCheck(self._hp)
        m.d.comb += check.layer.eq(f)

        desc = Signal(8 * DESCRIPTOR_BYTES)
        desc_loaded = Signal()
        with m.If(self.layer_reset):
            m.d.sync += desc_loaded.eq(0)
        with m.If(self.desc.valid):
            m.d.sync += desc.word_select(self.desc.index, 8 * L).eq(self.desc.data)
            with m.If(self.desc.last):
                m.d.sync += desc_loaded.eq(1)
        axi_err = Signal()
        with m.If(self.bus_error):
            m.d.sync += axi_err.eq(1)
        with m.Elif(ctl.start):
            m.d.sync += axi_err.eq(0)

        busy = Signal()
        cur_desc = Signal(32)
        desc_idx = Signal(16)
        err = Signal(ERROR_BITS)
        m.d.comb += ctl.busy.eq(busy)
        k, wfmt, wbits, ws = f.kernel, f.weight_format, f.weight_bits, f.strip_width
        stride_sh = f.stride == 2
        is_dense = f.op == OP_DENSE
        lanes_sh = L.bit_length() - 1
        with m.FSM(name="main"):
            with m.State("IDLE"):
                with m.If(ctl.start):
                    m.d.sync += [busy.eq(1), desc_idx.eq(0), cur_desc.eq(ctl.desc_addr)]
                    m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(desc_idx == ctl.desc_count):
                    m.d.sync += busy.eq(0)
                    m.d.comb += ctl.finish.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.layer_reset.eq(1)
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [
                    self.req.valid.eq(1),
                    self.req.payload.addr.eq(cur_desc),
                    self.req.payload.beats.eq(DESCRIPTOR_BYTES // L),
                    self.req.payload.tag.kind.eq(TagKind.DESC),
                ]
                with m.If(self.req.ready):
                    m.next = "WAITD"
            with m.State("WAITD"):
                with m.If(desc_loaded):
                    for n, (word, lo, width) in LAYOUT.items():
                        m.d.sync += f[n].eq(desc[word * 32 + lo : word * 32 + lo + width])
                    m.next = "SETUP1"
            with m.State("SETUP1"):
                m.d.sync += [
                    f.qmax.eq((1 << f.out_bits) - 1),
                    f.gi.eq((f.in_channels + L - 1) >> lanes_sh),
                    f.go.eq((f.out_channels + L - 1) >> lanes_sh),
                    f.kk.eq(k * k),
                    # pow2x2: two 4-bit term blocks (two issues) per (og, ig, u, w).
                    f.terms2.eq(is_dense & (wfmt == FMT_POW2X2)),
                    f.wwin.eq(((ws - 1) << stride_sh) + k),
                    f.in_pixels.eq(f.in_height * f.in_width), f.in_row.eq(f.in_width * L),
                    f.out_plane.eq(f.out_height * f.out_width * L),
                    f.out_row.eq(f.out_width * L),
                    f.phases.eq(Mux(k > 3, 3, 1)),
                    f.cbits.eq(Mux(wfmt == FMT_BINARY, 1, Mux(wfmt == FMT_POW2, 4,
                               Mux(wbits <= 2, 2, Mux(wbits <= 4, 4, 8))))),
                ]  # fmt: skip
                m.next = "SETUP2"
            with m.State("SETUP2"):
                m.d.sync += [
                    f.T.eq((f.gi * f.kk) << f.terms2),
                    f.slot_words.eq(f.gi * f.wwin),
                    f.dw_vecs.eq(f.gi * f.kk),
                    # One multiply per derived size per cycle: the product of three 16-bit
                    # fields in one cycle was a register-to-register path of two multipliers.
                    f.in_plane.eq(f.in_pixels << lanes_sh),
                    f.add_words.eq(f.gi * f.in_pixels),
                ]
                m.next = "SETUP3"
            with m.State("SETUP3"):
                m.d.sync += f.blocks.eq(f.go * f.T)
                m.next = "SETUP4"
            with m.State("SETUP4"):
                # A dense block is L x L codes: L / 2 beats of 4-bit codes, L / 8 of 1-bit ones.
                m.d.sync += f.wbeats.eq(
                    Mux(is_dense, Mux(wfmt == FMT_BINARY, f.blocks << (lanes_sh - 3),
                                      f.blocks << (lanes_sh - 1)),
                        (f.dw_vecs * f.cbits + 7) >> 3)
                )  # fmt: skip
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += err.eq(check.error)
                m.next = "GO"
            with m.State("GO"):
                with m.If(err != 0):
                    m.d.sync += busy.eq(0)
                    m.d.comb += [
                        ctl.fail.eq(1), ctl.fail_code.eq(err), ctl.fail_index.eq(desc_idx),
                    ]  # fmt: skip
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [
                        self.seq_start.eq(1),
                        self.compute_start.eq(is_dense | (f.op == OP_DEPTHWISE)),
                    ]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(self.layer_idle):
                    with m.If(axi_err):
                        m.d.sync += busy.eq(0)
                        m.d.comb += [
                            ctl.fail.eq(1), ctl.fail_code.eq(ERR_AXI),
                            ctl.fail_index.eq(desc_idx),
                        ]  # fmt: skip
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [
                            desc_idx.eq(desc_idx + 1), cur_desc.eq(cur_desc + DESCRIPTOR_BYTES),
                        ]  # fmt: skip
                        m.d.comb += ctl.layer_done.eq(1)
                        m.next = "NEXT"
        return m
