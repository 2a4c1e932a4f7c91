"""The accelerator's top-level ports, by the names of docs/accelerator-interface.md.

Vivado's IP packager infers the AXI4-Lite slave ``s_axi_control``, the AXI4 master
``m_axi_gmem``, the clock ``aclk``, the reset ``aresetn`` and the interrupt ``irq`` from exactly
these names, so they are kept flat here (not nested wiring interfaces) and read by both the top
level (hw/top.py) and the IP packaging scripts (deploy/).
"""

from __future__ import annotations

from amaranth.lib.wiring import In, Out

from sw.contract import ip
from sw.contract.registers import ADDR_BITS

LITE_PREFIX = ip.LITE_INTERFACE + "_"
GMEM_PREFIX = ip.MASTER_INTERFACE + "_"
CLOCK, RESET_N, IRQ = ip.CLOCK_PORT, ip.RESET_N_PORT, ip.IRQ_PORT


def control_ports() -> dict[str, object]:
    """Clock, active-low reset and the level-high interrupt."""
    return {CLOCK: In(1), RESET_N: In(1), IRQ: Out(1)}


def lite_ports() -> dict[str, object]:
    """The AXI4-Lite register slave (32-bit data, the register map's address width)."""
    p = LITE_PREFIX
    return {
        p + "awaddr": In(ADDR_BITS), p + "awvalid": In(1), p + "awready": Out(1),
        p + "wdata": In(32), p + "wstrb": In(4), p + "wvalid": In(1), p + "wready": Out(1),
        p + "bresp": Out(2), p + "bvalid": Out(1), p + "bready": In(1),
        p + "araddr": In(ADDR_BITS), p + "arvalid": In(1), p + "arready": Out(1),
        p + "rdata": Out(32), p + "rresp": Out(2), p + "rvalid": Out(1), p + "rready": In(1),
    }  # fmt: skip


def gmem_ports(data_width: int) -> dict[str, object]:
    """The AXI4 master to DDR (32-bit addresses, ``data_width``-bit data, one ID)."""
    p, dw = GMEM_PREFIX, data_width
    return {
        p + "awid": Out(1), p + "awaddr": Out(32), p + "awlen": Out(8), p + "awsize": Out(3),
        p + "awburst": Out(2), p + "awcache": Out(4), p + "awprot": Out(3),
        p + "awvalid": Out(1), p + "awready": In(1),
        p + "wdata": Out(dw), p + "wstrb": Out(dw // 8), p + "wlast": Out(1),
        p + "wvalid": Out(1), p + "wready": In(1),
        p + "bid": In(1), p + "bresp": In(2), p + "bvalid": In(1), p + "bready": Out(1),
        p + "arid": Out(1), p + "araddr": Out(32), p + "arlen": Out(8), p + "arsize": Out(3),
        p + "arburst": Out(2), p + "arcache": Out(4), p + "arprot": Out(3),
        p + "arvalid": Out(1), p + "arready": In(1),
        p + "rid": In(1), p + "rdata": In(dw), p + "rresp": In(2), p + "rlast": In(1),
        p + "rvalid": In(1), p + "rready": Out(1),
    }  # fmt: skip


def accel_ports(data_width: int) -> dict[str, object]:
    """Every top-level port of ``pow2det_accel``, in the order of the interface document."""
    return {**control_ports(), **lite_ports(), **gmem_ports(data_width)}
