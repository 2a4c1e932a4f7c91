"""Fake quantizers with straight-through gradients: weights (pow2 / int / binary, per output
channel) and activations (asymmetric per tensor, LSQ-style learnable clip range).

The value sets are exactly those of docs/arithmetic.md section 3 (weights) and section 2
(activations), so a fake-quantized network differs from its integer twin (quant.model integer
mode) only by the rounding of the bias and of the requantization multipliers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from sw.artifact import pow2_max_exponent
from sw.contract.codes import pow2x2_values
from sw.contract.requant import range_to_quant

WEIGHT_FORMATS = ("pow2", "int", "binary", "pow2x2")


def round_ste(x: Tensor) -> Tensor:
    """round() forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def pow2_levels(r: Tensor, bits: int) -> Tensor:
    """Nearest (in value, i.e. MSE-optimal) magnitude in {0, 1, 2, ..., 2^E_B} of |r|.

    Between 2^k and 2^(k+1) the midpoint 1.5 * 2^k decides (not the log-domain midpoint),
    and between 0 and 1 the point 0.5.
    """
    emax = pow2_max_exponent(bits)
    a = r.abs()
    e = torch.floor(torch.log2(torch.clamp(a, min=1e-30) / 1.5)) + 1
    e = torch.clamp(e, 0, emax)
    return torch.where(a < 0.5, torch.zeros_like(a), torch.exp2(e))


_POW2X2 = torch.from_numpy(pow2x2_values().astype(np.float64))
_POW2X2_MAG = _POW2X2[_POW2X2 >= 0]  # the set is symmetric: round |x|, keep the sign


def nearest_level(x: Tensor, levels: Tensor) -> Tensor:
    """The nearest of ascending ``levels`` to each element (ties to the lower level: towards
    zero for magnitudes)."""
    lv = levels.to(x.dtype)
    i = torch.clamp(torch.searchsorted(lv, x.contiguous()), 1, lv.numel() - 1)
    lo, hi = lv[i - 1], lv[i]
    return torch.where(x - lo <= hi - x, lo, hi)


def quantize_integer(x: Tensor, fmt: str, bits: int) -> Tensor:
    """Integer weight values v (as floats) of x = w / s_w, in the format's value set."""
    if fmt == "pow2x2":
        return torch.sign(x) * nearest_level(x.abs(), _POW2X2_MAG)
    if fmt == "pow2":
        return torch.sign(x) * pow2_levels(x, bits)
    if fmt == "int":
        lim = (1 << (bits - 1)) - 1
        return torch.clamp(torch.round(x), -lim, lim)
    if fmt == "binary":
        return torch.where(x < 0, -torch.ones_like(x), torch.ones_like(x))
    raise ValueError(f"unknown weight format {fmt!r}")


def max_level(fmt: str, bits: int) -> float:
    if fmt == "pow2x2":
        return float(_POW2X2[-1])
    if fmt == "pow2":
        return float(2 ** pow2_max_exponent(bits))
    if fmt == "int":
        return float((1 << (bits - 1)) - 1)
    return 1.0


class WeightQuantizer(nn.Module):
    """Per-output-channel scale s_w (learned as log2 s_w) and a format's integer grid.

    forward(w) = s_w * v(w / s_w) with a straight-through gradient inside the representable
    range (so both w and s_w learn, LSQ-style); init_scale() picks the MSE-optimal s_w per
    channel on a grid, which alone is the plain post-training rounding.
    """

    def __init__(self, out_channels: int, fmt: str, bits: int) -> None:
        super().__init__()
        if fmt not in WEIGHT_FORMATS:
            raise ValueError(f"weight format {fmt!r} not in {WEIGHT_FORMATS}")
        self.fmt, self.bits = fmt, bits
        self.log2_scale = nn.Parameter(torch.zeros(out_channels))

    def extra_repr(self) -> str:
        return f"{self.fmt}{self.bits}"

    def scale(self) -> Tensor:
        # float32 as the artifact stores it; the rounding through float32 keeps fake-quant and
        # export on one scale.
        return torch.exp2(self.log2_scale).float()

    @torch.no_grad()
    def init_scale(self, w: Tensor, grid: int = 41) -> None:
        """MSE-optimal per-channel scale over a geometric grid around max|w| / max_level."""
        flat = w.detach().reshape(w.shape[0], -1).double()
        amax = flat.abs().amax(dim=1).clamp(min=1e-12)
        if self.fmt == "binary":
            self.log2_scale.copy_(torch.log2(flat.abs().mean(dim=1).clamp(min=1e-12)))
            return
        base = amax / max_level(self.fmt, self.bits)
        # pow2: s and 2s share a grid except at both ends, so one octave either side suffices.
        lo = -1.5 if self.fmt in ("pow2", "pow2x2") else -1.0
        factors = torch.exp2(torch.linspace(lo, 0.5, grid, dtype=torch.float64))
        best_err = torch.full_like(amax, math.inf)
        best = base.clone()
        for f in factors:
            s = base * f
            q = quantize_integer(flat / s[:, None], self.fmt, self.bits) * s[:, None]
            err = ((q - flat) ** 2).sum(dim=1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best = torch.where(better, s, best)
        self.log2_scale.copy_(torch.log2(best).float())

    def forward(self, w: Tensor) -> Tensor:
        s = self.scale().view(-1, *([1] * (w.dim() - 1)))
        x = w / s
        v = quantize_integer(x.detach(), self.fmt, self.bits)
        inside = x.detach().abs() <= max_level(self.fmt, self.bits)
        # STE inside the range; outside, v is a constant and only s_w gets a gradient.
        y = torch.where(inside, x + (v - x).detach(), v)
        return y * s

    @torch.no_grad()
    def integer(self, w: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(integer weights v as int64, float32 scales) exactly as exported."""
        s = self.scale()
        v = quantize_integer(w.detach().float() / s.view(-1, *([1] * (w.dim() - 1))), self.fmt,
                             self.bits)  # fmt: skip
        return v.numpy().astype(np.int64), s.numpy().astype(np.float32)


class ActQuantizer(nn.Module):
    """Asymmetric per-tensor activation quantizer: a learnable clip range [lo, hi] (0 inside).

    real = s * (q - z), s = (hi - lo) / (2^b - 1), z = round(-lo / s); the forward pass rounds
    with a straight-through gradient, so lo and hi learn through s like LSQ's step size.
    """

    def __init__(self, bits: int = 8) -> None:
        super().__init__()
        self.bits = bits
        self.lo = nn.Parameter(torch.tensor(-1.0))
        self.hi = nn.Parameter(torch.tensor(1.0))
        self.enabled = True
        # Largest real value the range may reach: 6 for the outputs of relu6 convs, so that the
        # integer network's clamp at the top code *is* the relu6 ceiling (the artifact says relu).
        self.ceiling = math.inf

    def extra_repr(self) -> str:
        return f"bits={self.bits}, lo={float(self.lo):.4g}, hi={float(self.hi):.4g}"

    @property
    def qmax(self) -> int:
        return (1 << self.bits) - 1

    def params(self) -> tuple[int, float]:
        """(zero, scale) as the artifact stores them (sw.contract.requant.range_to_quant)."""
        hi = min(float(self.hi.detach()), self.ceiling)
        return range_to_quant(float(self.lo.detach()), hi, self.bits)

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        lo = torch.clamp(self.lo, max=0.0)
        hi = torch.clamp(self.hi, min=0.0, max=self.ceiling)
        s = torch.clamp((hi - lo) / self.qmax, min=1e-8)
        z = torch.clamp(torch.round(-lo.detach() / s.detach()), 0, self.qmax)
        return _FakeQuantAct.apply(x, s, z, self.qmax)

    @torch.no_grad()
    def calibrate(self, samples: Tensor, rounds: int = 2, grid: int = 48) -> None:
        """MSE-optimal clip range on samples (docs/arithmetic.md 11.4): coordinate descent
        over fractions of the observed extremes, hi then lo."""
        x = samples.detach().double().flatten()
        mn, mx = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        if mx - mn <= 0:
            self.lo.fill_(-1e-3)
            self.hi.fill_(1e-3)
            return
        fr = torch.cat([torch.exp2(torch.linspace(-6, 0, grid, dtype=torch.float64))])
        lo, hi = mn, mx

        def mse(lo_: float, hi_: float) -> float:
            z, s = range_to_quant(lo_, hi_, self.bits)
            q = torch.clamp(torch.round(x / s) + z, 0, self.qmax)
            return float(((q - z) * s - x).pow(2).mean())

        for _ in range(rounds):
            if mx > 0:
                hi = min((mx * float(f) for f in fr), key=lambda h: mse(lo, h))
            if mn < 0:
                cands = [mn * float(f) for f in fr] + [0.0]
                lo = min(cands, key=lambda v: mse(v, hi))
        self.lo.fill_(lo)
        self.hi.fill_(hi)


class _FakeQuantAct(torch.autograd.Function):
    """y = s * (clamp(round(x / s) + z, 0, qmax) - z) with LSQ gradients, fused by hand.

    Written out with autograd ops this quantizer cost ~20 full passes over every activation
    tensor (forward and backward) and made a QAT step 3-4x slower than the convolutions
    alone; here it is 5 in-place passes forward and the backward recomputes its masks from x.
    Gradients: dy/dx = 1 inside the range, 0 outside (straight through the rounding);
    dy/ds = round(x/s) - x/s inside, q - z outside (LSQ); z is a constant (as before).
    """

    @staticmethod
    def forward(ctx, x: Tensor, s: Tensor, z: Tensor, qmax: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, s, z)
        ctx.qmax = qmax
        q = torch.div(x, s).round_().add_(z).clamp_(0, qmax)
        return q.sub_(z).mul_(s)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, s, z = ctx.saved_tensors
        v = torch.div(x, s)
        u = v + z  # the code before rounding
        # LSQ's range test is on the unrounded value, so a value that rounds onto a clip
        # level from outside counts as clipped (autograd through round_ste decided these
        # ties by float noise).
        inside = (u >= 0) & (u <= ctx.qmax)
        gx = g * inside if ctx.needs_input_grad[0] else None
        gs = None
        if ctx.needs_input_grad[1]:
            # inside: round(v) - v; outside: the clip level minus z
            d = torch.where(inside, torch.round(v).sub_(v), u.clamp_(0, ctx.qmax).sub_(z))
            gs = (g * d).sum().reshape(s.shape)
        return gx, gs, None, None
