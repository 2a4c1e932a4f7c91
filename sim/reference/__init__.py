"""The bit-exact NumPy reference of the arithmetic contract (docs/arithmetic.md)."""

from sim.reference.network import run_network, run_node

__all__ = ["run_network", "run_node"]
