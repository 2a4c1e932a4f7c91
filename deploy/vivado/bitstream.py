"""``make bitstream``: the scripts, then the Verilog, then Vivado in batch mode.

The scripts come first because they are cheap and need no Vivado: a machine without Vivado
still gets them, and the one line it prints says where they are. The Verilog (``hw.gen
--board``) comes next, only where Vivado exists (it takes a while and its result is only for
Vivado), then ``vivado -mode batch -source build.tcl``; build.tcl itself fails the build on a
negative WNS or WHS.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from deploy.boards import Board
from deploy.vivado import tcl
from sw.contract.ip import IP_NAME, VIVADO_VERSIONS

# What a finished build leaves in build/deploy/<board>/ (build.tcl writes them).
OUTPUTS = ("pow2det.bit", "pow2det.hwh", "utilization.rpt", "timing_summary.rpt")


def rel(p: Path) -> str:
    """``p`` relative to the working directory where it is below it (shorter messages)."""
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def versions_text() -> str:
    return " or ".join(VIVADO_VERSIONS)


def no_vivado_line(board: Board, build_tcl: Path) -> str:
    return (f"bitstream: no `vivado` on PATH; the scripts for Vivado {versions_text()} are in "
            f"{rel(build_tcl.parent)}/ (run `make bitstream BOARD={board.name}` where Vivado "
            "is installed)")  # fmt: skip


def verilog_path(board: Board, build_tcl: Path) -> Path:
    """Where build.tcl reads the Verilog: ``<board dir>/verilog/pow2det_accel.v``."""
    return build_tcl.parent.parent / "verilog" / f"{IP_NAME}.v"


def generate_verilog(board: Board, out: Path) -> int:
    """``python -m hw.gen --board NAME -o out`` in a child (the elaboration's memory and its
    Yosys stay out of this process)."""
    cmd = [sys.executable, "-m", "hw.gen", "--board", board.name, "-o", str(out)]
    print(f"bitstream: python {' '.join(cmd[1:])}", flush=True)
    return subprocess.run(cmd, cwd=tcl.REPO).returncode


def build(board: Board, root: Path = tcl.BUILD_ROOT, verilog: Path | None = None,
          vivado: str = "vivado") -> int:  # fmt: skip
    """The whole build; returns the exit status. ``verilog``: use this file instead of
    elaborating (it must be the board's configuration; package_ip.tcl checks the port widths).
    """
    paths = tcl.write_scripts(board, root)
    build_tcl = next(p for p in paths if p.name == "build.tcl")
    exe = shutil.which(vivado)
    if exe is None:
        print(no_vivado_line(board, build_tcl), file=sys.stderr)
        return 2
    out = build_tcl.parent.parent
    v_out = verilog_path(board, build_tcl)
    v_out.parent.mkdir(parents=True, exist_ok=True)
    if verilog is not None:
        shutil.copyfile(verilog, v_out)
    else:
        rc = generate_verilog(board, v_out)
        if rc != 0:
            print(f"bitstream: the Verilog for {board.name} failed (exit {rc})", file=sys.stderr)
            return rc
    # Stale results must not pass for this run's.
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    log = out / "vivado.log"
    cmd = [exe, "-mode", "batch", "-nojournal", "-notrace", "-log", str(log),
           "-source", str(build_tcl)]  # fmt: skip
    print(f"bitstream: {' '.join(cmd)}", flush=True)
    rc = subprocess.run(cmd, cwd=out).returncode
    if rc != 0:
        print(f"bitstream: vivado failed (exit {rc}); see {rel(log)}", file=sys.stderr)
        return rc
    missing = [n for n in OUTPUTS if not (out / n).is_file()]
    if missing:
        print(f"bitstream: vivado finished but {', '.join(missing)} missing in {rel(out)}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"bitstream: wrote {', '.join(rel(out / n) for n in OUTPUTS)}")
    return 0
