"""Whole-network RTL runs without cocotb: the Verilator model of hw/ under a small C++ harness.

cocotb drives the simulator from Python at every edge (some thousands of cycles per second
here): right for protocol, stall and error tests, far too slow for a 512x512 frame (millions of
cycles). :func:`build` compiles the same generated Verilog with ``sim/fast/harness.cpp``
instead, an AXI memory over a memory-mapped file and an AXI-Lite master driven over a pipe,
so the only Python left is the host's: :class:`FastRtlBackend` is ``sw.driver.Driver`` over
:class:`FastRtlTransport` - the very driver the board runs, against the RTL, with the DDR
image shared between the two processes (no copies through the pipe).

    from sim.fast_rtl import FastRtlBackend
    with FastRtlBackend(plan) as be:      # builds once per configuration, then reuses
        outputs = be.run(image)           # {node: codes}; be.cycles: simulated cycles

The memory answers every read burst ``latency`` cycles after its address, then moves up to one
beat per cycle each way; ``shared_beats_per_cycle`` (> 0) caps reads and writes together, as a
DDR shared by both directions does. ``make test-slow`` and ``bench/accelerator.py`` use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from hw.gen import generate
from sim.rtl_build import PCH_FIX, TOP, VERILATOR_ARGS
from sw.backends import Backend
from sw.contract.config import DEFAULT_CONFIG, AccelConfig
from sw.descriptors import REG_STATUS, STATUS_DONE, STATUS_ERROR
from sw.plan import Plan

REPO = Path(__file__).resolve().parent.parent
HARNESS = Path(__file__).resolve().parent / "fast" / "harness.cpp"
BUILD = REPO / "build" / "fast_rtl"
CLOCK_HZ = 200e6  # simulated time of the driver's timeouts


def _verilator() -> str:
    import sys

    exe = Path(sys.executable).parent / "verilator"
    return str(exe) if exe.exists() else "verilator"


# Executables already built or found in this process, by configuration: generating the Verilog
# to hash it takes tens of seconds, and a test session starts many backends on one config.
_BUILT: dict[str, Path] = {}


def build(cfg: AccelConfig = DEFAULT_CONFIG) -> Path:
    """The harness executable for ``cfg`` (cached by a hash of the Verilog and the harness,
    and within the process by the configuration)."""
    cfg_json = json.dumps(cfg.as_dict(), sort_keys=True)
    key = cfg_json + HARNESS.read_text()
    if key in _BUILT and _BUILT[key].exists():
        return _BUILT[key]
    _BUILT[key] = exe = _build(cfg, cfg_json)
    return exe


def _build(cfg: AccelConfig, cfg_json: str) -> Path:
    vdir = BUILD / "verilog" / hashlib.sha256(cfg_json.encode()).hexdigest()[:12]
    vfile = generate(cfg, vdir / f"{TOP}.v")
    h = hashlib.sha256(vfile.read_bytes() + HARNESS.read_bytes())
    bdir = BUILD / f"harness_{h.hexdigest()[:12]}"
    exe = bdir / "harness"
    if exe.exists():
        return exe
    bdir.mkdir(parents=True, exist_ok=True)
    flags = f"-O2 -DDATA_BITS={8 * cfg.lanes}"
    cmd = [_verilator(), "--cc", "--exe", "--build", "-j", os.environ.get("BUILD_JOBS", "2"),
           *VERILATOR_ARGS, "--top-module", TOP, "--Mdir", str(bdir / "obj"), "-o", str(exe),
           "-CFLAGS", flags, str(vfile), str(HARNESS)]  # fmt: skip
    env = {**os.environ, "MAKEFLAGS": f"{os.environ.get('MAKEFLAGS', '')} {PCH_FIX}".strip()}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if run.returncode or not exe.exists():
        raise RuntimeError(f"fast-rtl build failed:\n{(run.stdout + run.stderr)[-3000:]}")
    return exe


class FastRtlTransport:
    """Registers over the harness's pipe, DDR as a memory-mapped file both processes share."""

    def __init__(
        self, exe: Path, mem_size: int, latency: int = 2, shared_beats_per_cycle: float = 0.0
    ) -> None:
        self.size = mem_size
        self._file = tempfile.NamedTemporaryFile(prefix="fast-rtl-", suffix=".ddr")  # noqa: SIM115
        self._file.truncate(mem_size)
        self._file.flush()
        self.mem = np.memmap(self._file.name, dtype=np.uint8, mode="r+", shape=(mem_size,))
        self.cycles = 0
        self._proc = subprocess.Popen(
            [str(exe), self._file.name, str(mem_size), str(latency),
             repr(float(shared_beats_per_cycle))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            bufsize=1,
        )  # fmt: skip
        self._expect("ready")

    def _line(self) -> str:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            err = self._proc.stderr.read() if self._proc.stderr else ""
            raise RuntimeError(f"fast-rtl harness exited: {err.strip() or 'no message'}")
        return line.strip()

    def _expect(self, want: str) -> None:
        got = self._line()
        if got != want:
            raise RuntimeError(f"fast-rtl harness said {got!r}, expected {want!r}")

    def _send(self, cmd: str) -> str:
        assert self._proc.stdin is not None
        self._proc.stdin.write(cmd + "\n")
        self._proc.stdin.flush()
        return self._line()

    async def write_reg(self, offset: int, value: int) -> None:
        if self._send(f"w {offset} {value & 0xFFFFFFFF}") != "ok":
            raise RuntimeError("fast-rtl harness: register write not acknowledged")

    async def read_reg(self, offset: int) -> int:
        return int(self._send(f"r {offset}"))

    async def write_mem(self, addr: int, data: np.ndarray) -> None:
        buf = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        self.mem[addr : addr + buf.size] = buf

    async def read_mem(self, addr: int, nbytes: int) -> np.ndarray:
        return np.array(self.mem[addr : addr + nbytes])

    def view(self, addr: int, nbytes: int) -> np.ndarray:
        return self.mem[addr : addr + nbytes]

    async def wait_done(self, timeout_s: float) -> bool:
        """Clock until ``irq`` or ``timeout_s`` of simulated time (at 200 MHz) has passed."""
        kind, cycles = self._send(f"run {max(1, int(timeout_s * CLOCK_HZ))}").split()
        self.cycles = int(cycles)
        return bool(await self.read_reg(REG_STATUS) & (STATUS_DONE | STATUS_ERROR))

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write("q\n")
                self._proc.stdin.flush()
                self._proc.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired, ValueError):
                self._proc.kill()
                self._proc.wait()
        del self.mem
        self._file.close()


class FastRtlBackend(Backend):
    """The driver over :class:`FastRtlTransport` on the RTL of ``plan.cfg`` (rebased to 0)."""

    name = "rtl-fast"

    def __init__(
        self,
        plan: Plan,
        timeout_s: float = 0.5,
        latency: int = 2,
        shared_beats_per_cycle: float = 0.0,
    ) -> None:
        if plan.base != 0:
            plan = plan.rebase(0)
        size = 1 << max(20, (plan.size - 1).bit_length())
        self.transport = FastRtlTransport(build(plan.cfg), size, latency, shared_beats_per_cycle)
        super().__init__(plan, self.transport, timeout_s=timeout_s)

    @property
    def cycles(self) -> int:
        """Simulated cycles since reset (all frames so far)."""
        return self.transport.cycles

    def close(self) -> None:
        super().close()
        self.transport.close()
