"""The compiler: model artifact + accelerator configuration -> execution plan (``sw/plan.py``).

FINN/TVM style: the artifact is lowered to a plain graph (:class:`Graph`, one :class:`GLayer`
per node) and a list of small named passes, each doing one job, annotates it:

1. ``assign_engines``  every layer to the PL (accelerator) or the CPU, with the reason;
2. ``pack_input_windows``  the first conv (3 input channels: 3 of 16 lanes busy, k*k taps) as a
                       1x1 conv over its input windows packed into channels, which the CPU
                       writes with the frame (27 channels for 3x3: 2 lane groups, 1 tap);
3. ``split_output_channels``  a dense conv too large for the weight buffer as several passes,
                       each a run of output channels, joined by a concat;
4. ``choose_strips``   column-strip width of each PL layer within the on-chip buffers;
5. ``fold_concats``    concats done by addressing (parts written side by side in one buffer);
6. ``allocate_memory`` DDR offsets: static blocks, then activations reusing dead tensors' memory;
7. ``emit``            descriptors (``sw.descriptors``), DDR image (``sw.contract.layout``).

What the PL can do comes from :class:`Capabilities` (what the RTL's descriptor check accepts:
dense and depthwise convs with the pow2/binary/int weights it lists, the residual add);
everything else runs on the CPU. A layer the PL should run but the build cannot hold (weights over
the weight buffer even one output-channel group at a time, an input window over the input
buffer, a field too wide for a descriptor) raises :class:`CompileError` naming the layer and
the limit, unless ``cpu_fallback`` is set.

Only numpy here: the descriptor format, the DDR layout, the buffer sizes and the cycle model all
come from the contract package (``sw/contract/``), so it runs on the board.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sw.artifact import FORMAT_VERSION, Artifact, Node, Quant
from sw.compat import zip_strict
from sw.contract import cycles
from sw.contract.buffers import BANKS, bank_words, weight_block_capacity
from sw.contract.codes import weight_terms
from sw.contract.config import AccelConfig
from sw.contract.descriptor import DENSE_WEIGHTS, DEPTHWISE_WEIGHTS, KERNELS, STRIDES
from sw.contract.layout import (
    ALIGN,
    CHANNEL_RECORD_BYTES,
    align,
    channel_records,
    container_bits,
    dense_weight_order,
    depthwise_weight_order,
    groups,
    pack_weights,
)
from sw.descriptors import (
    DESCRIPTOR_BYTES,
    LAYOUT,
    OP_ADD,
    OP_DENSE,
    OP_DEPTHWISE,
    WEIGHT_FORMAT_CODES,
    Descriptor,
    pack_program,
)
from sw.plan import CPUStep, InputWindows, LayerInfo, Plan, PLStep, Region


class CompileError(ValueError):
    """A model that cannot run on a configuration; one line naming the layer and the limit."""


@dataclass(frozen=True)
class Capabilities:
    """What the PL computes: exactly what the RTL's descriptor check accepts (hw/check.py, state
    CHECK; the sets are the contract's, sw/contract/descriptor.py): kernels 1/3/5, strides 1/2,
    dense weights 3/4-bit pow2 or binary, depthwise weights 3/4-bit pow2, binary or 2..8-bit
    int, and the residual add. An AccelConfig field of the same name overrides a default, so a
    build without, say, the depthwise engine compiles correctly."""

    dense_kernels: tuple[int, ...] = KERNELS
    depthwise_kernels: tuple[int, ...] = KERNELS
    strides: tuple[int, ...] = STRIDES
    dense_weights: tuple[tuple[str, int], ...] = DENSE_WEIGHTS
    depthwise_weights: tuple[tuple[str, int], ...] = DEPTHWISE_WEIGHTS
    has_add: bool = True
    has_depthwise: bool = True
    has_dense: bool = True

    @classmethod
    def of(cls, cfg: AccelConfig) -> Capabilities:
        kw = {f: getattr(cfg, f) for f in cls.__dataclass_fields__ if hasattr(cfg, f)}
        return cls(**kw)


# ----------------------------------------------------------------------------------------------
# Resource formulas: the on-chip buffers as the RTL sizes them. The sizes (BANKS, bank_words and
# weight_block_capacity) are the contract's (sw/contract/buffers.py), which
# hw/params.py sizes the RTL with; what follows applies them to a layer. Shared by the compiler,
# the emulator's checks and the plan table.


def input_row_words(in_channels: int, kernel: int, stride: int, strip: int, lanes: int) -> int:
    """Words one input row of a strip's window takes: every input channel group times the
    window's columns (strip plus halo, docs/arithmetic.md section 10). Must fit one bank."""
    return groups(in_channels, lanes) * ((strip - 1) * stride + kernel)


def dense_weight_blocks(cin: int, cout: int, kernel: int, cfg: AccelConfig, terms: int = 1) -> int:
    """L_o x L_i weight blocks (one per og, ig, u, w and pow2x2 term) a dense layer keeps on
    chip."""
    return groups(cout, cfg.dense_out_lanes) * groups(cin, cfg.lanes) * kernel * kernel * terms


def max_channels(cfg: AccelConfig) -> int:
    """Output channels one conv may have: the depth of the constant buffer and of the depthwise
    weight buffer, in whole channel groups; builds without the field: the 16-bit field's limit."""
    return int(getattr(cfg, "max_channels", 65535)) // cfg.lanes * cfg.lanes


def weight_block_bytes(
    kind: str, cin: int, cout: int, kernel: int, bits: int, cfg: AccelConfig
) -> int:
    """Packed weight bytes of a layer in DDR, in the dense or depthwise order of section 9."""
    if kind == "dense":
        n = groups(cout, cfg.dense_out_lanes) * cfg.dense_out_lanes
        n *= groups(cin, cfg.lanes) * cfg.lanes * kernel * kernel
    else:
        n = groups(cout, cfg.lanes) * cfg.lanes * kernel * kernel
    return -(-n * container_bits(bits) // 8)


def record_lanes(kind: str, cfg: AccelConfig) -> int:
    """Channel records are padded to the output lanes; for the dense engine to the larger of its
    output lanes and the memory lanes, so that either reading of "output lanes" finds zero
    records (z_out) for every padded channel it computes."""
    return max(cfg.lanes, cfg.dense_out_lanes) if kind == "dense" else cfg.lanes


def layer_limit(kind: str, cin: int, cout: int, kernel: int, stride: int, strip: int,
                cfg: AccelConfig, terms: int = 1) -> str:  # fmt: skip
    """Why a conv with this strip does not fit the build ("" when it does): the RTL's
    ERROR 4 conditions, in words."""
    if groups(cout, cfg.lanes) * cfg.lanes > max_channels(cfg):
        return f"{cout} output channels > max_channels = {max_channels(cfg)}"
    if kind == "dense":
        blocks = dense_weight_blocks(cin, cout, kernel, cfg, terms)
        cap = weight_block_capacity(cfg)
        if blocks > cap:
            return (
                f"weights need {blocks} blocks of {cfg.dense_out_lanes}x{cfg.lanes} 4-bit codes "
                f"({blocks * cfg.lanes * cfg.dense_out_lanes // 2} bytes) > "
                f"weight_buffer_bytes = {cfg.weight_buffer_bytes}"
            )
    words = input_row_words(cin, kernel, stride, strip, cfg.lanes)
    if words > bank_words(cfg):
        return (
            f"a {strip}-column strip needs {words} words per input row > input_buffer_words = "
            f"{cfg.input_buffer_words} / {BANKS} banks"
        )
    return ""


def blocked_bytes(shape: tuple[int, int, int], lanes: int) -> int:
    c, h, w = shape
    return groups(c, lanes) * h * w * lanes


# ----------------------------------------------------------------------------------------------
# The graph the passes work on


@dataclass
class GLayer:
    name: str
    op: str  # artifact op: conv, add, concat, upsample, maxpool
    kind: str  # dense, depthwise, add, concat, upsample, maxpool
    inputs: list[str]
    node: Node
    shape: tuple[int, int, int]
    engine: str = ""  # "PL", "CPU", "addr"
    reason: str = ""
    strip: int = 0
    strips: int = 0
    weight_bytes: int = 0

    @property
    def attrs(self) -> dict[str, Any]:
        return self.node.attrs

    @property
    def quant(self) -> Quant:
        return self.node.quant


@dataclass
class Graph:
    art: Artifact
    cfg: AccelConfig
    caps: Capabilities
    layers: list[GLayer]
    shapes: dict[str, tuple[int, int, int]]
    quants: dict[str, Quant]
    cpu_fallback: bool = False
    alias: dict[str, tuple[str, int]] = field(default_factory=dict)  # part -> (concat, bytes)
    offsets: dict[str, int] = field(default_factory=dict)  # tensor -> offset in the image
    static: dict[str, tuple[int, int]] = field(default_factory=dict)  # region -> (offset, size)
    size: int = 0
    static_size: int = 0
    passes: list[str] = field(default_factory=list)
    input: str = ""  # the tensor the frame is written into (the artifact's input, or its windows)
    windows: InputWindows | None = None

    def layer(self, name: str) -> GLayer:
        for g in self.layers:
            if g.name == name:
                return g
        raise KeyError(name)


def lower(art: Artifact, cfg: AccelConfig, cpu_fallback: bool = False) -> Graph:
    """The artifact as a plain graph; validates both inputs."""
    cfg.check()
    shapes = art.shapes()
    layers = []
    for n in art.nodes:
        kind = n.op
        if n.op == "conv":
            kind = "dense" if n.attrs["groups"] == 1 else "depthwise"
        layers.append(GLayer(n.name, n.op, kind, list(n.inputs), n, shapes[n.name]))
    quants = {art.input_name: art.input_quant, **{n.name: n.quant for n in art.nodes}}
    return Graph(art, cfg, Capabilities.of(cfg), layers, shapes, quants, cpu_fallback,
                 input=art.input_name)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Passes


def _limit(g: Graph, layer: GLayer, msg: str) -> None:
    """A PL layer beyond a limit of the build: an error, or the CPU when falling back."""
    if not g.cpu_fallback:
        raise CompileError(
            f"layer {layer.name!r} ({layer.kind}) cannot run on this accelerator: {msg}"
        )
    layer.engine, layer.reason = "CPU", f"fallback: {msg}"


def assign_engines(g: Graph) -> None:
    """PL for what the build computes, CPU (with the reason) for everything else."""
    caps = g.caps
    for layer in g.layers:
        a = layer.attrs
        reason = ""
        if layer.kind in ("dense", "depthwise"):
            k, st, fmt, bits = a["kernel"], a["stride"], a["weight_format"], a["weight_bits"]
            dense = layer.kind == "dense"
            kernels = caps.dense_kernels if dense else caps.depthwise_kernels
            formats = caps.dense_weights if dense else caps.depthwise_weights
            if not (caps.has_dense if dense else caps.has_depthwise):
                reason = f"no {layer.kind} engine in this build"
            elif k not in kernels:
                reason = f"{k}x{k} {layer.kind} kernels not supported (PL: {kernels})"
            elif st not in caps.strides:
                reason = f"stride {st} not supported"
            elif (fmt, bits) not in formats:
                have = ", ".join(f"{b}-bit {f}" for f, b in formats)
                reason = f"{bits}-bit {fmt} weights not supported by the {layer.kind} engine "
                reason += f"({have})"
        elif layer.kind == "add":
            if not caps.has_add:
                reason = "no element-wise unit in this build"
        else:
            reason = {
                "upsample": "upsample runs on the CPU",
                "maxpool": "maxpool runs on the CPU",
                "avgpool": "global average pool runs on the CPU (one sum per channel)",
                "concat": "concat copy on the CPU",
            }[layer.kind]
        layer.engine, layer.reason = ("CPU", reason) if reason else ("PL", "")


def windows_of(node: Node, in_shape: tuple[int, int, int], lanes: int,
               zero: int) -> tuple[Node, tuple[int, int, int], InputWindows] | None:  # fmt: skip
    """``node`` (a dense kxk conv) as a 1x1 conv over its packed input windows, with the packed
    tensor's shape and the packing, when that needs fewer lane groups x taps than the conv
    (``ceil(k*k*C / L) < k*k * ceil(C / L)``: a 3-channel image); else None.

    The weights are the same codes reordered, ``(C_out, C, k, k) -> (C_out, k*k*C, 1, 1)`` with
    input channel ``(u*k + t)*C + c`` (the order of :meth:`InputWindows.pack`); bias, multipliers
    and shifts are unchanged. Every output is the same sum of the same products
    ``v * (q - z_in)`` (border taps are ``z_in``, real zero, as in section 4.2's padding), so the
    accumulator, the section 4.3 bound and the requantized code are the same bit for bit."""
    a = node.attrs
    if node.op != "conv" or a["groups"] != 1 or a["kernel"] == 1:
        return None
    c = in_shape[0]
    k = a["kernel"]
    if groups(k * k * c, lanes) >= k * k * groups(c, lanes):
        return None
    win = InputWindows(k, a["stride"], a["pad"], zero)
    shape = win.out_shape(*in_shape)
    codes = node.tensors["codes"]
    tensors = {**node.tensors,
               "codes": np.ascontiguousarray(codes.transpose(0, 2, 3, 1)).reshape(
                   codes.shape[0], k * k * c, 1, 1)}  # fmt: skip
    attrs = {**a, "kernel": 1, "stride": 1, "pad": 0}
    return Node(node.name, "conv", [f"{node.inputs[0]}.windows"], attrs, node.quant, tensors), \
        shape, win  # fmt: skip


def pack_input_windows(g: Graph) -> None:
    """The input's only consumer, a PL dense conv on few channels, runs as a 1x1 conv over the
    frame's windows packed into channels (:func:`windows_of`): 3x3 on RGB becomes 27 channels,
    2 lane groups and one tap instead of 1 group and 9 taps at 3/16 lane use. The CPU writes the
    packed tensor with the frame (``Plan.fill_input``), the accelerator sees an ordinary conv."""
    users = [layer for layer in g.layers if g.input in layer.inputs]
    if len(users) != 1 or users[0].engine != "PL" or users[0].kind != "dense":
        return
    layer = users[0]
    got = windows_of(layer.node, g.shapes[g.input], g.cfg.lanes, g.quants[g.input].zero)
    if got is None:
        return
    node, shape, win = got
    name = node.inputs[0]
    c = g.shapes[g.input][0]
    layer.node, layer.inputs = node, list(node.inputs)
    layer.reason = (f"input windows packed: {win.kernel}x{win.kernel}x{c} -> {shape[0]} channels, "
                    f"1x1 (written by the CPU with the frame)")  # fmt: skip
    del g.shapes[g.input]
    g.shapes[name], g.quants[name] = shape, g.quants[g.input]
    g.input, g.windows = name, win


def split_output_channels(g: Graph) -> None:
    """A dense conv whose weights or output channels exceed the build runs as several passes
    over its input, each computing a run of whole output-channel groups straight into its
    channel groups of the layer's output (a concat that ``fold_concats`` does by addressing).
    The integers are the same: an output channel's accumulator, constants and rounding do not
    depend on the other channels (docs/arithmetic.md section 10, output-channel passes).

    Passes are equal runs of the channel group (the lanes and the dense engine's output lanes
    both divide it), as few as the buffers allow; each re-reads the input, which the cycle model
    counts. A layer where one group alone does not fit keeps its error: splitting the input
    channels would need partial sums in DDR, which the contract does not have.
    """
    cfg = g.cfg
    # whole channel groups of both the memory lanes and the dense engine's output lanes
    unit = cfg.lanes * cfg.dense_out_lanes // math.gcd(cfg.lanes, cfg.dense_out_lanes)
    layers: list[GLayer] = []
    for layer in g.layers:
        if layer.engine != "PL" or layer.kind != "dense":
            layers.append(layer)
            continue
        a, cin, cout = layer.attrs, g.shapes[layer.inputs[0]][0], layer.shape[0]
        k, st, terms = a["kernel"], a["stride"], weight_terms(a["weight_format"])
        why = layer_limit("dense", cin, cout, k, st, 1, cfg, terms)
        fits = [c for c in range(unit, cout, unit) if not layer_limit("dense", cin, c, k, st, 1,
                                                                      cfg, terms)]  # fmt: skip
        if why and not fits:
            one = layer_limit("dense", cin, min(unit, cout), k, st, 1, cfg, terms)
            _limit(g, layer, f"{why}; {min(unit, cout)} output channels at a time: {one}")
        if not why or not fits:
            layers.append(layer)
            continue
        n = -(-cout // max(fits))  # passes: as few as the largest run that fits allows
        part = -(-cout // n)
        part = -(-part // unit) * unit  # ... of equal runs, rounded up to whole channel groups
        bounds = [(lo, min(lo + part, cout)) for lo in range(0, cout, part)]
        names = [f"{layer.name}.oc{lo}-{hi}" for lo, hi in bounds]
        assert not set(names) & set(g.shapes), f"pass names of {layer.name!r} collide"
        for i, ((lo, hi), name) in enumerate(zip_strict(bounds, names)):
            node = layer.node
            tensors = {
                key: v[lo:hi] if v.ndim and v.shape[0] == cout else v
                for key, v in node.tensors.items()
            }
            sub = Node(name, "conv", list(node.inputs), {**node.attrs, "out_channels": hi - lo},
                       node.quant, tensors)  # fmt: skip
            shape = (hi - lo, *layer.shape[1:])
            g.shapes[name], g.quants[name] = shape, layer.quant
            note = f"output channels {lo}..{hi - 1} of {layer.name!r}, pass {i + 1}/{len(bounds)}"
            layers.append(GLayer(name, "conv", "dense", list(layer.inputs), sub, shape, "PL",
                                 f"{note} (all at once: {why})"))  # fmt: skip
        join = Node(layer.name, "concat", names, {}, layer.quant)
        layers.append(GLayer(layer.name, "concat", "concat", names, join, layer.shape, "CPU",
                             "concat of the output-channel passes"))  # fmt: skip
    g.layers = layers


def choose_strips(g: Graph) -> None:
    """Strip width of every PL layer: the widest the buffers allow, then evened out so that all
    strips of the layer are about equally wide (same number of strips, smaller windows)."""
    cfg = g.cfg
    for layer in g.layers:
        if layer.engine != "PL":
            continue
        cin, h, w = g.shapes[layer.inputs[0]]
        cout, ho, wo = layer.shape
        fields = {
            "in_channels": cin,
            "out_channels": cout,
            "in_height": h,
            "in_width": w,
            "out_height": ho,
            "out_width": wo,
        }
        too_big = [
            f"{k} = {v} > {(1 << LAYOUT[k][2]) - 1} (descriptor field)"
            for k, v in fields.items()
            if v >= 1 << LAYOUT[k][2]
        ]
        if too_big:
            _limit(g, layer, too_big[0])
            continue
        widest = min(cfg.max_strip, wo)
        if layer.kind != "add":  # element-wise: no window, streams rows of the strip
            a = layer.attrs
            k, st = a["kernel"], a["stride"]
            layer.weight_bytes = weight_block_bytes(layer.kind, cin, cout, k, a["weight_bits"], cfg)
            terms = weight_terms(a["weight_format"])
            why = layer_limit(layer.kind, cin, cout, k, st, 1, cfg, terms)
            if why:
                _limit(g, layer, why)
                continue
            while layer_limit(layer.kind, cin, cout, k, st, widest, cfg, terms):
                widest -= 1
        n = -(-wo // widest)
        layer.strip, layer.strips = -(-wo // n), n


def fold_concats(g: Graph) -> None:
    """Concats done by addressing: each part is written straight into its channel groups of the
    concat's buffer (section 9), so the concat itself costs nothing. Allowed when every part but
    the last fills whole channel groups (C divisible by the lanes), each part's start stays
    64-byte aligned, and no part is the network input or already placed in another concat."""
    lanes = g.cfg.lanes
    for layer in g.layers:
        if layer.kind != "concat":
            continue
        parts = layer.inputs
        _, h, w = layer.shape
        ok = len(set(parts)) == len(parts)
        ok = ok and all(p != g.art.input_name and p not in g.alias for p in parts)
        ok = ok and all(g.shapes[p][0] % lanes == 0 for p in parts[:-1])
        group_bytes = h * w * lanes
        ok = ok and all(
            sum(groups(g.shapes[p][0], lanes) for p in parts[:i]) * group_bytes % ALIGN == 0
            for i in range(len(parts))
        )
        if not ok:
            continue
        offset = 0
        for p in parts:
            g.alias[p] = (layer.name, offset)
            offset += groups(g.shapes[p][0], lanes) * group_bytes
        layer.engine, layer.reason = "addr", "concat by addressing"


def _root(g: Graph, name: str) -> tuple[str, int]:
    """The buffer a tensor lives in and its byte offset there (follows nested concats)."""
    off = 0
    while name in g.alias:
        name, o = g.alias[name]
        off += o
    return name, off


def allocate_memory(g: Graph) -> None:
    """DDR offsets: [program][weights, records per PL conv][input][activation arena].

    The input is pinned (never shared), so its padding lanes stay at the zero point and a frame
    writes only the real channels. Every other buffer lives from the step that writes its first
    part to the last step that reads it (outputs: to the end of the frame); buffers whose
    lifetimes do not overlap share memory (greedy first fit, largest first).
    """
    cfg, lanes = g.cfg, g.cfg.lanes
    n_desc = sum(1 for layer in g.layers if layer.engine == "PL")
    pos = 0

    def put(name: str, size: int) -> None:
        nonlocal pos
        g.static[name] = (pos, size)
        pos = align(pos + size)

    put("program", n_desc * DESCRIPTOR_BYTES)
    for layer in g.layers:
        if layer.engine == "PL" and layer.op == "conv":
            put(f"{layer.name}.weights", layer.weight_bytes)
            put(
                f"{layer.name}.consts",
                groups(layer.shape[0], record_lanes(layer.kind, cfg))
                * record_lanes(layer.kind, cfg)
                * CHANNEL_RECORD_BYTES,
            )
    g.static_size = pos
    g.offsets[g.input] = pos
    pos = align(pos + blocked_bytes(g.shapes[g.input], lanes))
    arena = pos

    end = len(g.layers)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, layer in enumerate(g.layers):
        first[layer.name] = i
        last.setdefault(layer.name, i)
        for s in layer.inputs:
            last[s] = i
    for o in g.art.outputs:
        last[o.node] = end
    span: dict[str, tuple[int, int]] = {}
    for layer in g.layers:
        r, _ = _root(g, layer.name)
        lo, hi = first[layer.name], last[layer.name]
        if r in span:
            lo, hi = min(lo, span[r][0]), max(hi, span[r][1])
        span[r] = (lo, hi)
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, lo, hi)
    for r in sorted(span, key=lambda r: (-blocked_bytes(g.shapes[r], lanes), first[r])):
        size, (lo, hi) = blocked_bytes(g.shapes[r], lanes), span[r]
        busy = sorted((o, s) for o, s, a, b in placed if a <= hi and lo <= b)
        off = 0
        for o, s in busy:
            if off + size <= o:
                break
            off = max(off, align(o + s))
        placed.append((off, size, lo, hi))
        g.offsets[r] = arena + off
    for layer in g.layers:
        r, o = _root(g, layer.name)
        g.offsets[layer.name] = g.offsets[r] + o
    g.size = align(arena + max((o + s for o, s, _, _ in placed), default=0))


# ----------------------------------------------------------------------------------------------
# Emission


def cycle_model() -> tuple[Callable[[Descriptor, AccelConfig], Any] | None, str]:
    """The cycle model and where it comes from: ``fn(descriptor, cfg)`` returns per-descriptor
    cycles (``.total``, ``.dense``, ``.dw``, ``.eltwise``) with ideal memory.

    It is the contract's (``sw/contract/cycles.py``, pure Python), imported like any other
    module: the runtime needs it on the board, where hw/ is not installed, so it cannot live
    in hw/ (which re-exports it as ``hw.cycle_model`` for the RTL tests and benches)."""
    return (lambda d, cfg: cycles.layer_cycles(d.as_dict(), cfg)), (
        "sw/contract/cycles.py, ideal memory"
    )


def _conv_traffic(layer: GLayer, in_shape: tuple[int, int, int], lanes: int) -> int:
    """Input bytes the strips read (halo columns read twice), as section 10 cuts them."""
    cin, h, w = in_shape
    a = layer.attrs
    k, st, p = a["kernel"], a["stride"], a["pad"]
    cols = 0
    for j0 in range(0, layer.shape[2], layer.strip):
        j1 = min(j0 + layer.strip, layer.shape[2])
        lo, hi = j0 * st - p, (j1 - 1) * st - p + k - 1
        cols += max(0, min(hi, w - 1) - max(lo, 0) + 1)
    return groups(cin, lanes) * h * cols * lanes


def emit(g: Graph) -> Plan:
    cfg, lanes, art = g.cfg, g.cfg.lanes, g.art
    mem = np.zeros(g.size, dtype=np.uint8)
    regions: dict[str, Region] = {}
    for name, (off, size) in g.static.items():
        kind = "program" if name == "program" else name.rsplit(".", 1)[1]
        regions[name] = Region(name, kind, off, size)
    for t, shape in g.shapes.items():
        regions[t] = Region(
            t,
            "activation",
            g.offsets[t],
            blocked_bytes(shape, lanes),
            shape,
            g.quants[t],
            _root(g, t)[0],
        )
    # The pinned input's padding lanes hold its zero point once and for all.
    c, h, w = g.shapes[g.input]
    if c % lanes:
        r = regions[g.input]
        view = mem[r.offset : r.offset + r.size].reshape(groups(c, lanes), h, w, lanes)
        view[-1, :, :, c % lanes :] = art.input_quant.zero

    predict, cycle_src = cycle_model()
    descs: list[Descriptor] = []
    steps: list[PLStep | CPUStep] = []
    infos: list[LayerInfo] = []
    base = 0
    for layer in g.layers:
        a, q = layer.attrs, layer.quant
        ins = [g.shapes[s] for s in layer.inputs]
        out_bytes = blocked_bytes(layer.shape, lanes)
        info = LayerInfo(layer.name, layer.kind, layer.engine, layer.shape, note=layer.reason)
        infos.append(info)
        if layer.engine == "addr":
            continue
        if layer.engine == "CPU":
            steps.append(CPUStep(layer.name, layer.op, layer.inputs, layer.node, layer.reason))
            info.ddr_bytes = sum(blocked_bytes(s, lanes) for s in ins) + out_bytes
            continue
        cin, hi, wi = ins[0]
        d = Descriptor(
            op=OP_ADD,
            in_addr=base + g.offsets[layer.inputs[0]],
            out_addr=base + g.offsets[layer.name],
            in_channels=cin,
            out_channels=layer.shape[0],
            in_height=hi,
            in_width=wi,
            out_height=layer.shape[1],
            out_width=layer.shape[2],
            z_in=g.quants[layer.inputs[0]].zero,
            z_out=q.zero,
            out_bits=q.bits,
            strip_width=layer.strip,
        )
        if layer.op == "add":
            d.weight_addr = base + g.offsets[layer.inputs[1]]
            d.z_in2 = g.quants[layer.inputs[1]].zero
            d.m_a, d.m_b, d.shift = a["m_a"], a["m_b"], a["shift"]
            d.add_relu = int(a["activation"] == "relu")
            info.ddr_bytes = 3 * out_bytes
        else:
            t = layer.node.tensors
            fmt, bits = a["weight_format"], a["weight_bits"]
            d.op = OP_DENSE if layer.kind == "dense" else OP_DEPTHWISE
            d.kernel, d.stride, d.pad = a["kernel"], a["stride"], a["pad"]
            d.weight_format, d.weight_bits = WEIGHT_FORMAT_CODES[fmt], bits
            if layer.kind == "dense":
                order = dense_weight_order(t["codes"], lanes, cfg.dense_out_lanes)
            else:
                order = depthwise_weight_order(t["codes"], lanes)
            packed = pack_weights(order, fmt, bits)
            recs = channel_records(
                t["bias"], t["m_pos"], t["m_neg"], t["shift"], record_lanes(layer.kind, cfg)
            )
            wr, cr = regions[f"{layer.name}.weights"], regions[f"{layer.name}.consts"]
            assert packed.size == wr.size and recs.size == cr.size, "weight block size mismatch"
            mem[wr.offset : wr.offset + wr.size] = packed
            mem[cr.offset : cr.offset + cr.size] = recs
            d.weight_addr, d.const_addr = base + wr.offset, base + cr.offset
            info.weight_bytes = wr.size
            info.ddr_bytes = _conv_traffic(layer, ins[0], lanes) + wr.size + cr.size + out_bytes
        info.strip_width, info.strips = layer.strip, layer.strips or 1
        info.descriptor = len(descs)
        if predict is not None:
            info.cycles = int(predict(d, cfg).total)
        if steps and isinstance(steps[-1], PLStep):
            steps[-1].count += 1
            steps[-1].layers.append(layer.name)
        else:
            steps.append(PLStep(len(descs), 1, [layer.name]))
        descs.append(d)
    prog = regions["program"]
    mem[prog.offset : prog.offset + prog.size] = np.frombuffer(pack_program(descs), np.uint8)
    return Plan(
        cfg=cfg,
        base=base,
        memory=mem,
        static_size=g.static_size,
        descriptors=descs,
        regions=regions,
        steps=steps,
        layers=infos,
        input_name=g.input,
        input_shape=tuple(art.input_shape),
        input_quant=art.input_quant,
        outputs=list(art.outputs),
        classes=list(art.classes),
        model_name=art.name,
        artifact_version=FORMAT_VERSION,
        passes=list(g.passes),
        cycle_model=cycle_src,
        input_windows=g.windows,
    )


PASSES: list[tuple[str, Callable[[Graph], None]]] = [
    ("assign_engines", assign_engines),
    ("pack_input_windows", pack_input_windows),
    ("split_output_channels", split_output_channels),
    ("choose_strips", choose_strips),
    ("fold_concats", fold_concats),
    ("allocate_memory", allocate_memory),
]


def compile_model(
    art: Artifact, cfg: AccelConfig, base: int = 0, cpu_fallback: bool = False
) -> Plan:
    """Compile ``art`` for the accelerator build ``cfg``; the DDR image starts at ``base``.

    ``cpu_fallback`` runs layers that exceed a limit of the build on the CPU instead of failing.
    """
    g = lower(art, cfg, cpu_fallback)
    for name, fn in PASSES:
        fn(g)
        g.passes.append(name)
    plan = emit(g)
    plan.passes.append("emit")
    return plan.rebase(base) if base else plan
