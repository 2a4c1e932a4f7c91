"""Per-board build figures (``make bench-boards``): yosys resources, logic depth and fps.

For every board of ``deploy/boards/*/board.toml`` it elaborates the board's AccelConfig to
Verilog (``hw.gen``), runs ``synth_xilinx`` with the board's family (``xc7`` for a Zynq-7000
PS, ``xcup`` for Zynq UltraScale+), counts LUT/FF/DSP/BRAM36 as ``make synth`` does
(``hw/synth.py``), measures the deepest register-to-register path in logic levels on the
flattened netlist (``hw.synth.logic_levels``: a LUT is a level, a whole carry chain one, MUXF
none) and computes fps of Yolo-Fastest(-XL) at 512x512 from the cycle model at the board's
clock with the board's memory. It writes ``bench/results/boards.json`` and
``bench/results/boards.png``, and prints a table.

Limits checked (the issue's): LUT <= 80 %, DSP and BRAM36 <= 90 % of the part, <= 8 levels.
A board whose config does not elaborate or synthesise gets an ``error`` entry (its fps, which
need only the cycle model, are still computed). Synthesis of one build takes minutes; the
builds run one after the other, and a build whose Verilog is unchanged since the last run is
not synthesised again (``build/boards/<board>/result.json``; ``--force`` redoes it).

Memory model per board (cycle model ``MemoryModel``, in lanes-byte beats per PL clock):

* each direction: ``min(1, hp_width / (8 * lanes))``: the HP port at the PL clock; a master
  wider than the port goes through SmartConnect at the port's width;
* reads + writes together: ``ddr_gbps`` x 80 % (as ``make bench-hw``) / clock / lanes bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tqdm import tqdm  # noqa: E402

from bench.accelerator import DDR_EFF, find_cfg  # noqa: E402
from deploy.boards import Board, load_all  # noqa: E402
from hw.cycle_model import MemoryModel, layer_cycles  # noqa: E402
from hw.synth import logic_levels, synth, yosys_cmd  # noqa: E402
from sim.darknet_net import accelerator_layers, random_artifact_from_cfg  # noqa: E402

FAMILY = {"zynq": "xc7", "zynqmp": "xcup"}
LIMITS = {"lut": 0.80, "dsp": 0.90, "bram36": 0.90}
MAX_LEVELS = 8
NETS = {"fps_xl_512": "yolo-fastest-xl-voc", "fps_yolo_fastest_512": "yolo-fastest-voc"}
BUILD = REPO / "build" / "boards"
# Bump when the synthesis script or the counting changes, so cached results are not reused.
METHOD_VERSION = 1


def memory_model(board: Board) -> MemoryModel:
    """The board's memory in beats per cycle (module docstring)."""
    cfg = board.accel
    port = min(1.0, board.hp_width / cfg.data_width)
    total = board.ddr_gbps * 1e9 * DDR_EFF / (cfg.clock_mhz * 1e6) / cfg.lanes
    return MemoryModel(port, port, total)


_ARTS: dict[str, object] = {}


def board_fps(board: Board) -> dict[str, object]:
    """Cycles and fps per frame of both detectors at 512x512 (random weights of the cfg's
    shapes, as ``make bench-hw``); layers no strip fits are listed under ``rejected``."""
    cfg, mem = board.accel, memory_model(board)
    out: dict[str, object] = {}
    for key, net in NETS.items():
        if net not in _ARTS:
            path = find_cfg(net)
            if path is None:
                raise SystemExit(f"no {net}.cfg: run `make data`")
            _ARTS[net] = random_artifact_from_cfg(str(path), 512, seed=1)
        layers = accelerator_layers(_ARTS[net], cfg)
        cycles = sum(layer_cycles(d, cfg, mem).total for _, d, _ in layers if d is not None)
        rejected = [n for n, d, op in layers if d and op != "add" and d["strip_width"] == 0]
        out[key] = cfg.clock_mhz * 1e6 / cycles
        out[key.replace("fps", "cycles")] = cycles
        if rejected:
            out[key.replace("fps", "rejected")] = rejected
    return out


def synth_board(board: Board, force: bool, bar: tqdm) -> dict[str, object]:
    """Verilog, yosys resources and logic levels of one board (cached by the Verilog's hash)."""
    from hw.gen import generate  # amaranth only here: fps need none of it

    d = BUILD / board.name
    d.mkdir(parents=True, exist_ok=True)
    family = FAMILY[board.ps]
    bar.set_postfix_str(f"{board.name}: elaborating")
    verilog = generate(board.accel, d / "pow2det_accel.v")
    digest = hashlib.sha256(verilog.read_bytes()).hexdigest()
    cache = d / "result.json"
    key = {"verilog_sha256": digest, "family": family, "method": METHOD_VERSION}
    if not force and cache.exists():
        old = json.loads(cache.read_text())
        if old.get("key") == key:
            return old["result"]
    bar.set_postfix_str(f"{board.name}: synth_xilinx -family {family} (minutes)")
    netlist = d / "netlist.json"
    res, seconds = synth(verilog, d / "yosys.log", family, netlist)
    bar.set_postfix_str(f"{board.name}: logic levels")
    levels = logic_levels(netlist)
    netlist.unlink()  # hundreds of MB; the paths worth keeping are in the result
    result = {**res, "yosys_seconds": round(seconds, 1), **levels, "verilog_sha256": digest}
    cache.write_text(json.dumps({"key": key, "result": result}, indent=1) + "\n")
    return result


def board_entry(board: Board, force: bool, synthesise: bool, bar: tqdm) -> dict[str, object]:
    cap = board.resources
    mem = memory_model(board)
    e: dict[str, object] = {
        "part": board.part, "ps": board.ps, "family": FAMILY[board.ps],
        "lanes": board.accel.lanes, "clock_mhz": board.pl_clock_mhz,
        "ddr_gbps": board.ddr_gbps, "capacity": cap,
        "memory_beats_per_cycle": {"read": mem.read_beats_per_cycle,
                                   "write": mem.write_beats_per_cycle,
                                   "read_plus_write": mem.total_beats_per_cycle},
        "lut": None, "ff": None, "dsp": None, "bram36": None, "lut_fraction": None,
        "dsp_fraction": None, "bram_fraction": None, "max_logic_levels": None,
        "fps_xl_512": None, "fps_yolo_fastest_512": None, "error": None,
    }  # fmt: skip
    errors = []
    try:
        e.update(board_fps(board))
    except Exception as exc:  # noqa: BLE001 - recorded per board, the other boards go on
        errors.append(f"cycle model: {type(exc).__name__}: {exc}")
    if synthesise:
        try:
            r = synth_board(board, force, bar)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - as above
            last = traceback.extract_tb(exc.__traceback__)[-1]
            where = f" ({Path(last.filename).name}:{last.lineno})"
            errors.append(f"build: {type(exc).__name__}: {str(exc).strip()[:400]}{where}")
        else:
            e.update({k: r[k] for k in ("lut", "lut_logic", "lut_ram", "ff", "carry", "dsp",
                                         "bram36", "ramb36", "ramb18", "yosys_seconds",
                                         "max_logic_levels", "paths")})  # fmt: skip
            e["lut_fraction"] = r["lut"] / cap["lut"]
            e["dsp_fraction"] = r["dsp"] / cap["dsp"]
            e["bram_fraction"] = r["bram36"] / cap["bram36"]
            e["fits"] = all(e[f"{k if k != 'bram36' else 'bram'}_fraction"] <= lim
                            for k, lim in LIMITS.items())  # fmt: skip
            e["levels_ok"] = r["max_logic_levels"] <= MAX_LEVELS
    e["error"] = "; ".join(errors) or None
    return e


def fmt(v: object, spec: str) -> str:
    width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 0)
    return "-".rjust(width) if v is None else format(v, spec)


def table(boards: dict[str, dict]) -> str:
    out = [f"{'board':10s} {'fam':4s} {'L':>3s} {'MHz':>4s} {'LUT':>7s} {'LUT%':>5s} "
           f"{'DSP':>5s} {'DSP%':>5s} {'BRAM':>6s} {'BR%':>5s} {'lvls':>4s} "
           f"{'XL fps':>6s} {'YF fps':>6s}  note"]  # fmt: skip
    for n, e in boards.items():
        pct = {k: fmt(e[f"{k}_fraction"] and 100 * e[f"{k}_fraction"], "5.1f")
               for k in ("lut", "dsp", "bram")}  # fmt: skip
        over = [f"{k.upper()} > {100 * lim:.0f} %" for k, lim in LIMITS.items()
                if e[f"{'bram' if k == 'bram36' else k}_fraction"] is not None
                and e[f"{'bram' if k == 'bram36' else k}_fraction"] > lim]  # fmt: skip
        if e["max_logic_levels"] is not None and e["max_logic_levels"] > MAX_LEVELS:
            over.append(f"levels > {MAX_LEVELS}")
        note = "" if e["lut"] is None else ", ".join(over) or "ok"
        out.append(
            f"{n:10s} {e['family']:4s} {e['lanes']:3d} {e['clock_mhz']:4.0f} "
            f"{fmt(e['lut'], '7.0f')} {pct['lut']:>5s} {fmt(e['dsp'], '5.0f')} "
            f"{pct['dsp']:>5s} {fmt(e['bram36'], '6.1f')} {pct['bram']:>5s} "
            f"{fmt(e['max_logic_levels'], '4d')} {fmt(e['fps_xl_512'], '6.1f')} "
            f"{fmt(e['fps_yolo_fastest_512'], '6.1f')}  {note}"
        )
        if e["error"]:
            out.append(f"{'':10s} error: {e['error'][:150]}")
        for p in e.get("paths", [])[:3]:
            out.append(f"{'':10s} {p['levels']:2d} levels: {p['start']} -> {p['end']}")
    return "\n".join(out)


def plot(boards: dict[str, dict], path: Path) -> None:
    """Fractions of the part per board, beside the 80 % (LUT) and 90 % (DSP, BRAM) limits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(boards)
    kinds = [("lut", "LUT", LIMITS["lut"]), ("dsp", "DSP", LIMITS["dsp"]),
             ("bram", "BRAM36", LIMITS["bram36"])]  # fmt: skip
    fig, ax = plt.subplots(figsize=(2.6 * len(names) + 2, 4.2))
    width = 0.26
    for j, (k, label, lim) in enumerate(kinds):
        xs = [i + (j - 1) * width for i in range(len(names))]
        vals = [boards[n][f"{k}_fraction"] or 0.0 for n in names]
        bars = ax.bar(xs, [100 * v for v in vals], width, label=label, color=f"C{j}")
        for b, n in zip(bars, names, strict=True):
            if boards[n][f"{k}_fraction"] is not None:
                ax.annotate(f"{100 * boards[n][f'{k}_fraction']:.0f}", (b.get_x() + width / 2,
                            b.get_height()), ha="center", va="bottom", fontsize=7)  # fmt: skip
        # Each limit drawn over its own bars only, so the two levels read unambiguously.
        for x in xs:
            ax.hlines(100 * lim, x - width / 2, x + width / 2, colors="k", linestyles="--")
    for i, n in enumerate(names):
        e = boards[n]
        if e["lut"] is None:
            ax.text(i, 5, "not built:\n" + (e["error"] or "")[:60].replace(": ", ":\n", 2),
                    ha="center", va="bottom", fontsize=6, wrap=True)  # fmt: skip
    labels = []
    for n in names:
        e = boards[n]
        lv = f"{e['max_logic_levels']} lvl" if e["max_logic_levels"] is not None else "- lvl"
        labels.append(f"{n}\n{e['family']}, L={e['lanes']}, {e['clock_mhz']:.0f} MHz\n{lv}, "
                      f"XL {fmt(e['fps_xl_512'], '.1f')} fps")  # fmt: skip
    ax.set_xticks(range(len(names)), labels, fontsize=8)
    ax.set_ylabel("% of the part (yosys synth_xilinx)")
    ax.set_ylim(0, 110)
    ax.set_title("pow2det_accel per board; dashed: limits (LUT 80 %, DSP/BRAM 90 %)", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def provenance() -> dict[str, object]:
    """The commit and the uncommitted RTL/contract files the Verilog was elaborated from."""

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout

    dirty = git("status", "--porcelain", "--", "hw", "sw/contract").splitlines()
    return {"commit": git("rev-parse", "HEAD").strip(), "uncommitted": [x[3:] for x in dirty]}


def yosys_version() -> str:
    try:
        return subprocess.run([*yosys_cmd(), "-V"], capture_output=True, text=True).stdout.strip()
    except (OSError, SystemExit):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--boards", nargs="*", help="board names (default: all)")
    ap.add_argument("--force", action="store_true", help="synthesise even if cached")
    ap.add_argument("--no-synth", action="store_true", help="fps only (no Verilog, no yosys)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "boards.json"))
    ap.add_argument("--png", default=str(REPO / "bench" / "results" / "boards.png"))
    args = ap.parse_args()
    all_boards = load_all()
    names = args.boards or list(all_boards)
    result: dict[str, dict] = {}
    bar = tqdm(names, desc="boards", unit="board")
    for n in bar:
        result[n] = board_entry(all_boards[n], args.force, not args.no_synth, bar)
    bar.close()
    doc = {
        "yosys": yosys_version(),
        "source": provenance(),
        "limits": {"lut_fraction": LIMITS["lut"], "dsp_fraction": LIMITS["dsp"],
                   "bram_fraction": LIMITS["bram36"], "max_logic_levels": MAX_LEVELS},
        "method": {
            "synth": "read_verilog; synth_xilinx -family <xc7|xcup> -top pow2det_accel; "
                     "stat -tech xilinx (counts as make synth: LUT includes LUT-RAM/SRL at "
                     "their LUT cost; bram36 = RAMB36 + RAMB18/2)",
            "logic_levels": "flattened mapped netlist, register/BRAM/DSP/port to same: LUT = "
                            "1, LUT-RAM/SRL read = 1, a whole carry chain = 1, MUXF7/8 and "
                            "INV = 0 (hw/synth.py docstring)",
            "fps": "cycle model (sw/contract/cycles.py), random weights of the darknet cfg "
                   "shapes at 512x512, board clock; memory: memory_beats_per_cycle",
        },
        "boards": result,
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    plot(result, Path(args.png))
    print(table(result))
    print(f"wrote {args.out} and {args.png}")


if __name__ == "__main__":
    main()
