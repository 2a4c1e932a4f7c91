"""The accelerator's identity as a Vivado IP: the VLNV the packaging script writes and the PYNQ
backend looks up in ``Overlay.ip_dict``, and the names of its bus interfaces and ports.

The HDL port prefixes (``s_axi_control_*``, ``m_axi_gmem_*``) are built from these in
``hw/ports.py``; the Vivado Tcl (``deploy/vivado/``) names the IP and its interfaces from here.
"""

from __future__ import annotations

IP_VENDOR = "pow2det.org"
IP_LIBRARY = "pow2det"
IP_NAME = "pow2det_accel"  # also the Verilog module name of `make verilog`
IP_VERSION = "1.0"
VLNV = f"{IP_VENDOR}:{IP_LIBRARY}:{IP_NAME}:{IP_VERSION}"

LITE_INTERFACE = "s_axi_control"  # AXI4-Lite slave: the register map (sw.contract.registers)
MASTER_INTERFACE = "m_axi_gmem"  # AXI4 master: descriptors, weights, tensors in DDR
IRQ_PORT = "irq"  # level-high interrupt, see the IRQ registers
CLOCK_PORT = "aclk"
RESET_N_PORT = "aresetn"  # active low, synchronous

# PYNQ 3.0 images are built with Vivado 2022.1; 2022.2 keeps the same board-preset commands.
VIVADO_VERSIONS = ("2022.1", "2022.2")
