"""Choosing the integer constants from real scales (docs/arithmetic.md section 11, informative).

The helpers live in the contract package (:mod:`sw.contract.requant`, numpy only); this module
re-exports them for the reference, the testbenches and the callers that import them from here.
"""

from sw.contract.arith import MULT_MAX, SHIFT_MAX
from sw.contract.requant import (
    add_constants,
    conv_constants,
    quantize_multiplier,
    range_to_quant,
)

__all__ = [
    "MULT_MAX",
    "SHIFT_MAX",
    "add_constants",
    "conv_constants",
    "quantize_multiplier",
    "range_to_quant",
]
