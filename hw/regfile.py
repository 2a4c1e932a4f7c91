"""The AXI4-Lite register file, built from the contract's register table.

Every register, offset, field and access comes from ``sw.contract.registers.REGISTERS``
(docs/accelerator-interface.md): a writable register without fields is stored whole; of a
register with fields, RW fields are stored, W1C fields clear their status bit, W1P
(CTRL.START) pulses ``control.start`` when the accelerator is idle; RO registers ignore writes.
Reads return every register by name, fields at the contract's bit positions (gaps read 0).

The status bits and counters live here: STATUS.DONE/ERROR, ERROR_CODE/ERROR_INDEX and
DESC_DONE are set by the descriptor controller through ``control``; the PERF counters count the
``perf`` strobes (PERF_TOTAL every busy cycle). ``start`` clears all of them.

The AXI4-Lite slave takes a write's address and data in the same cycle and answers OKAY; a read
answers the cycle after its address. One access of each kind is outstanding at a time.
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.interfaces import PerfEvents, control_signature
from hw.ports import LITE_PREFIX, lite_ports
from sw.contract.config import AccelConfig
from sw.contract.registers import (
    ACCEL_ID,
    ADDR_BITS,
    ERROR_BITS,
    F_START,
    REG_CTRL,
    REGISTERS,
    RO,
    RW,
    W1C,
    Register,
    config_registers,
)


def _fields_word(reg: Register, values: dict[str, object]) -> object:
    """A register's read value from one signal per field, placed at the contract's bit
    positions (gaps read 0)."""
    parts: list[object] = []
    at = 0
    for fld in sorted(reg.fields, key=lambda x: x.lsb):
        if fld.lsb > at:
            parts.append(C(0, fld.lsb - at))
        parts.append(values[fld.name])
        at = fld.lsb + fld.width
    return Cat(*parts)


class RegisterFile(wiring.Component):
    """``s_axi_*``: the AXI4-Lite slave (flat names, hw/ports.py); ``control``: to the
    descriptor controller; ``perf``: counter strobes; ``irq``: DONE or ERROR while IRQ_EN."""

    def __init__(self, cfg: AccelConfig) -> None:
        self._cfg = cfg
        sig = {name[len(LITE_PREFIX) :]: port for name, port in lite_ports().items()}
        sig |= {"control": Out(control_signature()), "perf": In(PerfEvents), "irq": Out(1)}
        super().__init__(sig)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        ctl = self.control
        irq_en = Signal()
        done, error = Signal(), Signal()
        err_code, err_index = Signal(ERROR_BITS), Signal(16)
        desc_addr, desc_count, desc_done = Signal(32), Signal(32), Signal(32)
        perf = {n: Signal(32, name=f"perf_{n}") for n in ("total", "dense", "dw", "elt", "stall")}
        cfg_word, cfg2_word = config_registers(self._cfg)
        m.d.comb += [ctl.desc_addr.eq(desc_addr), ctl.desc_count.eq(desc_count)]

        # ---- write channel
        bvalid = Signal()
        wr = self.awvalid & self.wvalid & ~bvalid
        m.d.comb += [
            self.awready.eq(wr), self.wready.eq(wr), self.bvalid.eq(bvalid), self.bresp.eq(0),
        ]  # fmt: skip
        with m.If(wr):
            m.d.sync += bvalid.eq(1)
        with m.Elif(self.bready):
            m.d.sync += bvalid.eq(0)
        waddr = self.awaddr[2:ADDR_BITS]
        wdata = self.wdata
        start = ctl.start
        m.d.comb += start.eq(wr & (waddr == REG_CTRL >> 2) & wdata[F_START.lsb] & ~ctl.busy)
        clears = {"STATUS.DONE": Signal(), "STATUS.ERROR": Signal()}
        stored = {"DESC_ADDR": desc_addr, "DESC_COUNT": desc_count, "CTRL.IRQ_EN": irq_en}
        with m.If(wr):
            with m.Switch(waddr):
                for reg in REGISTERS:
                    if reg.access == RO:
                        continue
                    with m.Case(reg.word):
                        if not reg.fields:
                            m.d.sync += stored[reg.name].eq(wdata)
                        for fld in reg.fields:
                            key = f"{reg.name}.{fld.name}"
                            bits = wdata[fld.lsb : fld.lsb + fld.width]
                            if fld.access == W1C:
                                m.d.comb += clears[key].eq(bits)
                            elif fld.access in ("", RW):
                                m.d.sync += stored[key].eq(bits)

        # ---- status and counters (a set wins over a clear in the same cycle)
        with m.If(ctl.busy):
            m.d.sync += perf["total"].eq(perf["total"] + 1)
        for strobe, name in ((self.perf.dense, "dense"), (self.perf.dw, "dw"),
                             (self.perf.eltwise, "elt"), (self.perf.stall, "stall")):  # fmt: skip
            with m.If(strobe):
                m.d.sync += perf[name].eq(perf[name] + 1)
        with m.If(clears["STATUS.DONE"]):
            m.d.sync += done.eq(0)
        with m.If(clears["STATUS.ERROR"]):
            m.d.sync += error.eq(0)
        with m.If(start):
            m.d.sync += [done.eq(0), error.eq(0), err_code.eq(0), desc_done.eq(0)]
            m.d.sync += [p.eq(0) for p in perf.values()]
        with m.If(ctl.finish):
            m.d.sync += done.eq(1)
        with m.If(ctl.fail):
            m.d.sync += [error.eq(1), err_code.eq(ctl.fail_code), err_index.eq(ctl.fail_index)]
        with m.If(ctl.layer_done):
            m.d.sync += desc_done.eq(desc_done + 1)

        # ---- read channel
        rvalid, rdata = Signal(), Signal(32)
        m.d.comb += [
            self.arready.eq(~rvalid), self.rvalid.eq(rvalid), self.rdata.eq(rdata),
            self.rresp.eq(0),
        ]  # fmt: skip
        fields_of = {
            "CTRL": {"START": C(0, 1), "IRQ_EN": irq_en},
            "STATUS": {"BUSY": ctl.busy, "DONE": done, "ERROR": error},
        }
        read_value = {
            "ERROR_CODE": err_code, "ERROR_INDEX": err_index, "DESC_ADDR": desc_addr,
            "DESC_COUNT": desc_count, "ID": C(ACCEL_ID, 32), "CONFIG": C(cfg_word, 32),
            "CONFIG2": C(cfg2_word, 32), "DESC_DONE": desc_done, "PERF_TOTAL": perf["total"],
            "PERF_DENSE": perf["dense"], "PERF_DW": perf["dw"], "PERF_ELTWISE": perf["elt"],
            "PERF_MEM_STALL": perf["stall"],
        }  # fmt: skip
        read_value |= {
            n: _fields_word(r, fields_of[n]) for r in REGISTERS if (n := r.name) in fields_of
        }
        assert set(read_value) == {r.name for r in REGISTERS}, "a register without a read value"
        with m.If(self.arvalid & ~rvalid):
            m.d.sync += rvalid.eq(1)
            with m.Switch(self.araddr[2:ADDR_BITS]):
                for reg in REGISTERS:
                    with m.Case(reg.word):
                        m.d.sync += rdata.eq(read_value[reg.name])
                with m.Default():
                    m.d.sync += rdata.eq(0)
        with m.Elif(self.rready):
            m.d.sync += rvalid.eq(0)
        m.d.comb += self.irq.eq(irq_en & (done | error))
        return m
