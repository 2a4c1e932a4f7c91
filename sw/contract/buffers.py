"""The on-chip buffers of interface-1 RTL and every size derived from an AccelConfig.

The RTL sizes its memories from these (``hw/params.py``), the compiler decides strips and
fallbacks with the same formulas (``sw/compiler.py``), the emulator refuses what the RTL refuses
with them and the cycle model counts with them, so a size is written once and cannot drift
between the hardware and the software.
"""

from __future__ import annotations

from sw.contract.config import AccelConfig
from sw.contract.descriptor import FMT_BINARY, FMT_POW2

# The input line buffer is cut into this many banks, one input row each (a power of two so that
# "row sequence number mod BANKS" is a wire slice). 8 = a 5x5 window plus 3 rows of prefetch.
BANKS = 8
# Internal weight code of the dense array: 4 bits (sign, 3-bit magnitude field). 3-bit pow2 and
# binary codes are widened to it while loading, so one buffer layout serves every format.
DENSE_CODE_BITS = 4
# Taps the depthwise engine multiplies per cycle: a 3x3 window in one cycle, 5x5 in three.
DW_TAPS = 9
MAX_KERNEL = 5
# Words of each add operand per request pair (the depth of the operand-A buffer).
ADD_CHUNK = 64


def bank_words(cfg: AccelConfig) -> int:
    """L-byte words one bank (one input row of a strip window, all channel groups) holds."""
    return cfg.input_buffer_words // BANKS


def weight_block_bits(cfg: AccelConfig) -> int:
    """Bits of one dense weight block: ``dense_out_lanes x lanes`` codes of DENSE_CODE_BITS."""
    return cfg.lanes * cfg.dense_out_lanes * DENSE_CODE_BITS


def weight_block_capacity(cfg: AccelConfig) -> int:
    """Dense weight blocks (L_o x L_i codes for one (og, ig, u, w)) the weight buffer holds."""
    return cfg.weight_buffer_bytes * 8 // weight_block_bits(cfg)


def channel_groups(cfg: AccelConfig) -> int:
    """Depth of the constant buffer and of the depthwise weight buffer (max_channels / L)."""
    return cfg.max_channels // cfg.lanes


def max_window(cfg: AccelConfig) -> int:
    """Input columns of the widest strip window: max_strip outputs, stride 2, 5x5."""
    return (cfg.max_strip - 1) * 2 + MAX_KERNEL


def dw_phases(kernel: int) -> int:
    """Depthwise compute cycles per output pixel: DW_TAPS taps a cycle, 3x3 and below in one."""
    return 1 if kernel <= 3 else -(-kernel * kernel // DW_TAPS)


def weight_container_bits(weight_format: int, weight_bits: int) -> int:
    """Bits one depthwise weight code takes in DDR as the RTL reads it (descriptor codes):
    binary 1, pow2 4 (the 3- and 4-bit codes it accepts), int 2, 4 or 8 (the RTL's SETUP mux,
    which also answers for widths its CHECK then refuses)."""
    if weight_format == FMT_BINARY:
        return 1
    if weight_format == FMT_POW2:
        return 4
    return 2 if weight_bits <= 2 else 4 if weight_bits <= 4 else 8
