"""Post-training steps shared by the commands: activation calibration and bias correction."""

from __future__ import annotations

import torch
from torch import Tensor

from quant.integer import INPUT
from quant.model import QuantDetector


@torch.no_grad()
def calibrate_activations(
    qdet: QuantDetector, batches: list[Tensor], per_tensor: int = 400_000, seed: int = 0,
    quantized_weights: bool = False,
) -> None:  # fmt: skip
    """MSE-optimal clip range of every activation quant group from float-mode outputs (tied
    concat groups get the union of their producers' values). ``quantized_weights``: measure
    them with the weights fake-quantized (activations in float), as QAT does when it switches
    activation quantization on after weights-only steps."""
    was = [q.enabled for q in qdet.aq]
    qdet.set_act_quant(False)
    gen = torch.Generator().manual_seed(seed)
    samples: dict[int, list[Tensor]] = {}
    producers = {n.name: n.group for n in qdet.nodes if n.op in ("conv", "add", "avgpool")}
    for x in batches:
        _, kept = qdet.forward_real(x, quantize=quantized_weights, keep=set(producers))
        for name, t in kept.items():
            flat = t.flatten()
            k = min(per_tensor // len(batches), flat.numel())
            idx = torch.randint(0, flat.numel(), (k,), generator=gen)
            # keep the extremes: the MSE search starts from them
            samples.setdefault(producers[name], []).extend([flat[idx], flat.min()[None],
                                                            flat.max()[None]])  # fmt: skip
    for g, parts in samples.items():
        qdet.aq[g].calibrate(torch.cat(parts))
    for q, e in zip(qdet.aq, was, strict=True):
        q.enabled = e
    qdet.invalidate()


@torch.no_grad()
def bias_correction(qdet: QuantDetector, batches: list[Tensor]) -> None:
    """Empirical bias correction: per conv, subtract the mean (over N, H, W) of the
    pre-activation error the weight quantization adds, with the float network's inputs."""
    for n in qdet.conv_nodes():
        if n.attrs.get("fixed"):  # given integer weights (option-A shortcuts): nothing to correct
            continue
        a = n.attrs
        errs = []
        for x in batches:
            _, kept = qdet.forward_real(x, quantize=False, keep={n.inputs[0]} - {INPUT})
            inp = x if n.inputs[0] == INPUT else kept[n.inputs[0]]
            w = qdet.weight[n.name]
            wq = qdet.wq[n.name](w)
            d = torch.nn.functional.conv2d(inp, wq - w, None, a["stride"], a["pad"], 1,
                                           a["groups"])  # fmt: skip
            errs.append(d.mean(dim=(0, 2, 3)))
        qdet.bias[n.name].sub_(torch.stack(errs).mean(0))
    qdet.invalidate()
