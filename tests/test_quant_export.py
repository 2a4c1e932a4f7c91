"""QuantDetector integer mode == sim.reference on real images, node by node; export round trip.

All three VOC detectors at 64x64 (fast), with a real letterboxed image, after a short activation
calibration; plus a tiny random cfg that covers what the real ones do not (relu shortcut,
maxpools with asymmetric padding, concat of an upsample and a maxpool).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from darknet_nets import random_bn

from models.darknet import Darknet, parse_cfg_text
from models.paths import data_dir
from quant.calibrate import calibrate_activations
from quant.data import letterbox_batch, letterbox_codes, unlabeled_images
from quant.export import export, forward_int_codes, to_artifact
from quant.integer import detector_from_artifact
from quant.model import LayerFormat, QuantDetector
from quant.zoo import load_darknet, voc_names
from sim.reference.network import run_network
from sw import artifact as artmod

# one thread: the CI machine is shared and torch's thread pool thrashes under contention
torch.set_num_threads(1)

MODELS = ("yolo-fastest-voc", "yolo-fastest-xl-voc", "mobilenetv2-yolov3-nano-voc")
SIZE = 64
WEIGHTS = data_dir() / "weights" / "darknet"
needs_data = pytest.mark.skipif(
    not (WEIGHTS / "yolo-fastest-voc.weights").is_file()
    or not (data_dir() / "unlabeled" / "imagenet-1k-sample").is_dir(),
    reason="darknet weights / unlabeled images not found (run make data)",
)

# tests/data/tiny.cfg with its shortcut's leaky activation made relu: the contract's add applies
# linear or relu only.
TINY_CFG = (
    (Path(__file__).parent / "data" / "tiny.cfg")
    .read_text()
    .replace("from=-3\nactivation=leaky", "from=-3\nactivation=relu", 1)
)
assert "from=-3\nactivation=relu" in TINY_CFG


def _compare(qdet: QuantDetector, art: artmod.Artifact, codes: np.ndarray) -> None:
    ref = run_network(art, codes, keep_all=True)
    mine = forward_int_codes(qdet, codes)
    assert set(mine) == set(ref) - {art.input_name}
    for name, v in mine.items():
        assert np.array_equal(v, ref[name]), f"node {name} differs from sim.reference"
    net = detector_from_artifact(art)
    outs = net(torch.from_numpy(codes.astype(np.float64))[None])
    for o, t in zip(net.outputs, outs, strict=True):
        assert np.array_equal(t[0].numpy().astype(np.uint8), ref[o])


@pytest.mark.parametrize("dense", [("pow2", 4), ("pow2x2", 8)])
def test_tiny_graph_integer_equals_reference(dense: tuple[str, int], tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Darknet(parse_cfg_text(TINY_CFG))
    random_bn(model)
    qdet = QuantDetector(model, LayerFormat(dense, ("int", 8)))
    # the concat ties the upsample's producer and the maxpool's producer into one group
    cat = next(n for n in qdet.nodes if n.op == "concat")
    groups = {qdet.by_name[s].group for s in cat.inputs}
    assert len(groups) == 1
    x = torch.rand(4, 3, 64, 64)
    calibrate_activations(qdet, [x])
    art = export(qdet, tmp_path / "tiny.npz", 64, name="tiny", classes=list("abcd"))
    art2 = artmod.load(tmp_path / "tiny.npz")
    codes = (torch.rand(3, 64, 64) * 255).round().numpy().astype(np.uint8)
    _compare(qdet, art2, codes)
    assert [n.op for n in art.nodes].count("maxpool") == 3
    dense_fmts = {
        n.attrs["weight_format"] for n in art2.nodes if n.op == "conv" and n.attrs["groups"] == 1
    }
    assert dense_fmts == {dense[0]}


@needs_data
def test_mixed_plan_integer_equals_reference(tmp_path: Path) -> None:
    """A quant.mixed plan (pow2 4-bit, pow2x2 and int8 convs side by side, per-layer activation
    bits) exports, loads as version 3, and its integers equal sim.reference node by node."""
    from quant.zoo import build

    plan = Path(__file__).parents[1] / "plans" / "yolo-fastest-voc-w4a8-mixed.json"
    _, qdet = build("yolo-fastest-voc", dw_format="int8", plan=plan)
    imgs = unlabeled_images()
    calibrate_activations(qdet, [letterbox_batch(imgs[:3], SIZE)], per_tensor=20_000)
    path = tmp_path / "m.npz"
    export(qdet, path, SIZE, name="mixed", classes=voc_names())
    art = artmod.load(path)
    assert artmod.read_members(path)[0]["version"] == 3
    fmts = {(n.attrs["weight_format"], n.attrs["weight_bits"]) for n in art.nodes if n.op == "conv"}
    assert {("pow2", 4), ("pow2x2", 8), ("int", 8)} <= fmts
    _compare(qdet, art, letterbox_codes(imgs[500], SIZE))


@needs_data
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("dw", ["pow2", "int8"])
def test_real_models_integer_equals_reference(model: str, dw: str, tmp_path: Path) -> None:
    net = load_darknet(model)
    dwf = ("pow2", 4) if dw == "pow2" else ("int", 8)
    qdet = QuantDetector(net, LayerFormat(("pow2", 4), dwf))
    imgs = unlabeled_images()
    calibrate_activations(qdet, [letterbox_batch(imgs[:3], SIZE)], per_tensor=20_000)
    path = tmp_path / "m.npz"
    export(qdet, path, SIZE, name=model, classes=voc_names(), metadata={"test": True})
    art = artmod.load(path)  # the file loads and validates
    assert art.metadata == {"test": True}
    assert len(art.outputs) == 2 and all(o.kind == "yolo" for o in art.outputs)
    for n in art.nodes:
        if n.op == "conv":
            want = "int" if (dw == "int8" and n.attrs["groups"] > 1) else "pow2"
            assert n.attrs["weight_format"] == want
            assert n.attrs["weight_bits"] == (8 if want == "int" else 4)
    _compare(qdet, art, letterbox_codes(imgs[500], SIZE))


@needs_data
def test_fake_quant_tracks_integer_mode() -> None:
    """Fake quant differs from the integers only by bias / multiplier rounding: the heads
    agree to a few LSB (exact agreement is not expected)."""
    net = load_darknet("yolo-fastest-voc")
    qdet = QuantDetector(net, LayerFormat(("pow2", 4), ("int", 8)))
    imgs = unlabeled_images()
    calibrate_activations(qdet, [letterbox_batch(imgs[:3], SIZE)], per_tensor=20_000)
    codes = letterbox_codes(imgs[7], SIZE)
    ints = forward_int_codes(qdet, codes)
    qdet.mode = "fake"
    with torch.no_grad():
        fake = qdet(torch.from_numpy(codes[None].astype(np.float32) / 255))
    for h, f in zip(qdet.heads, fake, strict=True):
        q = qdet.quant_of(h)
        real = q.scale * (ints[h].astype(np.float64) - q.zero)
        err = np.abs(real - f[0].numpy())
        assert np.median(err) <= 1.01 * q.scale
        assert np.mean(err) <= 2 * q.scale


@needs_data
def test_float_mode_equals_darknet() -> None:
    net = load_darknet("yolo-fastest-xl-voc")
    qdet = QuantDetector(net)
    x = letterbox_batch(unlabeled_images()[:2], 96)
    with torch.no_grad():
        a = net(x)
        b, _ = qdet.forward_real(x, quantize=False)
    for u, v in zip(a, b, strict=True):
        assert torch.allclose(u, v, atol=1e-3 * float(u.abs().max()))


def test_to_artifact_respects_size() -> None:
    torch.manual_seed(0)
    model = Darknet(parse_cfg_text(TINY_CFG))
    qdet = QuantDetector(model)
    calibrate_activations(qdet, [torch.rand(2, 3, 64, 64)])
    art = to_artifact(qdet, 128, name="t", classes=list("abcd"))
    assert art.input_shape == (3, 128, 128)
    assert art.shapes()[art.outputs[0].node] == (18, 64, 64)


@needs_data
def test_equalization_preserves_the_float_function() -> None:
    from quant.equalize import equalize_depthwise

    net = load_darknet("yolo-fastest-xl-voc")
    qdet = QuantDetector(net)
    x = letterbox_batch(unlabeled_images()[:1], 64)
    with torch.no_grad():
        before, _ = qdet.forward_real(x, quantize=False)
        assert equalize_depthwise(qdet) > 10
        after, _ = qdet.forward_real(x, quantize=False)
    for u, v in zip(before, after, strict=True):
        assert torch.allclose(u, v, atol=1e-3 * float(u.abs().max()))
