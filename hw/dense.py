"""Dense engine datapath: L_o x L_i shift-and-add units and their adder trees (no multipliers).

Every cycle it takes one input vector ``d`` (L_i signed differences ``q - z_in``) and one weight
block (L_o x L_i 4-bit codes: sign bit 3, magnitude field m in bits 2:0, weight ``(-1)^s 2^(m-1)``,
zero for m = 0) and produces the L_o dot products ``LATENCY`` = 1 + log2(L_i) cycles later.
Accumulation over (ig, u, w) is done by the caller. The tag travels alongside, so control needs no
separate delay.
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


def shift_term(d: object, code: object) -> tuple[object, object]:
    """``v * d`` for a 4-bit code without the negation: ``(x, neg)`` with ``v * d == x + neg``,
    i.e. the shifted value, inverted (``~t == -t - 1``) when the weight is negative. The ``+ neg``
    goes into an adder of the tree as its carry-in, so the PE needs no subtractor of its own."""
    m = code[0:3]
    mag = ((d << m) >> 1).as_signed()
    neg = code[3] & (m != 0)
    return Mux(m == 0, 0, mag) ^ Mux(neg, -1, 0), neg


def carry_in_tree(
    m: Module, terms: list[tuple[object, list[object]]], width: int, name: str
) -> tuple[Signal, int]:
    """Sum of ``terms`` (value, 1-bit addends still owed) as a balanced tree of two-input adders,
    one register per level, each adder taking one owed bit as its carry-in (yosys maps
    ``a + b + c`` with a 1-bit ``c`` to one carry chain with CI); the others ride along in
    registers to the next level. A tree of n leaves has n - 1 adders, so n - 1 owed bits fit:
    the caller gives one leaf none. Returns the sum and the number of register levels."""

    def node(value: object, owed: list[object], tag: str) -> tuple[Signal, list[object]]:
        """``value`` registered, with the owed bits registered beside it (same level)."""
        r = Signal(signed(width), name=f"{name}_l{depth}_{tag}")
        m.d.sync += r.eq(value)
        rest = []
        for j, bit in enumerate(owed):
            q = Signal(name=f"{name}_c{depth}_{tag}_{j}")
            m.d.sync += q.eq(bit)
            rest.append(q)
        return r, rest

    level, depth = list(terms), 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            (a, owed_a), (b, owed_b) = level[i], level[i + 1]
            owed = owed_a + owed_b
            nxt.append(node(a + b + owed[0] if owed else a + b, owed[1:], str(i // 2)))
        if len(level) % 2:
            nxt.append(node(*level[-1], "odd"))
        level, depth = nxt, depth + 1
    total, owed = level[0]
    assert not owed, f"{name}: {len(owed)} carry-in bits left over"
    return total, depth


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
        # Stage 1: shifted (and, for negative weights, inverted) inputs, registered. The +1 of
        # each negation is owed to the adder tree, which takes it as a carry-in: a PE is a
        # shifter and an XOR, no subtractor (28 % fewer LUTs for the array than negating in
        # the PE, half the carry chains). The last input of a lane is negated in its PE: a
        # tree of li leaves has li - 1 adders, one carry-in each.
        depth = 0
        for o in range(lo):
            terms: list[tuple[object, list[object]]] = []
            for i in range(li):
                code = self.codes[(o * li + i) * 4 : (o * li + i) * 4 + 4]
                x = Signal(signed(PROD_BITS + 1), name=f"p{o}_{i}")
                if i == li - 1:
                    m.d.sync += x.eq(shift_product(self.d[i], code))
                    terms.append((x, []))
                    continue
                value, neg = shift_term(self.d[i], code)
                n = Signal(name=f"n{o}_{i}")
                m.d.sync += [x.eq(value), n.eq(neg)]
                terms.append((x, [n]))
            # Stages 2..: the adder tree, one register per level.
            total, depth = carry_in_tree(m, terms, SUM_BITS, f"t{o}")
            m.d.comb += self.sums[o].eq(total)
        assert 1 + depth == self.LATENCY, "LATENCY must match the tree depth"
        m.d.comb += [
            self.valid_out.eq(delay(m, self.valid_in, self.LATENCY, "v")),
            self.tag_out.eq(delay(m, self.tag_in, self.LATENCY, "t")),
        ]
        return m
