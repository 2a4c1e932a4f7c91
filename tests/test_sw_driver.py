"""The register-level driver against the emulator (a second implementation of the interface):
configuration check, ERROR status, timeout, register protocol."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sim.reference import run_network
from sim.reference.randnet import random_network
from sw.accel_config import AccelConfig
from sw.backends import BackendUnavailable, make_backend
from sw.backends.emu import EmuBackend
from sw.compiler import compile_model
from sw.descriptors import (
    CTRL_IRQ_EN,
    CTRL_START,
    DESCRIPTOR_BYTES,
    ERROR_NAMES,
    REG_CTRL,
    REG_DESC_ADDR,
    REG_DESC_COUNT,
    REG_DESC_DONE,
    REG_ID,
    REG_STATUS,
    STATUS_DONE,
)
from sw.driver import AcceleratorError, AcceleratorTimeout, ConfigMismatch
from sw.emu import EmuDevice


@pytest.fixture(scope="module")
def net():
    rng = np.random.default_rng(42)
    art = random_network(rng, height=16, width=16)
    img = rng.integers(0, 256, art.input_shape).astype(np.uint8)
    return art, img


def test_plan_for_another_build_is_refused(net) -> None:
    art, _ = net
    plan = compile_model(art, AccelConfig(lanes=16, max_strip=32))
    for other, field in [
        (AccelConfig(lanes=8, max_strip=32), "lanes 16 (hardware: 8)"),
        (AccelConfig(lanes=16, max_strip=16), "max_strip 32 (hardware: 16)"),
        (AccelConfig(weight_buffer_bytes=32768), "weight_buffer_bytes 65536 (hardware: 32768)"),
    ]:
        with pytest.raises(ConfigMismatch, match="compiled for another accelerator build") as e:
            EmuBackend(plan, device_cfg=other)
        assert field in str(e.value) and "\n" not in str(e.value)


def test_wrong_id_is_refused(net) -> None:
    art, _ = net
    plan = compile_model(art, AccelConfig())
    be = EmuBackend.__new__(EmuBackend)
    dev = EmuDevice(plan.cfg, plan.size)
    dev.regs[REG_ID] = 0xDEADBEEF
    from sw.backends import Backend
    from sw.backends.emu import EmuTransport

    with pytest.raises(AcceleratorError, match="ID register reads 0xdeadbeef"):
        Backend.__init__(be, plan, EmuTransport(dev))


def test_error_status_names_descriptor_layer_and_code(net) -> None:
    art, img = net
    plan = compile_model(art, AccelConfig())
    be = EmuBackend(plan)
    # corrupt descriptor 3 in DDR: a strip wider than the build allows (ERROR 3)
    d = plan.descriptors[3]
    d_bad = type(d)(**{**d.as_dict(), "strip_width": plan.cfg.max_strip + 1})
    be.device.write_mem(plan.program_addr(3), np.frombuffer(d_bad.pack(), np.uint8))
    with pytest.raises(AcceleratorError) as e:
        be.run(img)
    msg = str(e.value)
    assert f"descriptor 3 (layer {plan.layer_of_descriptor(3)!r})" in msg
    assert ERROR_NAMES[3] in msg and "\n" not in msg
    # an unknown opcode (ERROR 1) on the first descriptor of a later PL run
    d_op = type(d)(**{**d.as_dict(), "op": 9})
    be.device.write_mem(plan.program_addr(3), np.frombuffer(d.pack(), np.uint8))
    later = [s for s in plan.steps if hasattr(s, "first")][1]
    be.device.write_mem(plan.program_addr(later.first), np.frombuffer(d_op.pack(), np.uint8))
    with pytest.raises(AcceleratorError, match=f"descriptor {later.first} .*unknown opcode"):
        be.run(img)


def test_address_outside_ddr_is_an_axi_error(net) -> None:
    art, img = net
    plan = compile_model(art, AccelConfig())
    be = EmuBackend(plan)
    d = plan.descriptors[0]
    bad = type(d)(**{**d.as_dict(), "out_addr": plan.base + plan.size + 4096})
    be.device.write_mem(plan.program_addr(0), np.frombuffer(bad.pack(), np.uint8))
    with pytest.raises(AcceleratorError, match="descriptor 0 .*AXI error response"):
        be.run(img)


def test_timeout_never_hangs(net) -> None:
    art, img = net
    plan = compile_model(art, AccelConfig())
    be = EmuBackend(plan, hang_after=2, timeout_s=0.2)
    t0 = time.monotonic()
    with pytest.raises(AcceleratorTimeout) as e:
        be.run(img)
    assert time.monotonic() - t0 < 2.0
    assert "timed out after 0.2 s" in str(e.value) and "2 of" in str(e.value)


def test_frames_repeat_and_registers_follow_the_protocol(net) -> None:
    art, img = net
    plan = compile_model(art, AccelConfig(), base=0x1000_0000)
    be = make_backend("emu", plan)
    want = run_network(art, img)
    for _ in range(3):
        got = be.run(img)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    assert be.stats.pl_runs == sum(1 for s in plan.steps if hasattr(s, "first"))
    dev = be.device
    last = [s for s in plan.steps if hasattr(s, "first")][-1]
    assert dev.read_reg(REG_DESC_ADDR) == plan.base + last.first * DESCRIPTOR_BYTES
    assert dev.read_reg(REG_DESC_COUNT) == last.count == dev.read_reg(REG_DESC_DONE)
    assert dev.read_reg(REG_STATUS) == STATUS_DONE
    assert dev.irq and dev.read_reg(REG_CTRL) == CTRL_IRQ_EN  # START reads back as 0
    # W1C: clearing DONE drops the interrupt
    dev.write_reg(REG_STATUS, STATUS_DONE)
    assert not dev.irq
    # START while BUSY is ignored
    dev.regs[REG_STATUS] = 1
    dev.write_reg(REG_CTRL, CTRL_START)
    assert dev.read_reg(REG_STATUS) == 1
    be.close()


def test_unknown_backend_and_pynq_off_board(net) -> None:
    art, _ = net
    plan = compile_model(art, AccelConfig())
    with pytest.raises(BackendUnavailable, match="unknown backend 'fpga'"):
        make_backend("fpga", plan)
    # off a board the pynq backend fails at once, with one line, before touching any hardware
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable, match="no PYNQ device found") as e:
        make_backend("pynq", plan)
    assert "\n" not in str(e.value) and time.monotonic() - t0 < 30
