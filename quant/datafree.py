"""Data-free quantization: synthesize images from the stored batch-norm statistics, run the
PTQ pipeline (calibration + layer-wise reconstruction) on them, then fine-tune by distillation
from the float model on them (--steps, the loop of quant.qat; 0 skips it).

    python -m quant.datafree --model yolo-fastest-xl-voc --dw-format pow2 --size 512 \
        --equalize-acts --threads 2 --out xl-w4a8-datafree.npz --eval

(the defaults are the measured recipe: 128 synthetic 160x160 images, 100 reconstruction steps per
conv, 1,000 distillation steps of batch 16; about 30 minutes for -XL on one CPU thread;
models/artifacts/*-datafree.NOTES.md)

Synthesis (ZeroQ / DeepInversion style): pixels are free parameters (through a sigmoid, so they
stay in [0, 1]) optimised by Adam so that, at every BN layer of the float model, the batch mean
and standard deviation of the conv output (before BN) match the running mean and sqrt(running
variance) stored in the weights file, plus a small total-variation prior for smooth images. No
real image is read at any point. The synthetic set is saved (<out>.synth.pt) after each batch,
the reconstruction checkpoints after every conv and the fine-tuning (<checkpoint>.ft.pt) every
--ckpt-every steps, so a killed run resumes.

--generator (generative data-free, GDFQ / Qimera style; quant/generator.py): instead of a fixed
optimised set, train a small DCGAN-like generator (latent -> image) on the same BN-statistics
loss plus two diversity terms, mode seeking (--gen-div) and class balance of the detector's
heads (--gen-cls), and a TV prior (--gen-tv); --gen-steps, --gen-batch, --gen-size, --gen-lr.
Then --images of its images calibrate and reconstruct, and the distillation draws --batch fresh
generated images at every step (an endless stream, no fixed set). Checkpoints: the generator
(<checkpoint>.gen.pt: weights, Adam, step, losses), the reconstruction (<checkpoint>) and the
distillation (<checkpoint>.ft.pt: model, Adam, schedule, step); latents are a function of
(--seed, step), so the same command resumes a killed run to the same result. --device
auto|cpu|cuda (auto: cuda when torch sees one) places the generator training and the
distillation. --plan and --dw-format as in quant.ptq / quant.qat. --out may not be one of the
command's inputs (the plan, the darknet files, a checkpoint): one line, exit 2.

    python -m quant.datafree --generator --model yolo-fastest-xl-voc \
        --plan plans/yolo-fastest-xl-voc-w4a8-mixed.json --size 512 --gen-steps 300 \
        --iters 40 --steps 300 --equalize-acts --out xl-df-gen.npz --eval

(measured: 0.706 VOC-sample mAP in 72 min on a loaded 2-core machine; not comparable with the
direct path's 0.562, which is all pow2 4-bit; models/artifacts/*-datafree-gen.NOTES.md)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from models.darknet import Darknet
from quant.checkpoint import checkpoint_failure, load_checkpoint, load_plain
from quant.cli import (
    build_detector,
    calibrate_and_reconstruct,
    checkpoint_path,
    common_parser,
    finish,
    parsed,
)
from quant.generator import Generator, GeneratorSource, train_generator
from quant.qat import TensorSampler, add_training_args, distill


def bn_loss_and_heads(model: Darknet, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Sum over BN layers of ||batch mean - running mean||^2 + ||batch std - running std||^2,
    each normalised by the channel count, and the model's head outputs on ``x``. The running
    statistics are those of the unfolded float model (``models.darknet`` keeps each conv's
    BatchNorm2d with the mean and variance of the .weights file; QuantDetector folds them)."""
    stats: list[Tensor] = []
    hooks = []
    for layer in model.conv_layers:
        if layer.bn is None:
            continue
        bn = layer.bn

        def hook(_m: object, _i: object, y: Tensor, bn: torch.nn.BatchNorm2d = bn) -> None:
            mean = y.mean(dim=(0, 2, 3))
            std = (y.var(dim=(0, 2, 3), unbiased=False) + bn.eps).sqrt()
            rstd = (bn.running_var + bn.eps).sqrt()
            stats.append(((mean - bn.running_mean) ** 2).mean() + ((std - rstd) ** 2).mean())

        hooks.append(layer.conv.register_forward_hook(hook))
    try:
        heads = model(x)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(stats).sum(), heads


def bn_statistics_loss(model: Darknet, x: Tensor) -> Tensor:
    """The BN-statistics loss of ``x`` (bn_loss_and_heads without the heads)."""
    return bn_loss_and_heads(model, x)[0]


def synthesize(
    model: Darknet, n: int, size: int, steps: int, batch: int, path: Path, seed: int = 0,
    tv_weight: float = 1e-3,
) -> Tensor:  # fmt: skip
    """(n, 3, size, size) synthetic images in [0, 1]; resumes from ``path`` batch by batch."""
    done: list[Tensor] = []
    if path.is_file():  # read with weights_only (no code from the file); a list of tensors
        done = load_plain(path, model=False).get("images")
        if not isinstance(done, list) or not all(isinstance(t, Tensor) for t in done):
            checkpoint_failure(path, "not a synthetic-image set of quant.datafree (no images)")
    model.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    for b in range(len(done), (n + batch - 1) // batch):
        m = min(batch, n - b * batch)
        logits = torch.randn(m, 3, size, size, generator=gen).mul_(0.5).requires_grad_(True)
        opt = torch.optim.Adam([logits], lr=0.05)
        bar = tqdm(range(steps), desc=f"synthesize {b + 1}/{(n + batch - 1) // batch}")
        for _ in bar:
            x = torch.sigmoid(logits)
            tv = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
                x[..., :, 1:] - x[..., :, :-1]
            ).abs().mean()
            loss = bn_statistics_loss(model, x) + tv_weight * tv
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        done.append(torch.sigmoid(logits).detach())
        tmp = path.with_suffix(".tmp")
        torch.save({"images": done}, tmp)
        tmp.replace(path)
    return torch.cat(done)[:n]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = common_parser(__doc__ or "")
    ap.add_argument("--images", type=int, default=128,
                    help="synthetic images (with --generator: generated images that calibrate "
                    "and reconstruct)")  # fmt: skip
    ap.add_argument("--synth-size", type=int, default=160)
    ap.add_argument("--synth-steps", type=int, default=150)
    ap.add_argument("--synth-batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=100, help="reconstruction steps per conv")
    g = ap.add_argument_group("--generator (quant.generator)")
    g.add_argument("--generator", action="store_true",
                   help="train a generator on the BN statistics instead of optimising a fixed "
                   "image set; distillation draws fresh generated images every step")  # fmt: skip
    g.add_argument("--gen-steps", type=int, default=400, help="generator training steps")
    g.add_argument("--gen-batch", type=int, default=16)
    g.add_argument("--gen-size", type=int, default=160, help="generated image size")
    g.add_argument("--gen-lr", type=float, default=1e-3)
    g.add_argument("--gen-div", type=float, default=0.1, help="mode-seeking term's weight")
    g.add_argument("--gen-cls", type=float, default=0.5, help="class-balance term's weight")
    g.add_argument("--gen-tv", type=float, default=1e-3, help="total-variation prior's weight")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the generator trains and the distillation runs (auto: cuda if "
                   "available); calibration and reconstruction stay on the CPU")  # fmt: skip
    add_training_args(ap, steps=1000, crop=None)
    args = ap.parse_args(argv)
    # --out must not be a file that only this command keeps its state in, either
    state = [generator_path(args), Path(str(args.out) + ".synth.pt")]
    args = parsed(args, argv, "quant.datafree", state)
    return args


def generator_path(args: argparse.Namespace) -> Path:
    return Path(str(checkpoint_path(args)) + ".gen.pt")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.generator:
        main_generator(args)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    net, qdet = build_detector(args, equalize=args.equalize)
    synth_path = Path(str(args.out) + ".synth.pt")
    x = synthesize(net, args.images, args.synth_size, args.synth_steps, args.synth_batch,
                   synth_path, args.seed)  # fmt: skip
    calibrate_and_reconstruct(args, qdet, x)
    finetune = "none"
    if args.steps > 0:
        ft_path = Path(str(checkpoint_path(args)) + ".ft.pt")
        ck = load_checkpoint(ft_path, qdet) or {"step": 0}
        source = TensorSampler(x, seed=args.seed * 1000 + int(ck["step"]))
        summary = distill(args, net, qdet, source, x, ft_path, ck, desc="fine-tune")
        finetune = (
            f"distillation from float on the synthetic images (flips), {args.steps} steps "
            f"({summary['weights_only_steps']} with float activations), batch {args.batch}, "
            f"Adam {args.lr} cosine; loss first/last 20 {summary['loss_first_last_20']}"
        )
    meta = {
        "calibration": f"none real: {args.images} images synthesized from the BN statistics "
        f"({args.synth_size}x{args.synth_size}, {args.synth_steps} Adam steps per batch)",
        "reconstruction": f"{args.iters} Adam steps per conv, batch {args.batch}",
        "fine_tuning": finetune,
        "equalization": bool(args.equalize),
        "equalize_acts": bool(args.equalize_acts),
    }
    method = "datafree: BN-statistics synthesis + layer-wise reconstruction"
    finish(args, qdet, method + (" + distillation" if args.steps > 0 else ""), meta, t0)


def resolve_device(name: str) -> torch.device:
    """--device: auto is cuda when torch sees one, else cpu (quant.qat's choice)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: torch sees no CUDA device", file=sys.stderr)
        raise SystemExit(2)
    return torch.device(name)


def main_generator(args: argparse.Namespace) -> None:
    """The --generator path: train the generator (checkpoint <checkpoint>.gen.pt), calibrate +
    reconstruct on --images of its images (<checkpoint>), distill on a fresh stream of them
    (<checkpoint>.ft.pt); each stage resumes from its checkpoint."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    net, qdet = build_detector(args, equalize=args.equalize)
    gen = Generator(args.gen_size)
    g = train_generator(net, gen, args.gen_steps, args.gen_batch, generator_path(args),
                        lr=args.gen_lr, seed=args.seed, tv_weight=args.gen_tv,
                        div_weight=args.gen_div, cls_weight=args.gen_cls,
                        ckpt_every=args.ckpt_every, device=device)  # fmt: skip
    t_gen = time.perf_counter() - t0
    # calibration / reconstruction set: latents of stream seed+1 (the training used stream seed)
    x = GeneratorSource(gen, seed=args.seed + 1, device=device, chunk=args.gen_batch).batch(
        args.images
    )
    with torch.no_grad():
        calib_bn = float(bn_statistics_loss(net, x[: args.gen_batch]))
    calibrate_and_reconstruct(args, qdet, x)
    finetune = "none"
    if args.steps > 0:
        ft_path = Path(str(checkpoint_path(args)) + ".ft.pt")
        ck = load_checkpoint(ft_path, qdet) or {"step": 0}
        # distillation stream seed+2, batch k = step k, so a resumed run sees the same images
        source = GeneratorSource(gen, seed=args.seed + 2, device=device, start=int(ck["step"]),
                                 chunk=args.gen_batch)  # fmt: skip
        summary = distill(args, net, qdet, source, x, ft_path, ck, device=device, desc="fine-tune")
        qdet.cpu()
        net.cpu()
        finetune = (
            f"distillation from float on {args.batch} fresh generated images every step, "
            f"{args.steps} steps ({summary['weights_only_steps']} with float activations), "
            f"Adam {args.lr} cosine; loss first/last 20 {summary['loss_first_last_20']}"
        )
    meta = {
        "calibration": f"none real: {args.images} images of a generator trained on the BN "
        f"statistics ({args.gen_size}x{args.gen_size}); BN loss of their first "
        f"{args.gen_batch}: {calib_bn:.4f}",
        "generator": {
            "steps": args.gen_steps,
            "batch": args.gen_batch,
            "lr": args.gen_lr,
            "loss": f"BN statistics + {args.gen_div} x mode seeking + {args.gen_cls} x class "
            f"balance + {args.gen_tv} x total variation",
            **gen.config(),
            "bn_loss_first_last_20": g["bn_loss_first_last_20"],
            "class_balance_first_last_20": g["class_balance_first_last_20"],
            "seconds": round(t_gen, 1),
        },
        "reconstruction": f"{args.iters} Adam steps per conv, batch {args.batch}",
        "fine_tuning": finetune,
        "device": str(device),
        "equalization": bool(args.equalize),
        "equalize_acts": bool(args.equalize_acts),
    }
    method = "datafree-generator: BN-statistics generator + layer-wise reconstruction"
    finish(args, qdet, method + (" + distillation" if args.steps > 0 else ""), meta, t0)


if __name__ == "__main__":
    main()
