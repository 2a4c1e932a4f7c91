"""The DDR layout of docs/arithmetic.md section 9, for the reference and the testbenches.

It lives in the contract package (:mod:`sw.contract.layout`, numpy only) because the runtime
packs the same bytes; this module re-exports it so that the testbench code keeps its imports.
"""

from sw.contract.layout import (
    ALIGN,
    CHANNEL_RECORD,
    CHANNEL_RECORD_BYTES,
    activation_address,
    activation_from_ddr,
    activation_to_ddr,
    align,
    channel_records,
    container_bits,
    dense_weight_order,
    depthwise_weight_order,
    groups,
    pack_codes,
    pack_weights,
    unpack_codes,
)

__all__ = [
    "ALIGN",
    "CHANNEL_RECORD",
    "CHANNEL_RECORD_BYTES",
    "activation_address",
    "activation_from_ddr",
    "activation_to_ddr",
    "align",
    "channel_records",
    "container_bits",
    "dense_weight_order",
    "depthwise_weight_order",
    "groups",
    "pack_codes",
    "pack_weights",
    "unpack_codes",
]
