"""Layer-wise reconstruction (AdaRound/BRECQ-style objective) for post-training quantization.

Sequential, one conv at a time in graph order: the layer reads the *quantized* network's
activations (so it can compensate the error of everything before it) and is fitted to the
*float* network's output of that layer (post-activation, before the output quantizer), by Adam on
its latent weights, per-channel log2 scale and bias, with straight-through rounding. AdaRound
optimises a soft rounding mask instead; with 4-bit pow2 weights the grid is a factor of two
between neighbours, and the STE on latent weights plus a learned scale moves weights across it
directly. Activation ranges are calibrated beforehand and stay fixed here.

Resumable: ``state`` (a dict saved by the caller) records how many convs are done; on resume the
caches are rebuilt by running the finished layers without optimising them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from quant.integer import INPUT
from quant.model import QuantDetector


def _fit_layer(
    qdet: QuantDetector, name: str, x_q: Tensor, target: Tensor, iters: int, batch: int,
    gen: torch.Generator, lr: float = 1e-3,
) -> tuple[float, float]:  # fmt: skip
    """Optimise one conv; returns (loss before, loss after) on the whole set."""
    n = qdet.by_name[name]
    w, b, wq = qdet.weight[name], qdet.bias[name], qdet.wq[name]
    w_scale = float(w.detach().abs().mean()) + 1e-12
    t_scale = float(target.std()) + 1e-12
    opt = torch.optim.Adam([
        {"params": [w], "lr": lr * w_scale},
        {"params": [wq.log2_scale], "lr": lr},
        {"params": [b], "lr": lr * t_scale},
    ])  # fmt: skip
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(iters, 1))

    def loss_on(idx: Tensor | slice) -> Tensor:
        y = qdet._conv_real(n, x_q[idx], quantize=True)
        return F.mse_loss(y, target[idx])

    with torch.no_grad():
        before = float(loss_on(slice(None)))
    saved = [w.detach().clone(), b.detach().clone(), wq.log2_scale.detach().clone()]
    for _ in range(iters):
        idx = torch.randint(0, x_q.shape[0], (min(batch, x_q.shape[0]),), generator=gen)
        loss = loss_on(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        after = float(loss_on(slice(None)))
        if after > before:  # Adam noise made it worse (fine grids, e.g. int8): keep the start
            for p, v in zip((w, b, wq.log2_scale), saved, strict=True):
                p.copy_(v)
            after = before
    return before, after


def reconstruct(
    qdet: QuantDetector,
    x: Tensor,
    iters: int = 200,
    batch: int = 8,
    state: dict | None = None,
    save: Callable[[dict], None] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Run the sequential reconstruction on images ``x`` (N, 3, H, W in [0, 1]).

    ``state`` is {"done": k, "log": [...]}; ``save(state)`` is called after each conv so a killed
    run resumes where it stopped. Returns the final state with per-layer losses.
    """
    state = state or {"done": 0, "log": []}
    gen = torch.Generator().manual_seed(seed)
    fvals: dict[str, Tensor] = {INPUT: x}
    qvals: dict[str, Tensor] = {INPUT: x}
    last = qdet._last_use()
    convs = 0
    bar = tqdm(qdet.nodes, desc="reconstruct", unit="node", disable=not progress)
    for k, n in enumerate(bar):
        with torch.no_grad():
            fvals[n.name] = qdet.run_node_real(n, [fvals[s] for s in n.inputs], quantize=False)
        if n.op == "conv":
            if convs >= state["done"]:
                if iters > 0 and not n.attrs.get("fixed"):  # given weights: nothing to fit
                    before, after = _fit_layer(qdet, n.name, qvals[n.inputs[0]], fvals[n.name],
                                               iters, batch, gen)  # fmt: skip
                    state["log"].append({"node": n.name, "mse_before": before, "mse_after": after})
                    bar.set_postfix(node=n.name, gain=f"{before / max(after, 1e-20):.2f}x")
                state["done"] = convs + 1
                qdet.invalidate()
                if save is not None:
                    save(state)
            convs += 1
        with torch.no_grad():
            qvals[n.name] = qdet.run_node_real(n, [qvals[s] for s in n.inputs], quantize=True)
        for s in n.inputs:
            if last.get(s) == k:
                fvals.pop(s, None)
                qvals.pop(s, None)
    qdet.invalidate()
    return state
