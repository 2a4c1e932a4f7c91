"""Vivado Tcl generation for the board builds (planned: the generator itself is not written yet).

The constants here are the one place the IP's VLNV and the Vivado versions the scripts target
are named; the sw/ pynq backend can import IP_NAME / VLNV from here.
"""

from __future__ import annotations

IP_VENDOR, IP_LIBRARY, IP_NAME, IP_VERSION = "pow2det.org", "pow2det", "pow2det_accel", "1.0"
VLNV = f"{IP_VENDOR}:{IP_LIBRARY}:{IP_NAME}:{IP_VERSION}"
# PYNQ 3.0 images are built with Vivado 2022.1; 2022.2 keeps the same board-preset commands.
VIVADO_VERSIONS = ("2022.1", "2022.2")
