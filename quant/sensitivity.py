"""Where does a quantized detector lose its accuracy? Weights vs activations, tensor by tensor.

    python -m quant.sensitivity --model yolo-fastest-xl-voc --dw-format pow2 \\
        --checkpoint RUN.ckpt.pt [--equalize-acts] [--map] [--plot sens.png]

Loads a quant.qat / quant.ptq / quant.datafree checkpoint and, on the last few letterboxed
unlabeled images, measures the normalised error of the head outputs (MSE / variance, summed
over heads) that activation quantization adds to the weight-quantized network: with every
activation tensor quantized, and with each tensor alone quantized (the ranking says which
tensors to fix, e.g. by --equalize-acts or by keeping them at 8 bits). --map also measures the
VOC-sample mAP with the weights fake-quantized and activations in float, and with both
quantized, which splits the gap to the float model into its weight and activation parts.
--equalize-acts first applies quant.equalize.equalize_activations and re-calibrates the
ranges, to see what it would buy.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from quant.calibrate import calibrate_activations
from quant.checkpoint import load_checkpoint
from quant.cli import add_model_args, check_eval, model_source
from quant.data import letterbox_batch, unlabeled_images
from quant.equalize import equalize_activations
from quant.model import QuantDetector
from quant.zoo import build


@dataclass
class GroupError:
    group: int
    bits: int
    lo: float
    hi: float
    producers: list[str]
    error: float  # normalised head-output error with only this group quantized


def _head_error(qdet: QuantDetector, x: Tensor, ref: list[Tensor]) -> float:
    qdet.invalidate()
    with torch.no_grad():
        out = qdet(x)
    return sum(
        float(((o - r) ** 2).mean() / r.var().clamp(min=1e-12))
        for o, r in zip(out, ref, strict=True)
    )


def activation_sensitivity(qdet: QuantDetector, x: Tensor) -> tuple[float, list[GroupError]]:
    """(error with every activation quantized, per-group errors sorted worst first) of the
    head outputs against the same network with activations in float. Leaves the activation
    switches as they were."""
    was = [q.enabled for q in qdet.aq]
    qdet.set_act_quant(False)
    qdet.invalidate()
    with torch.no_grad():
        ref = qdet(x)
    qdet.set_act_quant(True)
    total = _head_error(qdet, x, ref)
    per = []
    for g, q in enumerate(qdet.aq):
        qdet.set_act_quant(False)
        q.enabled = True
        lo, hi = float(q.lo.detach()), float(q.hi.detach())
        names = [n.name for n in qdet.group_members(g)]
        per.append(GroupError(g, q.bits, lo, hi, names, _head_error(qdet, x, ref)))
    for q, e in zip(qdet.aq, was, strict=True):
        q.enabled = e
    qdet.invalidate()
    return total, sorted(per, key=lambda e: -e.error)


def voc_map(qdet: QuantDetector, size: int) -> float:
    from models.detect import float_detect_fn
    from models.evaluate import evaluate_voc
    from models.paths import data_dir
    from sw.postprocess import heads_of_darknet

    qdet.eval()
    qdet.invalidate()
    detect = float_detect_fn(qdet, heads_of_darknet(qdet.cfg), size)
    r = evaluate_voc(detect, data_dir() / "voc2012-sample", with_curves=False)
    return float(r["map_all"])


def plot(total: float, per: list[GroupError], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = per[:20]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(top) + 1.5))
    labels = [f"{'+'.join(e.producers[:2])}{'...' if len(e.producers) > 2 else ''}" for e in top]
    ax.barh(range(len(top)), [e.error for e in top], color="tab:red")
    ax.set_yticks(range(len(top)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"head-output error with only this tensor quantized (all tensors: {total:.4f})")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_args(ap, "yolo-fastest-voc")
    ap.add_argument("--bits", type=int, default=4, choices=(3, 4))
    ap.add_argument("--act-bits", type=int, default=8, choices=(4, 8))
    ap.add_argument("--dw-format", default="int8", choices=("pow2", "int8"))
    ap.add_argument("--checkpoint", type=Path, required=True, help="a quant.* checkpoint")
    ap.add_argument("--images", type=int, default=8, help="the last N unlabeled images")
    ap.add_argument("--crop", type=int, default=320, help="their letterbox size")
    ap.add_argument("--size", type=int, default=512, help="input size of the --map evaluation")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--equalize-acts", action="store_true")
    ap.add_argument(
        "--map", action="store_true", help="also VOC-sample mAP, float vs quantized acts"
    )
    ap.add_argument("--plot", type=Path, default=None, help="bar chart of the worst tensors (PNG)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    model_source(args)
    check_eval(args, scores_voc=args.map)  # the VOC-sample mAP needs a VOC detector
    torch.set_num_threads(args.threads)
    if not args.checkpoint.is_file():
        raise SystemExit(f"{args.checkpoint}: no such checkpoint")
    _, qdet = build(args.source, args.bits, args.dw_format, args.act_bits)
    try:
        load_checkpoint(args.checkpoint, qdet)
    except (RuntimeError, KeyError) as e:  # another model or format
        first = str(e).splitlines()[0]
        what = f"{args.model} --dw-format {args.dw_format} --act-bits {args.act_bits}"
        raise SystemExit(f"{args.checkpoint}: does not fit {what}: {first}") from None
    paths = unlabeled_images()
    x = letterbox_batch(paths[-args.images :], args.crop)
    if args.equalize_acts:
        calib = list(letterbox_batch(paths[:64], args.crop).split(8))
        n = equalize_activations(qdet, calib)
        calibrate_activations(qdet, calib, quantized_weights=True)
        print(f"equalized {n} conv -> depthwise pairs and re-calibrated the ranges")
    total, per = activation_sensitivity(qdet, x)
    print(f"head-output error, every activation quantized: {total:.5f}")
    print(f"sum of the single-tensor errors: {sum(e.error for e in per):.5f} ({len(per)} tensors)")
    print("worst tensors (error with only that one quantized):")
    for e in per[: args.top]:
        more = "..." if len(e.producers) > 4 else ""
        print(f"  {e.error:.5f}  {e.bits}-bit [{e.lo:.3g}, {e.hi:.3g}]  "
              f"{', '.join(e.producers[:4])}{more}")  # fmt: skip
    if args.plot:
        plot(total, per, args.plot, f"{args.model}: {args.checkpoint.name}")
        print(f"wrote {args.plot}")
    if args.map:
        qdet.set_act_quant(False)
        m_w = voc_map(qdet, args.size)
        qdet.set_act_quant(True)
        m_wa = voc_map(qdet, args.size)
        print(f"VOC-sample mAP at {args.size}: weights quantized, activations float {m_w:.4f}; "
              f"both quantized {m_wa:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
