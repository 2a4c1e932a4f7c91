"""RTL build parameters: AccelConfig plus what this particular RTL requires of it.

The sizes themselves (banks, bank depth, weight blocks, channel groups) are the contract's
(``sw/contract/buffers.py``), shared with the compiler, the emulator and the cycle model; this
module adds the limits only this RTL has (lanes 8, 16 or 32, power-of-two memories). Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from sw.contract import buffers

# Re-exported for the RTL modules; defined in the contract.
from sw.contract.buffers import ADD_CHUNK, BANKS, DENSE_CODE_BITS, DW_TAPS, MAX_KERNEL
from sw.contract.config import AccelConfig, ConfigError

__all__ = [
    "ADD_CHUNK", "BANKS", "DENSE_CODE_BITS", "DW_TAPS", "MAX_KERNEL", "RTL_LANES", "HwParams",
    "check",
]  # fmt: skip

RTL_LANES = (8, 16, 32)  # lane widths the router's record and weight-block paths are built for


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
        return buffers.bank_words(self.cfg)

    @property
    def weight_block_bits(self) -> int:
        return buffers.weight_block_bits(self.cfg)

    @property
    def weight_blocks(self) -> int:
        """Dense weight blocks (L_o x L_i codes for one (og, ig, u, w)) the buffer holds."""
        return buffers.weight_block_capacity(self.cfg)

    @property
    def channel_groups(self) -> int:
        return buffers.channel_groups(self.cfg)

    @property
    def max_window(self) -> int:
        """Input columns of the widest strip window: max_strip outputs, stride 2, 5x5."""
        return buffers.max_window(self.cfg)


def check(cfg: AccelConfig) -> HwParams:
    """AccelConfig.check plus the limits of this RTL; raises ConfigError naming the parameter."""
    cfg.check()
    if cfg.lanes not in RTL_LANES:
        # The router splits a 16-byte channel record over two 8-lane beats or packs two in a
        # 32-lane beat, and binary weight beats expand to whole blocks: narrower or wider lane
        # widths have neither a record (de)serialiser nor a block layout here.
        raise ConfigError(
            f"lanes = {cfg.lanes}: this RTL is built for lanes in {', '.join(map(str, RTL_LANES))}"
        )
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
