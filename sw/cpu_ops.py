"""The layers a plan leaves to the ARM cores, computed on (C, H, W) code arrays.

Upsample, maxpool, the global average pool and the concats that cannot be done by addressing
always run here; so does a convolution or add the accelerator build cannot run (compiled with
``cpu_fallback``). The arithmetic is ``sw.kernels``, exact like the accelerator's.
"""

from __future__ import annotations

import numpy as np

from sw import kernels
from sw.artifact import Quant, decode_codes
from sw.plan import CPUStep


class CPUOps:
    """Runs CPU steps; caches each fallback conv's decoded weights (decoded once, not per frame)."""

    def __init__(self) -> None:
        self._weights: dict[str, np.ndarray] = {}

    def run(self, step: CPUStep, inputs: list[np.ndarray], in_quant: list[Quant]) -> np.ndarray:
        node, a, q = step.node, step.node.attrs, step.node.quant
        x = inputs[0]
        if step.op == "concat":
            return np.concatenate(inputs, axis=0)
        if step.op == "upsample":
            return kernels.upsample2x(x)
        if step.op == "maxpool":
            return kernels.maxpool(x, a["kernel"], a["stride"], a["pad_before"], a["pad_after"])
        if step.op == "avgpool":
            return kernels.avgpool(x, in_quant[0].zero, a["multiplier"], a["shift"], q.zero,
                                   q.bits)  # fmt: skip
        if step.op == "add":
            return kernels.add(
                x,
                in_quant[0].zero,
                inputs[1],
                in_quant[1].zero,
                a["m_a"],
                a["m_b"],
                a["shift"],
                q.zero,
                q.bits,
                relu=a["activation"] == "relu",
            )
        if step.op == "conv":
            t = node.tensors
            v = self._weights.get(step.layer)
            if v is None:
                v = decode_codes(t["codes"], a["weight_format"], a["weight_bits"])
                self._weights[step.layer] = v
            conv = kernels.conv_dense if a["groups"] == 1 else kernels.conv_depthwise
            acc = conv(x, in_quant[0].zero, v, t["bias"], a["stride"], a["pad"])
            return kernels.requantize(acc, t["m_pos"], t["m_neg"], t["shift"], q.zero, q.bits)
        raise ValueError(f"layer {step.layer!r}: no CPU implementation of op {step.op!r}")
