"""Post-processing units: per-channel requantization of a conv and the residual add (op 3).

Both end in the contract's one rounding rule (docs/arithmetic.md section 1): add ``2^(S-1)``
when ``S >= 1``, arithmetic shift right by ``S``, add the output zero point, clamp to the code
range. They are pipelined one operation per stage; latency is a constant the caller matches.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sw.contract.arith import ACC_BITS, MULT_BITS, SHIFT_BITS
from sw.contract.layout import CHANNEL_RECORD

# One 16-byte channel record (bias int32, M_pos, M_neg uint16, S uint8) as kept on chip: the
# contract's CHANNEL_RECORD up to its shift, whose SHIFT_BITS low bits are all a shift can use.
ChannelConst = data.StructLayout(
    {
        "bias": signed(8 * CHANNEL_RECORD["bias"].itemsize),
        "m_pos": unsigned(MULT_BITS),
        "m_neg": unsigned(MULT_BITS),
        "shift": unsigned(SHIFT_BITS),
    }
)
# The on-chip layout is the DDR record's bit for bit up to the shift (hw/router.py copies it so).
assert all(
    8 * CHANNEL_RECORD.fields[n][1] == ChannelConst[n].offset
    for n in ("bias", "m_pos", "m_neg", "shift")
)
# cmem's lane width: the record's used bits only (cmem is LUT-RAM, where rounding up to a
# BRAM's 72-bit lane would store two always-zero columns per lane that nothing reads).
CONST_BITS = ChannelConst.size


def _round_shift_clamp(
    m: Module, p: object, shift: object, z_out: object, qmax: object, name: str
) -> tuple[Signal, Signal]:
    """Three registered stages: +half, >>S, +z and clamp. Returns (result code, stage count)."""
    half = Signal(48, name=f"{name}_half")
    m.d.comb += half.eq(Mux(shift == 0, 0, (1 << shift) >> 1))
    s1 = Signal(signed(50), name=f"{name}_rnd")
    s2 = Signal(signed(50), name=f"{name}_shf")
    sh1 = Signal(6, name=f"{name}_sh1")  # the shift, one stage on with s1
    out = Signal(8, name=f"{name}_out")
    m.d.sync += [s1.eq(p + half), sh1.eq(shift), s2.eq(s1 >> sh1)]
    y = Signal(signed(51), name=f"{name}_y")
    m.d.comb += y.eq(s2 + z_out)
    m.d.sync += out.eq(Mux(y < 0, 0, Mux(y > qmax, qmax, y[:8])))
    return out, 3


class Requant(wiring.Component):
    """``acc -> clamp(z_out + round_shift((acc + bias) * M_sign, S))`` on every lane."""

    LATENCY = 6

    def __init__(self, lanes: int, tag_bits: int = 1) -> None:
        self.lanes = lanes
        super().__init__(
            {
                "valid_in": In(1),
                "acc": In(data.ArrayLayout(signed(ACC_BITS), lanes)),
                "consts": In(data.ArrayLayout(ChannelConst, lanes)),
                "z_out": In(8),
                "qmax": In(8),
                "valid_out": Out(1),
                "out": Out(8 * lanes),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        stages = 0
        for lane in range(self.lanes):
            c = self.consts[lane]
            a = Signal(signed(ACC_BITS), name=f"a{lane}")
            mul = Signal(16, name=f"m{lane}")
            s_a = Signal(6, name=f"s{lane}a")
            m.d.sync += [
                a.eq(self.acc[lane] + c.bias),
                mul.eq(Mux(self.acc[lane] + c.bias >= 0, c.m_pos, c.m_neg)),
                s_a.eq(c.shift),
            ]
            # Product in two registered stages, as a DSP48E2 cascade wants.
            p1 = Signal(signed(49), name=f"p{lane}a")
            p2 = Signal(signed(49), name=f"p{lane}b")
            s_b, s_c = Signal(6, name=f"s{lane}b"), Signal(6, name=f"s{lane}c")
            m.d.sync += [p1.eq(a * mul), p2.eq(p1), s_b.eq(s_a), s_c.eq(s_b)]
            out, n = _round_shift_clamp(m, p2, s_c, self.z_out, self.qmax, f"l{lane}")
            stages = 3 + n
            m.d.comb += self.out[8 * lane : 8 * lane + 8].eq(out)
        assert stages == self.LATENCY
        v = self.valid_in
        for i in range(self.LATENCY):
            nv = Signal(name=f"v{i}")
            m.d.sync += nv.eq(v)
            v = nv
        m.d.comb += self.valid_out.eq(v)
        return m


class Eltwise(wiring.Component):
    """Residual add: ``clamp(z_y + round_shift([relu] M_a (a - z_a) + M_c (c - z_c), S))``."""

    LATENCY = 6

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes
        super().__init__(
            {
                "valid_in": In(1),
                "a": In(8 * lanes),
                "c": In(8 * lanes),
                "z_a": In(8),
                "z_c": In(8),
                "m_a": In(16),
                "m_c": In(16),
                "shift": In(6),
                "relu": In(1),
                "z_out": In(8),
                "qmax": In(8),
                "valid_out": Out(1),
                "out": Out(8 * lanes),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        for lane in range(self.lanes):
            a = self.a[8 * lane : 8 * lane + 8]
            c = self.c[8 * lane : 8 * lane + 8]
            da = Signal(signed(9), name=f"da{lane}")
            dc = Signal(signed(9), name=f"dc{lane}")
            pa = Signal(signed(26), name=f"pa{lane}")
            pc = Signal(signed(26), name=f"pc{lane}")
            t = Signal(signed(27), name=f"t{lane}")
            m.d.sync += [
                da.eq(a - self.z_a),
                dc.eq(c - self.z_c),
                pa.eq(da * self.m_a),
                pc.eq(dc * self.m_c),
                t.eq(Mux(self.relu & (pa + pc < 0), 0, pa + pc)),
            ]
            out, n = _round_shift_clamp(m, t, self.shift, self.z_out, self.qmax, f"e{lane}")
            assert 3 + n == self.LATENCY
            m.d.comb += self.out[8 * lane : 8 * lane + 8].eq(out)
        v = self.valid_in
        for i in range(self.LATENCY):
            nv = Signal(name=f"v{i}")
            m.d.sync += nv.eq(v)
            v = nv
        m.d.comb += self.valid_out.eq(v)
        return m
