"""The sw stack against the RTL: ``compile_model`` plans run by the register-level driver over
the ``rtl`` transport (cocotbext-axi AXI-Lite master + AXI RAM) on the Verilator model of hw/,
bit for bit equal to sim.reference and to the ``emu`` backend; an ERROR status is reported by
the same code path as on the board.

The pytest test builds the model once (sim/rtl_build.py, shared with tests/test_rtl_accel.py)
and runs the cocotb test ``rtl_driver_plans`` of this same module inside the simulator."""

from __future__ import annotations

import os

import numpy as np
import pytest

rtl_build = pytest.importorskip("sim.rtl_build")
cocotb = pytest.importorskip("cocotb")

SEED = int(os.environ.get("SW_RTL_SEED", "11"))


def test_driver_runs_compiled_plans_on_the_rtl(monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = rtl_build.build()
    # The simulator imports this file as the cocotb test module, by its bare name: "tests" is
    # not a package here (and an installed one may shadow it).
    here = os.path.dirname(os.path.abspath(__file__))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    n, failed, xml = rtl_build.run("rtl_driver_plans", {"SW_RTL_SEED": str(SEED)}, model_dir,
                                   "sw_driver_plans", module="test_sw_rtl")  # fmt: skip
    assert n >= 1, "the cocotb test did not run"
    assert failed == 0, rtl_build.failure_text(xml)


@cocotb.test()
async def rtl_driver_plans(dut: object) -> None:
    """Inside the simulator: a conv in output-channel passes, two random networks, two frames
    each, then a corrupted program."""
    import dataclasses
    import logging

    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles

    from sim.reference import run_network
    from sim.reference.randnet import conv_chain, random_network
    from sw.accel_config import DEFAULT_CONFIG
    from sw.backends.emu import EmuBackend
    from sw.backends.rtl import RtlTransport, run_plan_on_dut
    from sw.compiler import compile_model
    from sw.driver import AcceleratorError

    cocotb.start_soon(Clock(dut.aclk, 5, unit="ns").start())
    dut.aresetn.value = 0
    await ClockCycles(dut.aclk, 5)
    dut.aresetn.value = 1
    await ClockCycles(dut.aclk, 2)
    logging.getLogger("cocotb.pow2det_accel").setLevel(logging.WARNING)
    transport = RtlTransport(dut, ram_size=1 << 22)
    rng = np.random.default_rng(SEED)
    # A 3x3 128 -> 128 conv: 73,728 bytes of weights over the 64 KiB buffer, two
    # output-channel passes writing side by side into one buffer.
    big = conv_chain(rng, [{"out_channels": 128, "kernel": 1}, {"out_channels": 128, "kernel": 3},
                           {"out_channels": 16, "kernel": 1}], shape=(3, 8, 6))  # fmt: skip
    plan = compile_model(big, DEFAULT_CONFIG)
    assert [li.name for li in plan.layers][1:4] == ["c1.oc0-64", "c1.oc64-128", "c1"]
    img = rng.integers(0, 256, (3, 8, 6)).astype(np.uint8)
    (out,) = await run_plan_on_dut(dut, plan, [img], transport=transport)
    assert np.array_equal(out["c2"], run_network(big, img)["c2"]), "RTL != reference (passes)"
    for size, dw, dense in [((16, 12), "int", "pow2"), ((13, 18), "pow2", "pow2x2")]:
        art = random_network(rng, *size, act_bits=int(rng.choice([4, 8])), depthwise_format=dw,
                             dense_format=dense)  # fmt: skip
        plan = compile_model(art, DEFAULT_CONFIG)
        images = [rng.integers(0, 256, (3, *size)).astype(np.uint8) for _ in range(2)]
        got = await run_plan_on_dut(dut, plan, images, transport=transport)
        emu = EmuBackend(plan)
        for img, out in zip(images, got, strict=True):
            want = run_network(art, img)
            by_emu = emu.run(img)
            for name in want:
                assert np.array_equal(out[name], want[name]), f"RTL != reference at {name}"
                assert np.array_equal(by_emu[name], want[name]), f"emu != reference at {name}"
    # A descriptor the build refuses (strip wider than max_strip): the driver's one-line error.
    bad = dataclasses.replace(plan.descriptors[2], strip_width=DEFAULT_CONFIG.max_strip + 1)
    plan.descriptors[2] = bad
    prog = plan.regions["program"].offset
    plan.memory[prog + 128 : prog + 192] = np.frombuffer(bad.pack(), np.uint8)
    try:
        await run_plan_on_dut(dut, plan, images[:1], transport=transport)
    except AcceleratorError as e:
        assert "descriptor 2" in str(e) and "strip too wide" in str(e), str(e)
    else:
        raise AssertionError("the RTL accepted a strip wider than max_strip")
