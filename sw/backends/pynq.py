"""The ``pynq`` backend: the accelerator on a Zynq board through PYNQ (2.7 on Python 3.8 to 3.x).

What a PYNQ user would write by hand, and no more: ``pynq.Overlay`` on the ``.bit`` (its
``.hwh`` beside it describes the block design); the IP found in ``overlay.ip_dict`` by its VLNV
(``sw.contract.ip.VLNV``); its registers through the ``mmio`` of the IP's driver object
(``overlay.<instance>``, a ``DefaultIP``); the plan's DDR image in one ``pynq.allocate`` buffer
(physically contiguous; the plan is rebased to its physical address), cacheable, with an explicit
flush before each PL run and an invalidate of each tensor range the CPU then reads; completion
by the IP's ``irq`` interrupt as PYNQ routes it (``pynq.Interrupt`` on the pin the ``.hwh``
connects to an AXI interrupt controller), else by polling STATUS, both with a timeout.

Everything else is the shared driver (``sw.driver``), the same code the emu and RTL transports
run: the ID/CONFIG check (a plan for another build is refused in one line naming the fields),
the register sequence, errors and timeouts.

Off a board it fails at once with one line (:class:`sw.backends.BackendUnavailable`): pynq
imports off-board only with a warning and then raises "No Devices Found" deep inside.
"""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sw.backends import Backend, BackendUnavailable
from sw.contract.ip import IP_LIBRARY, IP_NAME, IP_VENDOR, IP_VERSION, IRQ_PORT, VLNV
from sw.contract.registers import STATUS_W1C
from sw.descriptors import REG_CTRL, REG_STATUS, STATUS_DONE, STATUS_ERROR
from sw.driver import ConfigMismatch, poll_done
from sw.plan import Plan

# The board package (make board-package / make deploy) unpacks the overlay as overlay/ beside
# its config.json, so running from the package's folder needs no --bitstream.
DEFAULT_BITSTREAM = Path(os.environ.get("POW2DET_BITSTREAM", "overlay/pow2det.bit"))
# An RTL module dropped into a block design as a module reference (not the packaged IP) gets
# this vendor:library from Vivado, with the Verilog module's name; the same registers answer.
MODULE_REF = ("xilinx.com", "module_ref")


def find_ip(
    ip_dict: Mapping[str, Mapping[str, Any]], name: str | None = None
) -> tuple[str, Mapping[str, Any]]:
    """The accelerator's entry in an ``Overlay.ip_dict`` (as PYNQ's .hwh parser builds it: the
    instance's path -> a dict whose ``"type"`` is the IP's VLNV), by VLNV: vendor, library and
    name must be ours; an exact version is preferred, another version is accepted with a
    warning (the ID/CONFIG registers decide then). ``name`` picks one instance of several; else
    the first by name. One-line :class:`BackendUnavailable` when there is none."""
    vendor_lib_name = [IP_VENDOR, IP_LIBRARY, IP_NAME]
    found = []
    for key in sorted(ip_dict):
        parts = str(ip_dict[key].get("type", "")).split(":")
        module_ref = tuple(parts[:2]) == MODULE_REF and parts[2:3] == [IP_NAME]
        if parts[:3] == vendor_lib_name or module_ref:
            found.append((key, parts[3] if len(parts) > 3 else "?"))
    if name is not None:
        found = [(k, v) for k, v in found if k == name]
    if not found:
        what = f"{IP_VENDOR}:{IP_LIBRARY}:{IP_NAME} IP" + (f" named {name!r}" if name else "")
        have = ", ".join(f"{k} ({v.get('type', '?')})" for k, v in sorted(ip_dict.items()))
        raise BackendUnavailable(
            f"pynq backend: the overlay has no {what} (it has: {have or 'no IP'})"
        )
    exact = [(k, v) for k, v in found if v == IP_VERSION]
    key, version = (exact or found)[0]
    if version != IP_VERSION:
        warnings.warn(
            f"pynq backend: {key} is {ip_dict[key].get('type')}, this runtime is written for "
            f"{VLNV}; the ID and CONFIG registers decide whether the plan runs",
            stacklevel=2,
        )
    return key, ip_dict[key]


def interrupt_pin(
    desc: Mapping[str, Any], key: str = "", interrupt_pins: Mapping[str, Any] | None = None
) -> str | None:
    """The full path of the IP's ``irq`` pin when the .hwh routes it to an interrupt controller
    PYNQ knows (``ip_dict[ip]["interrupts"]`` is empty when it does not), else None.

    A module reference is keyed ``<instance>/<its AXI-Lite interface>`` in ``ip_dict`` and its
    pins are then not in its entry; ``key`` and the overlay's ``interrupt_pins`` find
    ``<instance>/irq`` for it."""
    entry = (desc.get("interrupts") or {}).get(IRQ_PORT)
    if entry and entry.get("fullpath"):
        return str(entry["fullpath"])
    mem_id = desc.get("mem_id")
    if interrupt_pins and mem_id and key.endswith(f"/{mem_id}"):
        pin = f"{key[: -len(mem_id) - 1]}/{IRQ_PORT}"
        if pin in interrupt_pins:
            return pin
    return None


class PynqTransport:
    """Registers through an MMIO object (``read(offset)``, ``write(offset, value)``), one pynq
    buffer as the accelerator's DDR, completion by a ``pynq.Interrupt`` (or polling if None).

    Cache maintenance: writes only mark their byte range; :meth:`sync_to_device` (the driver
    calls it before each PL run) flushes one span covering all of them, :meth:`sync_from_device`
    invalidates the range about to be read. A ranged flush or invalidate is a slice of the
    buffer: a slice of a ``PynqBuffer`` is a ``PynqBuffer`` with its own offset and size, and
    ``flush()`` / ``invalidate()`` sync exactly those (PYNQ 2.7 to 3.0 pass offset and size to
    xclSyncBO). PYNQ 3.1+ syncs the whole buffer object whatever the slice, which is why the
    dirty ranges become one span and one flush, never one flush per range.
    """

    def __init__(self, mmio: Any, buffer: Any, interrupt: Any = None) -> None:
        self.mmio = mmio
        self.buf = buffer
        self.base = int(buffer.physical_address)
        self.interrupt = interrupt
        self._dirty: tuple[int, int] | None = None  # [lo, hi) written since the last flush

    async def write_reg(self, offset: int, value: int) -> None:
        self.mmio.write(offset, int(value))

    async def read_reg(self, offset: int) -> int:
        return int(self.mmio.read(offset))

    def _slice(self, addr: int, nbytes: int) -> slice:
        lo = addr - self.base
        if lo < 0 or lo + nbytes > self.buf.size:
            raise ValueError(f"0x{addr:x}+{nbytes} is outside the plan's DDR buffer")
        return slice(lo, lo + nbytes)

    def _mark(self, s: slice) -> None:
        lo, hi = (s.start, s.stop) if self._dirty is None else self._dirty
        self._dirty = (min(lo, s.start), max(hi, s.stop))

    def view(self, addr: int, nbytes: int) -> np.ndarray:
        """A writable view of the buffer (the driver fills the input in place); its range counts
        as written, so the next :meth:`sync_to_device` flushes it."""
        s = self._slice(addr, nbytes)
        self._mark(s)
        return self.buf[s]

    async def write_mem(self, addr: int, data: np.ndarray) -> None:
        raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        s = self._slice(addr, raw.size)
        self.buf[s] = raw
        self._mark(s)

    async def sync_to_device(self) -> None:
        if self._dirty is not None:
            lo, hi = self._dirty
            self.buf[lo:hi].flush()
            self._dirty = None

    async def sync_from_device(self, addr: int, nbytes: int) -> None:
        # Unflushed CPU writes first: invalidating cache lines that hold them would drop them
        # (a CPU step reading another CPU step's output; the boundary lines of any range).
        await self.sync_to_device()
        self.buf[self._slice(addr, nbytes)].invalidate()

    async def read_mem(self, addr: int, nbytes: int) -> np.ndarray:
        return np.array(self.buf[self._slice(addr, nbytes)])  # a copy, a plain ndarray

    async def _finished(self) -> bool:
        return bool(await self.read_reg(REG_STATUS) & (STATUS_DONE | STATUS_ERROR))

    async def wait_done(self, timeout_s: float) -> bool:
        if self.interrupt is None:
            return await poll_done(self, timeout_s)
        deadline = time.monotonic() + timeout_s
        # STATUS decides, the interrupt only wakes us: a run can finish before we wait, and the
        # AXI interrupt controller can hold a stale latched edge of the previous run's level
        # irq, which wakes the first wait early; both are caught by reading STATUS again.
        while not await self._finished():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.interrupt.wait(), left)
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                return await self._finished()
        return True


def _ip_driver(overlay: Any, key: str) -> Any:
    """``overlay.<key>`` through the hierarchy (``hier/ip`` is ``overlay.hier.ip``): PYNQ binds a
    driver there, a ``DefaultIP`` with ``mmio`` and an attribute per routed interrupt pin."""
    obj = overlay
    for part in key.split("/"):
        obj = getattr(obj, part)
    return obj


class PynqBackend(Backend):
    """``bitstream``: the .bit file (its .hwh beside it); ``use_irq`` False forces polling;
    ``ip``: the instance (an ``ip_dict`` key) when the overlay has several accelerators;
    ``cacheable`` False allocates a non-cacheable buffer (slow CPU access, no cache to keep)."""

    name = "pynq"

    def __init__(
        self,
        plan: Plan,
        bitstream: str | os.PathLike[str] | None = None,
        timeout_s: float = 5.0,
        use_irq: bool = True,
        ip: str | None = None,
        cacheable: bool = True,
    ) -> None:
        bit = Path(bitstream) if bitstream else DEFAULT_BITSTREAM
        pynq = _import_pynq()
        if not bit.is_file() or not bit.with_suffix(".hwh").is_file():
            raise BackendUnavailable(
                f"pynq backend: bitstream {bit} or its {bit.with_suffix('.hwh').name} is missing"
            )
        # Before any pynq.Interrupt exists: on Python 3.8/3.9 its asyncio.Event binds to the
        # current loop when made, and the interrupt's reader must run on the loop we run.
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self.buffer: Any = None
        self.mmio: Any = None
        try:
            self._open(pynq, plan, bit, timeout_s, use_irq, ip, cacheable)
        except ConfigMismatch as e:  # one line: which overlay, which fields differ
            self.close()
            raise ConfigMismatch(f"pynq backend: overlay {bit.name}: {e}") from None
        except BaseException:
            self.close()
            raise

    def _open(self, pynq: Any, plan: Plan, bit: Path, timeout_s: float, use_irq: bool,
              ip: str | None, cacheable: bool) -> None:  # fmt: skip
        # Download only when another bitstream is loaded: the self-test opens a backend per
        # case, and a download resets the PL (and the interrupt controller's state) each time.
        self.overlay = pynq.Overlay(str(bit), download=False)
        if not self.overlay.is_loaded():
            self.overlay.download()
        self.ip_name, desc = find_ip(self.overlay.ip_dict, ip)
        driver = _ip_driver(self.overlay, self.ip_name)
        self.mmio = getattr(driver, "mmio", None) or pynq.MMIO(
            desc["phys_addr"], desc["addr_range"]
        )
        pins = getattr(self.overlay, "interrupt_pins", None)
        pin = interrupt_pin(desc, self.ip_name, pins) if use_irq else None
        irq = getattr(driver, IRQ_PORT, None) if pin else None  # DefaultIP made it from the pin
        if pin and not hasattr(irq, "wait"):
            try:
                irq = pynq.Interrupt(pin)
            except ValueError:  # in the .hwh, but on no controller PYNQ can open: poll
                irq = None
        self.completion = f"interrupt {pin}" if irq is not None else "polling STATUS"
        self.buffer = pynq.allocate((plan.size,), dtype=np.uint8, cacheable=cacheable)
        base = int(self.buffer.physical_address)
        if base + plan.size > 1 << 32:  # DESC_ADDR and the descriptors' addresses are 32-bit
            raise BackendUnavailable(f"pynq backend: buffer at 0x{base:x} is above 4 GiB")
        transport = PynqTransport(self.mmio, self.buffer, irq)
        # Backend.__init__ runs Driver.open(): ID and CONFIG checked before anything is written
        super().__init__(plan.rebase(base), transport, timeout_s, use_irq=irq is not None)

    def close(self) -> None:
        mmio = getattr(self, "mmio", None)
        if mmio is not None:  # leave irq low for whoever loads the next overlay
            try:
                mmio.write(REG_CTRL, 0)
                mmio.write(REG_STATUS, STATUS_W1C)
            except Exception:  # noqa: BLE001 - closing must not fail on a gone overlay
                pass
            self.mmio = None
        if getattr(self, "_loop", None) is not None:
            super().close()
        buf = getattr(self, "buffer", None)
        if buf is not None:
            buf.freebuffer()
            self.buffer = None


def _import_pynq() -> Any:
    """pynq, or one line saying why not: off a board ``import pynq`` warns and its
    ``Device.devices`` raises "No Devices Found" (or is empty)."""
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
    return pynq
