"""Hutchinson estimates of the Hessian trace of a loss w.r.t. each conv's weights (HAWQ-v2).

tr(H_l) = E[v_l^T (H v)_l] for Rademacher v (entries +-1): one Hessian-vector product by double
backpropagation per sample gives every layer's estimate at once (the cross terms
v_l^T H_lm v_m have mean zero). The loss is the distillation loss of quant.qat at the float
model itself: the normalised MSE of the head outputs of the QuantDetector in float mode against
their own detached values, whose Hessian is the Gauss-Newton matrix 2 J^T J / N (positive
semi-definite, what a small weight perturbation costs in output error).

Sensitivity of giving conv l the weight format F (:func:`format_sensitivity`):
``tr(H_l) / n_l * ||Q_F(w_l) - w_l||^2`` with Q_F the format's fake quantizer after its
MSE-optimal scale (quant.quantizers.WeightQuantizer.init_scale then forward).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from quant.model import QuantDetector
from quant.quantizers import WeightQuantizer


def rademacher(shape: torch.Size, gen: torch.Generator) -> Tensor:
    return torch.randint(0, 2, shape, generator=gen).float().mul_(2).sub_(1)


def hutchinson_traces(
    loss_fn: Callable[[], Tensor], params: dict[str, Tensor], samples: int, seed: int = 0,
    progress: bool = False,
) -> dict[str, float]:  # fmt: skip
    """Mean over ``samples`` Rademacher vectors of v_p^T (H v)_p for every tensor p in
    ``params`` (each with requires_grad), H the Hessian of ``loss_fn()`` (evaluated once)."""
    names = list(params)
    ps = [params[n] for n in names]
    loss = loss_fn()
    grads = torch.autograd.grad(loss, ps, create_graph=True)
    gen = torch.Generator().manual_seed(seed)
    acc = [0.0] * len(ps)
    for _ in tqdm(range(samples), desc="hutchinson", disable=not progress):
        vs = [rademacher(p.shape, gen) for p in ps]
        hv = torch.autograd.grad(grads, ps, grad_outputs=vs, retain_graph=True)
        for k, (v, h) in enumerate(zip(vs, hv, strict=True)):
            acc[k] += float((v * h).sum())
    return {n: a / samples for n, a in zip(names, acc, strict=True)}


def head_distill_loss(qdet: QuantDetector, x: Tensor) -> Callable[[], Tensor]:
    """The loss whose Hessian is measured: sum over heads of mean((y - y_ref)^2) / var(y_ref)
    with y_ref the float model's outputs on ``x`` (detached)."""

    def fn() -> Tensor:
        loss = torch.zeros(())
        for o in qdet.forward_real(x, quantize=False)[0]:
            r = o.detach()
            loss = loss + ((o - r) ** 2).mean() / r.var().clamp(min=1e-12)
        return loss

    return fn


def conv_traces(
    qdet: QuantDetector, x: Tensor, samples: int = 8, seed: int = 0, progress: bool = True
) -> dict[str, float]:
    """tr(H) of :func:`head_distill_loss` w.r.t. every conv's weight tensor of ``qdet`` (float
    mode; its mode and requires_grad flags are restored)."""
    mode = qdet.mode
    flags = {n: p.requires_grad for n, p in qdet.named_parameters()}
    for p in qdet.parameters():
        p.requires_grad_(False)
    # (a fixed conv, e.g. a route's channel selection, has given integer weights: no format)
    params = {n.name: qdet.weight[n.name] for n in qdet.conv_nodes() if not n.attrs.get("fixed")}
    for p in params.values():
        p.requires_grad_(True)
    qdet.mode = "float"
    try:
        return hutchinson_traces(head_distill_loss(qdet, x), params, samples, seed, progress)
    finally:
        qdet.mode = mode
        for n, p in qdet.named_parameters():
            p.requires_grad_(flags[n])


@torch.no_grad()
def quant_error(w: Tensor, fmt: str, bits: int) -> float:
    """||Q(w) - w||^2 of the format's per-channel quantizer (quant.quantizers.WeightQuantizer,
    pow2x2 included) at its MSE-optimal scale."""
    q = WeightQuantizer(w.shape[0], fmt, bits)
    q.init_scale(w)
    return float(((q(w) - w) ** 2).sum())


def format_sensitivity(
    qdet: QuantDetector, traces: dict[str, float], formats: dict[str, Sequence[tuple[str, int]]]
) -> dict[str, dict[tuple[str, int], float]]:
    """HAWQ-v2 sensitivity tr(H)/n * ||Q(w) - w||^2 of each (conv, format) in ``formats``."""
    # One joint Rademacher vector per sample leaves the cross terms v_l^T H_lm v_m in each
    # layer's estimate: with few samples a small layer's estimate can come out <= 0 (the true
    # Gauss-Newton trace is > 0); such estimates are floored at the smallest positive one.
    pos = [t for t in traces.values() if t > 0]
    floor = min(pos) if pos else 1.0
    out: dict[str, dict[tuple[str, int], float]] = {}
    for name, fmts in formats.items():
        w = qdet.weight[name].detach()
        t = max(traces[name], floor) / w.numel()
        out[name] = {f: t * quant_error(w, *f) for f in fmts}
    return out
