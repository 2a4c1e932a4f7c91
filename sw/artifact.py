"""The model artifact: a versioned, pickle-free file that carries one quantized network.

A model travels from ``quant/`` (which writes it) to ``sw/`` and ``sim/`` (which read it) as one
``.npz`` file (a zip of ``.npy`` arrays) whose ``__header__`` member is UTF-8 JSON. The format and
every rule checked here are specified in ``docs/arithmetic.md`` sections 3-8 and 12; this module
needs numpy alone, so it runs on the board.

Loading validates everything and raises :class:`ArtifactError` with one line that names the file
and the problem; nothing is half-loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_NAME = "pow2det.artifact"
FORMAT_VERSION = 1
HEADER_MEMBER = "__header__"

OPS = ("conv", "add", "concat", "upsample", "maxpool")
ACTIVATIONS = ("linear", "relu", "leaky")
ADD_ACTIVATIONS = ("linear", "relu")
# Weight formats and the bit widths each supports (docs/arithmetic.md section 3).
WEIGHT_BITS = {"pow2": (3, 4, 5, 8), "binary": (1,), "int": (2, 3, 4, 5, 6, 7, 8)}
ACT_BITS = range(2, 9)
MULT_MAX = 2**16 - 1  # M_pos, M_neg, M_a, M_c are unsigned 16-bit
SHIFT_MAX = 47  # the 48-bit product P = acc * M never needs a larger shift
ACC_MAX = 2**31 - 1  # 32-bit signed accumulators (section 4.3)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# dtype and shape rule of each conv tensor; "o" is C_out, "i" is C_in/groups, "k" the kernel.
CONV_TENSORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "codes": ("uint8", ("o", "i", "k", "k")),
    "weight_scale": ("float32", ("o",)),
    "bias": ("int32", ("o",)),
    "m_pos": ("uint16", ("o",)),
    "m_neg": ("uint16", ("o",)),
    "shift": ("uint8", ("o",)),
}


class ArtifactError(ValueError):
    """An artifact that cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class Quant:
    """Quantization parameters of an activation tensor: real = scale * (code - zero)."""

    bits: int
    zero: int
    scale: float

    @property
    def qmax(self) -> int:
        return (1 << self.bits) - 1

    def same_as(self, other: Quant) -> bool:
        """Equality as stored: the scale compared as float32 bits."""
        return (
            self.bits == other.bits
            and self.zero == other.zero
            and np.float32(self.scale) == np.float32(other.scale)
        )

    def to_json(self) -> dict[str, Any]:
        return {"bits": self.bits, "zero": self.zero, "scale": float(np.float32(self.scale))}


@dataclass
class Node:
    """One operation of the network; ``tensors`` maps a role (``codes``, ``bias`` ...) to data."""

    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Any]
    quant: Quant
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Output:
    """A network output handed to the ARM side, e.g. a YOLO head with its anchors."""

    node: str
    kind: str = "raw"  # "yolo" or "raw"
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Artifact:
    name: str
    input_name: str
    input_shape: tuple[int, int, int]
    input_quant: Quant
    nodes: list[Node]
    outputs: list[Output]
    classes: list[str] = field(default_factory=list)
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def quant_of(self, name: str) -> Quant:
        return self.input_quant if name == self.input_name else self.node(name).quant

    def shapes(self) -> dict[str, tuple[int, int, int]]:
        """Shape (C, H, W) of every tensor, by node name; validates the graph on the way."""
        return validate(self)


# ----------------------------------------------------------------------------------------------
# Weight codes (docs/arithmetic.md section 3)


def pow2_max_exponent(bits: int) -> int:
    """E_B: the largest exponent a ``bits``-bit pow2 code may carry."""
    return min((1 << (bits - 1)) - 2, 15)


def decode_codes(codes: np.ndarray, fmt: str, bits: int) -> np.ndarray:
    """Integer weights (int64) of valid codes. Validity is checked by :func:`invalid_codes`."""
    c = codes.astype(np.int64)
    if fmt == "pow2":
        sign = (c >> (bits - 1)) & 1
        m = c & ((1 << (bits - 1)) - 1)
        mag = np.where(m > 0, np.left_shift(1, np.maximum(m - 1, 0)), 0)
        return np.where(sign == 1, -mag, mag)
    if fmt == "binary":
        return 1 - 2 * (c & 1)
    if fmt == "int":
        return np.where(c >= (1 << (bits - 1)), c - (1 << bits), c)
    raise ArtifactError(f"unknown weight format {fmt!r}")


def invalid_codes(codes: np.ndarray, fmt: str, bits: int) -> np.ndarray:
    """Boolean mask of codes that no valid writer emits for this format and width."""
    c = codes.astype(np.int64)
    bad = (c < 0) | (c >= (1 << bits))
    if fmt == "pow2":
        sign = (c >> (bits - 1)) & 1
        m = c & ((1 << (bits - 1)) - 1)
        bad |= (sign == 1) & (m == 0)  # negative zero: each weight has one encoding
        bad |= m > pow2_max_exponent(bits) + 1
    elif fmt == "int":
        bad |= c == (1 << (bits - 1))  # -2^(B-1): the range is symmetric
    return bad


def encode_pow2(values: np.ndarray, bits: int) -> np.ndarray:
    """Codes of integer weights that are 0 or +-2^e with 0 <= e <= E_B (raises otherwise)."""
    v = np.asarray(values, dtype=np.int64)
    mag = np.abs(v)
    e = np.zeros_like(mag)
    nz = mag > 0
    e[nz] = np.round(np.log2(mag[nz])).astype(np.int64)
    if np.any(nz & ((np.left_shift(1, e) != mag) | (e > pow2_max_exponent(bits)))):
        raise ArtifactError(f"weights are not {bits}-bit powers of two")
    m = np.where(nz, e + 1, 0)
    sign = (v < 0).astype(np.int64)
    return ((sign << (bits - 1)) | m).astype(np.uint8)


def encode_int(values: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement codes of integer weights in the symmetric ``bits``-bit range."""
    v = np.asarray(values, dtype=np.int64)
    lim = (1 << (bits - 1)) - 1
    if np.any(np.abs(v) > lim):
        raise ArtifactError(f"weights exceed the symmetric {bits}-bit range +-{lim}")
    return (v & ((1 << bits) - 1)).astype(np.uint8)


def encode_binary(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.int64)
    if np.any(np.abs(v) != 1):
        raise ArtifactError("binary weights must be +1 or -1")
    return (v < 0).astype(np.uint8)


def encode_codes(values: np.ndarray, fmt: str, bits: int) -> np.ndarray:
    """Codes of integer weights in the given format (the inverse of :func:`decode_codes`)."""
    if fmt == "pow2":
        return encode_pow2(values, bits)
    if fmt == "int":
        return encode_int(values, bits)
    if fmt == "binary":
        return encode_binary(values)
    raise ArtifactError(f"unknown weight format {fmt!r}")


# ----------------------------------------------------------------------------------------------
# Validation


def _fail(msg: str) -> None:
    raise ArtifactError(" ".join(msg.split()))


def _int(d: dict[str, Any], key: str, where: str, lo: int, hi: int | None = None) -> int:
    if key not in d:
        _fail(f"{where}: missing {key!r}")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        _fail(f"{where}: {key!r} must be an integer, got {v!r}")
    if v < lo or (hi is not None and v > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        _fail(f"{where}: {key} = {v} is out of range {rng}")
    return v


def _check_quant(q: Quant, where: str) -> None:
    if q.bits not in ACT_BITS:
        _fail(f"{where}: activation bits {q.bits} not in 2..8")
    if not 0 <= q.zero <= q.qmax:
        _fail(f"{where}: zero point {q.zero} outside 0..{q.qmax}")
    if not (math.isfinite(q.scale) and q.scale > 0):
        _fail(f"{where}: scale {q.scale!r} must be finite and positive")


def _check_tensor(node: Node, role: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    where = f"node {node.name!r}"
    if role not in node.tensors:
        _fail(f"{where}: missing tensor {role!r}")
    t = node.tensors[role]
    if not isinstance(t, np.ndarray) or t.dtype != np.dtype(dtype):
        got = getattr(t, "dtype", type(t).__name__)
        _fail(f"{where}: tensor {role!r} has dtype {got}, expected {dtype}")
    if t.shape != shape:
        _fail(f"{where}: tensor {role!r} has shape {list(t.shape)}, expected {list(shape)}")
    return t


def _conv_shape(node: Node, cin: int, h: int, w: int, in_q: Quant) -> tuple[int, int, int]:
    where = f"node {node.name!r} (conv)"
    a = node.attrs
    cout = _int(a, "out_channels", where, 1)
    k = _int(a, "kernel", where, 1, 15)
    if k % 2 == 0:
        _fail(f"{where}: kernel {k} must be odd")
    st = _int(a, "stride", where, 1, 2)
    pad = _int(a, "pad", where, 0, k - 1)
    groups = _int(a, "groups", where, 1)
    if groups != 1 and not (groups == cin == cout):
        _fail(
            f"{where}: groups = {groups} with {cin} input and {cout} output channels; only dense "
            f"(groups = 1) and depthwise (groups = in = out channels) convolutions are supported"
        )
    act = a.get("activation")
    if act not in ACTIVATIONS:
        _fail(f"{where}: activation {act!r} not one of {', '.join(ACTIVATIONS)}")
    fmt = a.get("weight_format")
    if fmt not in WEIGHT_BITS:
        _fail(f"{where}: weight_format {fmt!r} not one of {', '.join(WEIGHT_BITS)}")
    bits = _int(a, "weight_bits", where, 1, 8)
    if bits not in WEIGHT_BITS[fmt]:
        _fail(f"{where}: {bits}-bit weights are not supported in format {fmt!r}")
    hout = (h + 2 * pad - k) // st + 1
    wout = (w + 2 * pad - k) // st + 1
    if hout < 1 or wout < 1:
        _fail(f"{where}: input map {h}x{w} is smaller than kernel {k} with pad {pad}")

    dims = {"o": cout, "i": cin // groups, "k": k}
    t = {
        role: _check_tensor(node, role, dt, tuple(dims[s] for s in shp))
        for role, (dt, shp) in CONV_TENSORS.items()
    }
    bad = invalid_codes(t["codes"], fmt, bits)
    if bad.any():
        idx = tuple(int(x) for x in np.argwhere(bad)[0])
        _fail(f"{where}: invalid {bits}-bit {fmt} weight code {int(t['codes'][idx])} at {idx}")
    ws = t["weight_scale"]
    if not np.all(np.isfinite(ws) & (ws > 0)):
        _fail(f"{where}: weight_scale must be finite and positive")
    if int(t["shift"].max(initial=0)) > SHIFT_MAX:
        _fail(f"{where}: shift {int(t['shift'].max())} above {SHIFT_MAX}")
    mp, mn = t["m_pos"].astype(np.int64), t["m_neg"].astype(np.int64)
    if act == "linear" and np.any(mn != mp):
        _fail(f"{where}: linear activation needs m_neg == m_pos")
    if act == "relu" and np.any(mn != 0):
        _fail(f"{where}: relu activation needs m_neg == 0")
    if act == "leaky":
        slope = a.get("leaky_slope", 0.1)
        if not isinstance(slope, float) or not 0.0 < slope < 1.0:
            _fail(f"{where}: leaky_slope {slope!r} must be a float in (0, 1)")
        if np.any(np.abs(mn - slope * mp) > 1.0):
            _fail(f"{where}: m_neg is not leaky_slope * m_pos (within rounding)")
    # Section 4.3: the worst case |acc| over all inputs must fit a 32-bit accumulator.
    v = decode_codes(t["codes"], fmt, bits)
    a_in = max(in_q.zero, in_q.qmax - in_q.zero)
    bound = np.abs(t["bias"].astype(np.int64)) + a_in * np.abs(v).reshape(cout, -1).sum(axis=1)
    if bound.max() > ACC_MAX:
        o = int(bound.argmax())
        _fail(
            f"{where}: output channel {o} can reach |acc| = {int(bound[o])} > 2^31 - 1; "
            f"the 32-bit accumulator could overflow"
        )
    return cout, hout, wout


def validate(art: Artifact) -> dict[str, tuple[int, int, int]]:
    """Check every rule of docs/arithmetic.md section 12; return the shape of every tensor."""
    _check_quant(art.input_quant, f"input {art.input_name!r}")
    if len(art.input_shape) != 3 or any(
        isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in art.input_shape
    ):
        _fail(f"input shape {list(art.input_shape)} must be three positive integers [C, H, W]")
    shapes: dict[str, tuple[int, int, int]] = {art.input_name: tuple(art.input_shape)}
    if not art.nodes:
        _fail("the network has no nodes")
    for node in art.nodes:
        where = f"node {node.name!r} ({node.op})"
        if not isinstance(node.name, str) or not node.name:
            _fail(f"a node has an empty or non-string name: {node.name!r}")
        if node.name in shapes:
            _fail(f"node name {node.name!r} is used twice")
        if node.op not in OPS:
            _fail(f"node {node.name!r}: unknown op {node.op!r}")
        _check_quant(node.quant, where)
        for src in node.inputs:
            if src not in shapes:
                _fail(f"{where}: input {src!r} is not an earlier node")
        n_in = {"conv": 1, "upsample": 1, "maxpool": 1, "add": 2}.get(node.op)
        if n_in is not None and len(node.inputs) != n_in:
            _fail(f"{where}: takes {n_in} input(s), got {len(node.inputs)}")
        if node.op == "concat" and len(node.inputs) < 2:
            _fail(f"{where}: needs at least 2 inputs")
        extra = set(node.tensors) - (set(CONV_TENSORS) if node.op == "conv" else set())
        if extra:
            _fail(f"{where}: unexpected tensor(s) {sorted(extra)}")
        in_shapes = [shapes[s] for s in node.inputs]
        in_q = [art.quant_of(s) for s in node.inputs]
        c, h, w = in_shapes[0]
        if node.op == "conv":
            shapes[node.name] = _conv_shape(node, c, h, w, in_q[0])
        elif node.op == "add":
            if in_shapes[0] != in_shapes[1]:
                _fail(f"{where}: operand shapes {list(in_shapes[0])} and {list(in_shapes[1])}")
            _int(node.attrs, "m_a", where, 0, MULT_MAX)
            _int(node.attrs, "m_b", where, 0, MULT_MAX)
            _int(node.attrs, "shift", where, 0, SHIFT_MAX)
            if node.attrs.get("activation") not in ADD_ACTIVATIONS:
                _fail(f"{where}: activation {node.attrs.get('activation')!r} not linear/relu")
            shapes[node.name] = in_shapes[0]
        elif node.op == "concat":
            for s, sh, q in zip(node.inputs, in_shapes, in_q, strict=True):
                if sh[1:] != (h, w):
                    _fail(f"{where}: input {s!r} is {sh[1]}x{sh[2]}, expected {h}x{w}")
                if not q.same_as(node.quant):
                    _fail(f"{where}: input {s!r} has quantization {q} unlike the output's")
            shapes[node.name] = (sum(sh[0] for sh in in_shapes), h, w)
        elif node.op == "upsample":
            if not in_q[0].same_as(node.quant):
                _fail(f"{where}: quantization must equal its input's")
            shapes[node.name] = (c, 2 * h, 2 * w)
        elif node.op == "maxpool":
            k = _int(node.attrs, "kernel", where, 1, 15)
            st = _int(node.attrs, "stride", where, 1, 15)
            p0 = _int(node.attrs, "pad_before", where, 0, k - 1)
            p1 = _int(node.attrs, "pad_after", where, 0, k - 1)
            if not in_q[0].same_as(node.quant):
                _fail(f"{where}: quantization must equal its input's")
            ho, wo = (h + p0 + p1 - k) // st + 1, (w + p0 + p1 - k) // st + 1
            if ho < 1 or wo < 1:
                _fail(f"{where}: input map {h}x{w} is smaller than kernel {k}")
            shapes[node.name] = (c, ho, wo)
    if not art.outputs:
        _fail("the network names no outputs")
    for out in art.outputs:
        if out.node not in shapes:
            _fail(f"output {out.node!r} is not a node")
        if out.kind == "yolo":
            anchors = out.attrs.get("anchors")
            ncls = out.attrs.get("classes")
            if (
                not isinstance(anchors, list)
                or not anchors
                or not all(isinstance(p, list) and len(p) == 2 for p in anchors)
            ):
                _fail(f"output {out.node!r}: anchors must be a list of [w, h] pairs")
            if not isinstance(ncls, int) or ncls < 1:
                _fail(f"output {out.node!r}: classes must be a positive integer")
            want = len(anchors) * (5 + ncls)
            if shapes[out.node][0] != want:
                _fail(
                    f"output {out.node!r}: {shapes[out.node][0]} channels, but "
                    f"{len(anchors)} anchors x (5 + {ncls} classes) = {want}"
                )
            if art.classes and len(art.classes) != ncls:
                _fail(f"output {out.node!r}: {ncls} classes but {len(art.classes)} class names")
        elif out.kind != "raw":
            _fail(f"output {out.node!r}: unknown kind {out.kind!r}")
    return shapes


# ----------------------------------------------------------------------------------------------
# File I/O


def _header(art: Artifact, tensor_names: dict[tuple[str, str], str]) -> dict[str, Any]:
    nodes = []
    for n in art.nodes:
        d: dict[str, Any] = {
            "name": n.name,
            "op": n.op,
            "inputs": list(n.inputs),
            "attrs": dict(n.attrs),
            "quant": n.quant.to_json(),
        }
        if n.tensors:
            d["tensors"] = {role: tensor_names[(n.name, role)] for role in n.tensors}
        nodes.append(d)
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "name": art.name,
        "description": art.description,
        "input": {
            "name": art.input_name,
            "shape": list(art.input_shape),
            "quant": art.input_quant.to_json(),
        },
        "classes": list(art.classes),
        "nodes": nodes,
        "outputs": [{"node": o.node, "kind": o.kind, **o.attrs} for o in art.outputs],
        "metadata": art.metadata,
    }


def save(art: Artifact, path: str | os.PathLike[str]) -> Path:
    """Validate and write ``art``; the file appears atomically (never half-written)."""
    validate(art)
    return write_unvalidated(art, path)


def write_unvalidated(art: Artifact, path: str | os.PathLike[str]) -> Path:
    """Write without validating: only for tests that play a faulty writer. Use :func:`save`."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    names: dict[tuple[str, str], str] = {}
    for n in art.nodes:
        for role, t in n.tensors.items():
            names[(n.name, role)] = f"{n.name}.{role}"
            arrays[f"{n.name}.{role}"] = np.ascontiguousarray(t)
    header = _header(art, names)
    header["tensors"] = {
        k: {
            "dtype": str(a.dtype),
            "shape": list(a.shape),
            "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
        }
        for k, a in arrays.items()
    }
    blob = json.dumps(header, indent=1).encode()
    arrays[HEADER_MEMBER] = np.frombuffer(blob, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        # mkstemp makes the file private (0600); an artifact is meant to be shared and copied
        # to a board, so give it the permissions a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _quant_from(d: Any, where: str) -> Quant:
    if not isinstance(d, dict):
        _fail(f"{where}: quant must be an object")
    bits = _int(d, "bits", where, 0)
    zero = _int(d, "zero", where, -(2**31))
    scale = d.get("scale")
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        _fail(f"{where}: scale must be a number")
    return Quant(bits, zero, float(scale))


def _parse(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> Artifact:
    if header.get("format") != FORMAT_NAME:
        _fail(f"not a {FORMAT_NAME} file (format {header.get('format')!r})")
    if header.get("version") != FORMAT_VERSION:
        _fail(
            f"artifact version {header.get('version')!r} is not supported "
            f"(this runtime reads version {FORMAT_VERSION}; re-export the model)"
        )
    listed = header.get("tensors")
    if not isinstance(listed, dict):
        _fail("header has no 'tensors' table")
    for name, spec in listed.items():
        if name not in arrays:
            _fail(f"tensor {name!r} is listed but missing from the file")
        a = arrays[name]
        if str(a.dtype) != spec.get("dtype") or list(a.shape) != spec.get("shape"):
            _fail(
                f"tensor {name!r} is {a.dtype}{list(a.shape)}, header says "
                f"{spec.get('dtype')}{spec.get('shape')}"
            )
        if hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() != spec.get("sha256"):
            _fail(f"tensor {name!r} fails its SHA-256 check (corrupted file)")
    unlisted = set(arrays) - set(listed)
    if unlisted:
        _fail(f"tensor {sorted(unlisted)[0]!r} is in the file but not in the header")
    inp = header.get("input")
    if not isinstance(inp, dict) or "shape" not in inp or "name" not in inp:
        _fail("header has no valid 'input' (name, shape, quant)")
    nodes = []
    raw_nodes = header.get("nodes")
    if not isinstance(raw_nodes, list):
        _fail("header 'nodes' must be a list")
    for i, d in enumerate(raw_nodes):
        if not isinstance(d, dict):
            _fail(f"node #{i} is not an object")
        where = f"node {d.get('name', '#' + str(i))!r}"
        refs = d.get("tensors", {})
        if not isinstance(refs, dict):
            _fail(f"{where}: 'tensors' must be an object")
        tensors = {}
        for role, tname in refs.items():
            if tname not in arrays:
                _fail(f"{where}: tensor {tname!r} is missing from the file")
            tensors[role] = arrays[tname]
        inputs = d.get("inputs", [])
        if not isinstance(inputs, list) or not all(isinstance(s, str) for s in inputs):
            _fail(f"{where}: 'inputs' must be a list of node names")
        attrs = d.get("attrs", {})
        if not isinstance(attrs, dict):
            _fail(f"{where}: 'attrs' must be an object")
        nodes.append(
            Node(
                name=d.get("name"),
                op=d.get("op"),
                inputs=inputs,
                attrs=attrs,
                quant=_quant_from(d.get("quant"), where),
                tensors=tensors,
            )
        )
    outputs = []
    for o in header.get("outputs", []):
        if not isinstance(o, dict) or "node" not in o:
            _fail("an output entry has no 'node'")
        rest = {k: v for k, v in o.items() if k not in ("node", "kind")}
        outputs.append(Output(node=o["node"], kind=o.get("kind", "raw"), attrs=rest))
    shape = inp["shape"]
    art = Artifact(
        name=str(header.get("name", "")),
        input_name=inp["name"],
        input_shape=tuple(shape) if isinstance(shape, list) else shape,
        input_quant=_quant_from(inp.get("quant"), "input"),
        nodes=nodes,
        outputs=outputs,
        classes=list(header.get("classes", [])),
        description=str(header.get("description", "")),
        metadata=header.get("metadata", {}) or {},
    )
    validate(art)
    return art


def with_input_size(art: Artifact, height: int, width: int) -> Artifact:
    """The same network for another input size (every constant of a fully convolutional
    artifact is size-independent; only the input shape and so the head grids change).
    Validated: a size the graph cannot take (odd sizes at a stride-2 concat, say) raises
    :class:`ArtifactError` naming the node."""
    out = replace(art, input_shape=(art.input_shape[0], height, width))
    validate(out)
    return out


def load(path: str | os.PathLike[str]) -> Artifact:
    """Read and fully validate an artifact; raise :class:`ArtifactError` naming the problem."""
    path = Path(path)
    try:
        return _load(path)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None


def _load(path: Path) -> Artifact:
    if not path.is_file():
        _fail("no such artifact file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        _fail(f"cannot read artifact (truncated or not an artifact file: {e})")
    if HEADER_MEMBER not in arrays:
        _fail("no header member: not an artifact file")
    raw = arrays.pop(HEADER_MEMBER)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        _fail("header member is not a byte string")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(f"header is not valid JSON ({e})")
    if not isinstance(header, dict):
        _fail("header is not a JSON object")
    return _parse(header, arrays)
