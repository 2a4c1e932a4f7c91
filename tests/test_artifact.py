"""The model artifact: round trips, and one clear line for every kind of invalid file."""

from __future__ import annotations

import copy
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sim.reference import run_network
from sim.reference.randnet import random_network
from sw import artifact
from sw.artifact import Artifact, ArtifactError, Quant


@pytest.fixture
def net() -> Artifact:
    return random_network(np.random.default_rng(7))


def test_round_trip_is_identical(net: Artifact, tmp_path: Path) -> None:
    path = artifact.save(net, tmp_path / "m.npz")
    back = artifact.load(path)
    assert back.name == net.name and back.classes == net.classes
    assert back.input_shape == net.input_shape and back.input_quant == net.input_quant
    assert [o.__dict__ for o in back.outputs] == [o.__dict__ for o in net.outputs]
    assert back.metadata == net.metadata
    for a, b in zip(net.nodes, back.nodes, strict=True):
        assert (a.name, a.op, a.inputs, a.attrs) == (b.name, b.op, b.inputs, b.attrs)
        assert a.quant.same_as(b.quant)
        assert a.tensors.keys() == b.tensors.keys()
        for role in a.tensors:
            assert a.tensors[role].dtype == b.tensors[role].dtype
            np.testing.assert_array_equal(a.tensors[role], b.tensors[role])
    img = np.random.default_rng(0).integers(0, 256, net.input_shape).astype(np.uint8)
    for k, v in run_network(net, img).items():
        np.testing.assert_array_equal(run_network(back, img)[k], v)
    # Saving the loaded artifact again gives the same bytes for every tensor (stable format).
    again = artifact.load(artifact.save(back, tmp_path / "again.npz"))
    assert [n.name for n in again.nodes] == [n.name for n in net.nodes]


def test_saved_file_is_readable_by_others(net: Artifact, tmp_path: Path) -> None:
    path = artifact.save(net, tmp_path / "m.npz")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_load_needs_no_pickle(net: Artifact, tmp_path: Path) -> None:
    path = artifact.save(net, tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as z:
        assert "__header__" in z.files
        header = json.loads(z["__header__"].tobytes())
    assert header["format"] == "pow2det.artifact" and header["version"] == 1


def one_line(err: pytest.ExceptionInfo[ArtifactError]) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


# --- invalid files --------------------------------------------------------------------------


def rewrite(path: Path, edit: Callable[[dict, dict], None]) -> None:
    """Rewrite an artifact's header and arrays with ``edit(header, arrays)``, as a bad writer."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop("__header__").tobytes())
    edit(header, arrays)
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, **arrays)


@pytest.fixture
def saved(net: Artifact, tmp_path: Path) -> Path:
    return artifact.save(net, tmp_path / "m.npz")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as e:
        artifact.load(tmp_path / "nope.npz")
    assert "no such artifact file" in one_line(e)


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9, 0.999])
def test_truncated_file(saved: Path, keep: float) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    msg = one_line(e)
    assert str(saved) in msg and ("truncated" in msg or "SHA-256" in msg)


def test_not_a_zip(tmp_path: Path) -> None:
    p = tmp_path / "x.npz"
    p.write_text("hello")
    with pytest.raises(ArtifactError) as e:
        artifact.load(p)
    assert "truncated or not an artifact" in one_line(e)


def test_flipped_byte_in_a_tensor(saved: Path, tmp_path: Path) -> None:
    # Rewrite uncompressed so one byte of tensor data can be flipped in place; the zip CRC or
    # the tensor's SHA-256 must catch it.
    rewrite(saved, lambda h, a: None)
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo("conv0.codes.npy")
    pos = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[pos] ^= 0x01
    saved.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    assert "SHA-256" in one_line(e) or "truncated" in str(e.value) or "CRC" in str(e.value)


def test_no_header(saved: Path) -> None:
    with np.load(saved) as z:
        arrays = {k: z[k] for k in z.files if k != "__header__"}
    np.savez(saved, **arrays)
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    assert "no header" in one_line(e)


def test_header_not_json(saved: Path) -> None:
    with np.load(saved) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["__header__"] = np.frombuffer(b"{not json", np.uint8)
    np.savez(saved, **arrays)
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    assert "not valid JSON" in one_line(e)


HEADER_EDITS: list[tuple[str, Callable[[dict, dict], None], str]] = [
    ("wrong version", lambda h, a: h.update(version=2), "version 2 is not supported"),
    ("other format", lambda h, a: h.update(format="onnx"), "not a pow2det.artifact"),
    ("missing tensor", lambda h, a: a.pop("pw3.bias"), "'pw3.bias' is listed but missing"),
    (
        "tensor of another shape",
        lambda h, a: a.update({"pw3.bias": a["pw3.bias"][:-1]}),
        "'pw3.bias' is int32",
    ),
    (
        "unlisted tensor",
        lambda h, a: a.update({"extra": np.zeros(3)}),
        "'extra' is in the file but not in the header",
    ),
    (
        "wrong input channels",
        lambda h, a: h["input"].update(shape=[4, 16, 12]),
        "tensor 'codes' has shape",
    ),
    (
        "input not earlier",
        lambda h, a: h["nodes"][1].update(inputs=["pw5"]),
        "input 'pw5' is not an earlier node",
    ),
    ("unknown op", lambda h, a: h["nodes"][2].update(op="gelu"), "unknown op 'gelu'"),
    (
        "unknown activation",
        lambda h, a: h["nodes"][0]["attrs"].update(activation="swish"),
        "activation 'swish'",
    ),
    (
        "shift out of range",
        lambda h, a: h["nodes"][6]["attrs"].update(shift=60),
        "shift = 60 is out of range",
    ),
    (
        "bad zero point",
        lambda h, a: h["nodes"][0]["quant"].update(zero=300),
        "zero point 300 outside 0..255",
    ),
    (
        "negative scale",
        lambda h, a: h["nodes"][0]["quant"].update(scale=-1.0),
        "must be finite and positive",
    ),
    ("no outputs", lambda h, a: h.update(outputs=[]), "names no outputs"),
    (
        "output of nothing",
        lambda h, a: h["outputs"][0].update(node="ghost"),
        "output 'ghost' is not a node",
    ),
    (
        "head channels",
        lambda h, a: h["outputs"][0].update(classes=3),
        "anchors x (5 + 3 classes)",
    ),
    (
        "map smaller than kernel",
        lambda h, a: (h["input"].update(shape=[3, 2, 2]), h["nodes"][0]["attrs"].update(pad=0)),
        "input map 2x2 is smaller than kernel 3 with pad 0",
    ),
    (
        "unsupported weight bits",
        lambda h, a: h["nodes"][0]["attrs"].update(weight_bits=6),
        "6-bit weights are not supported in format 'pow2'",
    ),
]


@pytest.mark.parametrize(("what", "edit", "expect"), HEADER_EDITS, ids=[c[0] for c in HEADER_EDITS])
def test_invalid_header_is_one_clear_line(
    saved: Path, what: str, edit: Callable[[dict, dict], None], expect: str
) -> None:
    rewrite(saved, edit)
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    msg = one_line(e)
    assert expect in msg and str(saved) in msg, msg


def invalid_variants(net: Artifact) -> list[tuple[str, Artifact, str]]:
    """In-memory artifacts that break one semantic rule each."""
    out = []

    def variant(what: str, expect: str, edit: Callable[[Artifact], None]) -> None:
        a = copy.deepcopy(net)
        edit(a)
        out.append((what, a, expect))

    def neg_zero(a: Artifact) -> None:
        a.node("pw3").tensors["codes"].reshape(-1)[0] = 0b1000

    def big_exponent(a: Artifact) -> None:
        a.node("pw3").tensors["codes"].reshape(-1)[0] = 0b0111 + 1  # 8 = sign with m = 0 in 4 bits

    def overflow(a: Artifact) -> None:
        a.node("pw3").tensors["bias"][0] = 2**31 - 100

    def int_min(a: Artifact) -> None:
        a.node("dw1").tensors["codes"].reshape(-1)[0] = 128

    def concat_quant(a: Artifact) -> None:
        q = a.node("pw16").quant
        a.node("pw16").quant = Quant(q.bits, (q.zero + 1) % 256, q.scale)

    def add_shapes(a: Artifact) -> None:
        a.node("add6").inputs = ["pw5", "conv0"]

    def relu_mneg(a: Artifact) -> None:
        a.node("pw8").tensors["m_neg"][0] = 5

    def leaky_mneg(a: Artifact) -> None:
        t = a.node("conv0").tensors
        t["m_neg"][0] = t["m_pos"][0]

    def grouped(a: Artifact) -> None:
        a.node("pw3").attrs["groups"] = 2

    def dup(a: Artifact) -> None:
        a.nodes[3].name = a.nodes[2].name

    variant("negative zero code", "invalid 4-bit pow2 weight code 8", neg_zero)
    variant("exponent above range", "invalid 4-bit pow2 weight code 8", big_exponent)
    variant("accumulator overflow", "32-bit accumulator could overflow", overflow)
    variant("int8 -128", "invalid 8-bit int weight code 128", int_min)
    variant("concat of different quantization", "unlike the output's", concat_quant)
    variant("add of different shapes", "operand shapes", add_shapes)
    variant("relu with m_neg", "relu activation needs m_neg == 0", relu_mneg)
    variant("leaky with m_neg = m_pos", "m_neg is not leaky_slope * m_pos", leaky_mneg)
    variant("grouped conv", "only dense", grouped)
    variant("duplicate name", "is used twice", dup)
    return out


def test_semantic_errors_are_rejected_on_save_and_load(net: Artifact, tmp_path: Path) -> None:
    good = artifact.save(net, tmp_path / "good.npz")
    for what, bad, expect in invalid_variants(net):
        with pytest.raises(ArtifactError) as e:
            artifact.validate(bad)
        assert expect in one_line(e), (what, str(e.value))
        if what == "duplicate name":  # two nodes' tensors cannot even be written apart
            continue
        # A writer that skips validation still cannot get it past the loader.
        p = artifact.write_unvalidated(bad, tmp_path / f"{what.replace(' ', '_')}.npz")
        with pytest.raises(ArtifactError) as e:
            artifact.load(p)
        assert expect in one_line(e), (what, str(e.value))
        # and saving refuses it without touching what is already there
        with pytest.raises(ArtifactError):
            artifact.save(bad, good)
        artifact.load(good)


def test_save_is_atomic(net: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = artifact.save(net, tmp_path / "m.npz")
    before = path.read_bytes()

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError):
        artifact.save(net, path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_builder_rejects_unsupported_formats() -> None:
    with pytest.raises(ArtifactError):
        artifact.encode_codes(np.array([3]), "pow2", 4)  # 3 is not a power of two
    with pytest.raises(ArtifactError):
        artifact.encode_codes(np.array([128]), "pow2", 4)  # 2^7 above the 4-bit range
    with pytest.raises(ArtifactError):
        artifact.encode_codes(np.array([-128]), "int", 8)
    with pytest.raises(ArtifactError):
        artifact.encode_codes(np.array([0]), "binary", 1)


def test_with_input_size_keeps_the_integers() -> None:
    """A detector exported at 512 runs at 320 with the same constants (bench/accuracy.py
    --size): every head grid shrinks by the same factor; an impossible size is refused."""
    from models.paths import REPO_ROOT

    art = artifact.load(REPO_ROOT / "models/artifacts/yolo-fastest-voc-w4a8-dw8.npz")
    small = artifact.with_input_size(art, 64, 96)
    shapes = artifact.validate(small)
    big = artifact.validate(art)
    for o in art.outputs:
        assert shapes[o.node][1:] == (big[o.node][1] * 64 // 512, big[o.node][2] * 96 // 512)
    assert all(
        a.tensors.keys() == b.tensors.keys() for a, b in zip(art.nodes, small.nodes, strict=True)
    )
    out = run_network(small, np.random.default_rng(0).integers(0, 256, (3, 64, 96), dtype=np.uint8))
    assert all(out[o.node].shape == shapes[o.node] for o in small.outputs)
    with pytest.raises(ArtifactError, match="node"):
        artifact.with_input_size(art, 80, 80)  # 80 / 32 -> 3, upsampled 6 != 5
