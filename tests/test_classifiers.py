"""The CIFAR-10 ResNets through the chain (models.classifiers, quant.classify): the import equals
akamaster's architecture, the option-A shortcut and the global average pool are exact, and the
exported artifact gives the same integers in the torch integer mode, sim.reference, the
emulator and the fast RTL runner. Seeds are fixed and printed in the messages."""

from __future__ import annotations

import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.classifiers.resnet_cifar import (
    CheckpointError,
    checkpoint_path,
    cifar_path,
    load_cifar,
    load_resnet,
    normalize,
)
from quant import classify
from quant.calibrate import calibrate_activations
from quant.integer import ArtifactNet, run_int_op
from sim.reference import ops, run_network
from sw import artifact as artmod
from sw import kernels
from sw.accel_config import DEFAULT_CONFIG
from sw.artifact import Artifact, ArtifactError, Node, Output, Quant
from sw.backends.emu import EmuBackend
from sw.compiler import compile_model

REPO = Path(__file__).resolve().parent.parent
SEED = 16
HAVE_DATA = checkpoint_path("resnet20").is_file() and cifar_path().is_file()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="CIFAR ResNet data not fetched (make data)")


# --- akamaster/pytorch_resnet_cifar10 resnet.py, as published (the reference architecture) ---


class _Lambda(nn.Module):
    def __init__(self, fn):  # type: ignore[no-untyped-def]
        super().__init__()
        self.fn = fn

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fn(x)


class _Block(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = _Lambda(
                lambda x: F.pad(
                    x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0
                )  # fmt: skip
            )

    def forward(self, x):  # type: ignore[no-untyped-def]
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _ResNet(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make(16, n, 1)
        self.layer2 = self._make(32, n, 2)
        self.layer3 = self._make(64, n, 2)
        self.linear = nn.Linear(64, 10)

    def _make(self, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(_Block(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):  # type: ignore[no-untyped-def]
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3]).view(out.size(0), -1)
        return self.linear(out)


# --- fixtures


@pytest.fixture(scope="module")
def r20():  # type: ignore[no-untyped-def]
    if not HAVE_DATA:
        pytest.skip("CIFAR ResNet data not fetched (make data)")
    torch.set_num_threads(1)
    return load_resnet("resnet20")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    if not HAVE_DATA:
        pytest.skip("CIFAR ResNet data not fetched (make data)")
    x, _ = load_cifar("report")
    return x[:: len(x) // 8][:8]


@pytest.fixture(scope="module")
def ptq_artifact(r20) -> Artifact:  # type: ignore[no-untyped-def]
    """W4A8 PTQ calibrated on 40 training-split images: a real network's constants."""
    q = classify.build_quant(r20)
    train, _ = load_cifar("train")
    classify.calibrate(q, classify.RealBatches(train, SEED), 40)
    return classify.export_artifact(q, "resnet20", "w4a8-test", {})


# --- import


@needs_data
def test_import_equals_reference_architecture(r20) -> None:  # type: ignore[no-untyped-def]
    """Our module and its lowered graph (BN folded, option A as a 1x1 conv, avgpool, the
    linear as a 1x1 conv) both equal akamaster's architecture loaded with the same weights."""
    ck = torch.load(checkpoint_path("resnet20"), map_location="cpu", weights_only=True)
    ref = _ResNet(3)
    ref.load_state_dict({k.removeprefix("module."): v for k, v in ck["state_dict"].items()})
    ref.eval()
    x, _ = load_cifar("report")
    xn = normalize(x[:16])
    with torch.no_grad():
        want = ref(xn)
        # same weights, same ops; only the pooling kernel's summation order may differ
        np.testing.assert_allclose(r20(xn).numpy(), want.numpy(), rtol=0, atol=1e-5)
        lowered = classify.teacher_of(r20)
        got = classify.logits_real(lowered, xn, False)
    assert float((got - want).abs().max()) < 1e-3, "folded graph differs from the reference"
    assert (got.argmax(1) == want.argmax(1)).all()


def test_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    """A state dict saved the akamaster way loads; the loader passes weights_only (a pickled
    object that weights_only refuses is refused)."""
    net = _ResNet(3)
    good = tmp_path / "good.th"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()
                               if "num_batches" not in k}, "best_prec1": 1.0}, good)  # fmt: skip
    loaded = load_resnet("resnet20", good)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), net.eval()(x).numpy(), rtol=0, atol=1e-5)


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("ran code from a checkpoint",))


@pytest.mark.parametrize("case", ["pickle", "garbage", "missing", "shape", "absent"])
def test_bad_checkpoint_is_one_line(tmp_path: Path, case: str, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.th"
    net = _ResNet(3)
    sd = {k: v for k, v in net.state_dict().items() if "num_batches" not in k}
    if case == "pickle":
        bad.write_bytes(pickle.dumps({"state_dict": _Evil()}))
        expect = "not a checkpoint that loads with weights_only"
    elif case == "garbage":
        bad.write_bytes(b"\x00not a torch file" * 10)
        expect = "not a checkpoint that loads with weights_only"
    elif case == "missing":
        sd.pop("linear.bias")
        torch.save({"state_dict": sd}, bad)
        expect = "not a resnet20 checkpoint (missing 'linear.bias')"
    elif case == "shape":
        sd["linear.weight"] = torch.zeros(10, 32)
        torch.save({"state_dict": sd}, bad)
        expect = "linear.weight has shape [10, 32]"
    else:
        bad = tmp_path / "nothing.th"
        expect = "no such checkpoint"
    with pytest.raises(CheckpointError) as e:
        load_resnet("resnet20", bad)
    msg = str(e.value)
    assert expect in msg and "\n" not in msg and str(bad) in msg, msg
    assert "ran code" not in capsys.readouterr().out
    # the command line: one line on stderr, exit status 2
    assert classify.main(["float", "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and expect in err, err


# --- the two new exact pieces


@needs_data
def test_option_a_shortcut_is_exact(ptq_artifact: Artifact, images: np.ndarray) -> None:
    """The shortcut conv's codes are its input's codes at even rows and columns, with
    ``planes // 4`` channels of the zero code either side: no rounding anywhere."""
    shorts = [n for n in ptq_artifact.nodes if n.name.endswith("short")]
    assert len(shorts) == 2
    codes = classify.codes_of(images[:2])
    for img in codes:
        vals = run_network(ptq_artifact, img, keep_all=True)
        for n in shorts:
            src = vals[n.inputs[0]]
            q = ptq_artifact.quant_of(n.inputs[0])
            assert n.quant.same_as(q), "the shortcut's output quantization must be its input's"
            pad = (n.attrs["out_channels"] - src.shape[0]) // 2
            want = np.pad(src[:, ::2, ::2], ((pad, pad), (0, 0), (0, 0)), constant_values=q.zero)
            np.testing.assert_array_equal(vals[n.name], want, err_msg=n.name)
        # and the real network's values reach the clamps (it is not exact by accident of range)
        assert any(vals[n.inputs[0]].max() == 255 or vals[n.inputs[0]].min() == 0 for n in shorts)


def _avg_node(m: int, s: int, q_in: Quant, q_out: Quant, c: int, h: int, w: int) -> Artifact:
    node = Node("pool", "avgpool", ["x"], {"multiplier": m, "shift": s}, q_out)
    return Artifact("t", "x", (c, h, w), q_in, [node], [Output("pool", "raw")])


def _three_avgpools(x: np.ndarray, z_in: int, m: int, s: int, q_out: Quant) -> list[np.ndarray]:
    ref = ops.avgpool(x, z_in, m, s, q_out.zero, q_out.bits)
    emu = kernels.avgpool(x, z_in, m, s, q_out.zero, q_out.bits)
    p = {"multiplier": m, "shift": s, "z_in": z_in, "q_out": q_out}
    t = run_int_op("avgpool", {}, [torch.from_numpy(x[None].astype(np.float64))], p)
    return [ref, emu, t[0].numpy().astype(np.uint8)]


@pytest.mark.parametrize("shift", [1, 2, 7, 20, 33])
def test_avgpool_ties_round_half_up(shift: int) -> None:
    """Directed ties of sum * M at the shift, both signs: all three implementations round them
    half up (an exact-rational oracle), the other cases to nearest."""
    rng = np.random.default_rng(SEED + shift)
    z_in, h, w = 100, 4, 4
    q_out = Quant(8, 128, 0.1)
    m = 3  # odd, so sum * M is a tie exactly when the sum is an odd multiple of 2^(S-1)
    half = 1 << (shift - 1)
    sums = []
    for sign in (1, -1):
        k = 1
        while abs(k * half) * m < 1 << shift and (1 << shift) < 2000 * 16:
            k += 2
        sums.append(sign * (k * half) if abs(k * half) <= 155 * h * w else sign * half)
    sums += [int(v) for v in rng.integers(-1500, 1500, 6)]
    for total in sums:
        x = np.full((1, h, w), z_in, np.int64)
        flat = x.reshape(-1)
        rest = total
        for i in range(h * w):  # spread the sum over the map within the code range
            d = int(np.clip(rest, -z_in, 255 - z_in))
            flat[i] += d
            rest -= d
        if rest:
            continue
        x = x.astype(np.uint8)
        exact = Fraction(total * m, 1 << shift)
        want = int(np.clip(q_out.zero + int((exact + Fraction(1, 2)).__floor__()), 0, 255))
        got = _three_avgpools(x, z_in, m, shift, q_out)
        for name, g in zip(["reference", "emulator", "torch integer"], got, strict=True):
            assert int(g[0, 0, 0]) == want, (
                f"{name}: sum {total} * {m} >> {shift} -> {int(g[0, 0, 0])}, want {want} "
                f"(seed {SEED + shift})"
            )
    tie = Fraction(half * m if m % 2 else half, 1 << shift)
    assert tie.denominator <= 2  # at least one directed tie was built


def test_avgpool_random_maps_agree_and_loader_bounds() -> None:
    rng = np.random.default_rng(SEED)
    for _ in range(20):
        c, h, w = (int(v) for v in rng.integers(1, 9, 3))
        z_in = int(rng.integers(0, 256))
        m, s = int(rng.integers(1, 65536)), int(rng.integers(0, 30))
        q_out = Quant(int(rng.choice([4, 8])), int(rng.integers(0, 16)), 0.5)
        x = rng.integers(0, 256, (c, h, w)).astype(np.uint8)
        ref, emu, tor = _three_avgpools(x, z_in, m, s, q_out)
        np.testing.assert_array_equal(emu, ref, err_msg=f"seed {SEED}")
        np.testing.assert_array_equal(tor, ref, err_msg=f"seed {SEED}")
        assert ref.shape == (c, 1, 1)
    q = Quant(8, 0, 1.0)
    artmod.validate(_avg_node(65535, 20, q, q, 1, 2048, 2048))  # 255 * 2^22 < 2^31
    with pytest.raises(ArtifactError, match="sum over a 3000x3000 map can reach"):
        artmod.validate(_avg_node(65535, 20, q, q, 1, 3000, 3000))
    with pytest.raises(ArtifactError, match="multiplier = 70000 is out of range"):
        artmod.validate(_avg_node(70000, 20, q, q, 4, 8, 8))


def test_avgpool_artifact_is_version_4_and_older_versions_refuse_it(tmp_path: Path) -> None:
    q = Quant(8, 3, 0.25)
    art = _avg_node(40000, 21, q, Quant(8, 5, 0.5), 3, 8, 8)
    path = tmp_path / "a.npz"
    artmod.save(art, path)
    header, arrays = artmod.read_members(path)
    assert header["version"] == 4 == artmod.version_for(art.nodes)
    assert artmod.load(path).nodes[0].attrs == {"multiplier": 40000, "shift": 21}
    old = tmp_path / "old.npz"
    old.write_bytes(artmod.pack({**header, "version": 3}, arrays))
    with pytest.raises(ArtifactError, match="version 3 file holds an avgpool node"):
        artmod.load(old)


# --- the whole network on the implementations


@needs_data
def test_integer_mode_equals_reference_and_emulator(ptq_artifact: Artifact, images: np.ndarray
                                                    ) -> None:  # fmt: skip
    codes = classify.codes_of(images[:3])
    torch_out = ArtifactNet(ptq_artifact)(torch.from_numpy(codes.astype(np.float64)))[0]
    plan = compile_model(ptq_artifact, DEFAULT_CONFIG)
    engines = {li.name: li.engine for li in plan.layers}
    assert engines["pool"] == "CPU"
    assert all(engines[n.name] == "PL" for n in ptq_artifact.nodes if n.op in ("conv", "add"))
    with EmuBackend(plan) as be:
        for i, img in enumerate(codes):
            want = run_network(ptq_artifact, img)["fc"]
            np.testing.assert_array_equal(torch_out[i].numpy().astype(np.uint8), want)
            np.testing.assert_array_equal(be.run(img)["fc"], want, err_msg=f"image {i}")
            assert want.shape == (10, 1, 1) and len(np.unique(want)) > 3


COMMITTED = sorted((REPO / "models" / "artifacts").glob("resnet*-cifar10-*.npz"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_committed_artifacts_load_and_run_on_emu(path: Path) -> None:
    art = artmod.load(path)
    rng = np.random.default_rng(SEED)
    img = rng.integers(0, 256, art.input_shape).astype(np.uint8)
    plan = compile_model(art, DEFAULT_CONFIG)
    with EmuBackend(plan) as be:
        np.testing.assert_array_equal(be.run(img)["fc"], run_network(art, img)["fc"])


def _mini_resnet_artifact() -> tuple[Artifact, np.ndarray]:
    """A ResNet-8 (one block a stage: both option-A shortcuts, pool, linear) with seeded random
    weights and BN statistics at 16x16, calibrated on seeded random images: a whole classifier
    small enough for the RTL in the default suite."""
    from models.classifiers.resnet_cifar import ResNetCifar

    torch.manual_seed(SEED)
    net = ResNetCifar(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    net.eval()
    q = classify.build_quant(net, size=16)
    rng = np.random.default_rng(SEED)
    imgs = rng.integers(0, 256, (12, 16, 16, 3)).astype(np.uint8)
    calibrate_activations(q, [classify.real_of(classify.codes_of(imgs[:8]))])
    return classify.export_artifact(q, "resnet8", "test", {}, size=16), imgs[8:]


@pytest.mark.timeout(1800)  # the first call may build the Verilator model
def test_fast_rtl_mini_classifier_bit_exact() -> None:
    """Default suite: every layer kind of the ResNets (3x3 convs, stride-2 option-A shortcut
    convs, relu adds, the linear 1x1 conv on the PL; the pool on the CPU) on the RTL under the
    board's driver, equal to sim.reference and the emulator."""
    fast_rtl = pytest.importorskip("sim.fast_rtl")
    art, imgs = _mini_resnet_artifact()
    assert art.shapes()["pool"] == (64, 1, 1)
    plan = compile_model(art, DEFAULT_CONFIG)
    codes = classify.codes_of(imgs[:2])
    with fast_rtl.FastRtlBackend(plan) as be, EmuBackend(plan) as emu:
        for i, img in enumerate(codes):
            want = run_network(art, img)["fc"]
            assert len(np.unique(want)) > 2, "a degenerate output would hide errors"
            np.testing.assert_array_equal(be.run(img)["fc"], want, err_msg=f"RTL image {i}")
            np.testing.assert_array_equal(emu.run(img)["fc"], want, err_msg=f"emu image {i}")


@needs_data
@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first call may build the Verilator model
def test_fast_rtl_bit_exact(ptq_artifact: Artifact, images: np.ndarray) -> None:
    """The whole ResNet-20 on the RTL (convs, adds, shortcut convs and the linear layer on the
    PL; the pool on the CPU) under the board's driver: equal to sim.reference."""
    fast_rtl = pytest.importorskip("sim.fast_rtl")
    plan = compile_model(ptq_artifact, DEFAULT_CONFIG)
    codes = classify.codes_of(images[:2])
    with fast_rtl.FastRtlBackend(plan) as be:
        for i, img in enumerate(codes):
            got = be.run(img)["fc"]
            np.testing.assert_array_equal(got, run_network(ptq_artifact, img)["fc"],
                                          err_msg=f"image {i}")  # fmt: skip
