"""Dense engine datapath: L_o x L_i shift-and-add units and their adder trees (no multipliers).

Every cycle it takes one input vector ``d`` (L_i signed differences ``q - z_in``) and one weight
block (L_o x L_i 4-bit codes: sign bit 3, magnitude field m in bits 2:0, weight ``(-1)^s 2^(m-1)``,
zero for m = 0) and produces the L_o dot products three cycles later. Accumulation over
(ig, u, w) is done by the caller. The tag travels alongside, so control needs no separate delay.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

D_BITS = 9  # q - z_in for 8-bit codes: -255 .. 255
PROD_BITS = 16  # 255 << 6 = 16320 plus sign
SUM_BITS = 20  # 16 products


def shift_product(d: object, code: object) -> object:
    """``v * d`` for a 4-bit internal pow2 code: shift, negate, or zero (one LUT level each)."""
    m = code[0:3]
    # (d << m) >> 1 == d << (m - 1) for m >= 1 without a negative shift amount.
    mag = ((d << m) >> 1).as_signed()
    return Mux(m == 0, 0, Mux(code[3], -mag, mag))


class DenseArray(wiring.Component):
    LATENCY = 3

    def __init__(self, lanes_in: int, lanes_out: int, tag_bits: int) -> None:
        self.lanes_in, self.lanes_out = lanes_in, lanes_out
        super().__init__(
            {
                "valid_in": In(1),
                "tag_in": In(tag_bits),
                "d": In(data.ArrayLayout(signed(D_BITS), lanes_in)),
                "codes": In(lanes_in * lanes_out * 4),
                "valid_out": Out(1),
                "tag_out": Out(tag_bits),
                "sums": Out(data.ArrayLayout(signed(SUM_BITS), lanes_out)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        li, lo = self.lanes_in, self.lanes_out
        # Stage 1: products, registered (the shifter + negation is the long path).
        prods = [[Signal(signed(PROD_BITS + 1), name=f"p{o}_{i}") for i in range(li)]
                 for o in range(lo)]  # fmt: skip
        for o in range(lo):
            for i in range(li):
                code = self.codes[(o * li + i) * 4 : (o * li + i) * 4 + 4]
                m.d.sync += prods[o][i].eq(shift_product(self.d[i], code))
        # Stage 2: groups of four; stage 3: the rest of the tree.
        quads = [[Signal(signed(PROD_BITS + 3), name=f"q{o}_{g}") for g in range(li // 4)]
                 for o in range(lo)]  # fmt: skip
        for o in range(lo):
            for g in range(li // 4):
                p = prods[o][4 * g : 4 * g + 4]
                m.d.sync += quads[o][g].eq((p[0] + p[1]) + (p[2] + p[3]))
            total = quads[o][0]
            for g in range(1, li // 4):
                total = total + quads[o][g]
            m.d.sync += self.sums[o].eq(total)
        v1, v2 = Signal(), Signal()
        t1, t2 = Signal.like(self.tag_in), Signal.like(self.tag_in)
        m.d.sync += [
            v1.eq(self.valid_in), v2.eq(v1), self.valid_out.eq(v2),
            t1.eq(self.tag_in), t2.eq(t1), self.tag_out.eq(t2),
        ]  # fmt: skip
        return m
