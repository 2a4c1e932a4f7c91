"""Build-time parameters of the accelerator (``AccelConfig``), the root of every derived size.

The same dataclass elaborates the hardware (``hw/``) and tells the compiler (``sw/``) what the
hardware can do; the CONFIG registers echo it so that a driver can refuse a plan built for another
build. Impossible combinations fail in :meth:`AccelConfig.check` with a message naming them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


class ConfigError(ValueError):
    """An impossible accelerator configuration; the message names the offending parameters."""


@dataclass(frozen=True)
class AccelConfig:
    lanes: int = 16  # L: channels per memory word; the AXI data bus is 8 * L bits
    dense_out_lanes: int = 16  # output channels the dense engine computes at once
    max_strip: int = 32  # widest column strip (output columns) the buffers hold
    weight_buffer_bytes: int = 64 * 1024  # whole-layer weights of a dense or depthwise conv
    input_buffer_words: int = 16 * 1024  # L-byte words of input strip rows
    max_burst: int = 16  # AXI beats per burst
    addr_width: int = 32
    clock_mhz: float = 200.0
    # Channels whose per-channel constants (and depthwise weights) one layer may have; sets the
    # depth of the constant buffer and of the depthwise weight buffer (max_channels / lanes).
    max_channels: int = 1024
    max_reads_outstanding: int = 8  # AXI read bursts in flight (hides DDR latency)
    max_writes_outstanding: int = 4  # AXI write bursts awaiting their response
    out_fifo_words: int = 64  # requantized output vectors queued for the AXI writer

    @property
    def data_width(self) -> int:
        return 8 * self.lanes

    def check(self) -> AccelConfig:
        def pow2(x: int) -> bool:
            return x >= 1 and x & (x - 1) == 0

        for name, v in asdict(self).items():
            if name == "clock_mhz":
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{name} = {v!r}: must be an integer")
        c = self.clock_mhz
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < math.inf:
            raise ConfigError(f"clock_mhz = {c!r}: must be a number > 0")
        if not pow2(self.lanes) or not 4 <= self.lanes <= 64:
            raise ConfigError(f"lanes = {self.lanes}: must be a power of two in 4..64")
        if not pow2(self.dense_out_lanes) or self.dense_out_lanes > 64:
            raise ConfigError(f"dense_out_lanes = {self.dense_out_lanes}: power of two <= 64")
        if not 1 <= self.max_strip <= 255:
            raise ConfigError(f"max_strip = {self.max_strip}: must be in 1..255 (8-bit field)")
        if self.max_burst not in (1, 2, 4, 8, 16, 32, 64, 128, 256):
            raise ConfigError(f"max_burst = {self.max_burst}: AXI4 INCR bursts are 1..256 beats")
        if self.max_burst * self.lanes > 4096:
            raise ConfigError(
                f"max_burst = {self.max_burst} x {self.lanes}-byte beats crosses 4 KiB"
            )
        # The smallest input buffer any build needs: one 5x5 stride-2 strip window of one channel
        # group. The RTL's own, stricter layout rule (8 row banks) is checked in hw/params.py
        # (sw/contract/buffers.py derives the sizes both use).
        need = 5 * ((self.max_strip - 1) * 2 + 5)
        if self.input_buffer_words < need:
            raise ConfigError(
                f"input_buffer_words = {self.input_buffer_words} < {need}: too small for one "
                f"5x5 stride-2 window of max_strip = {self.max_strip}"
            )
        if self.weight_buffer_bytes < self.dense_out_lanes * self.lanes:
            raise ConfigError(
                f"weight_buffer_bytes = {self.weight_buffer_bytes} cannot hold one "
                f"{self.dense_out_lanes}x{self.lanes} weight block"
            )
        if self.max_channels < self.lanes or self.max_channels % self.lanes:
            raise ConfigError(
                f"max_channels = {self.max_channels}: a positive multiple of lanes = {self.lanes}"
            )
        if self.max_channels > 65535:
            raise ConfigError(f"max_channels = {self.max_channels}: the descriptor field is 16-bit")
        if not 1 <= self.max_reads_outstanding <= 64 or not 1 <= self.max_writes_outstanding <= 64:
            raise ConfigError(
                f"max_reads_outstanding = {self.max_reads_outstanding}, max_writes_outstanding = "
                f"{self.max_writes_outstanding}: each must be in 1..64"
            )
        if not pow2(self.out_fifo_words) or self.out_fifo_words < 32:
            raise ConfigError(f"out_fifo_words = {self.out_fifo_words}: a power of two >= 32")
        if self.addr_width != 32:
            raise ConfigError(f"addr_width = {self.addr_width}: interface version 1 uses 32")
        return self

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


DEFAULT_CONFIG = AccelConfig()
