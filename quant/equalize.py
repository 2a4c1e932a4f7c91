"""Function-preserving rescaling of conv -> depthwise pairs: cross-layer range equalization of
the weights (``equalize_depthwise``) and activation-range equalization of a trained network
(``equalize_activations``)."""

from __future__ import annotations

import torch
from torch import Tensor

from quant.model import QuantDetector


def _dense_to_depthwise_pairs(qdet: QuantDetector) -> list[tuple[str, str]]:
    """(producer, depthwise consumer) pairs where a conv's output feeds only that depthwise
    conv, so rescaling the producer's output channels is invisible to the rest of the graph."""
    consumers: dict[str, list[str]] = {}
    for n in qdet.nodes:
        for s in n.inputs:
            consumers.setdefault(s, []).append(n.name)
    pairs = []
    for n in qdet.nodes:
        src = n.inputs[0]
        if (
            n.op == "conv"
            and n.attrs["depthwise"]
            and src in qdet.by_name
            and qdet.by_name[src].op == "conv"
            and not qdet.by_name[src].attrs.get("fixed")  # given integer weights stay
            and consumers.get(src) == [n.name]
        ):
            pairs.append((src, n.name))
    return pairs


@torch.no_grad()
def equalize_depthwise(qdet: QuantDetector, max_factor: float = 16.0) -> int:
    """Cross-layer range equalization (Nagel et al. 2019) of conv -> depthwise -> conv chains.

    Scaling channel c of a ReLU-like producer by 1/f and the consumer's input channel by f is
    exact for positive-homogeneous activations (leaky, relu, linear) when the producer feeds only
    that consumer. Here the depthwise layer is the middle of the pair: its per-channel weight
    ranges vary by orders of magnitude (dead channels with huge folded weights), which a per-
    channel scale absorbs, but its *input* and *output* activation ranges are per tensor, so
    equalizing the producer's output channels makes the shared activation scale fit all of them.
    Returns the number of equalized pairs.
    """
    pairs = _dense_to_depthwise_pairs(qdet)
    for src, dw in pairs:
        w1, b1 = qdet.weight[src], qdet.bias[src]
        w2 = qdet.weight[dw]
        r1 = w1.reshape(w1.shape[0], -1).abs().amax(dim=1)
        r2 = w2.reshape(w2.shape[0], -1).abs().amax(dim=1)
        # s = sqrt(r1 / r2) equalizes both ranges at sqrt(r1 * r2); clamp to stay sane.
        f = torch.sqrt(r1 / r2.clamp(min=1e-12)).clamp(1 / max_factor, max_factor)
        f = torch.where((r1 > 0) & (r2 > 0), f, torch.ones_like(f))
        w1.div_(f.view(-1, 1, 1, 1))
        b1.div_(f)
        w2.mul_(f.view(-1, 1, 1, 1))
        qdet.wq[src].init_scale(w1)
        qdet.wq[dw].init_scale(w2)
    qdet.invalidate()
    return len(pairs)


@torch.no_grad()
def equalize_activations(
    qdet: QuantDetector, batches: list[Tensor], max_factor: float = 16.0
) -> int:
    """Activation-range equalization of conv -> depthwise pairs, on a trained network.

    The depthwise input is one per-tensor activation range, but the producer's output channels
    span very different ranges, so the narrow channels get few codes (on fine-tuned
    Yolo-Fastest-XL, 8-bit quantization of the very first such tensor alone caused half of the
    network's activation-quantization error). Channel c of the producer is scaled by
    g_c = span_max / span_c (clamped to [1, max_factor], rounded down to a power of two) and the
    depthwise weights of channel c by 1 / g_c. Both convs have a per-output-channel weight
    scale, which takes the factor exactly (log2 scale shifted by log2 g_c): the fake-quantized
    weights keep their grid positions, so the network computes the same function bit for bit
    (leaky/relu/linear are positively homogeneous); only the activation ranges change. Spans are
    measured with the weights fake-quantized and activations in float. Re-calibrate the
    activation ranges afterwards. Returns the number of equalized pairs."""
    pairs = _dense_to_depthwise_pairs(qdet)
    was = [q.enabled for q in qdet.aq]
    qdet.set_act_quant(False)
    lo: dict[str, Tensor] = {}
    hi: dict[str, Tensor] = {}
    for x in batches:
        _, kept = qdet.forward_real(x, quantize=True, keep={p for p, _ in pairs})
        for name, t in kept.items():
            mn, mx = t.amin(dim=(0, 2, 3)), t.amax(dim=(0, 2, 3))
            lo[name] = torch.minimum(lo[name], mn) if name in lo else mn
            hi[name] = torch.maximum(hi[name], mx) if name in hi else mx
    for src, dw in pairs:
        span = hi[src].clamp(min=0) - lo[src].clamp(max=0)
        g = (span.max() / span.clamp(min=1e-12)).clamp(1.0, max_factor)
        # powers of two: w * g and s * g are then exact in float, so no latent weight sitting
        # on a rounding boundary can flip to the next level
        g = torch.where(span > 0, torch.exp2(torch.floor(torch.log2(g))), torch.ones_like(g))
        qdet.weight[src].mul_(g.view(-1, 1, 1, 1))
        qdet.bias[src].mul_(g)
        qdet.wq[src].log2_scale.add_(torch.log2(g))
        qdet.weight[dw].div_(g.view(-1, 1, 1, 1))
        qdet.wq[dw].log2_scale.sub_(torch.log2(g))
    for q, e in zip(qdet.aq, was, strict=True):
        q.enabled = e
    qdet.invalidate()
    return len(pairs)
