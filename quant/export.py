"""Export a QuantDetector to the model artifact (sw.artifact).

The constants come from QuantDetector.integer_params(), the same dictionary its integer mode
computes with, so `sim.reference.run_network(artifact)` equals `QuantDetector.forward_int`
integer for integer (tests/test_quant_export.py checks every node on real images). Running any
artifact in torch is quant.integer's ArtifactNet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from quant.integer import INPUT
from quant.model import QuantDetector, contract_activation
from sw import artifact as artmod
from sw.artifact import Artifact, Node, Output, Quant, encode_codes


def to_artifact(
    qdet: QuantDetector,
    size: int | tuple[int, int],
    name: str,
    classes: list[str],
    description: str = "",
    metadata: dict[str, Any] | None = None,
) -> Artifact:
    """The artifact of ``qdet`` for an input of ``size`` (square int or (height, width))."""
    h, w = (size, size) if isinstance(size, int) else size
    params = qdet.integer_params()
    nodes: list[Node] = []
    for n in qdet.nodes:
        p = params[n.name]
        q: Quant = p["q_out"]
        if n.op == "conv":
            a = n.attrs
            fmt, bits = a["weight_format"], a["weight_bits"]
            attrs = {k: a[k] for k in ("out_channels", "kernel", "stride", "pad", "groups")}
            attrs["activation"] = contract_activation(a)
            attrs.update(weight_format=fmt, weight_bits=bits)
            if a["activation"] == "leaky":
                attrs["leaky_slope"] = 0.1
            tensors = {
                "codes": encode_codes(p["v"], fmt, bits),
                "weight_scale": p["s_w"].astype(np.float32),
                "bias": p["bias"].astype(np.int32),
                "m_pos": p["m_pos"],
                "m_neg": p["m_neg"],
                "shift": p["shift"],
            }
            nodes.append(Node(n.name, "conv", list(n.inputs), attrs, q, tensors))
        elif n.op == "add":
            attrs = {"m_a": int(p["m_a"]), "m_b": int(p["m_c"]), "shift": int(p["shift"]),
                     "activation": n.attrs["activation"]}  # fmt: skip
            nodes.append(Node(n.name, "add", list(n.inputs), attrs, q))
        elif n.op == "maxpool":
            attrs = {k: n.attrs[k] for k in ("kernel", "stride", "pad_before", "pad_after")}
            nodes.append(Node(n.name, "maxpool", list(n.inputs), attrs, q))
        elif n.op == "avgpool":
            attrs = {"multiplier": int(p["multiplier"]), "shift": int(p["shift"])}
            nodes.append(Node(n.name, "avgpool", list(n.inputs), attrs, q))
        else:
            nodes.append(Node(n.name, n.op, list(n.inputs), {}, q))
    outputs = []
    for head, spec in zip(qdet.heads, qdet.head_specs, strict=False):  # raw heads follow
        outputs.append(Output(head, "yolo", {
            "anchors": [[float(a), float(b)] for a, b in spec.head_anchors],
            "mask": list(spec.mask), "classes": int(spec.classes),
            "scale_x_y": float(spec.scale_x_y),
        }))  # fmt: skip
    # A graph without YOLO heads (a classifier, QuantDetector.from_graph): raw outputs (logits).
    outputs += [Output(h, "raw") for h in qdet.heads[len(qdet.head_specs) :]]
    art = Artifact(
        name=name,
        input_name=INPUT,
        input_shape=(3, h, w),
        input_quant=qdet.input_quant,
        nodes=nodes,
        outputs=outputs,
        classes=list(classes),
        description=description,
        metadata=dict(metadata or {}),
    )
    artmod.validate(art)
    return art


def export(qdet: QuantDetector, path: str | Path, size: int, **kw: Any) -> Artifact:
    """Build, validate and write the artifact; returns it."""
    art = to_artifact(qdet, size, **kw)
    artmod.save(art, path)
    return art


@torch.no_grad()
def forward_int_codes(qdet: QuantDetector, codes_chw: np.ndarray) -> dict[str, np.ndarray]:
    """Every node's codes (uint8, C x H x W) of one frame in integer mode."""
    vals = qdet.forward_int(torch.from_numpy(codes_chw.astype(np.float64))[None], keep_all=True)
    return {k: v[0].numpy().astype(np.uint8) for k, v in vals.items() if k != INPUT}
