"""A register slice: a valid/ready stream cut by registers on every signal, at full throughput.

Between the blocks that make read requests and the AXI reader, and between the R channel and the
data router, the paths of one side would otherwise run on into the other (the sequencer's
address arithmetic into the burst splitter; the router's ``ready`` decision out to ``rready``
and the reader's outstanding-burst count). The slice holds a main register (what ``out``
offers) and a skid register (what arrives in the cycle ``out`` stalls): ``in.ready`` is a
register (the skid register is empty), so no combinational path crosses in either direction,
and one item a cycle flows when ``out`` is always ready. Latency: one cycle.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class RegisterSlice(wiring.Component):
    """``i``: the upstream stream; ``o``: the same items, in order, one cycle later."""

    def __init__(self, shape: object) -> None:
        self._shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        main_valid, skid_valid = Signal(), Signal()
        main, skid = Signal(self._shape), Signal(self._shape)
        take = self.i.valid & self.i.ready
        give = self.o.valid & self.o.ready
        m.d.comb += [
            self.i.ready.eq(~skid_valid),
            self.o.valid.eq(main_valid),
            self.o.payload.eq(main),
        ]
        with m.If(give | ~main_valid):
            # main is free this cycle: refill it from skid first (order), else from the input
            # (a full skid means in.ready was low, so nothing is taken in that cycle)
            with m.If(skid_valid):
                m.d.sync += [main.eq(skid), main_valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [main.eq(self.i.payload), main_valid.eq(take)]
        with m.Elif(take):
            # main is held by a stalled output: the new item waits in skid
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
