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


def adder_tree(m: Module, values: list[object], width: int, name: str) -> tuple[Signal, int]:
    """Sum of ``values`` as a balanced tree of two-input adders, one register per level.

    Registering every level keeps yosys from merging the sum into one multi-operand ``$macc``
    (which it maps to LUT compressors); two-input adds map to carry chains. Returns the sum
    and the number of register levels.
    """
    level, depth = list(values), 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            r = Signal(signed(width), name=f"{name}_l{depth}_{i // 2}")
            m.d.sync += r.eq(level[i] + level[i + 1])
            nxt.append(r)
        if len(level) % 2:
            r = Signal(signed(width), name=f"{name}_l{depth}_odd")
            m.d.sync += r.eq(level[-1])
            nxt.append(r)
        level, depth = nxt, depth + 1
    return level[0], depth


def delay(m: Module, sig: object, n: int, name: str) -> object:
    """``sig`` delayed by ``n`` clock cycles."""
    for i in range(n):
        r = Signal.like(sig, name=f"{name}_d{i}")
        m.d.sync += r.eq(sig)
        sig = r
    return sig


class DenseArray(wiring.Component):
    def __init__(self, lanes_in: int, lanes_out: int, tag_bits: int) -> None:
        self.lanes_in, self.lanes_out = lanes_in, lanes_out
        # products, then one register per adder level (4 levels for 16 input lanes)
        self.LATENCY = 1 + (lanes_in - 1).bit_length()
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
        # Stages 2..: the adder tree, one register per level.
        depth = 0
        for o in range(lo):
            total, depth = adder_tree(m, prods[o], SUM_BITS, f"t{o}")
            m.d.comb += self.sums[o].eq(total)
        assert 1 + depth == self.LATENCY, "LATENCY must match the tree depth"
        m.d.comb += [
            self.valid_out.eq(delay(m, self.valid_in, self.LATENCY, "v")),
            self.tag_out.eq(delay(m, self.tag_in, self.LATENCY, "t")),
        ]
        return m
