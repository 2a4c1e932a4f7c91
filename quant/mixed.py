"""Hardware-aware mixed precision: per-conv weight formats (and activation bits) for an fps budget.

    python -m quant.mixed --model yolo-fastest-xl-voc --fraction 0.9 --out plans/xl-w4a8.json
    python -m quant.mixed --model yolo-fastest-xl-voc --fps 30 --act-avg-bits 4.5 --out P.json
    python -m quant.mixed --model yolo-fastest-voc --pareto --out docs/img/mixed_pareto.png

Weights: each conv picks one of its candidate formats (dense: pow2 3/4-bit, pow2x2 8-bit, which
the dense engine runs in two passes; depthwise: pow2 3/4-bit, int8). Its cost is that layer's
accelerator cycles (sw.contract.cycles.layer_cycles on the descriptor of the all-pow2-4 model
at --size with the format changed, the Ultra96-V2 build and its board memory model, as
``make bench-boards``) plus ``--byte-cost`` cycles per weight byte; its loss is the HAWQ-v2
sensitivity tr(H)/n * ||Q(w) - w||^2 (quant.hessian: Hutchinson on a few unlabeled images in
float mode). A multiple-choice knapsack (quant.knapsack: the hull greedy, and a DP on costs
rounded up to 1/20000 of the budget; the better of the two) minimises the summed loss
with the total cycles within the budget (--fps, or --fraction of the all-pow2-4 fps; the adds'
cycles are fixed). The plan's predicted fps counts cycles only, so it is never below the target.

Activations (--act-avg-bits B): activations are one byte each in DDR whatever their bits, so
they cost no cycles; a second knapsack gives every activation group 4 or 8 bits with cost
bits x elements (at --size) and budget B x all elements, loss the measured head-output error of
quantizing that group to 4 bits minus at 8 bits (quant.sensitivity.activation_sensitivity on
the weight-quantized plan, ranges calibrated per bits). Head outputs stay 8-bit.

The Hessian traces are cached (``--traces``, default plans/<model>.traces.json) by their
settings, so later plans and the --pareto sweep reuse them.

--pareto: weights plans for --points budgets evenly spaced in fps (and 0.9 of all-pow2-4) and
the uniform choices, each *measured*: calibration-only quantization (MSE-optimal weight scales
of its formats; activation ranges calibrated once, in float mode, on --calib images, as quant.ptq
before its reconstruction), exported and run by the exact integer mode on the VOC sample
(--eval-images N: the first N). Results go to <out>.json as each point finishes, so a rerun of
the same command resumes; mAP and the loss proxy against fps are drawn to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.paths import REPO_ROOT, data_dir
from quant import knapsack
from quant.cli import add_model_args, model_source
from quant.data import CALIB_SET, letterbox_batch, unlabeled_images
from quant.plan import ALLOWED, FORMAT, VERSION, layer_kinds
from quant.plan import write as write_plan
from quant.zoo import ModelSource, build, load_darknet, source

DENSE_OPTIONS = (("pow2", 3), ("pow2", 4), ("pow2x2", 8))
DW_OPTIONS = (("pow2", 3), ("pow2", 4), ("int", 8))
BASE = {"dense": ("pow2", 4), "depthwise": ("pow2", 4)}
DDR_EFF = 0.8  # sustained share of the DDR peak, as bench/accelerator.py and bench/boards.py
BOARD = "ultra96v2"
DP_UNITS = 20000  # cost grid of the DP (quant.knapsack.dp_scaled) next to the hull greedy


@dataclass
class LayerCost:
    name: str
    kind: str  # dense / depthwise / add
    cycles: dict[tuple[str, int], int]  # per candidate format (adds: {("-", 0): cycles})
    weight_bytes: dict[tuple[str, int], int]
    elements: int  # output elements at the plan's size


@dataclass
class CostModel:
    layers: dict[str, LayerCost]
    clock_hz: float
    board: str

    def cycles(self, formats: dict[str, tuple[str, int]]) -> int:
        tot = 0
        for n, lc in self.layers.items():
            tot += lc.cycles[formats[n]] if lc.kind != "add" else next(iter(lc.cycles.values()))
        return tot

    def uniform(self, dense: tuple[str, int], dw: tuple[str, int]) -> dict[str, tuple[str, int]]:
        return {n: dense if lc.kind == "dense" else dw for n, lc in self.layers.items()
                if lc.kind != "add"}  # fmt: skip


def board_memory(board: str = BOARD) -> tuple[Any, Any]:
    """(AccelConfig, MemoryModel) of a board's build, as bench/boards.py's memory_model."""
    import sys

    # deploy/ is not an installed package: it is imported from the checkout.
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from deploy.boards import load_all
    from sw.contract.cycles import MemoryModel

    b = load_all()[board]
    cfg = b.accel
    port = min(1.0, b.hp_width / cfg.data_width)
    mem = MemoryModel(port, port, b.ddr_gbps * 1e9 * DDR_EFF / (cfg.clock_mhz * 1e6) / cfg.lanes)
    return cfg, mem


def cost_model(model: str | ModelSource, size: int = 512, board: str = BOARD) -> CostModel:
    """Per-layer cycles of every candidate format: the all-pow2-4 model (layer shapes of the cfg,
    random weights) through bench's descriptor path, then weight_format/bits varied per layer."""
    from sim.darknet_net import accelerator_layers, random_artifact_from_cfg
    from sw.compiler import layer_limit, weight_block_bytes
    from sw.contract.codes import weight_terms
    from sw.contract.cycles import layer_cycles
    from sw.descriptors import WEIGHT_FORMAT_CODES

    cfg, mem = board_memory(board)
    src = model if isinstance(model, ModelSource) else source(model)
    art = random_artifact_from_cfg(str(src.cfg), size, seed=1, dense_bits=4,
                                   dw_format="pow2")  # fmt: skip
    shapes = art.shapes()
    layers: dict[str, LayerCost] = {}
    for lname, desc, op in accelerator_layers(art, cfg):
        if desc is None:
            continue
        idx = int(lname[1:])
        elems = int(np.prod(shapes[lname]))
        if op == "add":
            layers[f"add{idx}"] = LayerCost(f"add{idx}", "add",
                                            {("-", 0): layer_cycles(desc, cfg, mem).total}, {},
                                            elems)  # fmt: skip
            continue
        kind = "dense" if op == "dense" else "depthwise"
        cyc, wb = {}, {}
        cin, cout, k = desc["in_channels"], desc["out_channels"], desc["kernel"]
        for fmt, bits in DENSE_OPTIONS if kind == "dense" else DW_OPTIONS:
            if (fmt, bits) not in ALLOWED[kind]:
                continue
            terms = weight_terms(fmt)
            if layer_limit(kind, cin, cout, k, desc["stride"], desc["strip_width"], cfg, terms):
                continue  # e.g. pow2x2 weights over the weight buffer
            d2 = dict(desc, weight_format=WEIGHT_FORMAT_CODES[fmt], weight_bits=bits)
            cyc[(fmt, bits)] = layer_cycles(d2, cfg, mem).total
            wb[(fmt, bits)] = weight_block_bytes(kind, cin, cout, k, bits, cfg)
        layers[f"conv{idx}"] = LayerCost(f"conv{idx}", kind, cyc, wb, elems)
    return CostModel(layers, cfg.clock_mhz * 1e6, board)


def traces_for(args: argparse.Namespace) -> dict[str, float]:
    """Hutchinson traces of every conv, from the cache when its settings match."""
    from quant.hessian import conv_traces

    model = args.model if args.source.builtin else args.source.describe()
    key = dict(model=model, images=args.hess_images, size=args.hess_size,
               samples=args.hess_samples, seed=args.seed, data=CALIB_SET)  # fmt: skip
    default = REPO_ROOT / "plans" / f"{args.model}.traces.json"
    if not args.source.builtin:  # a user's model: its traces go beside its plan
        default = args.out.with_suffix(".traces.json")
    path = args.traces or default
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("settings") == key:
            return cached["traces"]
    _, qdet = build(args.source, 4, "pow2")
    paths = unlabeled_images()
    order = np.random.default_rng(args.seed).permutation(len(paths))
    x = letterbox_batch([paths[i] for i in order[: args.hess_images]], args.hess_size)
    t0 = time.perf_counter()
    tr = conv_traces(qdet, x, args.hess_samples, args.seed, progress=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": key, "seconds": round(time.perf_counter() - t0, 1),
                                "traces": tr}, indent=1) + "\n")  # fmt: skip
    return tr


def weight_losses(
    args: argparse.Namespace, cm: CostModel
) -> dict[str, dict[tuple[str, int], float]]:
    from quant.hessian import format_sensitivity

    tr = traces_for(args)
    net = load_darknet(args.source)
    from quant.model import QuantDetector

    qdet = QuantDetector(net)
    fmts = {n: list(lc.cycles) for n, lc in cm.layers.items() if lc.kind != "add"}
    return format_sensitivity(qdet, tr, fmts)


def solve_weights(
    cm: CostModel, losses: dict[str, dict[tuple[str, int], float]], target_cycles: float,
    byte_cost: float,
) -> tuple[dict[str, tuple[str, int]], knapsack.Solution]:  # fmt: skip
    convs = [n for n, lc in cm.layers.items() if lc.kind != "add"]
    fixed = sum(next(iter(lc.cycles.values())) for lc in cm.layers.values() if lc.kind == "add")
    opts = [list(cm.layers[n].cycles) for n in convs]
    groups = [
        [(cm.layers[n].cycles[f] + byte_cost * cm.layers[n].weight_bytes[f], losses[n][f])
         for f in o]
        for n, o in zip(convs, opts, strict=True)
    ]  # fmt: skip
    sol = knapsack.greedy(groups, target_cycles - fixed)
    if sol is None:
        cheapest = fixed + sum(min(g)[0] for g in groups)
        raise SystemExit(f"budget of {target_cycles:,.0f} cycles is below the cheapest plan "
                         f"({cheapest:,.0f} cycles, {cm.clock_hz / cheapest:.1f} fps)")  # fmt: skip
    sol.solver = "greedy"
    # The greedy can leave up to one layer's upgrade of budget unused (a large layer's pow2x2
    # that did not fit); the DP on costs rounded up to 1/DP_UNITS of the budget (always
    # feasible) often fills it. Keep the better; the LP bound of the greedy bounds both.
    d = knapsack.dp_scaled(groups, target_cycles - fixed, DP_UNITS)
    if d is not None and d.loss < sol.loss - 1e-12:
        d.lp_loss, d.gap, d.solver = sol.lp_loss, sol.gap, "dp"
        sol = d
    return {n: o[k] for n, o, k in zip(convs, opts, sol.choice, strict=True)}, sol


def weights_plan(model: str, formats: dict[str, tuple[str, int]]) -> dict:
    """A minimal plan (quant.plan) of per-conv weight formats, activations left to the caller."""
    layers = {n: {"weights": f, "bits": b} for n, (f, b) in formats.items()}
    return {"format": FORMAT, "version": VERSION, "model": model, "layers": layers}


def solve_acts(
    args: argparse.Namespace, cm: CostModel, formats: dict[str, tuple[str, int]]
) -> tuple[dict[str, int], dict[str, float]]:
    """act bits per producer (conv/add) and the measured 4-bit losses per group."""
    from quant.calibrate import calibrate_activations
    from quant.sensitivity import activation_sensitivity

    _, qdet = build(args.source, 4, "pow2", 8, plan=weights_plan(args.model, formats))
    paths = unlabeled_images()
    order = np.random.default_rng(args.seed + 1).permutation(len(paths))
    calib = list(letterbox_batch([paths[i] for i in order[:16]], args.hess_size).split(8))
    x = letterbox_batch(paths[-args.act_images :], args.hess_size)
    heads = {qdet.by_name[h].group for h in qdet.heads}
    err: dict[int, dict[int, float]] = {}
    for bits in (8, 4):
        for g, q in enumerate(qdet.aq):
            q.bits = 8 if g in heads else bits
        calibrate_activations(qdet, calib, quantized_weights=True)
        _, per = activation_sensitivity(qdet, x)
        for e in per:
            err.setdefault(e.group, {})[bits] = e.error
    groups, gids = [], []
    total = 0
    for g in range(len(qdet.aq)):
        members = [n.name for n in qdet.group_members(g)]
        elems = sum(cm.layers[m].elements for m in members if m in cm.layers)
        total += elems
        gids.append(g)
        if g in heads:
            groups.append([(8.0 * elems, 0.0)])
        else:
            d4 = max(err[g][4] - err[g][8], 0.0)
            groups.append([(4.0 * elems, d4), (8.0 * elems, 0.0)])
    sol = knapsack.greedy(groups, args.act_avg_bits * total)
    if sol is None:
        raise SystemExit(f"--act-avg-bits {args.act_avg_bits}: below what the 8-bit heads need")
    bits_of_group = {g: (8 if len(grp) == 1 or k == 1 else 4)
                     for g, grp, k in zip(gids, groups, sol.choice, strict=True)}  # fmt: skip
    act = {n.name: bits_of_group[n.group] for n in qdet.nodes if n.op in ("conv", "add")}
    avg = sum(c for grp, k in zip(groups, sol.choice, strict=True) for c in [grp[k][0]]) / total
    n4 = sum(1 for b in bits_of_group.values() if b == 4)
    print(f"activations: {n4} of {len(bits_of_group)} groups at 4 bits, average {avg:.3f} "
          f"bits/element")  # fmt: skip
    info = {"act_avg_bits": round(avg, 4), "act_groups_4bit": n4,
            "act_groups": len(bits_of_group), "act_loss_proxy": sol.loss,
            "act_loss_proxy_all4": sum(grp[0][1] for grp in groups)}  # fmt: skip
    return act, info


def make_plan(args: argparse.Namespace) -> dict:
    cm = cost_model(args.source, args.size)
    base = cm.cycles(cm.uniform(BASE["dense"], BASE["depthwise"]))
    base_fps = cm.clock_hz / base
    target = cm.clock_hz / args.fps if args.fps else base / args.fraction
    losses = weight_losses(args, cm)
    formats, sol = solve_weights(cm, losses, target, args.byte_cost)
    cyc = cm.cycles(formats)
    kinds = layer_kinds(load_darknet(args.source).cfg)
    layers: dict[str, dict] = {}
    acts: dict[str, int] = {}
    act_info: dict = {}
    if args.act_avg_bits is not None:
        acts, act_info = solve_acts(args, cm, formats)
    for n, kind in kinds.items():
        spec: dict = {}
        if kind != "add":
            spec = {"weights": formats[n][0], "bits": formats[n][1]}
        spec["act_bits"] = acts.get(n, 8)
        layers[n] = spec
    budget = {"fps": args.fps} if args.fps else {"fraction_of_w4": args.fraction}
    budget.update(board=cm.board, clock_mhz=cm.clock_hz / 1e6, byte_cost=args.byte_cost)
    if args.act_avg_bits is not None:
        budget["act_avg_bits"] = args.act_avg_bits
        budget["act_cost"] = (
            "bits x output elements at size; no cycles: activations are one byte each in DDR "
            "whatever their bits (sw.contract.cycles), so the fps is the weights' plan's"
        )
    plan = {
        "format": FORMAT, "version": VERSION, "model": args.model, "size": args.size,
        "budget": budget, "layers": layers,
        "predicted": {
            "fps_200mhz": round(cm.clock_hz / cyc, 2), "fps_fraction_of_w4": round(base / cyc, 4),
            "cycles": cyc, "w4_cycles": base, "w4_fps_200mhz": round(base_fps, 2),
            "loss_proxy": sol.loss, "loss_proxy_lp_bound": sol.lp_loss, "solver": sol.solver,
            "loss_proxy_w4": sum(losses[n][BASE[cm.layers[n].kind]] for n in losses),
        },
    }  # fmt: skip
    plan["predicted"].update(act_info)
    return plan


def summary(plan: dict) -> str:
    from collections import Counter

    c = Counter(f"{s['weights']}{s['bits']}" for s in plan["layers"].values() if "weights" in s)
    a = Counter(s["act_bits"] for s in plan["layers"].values())
    p = plan["predicted"]
    frac = 100 * p["fps_fraction_of_w4"]
    return (
        f"{plan['model']}: {p['fps_200mhz']} fps at 200 MHz ({frac:.1f}"
        f" % of all-pow2-4 {p['w4_fps_200mhz']} fps), weights {dict(c)}, act bits "
        f"{dict(a)}, loss proxy {p['loss_proxy']:.4g} (all pow2-4 {p['loss_proxy_w4']:.4g})"
    )


UNIFORM = (  # (dense, depthwise, label, marker) of the uniform choices on the Pareto plot
    (("pow2", 4), ("pow2", 4), "all pow2-4", "o"),
    (("pow2", 3), ("pow2", 3), "all pow2-3", "v"),
    (("pow2", 4), ("int", 8), "pow2-4, dw int8", "D"),
    (("pow2x2", 8), ("pow2", 4), "pow2x2, dw pow2-4", "^"),
    (("pow2x2", 8), ("int", 8), "pow2x2, dw int8", "s"),
)


def pareto_points(args: argparse.Namespace, cm: CostModel, losses: dict) -> list[dict]:
    """The points of the sweep: knapsack plans at --points budgets spread evenly in fps between
    the slowest uniform choice and all-pow2-4 (and 0.9 of all-pow2-4, the committed plans'
    budget), then the uniform choices."""
    base = cm.cycles(cm.uniform(BASE["dense"], BASE["depthwise"]))
    slow = cm.cycles(cm.uniform(("pow2x2", 8), ("int", 8)))
    # the fastest budget 0.5 % under all-pow2-4: the knapsack's costs add --byte-cost per byte
    fps = np.linspace(cm.clock_hz / slow, 0.995 * cm.clock_hz / base, args.points + 1)[1:]
    fracs = sorted({round(float(base * f / cm.clock_hz), 4) for f in fps} | {0.9})
    pts = []
    for frac in fracs:
        formats, sol = solve_weights(cm, losses, base / frac, args.byte_cost)
        pts.append({"key": f"mixed@{frac:.4f}", "kind": "mixed", "label": f"knapsack {frac:.1%}",
                    "fraction_of_w4": frac, "formats": formats,
                    "loss_proxy": sol.loss})  # fmt: skip
    for dense, dw, label, _ in UNIFORM:
        f = cm.uniform(dense, dw)
        if any(f[n] not in cm.layers[n].cycles for n in f):
            continue  # a format some layer cannot take (e.g. pow2x2 over the weight buffer)
        pts.append({"key": label, "kind": "uniform", "label": label, "formats": f,
                    "loss_proxy": sum(losses[n][f[n]] for n in f)})  # fmt: skip
    for p in pts:
        p["cycles"] = cm.cycles(p["formats"])
        p["fps"] = round(cm.clock_hz / p["cycles"], 3)
    return pts


def pareto_eval(args: argparse.Namespace, cache: dict, p: dict) -> dict:
    """Measured VOC-sample mAP of one point: calibration-only quantization (MSE-optimal weight
    scales of the point's formats, the shared activation ranges), exported and run by the exact
    integer mode (quant.integer), as quant.ptq --eval measures without the reconstruction."""
    from models.detect import artifact_detect_fn
    from models.evaluate import evaluate_voc
    from quant.export import to_artifact
    from quant.integer import integer_runner

    t0 = time.perf_counter()
    _, qdet = build(args.source, 4, "pow2", 8, plan=weights_plan(args.model, p["formats"]))
    set_act_ranges(qdet, cache["act_ranges"])
    art = to_artifact(qdet, args.size, name="pareto", classes=args.class_names)
    detect = artifact_detect_fn(art, runner=integer_runner())
    r = evaluate_voc(detect, data_dir() / "voc2012-sample", limit=args.eval_images,
                     progress=False, with_curves=False)  # fmt: skip
    return {"map": round(float(r["map_all"]), 5), "map_11pt": round(float(r["map_11pt"]), 5),
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def act_ranges(qdet) -> list[list[float]]:
    return [[float(q.lo.detach()), float(q.hi.detach())] for q in qdet.aq]


def set_act_ranges(qdet, ranges: list[list[float]]) -> None:
    if len(ranges) != len(qdet.aq):
        raise ValueError(f"{len(ranges)} cached activation ranges for {len(qdet.aq)} groups")
    with torch.no_grad():
        for q, (lo, hi) in zip(qdet.aq, ranges, strict=True):
            q.lo.fill_(lo)
            q.hi.fill_(hi)
    qdet.invalidate()


def pareto(args: argparse.Namespace) -> None:
    """Measured mAP against predicted fps for a sweep of budgets (module docstring, --pareto);
    every point's result is cached in <out>.json as soon as it is measured, so a rerun of the
    same command resumes."""
    from tqdm import tqdm

    from quant.calibrate import calibrate_activations

    cache_path = args.out.with_suffix(".json")
    settings = dict(model=args.model, size=args.size, calib=args.calib, calib_size=args.calib_size,
                    eval_images=args.eval_images, seed=args.seed, byte_cost=args.byte_cost,
                    board=BOARD, data=CALIB_SET,
                    eval="data/voc2012-sample, exact integer mode (quant.integer), "
                    "conf 0.005, NMS 0.45")  # fmt: skip
    cache: dict = {}
    if cache_path.is_file():
        cache = json.loads(cache_path.read_text())
        if cache.get("settings") != settings:
            print(f"{cache_path}: other settings, starting over")
            cache = {}
    cache.setdefault("settings", settings)
    cache.setdefault("points", {})

    def save() -> None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(cache, indent=1) + "\n")
        tmp.replace(cache_path)

    cm = cost_model(args.source, args.size)
    losses = weight_losses(args, cm)
    pts = pareto_points(args, cm, losses)
    if "act_ranges" not in cache or "float_map" not in cache:
        from models.detect import float_detect_fn
        from models.evaluate import evaluate_voc
        from sw.postprocess import heads_of_darknet

        t0 = time.perf_counter()
        _, qdet = build(args.source, 4, "pow2", 8)
        paths = unlabeled_images()
        order = np.random.default_rng(args.seed).permutation(len(paths))
        x = letterbox_batch([paths[i] for i in order[: args.calib]], args.calib_size)
        print(f"calibrating activation ranges on {args.calib} images ({args.calib_size}x"
              f"{args.calib_size}), float mode: shared by every point")  # fmt: skip
        calibrate_activations(qdet, list(x.split(8)))
        cache["act_ranges"] = act_ranges(qdet)
        qdet.mode = "float"
        qdet.eval()
        detect = float_detect_fn(qdet, heads_of_darknet(qdet.cfg), args.size)
        r = evaluate_voc(detect, data_dir() / "voc2012-sample", limit=args.eval_images,
                         progress=False, with_curves=False)  # fmt: skip
        cache["float_map"] = round(float(r["map_all"]), 5)
        cache["setup_seconds"] = round(time.perf_counter() - t0, 1)
        save()
    t_start = time.perf_counter()
    bar = tqdm(pts, desc="pareto points", unit="pt")
    for p in bar:
        done = cache["points"].get(p["key"])
        if done is not None and done.get("cycles") == p["cycles"]:
            continue
        bar.set_postfix_str(p["label"])
        counts: dict[str, int] = {}
        for f, b in p["formats"].values():
            counts[f"{f}{b}"] = counts.get(f"{f}{b}", 0) + 1
        res = {k: p[k] for k in ("kind", "label", "cycles", "fps", "loss_proxy")}
        if "fraction_of_w4" in p:
            res["fraction_of_w4"] = p["fraction_of_w4"]
        res.update(formats=counts, **pareto_eval(args, cache, p))
        cache["points"][p["key"]] = res
        save()
        bar.write(f"{p['label']}: {p['fps']:.2f} fps, mAP {res['map']:.4f} ({res['seconds']} s)")
    if time.perf_counter() - t_start > 1:
        print(f"sweep: {time.perf_counter() - t_start:.0f} s")
    # the compute time of the whole figure: set-up plus every point's, however many runs
    cache["measured_seconds"] = round(
        cache["setup_seconds"]
        + sum(v["seconds"] for k, v in cache["points"].items() if k in {p["key"] for p in pts}),
        1,
    )
    cache.pop("sweep_seconds_last_run", None)
    save()
    keys = {p["key"] for p in pts}
    draw_pareto({k: v for k, v in cache["points"].items() if k in keys}, cache, args.out)


def draw_pareto(points: dict[str, dict], cache: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = cache["settings"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    mixed = sorted((p for p in points.values() if p["kind"] == "mixed"), key=lambda p: p["fps"])
    panels = ((ax, "map", "VOC-sample mAP (measured)"),
              (ax2, "loss_proxy", "loss proxy: sum of tr(H)/n ||Q(w)-w||^2"))  # fmt: skip
    for a, key, ylab in panels:
        a.plot([p["fps"] for p in mixed], [p[key] for p in mixed], "-", color="tab:blue",
               marker=".", label="mixed (knapsack on the cycle model)")  # fmt: skip
        for _, _, label, mk in UNIFORM:
            p = points.get(label)
            if p is not None:
                a.plot([p["fps"]], [p[key]], mk, ls="none", color="tab:orange", ms=7,
                       alpha=0.8, label=f"uniform: {label}")  # fmt: skip
        p = points.get("mixed@0.9000")
        if p is not None and key == "map":
            a.annotate("0.9 of all-pow2-4 fps\n(the committed W4A8 plan)", (p["fps"], p[key]),
                       textcoords="offset points", xytext=(-110, -40), fontsize=7,
                       color="tab:blue",
                       arrowprops=dict(arrowstyle="->", color="tab:blue"))  # fmt: skip
        a.set_xlabel(f"predicted fps at 200 MHz, {st['size']}x{st['size']} (Ultra96-V2 cycles)")
        a.set_ylabel(ylab)
        a.grid(alpha=0.3)
    ax.axhline(cache["float_map"], color="gray", ls="--", lw=1,
               label=f"float {cache['float_map']:.3f}")  # fmt: skip
    ax2.set_yscale("log")
    ax.legend(fontsize=7, loc="best")
    n = st["eval_images"] or 100
    fig.suptitle(f"{st['model']} W?A8 mixed precision, calibration only (no reconstruction/QAT): "
                 f"mAP on {n} VOC-sample images, integer mode", fontsize=10)  # fmt: skip
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out} and {out.with_suffix('.json')}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_model_args(ap, "yolo-fastest-xl-voc")
    b = ap.add_mutually_exclusive_group()
    b.add_argument("--fps", type=float, default=None, help="target fps at the board's clock")
    b.add_argument("--fraction", type=float, default=None,
                   help="target as a fraction of the all-pow2-4-bit fps")  # fmt: skip
    ap.add_argument("--act-avg-bits", type=float, default=None,
                    help="W4A4-class: average activation bits per element (e.g. 4.5)")  # fmt: skip
    ap.add_argument("--size", type=int, default=512, help="input size of the cycle model")
    ap.add_argument("--byte-cost", type=float, default=0.01, help="cycles per weight byte")
    ap.add_argument("--hess-images", type=int, default=8)
    ap.add_argument("--hess-size", type=int, default=256)
    ap.add_argument("--hess-samples", type=int, default=16)
    ap.add_argument("--act-images", type=int, default=4)
    ap.add_argument("--traces", type=Path, default=None, help="trace cache (JSON)")
    ap.add_argument("--pareto", action="store_true",
                    help="sweep budgets, measure each point's mAP, plot to --out")  # fmt: skip
    ap.add_argument("--points", type=int, default=9, help="--pareto: knapsack budgets")
    ap.add_argument("--calib", type=int, default=64, help="--pareto: calibration images")
    ap.add_argument("--calib-size", type=int, default=320, help="--pareto: their letterbox size")
    ap.add_argument("--eval-images", type=int, default=None,
                    help="--pareto: first N VOC-sample images (default all 100)")  # fmt: skip
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    model_source(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.pareto:
        pareto(args)
        return
    if args.fps is None and args.fraction is None:
        ap.error("one of --fps / --fraction (or --pareto)")
    t0 = time.perf_counter()
    plan = make_plan(args)
    plan["budget"]["command"] = "python -m quant.mixed " + " ".join(
        argv if argv is not None else __import__("sys").argv[1:]
    )
    write_plan(args.out, plan)
    print(summary(plan))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
