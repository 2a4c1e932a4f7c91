"""Random but valid layers and networks, for tests of every implementation against the reference.

Constants are drawn so that outputs spread over the code range instead of saturating, which is
what makes a bit-exact comparison meaningful. Everything is driven by a NumPy ``Generator``, so a
seed reproduces a case.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sim.reference.requant import MULT_MAX, add_constants, conv_constants
from sw.artifact import (
    WEIGHT_BITS,
    Artifact,
    Node,
    Output,
    Quant,
    encode_codes,
    pow2_max_exponent,
    pow2x2_values,
)


def random_quant(rng: np.random.Generator, bits: int = 8) -> Quant:
    qmax = (1 << bits) - 1
    return Quant(bits, int(rng.integers(0, qmax + 1)), float(np.float32(rng.uniform(0.01, 0.1))))


def random_weights(
    rng: np.random.Generator, shape: tuple[int, ...], fmt: str, bits: int
) -> np.ndarray:
    """Integer weights of a format; pow2 exponents mostly small, as trained weights are."""
    if fmt == "binary":
        return rng.choice(np.array([-1, 1]), size=shape)
    if fmt == "int":
        lim = (1 << (bits - 1)) - 1
        return rng.integers(-lim, lim + 1, size=shape)
    if fmt == "pow2x2":  # every value of the set, small ones more often, the extremes too
        vals = pow2x2_values()
        p = 1.0 / (1.0 + np.abs(vals))
        return rng.choice(vals, size=shape, p=p / p.sum())
    e_max = pow2_max_exponent(bits)
    e = np.minimum(rng.geometric(0.45, size=shape) - 1, e_max)
    sign = rng.choice(np.array([-1, 1]), size=shape)
    zero = rng.random(size=shape) < 0.15
    return np.where(zero, 0, sign * (1 << e))


def random_conv(
    rng: np.random.Generator,
    name: str,
    src: str,
    in_shape: tuple[int, int, int],
    in_quant: Quant,
    out_channels: int | None = None,
    kernel: int = 3,
    stride: int = 1,
    depthwise: bool = False,
    weight_format: str = "pow2",
    weight_bits: int = 4,
    activation: str = "leaky",
    out_bits: int = 8,
    pad: int | None = None,
    out_quant: Quant | None = None,
) -> Node:
    """A conv node with random weights and constants that keep outputs mostly in range."""
    cin = in_shape[0]
    cout = cin if depthwise else (out_channels or int(rng.integers(1, 17)))
    groups = cin if depthwise else 1
    if weight_bits not in WEIGHT_BITS[weight_format]:
        raise ValueError(f"{weight_bits}-bit {weight_format} weights do not exist")
    v = random_weights(rng, (cout, cin // groups, kernel, kernel), weight_format, weight_bits)
    taps = v[0].size
    a_in = max(in_quant.zero, in_quant.qmax - in_quant.zero)
    spread = np.sqrt(taps) * (np.abs(v).mean() + 1e-9) * a_in / 2 + 1
    out_q = out_quant or random_quant(rng, out_bits)
    m_real = rng.uniform(0.3, 1.5, size=cout) * out_q.qmax / (4 * spread)
    mp, mn, sh = conv_constants(m_real, activation)
    bias = rng.integers(-int(spread), int(spread) + 1, size=cout).astype(np.int32)
    return Node(
        name=name,
        op="conv",
        inputs=[src],
        attrs={
            "out_channels": cout,
            "kernel": kernel,
            "stride": stride,
            "pad": kernel // 2 if pad is None else pad,
            "groups": groups,
            "weight_format": weight_format,
            "weight_bits": weight_bits,
            "activation": activation,
        },
        quant=out_q,
        tensors={
            "codes": encode_codes(v, weight_format, weight_bits),
            "weight_scale": rng.uniform(0.001, 0.1, size=cout).astype(np.float32),
            "bias": bias,
            "m_pos": mp,
            "m_neg": mn,
            "shift": sh,
        },
    )


def with_small_shifts(rng: np.random.Generator, node: Node, max_shift: int = 3) -> Node:
    """``node`` with its requantization shifts cut to 1..``max_shift`` and the multipliers
    rescaled to keep the real multiplier: with ``S <= 3`` an accumulator is a rounding tie about
    one time in ``2^S``, where trained layers' shifts of 10-20 almost never give one."""
    t = dict(node.tensors)
    s_old = t["shift"].astype(np.int64)
    s_new = rng.integers(1, max_shift + 1, size=s_old.shape)

    def rescale(m: np.ndarray) -> np.ndarray:
        real = m.astype(np.float64) * np.exp2(s_new - s_old)
        # a zero stays zero (a relu conv's m_neg); any other multiplier stays at least 1
        return np.where(m == 0, 0, np.clip(np.round(real), 1, MULT_MAX)).astype(t["m_pos"].dtype)

    t.update(m_pos=rescale(t["m_pos"]), m_neg=rescale(t["m_neg"]),
             shift=s_new.astype(t["shift"].dtype))  # fmt: skip
    return dataclasses.replace(node, tensors=t)


def random_add(
    rng: np.random.Generator, name: str, a: str, qa: Quant, b: str, qb: Quant, relu: bool = False
) -> Node:
    out = random_quant(rng, max(qa.bits, qb.bits))
    # Output scale near the sum's spread, so that results are neither all clipped nor all equal.
    s_out = float(np.float32((qa.scale * qa.qmax + qb.scale * qb.qmax) / out.qmax * 0.8))
    out = Quant(out.bits, out.zero, s_out)
    m_a, m_b, sh = add_constants(qa.scale, qb.scale, s_out)
    return Node(
        name, "add", [a, b],
        {"m_a": m_a, "m_b": m_b, "shift": sh, "activation": "relu" if relu else "linear"}, out,
    )  # fmt: skip


def random_network(
    rng: np.random.Generator,
    height: int = 16,
    width: int = 12,
    weight_bits: int = 4,
    act_bits: int = 8,
    depthwise_format: str = "int",
    dense_format: str = "pow2",
) -> Artifact:
    """A small detector-shaped network that uses every op of the contract once or more.

    first conv 3x3/2 on the image, depthwise 3x3 and 5x5 (stride 1 and 2), pointwise, a residual
    add, SPP maxpools with a concat, nearest upsample with a concat, and a linear head conv.
    ``dense_format`` "pow2x2" gives every dense conv 8-bit two-term weights instead of
    ``weight_bits``-bit pow2.
    The upsample concat needs the half-resolution map to be even (as darknet's multiples of 32
    make it); for other sizes the route is left out and the head reads the upsample directly.
    """
    inq = Quant(8, 0, float(np.float32(1 / 255)))
    shapes: dict[str, tuple[int, int, int]] = {"image": (3, height, width)}
    quants: dict[str, Quant] = {"image": inq}
    nodes: list[Node] = []
    wb = weight_bits
    dense_bits = 8 if dense_format == "pow2x2" else wb

    def push(n: Node) -> str:
        nodes.append(n)
        c, h, w = shapes[n.inputs[0]]
        if n.op == "conv":
            k, st, p = n.attrs["kernel"], n.attrs["stride"], n.attrs["pad"]
            shapes[n.name] = (
                n.attrs["out_channels"],
                (h + 2 * p - k) // st + 1,
                (w + 2 * p - k) // st + 1,
            )
        elif n.op == "maxpool":
            shapes[n.name] = (c, h, w)  # stride-1 SPP pooling keeps the size
        elif n.op == "upsample":
            shapes[n.name] = (c, 2 * h, 2 * w)
        elif n.op == "concat":
            shapes[n.name] = (sum(shapes[s][0] for s in n.inputs), h, w)
        else:
            shapes[n.name] = (c, h, w)
        quants[n.name] = n.quant
        return n.name

    def conv(name: str, src: str, **kw: object) -> str:
        kw.setdefault("out_bits", act_bits)
        if not kw.get("depthwise"):
            kw.setdefault("weight_format", dense_format)
        kw.setdefault("weight_bits", dense_bits)
        return push(random_conv(rng, name, src, shapes[src], quants[src], **kw))

    def dw(name: str, src: str, kernel: int, stride: int) -> str:
        fmt = depthwise_format
        bits = 8 if fmt == "int" else wb
        return conv(name, src, kernel=kernel, stride=stride, depthwise=True,
                    weight_format=fmt, weight_bits=bits, activation="leaky")  # fmt: skip

    x = conv("conv0", "image", out_channels=int(rng.integers(4, 9)), kernel=3, stride=2)
    x = dw("dw1", x, 3, 1)
    p1 = conv("pw2", x, out_channels=int(rng.integers(5, 12)), kernel=1, activation="linear")
    x = conv("pw3", p1, out_channels=int(rng.integers(6, 14)), kernel=1)
    x = dw("dw4", x, 5, 1)
    x = conv("pw5", x, out_channels=shapes[p1][0], kernel=1, activation="linear")
    skip = push(random_add(rng, "add6", x, quants[x], p1, quants[p1]))
    x = dw("dw7", skip, 3, 2)
    x = conv("pw8", x, out_channels=int(rng.integers(6, 12)), kernel=1, activation="relu")
    q8 = quants[x]
    m9 = push(
        Node(
            "pool9", "maxpool", [x], {"kernel": 3, "stride": 1, "pad_before": 1, "pad_after": 1}, q8
        )
    )
    m10 = push(
        Node(
            "pool10",
            "maxpool",
            [x],
            {"kernel": 5, "stride": 1, "pad_before": 2, "pad_after": 2},
            q8,
        )
    )
    x = push(Node("spp11", "concat", [m10, m9, x], {}, q8))
    x = dw("dw12", x, 5, 2)
    head_small = conv("head13", x, out_channels=2 * (5 + 2), kernel=1, activation="linear")
    x = conv("pw14", "spp11", out_channels=int(rng.integers(3, 8)), kernel=1)
    x = push(Node("up15", "upsample", [x], {}, quants[x]))
    # The concat needs one shared quantization: re-quantize the skip branch to the upsample's.
    up_q = quants[x]
    lat_name = push(
        random_conv(
            rng, "pw16", skip, shapes[skip], quants[skip], out_channels=int(rng.integers(2, 6)),
            kernel=1, weight_format=dense_format, weight_bits=dense_bits, out_quant=up_q,
        )
    )  # fmt: skip
    cat_shape_ok = shapes[x][1:] == shapes[lat_name][1:]
    if cat_shape_ok:
        x = push(Node("route17", "concat", [x, lat_name], {}, up_q))
    head_big = conv("head18", x, out_channels=2 * (5 + 2), kernel=3, activation="linear")
    anchors = [[10, 14], [23, 27]]
    return Artifact(
        name="random-net",
        input_name="image",
        input_shape=(3, height, width),
        input_quant=inq,
        nodes=nodes,
        outputs=[
            Output(head_small, "yolo", {"anchors": anchors, "classes": 2, "scale_x_y": 1.05}),
            Output(head_big, "yolo", {"anchors": anchors, "classes": 2, "scale_x_y": 1.1}),
        ],
        classes=["person", "car"],
        metadata={"generator": "sim.reference.randnet.random_network"},
    )


def conv_chain(
    rng: np.random.Generator,
    specs: list[dict[str, Any]],
    shape: tuple[int, int, int] = (3, 12, 10),
    bits: int = 8,
) -> Artifact:
    """A straight network of conv nodes ``c0, c1, ...`` (``random_conv`` keyword arguments per
    spec, ``out_bits`` defaulting to ``bits``) on an 8-bit image; the last one is the output."""
    inq = Quant(8, 0, float(np.float32(1 / 255)))
    nodes: list[Node] = []
    src, src_shape, src_q = "image", shape, inq
    for i, spec in enumerate(specs):
        spec = {"out_bits": bits, **spec}
        n = random_conv(rng, f"c{i}", src, src_shape, src_q, **spec)
        nodes.append(n)
        k, st, p = n.attrs["kernel"], n.attrs["stride"], n.attrs["pad"]
        src_shape = (
            n.attrs["out_channels"],
            (src_shape[1] + 2 * p - k) // st + 1,
            (src_shape[2] + 2 * p - k) // st + 1,
        )
        src, src_q = n.name, n.quant
    return Artifact("chain", "image", shape, inq, nodes, [Output(src)])
