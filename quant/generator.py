"""Zero-shot generator for data-free quantization (GDFQ / ZeroQ-generator style).

A small unconditional generator (latent z -> linear -> upsample + conv + BN + LeakyReLU blocks
-> 3 x S x S image in [0, 1] through a sigmoid; DCGAN-like) is trained so that, at every BN
layer of the FLOAT detector (models.darknet.Darknet, before folding: its BatchNorm2d modules
keep the running mean and variance read from the .weights file), the batch statistics of the
conv output on its images match the stored ones (quant.datafree.bn_statistics_loss), plus two
diversity terms and a small total-variation prior:

- mode seeking (MSGAN): 1 / (mean|G(z1) - G(z2)| / mean|z1 - z2|) over the two batch halves,
  so that different latents give different images;
- class balance: log(C) - H(p), p the batch's class distribution of the detector's heads (each
  cell and anchor's sigmoid class scores weighted by its sigmoid objectness), so that the batch
  looks like objects of all classes and not one mode.

The generator's own BN layers always normalise by the batch (track_running_stats=False): its
images are the same function of a batch of latents in training and in use, so what the BN loss
optimised is what calibration and distillation see. Its images are an endless stream of
calibration / distillation data (GeneratorSource, a quant.qat BatchSource).

Determinism and resuming: the latents of training step k and of the k-th GeneratorSource batch
are drawn from CPU generators seeded with (seed, k) only, so no RNG state needs saving; the
generator, its Adam state, the step count and the losses go to a checkpoint (torch.save of
plain state dicts, read back with weights_only=True by quant.checkpoint.load_plain) every
``ckpt_every`` steps, and a resumed run is bit-identical to an uninterrupted one on the CPU.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from models.darknet import Darknet
from quant.checkpoint import checkpoint_failure, load_plain
from sw.darknet.cfg import YoloSpec


class Generator(nn.Module):
    """z (z_dim) -> 3 x size x size in [0, 1]; ``ups`` upsampling blocks from size / 2^ups."""

    def __init__(self, size: int, z_dim: int = 128, width: int = 64, ups: int = 3) -> None:
        super().__init__()
        self.size, self.z_dim, self.width, self.ups = size, z_dim, width, ups
        self.s0 = max(1, math.ceil(size / 2**ups))
        self.fc = nn.Linear(z_dim, width * self.s0 * self.s0)
        self.bn0 = nn.BatchNorm2d(width, track_running_stats=False)
        blocks: list[nn.Module] = []
        ch = width
        for i in range(ups):
            out = max(16, width // 4) if i == ups - 1 else width
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(ch, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out, track_running_stats=False),
                nn.LeakyReLU(0.2),
            ]
            ch = out
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(ch, 3, 3, padding=1)

    def config(self) -> dict[str, int]:
        return {"size": self.size, "z_dim": self.z_dim, "width": self.width, "ups": self.ups}

    def forward(self, z: Tensor) -> Tensor:
        h = self.bn0(self.fc(z).view(len(z), self.width, self.s0, self.s0))
        h = self.blocks(h)
        if h.shape[-1] != self.size:
            h = F.interpolate(h, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return torch.sigmoid(self.out(h))


def latent(step: int, n: int, z_dim: int, seed: int) -> Tensor:
    """The latents of step / batch ``step`` (CPU, a function of seed and step only)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randn(n, z_dim, generator=g)


def total_variation(x: Tensor) -> Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
        x[..., :, 1:] - x[..., :, :-1]
    ).abs().mean()


def mode_seeking(x: Tensor, z: Tensor, eps: float = 1e-5) -> Tensor:
    """MSGAN's term to minimise: 1 / (mean|x1 - x2| / mean|z1 - z2|) over the batch halves."""
    h = len(x) // 2
    if h == 0:
        return x.new_zeros(())
    ratio = (x[:h] - x[h : 2 * h]).abs().mean() / (z[:h] - z[h : 2 * h]).abs().mean()
    return 1.0 / (ratio + eps)


def yolo_specs(net: Darknet) -> list[YoloSpec]:
    return [s for s in net.cfg.layers if isinstance(s, YoloSpec)]


def class_balance(heads: list[Tensor], specs: list[YoloSpec], eps: float = 1e-8) -> Tensor:
    """log(C) - entropy of the batch's class distribution (>= 0, 0 when balanced): each head
    cell and anchor contributes sigmoid(objectness) * sigmoid(class scores)."""
    mass: Tensor | None = None
    for h, s in zip(heads, specs, strict=True):
        n, c, hh, ww = h.shape
        a = len(s.mask)
        t = h.view(n, a, c // a, hh, ww)
        m = (torch.sigmoid(t[:, :, 4:5]) * torch.sigmoid(t[:, :, 5:])).sum(dim=(0, 1, 3, 4))
        mass = m if mass is None else mass + m
    assert mass is not None, "a detector without [yolo] heads"
    p = mass / (mass.sum() + eps)
    return math.log(len(p)) + (p * (p + eps).log()).sum()


def generator_loss(
    net: Darknet, gen: Generator, z: Tensor, tv_weight: float, div_weight: float,
    cls_weight: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:  # fmt: skip
    """(total loss, its parts as floats: bn, ms, cls, tv) of the generator's images of ``z``."""
    from quant.datafree import bn_loss_and_heads

    x = gen(z)
    bn, heads = bn_loss_and_heads(net, x)
    ms = mode_seeking(x, z)
    cb = class_balance(heads, yolo_specs(net))
    tv = total_variation(x)
    loss = bn + tv_weight * tv + div_weight * ms + cls_weight * cb
    parts = {"bn": float(bn.detach()), "ms": float(ms.detach()), "cls": float(cb.detach()),
             "tv": float(tv.detach())}  # fmt: skip
    return loss, parts


def load_generator_checkpoint(path: Path, gen: Generator) -> dict[str, Any] | None:
    """The checkpoint at ``path`` loaded into ``gen`` (None if absent); its other entries."""
    if not path.is_file():
        return None
    ck = load_plain(path, model=False)
    if not isinstance(ck.get("generator"), dict) or "step" not in ck or "opt" not in ck:
        checkpoint_failure(path, "not a generator checkpoint of quant.datafree (no generator)")
    if ck.get("config") != gen.config():
        checkpoint_failure(path, f"generator {ck.get('config')} does not match {gen.config()}")
    try:
        gen.load_state_dict(ck.pop("generator"))
    except RuntimeError as e:
        checkpoint_failure(path, f"generator state does not fit: {str(e).splitlines()[0]}")
    return ck


def train_generator(
    net: Darknet, gen: Generator, steps: int, batch: int, path: Path, *, lr: float = 1e-3,
    seed: int = 0, tv_weight: float = 1e-3, div_weight: float = 0.1, cls_weight: float = 0.0,
    ckpt_every: int = 50, device: torch.device | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train ``gen`` against the frozen float ``net`` for ``steps`` steps (resuming from the
    checkpoint at ``path``, written every ``ckpt_every`` steps and at the end). Returns
    {"steps", "bn_loss_first_last_20", "losses"} (losses: one dict of the parts per step)."""
    device = device or torch.device("cpu")
    net.eval().requires_grad_(False)
    net.to(device)
    gen.to(device).train()
    opt = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    ck = load_generator_checkpoint(path, gen)
    step, losses = 0, []
    if ck is not None:
        opt.load_state_dict(ck["opt"])
        step, losses = int(ck["step"]), list(ck.get("losses", []))
        if step:
            print(f"resuming the generator from {path}: step {step}")

    def save() -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"generator": gen.state_dict(), "opt": opt.state_dict(), "step": step,
                    "losses": losses, "config": gen.config()}, tmp)  # fmt: skip
        os.replace(tmp, path)

    bar = tqdm(total=steps, initial=min(step, steps), desc="generator")
    while step < steps:
        z = latent(step, batch, gen.z_dim, seed).to(device)
        loss, parts = generator_loss(net, gen, z, tv_weight, div_weight, cls_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(parts)
        bar.update(1)
        bar.set_postfix(bn=f"{parts['bn']:.3f}", ms=f"{parts['ms']:.2f}", cls=f"{parts['cls']:.2f}")
        if step % ckpt_every == 0 or step == steps:
            save()
    bar.close()
    net.cpu()
    gen.eval()
    bn = [p["bn"] for p in losses]

    def mean(v: list[float]) -> float | None:
        return round(sum(v) / len(v), 4) if v else None

    return {
        "steps": steps,
        "bn_loss_first_last_20": [mean(bn[:20]), mean(bn[-20:])],
        "class_balance_first_last_20": [
            mean([p["cls"] for p in losses[:20]]),
            mean([p["cls"] for p in losses[-20:]]),
        ],  # fmt: skip
        "losses": losses,
    }


class GeneratorSource:
    """quant.qat BatchSource: the generator's images of fresh latents at every call, (n, 3, S, S)
    in [0, 1] on the CPU, no gradients. Call k (from ``start``) draws the latents of (seed, k),
    in chunks of at most ``chunk`` (the generator normalises by the batch, so a chunk of the
    training batch size gives images like those it was trained on); a source made with
    ``start=k`` continues exactly where one that made k batches stands (resuming)."""

    def __init__(
        self, gen: Generator, seed: int = 0, device: torch.device | None = None, start: int = 0,
        chunk: int = 16,
    ) -> None:  # fmt: skip
        self.gen, self.seed, self.calls, self.chunk = gen, seed, start, chunk
        self.device = device or torch.device("cpu")

    @torch.no_grad()
    def batch(self, n: int) -> Tensor:
        self.gen.to(self.device)
        z = latent(self.calls, n, self.gen.z_dim, self.seed)
        self.calls += 1
        return torch.cat([self.gen(c.to(self.device)).cpu() for c in z.split(self.chunk)])
