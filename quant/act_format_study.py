"""Should activations be quantized symmetric-signed or asymmetric (with a zero point)?

ReLU outputs are never negative and leaky outputs only reach a tenth of the negative
pre-activation, so a signed format with zero at mid-scale spends about half its codes on values
that never occur. This study measures what that costs on the three VOC
detectors at 320x320 (plain resize, RGB in [0, 1]):

1. per layer: each conv layer's output (after its activation), computed by the float network, is
   quantized to b bits in both formats and its SQNR measured on evaluation images;
2. end to end: every conv output and every shortcut output is fake-quantized in the network
   (weights stay float) and the SQNR of the raw head outputs against float is measured, with the
   head conv's own output quantized too and, separately, left at accumulator precision.

Formats (per tensor, real = s * (q - z)):
* symmetric: q in [-2^(b-1), 2^(b-1) - 1], z = 0, s = alpha / (2^(b-1) - 1) for clip alpha;
* asymmetric: q in [0, 2^b - 1], integer z, clip [lo, hi] with lo <= 0 <= hi,
  s = (hi - lo) / (2^b - 1), z = round(-lo / s).

Clip ranges are chosen per layer and per bit width by minimising the quantization MSE over the
calibration images, from a 2^14-bin histogram of each layer's outputs. Both formats get the same
search: every free clip end is a fraction of the observed extreme on that side, tried on a
geometric grid (33 points, 1/256 .. 1) and refined linearly between the best point's neighbours
(17 points). The asymmetric format has two ends, searched by coordinate descent (hi, lo, hi, lo);
its lower end may also be 0. SQNRs are then measured exactly (no histogram) on evaluation images
disjoint from the calibration ones. Calibration and evaluation images come from the unlabeled
ImageNet sample, never from the VOC evaluation data.

Run: `python -m quant.act_format_study` (2-3 minutes on 2 CPU cores). Writes
bench/results/act_format.json and docs/img/act_format.png.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from models.darknet import ConvLayer, Darknet, ShortcutLayer
from models.paths import REPO_ROOT, data_dir

MODELS = {
    "yolo-fastest-xl-voc": "Yolo-Fastest-XL",
    "yolo-fastest-voc": "Yolo-Fastest",
    "mobilenetv2-yolov3-nano-voc": "MobileNetV2-YOLOv3-Nano",
}
FORMATS = ("symmetric", "asymmetric")
BITS = (4, 8)
HIST_BINS = 1 << 14
COARSE = np.exp2(np.linspace(-8.0, 0.0, 33))  # fractions of the observed extreme, 1/256 .. 1
REFINE_POINTS = 17
BATCH = 16

Hook = Callable[[nn.Module, tuple[Tensor, ...], Tensor], Tensor | None]


# --------------------------------------------------------------------------------------------
# quantizers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quantizer:
    """Uniform per-tensor quantizer: real = scale * (q - zero), q in [qmin, qmax]."""

    scale: float
    zero: int
    qmin: int
    qmax: int

    @property
    def range(self) -> tuple[float, float]:
        return (self.scale * (self.qmin - self.zero), self.scale * (self.qmax - self.zero))

    def __call__(self, x: Tensor) -> Tensor:
        q = torch.clamp(torch.round(x / self.scale) + self.zero, self.qmin, self.qmax)
        return (q - self.zero) * self.scale


_TINY = 1e-12  # keeps a dead (all-zero) layer's scale finite


def symmetric(alpha: float, bits: int) -> Quantizer:
    half = 1 << (bits - 1)
    return Quantizer(max(alpha, _TINY) / (half - 1), 0, -half, half - 1)


def asymmetric(lo: float, hi: float, bits: int) -> Quantizer:
    levels = (1 << bits) - 1
    scale = max(hi - lo, _TINY) / levels
    zero = int(min(max(round(-lo / scale), 0), levels))  # integer zero point keeps 0.0 exact
    return Quantizer(scale, zero, 0, levels)


# --------------------------------------------------------------------------------------------
# histogram statistics and clip search
# --------------------------------------------------------------------------------------------


@dataclass
class LayerStats:
    """Running min/max, then a histogram over [min, max], of one layer's outputs."""

    lo: float = math.inf
    hi: float = -math.inf
    counts: np.ndarray | None = None
    negatives: int = 0
    zeros: int = 0
    total: int = 0

    def centers(self) -> np.ndarray:
        edges = np.linspace(self.lo, self.hi, HIST_BINS + 1)
        return (edges[:-1] + edges[1:]) / 2

    def quantile(self, p: float) -> float:
        assert self.counts is not None
        cdf = np.cumsum(self.counts) / self.counts.sum()
        return float(self.centers()[min(np.searchsorted(cdf, p), HIST_BINS - 1)])


def _hist_mse(x: np.ndarray, n: np.ndarray, quants: Sequence[Quantizer]) -> np.ndarray:
    """Quantization MSE (up to a constant factor) of histogram (centers x, counts n) for each
    quantizer; bins are taken at their centers, which is enough to rank clip ranges."""
    s = np.array([q.scale for q in quants])[:, None]
    z = np.array([q.zero for q in quants])[:, None]
    qmin = np.array([q.qmin for q in quants])[:, None]
    qmax = np.array([q.qmax for q in quants])[:, None]
    q = np.clip(np.round(x[None, :] / s) + z, qmin, qmax)
    return (((q - z) * s - x[None, :]) ** 2 * n[None, :]).sum(axis=1)


def _search_1d(
    make: Callable[[float], Quantizer], x: np.ndarray, n: np.ndarray, with_zero: bool = False
) -> float:
    """Best fraction f in (0, 1] (or [0, 1]) for `make(f)`: geometric grid, then a linear
    refinement between the neighbours of the best grid point."""
    grid = np.concatenate([[0.0], COARSE]) if with_zero else COARSE
    best = int(np.argmin(_hist_mse(x, n, [make(float(f)) for f in grid])))
    left = grid[max(best - 1, 0)]
    right = grid[min(best + 1, len(grid) - 1)]
    fine = np.linspace(left, right, REFINE_POINTS)
    errors = _hist_mse(x, n, [make(float(f)) for f in fine])
    return float(fine[int(np.argmin(errors))])


def choose_quantizer(stats: LayerStats, fmt: str, bits: int) -> Quantizer:
    """MSE-optimal clip range for one layer, format and bit width (see module docstring)."""
    assert stats.counts is not None
    keep = stats.counts > 0  # empty bins add nothing; dropping them makes the search cheap
    x, n = stats.centers()[keep], stats.counts[keep].astype(np.float64)
    neg, pos = min(stats.lo, 0.0), max(stats.hi, 0.0)
    if fmt == "symmetric":
        amax = max(-neg, pos)
        f = _search_1d(lambda f: symmetric(f * amax, bits), x, n)
        return symmetric(f * amax, bits)
    f_lo, f_hi = 1.0, 1.0
    for _ in range(2):  # coordinate descent: both ends, twice
        f_hi = _search_1d(lambda f, lo=f_lo: asymmetric(lo * neg, f * pos, bits), x, n)
        f_lo = _search_1d(
            lambda f, hi=f_hi: asymmetric(f * neg, hi * pos, bits), x, n, with_zero=True
        )
    return asymmetric(f_lo * neg, f_hi * pos, bits)


# --------------------------------------------------------------------------------------------
# data and model plumbing
# --------------------------------------------------------------------------------------------


def load_images(paths: Sequence[Path], size: int) -> Tensor:
    """N x 3 x size x size, RGB in [0, 1], plain (aspect-distorting) bilinear resize."""
    out = np.empty((len(paths), 3, size, size), np.float32)
    for i, p in enumerate(paths):
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(p)
        rgb = cv2.cvtColor(
            cv2.resize(bgr, (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB
        )
        out[i] = rgb.transpose(2, 0, 1) / 255.0
    return torch.from_numpy(out)


def batches(x: Tensor) -> Iterator[Tensor]:
    yield from x.split(BATCH)


def quantized_layers(model: Darknet) -> list[tuple[int, nn.Module]]:
    """(darknet index, module) of every conv and shortcut layer: the outputs the hardware
    writes back and so the ones that get quantized."""
    return [(i, m) for i, m in enumerate(model.layers) if isinstance(m, ConvLayer | ShortcutLayer)]


class HookSet:
    """Forward hooks registered for the duration of a `with` block."""

    def __init__(self, pairs: Sequence[tuple[nn.Module, Hook]]) -> None:
        self.pairs = pairs
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> None:
        self.handles = [m.register_forward_hook(h) for m, h in self.pairs]

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()


def sqnr_db(signal: float, noise: float) -> float:
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise)


def _activation(model: Darknet, index: int) -> str:
    spec = model.cfg.layers[index]
    return str(getattr(spec, "activation", "linear"))


def _mean_db(group: list[dict[str, object]], fmt: str, bits: int) -> float:
    vals = [e["sqnr_db"][str(bits)][fmt] for e in group]  # type: ignore[index]
    return float(np.mean(vals)) if vals else math.nan


def _end_to_end(
    model: Darknet,
    layers: list[tuple[int, nn.Module]],
    quants: dict[tuple[int, str, int], Quantizer],
    fmt: str,
    bits: int,
    evals: Tensor,
    float_heads: list[list[Tensor]],
    progress: tqdm,
) -> dict[str, object]:
    """Head SQNR with every conv/shortcut output fake-quantized (weights float)."""
    heads = set(model.cfg.head_indices)
    pre_quant: list[Tensor] = []

    def fake_quant(i: int) -> Hook:
        def hook(_m: nn.Module, _in: tuple[Tensor, ...], out: Tensor) -> Tensor:
            if i in heads:
                pre_quant.append(out)  # the head at accumulator precision
            return quants[i, fmt, bits](out)

        return hook

    n = len(heads)
    sig, err_q, err_acc = np.zeros(n), np.zeros(n), np.zeros(n)
    with torch.no_grad(), HookSet([(m, fake_quant(i)) for i, m in layers]):
        for xb, ref in zip(batches(evals), float_heads, strict=True):
            pre_quant.clear()
            out = model(xb)
            for h, (r, q, a) in enumerate(zip(ref, out, pre_quant, strict=True)):
                sig[h] += float(torch.sum(r * r, dtype=torch.float64))
                err_q[h] += float(torch.sum((q - r) ** 2, dtype=torch.float64))
                err_acc[h] += float(torch.sum((a - r) ** 2, dtype=torch.float64))
            progress.update(len(xb))
    return {
        "head_sqnr_db": sqnr_db(sig.sum(), err_q.sum()),
        "head_sqnr_db_per_head": [sqnr_db(s, e) for s, e in zip(sig, err_q, strict=True)],
        "head_sqnr_db_head_unquantized": sqnr_db(sig.sum(), err_acc.sum()),
    }


# --------------------------------------------------------------------------------------------
# the study for one model
# --------------------------------------------------------------------------------------------


def study_model(name: str, calib: Tensor, evals: Tensor, progress: tqdm) -> dict[str, object]:
    wdir = data_dir() / "weights" / "darknet"
    model = Darknet.from_files(wdir / f"{name}.cfg", wdir / f"{name}.weights")
    layers = quantized_layers(model)
    stats = {i: LayerStats() for i, _ in layers}

    # -- calibration pass 1: ranges ---------------------------------------------------------
    def minmax(i: int) -> Hook:
        def hook(_m: nn.Module, _in: tuple[Tensor, ...], out: Tensor) -> None:
            st = stats[i]
            st.lo = min(st.lo, float(out.min()))
            st.hi = max(st.hi, float(out.max()))

        return hook

    with torch.no_grad(), HookSet([(m, minmax(i)) for i, m in layers]):
        for xb in batches(calib):
            model(xb)
            progress.update(len(xb))

    for st in stats.values():
        if st.hi <= st.lo:  # constant output: histc would fall back to the data's own range
            st.hi = st.lo + 1e-6

    # -- calibration pass 2: histograms -----------------------------------------------------
    def histogram(i: int) -> Hook:
        def hook(_m: nn.Module, _in: tuple[Tensor, ...], out: Tensor) -> None:
            st = stats[i]
            h = torch.histc(out, HIST_BINS, st.lo, st.hi).double().numpy()
            st.counts = h if st.counts is None else st.counts + h
            st.negatives += int((out < 0).sum())
            st.zeros += int((out == 0).sum())
            st.total += out.numel()

        return hook

    with torch.no_grad(), HookSet([(m, histogram(i)) for i, m in layers]):
        for xb in batches(calib):
            model(xb)
            progress.update(len(xb))

    quants = {
        (i, fmt, b): choose_quantizer(stats[i], fmt, b)
        for i, _ in layers
        for fmt in FORMATS
        for b in BITS
    }

    # -- evaluation 1: per-layer SQNR, each layer quantized alone ----------------------------
    signal = dict.fromkeys(stats, 0.0)
    noise = {key: 0.0 for key in quants}

    def measure(i: int) -> Hook:
        def hook(_m: nn.Module, _in: tuple[Tensor, ...], out: Tensor) -> None:
            signal[i] += float(torch.sum(out * out, dtype=torch.float64))
            for fmt in FORMATS:
                for b in BITS:
                    err = quants[i, fmt, b](out) - out
                    noise[i, fmt, b] += float(torch.sum(err * err, dtype=torch.float64))

        return hook

    float_heads: list[list[Tensor]] = []
    with torch.no_grad(), HookSet([(m, measure(i)) for i, m in layers]):
        for xb in batches(evals):
            float_heads.append(model(xb))
            progress.update(len(xb))

    # -- evaluation 2: end to end, every conv and shortcut output fake-quantized -------------
    end_to_end = {
        str(b): {
            fmt: _end_to_end(model, layers, quants, fmt, b, evals, float_heads, progress)
            for fmt in FORMATS
        }
        for b in BITS
    }

    # -- summarise ------------------------------------------------------------------------------
    per_layer: list[dict[str, object]] = []
    for i, m in layers:
        st = stats[i]
        entry: dict[str, object] = {
            "index": i,
            "kind": model.cfg.layers[i].kind,
            "activation": _activation(model, i),
            "depthwise": bool(isinstance(m, ConvLayer) and m.spec.depthwise),
            "min": st.lo,
            "max": st.hi,
            "p0.01": st.quantile(1e-4),
            "p99.99": st.quantile(1 - 1e-4),
            "fraction_negative": st.negatives / st.total,
            "fraction_zero": st.zeros / st.total,
            "clip": {str(b): {fmt: list(quants[i, fmt, b].range) for fmt in FORMATS} for b in BITS},
            "zero_point": {str(b): quants[i, "asymmetric", b].zero for b in BITS},
            "sqnr_db": {
                str(b): {fmt: sqnr_db(signal[i], noise[i, fmt, b]) for fmt in FORMATS} for b in BITS
            },
        }
        per_layer.append(entry)

    conv = [e for e in per_layer if e["kind"] == "convolutional"]
    summary = {
        str(b): {
            fmt: {
                "mean_layer_sqnr_db_leaky_relu": _mean_db(
                    [e for e in conv if e["activation"] != "linear"], fmt, b
                ),
                "mean_layer_sqnr_db_linear": _mean_db(
                    [e for e in conv if e["activation"] == "linear"], fmt, b
                ),
                **end_to_end[str(b)][fmt],
            }
            for fmt in FORMATS
        }
        for b in BITS
    }

    counts: dict[str, int] = {}
    for e in conv:
        counts[str(e["activation"])] = counts.get(str(e["activation"]), 0) + 1
    return {
        "label": MODELS.get(name, name),
        "conv_layers": len(conv),
        "shortcut_layers": len(per_layer) - len(conv),
        "conv_activations": counts,
        "summary": summary,
        "layers": per_layer,
    }


# --------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------


def plot(results: dict[str, dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(len(names), 1, figsize=(14, 3.6 * len(names)), squeeze=False)
    style = {
        ("symmetric", 4): ("tab:red", "o"),
        ("asymmetric", 4): ("tab:blue", "o"),
        ("symmetric", 8): ("tab:orange", "s"),
        ("asymmetric", 8): ("tab:cyan", "s"),
    }
    for ax, name in zip(axes[:, 0], names, strict=True):
        res = results[name]
        conv = [e for e in res["layers"] if e["kind"] == "convolutional"]  # type: ignore[index]
        xs = np.arange(len(conv))
        for k, e in enumerate(conv):  # grey band behind linear layers
            if e["activation"] == "linear":
                ax.axvspan(k - 0.5, k + 0.5, color="0.92", lw=0)
        for (fmt, b), (color, marker) in style.items():
            ys = [e["sqnr_db"][str(b)][fmt] for e in conv]
            s = res["summary"][str(b)][fmt]  # type: ignore[index]
            ax.plot(
                xs,
                ys,
                color=color,
                marker=marker,
                ms=3,
                lw=0.8,
                label=f"{fmt} {b}-bit ({s['head_sqnr_db']:.1f} dB)",
            )
        ax.set_title(f"{res['label']}: per-layer activation SQNR (grey = linear layers)")
        ax.set_xlabel("conv layer (in network order)")
        ax.set_ylabel("SQNR (dB)")
        ax.set_xlim(-1, len(conv))
        ax.grid(alpha=0.3)
        ax.legend(
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            title="format (end-to-end head SQNR)",
        )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def _finite(obj: object) -> object:
    """Strict JSON, compact: non-finite floats (an exact layer, an empty group) become null,
    the rest keep 5 decimals (far below any difference the study resolves)."""
    if isinstance(obj, float):
        return round(obj, 5) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def split_images(n_calib: int, n_eval: int, seed: int) -> tuple[list[Path], list[Path]]:
    """Disjoint calibration / evaluation sets, drawn at random because the files are sorted by
    ImageNet class and the first ones would all be fish and birds."""
    folder = data_dir() / "unlabeled" / "imagenet-1k-sample"
    files = sorted(folder.glob("*.jpg"))
    if len(files) < n_calib + n_eval:
        raise SystemExit(f"need {n_calib + n_eval} images in {folder}, found {len(files)}")
    order = np.random.default_rng(seed).permutation(len(files))
    return [files[k] for k in order[:n_calib]], [files[k] for k in order[n_calib:][:n_eval]]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--calib", type=int, default=64, help="calibration images")
    ap.add_argument("--eval", type=int, default=32, help="evaluation images")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO_ROOT / "bench/results/act_format.json")
    ap.add_argument("--png", type=Path, default=REPO_ROOT / "docs/img/act_format.png")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    start = time.time()
    calib_files, eval_files = split_images(args.calib, args.eval, args.seed)
    calib = load_images(calib_files, args.size)
    evals = load_images(eval_files, args.size)

    results: dict[str, dict[str, object]] = {}
    per_model = 2 * len(calib_files) + (1 + len(BITS) * len(FORMATS)) * len(eval_files)
    with tqdm(total=per_model * len(args.models), unit="img") as progress:
        for name in args.models:
            progress.set_description(MODELS[name])
            results[name] = study_model(name, calib, evals, progress)

    report = {
        "description": (
            "Per-tensor activation quantization, symmetric signed vs asymmetric with zero "
            "point; see quant/act_format_study.py for definitions."
        ),
        "setup": {
            "input": f"{args.size}x{args.size} plain resize, RGB in [0, 1]",
            "calibration_images": [p.name for p in calib_files],
            "evaluation_images": [p.name for p in eval_files],
            "image_source": "unlabeled/imagenet-1k-sample",
            "bits": list(BITS),
            "clip_search": (
                f"MSE on a {HIST_BINS}-bin calibration histogram; clip end = fraction of the "
                "observed extreme, 33-point geometric grid 1/256..1 then 17-point linear "
                "refinement; asymmetric: coordinate descent over both ends, lower end may be 0"
            ),
            "quantized_in_end_to_end": "every conv output (after activation) and shortcut output",
            "sqnr": "10 log10(sum x^2 / sum (x - Q(x))^2) pooled over all evaluation images",
            "torch": torch.__version__,
            "threads": args.threads,
            "machine": platform.machine(),
            "seconds": round(time.time() - start, 1),
        },
        "models": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_finite(report), indent=1, allow_nan=False) + "\n")
    plot(results, args.png)

    print(f"\n{'model':26s} bits  format      leaky/relu  linear  head e2e  head e2e (acc)")
    for res in results.values():
        for b in BITS:
            for fmt in FORMATS:
                s = res["summary"][str(b)][fmt]  # type: ignore[index]
                print(
                    f"{res['label']:26s} {b:4d}  {fmt:10s} "
                    f"{s['mean_layer_sqnr_db_leaky_relu']:8.2f}"
                    f"  {s['mean_layer_sqnr_db_linear']:6.2f}  {s['head_sqnr_db']:8.2f}"
                    f"  {s['head_sqnr_db_head_unquantized']:8.2f}"
                )
    print(f"wrote {args.json} and {args.png} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
