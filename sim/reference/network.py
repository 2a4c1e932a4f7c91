"""Run a whole network from an artifact with the reference operations (integer-exact)."""

from __future__ import annotations

import numpy as np

from sim.reference import ops, tiling
from sw.artifact import Artifact, Node, Quant, decode_codes


def run_node(
    node: Node,
    inputs: list[np.ndarray],
    in_quant: list[Quant],
    strip_width: int | None = None,
) -> np.ndarray:
    """Output codes (uint8, C x H x W) of one node; ``strip_width`` runs it as column strips."""
    a, q = node.attrs, node.quant
    x = inputs[0]
    if node.op == "conv":
        t = node.tensors
        v = decode_codes(t["codes"], a["weight_format"], a["weight_bits"])
        k, st, p, z_in = a["kernel"], a["stride"], a["pad"], in_quant[0].zero

        def conv(window: np.ndarray, pad: int | tuple[int, int]) -> np.ndarray:
            acc = ops.conv2d(window, z_in, v, t["bias"], st, pad, a["groups"])
            return ops.requantize(acc, t["m_pos"], t["m_neg"], t["shift"], q.zero, q.bits)

        if strip_width is None:
            return conv(x, p)
        w_out = (x.shape[2] + 2 * p - k) // st + 1
        return tiling.run_tiled_window_op(
            x, w_out, strip_width, k, st, p, z_in, lambda win: conv(win, (p, 0))
        )
    if node.op == "add":
        return ops.add(
            x, in_quant[0].zero, inputs[1], in_quant[1].zero,
            a["m_a"], a["m_b"], a["shift"], q.zero, q.bits, relu=a["activation"] == "relu",
        )  # fmt: skip
    if node.op == "concat":
        return ops.concat(inputs)
    if node.op == "upsample":
        if strip_width is None:
            return ops.upsample2x(x)
        return tiling.upsample2x_tiled(x, strip_width, ops.upsample2x)
    if node.op == "maxpool":
        k, st, p0, p1 = a["kernel"], a["stride"], a["pad_before"], a["pad_after"]
        if strip_width is None:
            return ops.maxpool(x, k, st, p0, p1)
        w_out = (x.shape[2] + p0 + p1 - k) // st + 1
        return tiling.run_tiled_window_op(
            x, w_out, strip_width, k, st, p0, tiling.MAXPOOL_PAD,
            lambda win: ops.maxpool(win, k, st, p0, p1, pad_cols=(0, 0)),
        )  # fmt: skip
    if node.op == "avgpool":  # global: one strip is the whole map (it runs on the CPU)
        return ops.avgpool(x, in_quant[0].zero, a["multiplier"], a["shift"], q.zero, q.bits)
    raise ValueError(f"unknown op {node.op!r}")


def run_network(
    art: Artifact,
    image: np.ndarray,
    strip_width: int | None = None,
    keep_all: bool = False,
) -> dict[str, np.ndarray]:
    """Run ``art`` on one input tensor of codes (C, H, W); return the outputs' codes by name.

    With ``keep_all`` every node's output is returned (for layer-by-layer comparisons).
    """
    if image.shape != tuple(art.input_shape):
        raise ValueError(
            f"input shape {list(image.shape)} != artifact input {list(art.input_shape)}"
        )
    if image.dtype != np.uint8 or int(image.max(initial=0)) > art.input_quant.qmax:
        raise ValueError(f"input codes must be uint8 within 0..{art.input_quant.qmax}")
    values: dict[str, np.ndarray] = {art.input_name: image}
    consumers: dict[str, int] = {}
    for n in art.nodes:
        for s in n.inputs:
            consumers[s] = consumers.get(s, 0) + 1
    wanted = {o.node for o in art.outputs}
    for n in art.nodes:
        quants = [art.quant_of(s) for s in n.inputs]
        values[n.name] = run_node(n, [values[s] for s in n.inputs], quants, strip_width)
        if not keep_all:  # free tensors nobody reads any more (a 512x512 frame is large)
            for s in n.inputs:
                consumers[s] -= 1
                if consumers[s] == 0 and s not in wanted:
                    del values[s]
    if keep_all:
        return values
    return {o.node: values[o.node] for o in art.outputs}
