"""Random stored batch-norm statistics for darknet test nets built from cfg text (their weights
come from torch's init under a fixed seed)."""

from __future__ import annotations

import torch

from models.darknet import Darknet


def random_bn(model: Darknet, seed: int = 0) -> None:
    """Every BN layer's running mean, running variance and beta drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.conv_layers:
            if layer.bn is not None:
                n = layer.bn.num_features
                layer.bn.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                layer.bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                layer.bn.bias.copy_(torch.randn(n, generator=g) * 0.1)
