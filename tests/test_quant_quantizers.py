"""quant.quantizers: value sets of the contract, nearest-level rounding, STE gradients."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quant.quantizers import ActQuantizer, WeightQuantizer, pow2_levels, quantize_integer
from sw.artifact import decode_codes, encode_codes, pow2_max_exponent

# one thread: the CI machine is shared and torch's thread pool thrashes under contention
torch.set_num_threads(1)


@settings(max_examples=40, deadline=None)
@given(bits=st.sampled_from([3, 4, 5, 8]), seed=st.integers(0, 2**31 - 1))
def test_pow2_values_are_valid_and_nearest(bits: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal(500) * 2.0 ** rng.uniform(-3, 10))
    v = quantize_integer(x, "pow2", bits).numpy().astype(np.int64)
    emax = pow2_max_exponent(bits)
    levels = np.array([0] + [s * 2**e for e in range(emax + 1) for s in (1, -1)])
    assert np.isin(v, levels).all()
    # round trip through the artifact's code format
    assert np.array_equal(decode_codes(encode_codes(v, "pow2", bits), "pow2", bits), v)
    # nearest level (ties may go either way: compare distances)
    best = np.abs(x.numpy()[:, None] - levels[None, :]).min(axis=1)
    assert np.allclose(np.abs(x.numpy() - v), best, rtol=1e-9, atol=1e-9)


def test_pow2_thresholds() -> None:
    r = torch.tensor([0.49, 0.5, 1.49, 1.5, 2.99, 3.0, 1e6])
    assert pow2_levels(r, 4).tolist() == [0, 1, 1, 2, 2, 4, 64]


def test_int_and_binary_ranges() -> None:
    x = torch.linspace(-300, 300, 1001)
    v = quantize_integer(x, "int", 8)
    assert v.min() == -127 and v.max() == 127
    b = quantize_integer(torch.tensor([-0.1, 0.0, 2.0]), "binary", 1)
    assert b.tolist() == [-1, 1, 1]


def test_weight_quantizer_scale_init_and_ste() -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3) * torch.logspace(-3, 1, 6).view(-1, 1, 1, 1)
    for fmt, bits in (("pow2", 4), ("int", 8), ("binary", 1)):
        q = WeightQuantizer(6, fmt, bits)
        q.init_scale(w)
        wp = torch.nn.Parameter(w.clone())
        out = q(wp)
        v, s = q.integer(wp)
        assert np.allclose(out.detach().numpy(), v * s[:, None, None, None], rtol=1e-6)
        # per channel the relative error is bounded (the scale follows the channel's range)
        rel = ((out - w).pow(2).sum((1, 2, 3)) / w.pow(2).sum((1, 2, 3))).detach()
        assert rel.max() < (0.2 if fmt == "pow2" else 1e-3 if fmt == "int" else 0.5)
        out.sum().backward()
        assert wp.grad is not None and wp.grad.abs().sum() > 0
        if fmt != "binary":
            assert q.log2_scale.grad is not None and q.log2_scale.grad.abs().sum() > 0


def test_act_quantizer_grid_and_calibration() -> None:
    torch.manual_seed(0)
    x = torch.cat([torch.randn(10000).abs() * 3, -0.1 * torch.randn(10000).abs()])
    q = ActQuantizer(8)
    q.calibrate(x)
    z, s = q.params()
    y = q(x).detach().double()
    codes = y / s + z
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    codes = codes.round()
    assert codes.min() >= 0 and codes.max() <= 255
    mse = float((y - x.double()).pow(2).mean())
    naive = ActQuantizer(8)
    naive.lo.data.fill_(float(x.min()))
    naive.hi.data.fill_(float(x.max()))
    assert mse <= float((naive(x).detach().double() - x.double()).pow(2).mean()) * 1.0001
    lo = torch.nn.Parameter(q.lo.detach().clone())
    q.lo = lo
    q(x).sum().backward()
    assert lo.grad is not None


@settings(max_examples=30, deadline=None)
@given(bits=st.sampled_from([4, 8]), seed=st.integers(0, 2**31 - 1))
def test_act_quantizer_fused_forward_and_lsq_gradients(bits: int, seed: int) -> None:
    """The hand-fused quantizer: forward equals the textbook expression bit for bit; gradients
    equal LSQ's definition (range test on the unrounded value) computed in float64."""
    gen = torch.Generator().manual_seed(seed)
    q = ActQuantizer(bits)
    lo = -float(torch.rand(1, generator=gen)) * 2
    hi = float(torch.rand(1, generator=gen)) * 5 + 0.1
    q.lo.data.fill_(lo)
    q.hi.data.fill_(hi)
    x = (torch.randn(3, 5, 7, 7, generator=gen) * 3).requires_grad_()
    g = torch.randn(3, 5, 7, 7, generator=gen)
    y = q(x)
    (y * g).sum().backward()
    lo32, hi32 = q.lo.detach().clamp(max=0.0), q.hi.detach().clamp(min=0.0)
    s32 = torch.clamp((hi32 - lo32) / q.qmax, min=1e-8)  # float32, as the module computes it
    z = float(torch.clamp(torch.round(-q.lo.detach() / s32), 0, q.qmax))
    ref = (torch.clamp(torch.round(x.detach() / s32) + z, 0, q.qmax) - z) * s32
    assert torch.equal(y.detach(), ref), f"seed {seed}"
    v = x.detach().double() / float(s32)
    inside = (v + z >= 0) & (v + z <= q.qmax)
    assert torch.equal(x.grad, g * inside), f"seed {seed}"
    ds = torch.where(inside, v.round() - v, (v + z).clamp(0, q.qmax) - z)
    gs = float((g.double() * ds).sum())
    # s = (hi - lo) / qmax: d/dhi = gs / qmax, d/dlo = -gs / qmax
    assert abs(float(q.hi.grad) - gs / q.qmax) <= 1e-3 * (1 + abs(gs / q.qmax)), f"seed {seed}"
    assert abs(float(q.lo.grad) + gs / q.qmax) <= 1e-3 * (1 + abs(gs / q.qmax)), f"seed {seed}"
