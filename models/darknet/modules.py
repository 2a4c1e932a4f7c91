"""Darknet layers as PyTorch modules: `Darknet`, built from a parsed cfg, loaded from weights.

Batch norm divides by sqrt(var + 1e-5) and adds beta after scaling (darknet's normalize); leaky is
x > 0 ? x : 0.1 * x. `Darknet.forward` returns the raw outputs of the layers feeding the [yolo]
layers (no sigmoid, no decoding) and, on request, every layer's output for calibration.
"""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sw.darknet.cfg import (
    ConvSpec,
    DarknetConfig,
    DropoutSpec,
    LayerSpec,
    MaxpoolSpec,
    RouteSpec,
    ShortcutSpec,
    UpsampleSpec,
    YoloSpec,
    infer_shapes,
    parse_cfg,
)
from sw.darknet.weights import WeightsHeader, read_weights

BN_EPS = 1e-5  # darknet (AlexeyAB) normalize: (x - mean) / sqrt(var + .00001f)
LEAKY_SLOPE = 0.1  # darknet leaky: x > 0 ? x : .1 * x


def activate(x: Tensor, activation: str) -> Tensor:
    """A darknet activation of ACTIVATIONS (leaky, relu, relu6, linear)."""
    if activation == "leaky":
        return F.leaky_relu(x, LEAKY_SLOPE)
    if activation == "relu":
        return F.relu(x)
    if activation == "relu6":
        return F.relu6(x)
    return x  # linear


class ConvLayer(nn.Module):
    """[convolutional]: conv, optional batch norm (eval statistics), activation. A forward hook
    on this module sees the output after the activation, i.e. what the next layer reads."""

    def __init__(self, spec: ConvSpec, bn_eps: float = BN_EPS) -> None:
        super().__init__()
        self.spec = spec
        self.conv = nn.Conv2d(
            spec.in_channels,
            spec.filters,
            spec.size,
            stride=spec.stride,
            padding=spec.padding,
            groups=spec.groups,
            bias=not spec.batch_normalize,  # with BN, darknet's bias is BN's beta
        )
        self.bn = nn.BatchNorm2d(spec.filters, eps=bn_eps) if spec.batch_normalize else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        return activate(y, self.spec.activation)


class _SpecLayer(nn.Module):
    """A parameter-free layer driven by its spec; printing the module shows the spec."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.spec = spec

    def extra_repr(self) -> str:
        hidden = {"index", "section", "line"}
        return ", ".join(
            f"{f.name}={getattr(self.spec, f.name)}"
            for f in fields(self.spec)
            if f.name not in hidden
        )


class ShortcutLayer(_SpecLayer):
    """[shortcut]: previous output + output of layer `source`, then the activation."""

    spec: ShortcutSpec

    def forward(self, x: Tensor, other: Tensor) -> Tensor:
        return activate(x + other, self.spec.activation)


class RouteLayer(_SpecLayer):
    """[route]: channel concatenation of the listed layers (a single one passes through)."""

    spec: RouteSpec

    def forward(self, inputs: list[Tensor]) -> Tensor:
        g, gid = self.spec.groups, self.spec.group_id
        if g > 1:
            inputs = [t.chunk(g, dim=1)[gid] for t in inputs]
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)


class MaxpoolLayer(_SpecLayer):
    """[maxpool] with darknet's padding: `padding` cells of -inf, `padding // 2` before."""

    spec: MaxpoolSpec

    def forward(self, x: Tensor) -> Tensor:
        s = self.spec
        before = s.padding // 2
        after = s.padding - before
        if s.padding:
            x = F.pad(x, (before, after, before, after), value=-math.inf)
        return F.max_pool2d(x, s.size, s.stride)


class UpsampleLayer(_SpecLayer):
    """[upsample]: nearest neighbour by an integer factor."""

    spec: UpsampleSpec

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=self.spec.stride, mode="nearest")


class PassLayer(_SpecLayer):
    """[dropout] (identity at inference) and [yolo] (the head output is its input, raw)."""

    spec: DropoutSpec | YoloSpec

    def forward(self, x: Tensor) -> Tensor:
        return x


def _build_layer(spec: LayerSpec, bn_eps: float) -> nn.Module:
    if isinstance(spec, ConvSpec):
        return ConvLayer(spec, bn_eps)
    if isinstance(spec, ShortcutSpec):
        return ShortcutLayer(spec)
    if isinstance(spec, RouteSpec):
        return RouteLayer(spec)
    if isinstance(spec, MaxpoolSpec):
        return MaxpoolLayer(spec)
    if isinstance(spec, UpsampleSpec):
        return UpsampleLayer(spec)
    if isinstance(spec, DropoutSpec | YoloSpec):
        return PassLayer(spec)
    raise TypeError(f"no module for {type(spec).__name__}")


class Darknet(nn.Module):
    """A darknet detector as a PyTorch module (built in eval mode, random parameters until
    `load_weights`).

    `forward(x)` takes N x C x H x W floats, RGB in [0, 1] (darknet's input convention; resizing
    or letterboxing is the caller's business) and returns the raw outputs of the layers feeding
    the [yolo] layers, in cfg order: N x (anchors * (classes + 5)) x H/s x W/s each. With
    `return_all=True` it also returns every layer's output (index = darknet layer number).
    """

    def __init__(self, cfg: DarknetConfig, bn_eps: float = BN_EPS) -> None:
        super().__init__()
        self.cfg = cfg
        self.bn_eps = bn_eps
        self.layers = nn.ModuleList(_build_layer(s, bn_eps) for s in cfg.layers)
        # Outputs that a later layer reads other than as "previous layer"; only these are kept
        # when not returning everything.
        keep: set[int] = set(cfg.head_indices)
        for s in cfg.layers:
            if isinstance(s, ShortcutSpec):
                keep.add(s.source)
            elif isinstance(s, RouteSpec):
                keep.update(s.layers)
        self._keep = frozenset(keep)
        self._checked_sizes: set[tuple[int, int]] = {(cfg.height, cfg.width)}
        self.eval()

    @classmethod
    def from_files(
        cls, cfg_path: str | Path, weights_path: str | Path, bn_eps: float = BN_EPS
    ) -> Darknet:
        model = cls(parse_cfg(cfg_path), bn_eps=bn_eps)
        model.load_weights(weights_path)
        return model

    @property
    def conv_layers(self) -> list[ConvLayer]:
        return [m for m in self.layers if isinstance(m, ConvLayer)]

    def load_weights(self, path: str | Path) -> WeightsHeader:
        """Load a darknet .weights file; the file must hold exactly the floats the cfg needs."""
        header, convs = read_weights(path, [layer.spec for layer in self.conv_layers])
        with torch.no_grad():
            for layer, cw in zip(self.conv_layers, convs, strict=True):
                if layer.bn is not None:
                    assert cw.bn is not None
                    beta, gamma, mean, var = (torch.from_numpy(a) for a in cw.bn)
                    layer.bn.bias.copy_(beta)
                    layer.bn.weight.copy_(gamma)
                    layer.bn.running_mean.copy_(mean)
                    layer.bn.running_var.copy_(var)
                else:
                    assert layer.conv.bias is not None and cw.bias is not None
                    layer.conv.bias.copy_(torch.from_numpy(cw.bias))
                layer.conv.weight.copy_(torch.from_numpy(cw.weight))
        return header

    def _check_size(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.cfg.channels:
            raise ValueError(
                f"{self.cfg.name}: expected N x {self.cfg.channels} x H x W input, "
                f"got {tuple(x.shape)}"
            )
        hw = (int(x.shape[2]), int(x.shape[3]))
        if hw not in self._checked_sizes:
            infer_shapes(self.cfg, *hw)  # raises a readable DarknetError instead of a cat error
            self._checked_sizes.add(hw)

    @overload
    def forward(self, x: Tensor, return_all: Literal[False] = ...) -> list[Tensor]: ...

    @overload
    def forward(
        self, x: Tensor, return_all: Literal[True]
    ) -> tuple[list[Tensor], list[Tensor]]: ...

    def forward(
        self, x: Tensor, return_all: bool = False
    ) -> list[Tensor] | tuple[list[Tensor], list[Tensor]]:
        self._check_size(x)
        outputs: list[Tensor | None] = []
        heads: list[Tensor] = []
        prev = x
        for spec, layer in zip(self.cfg.layers, self.layers, strict=True):
            if isinstance(spec, ShortcutSpec):
                other = outputs[spec.source]
                assert other is not None
                y = layer(prev, other)
            elif isinstance(spec, RouteSpec):
                ins = [outputs[i] for i in spec.layers]
                y = layer(ins)
            else:
                y = layer(prev)
                if isinstance(spec, YoloSpec):
                    heads.append(y)
            outputs.append(y if return_all or spec.index in self._keep else None)
            prev = y
        if return_all:
            return heads, [t for t in outputs if t is not None]
        return heads
