"""QuantDetector: a darknet YOLO graph with BN folded, in float, fake-quant and integer modes.

* ``float``: folded weights, no quantization (equals models.darknet.Darknet up to rounding);
* ``fake``: weights through their WeightQuantizer (pow2 / int / binary per layer), bias rounded
  to the accumulator grid, every conv and add output through its ActQuantizer, with
  straight-through gradients (for calibration, reconstruction and QAT);
* ``int``: the integer contract of docs/arithmetic.md on codes, computed in float64. Every value
  is an integer below 2^53 (|acc| < 2^31, |acc * M| < 2^47), every sum of integers is exact in
  float64 whatever the summation order, and ``round_shift`` divides by a power of two and floors,
  which is exact too - so the results equal sim.reference's int64 integers bit for bit, while
  torch's convolutions make it fast enough to evaluate mAP at 512x512.

The integer constants come from one function, :meth:`QuantDetector.integer_params`, used by both
the integer mode and the exporter (quant.export), so what is measured is what is shipped.

Graph rules: darknet ``route`` with several inputs is a concat and all its inputs share one
activation quantizer (union-find over "quant groups"; upsample and maxpool inherit their input's
group), a single-input route / dropout / yolo is an alias, ``shortcut`` is the contract's add.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.darknet import (
    LEAKY_SLOPE,
    ConvSpec,
    Darknet,
    DropoutSpec,
    MaxpoolSpec,
    RouteSpec,
    ShortcutSpec,
    UpsampleSpec,
    YoloSpec,
    fold_batchnorm,
)
from quant.quantizers import ActQuantizer, WeightQuantizer, round_ste
from sim.reference.requant import add_constants, conv_constants
from sw.artifact import Quant

INPUT = "image"
INPUT_QUANT = Quant(8, 0, 1.0 / 255.0)  # docs/arithmetic.md section 2: the pixel bytes as is


@dataclass
class QNode:
    """One operation of the quantized graph; ``inputs`` are tensor names (INPUT or nodes)."""

    name: str
    op: str  # conv, add, concat, upsample, maxpool
    inputs: list[str]
    index: int  # darknet layer index (for messages and for matching feature maps)
    attrs: dict[str, Any] = field(default_factory=dict)
    group: int = -1  # activation-quant group of the output


@dataclass(frozen=True)
class LayerFormat:
    """Weight format of a conv: dense and depthwise layers get their own choice."""

    dense: tuple[str, int] = ("pow2", 4)
    depthwise: tuple[str, int] = ("pow2", 4)

    def of(self, depthwise: bool) -> tuple[str, int]:
        return self.depthwise if depthwise else self.dense


class QuantDetector(nn.Module):
    """See the module docstring. ``mode`` is "float", "fake" or "int" (set by the caller)."""

    def __init__(
        self,
        model: Darknet,
        fmt: LayerFormat | None = None,
        act_bits: int = 8,
        head_bits: int | None = None,
    ) -> None:
        super().__init__()
        fmt = fmt or LayerFormat()
        self.cfg = model.cfg
        self.act_bits = act_bits
        self.mode = "fake"
        self.nodes: list[QNode] = []
        folded = fold_batchnorm(model)
        self.weight = nn.ParameterDict()
        self.bias = nn.ParameterDict()
        self.wq = nn.ModuleDict()
        names: dict[int, str] = {}  # darknet index -> tensor name
        parent: list[int] = []  # union-find over activation-quant groups

        def new_group() -> int:
            parent.append(len(parent))
            return len(parent) - 1

        def find(g: int) -> int:
            while parent[g] != g:
                parent[g] = parent[parent[g]]
                g = parent[g]
            return g

        group_of: dict[str, int] = {}
        self.heads: list[str] = []
        self.head_specs: list[YoloSpec] = []
        for spec, fl in zip(self.cfg.layers, folded, strict=True):
            i = spec.index
            prev = names.get(i - 1, INPUT)
            if isinstance(spec, ConvSpec):
                if spec.groups != 1 and not (spec.groups == spec.in_channels == spec.filters):
                    raise ValueError(f"{spec.where()}: only dense or depthwise convs")
                name = f"conv{i}"
                dw = spec.groups != 1
                wf, wb = fmt.of(dw)
                node = QNode(name, "conv", [prev], i, dict(
                    kernel=spec.size, stride=spec.stride, pad=spec.padding, groups=spec.groups,
                    activation=spec.activation, out_channels=spec.filters, depthwise=dw,
                    weight_format=wf, weight_bits=wb,
                ))  # fmt: skip
                assert fl.weight is not None and fl.bias is not None
                self.weight[name] = nn.Parameter(torch.from_numpy(fl.weight.copy()))
                self.bias[name] = nn.Parameter(torch.from_numpy(fl.bias.copy()))
                q = WeightQuantizer(spec.filters, wf, wb)
                q.init_scale(self.weight[name])
                self.wq[name] = q
                group_of[name] = new_group()
            elif isinstance(spec, ShortcutSpec):
                if spec.activation not in ("linear", "relu"):
                    raise ValueError(f"{spec.where()}: shortcut activation {spec.activation}")
                name = f"add{i}"
                node = QNode(name, "add", [prev, names[spec.source]], i,
                             {"activation": spec.activation})  # fmt: skip
                group_of[name] = new_group()
            elif isinstance(spec, RouteSpec):
                if spec.groups != 1:
                    raise ValueError(f"{spec.where()}: route groups are not supported")
                srcs = [names[j] for j in spec.layers]
                if len(srcs) == 1:
                    names[i] = srcs[0]
                    continue
                name = f"cat{i}"
                node = QNode(name, "concat", srcs, i)
                g = find(group_of[srcs[0]])
                for s in srcs[1:]:
                    h = find(group_of[s])
                    if h != g:
                        parent[h] = g
                group_of[name] = g
            elif isinstance(spec, UpsampleSpec):
                if spec.stride != 2:
                    raise ValueError(f"{spec.where()}: upsample stride must be 2")
                name = f"up{i}"
                node = QNode(name, "upsample", [prev], i)
                group_of[name] = group_of[prev]
            elif isinstance(spec, MaxpoolSpec):
                name = f"pool{i}"
                p0 = spec.padding // 2
                node = QNode(name, "maxpool", [prev], i, dict(
                    kernel=spec.size, stride=spec.stride, pad_before=p0,
                    pad_after=spec.padding - p0,
                ))  # fmt: skip
                group_of[name] = group_of[prev]
            elif isinstance(spec, DropoutSpec | YoloSpec):
                names[i] = prev
                if isinstance(spec, YoloSpec):
                    self.heads.append(prev)
                    self.head_specs.append(spec)
                continue
            else:
                raise TypeError(f"unsupported layer {spec.where()}")
            if group_of.get(INPUT) is not None:
                raise AssertionError("the image must not be in a quant group")
            names[i] = name
            self.nodes.append(node)
        # Resolve groups; one ActQuantizer per root group.
        roots = sorted({find(g) for g in group_of.values()})
        idx = {r: k for k, r in enumerate(roots)}
        for n in self.nodes:
            n.group = idx[find(group_of[n.name])]
        self.aq = nn.ModuleList(ActQuantizer(act_bits) for _ in roots)
        self.by_name = {n.name: n for n in self.nodes}
        # The head outputs go to the ARM decoder, not to another layer: keeping them at 8 bits
        # (head_bits) costs the accelerator nothing and spares the box regression 4-bit steps.
        for h in self.heads if head_bits else []:
            self.aq[self.by_name[h].group].bits = head_bits
        self._int_cache: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------------------
    # Helpers

    def conv_nodes(self) -> list[QNode]:
        return [n for n in self.nodes if n.op == "conv"]

    def group_members(self, g: int) -> list[QNode]:
        """Nodes that *produce* values in group g (conv and add: they requantize into it)."""
        return [n for n in self.nodes if n.group == g and n.op in ("conv", "add")]

    def quant_of(self, name: str) -> Quant:
        if name == INPUT:
            return INPUT_QUANT
        q = self.aq[self.by_name[name].group]
        z, s = q.params()
        return Quant(q.bits, z, s)

    def set_act_quant(self, enabled: bool) -> None:
        for q in self.aq:
            q.enabled = enabled

    def invalidate(self) -> None:
        """Drop the cached integer constants (after any parameter change)."""
        self._int_cache = None

    # ------------------------------------------------------------------------------------------
    # float / fake-quant forward

    def _conv_real(self, n: QNode, x: Tensor, quantize: bool) -> Tensor:
        a = n.attrs
        w, b = self.weight[n.name], self.bias[n.name]
        if quantize:
            wq = self.wq[n.name]
            w = wq(w)
            # bias on the accumulator grid s_in * s_w (section 11.2), straight-through
            s_in = self._in_scale(n)
            if s_in is not None:
                step = s_in * wq.scale()
                b = round_ste(b / step) * step
        y = F.conv2d(x, w, b, a["stride"], a["pad"], 1, a["groups"])
        act = a["activation"]
        if act == "leaky":
            y = F.leaky_relu(y, LEAKY_SLOPE)
        elif act == "relu":
            y = F.relu(y)
        return y

    def _in_scale(self, n: QNode) -> Tensor | None:
        src = n.inputs[0]
        if src == INPUT:
            return torch.tensor(INPUT_QUANT.scale, dtype=torch.float32)
        q = self.aq[self.by_name[src].group]
        if not q.enabled:
            return None
        lo = torch.clamp(q.lo, max=0.0)
        hi = torch.clamp(q.hi, min=0.0)
        return torch.clamp((hi - lo) / q.qmax, min=1e-8).detach()

    def run_node_real(self, n: QNode, ins: list[Tensor], quantize: bool) -> Tensor:
        """Output of one node in float (quantize=False) or fake-quant mode."""
        if n.op == "conv":
            y = self._conv_real(n, ins[0], quantize)
        elif n.op == "add":
            y = ins[0] + ins[1]
            if n.attrs["activation"] == "relu":
                y = F.relu(y)
        elif n.op == "concat":
            return torch.cat(ins, dim=1)
        elif n.op == "upsample":
            return F.interpolate(ins[0], scale_factor=2, mode="nearest")
        elif n.op == "maxpool":
            a = n.attrs
            x = F.pad(ins[0], (a["pad_before"], a["pad_after"]) * 2, value=-float("inf"))
            return F.max_pool2d(x, a["kernel"], a["stride"])
        else:
            raise ValueError(n.op)
        return self.aq[n.group](y) if quantize else y

    def forward_real(
        self, x: Tensor, quantize: bool, keep: set[str] | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Head outputs (real) and the tensors named in ``keep``."""
        vals: dict[str, Tensor] = {INPUT: x}
        last_use = self._last_use()
        kept: dict[str, Tensor] = {}
        for k, n in enumerate(self.nodes):
            vals[n.name] = self.run_node_real(n, [vals[s] for s in n.inputs], quantize)
            if keep and n.name in keep:
                kept[n.name] = vals[n.name]
            for s in n.inputs:
                if last_use.get(s) == k and s not in self.heads:
                    del vals[s]
        return [vals[h] for h in self.heads], kept

    def _last_use(self) -> dict[str, int]:
        lu: dict[str, int] = {}
        for k, n in enumerate(self.nodes):
            for s in n.inputs:
                lu[s] = k
        return lu

    def forward(self, x: Tensor) -> list[Tensor]:
        """(N, 3, H, W): RGB in [0, 1] for float/fake, input codes (0..255) for int mode;
        returns the head outputs (real, or codes in int mode)."""
        if self.mode == "int":
            return self.forward_int(x)
        return self.forward_real(x, self.mode == "fake")[0]

    # ------------------------------------------------------------------------------------------
    # Integer mode

    @torch.no_grad()
    def integer_params(self) -> dict[str, Any]:
        """Every integer constant of the network, by node name (cached until invalidate())."""
        if self._int_cache is not None:
            return self._int_cache
        out: dict[str, Any] = {}
        for n in self.nodes:
            qo = self.quant_of(n.name)
            if n.op == "conv":
                qi = self.quant_of(n.inputs[0])
                v, s_w = self.wq[n.name].integer(self.weight[n.name])
                acc_unit = np.float64(np.float32(qi.scale)) * s_w.astype(np.float64)
                b = self.bias[n.name].detach().double().numpy()
                bias = np.clip(np.round(b / acc_unit), -(2**31), 2**31 - 1).astype(np.int64)
                m_real = acc_unit / np.float64(np.float32(qo.scale))
                mp, mn, sh = conv_constants(m_real, n.attrs["activation"], LEAKY_SLOPE)
                out[n.name] = dict(v=v, s_w=s_w, bias=bias, m_pos=mp, m_neg=mn, shift=sh,
                                   z_in=qi.zero, q_out=qo)  # fmt: skip
            elif n.op == "add":
                qa, qc = self.quant_of(n.inputs[0]), self.quant_of(n.inputs[1])
                ma, mc, s = add_constants(
                    float(np.float32(qa.scale)), float(np.float32(qc.scale)),
                    float(np.float32(qo.scale)),
                )  # fmt: skip
                out[n.name] = dict(m_a=ma, m_c=mc, shift=s, z_a=qa.zero, z_c=qc.zero, q_out=qo)
            else:
                out[n.name] = dict(q_out=qo)
        self._int_cache = out
        return out

    @torch.no_grad()
    def forward_int(self, codes: Tensor, keep_all: bool = False) -> Any:
        """Input codes (N, 3, H, W) -> head codes (float64 holding integers), or with
        ``keep_all`` a dict of every node's codes."""
        params = self.integer_params()
        vals: dict[str, Tensor] = {INPUT: codes.double()}
        last_use = self._last_use()
        for k, n in enumerate(self.nodes):
            vals[n.name] = run_int_op(n.op, n.attrs, [vals[s] for s in n.inputs], params[n.name])
            if not keep_all:
                for s in n.inputs:
                    if last_use.get(s) == k and s not in self.heads:
                        del vals[s]
        if keep_all:
            return vals
        return [vals[h] for h in self.heads]


def _round_shift(p: Tensor, s: Tensor) -> Tensor:
    """round_shift (section 1) on float64 integers: exact, see the module docstring."""
    half = torch.where(s > 0, torch.exp2(s - 1), torch.zeros_like(s))
    return torch.floor((p + half) / torch.exp2(s))


@torch.no_grad()
def run_int_op(op: str, attrs: dict[str, Any], ins: list[Tensor], p: dict[str, Any]) -> Tensor:
    """One operation of the contract on (N, C, H, W) float64 codes. ``attrs`` use the artifact's
    keys; ``p`` holds the integer constants (QuantDetector.integer_params' layout)."""
    q_out: Quant = p["q_out"]
    if op == "conv":
        w = torch.from_numpy(p["v"]).double()
        bias = torch.from_numpy(p["bias"].astype(np.float64))
        x = ins[0] - p["z_in"]  # zero padding of q - z_in is padding with z_in (section 4.2)
        acc = F.conv2d(x, w, bias, attrs["stride"], attrs["pad"], 1, attrs["groups"])
        c = (1, -1, 1, 1)
        mp = torch.from_numpy(p["m_pos"].astype(np.float64)).view(c)
        mn = torch.from_numpy(p["m_neg"].astype(np.float64)).view(c)
        sh = torch.from_numpy(p["shift"].astype(np.float64)).view(c)
        r = _round_shift(acc * torch.where(acc >= 0, mp, mn), sh)
        return torch.clamp(q_out.zero + r, 0, q_out.qmax)
    if op == "add":
        t = p["m_a"] * (ins[0] - p["z_a"]) + p["m_c"] * (ins[1] - p["z_c"])
        if attrs["activation"] == "relu":
            t = torch.clamp(t, min=0)
        r = _round_shift(t, torch.tensor(float(p["shift"]), dtype=torch.float64))
        return torch.clamp(q_out.zero + r, 0, q_out.qmax)
    if op == "concat":
        return torch.cat(ins, dim=1)
    if op == "upsample":
        return ins[0].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    if op == "maxpool":
        x = F.pad(ins[0], (attrs["pad_before"], attrs["pad_after"]) * 2, value=-1.0)
        return F.max_pool2d(x, attrs["kernel"], attrs["stride"])
    raise ValueError(f"unknown op {op!r}")


def integer_runner(
    cache: dict[int, QuantDetector] | None = None,
) -> Callable[[Any, np.ndarray], dict[str, np.ndarray]]:
    """A runner(art, codes CHW) for models.detect.artifact_detect_fn that executes an artifact
    with the float64 integer mode (quant.export.detector_from_artifact), bit-exact with
    sim.reference but much faster."""
    from quant.export import detector_from_artifact

    memo: dict[int, Any] = {} if cache is None else cache  # type: ignore[assignment]

    def run(art: Any, codes: np.ndarray) -> dict[str, np.ndarray]:
        key = id(art)
        if key not in memo:
            memo[key] = detector_from_artifact(art)
        net = memo[key]
        outs = net(torch.from_numpy(codes.astype(np.float64))[None])
        return {name: o[0].numpy().astype(np.uint8) for name, o in zip(net.outputs, outs,
                                                                        strict=True)}  # fmt: skip

    return run
