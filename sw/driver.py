"""The register-level driver of the accelerator, written once for every transport.

The driver speaks docs/accelerator-interface.md through a small :class:`Transport` protocol
(registers, DDR, completion), so the same code runs

* on the board (``sw/backends/pynq.py``: MMIO + a pynq buffer + the interrupt),
* against the functional model (``sw/backends/emu.py``: :class:`sw.emu.EmuDevice` in process),
* against the RTL in Verilator (``sw/backends/rtl.py``: cocotb AXI-Lite master + AXI RAM).

It is ``async`` because cocotb and pynq's interrupts are: a simulation only advances while the
testbench awaits, and an interrupt is awaited, not polled. Synchronous callers go through a
backend (``sw/backends``), which owns an event loop.

Every failure is one line: a plan compiled for another build (ID/CONFIG registers), an ERROR
status (naming the descriptor, its layer and the ERROR_NAMES entry), or no completion within the
timeout (it never waits forever).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from sw.contract.registers import (
    ACCEL_ID,
    INPUT_WORD_UNIT,
    STATUS_W1C,
    WEIGHT_LINE_BYTES,
    decode_config,
)
from sw.cpu_ops import CPUOps
from sw.descriptors import (
    CTRL_IRQ_EN,
    CTRL_START,
    ERROR_NAMES,
    INTERFACE_VERSION,
    REG_CONFIG,
    REG_CONFIG2,
    REG_CTRL,
    REG_DESC_ADDR,
    REG_DESC_COUNT,
    REG_DESC_DONE,
    REG_ERROR_CODE,
    REG_ERROR_INDEX,
    REG_ID,
    REG_PERF_DENSE,
    REG_PERF_DW,
    REG_PERF_ELTWISE,
    REG_PERF_MEM_STALL,
    REG_PERF_TOTAL,
    REG_STATUS,
    STATUS_DONE,
    STATUS_ERROR,
)
from sw.plan import CPUStep, Plan, PLStep


class AcceleratorError(RuntimeError):
    """The accelerator refused or failed a run; the message is one line."""


class ConfigMismatch(AcceleratorError):
    """The plan was compiled for another accelerator build than the one answering."""


class AcceleratorTimeout(AcceleratorError):
    """No DONE or ERROR within the timeout."""


@runtime_checkable
class Transport(Protocol):
    """How the driver reaches one accelerator: 32-bit registers, DDR bytes, completion.

    ``wait_done`` returns True once STATUS.DONE or STATUS.ERROR is set (by interrupt or by
    polling, the transport's choice) and False when ``timeout_s`` passes first; it must return
    in about ``timeout_s`` whatever the hardware does.

    Two optional hooks, for transports whose memory the CPU reaches through a cache (pynq's
    cacheable buffers); the emu and RTL transports have neither, and the driver then skips them:

    * ``async sync_to_device()``: called once before every PL run (before its first register
      write), so that everything written since the last call (``write_mem`` or a ``view``) is
      in DDR when the accelerator fetches it: one flush per run, not one per write;
    * ``async sync_from_device(addr, nbytes)``: called before every ``read_mem`` of a tensor,
      with that tensor's byte range only, so the CPU reads what the accelerator wrote.
    """

    async def write_reg(self, offset: int, value: int) -> None: ...

    async def read_reg(self, offset: int) -> int: ...

    async def write_mem(self, addr: int, data: np.ndarray) -> None: ...

    async def read_mem(self, addr: int, nbytes: int) -> np.ndarray: ...

    async def wait_done(self, timeout_s: float) -> bool: ...


async def poll_done(transport: Transport, timeout_s: float, interval_s: float = 0.0005) -> bool:
    """``wait_done`` by polling STATUS, for transports without an interrupt."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await transport.read_reg(REG_STATUS) & (STATUS_DONE | STATUS_ERROR):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval_s)


@dataclass
class RunStats:
    """Counters of the last frame: PL runs, PERF registers summed over them, wall times."""

    pl_runs: int = 0
    perf: dict[str, int] = field(default_factory=dict)
    pl_s: float = 0.0
    cpu_s: float = 0.0


PERF_REGS = {
    "total": REG_PERF_TOTAL,
    "dense": REG_PERF_DENSE,
    "depthwise": REG_PERF_DW,
    "eltwise": REG_PERF_ELTWISE,
    "mem_stall": REG_PERF_MEM_STALL,
}


class Driver:
    """Runs a :class:`Plan` frame by frame on one accelerator reached through ``transport``."""

    def __init__(
        self, transport: Transport, plan: Plan, timeout_s: float = 5.0, use_irq: bool = True
    ) -> None:
        self.t = transport
        self.plan = plan
        self.timeout_s = timeout_s
        self.use_irq = use_irq
        self.cpu = CPUOps()
        self.stats = RunStats()
        self._opened = False

    async def check_device(self) -> None:
        """ID and CONFIG registers against the plan's AccelConfig (one-line error if not)."""
        ident = await self.t.read_reg(REG_ID)
        if ident != ACCEL_ID:
            raise AcceleratorError(
                f"no pow2det accelerator answers: ID register reads 0x{ident:08x}, "
                f"expected 0x{ACCEL_ID:08x}"
            )
        config, config2 = await self.t.read_reg(REG_CONFIG), await self.t.read_reg(REG_CONFIG2)
        cfg = self.plan.cfg
        have = decode_config(config, config2)
        want = {
            "interface version": INTERFACE_VERSION,
            "lanes": cfg.lanes,
            "max_strip": cfg.max_strip,
            "weight_buffer_bytes": cfg.weight_buffer_bytes // WEIGHT_LINE_BYTES * WEIGHT_LINE_BYTES,
            "input_buffer_words": cfg.input_buffer_words // INPUT_WORD_UNIT * INPUT_WORD_UNIT,
        }
        diff = [f"{k} {want[k]} (hardware: {have[k]})" for k in want if want[k] != have[k]]
        if diff:
            raise ConfigMismatch(
                f"plan for model {self.plan.model_name!r} was compiled for another accelerator "
                f"build: {', '.join(diff)}; recompile it for this build"
            )

    async def open(self) -> None:
        """Check the device and load the plan's DDR image (program, weights, records)."""
        await self.check_device()
        await self.t.write_mem(self.plan.base, self.plan.memory)
        self._opened = True

    async def _sync_to_device(self) -> None:
        hook = getattr(self.t, "sync_to_device", None)
        if hook is not None:
            await hook()

    async def _read_mem(self, addr: int, nbytes: int) -> np.ndarray:
        hook = getattr(self.t, "sync_from_device", None)
        if hook is not None:
            await hook(addr, nbytes)
        return await self.t.read_mem(addr, nbytes)

    async def _run_pl(self, step: PLStep) -> None:
        t, plan = self.t, self.plan
        await self._sync_to_device()  # the input, CPU steps' outputs, at open the whole image
        await t.write_reg(REG_STATUS, STATUS_W1C)  # clear the sticky DONE and ERROR bits
        await t.write_reg(REG_DESC_ADDR, plan.program_addr(step.first))
        await t.write_reg(REG_DESC_COUNT, step.count)
        await t.write_reg(REG_CTRL, CTRL_START | (CTRL_IRQ_EN if self.use_irq else 0))
        finished = await t.wait_done(self.timeout_s)
        status = await t.read_reg(REG_STATUS)
        if status & STATUS_ERROR:
            code = await t.read_reg(REG_ERROR_CODE)
            index = step.first + await t.read_reg(REG_ERROR_INDEX)
            raise AcceleratorError(
                f"accelerator error on descriptor {index} (layer "
                f"{plan.layer_of_descriptor(index)!r}): code {code}, "
                f"{ERROR_NAMES.get(code, 'unknown error code')}"
            )
        done = await t.read_reg(REG_DESC_DONE)
        if not finished or not status & STATUS_DONE:
            last = step.first + step.count - 1
            raise AcceleratorTimeout(
                f"accelerator timed out after {self.timeout_s:g} s on descriptors "
                f"{step.first}..{last} (layers {step.layers[0]!r}..{step.layers[-1]!r}): "
                f"{done} of {step.count} done, STATUS = 0x{status:x}"
            )
        if done != step.count:
            raise AcceleratorError(
                f"accelerator reports DONE after {done} of {step.count} descriptors "
                f"(descriptors {step.first}..{step.first + step.count - 1})"
            )
        for k, reg in PERF_REGS.items():
            self.stats.perf[k] = self.stats.perf.get(k, 0) + await t.read_reg(reg)
        self.stats.pl_runs += 1

    async def _read_tensor(self, name: str) -> np.ndarray:
        off, size = self.plan.tensor_bytes(name)
        return self.plan.decode_tensor(name, await self._read_mem(self.plan.base + off, size))

    async def _run_cpu(self, step: CPUStep) -> None:
        plan = self.plan
        xs = [await self._read_tensor(s) for s in step.inputs]
        qs = [plan.regions[s].quant for s in step.inputs]
        y = self.cpu.run(step, xs, qs)  # type: ignore[arg-type]
        off, _ = plan.tensor_bytes(step.layer)
        await self.t.write_mem(plan.base + off, plan.encode_tensor(step.layer, y))

    async def write_input(self, image: np.ndarray, hwc: bool = False) -> None:
        plan = self.plan
        off, size = plan.tensor_bytes(plan.input_name)
        view = getattr(self.t, "view", None)
        if view is not None:  # zero copy: only the real channels move
            plan.fill_input(view(plan.base + off, size), image, hwc)
        else:
            q = plan.input_codes(image, hwc)  # the frame, or its packed windows
            await self.t.write_mem(plan.base + off, plan.encode_tensor(plan.input_name, q))

    async def run_frame(self, image: np.ndarray, hwc: bool = False) -> dict[str, np.ndarray]:
        """One frame: input codes in, the output tensors' codes (C, H, W) out, by node name."""
        if not self._opened:
            await self.open()
        self.stats = RunStats()
        await self.write_input(image, hwc)
        for step in self.plan.steps:
            t0 = time.perf_counter()
            if isinstance(step, PLStep):
                await self._run_pl(step)
                self.stats.pl_s += time.perf_counter() - t0
            else:
                await self._run_cpu(step)
                self.stats.cpu_s += time.perf_counter() - t0
        return {o.node: await self._read_tensor(o.node) for o in self.plan.outputs}
