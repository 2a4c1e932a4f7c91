"""Depthwise engine datapath: L lanes x 9 taps of 9-bit x 8-bit multipliers (DSP48 inference).

A lane is one channel; the caller feeds nine taps of that channel's k x k window per cycle
(a 3x3 window in one cycle, a 5x5 one in three) with their weights, already widened to signed
8-bit integers (pow2 codes up to 4 bits, binary and int up to 8 bits all fit), and accumulates
the phases. Products are registered before the tap sum so the multipliers map to DSP48E2 with
their output register.
"""

from __future__ import annotations

from amaranth import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.dense import D_BITS, adder_tree, delay
from hw.params import DW_TAPS

W_BITS = 8
DW_SUM_BITS = 22  # 9 taps of 255 * 127 < 2^19 each


class DepthwiseArray(wiring.Component):
    LATENCY = 5  # products (DSP output register), then 4 adder levels for 9 taps

    def __init__(self, lanes: int, tag_bits: int) -> None:
        self.lanes = lanes
        tap = data.ArrayLayout(signed(D_BITS), lanes)
        wl = data.ArrayLayout(signed(W_BITS), lanes)
        super().__init__(
            {
                "valid_in": In(1),
                "tag_in": In(tag_bits),
                "d": In(data.ArrayLayout(tap, DW_TAPS)),
                "w": In(data.ArrayLayout(wl, DW_TAPS)),
                "valid_out": Out(1),
                "tag_out": Out(tag_bits),
                "sums": Out(data.ArrayLayout(signed(DW_SUM_BITS), lanes)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        for lane in range(self.lanes):
            prods = []
            for t in range(DW_TAPS):
                p = Signal(signed(D_BITS + W_BITS), name=f"p{lane}_{t}")
                m.d.sync += p.eq(self.d[t][lane] * self.w[t][lane])
                prods.append(p)
            total, depth = adder_tree(m, prods, DW_SUM_BITS, f"s{lane}")
            assert 1 + depth == self.LATENCY, "LATENCY must match the tree depth"
            m.d.comb += self.sums[lane].eq(total)
        m.d.comb += [
            self.valid_out.eq(delay(m, self.valid_in, self.LATENCY, "v")),
            self.tag_out.eq(delay(m, self.tag_in, self.LATENCY, "t")),
        ]
        return m
