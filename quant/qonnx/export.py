"""A model artifact as a QONNX graph that runs to the artifact's integers, bit for bit.

Every activation tensor of the artifact is one float32 tensor of the graph, named after its node,
holding the real value ``x = s * (q - z)`` as a QONNX ``Quant`` with scale ``s`` and zero point
``z`` would produce it (the graph input is the real image, quantized by such a ``Quant``).
Each conv and add recomputes the contract's integers from those tensors, exactly:

- ``Round(Div(x, s))`` gives ``q - z`` (``|q - z| < 2^9``: float32 rounding cannot reach 0.5);
- the weights are QONNX ``Quant`` (``BipolarQuant`` for binary) nodes on the real weights
  ``s_w * v`` with the per-output-channel scale ``s_w``, followed by ``Round(Div(., s_w))``, so the
  ``Conv`` multiplies integers ``v`` by integers and adds the integer bias in float32 (exact below
  2^24, :data:`~quant.qonnx.common.FLOAT32_EXACT`, checked here per output channel);
- the requantization (docs/arithmetic.md section 5) runs in float64 (exact below 2^53):
  ``Cast`` to double, ``Mul`` by ``M_pos`` (with ``Relu``/``Sub`` splitting the negative part,
  multiplied by ``M_neg``, for relu and leaky), ``Add`` of ``2^(S-1)``, then a QONNX ``Quant``
  with scale ``2^S`` per channel, the output zero point, the output bits, unsigned, rounding mode
  ``FLOOR``: ``clamp(floor((acc * M + 2^(S-1)) / 2^S) + z, 0, 2^b - 1)``, which is the contract's
  round-half-up requantization with its saturation. A ``Mul`` by ``s * 2^-S`` turns the Quant's
  ``(q - z) * 2^S`` into ``(q - z) * s`` (exact: a power-of-two rescaling);
- the residual add likewise: ``M_a * (a - z_a) + M_c * (c - z_c)`` in float64, ``Relu`` for a relu
  add, then the same ``Add``/``Quant``/``Mul`` tail;
- the global average pool likewise: ``ReduceSum`` of ``q - z`` in float64, ``Mul`` by its
  multiplier, the same tail;
- concat, upsample (``Resize`` nearest, asymmetric, floor) and maxpool (``MaxPool``, whose padding
  is ignored as the contract's is) work on the real values directly: they copy codes.

``metadata_props`` carry the artifact's digest and format version, the bound, and what a graph
cannot hold (the model's name and description, class names, output kinds and anchors) as JSON,
and each ``Conv``'s doc string its code format and leaky slope, so that
:mod:`quant.qonnx.importer` gives back the same artifact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from quant.qonnx.common import (
    CONV_DOC_PREFIX,
    FLOAT32_EXACT,
    META_BOUND,
    META_DIGEST,
    META_FORMAT,
    META_HEADER,
    ONNX_OPSET,
    QONNX_DOMAIN,
    QONNX_OPSET,
    fail,
    same_file,
)
from sw.artifact import (
    FORMAT_NAME,
    Artifact,
    ArtifactError,
    Node,
    Quant,
    content_digest,
    decode_codes,
    header_and_arrays,
    load,
    pow2_max_exponent,
    validate,
    version_for,
    write_atomic,
)


def weight_quant_bits(fmt: str, bits: int) -> int:
    """Bits of the signed narrow-range QONNX Quant that holds every weight of a code format:
    ``int`` its own bits; ``pow2`` ``E + 2`` (``2^E <= 2^(E+1) - 1``); ``pow2x2`` 8 (|v| <= 96)."""
    if fmt == "int":
        return bits
    if fmt == "pow2":
        return pow2_max_exponent(bits) + 2
    if fmt == "pow2x2":
        return 8
    raise ValueError(f"format {fmt!r} has no Quant")


def accumulator_bound(node: Node, in_q: Quant) -> np.ndarray:
    """Per output channel, the largest |partial sum| a conv can reach (docs/arithmetic.md 4.3)."""
    a = node.attrs
    v = decode_codes(node.tensors["codes"], a["weight_format"], a["weight_bits"]).astype(np.int64)
    a_in = max(in_q.zero, in_q.qmax - in_q.zero)
    taps = np.abs(v).reshape(v.shape[0], -1).sum(axis=1)
    return np.abs(node.tensors["bias"].astype(np.int64)) + a_in * taps


class _Graph:
    """The nodes and initializers being written, with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.names: set[str] = set()
        self.int_of: dict[str, str] = {}  # activation tensor -> its integer (q - z) tensor

    def name(self, want: str) -> str:
        if want in self.names:
            fail(f"tensor name {want!r} is used twice (rename the artifact node that clashes)")
        self.names.add(want)
        return want

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), self.name(name)))
        return name

    def op(self, op_type: str, inputs: list[str], out: str, domain: str = "", doc: str = "",
           **attrs: object) -> str:  # fmt: skip
        self.nodes.append(
            helper.make_node(
                op_type,
                inputs,
                [self.name(out)],
                name=out,
                domain=domain,
                doc_string=doc or None,
                **attrs,
            )  # fmt: skip
        )
        return out

    def quant(self, x: str, scale: str, zero: str, bits: str, out: str, *, signed: int,
              narrow: int, rounding: str) -> str:  # fmt: skip
        return self.op("Quant", [x, scale, zero, bits], out, domain=QONNX_DOMAIN, signed=signed,
                       narrow=narrow, rounding_mode=rounding)  # fmt: skip

    def integer(self, tensor: str, q: Quant) -> str:
        """``q - z`` of an activation tensor, exactly, computed once per tensor."""
        if tensor not in self.int_of:
            s = self.const(f"{tensor}/scale", np.float32(q.scale))
            div = self.op("Div", [tensor, s], f"{tensor}/div")
            self.int_of[tensor] = self.op("Round", [div], f"{tensor}/int")
        return self.int_of[tensor]

    def requant_tail(self, n: Node, pre: str, shift: np.ndarray, channel_shape: tuple[int, ...]
                     ) -> str:  # fmt: skip
        """``pre`` (float64, ``acc * M``): round half up by ``2^S``, add the zero point, clamp to
        the output bits (one FLOOR Quant), rescale to the real value; the node's tensor."""
        q = n.quant
        s = shift.astype(np.int64).reshape(channel_shape)
        half = np.where(s > 0, np.exp2(np.maximum(s - 1, 0)), 0.0)
        rescale = np.float32(q.scale) * np.exp2(-s).astype(np.float32)
        if np.any(rescale.astype(np.float64) * np.exp2(s) != np.float64(np.float32(q.scale))):
            fail(f"node {n.name!r}: scale {q.scale!r} / 2^S is not exact in float32 (subnormal)")
        up = self.op("Add", [pre, self.const(f"{n.name}/half", half)], f"{n.name}/round_half_up")
        qo = self.quant(
            up,
            self.const(f"{n.name}/two_pow_shift", np.exp2(s).astype(np.float64)),
            self.const(f"{n.name}/zero", np.float32(q.zero)),
            self.const(f"{n.name}/bits", np.float32(q.bits)),
            f"{n.name}/requant",
            signed=0, narrow=0, rounding="FLOOR",
        )  # fmt: skip
        return self.op("Mul", [qo, self.const(f"{n.name}/rescale", rescale)], n.name)


def _conv(g: _Graph, n: Node, src: str, in_q: Quant) -> None:
    a, t = n.attrs, n.tensors
    bound = accumulator_bound(n, in_q)
    if bound.max() > FLOAT32_EXACT:
        o = int(bound.argmax())
        fail(
            f"node {n.name!r}: output channel {o} can reach |acc| = {int(bound[o])} > 2^24, where "
            f"ONNX Runtime's float32 convolution stops being exact; this model cannot be "
            f"exported bit-exactly"
        )
    fmt, bits = a["weight_format"], a["weight_bits"]
    v = decode_codes(t["codes"], fmt, bits).astype(np.int64)
    cout = v.shape[0]
    s_w = t["weight_scale"].astype(np.float32).reshape(cout, 1, 1, 1)
    w_real = (s_w * v.astype(np.float32)).astype(np.float32)
    # The weights go back to integers by Round(Div(Quant(w), s_w)) in float32, as qonnx runs it:
    # check here that this gives v (it does unless a scale is extreme, e.g. subnormal).
    if not np.array_equal(np.round(w_real / s_w).astype(np.int64), v):
        fail(f"node {n.name!r}: its weight scales do not survive float32 (extreme values)")
    w_name = g.const(f"{n.name}/weight", w_real)
    s_name = g.const(f"{n.name}/weight_scale", s_w)
    if fmt == "binary":
        wq = g.op("BipolarQuant", [w_name, s_name], f"{n.name}/weight_quant", domain=QONNX_DOMAIN)
    else:
        wq = g.quant(
            w_name, s_name,
            g.const(f"{n.name}/weight_zero", np.float32(0)),
            g.const(f"{n.name}/weight_bits", np.float32(weight_quant_bits(fmt, bits))),
            f"{n.name}/weight_quant", signed=1, narrow=1, rounding="ROUND",
        )  # fmt: skip
    w_int = g.op("Round", [g.op("Div", [wq, s_name], f"{n.name}/weight_div")],
                 f"{n.name}/weight_int")  # fmt: skip
    bias = g.const(f"{n.name}/bias", t["bias"].astype(np.float32))
    k, st, p = a["kernel"], a["stride"], a["pad"]
    # What the integers cannot say (which code format, the leaky slope's name for M_neg) rides
    # in the Conv's doc string, which qonnx's transforms keep when they rename tensors.
    hint = {k: a[k] for k in ("weight_format", "weight_bits", "leaky_slope") if k in a}
    acc = g.op(
        "Conv", [g.integer(src, in_q), w_int, bias], f"{n.name}/acc",
        kernel_shape=[k, k], strides=[st, st], pads=[p, p, p, p], group=a["groups"],
        dilations=[1, 1], doc=CONV_DOC_PREFIX + json.dumps(hint, sort_keys=True),
    )  # fmt: skip
    acc_d = g.op("Cast", [acc], f"{n.name}/acc_double", to=TensorProto.DOUBLE)
    ch = (1, cout, 1, 1)
    m_pos = g.const(f"{n.name}/m_pos", t["m_pos"].astype(np.float64).reshape(ch))
    act = a["activation"]
    if act == "linear":
        pre = g.op("Mul", [acc_d, m_pos], f"{n.name}/product")
    else:
        pos = g.op("Relu", [acc_d], f"{n.name}/acc_pos")
        pre = g.op("Mul", [pos, m_pos], f"{n.name}/product" if act == "relu" else
                   f"{n.name}/product_pos")  # fmt: skip
        if act == "leaky":
            neg = g.op("Sub", [acc_d, pos], f"{n.name}/acc_neg")
            m_neg = g.const(f"{n.name}/m_neg", t["m_neg"].astype(np.float64).reshape(ch))
            pn = g.op("Mul", [neg, m_neg], f"{n.name}/product_neg")
            pre = g.op("Add", [pre, pn], f"{n.name}/product")
    g.requant_tail(n, pre, t["shift"], ch)


def _add(g: _Graph, n: Node, srcs: list[str], quants: list[Quant]) -> None:
    a = n.attrs
    terms = []
    for i, (src, q, m) in enumerate(zip(srcs, quants, (a["m_a"], a["m_b"]), strict=True)):
        d = g.op("Cast", [g.integer(src, q)], f"{n.name}/in{i}_double",
                 to=TensorProto.DOUBLE)  # fmt: skip
        mc = g.const(f"{n.name}/m_{'ab'[i]}", np.float64(m))
        terms.append(g.op("Mul", [d, mc], f"{n.name}/product_{'ab'[i]}"))
    pre = g.op("Add", terms, f"{n.name}/sum")
    if a["activation"] == "relu":
        pre = g.op("Relu", [pre], f"{n.name}/sum_relu")
    g.requant_tail(n, pre, np.array(a["shift"]), ())


def _avgpool(g: _Graph, n: Node, src: str, in_q: Quant) -> None:
    """Section 7.1: the exact sum of ``q - z`` over the map (float64: |sum * M| < 2^47), times
    the multiplier, then the requantization tail with the node's one shift."""
    d = g.op("Cast", [g.integer(src, in_q)], f"{n.name}/in_double", to=TensorProto.DOUBLE)
    axes = g.const(f"{n.name}/axes", np.array([2, 3], np.int64))
    total = g.op("ReduceSum", [d, axes], f"{n.name}/sum", keepdims=1)
    m = g.const(f"{n.name}/multiplier", np.float64(n.attrs["multiplier"]))
    pre = g.op("Mul", [total, m], f"{n.name}/product")
    g.requant_tail(n, pre, np.array(n.attrs["shift"]), ())


def export_model(art: Artifact) -> onnx.ModelProto:
    """``art`` (validated here) as a QONNX model; :class:`QonnxError` (one line) if it cannot be
    exported bit-exactly."""
    try:
        validate(art)
    except ArtifactError as e:
        fail(f"not a valid artifact: {e}")
    g = _Graph()
    c, h, w = art.input_shape
    iq = art.input_quant
    real_in = g.name(art.input_name)
    g.quant(
        real_in, g.const(f"{art.input_name}/quant_scale", np.float32(iq.scale)),
        g.const(f"{art.input_name}/quant_zero", np.float32(iq.zero)),
        g.const(f"{art.input_name}/quant_bits", np.float32(iq.bits)),
        f"{art.input_name}/quant", signed=0, narrow=0, rounding="ROUND",
    )  # fmt: skip
    tensor = {art.input_name: f"{art.input_name}/quant"}

    def t(name: str) -> str:
        return tensor[name]

    for n in art.nodes:
        # Node tensors are named after the node; the input's is "<input>/quant".
        src = [t(s) for s in n.inputs]
        if n.op == "conv":
            _conv(g, n, src[0], art.quant_of(n.inputs[0]))
        elif n.op == "add":
            _add(g, n, src, [art.quant_of(s) for s in n.inputs])
        elif n.op == "avgpool":
            _avgpool(g, n, src[0], art.quant_of(n.inputs[0]))
        elif n.op == "concat":
            g.op("Concat", src, n.name, axis=1)
        elif n.op == "upsample":
            scales = g.const(f"{n.name}/scales", np.array([1, 1, 2, 2], np.float32))
            g.op("Resize", [src[0], "", scales], n.name, mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")  # fmt: skip
        elif n.op == "maxpool":
            a = n.attrs
            k, st, p0, p1 = a["kernel"], a["stride"], a["pad_before"], a["pad_after"]
            g.op("MaxPool", src, n.name, kernel_shape=[k, k], strides=[st, st],
                 pads=[p0, p0, p1, p1])  # fmt: skip
        else:  # validate() admits no other op
            fail(f"node {n.name!r}: op {n.op!r} has no QONNX export")
        tensor[n.name] = n.name

    shapes = art.shapes()
    graph = helper.make_graph(
        g.nodes,
        art.name or "pow2det",
        [helper.make_tensor_value_info(real_in, TensorProto.FLOAT, [1, c, h, w])],
        [
            helper.make_tensor_value_info(t(o.node), TensorProto.FLOAT, [1, *shapes[o.node]])
            for o in art.outputs
        ],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", ONNX_OPSET),
            helper.make_opsetid(QONNX_DOMAIN, QONNX_OPSET),
        ],  # fmt: skip
        producer_name="pow2det",
        doc_string=art.description,
    )
    header, arrays = header_and_arrays(art)
    extra = {
        "name": art.name,
        "description": art.description,
        "classes": art.classes,
        "metadata": art.metadata,
        "outputs": [{"node": o.node, "kind": o.kind, **o.attrs} for o in art.outputs],
    }
    helper.set_model_props(
        model,
        {
            META_FORMAT: f"{FORMAT_NAME} version {version_for(art.nodes)}",
            META_DIGEST: content_digest(header, arrays),
            META_BOUND: "2^24 (float32 convolution accumulators)",
            META_HEADER: json.dumps(extra, sort_keys=True, separators=(",", ":")),
        },
    )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        fail(f"the exported graph fails onnx's checker ({' '.join(str(e).split())[:160]})")
    return model


def export_file(src: str | Path, dst: str | Path) -> onnx.ModelProto:
    """Load the artifact ``src`` (fully validated), write its QONNX model to ``dst`` atomically."""
    src, dst = Path(src), Path(dst)
    if same_file(src, dst) or src.resolve() == dst.resolve():
        fail(f"{dst}: is the input file (write the model to a new path)")
    try:
        art = load(src)
    except ArtifactError as e:
        fail(str(e))
    model = export_model(art)
    try:
        data = model.SerializeToString()
    except ValueError as e:  # protobuf's 2 GiB limit
        fail(f"{dst}: the model is too large for one ONNX file ({e})")
    try:
        write_atomic(data, dst)
    except OSError as e:
        fail(f"{dst}: cannot write ({e.strerror or e})")
    return model
