"""RTL build parameters: AccelConfig plus what this particular RTL derives from it and requires.

Pure Python (no amaranth import) so that ``hw/cycle_model.py`` and ``sw/`` can use the same
derived sizes (bank depth, weight blocks) as the hardware.
"""

from __future__ import annotations

from dataclasses import dataclass

from sw.accel_config import AccelConfig, ConfigError

# The input line buffer is cut into this many banks, one input row each (a power of two so that
# "row sequence number mod BANKS" is a wire slice). 8 = a 5x5 window plus 3 rows of prefetch.
BANKS = 8
# Internal weight code of the dense array: 4 bits (sign, 3-bit magnitude field). 3-bit pow2 and
# binary codes are widened to it while loading, so one buffer layout serves every format.
DENSE_CODE_BITS = 4
# Taps the depthwise engine multiplies per cycle: a 3x3 window in one cycle, 5x5 in three.
DW_TAPS = 9
MAX_KERNEL = 5


@dataclass(frozen=True)
class HwParams:
    cfg: AccelConfig

    @property
    def lanes(self) -> int:
        return self.cfg.lanes

    @property
    def beat_bytes(self) -> int:
        return self.cfg.lanes

    @property
    def bank_words(self) -> int:
        """L-byte words one bank (one input row of a strip window, all channel groups) holds."""
        return self.cfg.input_buffer_words // BANKS

    @property
    def weight_block_bits(self) -> int:
        return self.cfg.lanes * self.cfg.dense_out_lanes * DENSE_CODE_BITS

    @property
    def weight_blocks(self) -> int:
        """Dense weight blocks (L_o x L_i codes for one (og, ig, u, w)) the buffer holds."""
        return self.cfg.weight_buffer_bytes * 8 // self.weight_block_bits

    @property
    def channel_groups(self) -> int:
        return self.cfg.max_channels // self.cfg.lanes

    @property
    def max_window(self) -> int:
        """Input columns of the widest strip window: max_strip outputs, stride 2, 5x5."""
        return (self.cfg.max_strip - 1) * 2 + MAX_KERNEL


def check(cfg: AccelConfig) -> HwParams:
    """AccelConfig.check plus the limits of this RTL; raises ConfigError naming the parameter."""
    cfg.check()
    if cfg.lanes != 16:
        # The 16-byte channel records, the 128-bit AXI beat and the descriptor beats are wired
        # for one record per beat; other lane widths need a record (de)serialiser first.
        raise ConfigError(f"lanes = {cfg.lanes}: this RTL is built for lanes = 16 only")
    if cfg.dense_out_lanes != cfg.lanes:
        raise ConfigError(
            f"dense_out_lanes = {cfg.dense_out_lanes} != lanes = {cfg.lanes}: the dense engine "
            "writes one output channel group (one memory word) per pixel"
        )
    p = HwParams(cfg)
    if cfg.input_buffer_words % BANKS or p.bank_words & (p.bank_words - 1):
        raise ConfigError(
            f"input_buffer_words = {cfg.input_buffer_words}: must be {BANKS} banks of a power of "
            "two words"
        )
    if p.bank_words < p.max_window:
        raise ConfigError(
            f"input_buffer_words = {cfg.input_buffer_words}: a bank of {p.bank_words} words "
            f"cannot hold one {p.max_window}-column window of max_strip = {cfg.max_strip}"
        )
    if p.weight_blocks < 1 or p.weight_blocks & (p.weight_blocks - 1):
        raise ConfigError(
            f"weight_buffer_bytes = {cfg.weight_buffer_bytes}: must hold a power of two of "
            f"{p.weight_block_bits // 8}-byte weight blocks"
        )
    if p.channel_groups & (p.channel_groups - 1):
        raise ConfigError(f"max_channels = {cfg.max_channels}: max_channels / lanes power of two")
    return p
