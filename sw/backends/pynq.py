"""The ``pynq`` backend: the accelerator on a Zynq board through PYNQ.

``pynq.Overlay`` loads the bitstream (its ``.hwh`` beside it names the IP and the interrupt);
the plan's DDR image goes into one ``pynq.allocate`` buffer (physically contiguous), the plan is
rebased to that buffer's physical address, the registers are MMIO, and completion is the
accelerator's interrupt when the block design routes it to an AXI interrupt controller, else
polling of STATUS, both with a timeout.

Off a board it fails at once with one line (:class:`sw.backends.BackendUnavailable`): pynq
imports off-board only with a warning and then raises "No Devices Found" deep inside.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sw.backends import Backend, BackendUnavailable
from sw.driver import poll_done
from sw.plan import Plan

DEFAULT_BITSTREAM = Path(os.environ.get("POW2DET_BITSTREAM", "deploy/build/pow2det.bit"))
IP_PREFIX = "pow2det_accel"  # the Verilog module name; Vivado names the instance pow2det_accel_0


class PynqTransport:
    """MMIO registers, one pynq buffer as the accelerator's DDR, interrupt or polling."""

    def __init__(self, mmio: Any, buffer: Any, interrupt: Any = None) -> None:
        self.mmio = mmio
        self.buf = buffer
        self.base = int(buffer.physical_address)
        self.interrupt = interrupt

    async def write_reg(self, offset: int, value: int) -> None:
        self.mmio.write(offset, value)

    async def read_reg(self, offset: int) -> int:
        return int(self.mmio.read(offset))

    def _slice(self, addr: int, nbytes: int) -> slice:
        lo = addr - self.base
        if lo < 0 or lo + nbytes > self.buf.size:
            raise ValueError(f"0x{addr:x}+{nbytes} is outside the plan's DDR buffer")
        return slice(lo, lo + nbytes)

    def view(self, addr: int, nbytes: int) -> np.ndarray:
        return self.buf[self._slice(addr, nbytes)]

    async def write_mem(self, addr: int, data: np.ndarray) -> None:
        self.buf[self._slice(addr, data.size)] = data.reshape(-1).view(np.uint8)
        self.buf.flush()  # a no-op for non-cacheable buffers, needed for cacheable ones

    async def read_mem(self, addr: int, nbytes: int) -> np.ndarray:
        self.buf.invalidate()
        return np.array(self.buf[self._slice(addr, nbytes)])

    async def wait_done(self, timeout_s: float) -> bool:
        if self.interrupt is not None:
            try:
                await asyncio.wait_for(self.interrupt.wait(), timeout_s)
                return True
            except TimeoutError:
                return False
        return await poll_done(self, timeout_s)


def _find_ip(overlay: Any) -> tuple[str, Any]:
    names = [n for n in overlay.ip_dict if n.split("/")[-1].startswith(IP_PREFIX)]
    if not names:
        raise BackendUnavailable(
            f"pynq backend: the overlay has no {IP_PREFIX}* IP (found: "
            f"{', '.join(sorted(overlay.ip_dict)) or 'none'})"
        )
    return names[0], overlay.ip_dict[names[0]]


class PynqBackend(Backend):
    """``bitstream``: the .bit file (its .hwh beside it); ``use_irq`` False forces polling."""

    name = "pynq"

    def __init__(self, plan: Plan, bitstream: str | os.PathLike[str] | None = None,
                 timeout_s: float = 5.0, use_irq: bool = True) -> None:  # fmt: skip
        bit = Path(bitstream) if bitstream else DEFAULT_BITSTREAM
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # off-board pynq warns "No devices found"
            try:
                import pynq
            except Exception as e:  # noqa: BLE001 - any import failure means: not usable here
                raise BackendUnavailable(f"pynq backend: cannot import pynq ({e})") from None
            try:
                devices = pynq.Device.devices
            except Exception:  # noqa: BLE001
                devices = []
        if not devices:
            raise BackendUnavailable(
                "pynq backend: no PYNQ device found (not on a Zynq board with PYNQ/XRT); "
                "use --backend emu off the board"
            )
        if not bit.is_file() or not bit.with_suffix(".hwh").is_file():
            raise BackendUnavailable(
                f"pynq backend: bitstream {bit} or its {bit.with_suffix('.hwh').name} is missing"
            )
        self.overlay = pynq.Overlay(str(bit))
        name, desc = _find_ip(self.overlay)
        ip = getattr(self.overlay, name.replace("/", "_"), None) or self.overlay.ip_dict[name]
        mmio = getattr(ip, "mmio", None) or pynq.MMIO(desc["phys_addr"], desc["addr_range"])
        irq = None
        self._loop = asyncio.new_event_loop()  # the interrupt's reader must live on this loop
        asyncio.set_event_loop(self._loop)
        if use_irq and desc.get("interrupts"):
            pin = next(iter(desc["interrupts"].values()))["fullpath"]
            irq = pynq.Interrupt(pin)
        self.buffer = pynq.allocate((plan.size,), dtype=np.uint8)
        plan = plan.rebase(int(self.buffer.physical_address))
        transport = PynqTransport(mmio, self.buffer, irq)
        super().__init__(plan, transport, timeout_s=timeout_s, use_irq=irq is not None)

    def close(self) -> None:
        super().close()
        buf = getattr(self, "buffer", None)
        if buf is not None:
            buf.freebuffer()
            self.buffer = None
