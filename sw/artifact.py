"""The model artifact: a versioned, pickle-free file that carries one quantized network.

A model travels from ``quant/`` (which writes it) to ``sw/`` and ``sim/`` (which read it) as one
``.npz`` file (a zip of ``.npy`` arrays) whose ``__header__`` member is UTF-8 JSON. The format and
every rule checked here are specified in ``docs/arithmetic.md`` sections 3-8 and 12; this module
needs numpy alone, so it runs on the board.

Format version 2 makes every byte of the file significant: the zip's end-of-central-directory
comment is ``pow2det-sha256:<hex>``, the SHA-256 of every byte before it, and the JSON header holds
``digest``, a SHA-256 over the canonical header and every tensor (name, dtype, shape, bytes). The
loader checks the file checksum first, then the digest, then every header field's type and range,
then the arithmetic rules. Loading raises :class:`ArtifactError` with one line that names the file
and the problem, and nothing else; nothing is half-loaded.

Version 1 files (no checksums over the header) are refused with the one-time upgrade command::

    python -m sw.artifact upgrade OLD.npz NEW.npz   # validate OLD by the v1 rules, write NEW as v2
    python -m sw.artifact check FILE...             # one line per file: ok, or the problem
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import stat
import sys
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from sw.atomic import replace_file
from sw.compat import zip_strict

# The integer limits are the contract's (M <= MULT_MAX, S <= SHIFT_MAX, 32-bit accumulators).
from sw.contract.arith import ACC_MAX, MULT_MAX, SHIFT_MAX
from sw.contract.codes import (  # noqa: F401 - re-exported: the artifact's code formats
    CodeError,
    decode_codes,
    encode_binary,
    encode_codes,
    encode_int,
    encode_pow2,
    encode_pow2x2,
    invalid_codes,
    pow2_max_exponent,
    pow2x2_values,
)

FORMAT_NAME = "pow2det.artifact"
FORMAT_VERSION = 4  # the newest; version 3 added pow2x2 weights, version 4 the avgpool op
READ_VERSIONS = (2, 3, 4)  # a model is written as the lowest version that holds it


def version_for(nodes: list[Any]) -> int:
    """The lowest version that holds these nodes, so older runtimes keep reading them."""
    if any(n.op == "avgpool" for n in nodes):
        return 4
    return 3 if any(n.attrs.get("weight_format") == "pow2x2" for n in nodes) else 2


# What each version added, for the loader's refusal of a file that claims too low a version.
VERSION_FEATURES = {3: "pow2x2 weights", 4: "an avgpool node"}


HEADER_MEMBER = "__header__"
UPGRADE_COMMAND = "python -m sw.artifact upgrade"

OPS = ("conv", "add", "concat", "upsample", "maxpool", "avgpool")
ACTIVATIONS = ("linear", "relu", "leaky")
ADD_ACTIVATIONS = ("linear", "relu")
# Weight formats and the bit widths each supports (docs/arithmetic.md section 3).
WEIGHT_BITS = {"pow2": (3, 4, 5, 8), "binary": (1,), "int": (2, 3, 4, 5, 6, 7, 8), "pow2x2": (8,)}
ACT_BITS = range(2, 9)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_CHANNELS = 65535  # channels, groups and a yolo head's classes
MAX_MAP = 16384  # input height and width
MAX_NAME = 256  # characters of a node or input name
MAX_ANCHOR = 1e5  # pixels

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
# Validation


def _fail(msg: str) -> NoReturn:
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


def _is_name(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= MAX_NAME and v.isprintable()


def _is_pos(v: Any, hi: float) -> bool:
    """A finite number (not a bool) in (0, hi]."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and 0 < v <= hi


def _check_quant(q: Quant, where: str) -> None:
    if not isinstance(q, Quant) or isinstance(q.bits, bool) or not isinstance(q.bits, int):
        _fail(f"{where}: quant must be a Quant with integer bits")
    if q.bits not in ACT_BITS:
        _fail(f"{where}: activation bits {q.bits} not in 2..8")
    if isinstance(q.zero, bool) or not isinstance(q.zero, int) or not 0 <= q.zero <= q.qmax:
        _fail(f"{where}: zero point {q.zero} outside 0..{q.qmax}")
    if isinstance(q.scale, bool) or not isinstance(q.scale, (int, float, np.floating)):
        _fail(f"{where}: scale {q.scale!r} must be a number")
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
    cout = _int(a, "out_channels", where, 1, MAX_CHANNELS)
    k = _int(a, "kernel", where, 1, 15)
    if k % 2 == 0:
        _fail(f"{where}: kernel {k} must be odd")
    st = _int(a, "stride", where, 1, 2)
    pad = _int(a, "pad", where, 0, k - 1)
    groups = _int(a, "groups", where, 1, MAX_CHANNELS)
    if groups != 1 and not (groups == cin == cout):
        _fail(
            f"{where}: groups = {groups} with {cin} input and {cout} output channels; only dense "
            f"(groups = 1) and depthwise (groups = in = out channels) convolutions are supported"
        )
    act = a.get("activation")
    if not isinstance(act, str) or act not in ACTIVATIONS:
        _fail(f"{where}: activation {act!r} not one of {', '.join(ACTIVATIONS)}")
    fmt = a.get("weight_format")
    if not isinstance(fmt, str) or fmt not in WEIGHT_BITS:
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
    if act != "leaky" and "leaky_slope" in a:
        _fail(f"{where}: leaky_slope given for activation {act!r}")
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


def _avgpool_shape(node: Node, c: int, h: int, w: int, in_q: Quant) -> tuple[int, int, int]:
    """Global average pool (docs/arithmetic.md section 7.1): the sum over the map must fit a
    32-bit accumulator and its product with the multiplier 48 bits, for every input."""
    where = f"node {node.name!r} (avgpool)"
    m = _int(node.attrs, "multiplier", where, 0, MULT_MAX)
    _int(node.attrs, "shift", where, 0, SHIFT_MAX)
    total = max(in_q.zero, in_q.qmax - in_q.zero) * h * w
    if total > ACC_MAX:
        _fail(f"{where}: the sum over a {h}x{w} map can reach {total} > 2^31 - 1")
    if total * m >= 2**47:
        _fail(f"{where}: sum x multiplier can reach {total * m} >= 2^47 (48-bit product)")
    return c, 1, 1


def validate(art: Artifact) -> dict[str, tuple[int, int, int]]:
    """Check every rule of docs/arithmetic.md section 12; return the shape of every tensor."""
    if not isinstance(art.name, str) or not isinstance(art.description, str):
        _fail("name and description must be strings")
    if not isinstance(art.classes, list) or not all(isinstance(c, str) for c in art.classes):
        _fail("classes must be a list of strings")
    if not isinstance(art.metadata, dict):
        _fail("metadata must be a JSON object")
    if not _is_name(art.input_name):
        _fail(f"input name {art.input_name!r} must be a non-empty printable string")
    _check_quant(art.input_quant, f"input {art.input_name!r}")
    if (
        not isinstance(art.input_shape, (tuple, list))
        or len(art.input_shape) != 3
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in art.input_shape)
    ):
        _fail(f"input shape {list(art.input_shape)} must be three positive integers [C, H, W]")
    c, h, w = art.input_shape
    if c > MAX_CHANNELS or h > MAX_MAP or w > MAX_MAP:
        _fail(
            f"input shape {list(art.input_shape)} is above {MAX_CHANNELS} x {MAX_MAP} x {MAX_MAP}"
        )
    shapes: dict[str, tuple[int, int, int]] = {art.input_name: tuple(art.input_shape)}
    if not art.nodes:
        _fail("the network has no nodes")
    for node in art.nodes:
        where = f"node {node.name!r} ({node.op})"
        if not _is_name(node.name):
            _fail(f"a node has an empty, overlong or non-printable name: {node.name!r}")
        if node.name in shapes:
            _fail(f"node name {node.name!r} is used twice")
        if node.op not in OPS:
            _fail(f"node {node.name!r}: unknown op {node.op!r}")
        _check_quant(node.quant, where)
        if not isinstance(node.inputs, list) or not all(isinstance(s, str) for s in node.inputs):
            _fail(f"{where}: inputs must be a list of node names")
        if not isinstance(node.attrs, dict) or not isinstance(node.tensors, dict):
            _fail(f"{where}: attrs and tensors must be dicts")
        for src in node.inputs:
            if src not in shapes:
                _fail(f"{where}: input {src!r} is not an earlier node")
        n_in = {"conv": 1, "upsample": 1, "maxpool": 1, "avgpool": 1, "add": 2}.get(node.op)
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
            for s, sh, q in zip_strict(node.inputs, in_shapes, in_q):
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
        elif node.op == "avgpool":
            shapes[node.name] = _avgpool_shape(node, c, h, w, in_q[0])
    if not art.outputs:
        _fail("the network names no outputs")
    named: set[str] = set()
    for out in art.outputs:
        if not isinstance(out.node, str) or out.node not in shapes or out.node == art.input_name:
            _fail(f"output {out.node!r} is not a node")
        if out.node in named:
            _fail(f"output {out.node!r} is named twice")
        named.add(out.node)
        if not isinstance(out.attrs, dict):
            _fail(f"output {out.node!r}: attrs must be a dict")
        if out.kind == "yolo":
            anchors = out.attrs.get("anchors")
            ncls = out.attrs.get("classes")
            if (
                not isinstance(anchors, list)
                or not 1 <= len(anchors) <= 64
                or not all(
                    isinstance(p, list) and len(p) == 2 and all(_is_pos(x, MAX_ANCHOR) for x in p)
                    for p in anchors
                )
            ):
                _fail(
                    f"output {out.node!r}: anchors must be a list of 1 to 64 [w, h] pairs of "
                    f"positive finite numbers up to {MAX_ANCHOR:g}"
                )
            if isinstance(ncls, bool) or not isinstance(ncls, int) or not 1 <= ncls <= MAX_CHANNELS:
                _fail(f"output {out.node!r}: classes must be a positive integer")
            if not _is_pos(out.attrs.get("scale_x_y", 1.0), 16.0):
                _fail(f"output {out.node!r}: scale_x_y must be a number in (0, 16]")
            mask = out.attrs.get("mask", list(range(len(anchors))))
            if (
                not isinstance(mask, list)
                or len(mask) != len(anchors)
                or any(isinstance(m, bool) or not isinstance(m, int) or m < 0 for m in mask)
                or len(set(mask)) != len(mask)
            ):
                _fail(f"output {out.node!r}: mask must be {len(anchors)} distinct indices >= 0")
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
# File I/O (docs/arithmetic.md section 12)

ZIP_EOCD = b"PK\x05\x06"  # signature of the zip's end-of-central-directory record (22 bytes)
TRAILER_PREFIX = b"pow2det-sha256:"
TRAILER_LEN = len(TRAILER_PREFIX) + 64  # the EOCD comment: prefix + hex SHA-256
DIGEST_PREFIX = "sha256:"
DIGEST_DOMAIN = b"pow2det.artifact digest 2\n"
NPY_DTYPES = {"|u1": "uint8", "<u2": "uint16", "<i4": "int32", "<f4": "float32"}
MAX_FILE = 2 * 2**30  # bytes of a file, and of all its members decompressed
ZIP_RATIO = 64  # members may decompress to at most 64x the file size (+ ZIP_SLACK): no zip bomb
ZIP_SLACK = 16 * 2**20
MAX_MEMBERS = 100_000
MAX_HEADER = 64 * 2**20  # bytes of the JSON header
CORRUPTED = "file is corrupted (SHA-256 mismatch) or truncated"
TOP_KEYS = ("format", "version", "name", "description", "input", "classes", "nodes", "outputs",
            "tensors", "metadata")  # fmt: skip
NODE_KEYS = ("name", "op", "inputs", "attrs", "quant")
# Attributes of each op: (required, optional). Unknown keys are refused, none is ignored.
OP_ATTRS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "conv": (
        (
            "out_channels",
            "kernel",
            "stride",
            "pad",
            "groups",
            "weight_format",
            "weight_bits",
            "activation",
        ),
        ("leaky_slope",),
    ),  # fmt: skip
    "add": (("m_a", "m_b", "shift", "activation"), ()),
    "maxpool": (("kernel", "stride", "pad_before", "pad_after"), ()),
    "avgpool": (("multiplier", "shift"), ()),
    "upsample": ((), ()),
    "concat": ((), ()),
}
# Keys of an output entry beyond node and kind: (required, optional), by kind.
OUTPUT_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "yolo": (("anchors", "classes"), ("scale_x_y", "mask")),
    "raw": ((), ()),
}


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
        "version": version_for(art.nodes),
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


def canonical_json(obj: Any) -> bytes:
    """The one serialization of a header that the digest covers and the file stores."""
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError, RecursionError) as e:
        _fail(f"header is not plain JSON (no NaN, infinity or non-JSON types): {_short(e)}")
    return text.encode("ascii")


def content_digest(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """``sha256:<hex>`` over the canonical header without its ``digest`` and every tensor
    (name, dtype, shape, bytes) in sorted order; lengths are prefixed, so nothing is ambiguous."""
    h = hashlib.sha256(DIGEST_DOMAIN)
    for part in [canonical_json({k: v for k, v in header.items() if k != "digest"})] + [
        x
        for name in sorted(arrays)
        for x in (
            canonical_json([name, str(arrays[name].dtype), list(arrays[name].shape)]),
            np.ascontiguousarray(arrays[name]).tobytes(),
        )
    ]:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return DIGEST_PREFIX + h.hexdigest()


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def seal(zip_bytes: bytes) -> bytes:
    """Give a zip (with no comment) its ``pow2det-sha256:`` comment over every byte before it."""
    if len(zip_bytes) < 22 or zip_bytes[-22:-18] != ZIP_EOCD or zip_bytes[-2:] != b"\0\0":
        _fail("cannot seal: not a zip ending in a comment-less end record")
    body = zip_bytes[:-2] + TRAILER_LEN.to_bytes(2, "little")
    return body + TRAILER_PREFIX + hashlib.sha256(body).hexdigest().encode("ascii")


def pack(
    header: dict[str, Any],
    arrays: dict[str, np.ndarray],
    *,
    recompute_digest: bool = True,
    header_bytes: bytes | None = None,
) -> bytes:
    """The bytes of an artifact file holding ``header`` and ``arrays`` (name -> array), sealed.

    The writer's last step; tests use it to play a faulty or hostile writer: with
    ``recompute_digest=False`` the header keeps the ``digest`` it has, and ``header_bytes``
    replaces the stored header text altogether."""
    if header_bytes is None:
        if recompute_digest:
            header = {**header, "digest": content_digest(header, arrays)}
        header_bytes = canonical_json(header)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        members = [(HEADER_MEMBER, np.frombuffer(header_bytes, np.uint8))]
        for name, a in [*members, *sorted(arrays.items())]:
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, _npy_bytes(a))
    return seal(buf.getvalue())


def save(art: Artifact, path: str | os.PathLike[str]) -> Path:
    """Validate and write ``art`` as format version :func:`version_for` its nodes; the file
    appears atomically (never half-written), and only if :func:`load` accepts its bytes."""
    validate(art)
    data = _encode(art)
    _from_bytes(data, Path(path))  # what save writes, load reads: raises ArtifactError otherwise
    return write_atomic(data, Path(path))


def write_unvalidated(art: Artifact, path: str | os.PathLike[str]) -> Path:
    """Write without validating: only for tests that play a faulty writer. Use :func:`save`."""
    return write_atomic(_encode(art), Path(path))


def header_and_arrays(art: Artifact) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header (with its tensor table, before the digest) and the arrays by member name that
    a writer stores for ``art``."""
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
    return header, arrays


def _encode(art: Artifact) -> bytes:
    return pack(*header_and_arrays(art))


def write_atomic(data: bytes, path: Path) -> Path:
    """Write ``data`` to ``path`` (its folder made if missing) through a temporary file and a
    rename (``sw.atomic.replace_file``): never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, data)
    return path


# --- reading: bytes -> zip members -> arrays and header; each step bounded, every error one line


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _read_file(path: Path) -> bytes:
    try:
        st = path.stat()
    except OSError:
        _fail("no such artifact file")
    if stat.S_ISDIR(st.st_mode):
        _fail("is a directory, not an artifact file")
    if not stat.S_ISREG(st.st_mode):
        _fail("not a regular file")
    if st.st_size > MAX_FILE:
        _fail(f"file of {st.st_size} bytes is above the {MAX_FILE}-byte limit")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except OSError as e:
        _fail(f"cannot read the file ({_short(e)})")
    if len(data) > MAX_FILE:
        _fail(f"file is above the {MAX_FILE}-byte limit")
    return data


def sealed(data: bytes) -> bool | None:
    """True when ``data`` ends in a matching ``pow2det-sha256:`` comment, False when it ends in
    one that does not match, None when it has none (not version 2, truncated or not a zip)."""
    n = len(data)
    eocd = n - TRAILER_LEN - 22
    if (
        eocd < 0
        or data[eocd : eocd + 4] != ZIP_EOCD
        or data[eocd + 20 : eocd + 22] != TRAILER_LEN.to_bytes(2, "little")
        or data[n - TRAILER_LEN : n - 64] != TRAILER_PREFIX
    ):
        return None
    return hashlib.sha256(data[: n - TRAILER_LEN]).hexdigest().encode("ascii") == data[n - 64 :]


def _members(data: bytes, only: str | None = None) -> dict[str, bytes]:
    """The members of a zip (or just ``only``), refusing odd or oversized archives."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                _fail(f"zip has {len(infos)} members, above {MAX_MEMBERS}")
            limit = min(MAX_FILE, ZIP_RATIO * len(data) + ZIP_SLACK)
            seen: set[str] = set()
            total = 0
            for info in infos:
                if info.filename in seen:
                    _fail(f"zip member {info.filename!r} appears twice")
                seen.add(info.filename)
                if info.flag_bits & 0x1:
                    _fail(f"zip member {info.filename!r} is encrypted")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    _fail(
                        f"zip member {info.filename!r} uses compression method "
                        f"{info.compress_type} (only stored and deflated are read)"
                    )
                total += info.file_size
                if total > limit:
                    _fail(
                        f"zip members would decompress to more than {limit} bytes "
                        f"({ZIP_RATIO}x the file size): refused as a possible zip bomb"
                    )
            out = {}
            for info in infos:
                if only is None or info.filename == only:
                    b = zf.read(info)
                    if len(b) != info.file_size:
                        _fail(f"zip member {info.filename!r} is shorter than its directory says")
                    out[info.filename] = b
            return out
    except ArtifactError:
        raise
    except Exception as e:  # zlib.error, BadZipFile, EOFError, NotImplementedError, MemoryError...
        _fail(f"cannot read the zip archive ({type(e).__name__}: {_short(e)})")


def _npy(member: str, b: bytes) -> np.ndarray:
    """The array of one ``.npy`` member: a plain little-endian dtype of the format, C order, and
    exactly the bytes its shape needs (checked before anything is allocated)."""
    try:
        f = io.BytesIO(b)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            _fail(f"member {member!r}: .npy version {version} is not read")
    except ArtifactError:
        raise
    except Exception as e:
        _fail(f"member {member!r} is not a valid .npy array ({type(e).__name__}: {_short(e)})")
    if fortran:
        _fail(f"member {member!r} is stored in Fortran order")
    if dtype.str not in NPY_DTYPES or dtype.hasobject or dtype.shape:
        _fail(f"member {member!r} has dtype {dtype.str}, not one of {', '.join(NPY_DTYPES)}")
    if len(shape) > 8 or not all(type(d) is int and d >= 0 for d in shape):
        _fail(f"member {member!r} has an invalid shape {shape!r}")
    need = math.prod(shape) * dtype.itemsize
    if need != len(b) - f.tell():
        _fail(f"member {member!r} holds {len(b) - f.tell()} data bytes, its shape needs {need}")
    return np.frombuffer(b, dtype=dtype, offset=f.tell()).reshape(shape).copy()


def _strict_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number {text} is out of range")
    return v


def _strict_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"key {k!r} appears twice in one object")
        d[k] = v
    return d


def _header_of(members: dict[str, bytes]) -> tuple[dict[str, Any], bytes]:
    """The parsed header (a dict) and its stored bytes."""
    name = HEADER_MEMBER + ".npy"
    if name not in members:
        _fail("no header member: not an artifact file")
    if len(members[name]) > MAX_HEADER + 1024:
        _fail(f"header is above {MAX_HEADER} bytes")
    raw = _npy(name, members[name])
    if raw.dtype != np.uint8 or raw.ndim != 1:
        _fail("header member is not a byte string")
    blob = raw.tobytes()
    try:
        header = json.loads(
            blob.decode("utf-8"),
            parse_float=_strict_float,
            parse_constant=_strict_constant,
            object_pairs_hook=_no_duplicates,
        )
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as e:
        _fail(f"header is not valid JSON ({type(e).__name__}: {_short(e)})")
    if not isinstance(header, dict):
        _fail("header is not a JSON object")
    return header, blob


def _unpack(data: bytes) -> tuple[dict[str, Any], bytes, dict[str, np.ndarray]]:
    """Header, its stored bytes, and the arrays by tensor name (members named ``<name>.npy``)."""
    members = _members(data)
    header, blob = _header_of(members)
    arrays = {}
    for member, b in members.items():
        if member == HEADER_MEMBER + ".npy":
            continue
        if not member.endswith(".npy") or len(member) == 4:
            _fail(f"zip member {member!r} is not a .npy array")
        arrays[member[:-4]] = _npy(member, b)
    return header, blob, arrays


def read_members(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The raw header and arrays of an artifact file, checked for nothing but readability:
    for tools and tests that edit files. Use :func:`load` to use one."""
    path = Path(path)
    try:
        header, _, arrays = _unpack(_read_file(path))
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None
    return header, arrays


def _check_format(header: dict[str, Any], path: Path) -> int:
    """The version of a header of the right format; refuses version 1 with the upgrade command
    and any other version but this runtime's."""
    if header.get("format") != FORMAT_NAME:
        _fail(f"not a {FORMAT_NAME} file (format {_short_repr(header.get('format'))})")
    v = header.get("version")
    if type(v) is int and v == 1:
        _fail(
            f"artifact format version 1 is no longer read (this runtime reads versions "
            f"{READ_VERSIONS[0]}-{FORMAT_VERSION}, which checksum the header too); upgrade it "
            f"once with: "
            f"{UPGRADE_COMMAND} {path} NEW.npz"
        )
    if type(v) is not int or v not in READ_VERSIONS:
        _fail(
            f"artifact version {_short_repr(v)} is not supported "
            f"(this runtime reads versions {READ_VERSIONS[0]}-{FORMAT_VERSION}; "
            f"re-export the model)"
        )
    return v


def _short_repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _from_bytes(data: bytes, path: Path) -> Artifact:
    """Load from the file's bytes: checksum, digest, canonical header, fields, rules."""
    ok = sealed(data)
    if ok is None:
        # No checksum: say what it is if it can be told (a version 1 file, another version).
        try:
            header, _ = _header_of(_members(data, only=HEADER_MEMBER + ".npy"))
        except ArtifactError:
            _fail(f"{CORRUPTED}, or not an artifact file (no {TRAILER_PREFIX.decode()} checksum)")
        _check_format(header, path)
        _fail(f"{CORRUPTED} (no {TRAILER_PREFIX.decode()} checksum)")
    if not ok:
        _fail(CORRUPTED)
    header, blob, arrays = _unpack(data)
    _check_format(header, path)
    digest = header.get("digest")
    if not isinstance(digest, str) or not digest.startswith(DIGEST_PREFIX):
        _fail("header has no digest")
    if content_digest(header, arrays) != digest:
        _fail("header or tensors do not match the digest (edited or corrupted file)")
    if canonical_json(header) != blob:
        _fail("header is not stored in canonical JSON form (edited file)")
    art = _parse(header, arrays, FORMAT_VERSION)
    need = version_for(art.nodes)
    if header["version"] < need:
        _fail(
            f"version {header['version']} file holds {VERSION_FEATURES[need]} "
            f"(version {need} and later)"
        )
    return art


# --- header fields: type and range of each, then the rules of validate()


def _keys(d: Any, required: tuple[str, ...], optional: tuple[str, ...], where: str) -> None:
    if not isinstance(d, dict):
        _fail(f"{where} must be an object")
    missing = [k for k in required if k not in d]
    if missing:
        _fail(f"{where}: missing {missing[0]!r}")
    unknown = sorted(set(d) - set(required) - set(optional))
    if unknown:
        _fail(f"{where}: unknown key {_short_repr(unknown[0])}")


def _quant_from(d: Any, where: str) -> Quant:
    _keys(d, ("bits", "zero", "scale"), (), f"{where}: quant")
    bits = _int(d, "bits", where, 0, 64)
    zero = _int(d, "zero", where, INT32_MIN, INT32_MAX)
    scale = d["scale"]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        _fail(f"{where}: scale must be a number")
    scale = float(scale)
    if not (math.isfinite(scale) and 0 < scale < 3e38):
        _fail(f"{where}: scale {scale!r} must be finite and positive")
    if float(np.float32(scale)) != scale:
        _fail(f"{where}: scale {scale!r} is not a float32 value")
    return Quant(bits, zero, scale)


def _parse(header: dict[str, Any], arrays: dict[str, np.ndarray], version: int) -> Artifact:
    _keys(header, TOP_KEYS, ("digest",) if version >= 2 else (), "header")
    if version >= 2 and "digest" not in header:
        _fail("header has no digest")
    for key in ("name", "description"):
        if not isinstance(header[key], str):
            _fail(f"header {key!r} must be a string")
    classes = header["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        _fail("header 'classes' must be a list of strings")
    if not isinstance(header["metadata"], dict):
        _fail("header 'metadata' must be a JSON object")
    inp = header["input"]
    _keys(inp, ("name", "shape", "quant"), (), "header 'input'")
    shape = inp["shape"]
    if not isinstance(shape, list) or len(shape) != 3 or not all(type(d) is int for d in shape):
        _fail(f"input shape {_short_repr(shape)} must be three positive integers [C, H, W]")

    listed = header["tensors"]
    if not isinstance(listed, dict):
        _fail("header 'tensors' must be an object")
    for name, spec in listed.items():
        where = f"tensor {_short_repr(name)}"
        _keys(spec, ("dtype", "shape", "sha256"), (), f"header {where}")
        if spec["dtype"] not in NPY_DTYPES.values():
            _fail(f"{where}: dtype {_short_repr(spec['dtype'])} is not one of the format's")
        shp = spec["shape"]
        if (
            not isinstance(shp, list)
            or len(shp) > 8
            or not all(type(d) is int and 0 <= d <= INT32_MAX for d in shp)
        ):
            _fail(f"{where}: shape {_short_repr(shp)} must be a list of at most 8 sizes")
        sha = spec["sha256"]
        if not isinstance(sha, str) or len(sha) != 64 or set(sha) - set("0123456789abcdef"):
            _fail(f"{where}: sha256 must be 64 lowercase hex digits")
        if name not in arrays:
            _fail(f"tensor {name!r} is listed but missing from the file")
        a = arrays[name]
        if str(a.dtype) != spec["dtype"] or list(a.shape) != shp:
            _fail(f"tensor {name!r} is {a.dtype}{list(a.shape)}, header says {spec['dtype']}{shp}")
        if hashlib.sha256(a.tobytes()).hexdigest() != sha:
            _fail(f"tensor {name!r} fails its SHA-256 check (corrupted file)")
    unlisted = set(arrays) - set(listed)
    if unlisted:
        _fail(f"tensor {sorted(unlisted)[0]!r} is in the file but not in the header")

    raw_nodes = header["nodes"]
    if not isinstance(raw_nodes, list):
        _fail("header 'nodes' must be a list")
    nodes = []
    used: set[str] = set()
    for i, d in enumerate(raw_nodes):
        if not isinstance(d, dict):
            _fail(f"node #{i} is not an object")
        name = d.get("name")
        where = f"node {_short_repr(name) if _is_name(name) else '#' + str(i)}"
        op = d.get("op")
        if not isinstance(op, str) or op not in OPS:
            _fail(f"{where}: unknown op {_short_repr(op)}")
        _keys(d, NODE_KEYS, ("tensors",), where)
        if not _is_name(name):
            _fail(f"node #{i}: name {_short_repr(name)} must be a non-empty printable string")
        inputs = d["inputs"]
        if not isinstance(inputs, list) or not all(isinstance(s, str) for s in inputs):
            _fail(f"{where}: 'inputs' must be a list of node names")
        required, optional = OP_ATTRS[op]
        _keys(d["attrs"], required, optional, f"{where} ({op}) attrs")
        refs = d.get("tensors", {})
        if not isinstance(refs, dict):
            _fail(f"{where}: 'tensors' must be an object")
        tensors = {}
        for role, tname in refs.items():
            if op != "conv" or role not in CONV_TENSORS:
                _fail(f"{where}: unexpected tensor role {_short_repr(role)}")
            if not isinstance(tname, str) or tname not in listed:
                _fail(f"{where}: tensor {_short_repr(tname)} is missing from the file")
            if tname in used:
                _fail(f"{where}: tensor {tname!r} is used twice")
            used.add(tname)
            tensors[role] = arrays[tname]
        nodes.append(Node(name, op, list(inputs), dict(d["attrs"]), _quant_from(d["quant"], where),
                          tensors))  # fmt: skip
    unused = sorted(set(listed) - used)
    if unused:
        _fail(f"tensor {unused[0]!r} is listed but used by no node")

    raw_outputs = header["outputs"]
    if not isinstance(raw_outputs, list):
        _fail("header 'outputs' must be a list")
    outputs = []
    for i, o in enumerate(raw_outputs):
        if not isinstance(o, dict) or not isinstance(o.get("node"), str):
            _fail(f"output #{i} has no 'node' name")
        kind = o.get("kind")
        if not isinstance(kind, str) or kind not in OUTPUT_KEYS:
            _fail(f"output {o['node']!r}: unknown kind {_short_repr(kind)}")
        required, optional = OUTPUT_KEYS[kind]
        _keys(o, ("node", "kind", *required), optional, f"output {o['node']!r}")
        rest = {k: v for k, v in o.items() if k not in ("node", "kind")}
        outputs.append(Output(node=o["node"], kind=kind, attrs=rest))
    art = Artifact(
        name=header["name"],
        input_name=inp["name"],
        input_shape=tuple(shape),
        input_quant=_quant_from(inp["quant"], "input"),
        nodes=nodes,
        outputs=outputs,
        classes=list(classes),
        description=header["description"],
        metadata=header["metadata"],
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
    """Read and fully validate an artifact; raise :class:`ArtifactError` naming the problem.

    The file is read once; its checksum is checked before anything in it is parsed."""
    path = Path(path)
    try:
        return _from_bytes(_read_file(path), path)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None


def load_version1(path: str | os.PathLike[str]) -> Artifact:
    """Read a version 1 file by the version 1 rules (tensor SHA-256s, every field, every
    arithmetic rule): the input of ``upgrade``."""
    path = Path(path)
    try:
        data = _read_file(path)
        if sealed(data) is not None:
            _fail(f"already version {READ_VERSIONS[0]} or later (nothing to upgrade)")
        header, _, arrays = _unpack(data)
        if header.get("format") != FORMAT_NAME:
            _fail(f"not a {FORMAT_NAME} file (format {_short_repr(header.get('format'))})")
        if type(header.get("version")) is not int or header["version"] != 1:
            _fail(f"version {_short_repr(header.get('version'))} is not a version 1 file")
        return _parse(header, arrays, 1)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None


# ----------------------------------------------------------------------------------------------
# Command line: python -m sw.artifact {upgrade,check}


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def upgrade(old: str | os.PathLike[str], new: str | os.PathLike[str], overwrite: bool = False
            ) -> Artifact:  # fmt: skip
    """Validate ``old`` (version 1) and write it to ``new`` as version 2, atomically; the
    integers, the header and the metadata are carried over unchanged (checked after writing)."""
    old, new = Path(old), Path(new)
    if _same_file(old, new) or old.resolve() == new.resolve():
        _fail(f"{new}: is the same file as {old} (write the upgrade to a new path)")
    if os.path.lexists(new) and not overwrite:
        _fail(f"{new}: already exists (pass --overwrite to replace it)")
    if os.path.isdir(new):
        _fail(f"{new}: is a directory")
    art = load_version1(old)
    try:
        save(art, new)
    except OSError as e:
        _fail(f"{new}: cannot write ({_short(e)})")
    # The upgrade changes the container, never the model: compare everything but version/digest.
    before, before_arrays = read_members(old)
    after, after_arrays = read_members(new)
    after.pop("digest", None)
    before["version"] = READ_VERSIONS[0]  # a version 1 file holds no pow2x2
    same = before == after and before_arrays.keys() == after_arrays.keys()
    same = same and all(
        a.dtype == after_arrays[k].dtype and np.array_equal(a, after_arrays[k])
        for k, a in before_arrays.items()
    )
    if not same:
        new.unlink(missing_ok=True)
        _fail(f"{new}: the upgraded file differs from {old} (removed; please report)")
    return load(new)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sw.artifact", description="Check or upgrade pow2det model artifacts."
    )
    sub = ap.add_subparsers(dest="command", required=True)
    u = sub.add_parser("upgrade", help="rewrite a version 1 artifact as version 2 (once)")
    u.add_argument("old", help="the version 1 file (validated by the version 1 rules)")
    u.add_argument("new", help="the version 2 file to write (atomically)")
    u.add_argument("--overwrite", action="store_true", help="replace NEW if it exists")
    c = sub.add_parser("check", help="load each file; one line per file: ok or the problem")
    c.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    if args.command == "upgrade":
        try:
            art = upgrade(args.old, args.new, overwrite=args.overwrite)
        except ArtifactError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{args.new}: version {version_for(art.nodes)}, {art.name!r}, {len(art.nodes)} nodes "
              f"(from {args.old})")  # fmt: skip
        return 0
    bad = 0
    for f in args.files:
        try:
            art = load(f)
        except ArtifactError as e:
            print(f"{e}")
            bad += 1
            continue
        print(f"{f}: ok (version {version_for(art.nodes)}, {art.name!r}, {len(art.nodes)} nodes)")
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
