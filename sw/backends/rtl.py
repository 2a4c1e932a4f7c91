"""The ``rtl`` transport: the same driver against the RTL in a cocotb + Verilator simulation.

The register file is reached through a cocotbext-axi ``AxiLiteMaster`` on ``s_axi_control_*``,
the accelerator's DDR is an ``AxiRam`` on ``m_axi_gmem_*`` holding the plan's image at address
0 (compile or rebase the plan with ``base=0``), and completion is the ``irq`` pin, with a
simulated-time timeout so that a wedged design fails the test instead of hanging it.

cocotb is imported inside the functions only: the module imports anywhere (the test that sw/
never pulls in torch also checks cocotb stays out), but runs only inside a cocotb simulation.

The hook for RTL testbenches is :func:`run_plan_on_dut`: a cocotb test starts the clock,
releases reset and calls ``await run_plan_on_dut(dut, plan, images)``; it returns every
frame's outputs, to compare with ``sim.reference.run_network`` and the ``emu`` backend.
``tests/test_sw_rtl.py`` does exactly that on the Verilator model of hw/ (compiler + driver +
this transport against the RTL).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sw.descriptors import REG_STATUS, STATUS_DONE, STATUS_ERROR
from sw.driver import Driver
from sw.plan import Plan


class RtlTransport:
    """AXI-Lite registers, AXI RAM, irq pin of a ``pow2det_accel`` DUT (``aclk``, ``aresetn``)."""

    def __init__(self, dut: Any, ram_size: int, clock_ns: float = 5.0) -> None:
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

        self.dut = dut
        self.clock_ns = clock_ns
        self.ram_size = ram_size
        self.axil = AxiLiteMaster(
            AxiLiteBus.from_prefix(dut, "s_axi_control"), dut.aclk, dut.aresetn,
            reset_active_level=False,
        )  # fmt: skip
        self.ram = AxiRam(
            AxiBus.from_prefix(dut, "m_axi_gmem"), dut.aclk, dut.aresetn,
            reset_active_level=False, size=ram_size,
        )  # fmt: skip

    async def write_reg(self, offset: int, value: int) -> None:
        await self.axil.write_dword(offset, value)

    async def read_reg(self, offset: int) -> int:
        return int(await self.axil.read_dword(offset))

    async def write_mem(self, addr: int, data: np.ndarray) -> None:
        self.ram.write(addr, np.ascontiguousarray(data).reshape(-1).view(np.uint8).tobytes())

    async def read_mem(self, addr: int, nbytes: int) -> np.ndarray:
        return np.frombuffer(self.ram.read(addr, nbytes), dtype=np.uint8).copy()

    async def wait_done(self, timeout_s: float) -> bool:
        """Wait for ``irq`` (the driver sets IRQ_EN); ``timeout_s`` is simulated time."""
        from cocotb.triggers import RisingEdge, Timer, with_timeout

        if int(self.dut.irq.value):
            return True
        try:
            await with_timeout(RisingEdge(self.dut.irq), timeout_s * 1e9, "ns")
        except TimeoutError:
            pass
        await Timer(self.clock_ns, "ns")  # let STATUS settle one cycle after the pin
        return bool(await self.read_reg(REG_STATUS) & (STATUS_DONE | STATUS_ERROR))


async def run_plan_on_dut(
    dut: Any,
    plan: Plan,
    images: list[np.ndarray],
    timeout_s: float = 0.05,
    transport: RtlTransport | None = None,
) -> list[dict[str, np.ndarray]]:
    """Load ``plan`` (rebased to 0) into the DUT's AXI RAM and run ``images`` (C, H, W codes)
    through the very driver the board uses. ``timeout_s`` is simulated seconds per PL run. The
    caller starts the clock and releases reset; pass one ``transport`` to run several plans on
    one DUT (there is one AXI-Lite master and one AXI RAM per bus)."""
    if plan.base != 0:
        plan = plan.rebase(0)
    t = transport or RtlTransport(dut, ram_size=1 << max(20, (plan.size - 1).bit_length()))
    if t.ram_size < plan.size:
        raise ValueError(f"plan of {plan.size} bytes does not fit the {t.ram_size}-byte AXI RAM")
    driver = Driver(t, plan, timeout_s=timeout_s)
    await driver.open()
    return [await driver.run_frame(img) for img in images]
