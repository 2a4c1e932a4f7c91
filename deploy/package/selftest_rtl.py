"""``shiftdet selftest --backend rtl``: the self-test's cases on the Verilator model of hw/.

Development side only (the RTL, cocotb and Verilator are not on a board). ``sw/selftest.py``
runs this file as a script; it builds the model for the configuration (``sim/rtl_build.py``,
shared with the RTL tests), and the cocotb test below, inside the simulator, runs every case
through the board's driver over the ``rtl`` transport (``sw/backends/rtl.py``) and records
the ID/CONFIG registers, each case's output codes and PERF counters in ``--out``. The parent
then compares those with the emulator and the golden digests like any other backend's.

    .venv/bin/python deploy/package/selftest_rtl.py --out DIR [--config JSON] [--model NPZ]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:  # run as a script
    sys.path.insert(0, str(REPO))

import cocotb  # noqa: E402
import numpy as np  # noqa: E402


@cocotb.test()
async def rtl_selftest(dut: object) -> None:
    """Inside the simulator: the registers, then every case, one frame each."""
    import logging

    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles

    from sw import selftest
    from sw.accel_config import AccelConfig
    from sw.backends.rtl import RtlTransport
    from sw.compiler import compile_model
    from sw.contract.registers import REG_CONFIG, REG_CONFIG2, REG_ID
    from sw.driver import AcceleratorError, Driver

    out = Path(os.environ["SELFTEST_OUT"])
    cfg = AccelConfig(**json.loads(os.environ["SELFTEST_CONFIG"])).check()
    model = os.environ.get("SELFTEST_MODEL") or None
    cocotb.start_soon(Clock(dut.aclk, 5, unit="ns").start())
    dut.aresetn.value = 0
    await ClockCycles(dut.aclk, 5)
    dut.aresetn.value = 1
    await ClockCycles(dut.aclk, 2)
    logging.getLogger("cocotb.pow2det_accel").setLevel(logging.WARNING)
    cases = selftest.layer_cases()
    frame = selftest.find_frame_artifact(model)
    if frame is not None and frame.is_file():
        cases.append(selftest.frame_case(frame))
    plans, images = [], []
    for case in cases:
        art, image = case.build()
        plans.append(compile_model(art, cfg, base=0))
        images.append(image)
    size = max(p.size for p in plans)
    t = RtlTransport(dut, ram_size=1 << max(20, (size - 1).bit_length()))
    regs = [await t.read_reg(r) for r in (REG_ID, REG_CONFIG, REG_CONFIG2)]
    index = {"registers": regs, "cases": {}}
    for i, (plan, image) in enumerate(zip(plans, images, strict=True)):
        entry: dict[str, object] = {"file": f"case{i}.npz"}
        index["cases"][plan.model_name] = entry
        try:
            driver = Driver(t, plan, timeout_s=0.05)
            got = await driver.run_frame(image)
        except AcceleratorError as e:
            entry["error"] = str(e)
            continue
        np.savez(out / entry["file"], **got)
        entry["perf_total"] = int(driver.stats.perf.get("total", 0))
        entry["pl_runs"] = driver.stats.pl_runs
        (out / "index.json").write_text(json.dumps(index, indent=1))  # what got done so far
    (out / "index.json").write_text(json.dumps(index, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", default="{}", help="AccelConfig fields as a JSON object")
    ap.add_argument("--model", default="", help="the frame case's artifact")
    args = ap.parse_args(argv)
    from sim import rtl_build
    from sw.accel_config import AccelConfig

    cfg = AccelConfig(**json.loads(args.config)).check()
    args.out.mkdir(parents=True, exist_ok=True)
    bdir = rtl_build.build(cfg)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    env = {"SELFTEST_OUT": str(args.out.resolve()), "SELFTEST_CONFIG": json.dumps(cfg.as_dict()),
           "SELFTEST_MODEL": args.model}  # fmt: skip
    n, failed, xml = rtl_build.run("rtl_selftest", env, bdir, "selftest", module="selftest_rtl")
    if n < 1 or failed:
        print(rtl_build.failure_text(xml) or "the cocotb test did not run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
