"""The integer mode: the contract of docs/arithmetic.md on codes, computed in float64 torch ops.

Every value is an integer below 2^53 (|acc| < 2^31, |acc * M| < 2^47), every sum of integers is
exact in float64 whatever the summation order, and ``round_shift`` divides by a power of two and
floors, which is exact too - so the results equal sim.reference's int64 integers bit for bit,
while torch's convolutions make it fast enough to evaluate mAP at 512x512.

One runner serves both graphs: a QuantDetector's (``QuantDetector.forward_int``, its constants
from ``conv_params``/``add_params``) and any artifact's (``ArtifactNet``), whose nodes carry the
same op names and attribute keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.darknet import LEAKY_SLOPE
from sw import artifact as artmod
from sw.artifact import Artifact, Quant
from sw.contract.requant import add_constants, conv_constants, quantize_multiplier

INPUT = "image"
INPUT_QUANT = Quant(8, 0, 1.0 / 255.0)  # docs/arithmetic.md section 2: the pixel bytes as is


class IntNode(Protocol):
    """What the runner reads of a node: a QuantDetector's QNode or an artifact's Node."""

    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Any]


def conv_params(
    qi: Quant, qo: Quant, v: np.ndarray, s_w: np.ndarray, bias: np.ndarray, activation: str
) -> dict[str, Any]:
    """The integer constants of one conv: weight values ``v`` with per-channel scale ``s_w``,
    the real ``bias`` on the accumulator grid, the requantization multipliers and shift."""
    acc_unit = np.float64(np.float32(qi.scale)) * s_w.astype(np.float64)
    b = np.clip(np.round(bias / acc_unit), -(2**31), 2**31 - 1).astype(np.int64)
    m_real = acc_unit / np.float64(np.float32(qo.scale))
    mp, mn, sh = conv_constants(m_real, activation, LEAKY_SLOPE)
    return dict(v=v, s_w=s_w, bias=b, m_pos=mp, m_neg=mn, shift=sh, z_in=qi.zero, q_out=qo)


def add_params(qa: Quant, qc: Quant, qo: Quant) -> dict[str, Any]:
    """The integer constants of one add of inputs quantized ``qa`` and ``qc`` into ``qo``."""
    ma, mc, s = add_constants(
        float(np.float32(qa.scale)), float(np.float32(qc.scale)), float(np.float32(qo.scale))
    )
    return dict(m_a=ma, m_c=mc, shift=s, z_a=qa.zero, z_c=qc.zero, q_out=qo)


def avgpool_params(qi: Quant, qo: Quant, area: int) -> dict[str, Any]:
    """The integer constants of a global average pool over ``area`` = H * W positions: one
    multiplier for ``s_in / (s_out * area)`` (docs/arithmetic.md section 7.1)."""
    m, s = quantize_multiplier(float(np.float32(qi.scale)) / (float(np.float32(qo.scale)) * area))
    return dict(multiplier=m, shift=s, z_in=qi.zero, q_out=qo)


def _round_shift(p: Tensor, s: Tensor) -> Tensor:
    """round_shift (section 1) on float64 integers: exact, see the module docstring."""
    half = torch.where(s > 0, torch.exp2(s - 1), torch.zeros_like(s))
    return torch.floor((p + half) / torch.exp2(s))


def _acc_bound(p: dict[str, Any]) -> int:
    """Largest |acc| any input of 8 bits or fewer can give (section 4.3), cached in ``p``."""
    if "acc_bound" not in p:
        a_in = 255  # max(z_in, qmax - z_in) never exceeds it
        taps = np.abs(p["v"]).reshape(p["v"].shape[0], -1).sum(axis=1)
        p["acc_bound"] = int((np.abs(p["bias"]) + a_in * taps).max(initial=0))
    return p["acc_bound"]


@torch.no_grad()
def run_int_op(op: str, attrs: dict[str, Any], ins: list[Tensor], p: dict[str, Any]) -> Tensor:
    """One operation of the contract on (N, C, H, W) float64 codes. ``attrs`` use the artifact's
    keys; ``p`` holds the integer constants (``conv_params``/``add_params``' layout)."""
    q_out: Quant = p["q_out"]
    if op == "conv":
        # float32 when the layer's section 4.3 bound is below 2^24: every partial sum is then an
        # exact float32 integer (as in sw.kernels.acc_dtype), and the conv runs ~3x faster.
        dt = torch.float32 if _acc_bound(p) < 2**24 else torch.float64
        w = torch.from_numpy(p["v"]).to(dt)
        bias = torch.from_numpy(p["bias"].astype(np.float64)).to(dt)
        x = (ins[0] - p["z_in"]).to(dt)  # zero padding of q - z_in is padding with z_in (4.2)
        acc = F.conv2d(x, w, bias, attrs["stride"], attrs["pad"], 1, attrs["groups"]).double()
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
    if op == "avgpool":  # section 7.1: exact sum (< 2^31), one product (< 2^47), one rounding
        t = (ins[0] - p["z_in"]).sum(dim=(2, 3), keepdim=True)
        r = _round_shift(t * p["multiplier"], torch.tensor(float(p["shift"]), dtype=torch.float64))
        return torch.clamp(q_out.zero + r, 0, q_out.qmax)
    if op == "concat":
        return torch.cat(ins, dim=1)
    if op == "upsample":
        return ins[0].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    if op == "maxpool":
        x = F.pad(ins[0], (attrs["pad_before"], attrs["pad_after"]) * 2, value=-1.0)
        return F.max_pool2d(x, attrs["kernel"], attrs["stride"])
    raise ValueError(f"unknown op {op!r}")


@torch.no_grad()
def run_int_graph(
    nodes: Sequence[IntNode],
    input_name: str,
    codes: Tensor,
    params: dict[str, dict[str, Any]],
    outputs: list[str],
    keep_all: bool = False,
) -> Any:
    """Input codes (N, C, H, W) through ``nodes`` in order -> the ``outputs``' codes (float64
    holding integers), or with ``keep_all`` a dict of every tensor's codes, the input included.
    Without ``keep_all`` a tensor is dropped after its last reader."""
    vals: dict[str, Tensor] = {input_name: codes.double()}
    last_use = {s: k for k, n in enumerate(nodes) for s in n.inputs}
    for k, n in enumerate(nodes):
        vals[n.name] = run_int_op(n.op, n.attrs, [vals[s] for s in n.inputs], params[n.name])
        if not keep_all:
            for s in n.inputs:
                if last_use[s] == k and s not in outputs:
                    del vals[s]
    if keep_all:
        return vals
    return [vals[o] for o in outputs]


class ArtifactNet:
    """Runs an artifact with the float64 integer ops (exact, fast)."""

    def __init__(self, art: Artifact) -> None:
        self.art = art
        self.outputs = [o.node for o in art.outputs]
        self.params: dict[str, dict[str, Any]] = {}
        for n in art.nodes:
            p: dict[str, Any] = {"q_out": n.quant}
            if n.op == "conv":
                t = n.tensors
                a = n.attrs
                p.update(
                    v=artmod.decode_codes(t["codes"], a["weight_format"], a["weight_bits"]),
                    bias=t["bias"].astype(np.int64),
                    m_pos=t["m_pos"], m_neg=t["m_neg"], shift=t["shift"],
                    z_in=art.quant_of(n.inputs[0]).zero,
                )  # fmt: skip
            elif n.op == "add":
                p.update(m_a=n.attrs["m_a"], m_c=n.attrs["m_b"], shift=n.attrs["shift"],
                         z_a=art.quant_of(n.inputs[0]).zero,
                         z_c=art.quant_of(n.inputs[1]).zero)  # fmt: skip
            elif n.op == "avgpool":
                p.update(multiplier=n.attrs["multiplier"], shift=n.attrs["shift"],
                         z_in=art.quant_of(n.inputs[0]).zero)  # fmt: skip
            self.params[n.name] = p

    def __call__(self, codes: Tensor, keep_all: bool = False) -> Any:
        art = self.art
        return run_int_graph(art.nodes, art.input_name, codes, self.params, self.outputs, keep_all)


def detector_from_artifact(art: Artifact | str | Path) -> ArtifactNet:
    if not isinstance(art, Artifact):
        art = artmod.load(art)
    return ArtifactNet(art)


def integer_runner(
    cache: dict[int, ArtifactNet] | None = None,
) -> Callable[[Any, np.ndarray], dict[str, np.ndarray]]:
    """A runner(art, codes CHW) for models.detect.artifact_detect_fn that executes an artifact
    with the float64 integer mode (``detector_from_artifact``), bit-exact with sim.reference but
    much faster."""
    memo: dict[int, ArtifactNet] = {} if cache is None else cache

    def run(art: Any, codes: np.ndarray) -> dict[str, np.ndarray]:
        key = id(art)
        if key not in memo:
            memo[key] = detector_from_artifact(art)
        net = memo[key]
        outs = net(torch.from_numpy(codes.astype(np.float64))[None])
        return {name: o[0].numpy().astype(np.uint8) for name, o in zip(net.outputs, outs,
                                                                        strict=True)}  # fmt: skip

    return run
