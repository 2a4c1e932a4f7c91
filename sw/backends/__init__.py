"""Backends: one interface to run a compiled plan, frame by frame.

* ``emu``  the functional model of the accelerator (``sw.emu``) in process, plus the CPU steps;
* ``pynq`` the accelerator on a Zynq board (overlay .bit + .hwh, the IP by VLNV, its MMIO, a
  cacheable pynq buffer flushed and invalidated, its interrupt or polling);
* ``rtl``  (a transport for cocotb testbenches, not a frame backend: ``sw/backends/rtl.py``).

Both frame backends run the same register-level driver (``sw.driver``); they differ only in the
transport underneath (pynq's adds the driver's optional cache hooks, ``sync_to_device`` and
``sync_from_device``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from sw.driver import Driver, RunStats
from sw.plan import Plan

BACKENDS = ("emu", "pynq")


class BackendUnavailable(RuntimeError):
    """A backend that cannot start here (e.g. pynq off a board); the message is one line."""


class Backend:
    """Runs a plan through :class:`sw.driver.Driver` over a transport; not thread-safe (one
    pipeline stage owns it)."""

    name = "?"

    def __init__(
        self, plan: Plan, transport: Any, timeout_s: float = 5.0, use_irq: bool = True
    ) -> None:
        self.plan = plan
        self.driver = Driver(transport, plan, timeout_s=timeout_s, use_irq=use_irq)
        # A subclass may have made the loop already (pynq binds its interrupt to it).
        self._loop = getattr(self, "_loop", None) or asyncio.new_event_loop()
        self._loop.run_until_complete(self.driver.open())

    def run(self, image: np.ndarray, hwc: bool = False) -> dict[str, np.ndarray]:
        """Input codes, (C, H, W) or with ``hwc`` (H, W, C) -> output codes by node name."""
        return self._loop.run_until_complete(self.driver.run_frame(image, hwc))

    @property
    def stats(self) -> RunStats:
        return self.driver.stats

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_backend(name: str, plan: Plan, **options: Any) -> Backend:
    """A backend by name (``emu`` or ``pynq``); options go to its constructor."""
    if name == "emu":
        from sw.backends.emu import EmuBackend

        return EmuBackend(plan, **options)
    if name == "pynq":
        from sw.backends.pynq import PynqBackend

        return PynqBackend(plan, **options)
    raise BackendUnavailable(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
