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
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from models.darknet import Darknet
from quant.checkpoint import checkpoint_failure, load_checkpoint, load_plain
from quant.cli import calibrate_and_reconstruct, checkpoint_path, common_parser, finish
from quant.qat import TensorSampler, add_training_args, distill
from quant.zoo import build


def bn_statistics_loss(model: Darknet, x: Tensor) -> Tensor:
    """Sum over BN layers of ||batch mean - running mean||^2 + ||batch std - running std||^2,
    each normalised by the channel count."""
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
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(stats).sum()


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


def main(argv: list[str] | None = None) -> None:
    ap = common_parser(__doc__ or "")
    ap.add_argument("--images", type=int, default=128, help="synthetic images")
    ap.add_argument("--synth-size", type=int, default=160)
    ap.add_argument("--synth-steps", type=int, default=150)
    ap.add_argument("--synth-batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=100, help="reconstruction steps per conv")
    add_training_args(ap, steps=1000, crop=None)
    args = ap.parse_args(argv)
    args.argv, args.module = argv, "quant.datafree"
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    net, qdet = build(args.model, args.bits, args.dw_format, args.act_bits, args.equalize)
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


if __name__ == "__main__":
    main()
