"""Batch norm folded into the convolutions: a darknet model as plain per-layer numpy parameters,
what QuantDetector quantizes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.darknet import ConvLayer, Darknet, Shape, activate


@dataclass
class FoldedLayer:
    """One darknet layer with batch norm folded into the conv: plain numpy and attributes."""

    index: int
    kind: str  # darknet section name: convolutional, shortcut, route, ...
    attrs: dict[str, object]  # the spec's fields (activation, size, stride, layers, ...)
    out_shape: Shape  # at the cfg's net size
    weight: np.ndarray | None = None  # (filters, in_channels / groups, size, size)
    bias: np.ndarray | None = None  # (filters,)


def fold_batchnorm(model: Darknet, dtype: type[np.floating] = np.float32) -> list[FoldedLayer]:
    """Every layer of `model` in order, convolutions with BN folded in:
    w' = w * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps),
    computed in float64 (eps = the model's, darknet's 1e-5 by default) then cast to `dtype`."""
    out: list[FoldedLayer] = []
    for spec, layer in zip(model.cfg.layers, model.layers, strict=True):
        attrs = {k: v for k, v in asdict(spec).items() if k not in ("index", "out_shape")}
        folded = FoldedLayer(spec.index, spec.kind, attrs, spec.out_shape)
        if isinstance(layer, ConvLayer):
            w = layer.conv.weight.detach().double().numpy()
            if layer.bn is not None:
                bn = layer.bn
                gamma = bn.weight.detach().double().numpy()
                beta = bn.bias.detach().double().numpy()
                mean = bn.running_mean.detach().double().numpy()
                var = bn.running_var.detach().double().numpy()
                k = gamma / np.sqrt(var + bn.eps)
                w = w * k[:, None, None, None]
                b = beta - mean * k
            else:
                assert layer.conv.bias is not None
                b = layer.conv.bias.detach().double().numpy()
            folded.weight = w.astype(dtype)
            folded.bias = b.astype(dtype)
        out.append(folded)
    return out


def conv_forward_folded(layer: FoldedLayer, x: Tensor) -> Tensor:
    """Run one folded convolutional layer (conv + bias + activation) with torch."""
    if layer.kind != "convolutional" or layer.weight is None or layer.bias is None:
        raise ValueError(f"layer {layer.index} is a {layer.kind}, not a convolution")
    a = layer.attrs
    y = F.conv2d(
        x,
        torch.from_numpy(layer.weight).to(x.dtype),
        torch.from_numpy(layer.bias).to(x.dtype),
        stride=int(a["stride"]),  # type: ignore[call-overload]
        padding=int(a["padding"]),  # type: ignore[call-overload]
        groups=int(a["groups"]),  # type: ignore[call-overload]
    )
    return activate(y, str(a["activation"]))
