"""Quantization-aware fine-tuning by distillation from the float model on unlabeled images.

    python -m quant.qat --model yolo-fastest-voc --dw-format pow2 --act-bits 8 --size 512 \
        --threads 2 --out models/artifacts/yolo-fastest-voc-w4a8-qat.npz --eval

(the defaults are the measured recipe: 1,400 steps of batch 16 at 320x320; 39 minutes for
Yolo-Fastest on 2 CPU threads; models/artifacts/*-qat.NOTES.md)

Student: QuantDetector in fake-quant mode (weights STE with learned per-channel scale, LSQ-style
learned activation clip ranges, bias on the accumulator grid). Teacher: the same graph with the
original float weights. Loss: MSE of the raw head outputs plus normalised MSE of the residual
(shortcut) feature maps, each divided by the teacher's variance. Data: random 320x320 crops of
the unlabeled ImageNet sample (never VOC). Adam, cosine schedule. Two phases: the first
--weights-only-frac of the steps train the weights with activations in float (the recipe known
to recover 4-bit power-of-two weights, and half the cost per step on the CPU), then the
activation ranges are calibrated on the fine-tuned weights and the rest of the steps train
with them quantized too (their ranges learned, LSQ-style). A checkpoint (weights,
optimiser, step, RNG) every --ckpt-every steps makes a killed run resumable with the same
command. Starts from a PTQ checkpoint (--init) or from plain calibration.

Distributed: under `torchrun --nproc_per_node N` each process takes its own crops and gradients
are averaged (DistributedDataParallel, gloo on CPU / nccl on GPU); rank 0 writes checkpoints and
the artifact.

Labelled data: with --voc PATH (a VOC-layout folder with labels for training, e.g. a user's
VOCdevkit/VOC2012 - not the bundled data/voc2012-sample, which is the evaluation set) every step
also draws a batch of the same size of letterboxed, randomly flipped VOC images at --crop size
(quant.yolo_loss.VocTrainSet) and adds --det-weight times darknet's YOLOv3 detection loss of
the student's raw heads on it (quant.yolo_loss.yolo_v3_loss) to the distillation loss.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from models.darknet import Darknet
from models.evaluate import VOC_CLASSES
from quant.calibrate import calibrate_activations
from quant.checkpoint import load_checkpoint, load_plain, save_checkpoint
from quant.cli import build_detector, checkpoint_path, common_parser, finish, parsed
from quant.data import CALIB_SET, CropSampler, letterbox_batch, unlabeled_images
from quant.equalize import equalize_activations
from quant.model import LayerFormat, QuantDetector
from quant.yolo_loss import VocTrainSet, yolo_v3_loss


class Distill(nn.Module):
    """Student forward + loss against the frozen float teacher, plus the optional detection
    loss on a labelled batch (one module, so DDP wraps it and sees every parameter's use)."""

    def __init__(
        self, student: QuantDetector, teacher: QuantDetector, feat_weight: float,
        head_loss: str = "raw", det_weight: float = 1.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.head_loss = head_loss
        self.det_weight = det_weight
        self.na = [len(s.mask) for s in student.head_specs]
        self.student = student
        self.teacher = teacher
        self.feat_weight = feat_weight
        self.feats = {n.name for n in student.nodes if n.op == "add"}

    def forward(self, x: Tensor, labelled: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Distillation loss on ``x``; with ``labelled`` = (images, targets as VocTrainSet
        gives them), plus det_weight x the YOLOv3 loss of the student on those images."""
        with torch.no_grad():
            th, tf = self.teacher.forward_real(x, quantize=False, keep=self.feats)
        sh, sf = self.student.forward_real(x, quantize=True, keep=self.feats)
        loss = sum(self._head(s, t, a) for s, t, a in zip(sh, th, self.na, strict=True))
        if self.feats and self.feat_weight > 0:
            fl = sum(F.mse_loss(sf[k], tf[k]) / (tf[k].var() + 1e-6) for k in self.feats)
            loss = loss + self.feat_weight * fl / len(self.feats)
        if labelled is not None:
            lx, lt = labelled
            heads, _ = self.student.forward_real(lx, quantize=True)
            det = yolo_v3_loss(heads, lt, self.student.head_specs, (lx.shape[3], lx.shape[2]))
            loss = loss + self.det_weight * det
        return loss

    def _head(self, s: Tensor, t: Tensor, anchors: int) -> Tensor:
        """Raw: normalised MSE of the head outputs. yolo: what the decoder uses - sigmoid of
        x, y, objectness and classes, raw w, h (exp'd later) - so the very negative class
        logits (sigmoid ~ 0, clipped by the head's activation range) do not dominate."""
        if self.head_loss == "raw":
            return F.mse_loss(s, t) / (t.var() + 1e-6)
        n, c, h, w = s.shape
        s = s.view(n, anchors, c // anchors, h, w)
        t = t.view(n, anchors, c // anchors, h, w)
        sig = [0, 1] + list(range(4, c // anchors))
        ss, ts = torch.sigmoid(s[:, :, sig]), torch.sigmoid(t[:, :, sig])
        wh = F.mse_loss(s[:, :, 2:4], t[:, :, 2:4]) / (t[:, :, 2:4].var() + 1e-6)
        return F.mse_loss(ss, ts) / (ts.var() + 1e-6) + wh


class BatchSource(Protocol):
    def batch(self, n: int) -> Tensor: ...


class TensorSampler:
    """Random batches (with horizontal flips) from a fixed image tensor: the synthetic images
    of quant.datafree."""

    def __init__(self, images: Tensor, seed: int = 0) -> None:
        self.images = images
        self.gen = torch.Generator().manual_seed(seed)

    def batch(self, n: int) -> Tensor:
        idx = torch.randint(0, len(self.images), (n,), generator=self.gen)
        x = self.images[idx].clone()
        flip = torch.rand(n, generator=self.gen) < 0.5
        x[flip] = x[flip].flip(-1)
        return x


def add_training_args(
    ap: argparse.ArgumentParser, steps: int = 1400, crop: int | None = 320
) -> None:
    """The distillation options shared by quant.qat and quant.datafree's fine-tuning."""
    ap.add_argument("--steps", type=int, default=steps, help="distillation steps")
    ap.add_argument("--batch", type=int, default=16)
    if crop is not None:
        ap.add_argument("--crop", type=int, default=crop, help="training image size")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=0,
                    help="steps of linear learning-rate warm-up (use with --init: a fresh Adam "
                    "moves every parameter by the full rate on its first steps)")  # fmt: skip
    ap.add_argument("--feat-weight", type=float, default=0.5)
    ap.add_argument("--head-loss", default="raw", choices=("yolo", "raw"),
                    help="yolo: sigmoid(x, y, obj, cls) + raw w, h; raw: raw outputs")  # fmt: skip
    ap.add_argument("--weights-only-frac", type=float, default=0.7,
                    help="fraction of the steps with float activations (0: none)")  # fmt: skip
    ap.add_argument("--equalize-acts", action="store_true",
                    help="when activations are switched on, first equalize the output-channel "
                    "ranges of every conv feeding a depthwise conv (exact; "
                    "quant.equalize.equalize_activations)")  # fmt: skip
    ap.add_argument("--ckpt-every", type=int, default=50)


def lr_factor(steps: int, warmup: int, step: int) -> float:
    """Cosine decay over ``steps`` after a linear warm-up over the first ``warmup`` steps."""
    cosine = 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    return cosine * min(1.0, (step + 1) / warmup) if warmup > 0 else cosine


def distill(
    args: argparse.Namespace,
    net: Darknet,
    student: QuantDetector,
    source: BatchSource,
    calib_x: Tensor,
    ck_path: Path,
    ck: dict[str, Any],
    voc: VocTrainSet | None = None,
    device: torch.device | None = None,
    rank: int = 0,
    distributed: bool = False,
    desc: str = "qat",
) -> dict[str, Any]:
    """Fine-tune ``student`` by distillation from the float ``net`` on batches of ``source``
    (the loop of quant.qat; quant.datafree runs it on synthetic images). ``ck`` is the resumed
    checkpoint ({"step": 0} for a fresh run); a checkpoint goes to ``ck_path`` every
    --ckpt-every steps. ``calib_x``: images that calibrate the activation ranges when they are
    switched on (the same on every rank). Returns the training summary for the metadata."""
    device = device or torch.device("cpu")
    teacher = QuantDetector(net, LayerFormat(), args.act_bits)  # float weights, BN folded
    teacher.requires_grad_(False)
    det_weight = args.det_weight if voc is not None else 0.0  # quant.datafree has no --voc
    model = Distill(student, teacher, args.feat_weight, args.head_loss, det_weight).to(device)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(lr_factor, args.steps, args.warmup))
    if "opt" in ck:
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
    step = int(ck["step"])
    if not 0.0 <= args.weights_only_frac <= 1.0:
        raise SystemExit(f"--weights-only-frac {args.weights_only_frac} is not in [0, 1]")
    switch = round(args.weights_only_frac * args.steps)

    def quantize_activations() -> None:
        """Calibrate the activation ranges on the fine-tuned weights (the same images on
        every rank, so the ranks agree) and train with them from here on."""
        batches = [b.to(device) for b in calib_x.split(8)]
        if args.equalize_acts:
            equalize_activations(student, batches)
        calibrate_activations(student, batches, quantized_weights=True)
        student.set_act_quant(True)

    student.set_act_quant(step >= switch)
    if voc is not None:
        if any(h.classes != len(VOC_CLASSES) for h in student.head_specs):
            raise SystemExit(f"--voc: {args.model} does not have the {len(VOC_CLASSES)} classes")
        voc.reseed(args.seed * 1000 + rank + step + 500)
    ddp: nn.Module = model
    if distributed:
        ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    bar = tqdm(total=args.steps, initial=step, desc=desc, disable=rank != 0)
    losses: list[float] = list(ck.get("losses", []))
    while step < args.steps:
        # (at step 0 only to equalize: a fresh run calibrated its ranges in main, and a run
        # continued with --init keeps the ranges it learned)
        if step == switch and (switch > 0 or args.equalize_acts):
            quantize_activations()
            bar.write(f"step {step}: activations quantized from here on")
        x = source.batch(args.batch).to(device)
        labelled = None
        if voc is not None:
            lx, lt = voc.batch(args.batch)
            labelled = (lx.to(device), lt.to(device))
        loss = ddp(x, labelled)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
        if rank == 0 and (step % args.ckpt_every == 0 or step == args.steps):
            save_checkpoint(ck_path, student, {"step": step, "opt": opt.state_dict(),
                                               "sched": sched.state_dict(),
                                               "losses": losses})  # fmt: skip
    bar.close()
    if not all(q.enabled for q in student.aq):  # --weights-only-frac 1
        quantize_activations()
    student.invalidate()
    return {
        "steps": args.steps,
        "weights_only_steps": switch,
        "loss_first_last_20": [
            sum(losses[:20]) / max(1, len(losses[:20])),
            sum(losses[-20:]) / max(1, len(losses[-20:])),
        ],
    }


def main(argv: list[str] | None = None) -> None:
    ap = common_parser(__doc__ or "")
    ap.add_argument("--init", type=Path, default=None, help="PTQ checkpoint to start from")
    add_training_args(ap)
    ap.add_argument("--images", type=int, default=1000, help="unlabeled images used")
    ap.add_argument("--calib", type=int, default=64, help="calibration images without --init")
    ap.add_argument("--voc", type=Path, default=None,
                    help="labelled VOC-layout training folder (e.g. VOCdevkit/VOC2012; not the "
                    "bundled data/voc2012-sample, which is for evaluation): adds the YOLOv3 "
                    "detection loss on a batch of it every step")  # fmt: skip
    ap.add_argument(
        "--voc-set",
        default="trainval",
        help="ImageSets/Main/<name>.txt of --voc (all annotations if absent)",
    )
    ap.add_argument(
        "--det-weight", type=float, default=1.0, help="weight of the detection loss (with --voc)"
    )
    args = parsed(ap.parse_args(argv), argv, "quant.qat")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed + rank)
    t0 = time.perf_counter()
    # Read --init and the labelled set first, so a bad one fails before the model is built.
    init = load_plain(args.init) if args.init is not None else None
    voc = VocTrainSet(args.voc, args.crop, args.voc_set) if args.voc is not None else None
    net, student = build_detector(args, equalize=args.equalize)
    paths = unlabeled_images()[: args.images]
    calib_x = letterbox_batch(paths[: args.calib], args.crop)
    ck_path = checkpoint_path(args)
    ck = load_checkpoint(ck_path, student)
    if ck is None:
        if init is not None:
            student.load_state_dict(init["model"])
        else:
            calibrate_activations(student, list(calib_x.split(8)))
        ck = {"step": 0}
    student.invalidate()
    sampler = CropSampler(paths, args.crop, seed=args.seed * 1000 + rank + int(ck["step"]))
    summary = distill(args, net, student, sampler, calib_x, ck_path, ck, voc=voc, device=device,
                      rank=rank, distributed=distributed)  # fmt: skip
    if rank == 0:
        student.cpu()
        meta = {
            "training": f"distillation from float, {args.steps} steps "
            f"({summary['weights_only_steps']} with float activations), batch {args.batch}, "
            f"{args.crop}x{args.crop} crops of {CALIB_SET} ({len(paths)} images), Adam "
            f"{args.lr} cosine"
            + (f" after {args.warmup} warm-up steps" if args.warmup else "")
            + f", head loss {args.head_loss} + {args.feat_weight} x shortcut-feature "
            "MSE"
            + (
                f" + {args.det_weight} x YOLOv3 detection loss on {args.crop}x{args.crop} "
                f"letterboxed, flipped labelled images of {args.voc} ({len(voc)} images, set "
                f"{voc.source}, difficult objects excluded), batch {args.batch}"
                if voc is not None
                else ""
            ),
            "init": str(args.init) if args.init else "calibration only",
            "equalize_acts": bool(args.equalize_acts),
            "loss_first_last_20": summary["loss_first_last_20"],
        }
        finish(args, student, "qat: distillation fine-tuning", meta, t0)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
