"""The on-chip buffers, one memory per job (sizes: sw/contract/buffers.py via hw/params.py).

* ``lb``: the line buffer, BANKS banks of ``bank_words`` L-byte words; bank ``n mod BANKS`` holds
  input row ``n`` of a strip window, all channel groups (BRAM).
* ``wmem``: dense weight blocks, L_o x L_i 4-bit codes each (BRAM; written one beat at a time).
* ``cmem``: per-channel constants of each output channel group, one CONST_BITS record a lane
  (written one record at a time).
* ``dwm``: depthwise weights, one memory per kernel tap, L int8 weights per channel group, read
  asynchronously so the engine gets all taps of a group in one cycle (LUT-RAM).
* ``abuf``: the residual add's first input chunk, read asynchronously beside the second.

The data router writes them, the engines read them: each port is a ``wiring`` interface with
the signature of ``amaranth.lib.memory`` ports, so the two sides connect by name in hw/top.py.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.params import ADD_CHUNK, BANKS, MAX_KERNEL, HwParams
from hw.requant import CONST_BITS

TAPS = MAX_KERNEL * MAX_KERNEL


class _Spec:
    """One memory (or ``count`` equal ones): word shape, depth, write granularity, read domain."""

    def __init__(self, shape: int, depth: int, count: int = 1, granularity: int | None = None,
                 read: str = "sync") -> None:  # fmt: skip
        self.shape, self.depth, self.count = shape, depth, count
        self.granularity, self.read = granularity, read

    def write_signature(self) -> WritePort.Signature:
        return WritePort.Signature(
            addr_width=ceil_log2(self.depth), shape=self.shape, granularity=self.granularity
        )

    def read_signature(self) -> ReadPort.Signature:
        return ReadPort.Signature(addr_width=ceil_log2(self.depth), shape=self.shape)


def specs(hp: HwParams) -> dict[str, _Spec]:
    dw = 8 * hp.lanes
    return {
        "lb": _Spec(dw, hp.bank_words, count=BANKS),
        "wmem": _Spec(hp.weight_block_bits, hp.weight_blocks, granularity=dw),
        "cmem": _Spec(CONST_BITS * hp.lanes, hp.channel_groups, granularity=CONST_BITS),
        "dwm": _Spec(dw, hp.channel_groups, count=TAPS, read="comb"),
        "abuf": _Spec(dw, ADD_CHUNK, read="comb"),
    }


def _member(flow: type, sig: wiring.Signature, count: int) -> object:
    return flow(sig).array(count) if count > 1 else flow(sig)


def write_members(hp: HwParams, flow: type = In) -> dict[str, object]:
    """``<name>_w`` for every buffer; ``In`` for the writer's side (it drives the port)."""
    return {f"{n}_w": _member(flow, s.write_signature(), s.count) for n, s in specs(hp).items()}


def read_members(hp: HwParams, flow: type = In) -> dict[str, object]:
    """``<name>_r`` for every buffer; ``In`` for the reader's side (it drives the address)."""
    return {f"{n}_r": _member(flow, s.read_signature(), s.count) for n, s in specs(hp).items()}


class Buffers(wiring.Component):
    """Every buffer's write port ``<name>_w`` and read port ``<name>_r`` (lists for lb, dwm)."""

    def __init__(self, hp: HwParams) -> None:
        self._hp = hp
        super().__init__({**write_members(hp, Out), **read_members(hp, Out)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        for name, spec in specs(self._hp).items():
            outer_w, outer_r = getattr(self, f"{name}_w"), getattr(self, f"{name}_r")
            if spec.count == 1:
                outer_w, outer_r = [outer_w], [outer_r]
            for i in range(spec.count):
                mem = Memory(shape=spec.shape, depth=spec.depth, init=[])
                m.submodules[name if spec.count == 1 else f"{name}{i}"] = mem
                wp = mem.write_port(granularity=spec.granularity)
                rp = mem.read_port(domain=spec.read)
                w, r = outer_w[i], outer_r[i]
                m.d.comb += [wp.addr.eq(w.addr), wp.data.eq(w.data), wp.en.eq(w.en)]
                m.d.comb += [rp.addr.eq(r.addr), r.data.eq(rp.data)]
                if spec.read != "comb":  # an asynchronous port is always enabled
                    m.d.comb += rp.en.eq(r.en)
        return m
