"""Two-term power-of-two weights (pow2x2, docs/arithmetic.md section 3.4) in every layer of the
contract: the code table, the PyTorch quantizer, the DDR layout of the two term blocks, the
cycle model, the artifact version. Emulator == sim.reference on random networks whose dense
convs are all pow2x2 are in tests/test_sw_compiler_emu.py, on the RTL in sim/test_accel.py.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from quant.quantizers import max_level, quantize_integer
from sim.reference.network import run_network
from sim.reference.randnet import random_conv, random_network
from sw import artifact as artmod
from sw.accel_config import DEFAULT_CONFIG
from sw.backends.emu import EmuBackend
from sw.compiler import compile_model, dense_weight_blocks
from sw.contract import cycles
from sw.contract.codes import (
    CodeError,
    decode_codes,
    encode_codes,
    invalid_codes,
    pow2_max_exponent,
    pow2x2_values,
)
from sw.contract.descriptor import DENSE_WEIGHTS, DEPTHWISE_WEIGHTS
from sw.contract.layout import dense_weight_order, join_terms, split_terms

E_MAX = pow2_max_exponent(4)  # each term is a 4-bit pow2 code: 2^0 .. 2^6
ALL_CODES = np.arange(256)


def brute_force_values() -> set[int]:
    """0, one term, or two terms of different exponents (2^a + 2^a is one term, or 128, which
    the 4-bit terms leave out)."""
    terms = [(0, -1)] + [(s * (1 << e), e) for s in (1, -1) for e in range(E_MAX + 1)]
    return {a + b for (a, ea), (b, eb) in itertools.product(terms, terms) if ea != eb or ea < 0}


def test_value_set_is_every_sum_of_two_terms() -> None:
    v = pow2x2_values()
    assert set(v.tolist()) == brute_force_values()
    assert len(v) == 77 and v[-1] == 96 and v[0] == -96
    assert np.all(np.diff(v) > 0) and np.array_equal(v, -v[::-1])
    assert max_level("pow2x2", 8) == 96.0


def test_each_value_has_exactly_one_code() -> None:
    ok = ~invalid_codes(ALL_CODES, "pow2x2", 8)
    vals = decode_codes(ALL_CODES[ok], "pow2x2", 8)
    assert len(vals) == len(set(vals.tolist())) == 77, "two canonical codes share a value"
    assert np.array_equal(encode_codes(vals, "pow2x2", 8), ALL_CODES[ok])


@pytest.mark.parametrize(
    ("code", "why"),
    [
        (0x10, "second term without a first"),
        (0x22, "equal exponents (2 + 2 is the one term 4)"),
        (0x32, "exponents increasing"),
        (0xA3, "opposite signs one octave apart (4 - 2 = 2)"),
        (0xA4, "opposite signs two octaves apart (8 - 2 = 4 + 2)"),
        (0x08, "negative zero first term"),
        (0x81, "negative zero second term"),
    ],
)
def test_non_canonical_codes_are_invalid(code: int, why: str) -> None:
    assert invalid_codes(np.array([code]), "pow2x2", 8)[0], why


def test_canonical_edge_codes() -> None:
    # 8 - 1 (opposite signs three octaves apart) is canonical, and so is 64 + 32 = 96.
    c = encode_codes(np.array([7, 96, -96, 0, 1, -1, 3]), "pow2x2", 8)
    assert not invalid_codes(c, "pow2x2", 8).any()
    assert decode_codes(c, "pow2x2", 8).tolist() == [7, 96, -96, 0, 1, -1, 3]
    assert c[0] == (0x4 | (0x9 << 4))  # first term +2^3 (m = 4), second -2^0 (sign | m = 1)
    with pytest.raises(CodeError):
        encode_codes(np.array([11]), "pow2x2", 8)  # 8 + 2 + 1 needs three terms
    with pytest.raises(CodeError):
        encode_codes(np.array([3]), "pow2x2", 4)


def test_quantizer_rounds_to_the_nearest_value_ties_toward_zero() -> None:
    vals = pow2x2_values().astype(np.float64)
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-120, 120, 4000), (vals[1:] + vals[:-1]) / 2, vals])
    got = quantize_integer(torch.from_numpy(x), "pow2x2", 8).numpy()
    d = np.abs(x[:, None] - vals[None, :])
    best = d.min(axis=1, keepdims=True)
    # among the nearest values (two at a tie), the one of smaller magnitude
    cand = np.where(d == best, np.abs(vals)[None, :], np.inf)
    want = vals[np.argmin(cand, axis=1)]
    assert np.array_equal(got, want), "seed 7: not the nearest value (ties toward zero)"
    mid = np.array([1.5, -1.5, 88.0, -88.0, 11.0, 0.5])  # ties: 1|2, 80|96, 10|12, 0|1
    got = quantize_integer(torch.from_numpy(mid), "pow2x2", 8).tolist()
    assert got == [1, -1, 80, -80, 10, 0]
    assert quantize_integer(torch.tensor([500.0, -500.0]), "pow2x2", 8).tolist() == [96, -96]


def test_two_term_blocks_in_ddr_order() -> None:
    rng = np.random.default_rng(3)
    v = rng.choice(pow2x2_values(), size=(20, 13, 3, 3))
    codes = encode_codes(v, "pow2x2", 8)
    order = dense_weight_order(codes, 8, 16)
    split = split_terms(order)
    assert split.shape == (*order.shape[:4], 2, *order.shape[4:])
    assert np.array_equal(split[..., 0, :, :], order & 0xF)  # the first term's block first
    assert np.array_equal(join_terms(split), order)
    cfg = DEFAULT_CONFIG
    assert dense_weight_blocks(13, 20, 3, cfg, terms=2) == 2 * dense_weight_blocks(13, 20, 3, cfg)


def test_formats_of_the_engines() -> None:
    assert ("pow2x2", 8) in DENSE_WEIGHTS
    assert all(f != "pow2x2" for f, _ in DEPTHWISE_WEIGHTS)  # no second shifter there
    assert artmod.WEIGHT_BITS["pow2x2"] == (8,)


def _descriptor_of(fmt: str, bits: int) -> dict[str, int]:
    rng = np.random.default_rng(5)
    art = random_network(rng, 16, 16, dense_format=fmt)
    plan = compile_model(art, DEFAULT_CONFIG)
    d = next(d for d in plan.descriptors if d.op == 1 and d.kernel == 1 and d.in_channels > 3)
    return d.as_dict()


def test_cycle_model_counts_two_passes() -> None:
    base = dict(_descriptor_of("pow2", 4))
    x2 = dict(base, weight_format=3, weight_bits=8)
    cfg = DEFAULT_CONFIG
    one, two = cycles.layer_cycles(base, cfg), cycles.layer_cycles(x2, cfg)
    assert two.dense == 2 * one.dense and two.macs == one.macs
    assert two.peak_macs == 2 * one.peak_macs


def test_artifact_version_follows_the_formats(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(9)
    plain, x2 = random_network(rng, 16, 12), random_network(rng, 16, 12, dense_format="pow2x2")
    assert artmod.version_for(plain.nodes) == 2 and artmod.version_for(x2.nodes) == 3
    for art, v in ((plain, 2), (x2, 3)):
        p = tmp_path / f"v{v}.npz"
        artmod.save(art, p)
        header, _ = artmod.read_members(p)
        assert header["version"] == v
        assert artmod.load(p).nodes[2].attrs == art.nodes[2].attrs


def test_extreme_weights_saturate_nothing() -> None:
    """Every weight at +-96 on a wide 3x3 conv: the accumulator bound still holds exactly."""
    rng = np.random.default_rng(11)
    from sw.artifact import Artifact, Output, Quant

    inq = Quant(8, 0, float(np.float32(1 / 255)))
    n = random_conv(rng, "c0", "image", (40, 6, 7), inq, out_channels=9, kernel=3,
                    weight_format="pow2x2", weight_bits=8)  # fmt: skip
    t = dict(n.tensors)
    t["codes"] = encode_codes(np.where(rng.random(t["codes"].shape) < 0.5, 96, -96), "pow2x2", 8)
    n = artmod.Node(n.name, n.op, n.inputs, n.attrs, n.quant, t)
    art = Artifact("x96", "image", (40, 6, 7), inq, [n], [Output("c0")])
    plan = compile_model(art, DEFAULT_CONFIG)
    with EmuBackend(plan) as be:
        img = rng.integers(0, 256, (40, 6, 7)).astype(np.uint8)
        assert np.array_equal(be.run(img)["c0"], run_network(art, img)["c0"])


def test_committed_mixed_models_on_the_emulator() -> None:
    """Every committed mixed-precision model (models/artifacts/*-mixed-*.npz) compiles for the
    Ultra96-V2 build with every conv on the accelerator, and the emulator equals the reference
    (at 64x64: the constants are size-independent)."""
    from pathlib import Path

    from deploy.boards import load_all

    arts = sorted((Path(__file__).parents[1] / "models" / "artifacts").glob("*-mixed-*.npz"))
    if not arts:
        pytest.skip("no mixed-precision artifact committed")
    cfg = load_all()["ultra96v2"].accel
    rng = np.random.default_rng(13)
    for p in arts:
        art = artmod.with_input_size(artmod.load(p), 64, 64)
        plan = compile_model(art, cfg)  # raises if a conv does not fit the build
        assert any(n.attrs.get("weight_format") == "pow2x2" for n in art.nodes), p.name
        with EmuBackend(plan) as be:
            img = rng.integers(0, 256, art.input_shape).astype(np.uint8)
            want, got = run_network(art, img), be.run(img)
            for name in want:
                assert np.array_equal(got[name], want[name]), f"{p.name}: {name} (seed 13)"
