"""Vivado Tcl generation for the board builds.

The IP's VLNV, its interface names and the Vivado versions the scripts target live in the
contract (``sw/contract/ip.py``) so that the PYNQ backend finds the IP by the same VLNV.
"""

from __future__ import annotations

from sw.contract.ip import IP_LIBRARY, IP_NAME, IP_VENDOR, IP_VERSION, VIVADO_VERSIONS, VLNV

__all__ = ["IP_LIBRARY", "IP_NAME", "IP_VENDOR", "IP_VERSION", "VIVADO_VERSIONS", "VLNV"]
