"""A QONNX model as a model artifact, when its quantizers map onto the contract.

The graph is read in order, each tensor given a meaning (a small abstract interpretation): a
*real activation* (``Quant`` output with a per-tensor scale ``s``, an integer zero point and 2..8
bits: the artifact's ``(b, z, s)``), the integers ``q - z`` of one, a conv accumulator, the stages
of the exact requantization that :mod:`quant.qonnx.export` writes, or a constant (initializers,
``Constant`` nodes, weight quantizers). An artifact node is emitted when a conv, add, concat,
upsample or maxpool result becomes a real activation again. Two forms of layer are understood:

- **exact** (what the exporter writes): ``Round(Div(x, s))`` integers, a ``Conv`` on integer
  weights and bias, then the float64 ``M``/``2^(S-1)``/``FLOOR``-``Quant`` tail: the integer
  constants are read off the graph, nothing is re-derived;
- **float** (Brevitas-style QONNX): ``Conv`` on a real activation with ``Quant``-ed weights
  (per-output-channel or per-tensor scale, zero point 0, signed; ``BipolarQuant`` for binary) and
  a float or ``Quant``-ed bias, optionally ``Relu``/``LeakyRelu``, then an activation ``Quant``;
  ``Add`` of two activations then a ``Quant`` (``Relu`` between for a relu add);
  ``GlobalAveragePool`` then a ``Quant`` (``M, S`` from ``s_in / (H W s_out)``). The constants
  are chosen as ``quant/`` chooses them (``sw.contract.requant``): ``bias = round(b / (s_in
  s_w))``, ``M, S`` from ``s_in s_w / s_out``. Exact when the scales are powers of two and the
  bias lies on the accumulator grid (Brevitas POWER_OF_TWO scaling, Int32 bias); otherwise the
  16-bit multipliers approximate the float scales (relative error below 2^-16).

Weights: uniform signed ``Quant`` of 2..8 bits becomes the ``int`` format (narrow range; a
full-range quantizer whose ``-2^(B-1)`` occurs takes ``B + 1`` bits), ``BipolarQuant`` and 1-bit
``Quant`` ``binary``, wider ones ``pow2`` when every weight is 0 or a signed power of two; an
exported ``Conv``'s doc string names its format (and leaky slope). Activation rounding: ``ROUND``
(half to even) is taken as the contract's round half up (:attr:`Imported.notes` says so: exact
ties may differ by one code); ``HALF_UP`` (half away from zero) is the contract's rounding
exactly on unsigned activations (qonnx clamps at 0 before it rounds), noted on signed ones.
Anything else stops the import with one line naming the node and why.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from qonnx.custom_op.general.bipolar_quant import binary_quant
from qonnx.custom_op.general.intquant import int_quant

from quant.qonnx.common import (
    CONV_DOC_PREFIX,
    META_FORMAT,
    META_HEADER,
    QONNX_DOMAIN,
    QonnxError,
    fail,
    same_file,
)
from sw.artifact import (
    INT32_MAX,
    INT32_MIN,
    MULT_MAX,
    SHIFT_MAX,
    Artifact,
    ArtifactError,
    CodeError,
    Node,
    Output,
    Quant,
    encode_codes,
    pow2_max_exponent,
    save,
    validate,
)
from sw.contract.requant import add_constants, conv_constants, quantize_multiplier

ROUNDINGS = ("ROUND", "HALF_EVEN", "HALF_UP")  # of activation quantizers: all "nearest"
PASS_THROUGH = ("Identity", "Dropout")
# (fewest, most) inputs of each op this reader understands.
ARITY = {"Quant": (4, 4), "BipolarQuant": (2, 2), "Div": (2, 2), "Mul": (2, 2), "Add": (2, 2),
         "Sub": (2, 2), "Round": (1, 1), "Relu": (1, 1), "LeakyRelu": (1, 1), "Cast": (1, 1),
         "GlobalAveragePool": (1, 1), "MaxPool": (1, 1), "Conv": (2, 3), "Resize": (1, 4),
         "ReduceSum": (1, 2), "Concat": (1, 1 << 16), "Identity": (1, 1), "Dropout": (1, 3),
         "Constant": (0, 0)}  # fmt: skip


@dataclass
class Imported:
    """The artifact of an import and what the caller should be told about it."""

    artifact: Artifact
    notes: list[str] = field(default_factory=list)


@dataclass
class _Weights:
    v: np.ndarray  # int64 (O, I, k, k): the integer weights
    scale: np.ndarray  # float32 (O,): s_w
    bits: int  # of the Quant (0 for BipolarQuant)
    narrow: bool
    real: np.ndarray  # the Quant's output as qonnx computes it (float32)


@dataclass
class _Conv:
    src: str  # the input activation
    onnx_name: str
    weights: _Weights
    bias: np.ndarray  # the Conv's bias input (float64), integers in the exact form
    attrs: dict[str, Any]
    activation: str = "linear"
    slope: float | None = None
    hint: dict[str, Any] | None = None  # an export's doc string: code format, leaky slope


class _Reader:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.g = model.graph
        self.val: dict[str, tuple[str, Any]] = {}  # tensor -> (kind, data)
        self.quants: dict[str, Quant] = {}  # artifact tensor -> its quantization
        self.nodes: list[Node] = []
        self.used: set[str] = set()
        self.notes: set[str] = set()
        self.input_name: str | None = None
        self.input_shape: tuple[int, int, int] | None = None
        self.real_input: str | None = None
        hdr = {p.key: p.value for p in model.metadata_props}
        self.header: dict[str, Any] = {}
        if META_FORMAT in hdr and META_HEADER in hdr:
            try:
                h = json.loads(hdr[META_HEADER])
            except ValueError:
                fail(f"metadata {META_HEADER!r} is not JSON")
            if not isinstance(h, dict):
                fail(f"metadata {META_HEADER!r} is not a JSON object")
            self.header = h
        self._weights: dict[int, _Weights] = {}
        for t in self.g.initializer:
            self.val[t.name] = ("const", numpy_helper.to_array(t))

    # --- helpers -------------------------------------------------------------------------------

    def label(self, n: onnx.NodeProto) -> str:
        return f"node {n.name or (n.output[0] if n.output else '?')!r} ({n.op_type})"

    def const(self, n: onnx.NodeProto, name: str, what: str) -> np.ndarray:
        kind, data = self.val.get(name, ("", None))
        if kind != "const":
            fail(f"{self.label(n)}: {what} must be a constant")
        return data

    def scalar(self, n: onnx.NodeProto, name: str, what: str) -> float:
        a = self.const(n, name, what)
        if a.size != 1:
            fail(f"{self.label(n)}: {what} must be one value per tensor, got shape {list(a.shape)}")
        return float(a.reshape(()))

    def attr(self, n: onnx.NodeProto, key: str, default: Any = None) -> Any:
        for a in n.attribute:
            if a.name == key:
                v = helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def act_name(self, want: str) -> str:
        name = want if want and len(want) <= 256 and want.isprintable() else "t"
        base, i = name, 1
        while name in self.quants:
            name, i = f"{base}_{i}", i + 1
        return name

    def emit(self, out: str, node: Node) -> None:
        self.nodes.append(node)
        self.quants[node.name] = node.quant
        self.val[out] = ("act", node.name)

    # --- quantizers ----------------------------------------------------------------------------

    def act_quant(self, n: onnx.NodeProto, image: bool = False) -> Quant:
        """The (b, z, s) of an activation Quant; one line for what the contract cannot hold."""
        if n.op_type != "Quant":
            fail(f"{self.label(n)}: activations must be quantized by Quant, not {n.op_type}")
        scale = self.scalar(n, n.input[1], "the activation scale (per tensor)")
        zero = self.scalar(n, n.input[2], "the activation zero point")
        bits = self.scalar(n, n.input[3], "the bit width")
        signed, narrow = int(self.attr(n, "signed", 1)), int(self.attr(n, "narrow", 1))
        rounding = str(self.attr(n, "rounding_mode", "ROUND")).upper()
        if bits != int(bits) or not 2 <= bits <= 8:
            fail(f"{self.label(n)}: {bits:g}-bit activations (the contract has 2 to 8 bits)")
        b = int(bits)
        if not (math.isfinite(scale) and scale > 0) or float(np.float32(scale)) != scale:
            fail(f"{self.label(n)}: scale {scale!r} must be a positive float32 value")
        if zero != int(zero):
            fail(f"{self.label(n)}: zero point {zero:g} is not an integer")
        if narrow:
            fail(f"{self.label(n)}: narrow-range activations (the contract clamps to 0..2^b-1)")
        z = int(zero) + ((1 << (b - 1)) if signed else 0)
        if not 0 <= z <= (1 << b) - 1:
            fail(f"{self.label(n)}: zero point {zero:g} outside the {b}-bit code range")
        if rounding not in ROUNDINGS:
            fail(
                f"{self.label(n)}: rounding_mode {rounding} on an activation (the contract rounds "
                f"to nearest, half up)"
            )
        # qonnx clamps before it rounds, so an unsigned quantizer rounds only values >= 0,
        # where HALF_UP (half away from zero) is the contract's round half up, exactly.
        if image:  # the image's rounding is pre-processing: the artifact starts at codes
            pass
        elif rounding in ("ROUND", "HALF_EVEN"):
            self.notes.add(
                "ROUND activation Quants (half to even) taken as the contract's round half up: "
                "exact ties may differ by one code"
            )
        elif signed:
            self.notes.add(
                "signed HALF_UP activation Quants (half away from zero) taken as the contract's "
                "round half up: exact negative ties may differ by one code"
            )
        return Quant(b, z, scale)

    def weights(self, n: onnx.NodeProto) -> _Weights:
        """The weights a Quant/BipolarQuant of a constant gives (computed once per node)."""
        key = id(n)
        if key not in self._weights:
            self._weights[key] = self.weight_quant(n)
        return self._weights[key]

    def quantized_const(self, n: onnx.NodeProto) -> np.ndarray:
        """The output of a Quant/BipolarQuant of a constant (a bias), as qonnx computes it."""
        x = self.const(n, n.input[0], "the quantized value")
        scale = self.const(n, n.input[1], "the scale")
        if n.op_type == "BipolarQuant":
            return binary_quant(x, scale)
        zero = self.const(n, n.input[2], "the zero point")
        bits = self.const(n, n.input[3], "the bit width")
        return int_quant(x, scale, zero, bits, int(self.attr(n, "signed", 1)),
                         int(self.attr(n, "narrow", 1)),
                         str(self.attr(n, "rounding_mode", "ROUND")))  # fmt: skip

    def weight_quant(self, n: onnx.NodeProto) -> _Weights:
        w = self.const(n, n.input[0], "the quantized weight").astype(np.float32)
        if w.ndim != 4:
            fail(f"{self.label(n)}: weights of shape {list(w.shape)} (a 2-d conv has 4 axes)")
        o = w.shape[0]
        scale = self.const(n, n.input[1], "the weight scale").astype(np.float32)
        if scale.size == 1:
            scale = np.full(o, scale.reshape(()), np.float32)
        elif scale.size == o and scale.shape[0] == o:
            scale = scale.reshape(o)
        else:
            fail(f"{self.label(n)}: weight scale of shape {list(scale.shape)} (per output channel "
                 f"or per tensor)")  # fmt: skip
        if not np.all(np.isfinite(scale) & (scale > 0)):
            fail(f"{self.label(n)}: weight scales must be finite and positive")
        s4 = scale.reshape(o, 1, 1, 1)
        if n.op_type == "BipolarQuant":
            v = np.where(w >= 0, 1, -1).astype(np.int64)
            return _Weights(v, scale, 0, False, (v * s4).astype(np.float32))
        zero = self.const(n, n.input[2], "the weight zero point")
        bits = self.scalar(n, n.input[3], "the weight bit width")
        signed, narrow = int(self.attr(n, "signed", 1)), int(self.attr(n, "narrow", 1))
        if np.any(zero != 0):
            fail(f"{self.label(n)}: weight zero point {zero.ravel()[0]:g} (the contract's "
                 f"weights are symmetric, zero point 0)")  # fmt: skip
        if not signed:
            fail(f"{self.label(n)}: unsigned weights (the contract's weights are signed)")
        if bits != int(bits) or not 1 <= bits <= 24:
            fail(f"{self.label(n)}: {bits:g}-bit weights")
        b = int(bits)
        if b == 1:  # qonnx's Quant runs a signed 1-bit quantizer as bipolar
            v = np.where(w / s4 >= 0, 1, -1).astype(np.int64)
            return _Weights(v, scale, 0, False, (v * s4).astype(np.float32))
        lo, hi = -(1 << (b - 1)) + (1 if narrow else 0), (1 << (b - 1)) - 1
        mode = str(self.attr(n, "rounding_mode", "ROUND")).upper()
        rnd = {"ROUND": np.round, "HALF_EVEN": np.round, "FLOOR": np.floor, "CEIL": np.ceil}
        if mode not in rnd:
            fail(f"{self.label(n)}: weight rounding_mode {mode}")
        v = rnd[mode](np.clip(w / s4, lo, hi)).astype(np.int64)  # qonnx: clamp, then round
        return _Weights(v, scale, b, bool(narrow), (v * s4).astype(np.float32))

    def weight_format(self, c: _Conv, label: str) -> tuple[str, int]:
        wt, hint = c.weights, c.hint or {}
        if "weight_format" in hint:
            fmt, bits = hint["weight_format"], hint.get("weight_bits")
            if not isinstance(fmt, str) or isinstance(bits, bool) or not isinstance(bits, int):
                fail(f"{label}: doc string hint {hint!r} names no format and bits")
            return fmt, bits
        v = wt.v
        if wt.bits == 0:
            return "binary", 1
        if wt.bits <= 8:
            if not wt.narrow and np.any(v == -(1 << (wt.bits - 1))):
                if wt.bits == 8:
                    fail(f"{label}: 8-bit full-range weights use -128 (the contract's int8 is "
                         f"-127..127; quantize with narrow_range)")  # fmt: skip
                return "int", wt.bits + 1
            return "int", max(wt.bits, 2)
        a = np.abs(v[v != 0])
        if a.size and np.all((a & (a - 1)) == 0):
            e = int(np.log2(a.max()))
            for bits in (3, 4, 5, 8):
                if e <= pow2_max_exponent(bits):
                    return "pow2", bits
        fail(f"{label}: {wt.bits}-bit weights are neither 2..8-bit uniform nor powers of two")

    # --- the graph -----------------------------------------------------------------------------

    def graph_input(self) -> None:
        real = [i for i in self.g.input if i.name not in self.val]
        if len(real) != 1:
            fail(f"the graph has {len(real)} non-constant inputs (one image input is supported)")
        vi = real[0]
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if tt.elem_type != TensorProto.FLOAT or len(dims) != 4 or None in dims[1:]:
            fail(f"graph input {vi.name!r} must be float32 [N, C, H, W] with fixed C, H, W")
        if dims[0] not in (None, 1):
            fail(f"graph input {vi.name!r}: batch {dims[0]} (one frame at a time)")
        self.real_input = vi.name
        self.input_shape = (int(dims[1]), int(dims[2]), int(dims[3]))
        self.val[vi.name] = ("input", None)

    def conv_attrs(self, n: onnx.NodeProto, wt: _Weights, cin: int) -> dict[str, Any]:
        o, i, kh, kw = wt.v.shape
        k = self.attr(n, "kernel_shape", [kh, kw])
        st = self.attr(n, "strides", [1, 1])
        pads = self.attr(n, "pads", [0, 0, 0, 0])
        dil = self.attr(n, "dilations", [1, 1])
        group = int(self.attr(n, "group", 1))
        if str(self.attr(n, "auto_pad", "NOTSET")) not in ("NOTSET", ""):
            fail(f"{self.label(n)}: auto_pad (write explicit pads)")
        if list(k) != [kh, kw] or kh != kw or kh % 2 == 0:
            fail(f"{self.label(n)}: kernel {list(k)} (square and odd only)")
        if len(set(st)) != 1 or st[0] not in (1, 2):
            fail(f"{self.label(n)}: strides {list(st)} (1 or 2, the same both ways)")
        if len(set(pads)) != 1:
            fail(f"{self.label(n)}: pads {list(pads)} (the same on every side)")
        if list(dil) != [1, 1]:
            fail(f"{self.label(n)}: dilations {list(dil)}")
        if group != 1 and not (group == cin == o and i == 1):
            fail(f"{self.label(n)}: group {group} (dense or depthwise convolutions only)")
        if group == 1 and i != cin:
            fail(f"{self.label(n)}: weights for {i} input channels, the input has {cin}")
        return {"out_channels": o, "kernel": kh, "stride": st[0], "pad": pads[0], "groups": group}

    def channels(self, name: str) -> int:
        return self.shape(name)[0]

    def shape(self, name: str) -> tuple[int, int, int]:
        """(C, H, W) of an activation: the graph so far validated as an artifact (which also
        names the first node that breaks a rule)."""
        if name == self.input_name:
            assert self.input_shape is not None
            return self.input_shape
        if self._shapes_at != len(self.nodes):
            try:
                self._shapes = validate(self.artifact([Output(self.nodes[-1].name)]))
            except ArtifactError as e:
                fail(f"the imported graph is not a valid artifact: {e}")
            self._shapes_at = len(self.nodes)
        return self._shapes[name]

    def run(self) -> Imported:
        self.graph_input()
        self._shapes: dict[str, tuple[int, int, int]] = {}
        self._shapes_at = -1
        for n in self.g.node:
            for i in n.input:
                if i and i not in self.val:
                    fail(f"{self.label(n)}: input {i!r} is not defined earlier (unsorted graph?)")
            lo, hi = ARITY.get(n.op_type, (0, 1 << 16))
            if not lo <= len(n.input) <= hi or not n.output or not n.output[0]:
                fail(f"{self.label(n)}: {len(n.input)} inputs, {len(n.output)} outputs")
            try:
                self.step(n)
            except (ArithmeticError, IndexError, KeyError, TypeError, AttributeError) as e:
                fail(f"{self.label(n)}: cannot be read ({type(e).__name__}: {e})")
            except ValueError as e:  # numpy's (broadcasting): QonnxError is one too, kept
                if isinstance(e, QonnxError):
                    raise
                fail(f"{self.label(n)}: cannot be read ({e})")
        return self.finish()

    def artifact(self, outputs: list[Output]) -> Artifact:
        assert self.input_name is not None and self.input_shape is not None
        h = self.header
        return Artifact(
            name=str(h.get("name", self.g.name or "qonnx-import")),
            input_name=self.input_name,
            input_shape=self.input_shape,
            input_quant=self.quants[self.input_name],
            nodes=list(self.nodes),
            outputs=outputs,
            classes=list(h.get("classes", [])),
            description=str(h.get("description", self.model.doc_string)),
            metadata=dict(h.get("metadata", {"source": "QONNX import"})),
        )

    def step(self, n: onnx.NodeProto) -> None:  # noqa: C901 - one dispatch over op types
        op = n.op_type
        ins = [self.val[i] if i else ("none", None) for i in n.input]
        kinds = [k for k, _ in ins]
        out = n.output[0] if n.output else ""
        if n.domain not in ("", "ai.onnx", QONNX_DOMAIN):
            fail(f"{self.label(n)}: domain {n.domain!r} is not ONNX or QONNX")
        if op == "Constant":
            self.val[out] = ("const", numpy_helper.to_array(self.attr(n, "value")))
            return
        if op in PASS_THROUGH:
            self.val[out] = ins[0]
            return
        if op in ("Quant", "BipolarQuant") and kinds[0] == "const":
            self.val[out] = ("wq", n)  # weights or a bias: read when its consumer says which
            return
        if op == "Quant" and kinds[0] == "input":
            if self.input_name is not None:
                fail(f"{self.label(n)}: the graph input is quantized twice")
            self.input_name = self.act_name(self.real_input or "image")
            self.quants[self.input_name] = self.act_quant(n, image=True)
            self.val[out] = ("act", self.input_name)
            return
        if kinds[0] == "input":
            fail(f"{self.label(n)}: the graph input must go through a Quant first")
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            fail(
                f"{self.label(n)}: op {op} is not supported (the contract has Conv, Add, Concat, "
                f"Resize/nearest x2, MaxPool, GlobalAveragePool, Relu, LeakyRelu and QONNX "
                f"Quant/BipolarQuant)"
            )
        handler(n, ins, out)

    # --- ops, by ONNX type (each maps the meanings of its inputs to its output's) -------------

    def op_Div(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        (k0, d0), (k1, _) = ins
        div = self.const(n, n.input[1], "the divisor") if k1 == "const" else None
        if k0 == "act" and div is not None and div.size == 1:
            if np.float32(div.reshape(())) == np.float32(self.quants[d0].scale):
                self.val[out] = ("div", d0)
                return
        if k0 == "wq" and div is not None:
            scale = self.weights(d0).scale
            if div.size in (1, scale.size) and np.array_equal(
                np.broadcast_to(div.astype(np.float32).reshape(-1), scale.shape), scale
            ):
                self.val[out] = ("wdiv", d0)
                return
        fail(f"{self.label(n)}: Div is understood only as (quantized tensor) / (its own scale)")

    def op_Round(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        k, d = ins[0]
        if k == "div":
            self.val[out] = ("int", d)
        elif k == "wdiv":
            self.val[out] = ("wint", d)
        else:
            fail(f"{self.label(n)}: Round is understood only of (quantized tensor) / (its scale)")

    def op_Conv(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        (kx, src), (kw, wnode) = ins[0], ins[1]
        exact = kx == "int" and kw == "wint"
        if not exact and not (kx == "act" and kw == "wq"):
            fail(
                f"{self.label(n)}: Conv must read a quantized activation and Quant-ed weights "
                f"(got {kx} and {kw})"
            )
        wt = self.weights(wnode)
        attrs = self.conv_attrs(n, wt, self.channels(src))
        o = wt.v.shape[0]
        bias = np.zeros(o)
        if len(ins) > 2 and ins[2][0] != "none":
            kb, b = ins[2]
            if kb == "wq":  # a Quant-ed bias (Brevitas Int32 bias): its output values
                b = self.quantized_const(b)
            elif kb != "const":
                fail(f"{self.label(n)}: the bias must be a constant or a Quant of one")
            bias = np.asarray(b, np.float64).reshape(-1)
            if bias.size != o:
                fail(f"{self.label(n)}: {bias.size} biases for {o} output channels")
        hint = None
        if n.doc_string.startswith(CONV_DOC_PREFIX):
            try:
                hint = json.loads(n.doc_string[len(CONV_DOC_PREFIX) :])
            except ValueError:
                fail(f"{self.label(n)}: doc string {n.doc_string[:60]!r} is not pow2det's JSON")
            if not isinstance(hint, dict):
                fail(f"{self.label(n)}: doc string hint is not a JSON object")
        conv = _Conv(src, n.name or out, wt, bias, attrs, hint=hint)
        self.val[out] = ("acc" if exact else "racc", conv)

    def op_Cast(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        k, d = ins[0]
        if self.attr(n, "to") == TensorProto.DOUBLE and k in ("acc", "int"):
            self.val[out] = ("accd" if k == "acc" else "intd", d)
        else:
            fail(f"{self.label(n)}: Cast is understood only to double, of integers")

    def op_Relu(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        k, d = ins[0]
        if k == "accd":
            self.val[out] = ("pos", d)
        elif k == "racc":
            self.val[out] = ("racc_act", replace(d, activation="relu"))
        elif k in ("sum", "radd") and not d["relu"]:
            self.val[out] = (k, {**d, "relu": True})
        elif k == "act" and self.quants[d].zero == 0:
            self.val[out] = ins[0]  # codes of a zero-point-0 tensor are never negative
        else:
            fail(f"{self.label(n)}: Relu only after a Conv or an Add (or on a non-negative Quant)")

    def op_LeakyRelu(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        k, d = ins[0]
        alpha = float(self.attr(n, "alpha", 0.01))
        if k != "racc":
            fail(f"{self.label(n)}: LeakyRelu only directly after a Conv")
        if not 0 < alpha < 1:
            fail(f"{self.label(n)}: slope {alpha} (the contract's leaky slope is in (0, 1))")
        self.val[out] = ("racc_act", replace(d, activation="leaky", slope=alpha))

    def op_Sub(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        (k0, d0), (k1, d1) = ins
        if k0 == "accd" and k1 == "pos" and d0 is d1:
            self.val[out] = ("neg", d0)
        else:
            fail(f"{self.label(n)}: Sub is understood only as acc - Relu(acc) (the leaky split)")

    def channel_consts(self, n: onnx.NodeProto, a: np.ndarray, count: int, what: str
                       ) -> np.ndarray:  # fmt: skip
        a = np.asarray(a, np.float64)
        if a.size == 1:
            a = np.full(count, float(a.reshape(())))
        elif a.size == count and (a.ndim <= 1 or a.shape[-3:] in ((count, 1, 1),)):
            a = a.reshape(count)
        else:
            fail(f"{self.label(n)}: {what} of shape {list(a.shape)} for {count} channels")
        return a

    def multiplier(self, n: onnx.NodeProto, name: str, count: int) -> np.ndarray:
        m = self.channel_consts(n, self.const(n, name, "the multiplier"), count, "multipliers")
        if np.any(m != np.round(m)) or m.min() < 0 or m.max() > MULT_MAX:
            fail(f"{self.label(n)}: multipliers must be integers in 0..{MULT_MAX}")
        return m.astype(np.int64)

    def op_Mul(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        (k0, d0), (k1, _) = ins
        if k1 != "const":
            fail(f"{self.label(n)}: Mul is understood only by a constant")
        if k0 in ("accd", "pos", "neg"):
            m = self.multiplier(n, n.input[1], d0.weights.v.shape[0])
            kind = {"accd": "plin", "pos": "ppos", "neg": "pneg"}[k0]
            self.val[out] = (kind, (d0, m))
        elif k0 == "intd":
            m = self.multiplier(n, n.input[1], 1)
            self.val[out] = ("term", (d0, int(m[0])))
        elif k0 == "psum":
            m = self.multiplier(n, n.input[1], 1)
            self.val[out] = ("pprod", (d0, int(m[0])))
        elif k0 == "req":
            self.finish_exact(n, d0, out)
        else:
            fail(f"{self.label(n)}: Mul of {k0} is not part of a supported layer")

    def op_Add(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        (k0, d0), (k1, d1) = ins
        if k0 == "ppos" and k1 == "pneg" and d0[0] is d1[0]:
            conv, mp = d0
            self.val[out] = ("prod", ("conv", conv, mp, d1[1], "leaky"))
        elif k0 == "term" and k1 == "term":
            self.val[out] = ("sum", {"terms": [d0, d1], "relu": False})
        elif k0 == "act" and k1 == "act":
            self.val[out] = ("radd", {"srcs": [d0, d1], "relu": False})
        elif k1 == "const" and k0 in ("plin", "ppos", "prod", "sum", "pprod"):
            if k0 == "plin":
                payload = ("conv", d0[0], d0[1], d0[1], "linear")
            elif k0 == "ppos":
                payload = ("conv", d0[0], d0[1], np.zeros_like(d0[1]), "relu")
            elif k0 == "prod":
                payload = d0
            elif k0 == "pprod":
                payload = ("avgpool", *d0)
            else:
                payload = ("add", d0)
            self.val[out] = ("half", (payload, self.const(n, n.input[1], "the rounding offset")))
        else:
            fail(f"{self.label(n)}: Add of {k0} and {k1} is not part of a supported layer")

    def op_Quant(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        k, d = ins[0]
        if k == "half":
            self.requant_exact(n, d, out)
            return
        q = self.act_quant(n)
        name = self.act_name(out)
        if k in ("racc", "racc_act"):
            self.emit(out, self.float_conv(n, d, q, name))
        elif k == "radd":
            a, c = d["srcs"]
            qa, qc = self.quants[a], self.quants[c]
            try:
                m_a, m_b, sh = add_constants(qa.scale, qc.scale, q.scale)
            except ValueError as e:
                fail(f"{self.label(n)}: {e}")
            if max(m_a, m_b) > MULT_MAX:
                fail(f"{self.label(n)}: the add's multipliers exceed {MULT_MAX}")
            act = "relu" if d["relu"] else "linear"
            self.emit(out, Node(name, "add", [a, c], {"m_a": m_a, "m_b": m_b, "shift": sh,
                                                      "activation": act}, q))  # fmt: skip
        elif k == "rpool":
            c, h, w = self.shape(d)
            try:
                m, sh = quantize_multiplier(self.quants[d].scale / (h * w * q.scale))
            except ValueError as e:
                fail(f"{self.label(n)}: {e}")
            self.emit(out, Node(name, "avgpool", [d], {"multiplier": m, "shift": sh}, q))
        elif k == "act" and q.same_as(self.quants[d]):
            self.val[out] = ins[0]  # a re-quantization to the same parameters changes nothing
        else:
            fail(f"{self.label(n)}: a Quant here would re-quantize without a conv or add (of {k})")

    def float_conv(self, n: onnx.NodeProto, c: _Conv, q: Quant, name: str) -> Node:
        s_in = self.quants[c.src].scale
        s_w = c.weights.scale.astype(np.float64)
        grid = s_in * s_w
        bias = np.round(c.bias / grid)
        if np.any(bias < INT32_MIN) or np.any(bias > INT32_MAX):
            fail(f"{self.label(n)}: a bias does not fit 32 bits on the accumulator grid")
        if not np.allclose(bias * grid, c.bias, rtol=1e-6, atol=0):
            self.notes.add("float biases rounded to the accumulator grid s_in * s_w")
        try:
            mp, mn, sh = conv_constants(s_in * s_w / q.scale, c.activation, c.slope or 0.1)
        except ValueError as e:
            fail(f"{self.label(n)}: {e}")
        m, step = s_in * s_w / q.scale, np.exp2(-sh.astype(np.float64))
        exact = np.all(mp * step == m)
        if c.activation == "leaky":  # the float graph multiplies by the slope exactly
            exact = exact and np.all(mn * step == (c.slope or 0.1) * m)
        if not exact:
            self.notes.add("float scales approximated by the contract's 16-bit multipliers")
        return self.conv_node(n, c, name, q, bias.astype(np.int32), mp, mn, sh)

    def conv_node(self, n: onnx.NodeProto, c: _Conv, name: str, q: Quant, bias: np.ndarray,
                  mp: np.ndarray, mn: np.ndarray, sh: np.ndarray) -> Node:  # fmt: skip
        label = self.label(n)
        fmt, bits = self.weight_format(c, label)
        try:
            codes = encode_codes(c.weights.v, fmt, bits)
        except (CodeError, ValueError) as e:
            fail(f"{label}: weights are not {bits}-bit {fmt} codes ({e})")
        attrs = {**c.attrs, "weight_format": fmt, "weight_bits": bits, "activation": c.activation}
        if c.activation == "leaky":
            hint = c.hint
            if isinstance(hint, dict):  # an export says whether the slope was given
                if "leaky_slope" in hint:
                    attrs["leaky_slope"] = float(hint["leaky_slope"])
            elif c.slope is not None:
                attrs["leaky_slope"] = float(c.slope)
            else:  # the exact form holds M_neg, not the slope: read it back
                o = int(np.argmax(mp))
                attrs["leaky_slope"] = round(float(mn[o]) / float(mp[o]), 6) if mp[o] else 0.1
        tensors = {
            "codes": codes,
            "weight_scale": c.weights.scale.astype(np.float32),
            "bias": bias.astype(np.int32),
            "m_pos": mp.astype(np.uint16),
            "m_neg": mn.astype(np.uint16),
            "shift": sh.astype(np.uint8),
        }
        return Node(name, "conv", [c.src], attrs, q, tensors)

    def requant_exact(self, n: onnx.NodeProto, d: tuple, out: str) -> None:
        """The FLOOR Quant of the exact tail: scale 2^S, zero point, bits; checks the offset."""
        payload, half = d
        count = payload[1].weights.v.shape[0] if payload[0] == "conv" else 1
        two_s = self.channel_consts(n, self.const(n, n.input[1], "the scale 2^S"), count,
                                    "scales")  # fmt: skip
        s = np.log2(two_s)
        if np.any(s != np.round(s)) or s.min() < 0 or s.max() > SHIFT_MAX:
            fail(f"{self.label(n)}: the requantizer's scale must be 2^S with S in 0..{SHIFT_MAX}")
        s = s.astype(np.int64)
        half = self.channel_consts(n, half, count, "rounding offsets")
        want = np.where(s > 0, np.exp2(np.maximum(s - 1, 0)), 0.0)
        if not np.array_equal(half, want):
            fail(f"{self.label(n)}: the offset before the FLOOR Quant must be 2^(S-1): the "
                 f"contract rounds half up")  # fmt: skip
        if str(self.attr(n, "rounding_mode", "ROUND")).upper() != "FLOOR":
            fail(f"{self.label(n)}: a requantizer after the 2^(S-1) offset must round FLOOR")
        zero = self.scalar(n, n.input[2], "the zero point")
        bits = self.scalar(n, n.input[3], "the bit width")
        if int(self.attr(n, "signed", 1)) or int(self.attr(n, "narrow", 1)):
            fail(f"{self.label(n)}: the requantizer must be unsigned and full range")
        if bits != int(bits) or not 2 <= bits <= 8 or zero != int(zero):
            fail(f"{self.label(n)}: {bits:g} bits, zero point {zero:g}")
        self.val[out] = ("req", (payload, s, int(zero), int(bits)))

    def finish_exact(self, n: onnx.NodeProto, d: tuple, out: str) -> None:
        """The Mul by s * 2^-S after the FLOOR Quant: the real activation; emit the node."""
        payload, s, zero, bits = d
        k = self.channel_consts(n, self.const(n, n.input[1], "the rescale"), s.size, "rescales")
        scales = (k.astype(np.float32).astype(np.float64) * np.exp2(s)).astype(np.float32)
        if len(set(scales.tolist())) != 1:
            fail(f"{self.label(n)}: the output scale differs between channels (per tensor only)")
        q = Quant(bits, zero, float(scales[0]))
        if not 0 <= zero <= q.qmax:
            fail(f"{self.label(n)}: zero point {zero} outside the {bits}-bit codes")
        name = self.act_name(out)
        if payload[0] == "conv":
            _, c, mp, mn, act = payload  # the activation is the graph's structure
            bias = c.bias
            if np.any(bias != np.round(bias)) or np.abs(bias).max(initial=0) > INT32_MAX:
                fail(f"{self.label(n)}: the exact form's bias must be 32-bit integers")
            c = replace(c, activation=act)
            self.emit(out, self.conv_node(n, c, name, q, bias.astype(np.int32), mp, mn, s))
        elif payload[0] == "avgpool":
            _, src, m = payload
            self.emit(out, Node(name, "avgpool", [src], {"multiplier": m, "shift": int(s[0])}, q))
        else:
            d2 = payload[1]
            (a, m_a), (c2, m_b) = d2["terms"]
            act = "relu" if d2["relu"] else "linear"
            self.emit(out, Node(name, "add", [a, c2], {"m_a": m_a, "m_b": m_b,
                                                       "shift": int(s[0]), "activation": act},
                                q))  # fmt: skip

    def op_ReduceSum(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        k, d = ins[0]
        axes = self.const(n, n.input[1], "the axes") if len(n.input) > 1 else None
        if (k == "intd" and axes is not None and sorted(axes.ravel().tolist()) == [2, 3]
                and int(self.attr(n, "keepdims", 1))):  # fmt: skip
            self.val[out] = ("psum", d)
        else:
            fail(f"{self.label(n)}: ReduceSum only of integers over the map (a global pool)")

    def op_GlobalAveragePool(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        k, d = ins[0]
        if k != "act":
            fail(f"{self.label(n)}: GlobalAveragePool only of a quantized activation")
        self.val[out] = ("rpool", d)

    def op_Concat(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        if int(self.attr(n, "axis", 1)) != 1 or any(k != "act" for k, _ in ins):
            fail(f"{self.label(n)}: Concat only of quantized activations along channels")
        srcs = [d for _, d in ins]
        q = self.quants[srcs[0]]
        for s in srcs[1:]:
            if not self.quants[s].same_as(q):
                fail(f"{self.label(n)}: inputs quantized differently (the contract's concat "
                     f"needs one scale, zero point and bit width)")  # fmt: skip
        self.emit(out, Node(self.act_name(out), "concat", srcs, {}, q))

    def op_MaxPool(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        k0, src = ins[0]
        if k0 != "act" or len(n.output) > 1:
            fail(f"{self.label(n)}: MaxPool only of a quantized activation")
        k = self.attr(n, "kernel_shape")
        if not k:
            fail(f"{self.label(n)}: MaxPool without kernel_shape")
        st = self.attr(n, "strides", [1, 1])
        pads = self.attr(n, "pads", [0, 0, 0, 0])
        if (
            len(set(k)) != 1
            or len(set(st)) != 1
            or pads[0] != pads[1]
            or pads[2] != pads[3]
            or int(self.attr(n, "ceil_mode", 0))
            or list(self.attr(n, "dilations", [1, 1])) != [1, 1]
            or str(self.attr(n, "auto_pad", "NOTSET")) not in ("NOTSET", "")
        ):
            fail(f"{self.label(n)}: MaxPool kernel {k}, strides {st}, pads {pads} (square, "
                 f"the same padding both ways, no ceil_mode or dilation)")  # fmt: skip
        attrs = {"kernel": k[0], "stride": st[0], "pad_before": pads[0], "pad_after": pads[2]}
        self.emit(out, Node(self.act_name(out), "maxpool", [src], attrs, self.quants[src]))

    def op_Resize(self, n: onnx.NodeProto, ins: list, out: str) -> None:  # noqa: N802
        k0, src = ins[0]
        scales = None
        if len(n.input) > 2 and n.input[2]:
            scales = self.const(n, n.input[2], "the scales")
        ok = (
            k0 == "act"
            and scales is not None
            and scales.size == 4
            and list(scales.astype(np.float64).ravel()) == [1, 1, 2, 2]
            and str(self.attr(n, "mode", "nearest")) == "nearest"
            and str(self.attr(n, "nearest_mode", "round_prefer_floor")) in ("floor",
                                                                              "round_prefer_floor")
            and str(self.attr(n, "coordinate_transformation_mode", "half_pixel")) in
            ("asymmetric", "half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn")
        )  # fmt: skip
        # At an exact factor of 2 these coordinate modes and nearest modes all pick floor(i / 2).
        if not ok:
            fail(f"{self.label(n)}: Resize only nearest, by scales [1, 1, 2, 2], of a quantized "
                 f"activation")  # fmt: skip
        self.emit(out, Node(self.act_name(out), "upsample", [src], {}, self.quants[src]))

    # --- the outputs ---------------------------------------------------------------------------

    def finish(self) -> Imported:
        if self.input_name is None or not self.nodes:
            fail("the graph has no quantized input or no operation")
        names = []
        for o in self.g.output:
            k, d = self.val.get(o.name, ("", None))
            if k != "act" or d == self.input_name:
                fail(f"graph output {o.name!r} is not a quantized activation of an operation")
            names.append(d)
        outputs = [Output(nm) for nm in names]
        hdr_out = self.header.get("outputs") if self.header else None
        # By position: qonnx's cleanup renames tensors but keeps the outputs in order.
        matched = isinstance(hdr_out, list) and len(hdr_out) == len(names)
        matched = matched and all(isinstance(o, dict) for o in hdr_out)
        if matched:
            outputs = [
                Output(nm, o.get("kind", "raw"),
                       {k: v for k, v in o.items() if k not in ("node", "kind")})
                for nm, o in zip(names, hdr_out, strict=True)
            ]  # fmt: skip
        art = self.artifact(outputs)
        if not matched:  # class names go with the outputs they name (yolo heads, logits)
            art.classes = []
        try:
            validate(art)
        except ArtifactError as e:
            fail(f"the imported model is not a valid artifact: {e}")
        return Imported(art, sorted(self.notes))


def import_model(model: onnx.ModelProto) -> Imported:
    """The artifact of a QONNX model; :class:`~quant.qonnx.common.QonnxError` (one line naming
    the node and why) for what the contract cannot express."""
    return _Reader(model).run()


def import_file(src: str | Path, dst: str | Path) -> Imported:
    """Read the QONNX file ``src``, write its artifact to ``dst`` (validated, sealed, atomic)."""
    src, dst = Path(src), Path(dst)
    if same_file(src, dst) or src.resolve() == dst.resolve():
        fail(f"{dst}: is the input file (write the artifact to a new path)")
    try:
        model = onnx.load(str(src))
    except Exception as e:  # onnx raises DecodeError, OSError, ValueError...: all one line
        fail(f"{src}: not an ONNX model ({type(e).__name__}: {' '.join(str(e).split())[:120]})")
    try:
        imp = import_model(model)
    except RecursionError:
        fail(f"{src}: the graph is too deeply nested")
    try:
        save(imp.artifact, dst)
    except ArtifactError as e:
        fail(f"{dst}: {e}")
    except OSError as e:
        fail(f"{dst}: cannot write ({e.strerror or e})")
    return imp
