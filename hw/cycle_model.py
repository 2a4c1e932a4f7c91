"""The cycle model of ``pow2det_accel``, under the name the RTL tests and benches import.

It lives in :mod:`sw.contract.cycles` (pure Python) because the runtime needs it without hw/
(the plan table's predicted cycles, the emulator's PERF counters); see that module for the
model itself and why.
"""

from sw.contract.buffers import ADD_CHUNK, BANKS, DW_TAPS
from sw.contract.cycles import (
    IDEAL,
    LayerCycles,
    MemoryModel,
    dw_segment_cycles,
    layer_cycles,
    network_cycles,
    strips,
)

__all__ = [
    "ADD_CHUNK",
    "BANKS",
    "DW_TAPS",
    "IDEAL",
    "LayerCycles",
    "MemoryModel",
    "dw_segment_cycles",
    "layer_cycles",
    "network_cycles",
    "strips",
]
