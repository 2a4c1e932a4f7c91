"""Classifier post-processing on the CPU: the logits' codes -> the top classes with softmax
probabilities (``shiftdet classify``).

The last layer's codes are dequantized with its scale and zero point, ``t = s * (q - z)``, and
the softmax is taken in float64 over those values; ties in probability keep the lower class id
first (a stable sort), so the order is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sw.artifact import Quant
from sw.compat import zip_strict


@dataclass
class Ranking:
    """The ``k`` best classes of one input, best first."""

    classes: np.ndarray  # (k,) int64
    probs: np.ndarray  # (k,) float64

    def to_json(self, names: list[str]) -> list[dict[str, Any]]:
        return [
            {"class": names[c] if c < len(names) else str(c), "class_id": int(c),
             "prob": round(float(p), 5)}
            for c, p in zip_strict(self.classes.tolist(), self.probs.tolist())
        ]  # fmt: skip


class TopK:
    """``topk(outputs)``: the output node's codes (C, 1, 1) or (C,) -> a :class:`Ranking`."""

    def __init__(self, node: str, quant: Quant, classes: int, k: int = 5) -> None:
        self.node, self.quant, self.classes = node, quant, classes
        self.k = min(k, classes)

    def __call__(self, outputs: dict[str, np.ndarray], _geometry: Any = None) -> Ranking:
        codes = np.asarray(outputs[self.node]).reshape(-1)
        if codes.size != self.classes:
            raise ValueError(f"output {self.node!r}: {codes.size} values for {self.classes} "
                             "classes")  # fmt: skip
        t = self.quant.scale * (codes.astype(np.float64) - self.quant.zero)
        e = np.exp(t - t.max())
        p = e / e.sum()
        order = np.argsort(-p, kind="stable")[: self.k]
        return Ranking(order.astype(np.int64), p[order])
