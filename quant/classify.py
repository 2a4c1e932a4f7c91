"""The CIFAR-10 ResNets (models.classifiers) through the quantization chain: float top-1, W4A8
power-of-two PTQ, QAT by distillation from the float model, data-free (ZeroQ-style synthetic
images from the BN statistics, then distillation on them) and binary-weight QAT.

    python -m quant.classify float    --model resnet20
    python -m quant.classify ptq      --model resnet20 --out r20-ptq.npz
    python -m quant.classify qat      --model resnet20 --steps 600 --out r20-qat.npz
    python -m quant.classify datafree --model resnet20 --steps 600 --out r20-df.npz
    python -m quant.classify qat      --model resnet20 --weights binary --out r20-bin.npz

Data (``models.classifiers.resnet_cifar.SPLIT_TEXT``): calibration and distillation use the
5,000 CIFAR-10 test images with index_in_class < 500 (labels never read); every reported top-1
is on the other 5,000, computed with the exported artifact in the torch integer mode
(quant.integer.ArtifactNet, bit-exact with sim.reference). ``datafree`` reads no image at all.

The lowering (docs/arithmetic.md sections 2.1, 7.1 and 7.2): the input is the normalised image
quantized per tensor (asymmetric 8-bit, so zero padding is the zero code); an option-A shortcut
is a fixed 1x1 stride-2 conv with 0/1 weights whose output shares its input's quantization
(exact); the global average pool is the contract's ``avgpool``; the linear layer a 1x1 conv on
the 1x1 map. Weights: ``--weights pow2`` (4-bit pow2 everywhere), ``binary`` (1-bit for the
3x3 convs of the blocks; the stem conv and the linear layer stay 4-bit pow2).

Training runs are resumable: ``<out>.ckpt.pt`` (model, Adam, step; quant.checkpoint, read with
``weights_only=True``) every ``--ckpt-every`` steps, ``<out>.synth.pt`` for the synthetic set.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from models.classifiers.resnet_cifar import (
    CLASSES,
    DEPTHS,
    MEAN,
    SPLIT_TEXT,
    STD,
    CheckpointError,
    ResNetCifar,
    load_cifar,
    load_resnet,
    normalize,
)
from quant.calibrate import calibrate_activations
from quant.checkpoint import load_plain, save_checkpoint
from quant.export import to_artifact
from quant.integer import INPUT, ArtifactNet
from quant.model import LayerFormat, QNode, QuantDetector
from sw import artifact as artmod
from sw.artifact import Artifact, Quant
from sw.contract.requant import range_to_quant
from sw.preprocess import normalized_codes

FINAL_AREA = 8 * 8  # the last stage's map at 32x32 input: what the global pool averages


def input_quant() -> Quant:
    """Per-tensor asymmetric 8-bit quantization of the normalised image: its range is the one
    the normalisation can produce, [min (0 - mean) / std, max (1 - mean) / std]."""
    lo = min((0.0 - m) / s for m, s in zip(MEAN, STD, strict=True))
    hi = max((1.0 - m) / s for m, s in zip(MEAN, STD, strict=True))
    z, s = range_to_quant(lo, hi, 8)
    return Quant(8, z, s)


def codes_of(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 32, 32, 3) -> the artifact's input codes (N, 3, 32, 32)."""
    q = input_quant()
    return normalized_codes(images, MEAN, STD, q.zero, q.scale, q.bits)


def real_of(codes: np.ndarray | Tensor) -> Tensor:
    """The real values of input codes: what the float and fake-quant modes see."""
    q = input_quant()
    return (torch.as_tensor(codes).float() - q.zero) * np.float32(q.scale)


def _fold(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """docs/arithmetic.md 11.1 in float64: w * gamma / sqrt(var + eps), beta - mean * (...)."""
    w = conv.weight.detach().double().numpy()
    k = bn.weight.detach().double().numpy() / np.sqrt(bn.running_var.detach().double().numpy()
                                                      + bn.eps)  # fmt: skip
    b = bn.bias.detach().double().numpy() - bn.running_mean.detach().double().numpy() * k
    return (w * k[:, None, None, None]).astype(np.float32), b.astype(np.float32)


def option_a_weights(cin: int, cout: int) -> np.ndarray:
    """The option-A shortcut as a 1x1 conv: output channel ``pad + c`` copies input ``c``
    (weight 1 = 2^0), the ``pad = (cout - cin) // 2`` channels either side are zero."""
    w = np.zeros((cout, cin, 1, 1), np.float32)
    pad = (cout - cin) // 2
    w[pad + np.arange(cin), np.arange(cin), 0, 0] = 1.0
    return w


def build_graph(net: ResNetCifar, size: int = 32) -> dict[str, Any]:
    """The ResNet as QNodes with BN folded: the arguments of QuantDetector.from_graph.
    ``size``: the input's height and width (the pool's constants depend on the final map)."""
    nodes: list[QNode] = []
    params: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    fixed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    tied: dict[str, str] = {}

    def conv(name: str, src: str, cout: int, k: int, stride: int, act: str) -> str:
        nodes.append(QNode(name, "conv", [src], len(nodes), dict(
            kernel=k, stride=stride, pad=k // 2, groups=1, activation=act, out_channels=cout,
        )))  # fmt: skip
        return name

    x = conv("conv0", INPUT, 16, 3, 1, "relu")
    params[x] = _fold(net.conv1, net.bn1)
    cin = 16
    for s, stage in enumerate(net.stages()):
        for b, blk in enumerate(stage):
            p = f"s{s + 1}b{b}_"
            planes = blk.conv1.out_channels
            h = conv(f"{p}conv1", x, planes, 3, blk.conv1.stride[0], "relu")
            params[h] = _fold(blk.conv1, blk.bn1)
            h = conv(f"{p}conv2", h, planes, 3, 1, "linear")
            params[h] = _fold(blk.conv2, blk.bn2)
            sc = x
            if blk.option_a:
                sc = conv(f"{p}short", x, planes, 1, 2, "linear")
                fixed[sc] = (option_a_weights(cin, planes), np.zeros(planes, np.float32))
                tied[sc] = x  # same quantization as its input: exact (section 7.2)
            nodes.append(QNode(f"{p}add", "add", [h, sc], len(nodes), {"activation": "relu"}))
            x, cin = f"{p}add", planes
    area = FINAL_AREA if size == 32 else (-(-size // 4)) ** 2  # two stride-2 stages
    nodes.append(QNode("pool", "avgpool", [x], len(nodes), {"area": area}))
    fc = conv("fc", "pool", len(CLASSES), 1, 1, "linear")
    w = net.linear.weight.detach().float().numpy()[:, :, None, None].copy()
    params[fc] = (w, net.linear.bias.detach().float().numpy().copy())
    return dict(nodes=nodes, params=params, fixed=fixed, tied=tied, heads=[fc])


def layer_format(weights: str) -> LayerFormat:
    if weights == "pow2":
        return LayerFormat(dense=("pow2", 4))
    if weights == "binary":  # stem and classifier stay 4-bit pow2 (the usual binary-net rule)
        return LayerFormat(dense=("binary", 1), layers={"conv0": ("pow2", 4), "fc": ("pow2", 4)})
    raise ValueError(f"unknown weight scheme {weights!r}")


def build_quant(
    net: ResNetCifar, weights: str = "pow2", act_bits: int = 8, size: int = 32
) -> QuantDetector:
    g = build_graph(net, size)
    return QuantDetector.from_graph(
        g["nodes"], g["params"], g["heads"], input_quant(), layer_format(weights), act_bits,
        tied=g["tied"], fixed=g["fixed"],
    )  # fmt: skip


def logits_real(qdet: QuantDetector, x: Tensor, quantize: bool) -> Tensor:
    return qdet.forward_real(x, quantize)[0][0].flatten(1)


def export_artifact(
    qdet: QuantDetector, model: str, tag: str, meta: dict[str, Any], size: int = 32
) -> Artifact:
    return to_artifact(
        qdet, size, name=f"{model}-cifar10-{tag}", classes=list(CLASSES),
        description=f"{model} (akamaster CIFAR-10), {tag}; input: normalised RGB, see metadata",
        metadata={"preprocess": {"mean": list(MEAN), "std": list(STD), "layout": "RGB",
                                 "size": [size, size]}, **meta},
    )  # fmt: skip


@torch.no_grad()
def artifact_top1(art: Artifact, images: np.ndarray, labels: np.ndarray, batch: int = 250
                  ) -> float:  # fmt: skip
    """Top-1 (percent) of an artifact in the torch integer mode (bit-exact, fast)."""
    net = ArtifactNet(art)
    right = 0
    for i in tqdm(range(0, len(images), batch), desc="eval int", leave=False):
        codes = torch.from_numpy(codes_of(images[i : i + batch]).astype(np.float64))
        out = net(codes)[0].flatten(1)
        right += int((out.argmax(1).numpy() == labels[i : i + batch]).sum())
    return 100.0 * right / len(images)


@torch.no_grad()
def float_top1(net: ResNetCifar, images: np.ndarray, labels: np.ndarray) -> float:
    right = 0
    for i in range(0, len(images), 500):
        out = net(normalize(images[i : i + 500]))
        right += int((out.argmax(1).numpy() == labels[i : i + 500]).sum())
    return 100.0 * right / len(images)


# ----------------------------------------------------------------------------------------------
# Training data: real images (augmented) or a synthetic set, as real input tensors


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flip and 4-pixel reflect-padded crop (the CIFAR training recipe)."""
    n = len(images)
    flip = rng.random(n) < 0.5
    out = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
    padded = np.pad(out, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    dy, dx = rng.integers(0, 9, n), rng.integers(0, 9, n)
    return np.stack([padded[i, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32] for i in range(n)])


class RealBatches:
    def __init__(self, images: np.ndarray, seed: int) -> None:
        self.images, self.seed = images, seed

    def batch(self, step: int, n: int) -> Tensor:
        rng = np.random.default_rng([self.seed, step])  # a function of (seed, step): resumable
        idx = rng.choice(len(self.images), n, replace=False)
        return real_of(codes_of(augment(self.images[idx], rng)))

    def calib(self, n: int) -> Tensor:
        """``n`` images spread over the classes (the split is sorted by class), unaugmented."""
        idx = np.linspace(0, len(self.images) - 1, n).round().astype(int)
        return real_of(codes_of(self.images[idx]))


class SynthBatches:
    """Synthetic real-valued inputs, augmented by flips and 4-pixel shifts, fake-quantized to
    the input grid (what the integer network would see)."""

    def __init__(self, x: Tensor, seed: int) -> None:
        self.x, self.seed = x, seed

    def batch(self, step: int, n: int) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + step)
        idx = torch.randperm(len(self.x), generator=g)[:n]
        x = self.x[idx]
        flip = torch.rand(n, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        dy, dx = (int(v) for v in torch.randint(-4, 5, (2,), generator=g))
        x = torch.roll(x, (dy, dx), dims=(2, 3))
        return quantize_input(x)

    def calib(self, n: int) -> Tensor:
        return quantize_input(self.x[:n])


def quantize_input(x: Tensor) -> Tensor:
    q = input_quant()
    c = torch.clamp(torch.round(x / q.scale) + q.zero, 0, q.qmax)
    return (c - q.zero) * np.float32(q.scale)


# ----------------------------------------------------------------------------------------------
# Data-free: images from the BN statistics (ZeroQ)


def bn_loss(net: ResNetCifar, x: Tensor) -> Tensor:
    """Sum over every BN layer of ||batch mean - running mean||^2 + ||batch std - running
    std||^2 of its input (the conv output), per channel count (ZeroQ's statistic loss)."""
    terms: list[Tensor] = []
    hooks = []
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):

            def hook(mod: torch.nn.BatchNorm2d, inp: tuple[Tensor, ...], _o: Tensor) -> None:
                y = inp[0]
                mean = y.mean(dim=(0, 2, 3))
                std = (y.var(dim=(0, 2, 3), unbiased=False) + mod.eps).sqrt()
                rm, rs = mod.running_mean, (mod.running_var + mod.eps).sqrt()
                terms.append(((mean - rm) ** 2).sum() / rm.numel()
                             + ((std - rs) ** 2).sum() / rm.numel())  # fmt: skip

            hooks.append(m.register_forward_hook(hook))
    try:
        net(x)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(terms).sum()


def synthesize(net: ResNetCifar, n: int, iters: int, batch: int, seed: int, path: Path | None,
               lr: float = 0.1) -> Tensor:  # fmt: skip
    """``n`` synthetic normalised images (N, 3, 32, 32); no image is read. Batches are kept in
    ``path`` as they finish, so a killed run resumes after the last finished batch."""
    done: list[Tensor] = []
    if path is not None and path.is_file():
        done = list(load_plain(path, model=False)["images"])
    q = input_quant()
    lo, hi = (0 - q.zero) * q.scale, (q.qmax - q.zero) * q.scale
    for p in net.parameters():
        p.requires_grad_(False)
    for b in tqdm(range(len(done), -(-n // batch)), desc="synthesize"):
        g = torch.Generator().manual_seed(seed * 7919 + b)
        x = torch.randn(min(batch, n - b * batch), 3, 32, 32, generator=g).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        for it in range(iters):
            opt.zero_grad()
            loss = bn_loss(net, x)
            loss.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(lo, hi)
            if it % 50 == 0:
                tqdm.write(f"batch {b} iter {it}: bn loss {float(loss):.4f}")
        done.append(x.detach())
        if path is not None:
            tmp = path.with_suffix(path.suffix + ".tmp")
            torch.save({"images": torch.cat(done)}, tmp)
            tmp.replace(path)
    return torch.cat(done)[:n]


# ----------------------------------------------------------------------------------------------
# PTQ and distillation


def calibrate(qdet: QuantDetector, source: Any, n: int) -> None:
    """Weights: MSE-optimal per-channel scales (done at construction); activations: MSE-optimal
    clip ranges from float-mode outputs on ``n`` images of ``source``."""
    x = source.calib(n)
    calibrate_activations(qdet, list(x.split(100)))


def distill(
    qdet: QuantDetector, teacher: QuantDetector, source: Any, steps: int, batch: int, lr: float,
    ckpt: Path, ckpt_every: int, temperature: float = 2.0,
) -> list[float]:  # fmt: skip
    """Fake-quant student against the float teacher (same folded graph): KL of the softened
    logits, Adam on weights, biases, weight scales and activation ranges, cosine schedule.
    Resumes from ``ckpt`` (model, optimiser, step, losses)."""
    params = [p for p in qdet.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    start, losses = 0, []
    if ckpt.is_file():
        ck = load_plain(ckpt)
        qdet.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start, losses = int(ck["step"]), list(ck["losses"])
        tqdm.write(f"resumed {ckpt} at step {start}")
    qdet.mode = "fake"
    teacher.mode = "float"
    bar = tqdm(range(start, steps), desc="distill", initial=start, total=steps)
    for step in bar:
        for gr in opt.param_groups:
            gr["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
        x = source.batch(step, batch)
        with torch.no_grad():
            t = logits_real(teacher, x, False)
        s = logits_real(qdet, x, True)
        loss = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1),
                        reduction="batchmean") * temperature**2  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        if (step + 1) % ckpt_every == 0 or step + 1 == steps:
            save_checkpoint(ckpt, qdet, {"optimizer": opt.state_dict(), "step": step + 1,
                                         "losses": losses})  # fmt: skip
    qdet.invalidate()
    return losses


def teacher_of(net: ResNetCifar) -> QuantDetector:
    t = build_quant(net)
    t.mode = "float"
    for p in t.parameters():
        p.requires_grad_(False)
    return t


# ----------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m quant.classify", description=__doc__.split("\n")[0]
    )
    ap.add_argument("command", choices=("float", "ptq", "qat", "datafree"))
    ap.add_argument("--model", choices=sorted(DEPTHS), default="resnet20")
    ap.add_argument("--checkpoint", type=Path, default=None, help="the .th file (default: data/)")
    ap.add_argument("--weights", choices=("pow2", "binary"), default="pow2")
    ap.add_argument("--act-bits", type=int, default=8)
    ap.add_argument("--calib", type=int, default=1000, help="calibration images")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--synth", type=int, default=512, help="data-free: synthetic images")
    ap.add_argument("--synth-iters", type=int, default=200)
    ap.add_argument("--synth-batch", type=int, default=128)
    ap.add_argument("--synth-lr", type=float, default=0.1, help="Adam on the pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="artifact to write (.npz)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.command != "float" and args.out is None:
        ap.error("--out is required")
    if args.out is not None and args.out.suffix != ".npz":
        ap.error("--out must end in .npz")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    try:
        net = load_resnet(args.model, args.checkpoint)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report_x, report_y = load_cifar("report")
    result: dict[str, Any] = {"model": args.model, "command": " ".join(["python -m quant.classify",
                              *(argv if argv is not None else sys.argv[1:])]),
                              "split": SPLIT_TEXT}  # fmt: skip
    if args.command == "float":
        result["top1"] = float_top1(net, report_x, report_y)
        return _finish(args, result, t0)

    qdet = build_quant(net, args.weights, args.act_bits)
    teacher = teacher_of(net)
    if args.command == "datafree":
        synth = synthesize(net, args.synth, args.synth_iters, args.synth_batch, args.seed,
                           args.out.with_suffix(".synth.pt"), args.synth_lr)  # fmt: skip
        source: Any = SynthBatches(synth, args.seed)
        result["data"] = f"{args.synth} synthetic images from the BN statistics (no data)"
    else:
        train_x, _ = load_cifar("train")  # labels unused
        source = RealBatches(train_x, args.seed)
    n_calib = args.calib if args.command != "datafree" else min(args.calib, args.synth)
    calibrate(qdet, source, n_calib)
    if args.command in ("qat", "datafree") and args.steps > 0:
        losses = distill(qdet, teacher, source, args.steps, args.batch, args.lr,
                         args.out.with_suffix(".ckpt.pt"), args.ckpt_every)  # fmt: skip
        result["final_loss"] = float(np.mean(losses[-50:]))
    tag = {"ptq": "ptq", "qat": "qat", "datafree": "datafree"}[args.command]
    fmt = "w4a8" if args.weights == "pow2" else "binary"
    meta = {"command": result["command"], "split": SPLIT_TEXT, "weights": args.weights}
    art = export_artifact(qdet, args.model, f"{fmt}-{tag}", meta)
    result["top1"] = artifact_top1(art, report_x, report_y)
    art.metadata["report_top1"] = result["top1"]
    artmod.save(art, args.out)
    result["artifact"] = str(args.out)
    return _finish(args, result, t0)


def _finish(args: argparse.Namespace, result: dict[str, Any], t0: float) -> int:
    result["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(result, indent=1))
    if args.json is not None:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
