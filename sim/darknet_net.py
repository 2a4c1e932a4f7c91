"""Darknet cfg -> artifact with random weights of the real shapes, and -> accelerator layers.

For ``bench/accelerator.py`` (and RTL tests of real layer shapes) where no quantized artifact
of the real detectors is wanted: shapes come from the cfg (``sw.darknet.cfg``, no torch),
weights and constants from ``sim.reference.randnet`` (dense convs pow2 4-bit, depthwise int8,
8-bit activations).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sim.ddr import add_descriptor, choose_strip, conv_descriptor
from sim.reference.randnet import random_add, random_conv
from sw.artifact import Artifact, Node, Output, Quant
from sw.contract.codes import encode_codes
from sw.contract.config import AccelConfig
from sw.contract.requant import conv_constants
from sw.darknet.cfg import (
    ConvSpec,
    DropoutSpec,
    MaxpoolSpec,
    RouteSpec,
    ShortcutSpec,
    UpsampleSpec,
    YoloSpec,
    channel_selection,
    infer_shapes,
    parse_cfg,
)


def selection_conv(
    name: str, src: str, channels: int, quant: Quant, groups: int, group_id: int
) -> Node:
    """A route's channel split as the exact 1x1 conv quant.model lowers it to: weights 1 and 0
    (pow2, unit scale), no bias, output quantized as the input, so the codes pass unchanged."""
    v = channel_selection(channels, groups, group_id).astype(np.int64)
    n = v.shape[0]
    mp, mn, sh = conv_constants(np.ones(n), "linear")
    attrs = {"out_channels": n, "kernel": 1, "stride": 1, "pad": 0, "groups": 1,
             "weight_format": "pow2", "weight_bits": 4, "activation": "linear"}  # fmt: skip
    tensors = {"codes": encode_codes(v, "pow2", 4), "weight_scale": np.ones(n, np.float32),
               "bias": np.zeros(n, np.int32), "m_pos": mp, "m_neg": mn, "shift": sh}  # fmt: skip
    return Node(name, "conv", [src], attrs, quant, tensors)


def random_artifact_from_cfg(
    path: str, size: int, seed: int, dense_bits: int = 4, dw_format: str = "int"
) -> Artifact:
    cfg = parse_cfg(path)
    shapes = infer_shapes(cfg, size, size)
    rng = np.random.default_rng(seed)
    inq = Quant(8, 0, float(np.float32(1 / 255)))
    names: list[str] = []  # darknet layer index -> node name holding its output
    quants: dict[str, Quant] = {"image": inq}
    nshape: dict[str, tuple[int, int, int]] = {"image": (3, size, size)}
    nodes: list[Node] = []
    outputs: list[Output] = []
    # Inputs of a concat must share one quantization: give every layer that feeds a multi-input
    # route (through upsample/maxpool, which keep their input's) the same random output range.
    shared: dict[int, Quant] = {}
    for spec in cfg.layers:
        if isinstance(spec, RouteSpec) and len(spec.layers) > 1:
            q = Quant(8, int(rng.integers(0, 256)), float(np.float32(rng.uniform(0.01, 0.1))))
            q = next((shared[j] for j in spec.layers if j in shared), q)  # join earlier groups
            for j in spec.layers:
                while j >= 0:
                    shared.setdefault(j, q)
                    lj = cfg.layers[j]
                    if isinstance(lj, RouteSpec) and len(lj.layers) == 1:
                        j = lj.layers[0]  # a one-input route only names another layer
                    elif isinstance(lj, (UpsampleSpec, MaxpoolSpec, DropoutSpec)):
                        j -= 1
                    else:
                        break
    for i, spec in enumerate(cfg.layers):
        prev = names[i - 1] if i else "image"
        name = f"l{i}"
        if isinstance(spec, ConvSpec):
            dw = spec.depthwise
            node = random_conv(
                rng, name, prev, nshape[prev], quants[prev], out_channels=spec.filters,
                kernel=spec.size, stride=spec.stride, depthwise=dw, pad=spec.padding,
                weight_format=dw_format if dw else "pow2",
                weight_bits=(8 if dw_format == "int" else dense_bits) if dw else dense_bits,
                activation=spec.activation, out_quant=shared.get(i),
            )  # fmt: skip
        elif isinstance(spec, ShortcutSpec):
            src = names[spec.source]
            node = random_add(rng, name, prev, quants[prev], src, quants[src],
                              relu=spec.activation == "relu")  # fmt: skip
            if i in shared:
                node = dataclasses.replace(node, quant=shared[i])
        elif isinstance(spec, RouteSpec):
            srcs = [names[j] for j in spec.layers]
            if spec.groups != 1:
                if len(srcs) != 1:
                    raise NotImplementedError(f"{spec.where()}: route groups of several layers")
                node = selection_conv(name, srcs[0], nshape[srcs[0]][0], quants[srcs[0]],
                                      spec.groups, spec.group_id)  # fmt: skip
            elif len(srcs) == 1:
                names.append(srcs[0])
                continue
            else:
                node = Node(name, "concat", srcs, {}, quants[srcs[0]])
        elif isinstance(spec, UpsampleSpec):
            node = Node(name, "upsample", [prev], {}, quants[prev])
        elif isinstance(spec, MaxpoolSpec):
            p0 = spec.padding // 2
            attrs = {"kernel": spec.size, "stride": spec.stride, "pad_before": p0,
                     "pad_after": spec.padding - p0}  # fmt: skip
            node = Node(name, "maxpool", [prev], attrs, quants[prev])
        elif isinstance(spec, DropoutSpec):
            names.append(prev)
            continue
        elif isinstance(spec, YoloSpec):
            anchors = [list(a) for a in spec.head_anchors]
            outputs.append(Output(prev, "yolo", {"anchors": anchors, "classes": spec.classes,
                                                 "scale_x_y": spec.scale_x_y}))  # fmt: skip
            names.append(prev)
            continue
        else:
            raise NotImplementedError(f"{spec.where()}")
        nodes.append(node)
        names.append(name)
        quants[name] = node.quant
        nshape[name] = shapes[i]
    ncls = outputs[0].attrs["classes"] if outputs else 20  # any cfg's, not only VOC's 20
    return Artifact(
        name=f"random-{cfg.name}", input_name="image", input_shape=(3, size, size),
        input_quant=inq, nodes=nodes, outputs=outputs, classes=["c"] * ncls,
        metadata={"generator": "sim.darknet_net.random_artifact_from_cfg", "seed": seed},
    )  # fmt: skip


def accelerator_layers(
    art: Artifact, cfg: AccelConfig
) -> list[tuple[str, dict[str, int] | None, str]]:
    """(node name, descriptor fields or None, op) for every node; None = runs on the CPU. The
    input's only consumer takes the compiler's packed input windows when they pay
    (``sw.compiler.windows_of``), as in a compiled plan."""
    from sw.compiler import windows_of

    shapes = art.shapes()
    users = [n for n in art.nodes if art.input_name in n.inputs]
    out = []
    for n in art.nodes:
        if n.op == "conv":
            zero = {"in": 0, "weight": 0, "const": 0, "out": 0}
            node, in_shape, in_quant = n, shapes[n.inputs[0]], art.quant_of(n.inputs[0])
            only = len(users) == 1 and users[0] is n
            got = windows_of(n, in_shape, cfg.lanes, in_quant.zero) if only else None
            if got is not None:
                node, in_shape, _ = got
            d = conv_descriptor(node, in_shape, in_quant, zero, 1)
            fields = d.as_dict()
            fields["strip_width"] = choose_strip(fields, cfg)
            out.append((n.name, fields, "dense" if d.op == 1 else "depthwise"))
        elif n.op == "add":
            q = [art.quant_of(s) for s in n.inputs]
            d = add_descriptor(n, shapes[n.name], q, {"in": 0, "in2": 0, "out": 0})
            out.append((n.name, d.as_dict(), "add"))
        else:
            out.append((n.name, None, n.op))
    return out
