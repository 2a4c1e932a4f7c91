"""Darknet ops the contract has no op of its own for, lowered exactly:

* ``[route] groups=G group_id=g`` (YOLOv4-tiny's channel split): a fixed channel-selection 1x1
  conv tied to its input's quantization, so the float model equals darknet's, the codes pass
  through unchanged, and the reference, the torch integer mode and the emulator agree; a random
  artifact of such a cfg compiles with the split on the accelerator;
* ``activation=relu6``: relu whose quantized range has a ceiling of 6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from darknet_nets import random_bn

from models.darknet import Darknet, parse_cfg_text
from quant.calibrate import calibrate_activations
from quant.export import forward_int_codes, to_artifact
from quant.model import QuantDetector
from sim.darknet_net import random_artifact_from_cfg
from sim.reference import run_network
from sw.backends.emu import EmuBackend
from sw.compiler import compile_model
from sw.contract.config import DEFAULT_CONFIG
from sw.darknet.cfg import channel_selection
from sw.plan import PLStep

SEED = 7

# A YOLOv4-tiny CSP block at toy size: conv -> route groups (second half) -> conv -> conv ->
# concat of the two -> 1x1 conv -> concat with the block input -> head.
CSP_CFG = """
[net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=32
size=3
stride=2
pad=1
activation=leaky

[route]
layers=-1
groups=2
group_id=1

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[route]
layers=-1,-2

[convolutional]
batch_normalize=1
filters=32
size=1
stride=1
pad=1
activation=leaky

[route]
layers=-6,-1

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58
classes=2
num=3
"""


def _model() -> Darknet:
    torch.manual_seed(SEED)
    model = Darknet(parse_cfg_text(CSP_CFG))
    random_bn(model, SEED)
    return model.eval()


def test_channel_selection_weights() -> None:
    w = channel_selection(6, 3, 1)
    assert w.shape == (2, 6, 1, 1)
    assert np.array_equal(w[:, :, 0, 0], [[0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0]])
    with pytest.raises(ValueError, match="does not divide"):
        channel_selection(6, 4, 0)


def test_route_groups_float_equals_darknet() -> None:
    model = _model()
    qdet = QuantDetector(model)
    split = [n for n in qdet.nodes if n.name.startswith("route")]
    assert len(split) == 1 and split[0].op == "conv" and split[0].attrs["fixed"]
    # tied: the split's output is quantized as its input
    assert split[0].group == qdet.by_name[split[0].inputs[0]].group
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        want = model(x)
        got, _ = qdet.forward_real(x, quantize=False)
    for a, b in zip(want, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_route_groups_integers_agree_and_pass_codes_unchanged() -> None:
    qdet = QuantDetector(_model())
    calibrate_activations(
        qdet, [torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))]
    )
    art = to_artifact(qdet, 32, name="csp", classes=["a", "b"])
    codes = np.random.default_rng(SEED).integers(0, 256, (3, 32, 32)).astype(np.uint8)
    ref = run_network(art, codes, keep_all=True)
    mine = forward_int_codes(qdet, codes)
    for name, v in mine.items():
        assert np.array_equal(v, ref[name]), f"seed {SEED}: node {name} differs from sim.reference"
    split = next(n for n in art.nodes if n.name.startswith("route"))
    src = ref[split.inputs[0]]
    assert np.array_equal(ref[split.name], src[16:]), "the split must pass the codes unchanged"
    plan = compile_model(art, DEFAULT_CONFIG)
    on_pl = {name for s in plan.steps if isinstance(s, PLStep) for name in s.layers}
    assert split.name in on_pl, plan.steps
    with EmuBackend(plan) as be:
        got = be.run(codes)
    for name in got:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=f"seed {SEED}: {name}")


def test_random_artifact_of_a_cfg_with_route_groups(tmp_path) -> None:  # noqa: ANN001
    cfg = tmp_path / "csp.cfg"
    cfg.write_text(CSP_CFG)
    art = random_artifact_from_cfg(str(cfg), 32, seed=SEED)
    codes = np.random.default_rng(SEED).integers(0, 256, (3, 32, 32)).astype(np.uint8)
    ref = run_network(art, codes, keep_all=True)
    split = next(n for n in art.nodes if n.op == "conv" and n.attrs["kernel"] == 1
                 and n.inputs == ["l0"])  # fmt: skip
    assert np.array_equal(ref[split.name], ref["l0"][16:])
    with EmuBackend(compile_model(art, DEFAULT_CONFIG)) as be:
        got = be.run(codes)
    for name in got:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=f"seed {SEED}: {name}")


RELU6_CFG = """
[net]
width=16
height=16
channels=3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=relu6

[convolutional]
batch_normalize=1
filters=16
size=3
groups=16
stride=1
pad=1
activation=relu6

[convolutional]
size=1
stride=1
pad=1
filters=14
activation=linear

[yolo]
mask=0,1
anchors=10,14, 23,27
classes=2
num=2
"""


def test_relu6_is_relu_with_a_ceiling_of_6() -> None:
    """relu6 = relu whose quantized range stops at 6: the float model clamps at 6, the range
    cannot learn past it, and the artifact (activation relu) computes the same integers as the
    reference with its top code at most 6 (+ half a step)."""
    from quant.model import RELU6_MAX

    torch.manual_seed(SEED)
    model = Darknet(parse_cfg_text(RELU6_CFG)).eval()
    with torch.no_grad():
        for layer in model.conv_layers:  # large outputs, so that relu6 clips
            layer.conv.weight.mul_(20)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(SEED))
    qdet = QuantDetector(model)
    with torch.no_grad():
        _, kept = qdet.forward_real(x, quantize=False, keep={"conv0"})
    assert float(kept["conv0"].max()) == 6.0 and float(kept["conv0"].min()) == 0.0
    ceilings = {qdet.aq[qdet.by_name[f"conv{i}"].group].ceiling for i in (0, 1)}
    assert ceilings == {RELU6_MAX}
    calibrate_activations(qdet, [x])
    q = qdet.aq[qdet.by_name["conv0"].group]
    with torch.no_grad():
        q.hi.fill_(10.0)  # as training might push it: the ceiling holds
    zero, scale = q.params()
    assert scale * (q.qmax - zero) <= RELU6_MAX + scale / 2
    art = to_artifact(qdet, 16, name="r6", classes=["a", "b"])
    assert {n.attrs["activation"] for n in art.nodes if n.op == "conv"} == {"relu", "linear"}
    codes = np.random.default_rng(SEED).integers(0, 256, (3, 16, 16)).astype(np.uint8)
    ref = run_network(art, codes, keep_all=True)
    for name, v in forward_int_codes(qdet, codes).items():
        assert np.array_equal(v, ref[name]), f"seed {SEED}: node {name} differs from sim.reference"
    assert ref["conv0"].max() == q.qmax  # it does reach the ceiling


def test_relu6_sharing_a_quantizer_with_another_activation_is_refused() -> None:
    cfg = RELU6_CFG.replace(
        "[convolutional]\nsize=1", "[route]\nlayers=-1,-2\n\n[convolutional]\nsize=1", 1
    ).replace(
        "groups=16\nstride=1\npad=1\nactivation=relu6",
        "groups=16\nstride=1\npad=1\nactivation=relu",
    )
    with pytest.raises(ValueError, match=r"layer 0 \[convolutional\]: its relu6 output shares"):
        QuantDetector(Darknet(parse_cfg_text(cfg)))
