"""The ``emu`` backend: the driver over an in-process transport to the functional model.

This is not a mock: :class:`sw.emu.EmuDevice` is a second implementation of the accelerator
(registers, descriptor fetch, checks, arithmetic), so the driver's register sequences, error and
timeout handling run against something that can disagree with them.
"""

from __future__ import annotations

import numpy as np

from sw.accel_config import AccelConfig
from sw.backends import Backend
from sw.descriptors import REG_STATUS, STATUS_DONE, STATUS_ERROR
from sw.driver import poll_done
from sw.emu import EmuDevice
from sw.plan import Plan


class EmuTransport:
    """Registers and DDR of an :class:`EmuDevice`; ``view`` gives zero-copy access like a pynq
    buffer. The device runs a program synchronously on START, so DONE is already set when the
    driver waits, unless a fault was injected (then it polls until the timeout)."""

    def __init__(self, device: EmuDevice) -> None:
        self.dev = device

    async def write_reg(self, offset: int, value: int) -> None:
        self.dev.write_reg(offset, value)

    async def read_reg(self, offset: int) -> int:
        return self.dev.read_reg(offset)

    async def write_mem(self, addr: int, data: np.ndarray) -> None:
        self.dev.write_mem(addr, data)

    async def read_mem(self, addr: int, nbytes: int) -> np.ndarray:
        return self.dev.read_mem(addr, nbytes)

    def view(self, addr: int, nbytes: int) -> np.ndarray:
        return self.dev.view(addr, nbytes)

    async def wait_done(self, timeout_s: float) -> bool:
        if self.dev.read_reg(REG_STATUS) & (STATUS_DONE | STATUS_ERROR):
            return True
        return await poll_done(self, timeout_s)


class EmuBackend(Backend):
    """``device_cfg`` builds the model as another accelerator build than the plan's (to test the
    driver's refusal); ``hang_after`` makes it hang after that many descriptors."""

    name = "emu"

    def __init__(
        self,
        plan: Plan,
        device_cfg: AccelConfig | None = None,
        hang_after: int = -1,
        timeout_s: float = 5.0,
    ) -> None:
        self.device = EmuDevice(device_cfg or plan.cfg, plan.size, plan.base, hang_after)
        super().__init__(plan, EmuTransport(self.device), timeout_s=timeout_s)
