"""QuantDetector: a darknet YOLO graph with BN folded, in float, fake-quant and integer modes.

* ``float``: folded weights, no quantization (equals models.darknet.Darknet up to rounding);
* ``fake``: weights through their WeightQuantizer (pow2 / int / binary per layer), bias rounded
  to the accumulator grid, every conv and add output through its ActQuantizer, with
  straight-through gradients (for calibration, reconstruction and QAT);
* ``int``: the integer contract of docs/arithmetic.md on codes (quant.integer), exact in
  float64, so the results equal sim.reference's integers bit for bit.

The integer constants come from one method, :meth:`QuantDetector.integer_params`, used by both
the integer mode and the exporter (quant.export), so what is measured is what is shipped.

Graph rules: darknet ``route`` with several inputs is a concat and all its inputs share one
activation quantizer (union-find over "quant groups"; upsample and maxpool inherit their input's
group), a single-input route / dropout / yolo is an alias, ``shortcut`` is the contract's add, a
route with ``groups`` (a channel split) a fixed channel-selection 1x1 conv tied to its input's
quantization (exact: the codes pass unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping
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
)
from quant.fold import fold_batchnorm
from quant.integer import (
    INPUT,
    INPUT_QUANT,
    add_params,
    avgpool_params,
    conv_params,
    run_int_graph,
)
from quant.quantizers import ActQuantizer, WeightQuantizer, round_ste
from sw.artifact import Quant
from sw.darknet.cfg import channel_selection


@dataclass
class QNode:
    """One operation of the quantized graph; ``inputs`` are tensor names (INPUT or nodes)."""

    name: str
    op: str  # conv, add, concat, upsample, maxpool
    inputs: list[str]
    index: int  # darknet layer index (for messages and for matching feature maps)
    attrs: dict[str, Any] = field(default_factory=dict)
    group: int = -1  # activation-quant group of the output


RELU6_MAX = 6.0


def contract_activation(attrs: Mapping[str, Any]) -> str:
    """The conv activation as the contract has it: relu6 is relu whose output range stops at 6
    (the quantizer's ceiling), so the clamp at the top code is the 6."""
    return "relu" if attrs["activation"] == "relu6" else attrs["activation"]


@dataclass(frozen=True)
class LayerFormat:
    """Weight format of a conv: dense and depthwise layers get their own choice."""

    dense: tuple[str, int] = ("pow2", 4)
    depthwise: tuple[str, int] = ("pow2", 4)
    # Per-conv choices by node name ("conv5": ("pow2x2", 8)), e.g. from a mixed-precision plan.
    layers: Mapping[str, tuple[str, int]] = field(default_factory=dict)

    def of(self, depthwise: bool, name: str | None = None) -> tuple[str, int]:
        if name is not None and name in self.layers:
            return tuple(self.layers[name])  # type: ignore[return-value]
        return self.depthwise if depthwise else self.dense


class QuantDetector(nn.Module):
    """See the module docstring. ``mode`` is "float", "fake" or "int" (set by the caller)."""

    def __init__(
        self,
        model: Darknet,
        fmt: LayerFormat | None = None,
        act_bits: int = 8,
        head_bits: int | None = None,
        act_bits_of: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        fmt = fmt or LayerFormat()
        self.cfg = model.cfg
        self.input_quant = INPUT_QUANT
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
                wf, wb = fmt.of(dw, f"conv{i}")
                node = QNode(name, "conv", [prev], i, dict(
                    kernel=spec.size, stride=spec.stride, pad=spec.padding, groups=spec.groups,
                    activation=spec.activation, out_channels=spec.filters, depthwise=dw,
                    weight_format=wf, weight_bits=wb,
                ))  # fmt: skip
                assert fl.weight is not None and fl.bias is not None
                self._add_conv(name, fl.weight, fl.bias, wf, wb)
                group_of[name] = new_group()
            elif isinstance(spec, ShortcutSpec):
                if spec.activation not in ("linear", "relu"):
                    raise ValueError(f"{spec.where()}: shortcut activation {spec.activation}")
                name = f"add{i}"
                node = QNode(name, "add", [prev, names[spec.source]], i,
                             {"activation": spec.activation})  # fmt: skip
                group_of[name] = new_group()
            elif isinstance(spec, RouteSpec):
                srcs = [names[j] for j in spec.layers]
                if spec.groups != 1:
                    # YOLOv4-tiny's channel split: a fixed 1x1 conv that selects the chunk,
                    # tied to its input's quantization, so the codes pass unchanged (exact, on
                    # the PL, as the option-A shortcuts; docs/arithmetic.md section 7.2).
                    if len(srcs) != 1:
                        raise ValueError(f"{spec.where()}: route groups of several layers")
                    name = f"route{i}"
                    cin = self.cfg.layers[spec.layers[0]].out_shape[0]
                    w = channel_selection(cin, spec.groups, spec.group_id)
                    node = QNode(name, "conv", srcs, i, dict(
                        kernel=1, stride=1, pad=0, groups=1, activation="linear",
                        out_channels=w.shape[0], depthwise=False, weight_format="pow2",
                        weight_bits=4, fixed=True,
                    ))  # fmt: skip
                    self._add_conv(name, w, np.zeros(w.shape[0], np.float32), "pow2", 4, fixed=True)
                    group_of[name] = group_of[srcs[0]]
                    names[i] = name
                    self.nodes.append(node)
                    continue
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
        self._init_quantizers(len(roots), act_bits, head_bits, act_bits_of)
        self._relu6_ceilings()

    def _relu6_ceilings(self) -> None:
        """A group whose values come from relu6 convs has its range held to [., 6]; a group
        that mixes them with other producers (a concat) cannot be relu6 and relu at once."""
        for g, q in enumerate(self.aq):
            # (a fixed conv, a route's channel split, passes its input's codes on unchanged)
            members = [n for n in self.group_members(g) if not n.attrs.get("fixed")]
            acts = {n.attrs.get("activation") if n.op == "conv" else n.op for n in members}
            if "relu6" not in acts:
                continue
            if acts != {"relu6"}:
                first = next(n for n in members if n.attrs.get("activation") == "relu6")
                raise ValueError(f"layer {first.index} [convolutional]: its relu6 output shares "
                                 "one quantizer with non-relu6 tensors (a concat)")  # fmt: skip
            q.ceiling = RELU6_MAX

    def _init_quantizers(
        self, n_groups: int, act_bits: int, head_bits: int | None,
        act_bits_of: Mapping[str, int] | None,
    ) -> None:  # fmt: skip
        """One ActQuantizer per activation group (``n.group`` set), per-node bit requests."""
        self.aq = nn.ModuleList(ActQuantizer(act_bits) for _ in range(n_groups))
        self.by_name = {n.name: n for n in self.nodes}
        # Per-node output bits (a plan): a group takes the largest request of its members.
        requested: dict[int, int] = {}
        for name, b in (act_bits_of or {}).items():
            if name not in self.by_name or self.by_name[name].op not in ("conv", "add"):
                raise ValueError(f"act_bits_of: {name!r} is not a conv or add node")
            g = self.by_name[name].group
            requested[g] = max(requested.get(g, 0), int(b))
        for g, b in requested.items():
            self.aq[g].bits = b
        # The head outputs go to the ARM decoder, not to another layer: keeping them at 8 bits
        # (head_bits) costs the accelerator nothing and spares the box regression 4-bit steps.
        for h in self.heads if head_bits else []:
            self.aq[self.by_name[h].group].bits = head_bits
        self._int_cache: dict[str, Any] | None = None

    @classmethod
    def from_graph(
        cls,
        nodes: list[QNode],
        params: Mapping[str, tuple[Any, Any]],
        heads: list[str],
        input_quant: Quant,
        fmt: LayerFormat | None = None,
        act_bits: int = 8,
        tied: Mapping[str, str] | None = None,
        fixed: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> QuantDetector:
        """A quantized graph that is not a darknet cfg (the CIFAR ResNets, models.classifiers):
        ``nodes`` in topological order (conv, add, avgpool ...), ``params`` the folded float
        (weight, bias) numpy arrays of each trainable conv, ``heads`` the output nodes (raw
        outputs), ``input_quant`` the input tensor's quantization.

        ``tied`` maps a node to the tensor whose activation group (so quantization) it shares;
        ``fixed`` gives convs with given integer weights and a unit weight scale that no
        quantizer, calibration or training changes (option-A shortcuts: with a tied output
        they are exact, docs/arithmetic.md section 7.2)."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        fmt = fmt or LayerFormat()
        self.cfg = None
        self.input_quant = input_quant
        self.act_bits = act_bits
        self.mode = "fake"
        self.nodes = list(nodes)
        self.weight = nn.ParameterDict()
        self.bias = nn.ParameterDict()
        self.wq = nn.ModuleDict()
        self.heads = list(heads)
        self.head_specs = []
        fixed, tied = dict(fixed or {}), dict(tied or {})
        group: dict[str, int] = {}
        n_groups = 0
        for n in self.nodes:
            if n.op == "conv":
                w, b = fixed[n.name] if n.name in fixed else params[n.name]
                dw = n.attrs["groups"] != 1
                wf, wb = ("pow2", 4) if n.name in fixed else fmt.of(dw, n.name)
                n.attrs.update(depthwise=dw, weight_format=wf, weight_bits=wb,
                               fixed=n.name in fixed)  # fmt: skip
                self._add_conv(n.name, w, b, wf, wb, fixed=n.name in fixed)
            if n.name in tied:
                if tied[n.name] not in group:
                    raise ValueError(f"{n.name}: tied to {tied[n.name]!r}, not an earlier node")
                group[n.name] = group[tied[n.name]]
            elif n.op in ("upsample", "maxpool"):
                group[n.name] = group[n.inputs[0]]
            else:
                group[n.name] = n_groups
                n_groups += 1
            n.group = group[n.name]
        self._init_quantizers(n_groups, act_bits, None, None)
        return self

    def _add_conv(
        self, name: str, w: Any, b: Any, fmt: str, bits: int, fixed: bool = False
    ) -> None:
        """A conv's float weight and bias (copied, float32) and its WeightQuantizer. A fixed
        conv has a unit scale, so its integers are the weights themselves, and nothing trains
        them (option-A shortcuts, a route's channel split)."""
        self.weight[name] = nn.Parameter(torch.as_tensor(w, dtype=torch.float32).clone())
        self.bias[name] = nn.Parameter(torch.as_tensor(b, dtype=torch.float32).clone())
        q = WeightQuantizer(int(self.weight[name].shape[0]), fmt, bits)
        if fixed:
            for t in (self.weight[name], self.bias[name], q.log2_scale):
                t.requires_grad_(False)
        else:
            q.init_scale(self.weight[name])
        self.wq[name] = q

    # ------------------------------------------------------------------------------------------
    # Helpers

    def conv_nodes(self) -> list[QNode]:
        return [n for n in self.nodes if n.op == "conv"]

    def group_members(self, g: int) -> list[QNode]:
        """Nodes that *produce* values in group g (conv and add: they requantize into it)."""
        return [n for n in self.nodes if n.group == g and n.op in ("conv", "add", "avgpool")]

    def quant_of(self, name: str) -> Quant:
        if name == INPUT:
            return self.input_quant
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
        elif act == "relu6":
            y = F.relu6(y)
        return y

    def _in_scale(self, n: QNode) -> Tensor | None:
        src = n.inputs[0]
        if src == INPUT:
            return torch.tensor(self.input_quant.scale, dtype=torch.float32)
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
        elif n.op == "avgpool":
            y = ins[0].mean(dim=(2, 3), keepdim=True)
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
                v, s_w = self.wq[n.name].integer(self.weight[n.name])
                b = self.bias[n.name].detach().double().numpy()
                out[n.name] = conv_params(
                    self.quant_of(n.inputs[0]), qo, v, s_w, b, contract_activation(n.attrs)
                )
            elif n.op == "add":
                qa, qc = self.quant_of(n.inputs[0]), self.quant_of(n.inputs[1])
                out[n.name] = add_params(qa, qc, qo)
            elif n.op == "avgpool":
                out[n.name] = avgpool_params(self.quant_of(n.inputs[0]), qo, n.attrs["area"])
            else:
                out[n.name] = dict(q_out=qo)
        self._int_cache = out
        return out

    @torch.no_grad()
    def forward_int(self, codes: Tensor, keep_all: bool = False) -> Any:
        """Input codes (N, 3, H, W) -> head codes (float64 holding integers), or with
        ``keep_all`` a dict of every node's codes."""
        return run_int_graph(self.nodes, INPUT, codes, self.integer_params(), self.heads, keep_all)
