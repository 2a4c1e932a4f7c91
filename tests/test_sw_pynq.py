"""The pynq backend's own layer, off the board: what can be checked without a Zynq.

* the IP is found by VLNV in an ``ip_dict`` shaped as PYNQ's .hwh parser builds it;
* completion by interrupt: a real asyncio event that never fires ends in the timeout (also on
  Python 3.8/3.10, where ``asyncio.wait_for`` raises ``asyncio.TimeoutError``, not the builtin);
  a stale wake-up is re-checked against STATUS;
* cache maintenance: the very driver, over :class:`PynqTransport`, with the emulator behind the
  registers and a cache model standing in for a cacheable ``PynqBuffer`` (the CPU's copy and
  DDR differ until flushed / invalidated): one flush before each PL run that follows writes,
  invalidates of the tensor ranges read, results equal to the emu backend's;
* a plan for another build: one line naming the fields, through the same transport;
* off a board: one line, at once.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from sim.reference.randnet import random_conv
from sw.accel_config import AccelConfig
from sw.artifact import Artifact, Output, Quant
from sw.backends import Backend, BackendUnavailable, make_backend
from sw.backends.emu import EmuBackend
from sw.backends.pynq import PynqTransport, find_ip, interrupt_pin
from sw.compiler import compile_model
from sw.contract.ip import VLNV
from sw.descriptors import CTRL_START, REG_CTRL, REG_STATUS, STATUS_DONE
from sw.driver import AcceleratorError, ConfigMismatch, Driver
from sw.emu import EmuDevice
from sw.plan import CPUStep, PLStep

REPO = Path(__file__).resolve().parent.parent

# -- the IP by VLNV ----------------------------------------------------------------------------


def _entry(vlnv: str, addr: int, irq: dict | None = None) -> dict:
    """One ``ip_dict`` value, with the keys PYNQ's hwh_parser writes for an AXI-Lite slave."""
    return {
        "fullpath": "", "type": vlnv, "bdtype": None, "state": None, "addr_range": 0x10000,
        "phys_addr": addr, "mem_id": "s_axi_control", "memtype": "REGISTER", "gpio": {},
        "interrupts": irq or {}, "parameters": {}, "registers": {},
    }  # fmt: skip


def _ip_dict(*accels: tuple[str, str]) -> dict:
    """A PYNQ-Z2-like overlay: the PS, an AXI interrupt controller, a decoy whose name starts
    like ours, and the accelerators ``(instance, vlnv)``, the first with its irq routed."""
    d = {
        "processing_system7_0": {
            "type": "xilinx.com:ip:processing_system7:5.5",
            "gpio": {},
            "interrupts": {},
            "parameters": {},
        },  # fmt: skip
        "axi_intc_0": _entry("xilinx.com:ip:axi_intc:4.1", 0x41800000),
        "pow2det_accel_dma": _entry("xilinx.com:ip:axi_dma:7.1", 0x40400000),
    }
    for i, (name, vlnv) in enumerate(accels):
        pin = f"{name}/irq"
        irq = {"irq": {"controller": "axi_intc_0", "index": 0, "fullpath": pin}} if i == 0 else {}
        d[name] = _entry(vlnv, 0x43C00000 + 0x10000 * i, irq)
        d[name]["fullpath"] = name
    return d


def test_ip_found_by_vlnv_not_by_name() -> None:
    d = _ip_dict(("accel", VLNV))
    name, desc = find_ip(d)
    assert name == "accel" and desc["phys_addr"] == 0x43C00000
    assert interrupt_pin(desc) == "accel/irq"
    # two accelerators: the first by name, or the one asked for; only the first has its irq
    d = _ip_dict(("hier/b_accel", VLNV), ("a_accel", VLNV))
    assert find_ip(d)[0] == "a_accel" and find_ip(d, "hier/b_accel")[0] == "hier/b_accel"
    assert interrupt_pin(find_ip(d)[1]) is None  # no routed interrupt: the backend polls
    # an RTL module reference in the block design carries Vivado's module_ref VLNV
    assert find_ip(_ip_dict(("m", "xilinx.com:module_ref:pow2det_accel:1.0")))[0] == "m"
    # ... which PYNQ keys by instance/interface, its irq pin then only in interrupt_pins
    d = _ip_dict(("m/s_axi_control", "xilinx.com:module_ref:pow2det_accel:1.0"))
    key, desc = find_ip(d)
    desc["interrupts"] = {}
    pins = {"m/irq": {"controller": "axi_intc_0", "index": 0, "fullpath": "m/irq"}}
    assert interrupt_pin(desc, key, pins) == "m/irq" and interrupt_pin(desc, key, {}) is None


def test_ip_other_version_warns_missing_ip_is_one_line() -> None:
    d = _ip_dict(("accel", VLNV.rsplit(":", 1)[0] + ":2.3"))
    with pytest.warns(UserWarning, match=r"accel is .*pow2det_accel:2\.3.*written for .*:1\.0"):
        assert find_ip(d)[0] == "accel"
    d = _ip_dict(("old", VLNV.rsplit(":", 1)[0] + ":0.9"), ("new", VLNV))
    assert find_ip(d)[0] == "new"  # the exact version wins over the first name
    for d, name in [(_ip_dict(), None), (_ip_dict(("accel", VLNV)), "nope")]:
        with pytest.raises(BackendUnavailable, match="the overlay has no pow2det.org:") as e:
            find_ip(d, name)
        msg = str(e.value)
        assert "\n" not in msg and "pow2det_accel_dma (xilinx.com:ip:axi_dma:7.1)" in msg


# -- completion: interrupt, timeout, stale wake-ups --------------------------------------------


class EmuMMIO:
    """``pynq.MMIO``'s two calls on the emulator's registers; records START writes."""

    def __init__(self, dev: EmuDevice, log: list | None = None) -> None:
        self.dev, self.log = dev, log if log is not None else []

    def read(self, offset: int) -> int:
        return self.dev.read_reg(offset)

    def write(self, offset: int, value: int) -> None:
        if offset == REG_CTRL and value & CTRL_START:
            self.log.append(("start",))
        self.dev.write_reg(offset, value)


class Irq:
    """``pynq.Interrupt``'s API (``await wait()``) on a real asyncio event. ``wakes``: what each
    wait does, in turn: "stale" returns at once (a latched edge of the last run), "done" sets
    STATUS.DONE and returns; then it waits on an event nobody sets."""

    def __init__(self, dev: EmuDevice, wakes: list[str]) -> None:
        self.dev, self.wakes, self.waits = dev, list(wakes), 0

    async def wait(self) -> None:
        self.waits += 1
        if self.wakes:
            if self.wakes.pop(0) == "done":
                self.dev.regs[REG_STATUS] |= STATUS_DONE
            return
        await asyncio.Event().wait()


class Buf:
    """Only what :class:`PynqTransport` reads of a buffer before any memory access."""

    physical_address, size = 0, 0


@pytest.mark.parametrize(
    "wakes, finished, waits", [([], False, 1), (["stale"], False, 2), (["stale", "done"], True, 2)]
)
def test_interrupt_wait_times_out_and_rechecks_status(wakes, finished, waits) -> None:
    dev = EmuDevice(AccelConfig(), 64)  # idle: STATUS stays 0 unless a wake sets DONE
    irq = Irq(dev, wakes)
    t = PynqTransport(EmuMMIO(dev), Buf(), irq)
    t0 = time.monotonic()
    assert asyncio.run(t.wait_done(0.05)) is finished
    assert irq.waits == waits and time.monotonic() - t0 < 2
    # a run that finished before the wait does not wait for the interrupt at all
    dev.regs[REG_STATUS] |= STATUS_DONE
    assert asyncio.run(t.wait_done(0.05)) and irq.waits == waits


PY_OLD = [Path(f"/root/.pyenv/versions/{v}/bin/python") for v in ("3.8.18", "3.10.13")]
PROBE = """
import asyncio, sys, time
from sw.backends.pynq import PynqTransport
class Regs:
    def read(self, offset): return 0
    def write(self, offset, value): pass
class Buf:
    physical_address = size = 0
class Never:
    async def wait(self): await asyncio.Event().wait()
t0 = time.monotonic()
done = asyncio.run(PynqTransport(Regs(), Buf(), Never()).wait_done(0.05))
print(sys.version_info[:2], done, time.monotonic() - t0 < 2)
"""


@pytest.mark.parametrize("py", [p for p in PY_OLD if p.is_file()] or [None])
def test_interrupt_timeout_on_python_before_311(py: Path | None, tmp_path: Path) -> None:
    """Before 3.11 ``asyncio.TimeoutError`` is not the builtin ``TimeoutError``: a timeout must
    come back as False there too, not as an exception (numpy stood in for: no numpy there)."""
    if py is None:
        pytest.skip("no Python 3.8 or 3.10 here")
    src = (REPO / "tests" / "test_board_package.py").read_text()
    stub = re.search(r"STUB = '''(.*?)'''", src, re.S)
    assert stub, "tests/test_board_package.py no longer has its numpy STUB"
    (tmp_path / "numpy").mkdir()
    (tmp_path / "numpy" / "__init__.py").write_text(stub.group(1).format(name="numpy"))
    env = {"PYTHONPATH": f"{REPO}:{tmp_path}", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([str(py), "-c", PROBE], env=env, capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split(")")[1].split() == ["False", "True"], r.stdout


# -- cache maintenance, through the driver ------------------------------------------------------


class CachedDDR(np.ndarray):
    """The CPU's view of a cacheable ``PynqBuffer``, with the cache made visible: reads and
    writes hit this copy, ``flush()`` writes its bytes to ``ddr`` (the accelerator's side, here
    the emulator's memory), ``invalidate()`` reloads them from there, each logged with its offset
    and size. Slices keep their offset into the buffer, as PynqBuffer slices do."""

    ddr: np.ndarray
    log: list
    offset: int

    @classmethod
    def over(cls, ddr: np.ndarray, base: int, log: list) -> CachedDDR:
        buf = np.zeros_like(ddr).view(cls)  # a cold cache: unflushed or uninvalidated shows
        buf.ddr, buf.log, buf.offset, buf.physical_address = ddr, log, 0, base
        return buf

    def __array_finalize__(self, obj: object) -> None:
        if isinstance(obj, CachedDDR) and hasattr(obj, "ddr"):
            self.ddr, self.log = obj.ddr, obj.log
            self.offset = obj.offset + (self.ctypes.data - obj.ctypes.data)

    def _span(self) -> slice:
        return slice(self.offset, self.offset + self.nbytes)

    def flush(self) -> None:
        self.log.append(("flush", self.offset, self.nbytes))
        self.ddr[self._span()] = self.reshape(-1).view(np.uint8)

    def invalidate(self) -> None:
        self.log.append(("invalidate", self.offset, self.nbytes))
        self.reshape(-1).view(np.uint8)[:] = self.ddr[self._span()]


@pytest.fixture(scope="module")
def pl_cpu_pl():
    """conv (PL) -> conv too big for the weight buffer even one output-channel group at a
    time (CPU) -> conv (PL), and two frames."""
    rng = np.random.default_rng(3)
    inq = Quant(8, 0, float(np.float32(1 / 255)))
    shape, src, q, nodes = (3, 8, 8), "image", inq, []
    for i, (cout, k) in enumerate([(64, 1), (16, 3), (8, 1)]):
        n = random_conv(rng, f"c{i}", src, shape, q, out_channels=cout, kernel=k, out_bits=8)
        nodes.append(n)
        p, st = n.attrs["pad"], n.attrs["stride"]
        shape = (cout, (shape[1] + 2 * p - k) // st + 1, (shape[2] + 2 * p - k) // st + 1)
        src, q = n.name, n.quant
    art = Artifact("plcpupl", "image", (3, 8, 8), inq, nodes, [Output(src)])
    plan = compile_model(art, AccelConfig(weight_buffer_bytes=4096), cpu_fallback=True)
    assert [type(s) for s in plan.steps] == [PLStep, CPUStep, PLStep]
    imgs = [rng.integers(0, 256, art.input_shape).astype(np.uint8) for _ in range(2)]
    return plan, imgs


def _pynq_driver(plan, transport_cls=PynqTransport):
    log: list = []
    dev = EmuDevice(plan.cfg, plan.size, plan.base)
    t = transport_cls(EmuMMIO(dev, log), CachedDDR.over(dev.mem, plan.base, log))
    return Driver(t, plan), log


def test_flush_before_each_run_invalidate_only_what_is_read(pl_cpu_pl) -> None:
    plan, imgs = pl_cpu_pl
    driver, log = _pynq_driver(plan)
    span = {n: plan.tensor_bytes(n) for n in ("image", "c0", "c1", "c2")}
    with EmuBackend(plan) as emu:
        for k, img in enumerate(imgs):
            log.clear()
            out = asyncio.run(driver.run_frame(img))
            np.testing.assert_array_equal(out["c2"], emu.run(img)["c2"])
            # open() wrote the whole image: one flush of all of it, then only the input
            first = ("flush", 0, plan.size) if k == 0 else ("flush", *span["image"])
            assert log == [
                first, ("start",),
                ("invalidate", *span["c0"]),  # the CPU step's input, written by the PL
                ("flush", *span["c1"]), ("start",),  # its output, before the PL reads it
                ("invalidate", *span["c2"]),  # the output
            ], log  # fmt: skip


class NoFlush(PynqTransport):
    async def sync_to_device(self) -> None:
        pass


class NoInvalidate(PynqTransport):
    async def sync_from_device(self, addr: int, nbytes: int) -> None:
        pass


def test_cache_model_catches_a_missing_flush_or_invalidate(pl_cpu_pl) -> None:
    """The test above has teeth: without the flush the accelerator sees an empty DDR, without
    the invalidate the CPU reads a cold cache."""
    plan, imgs = pl_cpu_pl
    with EmuBackend(plan) as emu:
        want = emu.run(imgs[0])["c2"]
    with pytest.raises(AcceleratorError):  # descriptors of zeros are refused
        asyncio.run(_pynq_driver(plan, NoFlush)[0].run_frame(imgs[0]))
    out = asyncio.run(_pynq_driver(plan, NoInvalidate)[0].run_frame(imgs[0]))
    assert not np.array_equal(out["c2"], want)


# -- another build, off the board ----------------------------------------------------------------


def test_plan_for_another_build_is_one_line_through_the_pynq_transport(pl_cpu_pl) -> None:
    plan, _ = pl_cpu_pl
    dev = EmuDevice(AccelConfig(lanes=8, max_strip=16), plan.size, plan.base)
    t = PynqTransport(EmuMMIO(dev), CachedDDR.over(dev.mem, plan.base, []))
    with pytest.raises(ConfigMismatch) as e:
        Backend(plan, t)
    msg = str(e.value)
    assert "\n" not in msg and "lanes 16 (hardware: 8)" in msg and "max_strip" in msg
    assert not dev.regs[REG_CTRL], "refused before any run"


def test_off_board_is_one_line_at_once(pl_cpu_pl) -> None:
    """What pynq does off a board (imports with a warning, no devices, "No Devices Found" from
    the first call that needs one), and the backend's one line before any of it."""
    plan, _ = pl_cpu_pl
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pynq
    except ImportError:
        pynq = None
    if pynq is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            devices = pynq.Device.devices
        if devices:
            pytest.skip("a PYNQ device is present: this is a board")
        with pytest.raises(RuntimeError, match="No Devices Found"):
            pynq.Device.active_device  # noqa: B018 - what pynq.allocate and Overlay hit
    expect = "no PYNQ device found" if pynq is not None else "cannot import pynq"
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable, match=f"^pynq backend: {expect}") as e:
        make_backend("pynq", plan, bitstream="/nonexistent.bit")
    assert "\n" not in str(e.value) and time.monotonic() - t0 < 10
