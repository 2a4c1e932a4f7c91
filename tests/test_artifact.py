"""The model artifact: round trips, and one clear line for every kind of invalid file.

tests/test_artifact_fuzz.py adds random mutations (byte flips, truncations, header edits)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import shutil
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
    assert header["format"] == "pow2det.artifact" and header["version"] == 2
    assert header["digest"].startswith("sha256:")
    with zipfile.ZipFile(path) as zf:
        assert zf.comment.startswith(b"pow2det-sha256:")
    data = path.read_bytes()
    assert data.endswith(hashlib.sha256(data[:-79]).hexdigest().encode())


def test_save_is_deterministic(net: Artifact, tmp_path: Path) -> None:
    a = artifact.save(net, tmp_path / "a.npz").read_bytes()
    assert artifact.save(net, tmp_path / "b.npz").read_bytes() == a


def one_line(err: pytest.ExceptionInfo[ArtifactError]) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


# --- invalid files --------------------------------------------------------------------------


def rewrite(path: Path, edit: Callable[[dict, dict], None], recompute_digest: bool = True) -> None:
    """Rewrite an artifact's header and arrays with ``edit(header, arrays)`` as a bad writer
    that knows the format (it recomputes the digest and the file checksum), so that the
    field checks and the arithmetic rules are what must catch the edit."""
    header, arrays = artifact.read_members(path)
    edit(header, arrays)
    path.write_bytes(artifact.pack(header, arrays, recompute_digest=recompute_digest))


def write_v1(art: Artifact, path: Path) -> Path:
    """The version 1 writer as it was: tensor SHA-256s only, np.savez_compressed, no seal."""
    header, arrays = artifact.header_and_arrays(art)
    header["version"] = 1
    arrays["__header__"] = np.frombuffer(json.dumps(header, indent=1).encode(), np.uint8)
    np.savez_compressed(path, **arrays)
    return path


def sealed_zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip of raw members with a valid pow2det-sha256 comment: only the contents can fail."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, b in members.items():
            zf.writestr(name, b)
    path.write_bytes(artifact.seal(buf.getvalue()))
    return path


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


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
    assert "not an artifact file" in one_line(e)


@pytest.mark.parametrize("where", [0.0, 0.3, 0.6, 0.99, -1])
def test_flipped_byte_is_caught_by_the_file_checksum(saved: Path, where: float) -> None:
    data = bytearray(saved.read_bytes())
    pos = int(len(data) * where) if where >= 0 else len(data) - 1
    data[pos] ^= 0x01
    saved.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    assert "file is corrupted (SHA-256 mismatch) or truncated" in one_line(e)


def test_directory_and_empty_file(tmp_path: Path) -> None:
    (tmp_path / "d.npz").mkdir()
    (tmp_path / "e.npz").write_bytes(b"")
    for name, expect in [("d.npz", "is a directory"), ("e.npz", "not an artifact file")]:
        with pytest.raises(ArtifactError) as e:
            artifact.load(tmp_path / name)
        assert expect in one_line(e)


def test_no_header(tmp_path: Path) -> None:
    p = sealed_zip(tmp_path / "m.npz", {"conv0.codes.npy": npy(np.zeros(3, np.uint8))})
    with pytest.raises(ArtifactError) as e:
        artifact.load(p)
    assert "no header" in one_line(e)


def test_header_not_json(saved: Path) -> None:
    header, arrays = artifact.read_members(saved)
    saved.write_bytes(artifact.pack(header, arrays, header_bytes=b"{not json"))
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    assert "not valid JSON" in one_line(e)


def test_deeply_nested_header(saved: Path) -> None:
    header, arrays = artifact.read_members(saved)
    deep = b'{"metadata": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    saved.write_bytes(artifact.pack(header, arrays, header_bytes=deep))
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    assert "not valid JSON" in one_line(e)


def test_header_edit_without_the_digest(saved: Path) -> None:
    """The issue's case: an add's requantization shift 15 -> 30 loaded without complaint in
    version 1. Even with the file checksum redone, the header digest refuses it."""

    def edit(h: dict, a: dict) -> None:
        add = next(n for n in h["nodes"] if n["op"] == "add")
        add["attrs"]["shift"] = 30

    rewrite(saved, edit, recompute_digest=False)
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    assert "do not match the digest" in one_line(e)


def test_digest_removed(saved: Path) -> None:
    rewrite(saved, lambda h, a: h.pop("digest"), recompute_digest=False)
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    assert "header has no digest" in one_line(e)


def test_tensor_edit_without_the_digest(saved: Path) -> None:
    def edit(h: dict, a: dict) -> None:
        a["pw3.bias"] = a["pw3.bias"] + np.int32(1)
        h["tensors"]["pw3.bias"]["sha256"] = hashlib.sha256(a["pw3.bias"].tobytes()).hexdigest()

    rewrite(saved, edit, recompute_digest=False)
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    assert "do not match the digest" in one_line(e)


def test_header_not_canonical(saved: Path) -> None:
    header, arrays = artifact.read_members(saved)
    text = json.dumps(header, indent=1).encode()  # the same content, other spacing
    saved.write_bytes(artifact.pack(header, arrays, header_bytes=text))
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    assert "canonical" in one_line(e)


def test_zip_bomb_is_refused_before_decompressing(saved: Path) -> None:
    header, _ = artifact.read_members(saved)
    members = {"__header__.npy": npy(np.frombuffer(artifact.canonical_json(header), np.uint8)),
               "pw3.bias.npy": npy(np.zeros(64 * 2**20, np.uint8))}  # fmt: skip
    sealed_zip(saved, members)
    assert saved.stat().st_size < 2**20
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    assert "zip bomb" in one_line(e)


def test_other_compression_is_refused(saved: Path) -> None:
    header, _ = artifact.read_members(saved)
    members = {"__header__.npy": npy(np.frombuffer(artifact.canonical_json(header), np.uint8))}
    sealed_zip(saved, members, method=zipfile.ZIP_BZIP2)
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    assert "compression method 12" in one_line(e)


def test_pickled_member_is_refused(saved: Path) -> None:
    header, arrays = artifact.read_members(saved)
    blob = artifact.pack(header, arrays)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    members["pw3.bias.npy"] = buf.getvalue()
    sealed_zip(saved, members)
    with pytest.raises(ArtifactError) as e:
        artifact.load(saved)
    assert "'pw3.bias.npy' has dtype |O" in one_line(e)


HEADER_EDITS: list[tuple[str, Callable[[dict, dict], None], str]] = [
    ("wrong version", lambda h, a: h.update(version=5), "version 5 is not supported"),
    ("version as a string", lambda h, a: h.update(version="2"), "version '2' is not supported"),
    ("other format", lambda h, a: h.update(format="onnx"), "not a pow2det.artifact"),
    ("missing tensor", lambda h, a: a.pop("pw3.bias"), "'pw3.bias' is listed but missing"),
    (
        "tensor of another shape",
        lambda h, a: a.update({"pw3.bias": a["pw3.bias"][:-1]}),
        "'pw3.bias' is int32",
    ),
    (
        "unlisted tensor",
        lambda h, a: a.update({"extra": np.zeros(3, np.uint8)}),
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
    # v2: every field type- and range-checked (these raised TypeError & co. or were ignored)
    ("name not a string", lambda h, a: h.update(name=3), "'name' must be a string"),
    ("classes not strings", lambda h, a: h.update(classes=[1, 2]), "list of strings"),
    ("metadata a list", lambda h, a: h.update(metadata=[]), "'metadata' must be a JSON object"),
    ("unknown top key", lambda h, a: h.update(extra=1), "unknown key 'extra'"),
    ("nodes not a list", lambda h, a: h.update(nodes={}), "'nodes' must be a list"),
    ("node inputs a string", lambda h, a: h["nodes"][1].update(inputs="conv0"), "list of node"),
    ("node name a list", lambda h, a: h["nodes"][1].update(name=["x"]), "must be a non-empty"),
    (
        "unknown conv attr",
        lambda h, a: h["nodes"][0]["attrs"].update(dilation=2),
        "unknown key 'dilation'",
    ),
    (
        "unknown add attr",
        lambda h, a: h["nodes"][6]["attrs"].update(m_c=2),
        "unknown key 'm_c'",
    ),
    ("add attr missing", lambda h, a: h["nodes"][6]["attrs"].pop("m_b"), "missing 'm_b'"),
    ("attrs a list", lambda h, a: h["nodes"][0].update(attrs=[]), "attrs must be an object"),
    ("quant a list", lambda h, a: h["nodes"][0].update(quant=[8]), "quant must be an object"),
    ("bits a bool", lambda h, a: h["nodes"][0]["quant"].update(bits=True), "must be an integer"),
    (
        "scale not float32",
        lambda h, a: h["nodes"][0]["quant"].update(scale=0.1),
        "is not a float32 value",
    ),
    (
        "huge shift integer",
        lambda h, a: h["nodes"][6]["attrs"].update(shift=10**30),
        "is out of range 0..47",
    ),
    ("input shape floats", lambda h, a: h["input"].update(shape=[3.0, 16, 12]), "three positive"),
    ("input shape huge", lambda h, a: h["input"].update(shape=[3, 10**9, 16]), "is above"),
    ("output kind", lambda h, a: h["outputs"][0].update(kind=None), "unknown kind None"),
    (
        "anchors of strings",
        lambda h, a: h["outputs"][0].update(anchors=[["a", "b"], [1, 2]]),
        "anchors must be a list",
    ),
    (
        "negative anchor",
        lambda h, a: h["outputs"][0].update(anchors=[[-10, 14], [23, 27]]),
        "positive finite numbers",
    ),
    (
        "classes a bool",
        lambda h, a: h["outputs"][0].update(classes=True),
        "classes must be a positive integer",
    ),
    ("output twice", lambda h, a: h["outputs"].append(dict(h["outputs"][0])), "named twice"),
    ("unknown output key", lambda h, a: h["outputs"][0].update(stride=8), "unknown key 'stride'"),
    (
        "tensor dtype a list",
        lambda h, a: h["tensors"]["pw3.bias"].update(dtype=["int32"]),
        "is not one of the format's",
    ),
    (
        "tensor table shape strings",
        lambda h, a: h["tensors"]["pw3.bias"].update(shape=["4"]),
        "must be a list of at most 8 sizes",
    ),
    (
        "tensor reference a number",
        lambda h, a: h["nodes"][0]["tensors"].update(bias=5),
        "tensor 5 is missing",
    ),
    (
        "tensor used twice",
        lambda h, a: h["nodes"][3]["tensors"].update(bias=h["nodes"][0]["tensors"]["bias"]),
        "used twice",
    ),
    (
        "leaky slope on a linear conv",
        lambda h, a: next(
            n for n in h["nodes"] if n["op"] == "conv" and n["attrs"]["activation"] == "linear"
        )["attrs"].update(leaky_slope=0.1),
        "leaky_slope given for activation 'linear'",
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

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        artifact.save(net, path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_builder_rejects_unsupported_formats() -> None:
    with pytest.raises(artifact.CodeError, match="powers of two"):
        artifact.encode_codes(np.array([3]), "pow2", 4)  # 3 is not a power of two
    with pytest.raises(artifact.CodeError, match="powers of two"):
        artifact.encode_codes(np.array([128]), "pow2", 4)  # 2^7 above the 4-bit range
    with pytest.raises(artifact.CodeError, match="symmetric 8-bit"):
        artifact.encode_codes(np.array([-128]), "int", 8)
    with pytest.raises(artifact.CodeError, match="binary"):
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


# --- version 1 files and the upgrade command ------------------------------------------------


def test_version1_is_refused_with_the_upgrade_command(net: Artifact, tmp_path: Path) -> None:
    old = write_v1(net, tmp_path / "old.npz")
    with pytest.raises(ArtifactError) as e:
        artifact.load(old)
    msg = one_line(e)
    assert "version 1 is no longer read" in msg
    assert f"python -m sw.artifact upgrade {old} NEW.npz" in msg


def test_upgrade_keeps_every_integer(
    net: Artifact, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write_v1(net, tmp_path / "old.npz")
    new = tmp_path / "new.npz"
    assert artifact.main(["upgrade", str(old), str(new)]) == 0
    assert "version 2" in capsys.readouterr().out
    h1, t1 = artifact.read_members(old)
    h2, t2 = artifact.read_members(new)
    assert h2.pop("version") == 2 and h1.pop("version") == 1 and h2.pop("digest")
    assert h1 == h2
    assert t1.keys() == t2.keys()
    for k in t1:
        assert t1[k].dtype == t2[k].dtype
        np.testing.assert_array_equal(t1[k], t2[k])
    img = np.random.default_rng(0).integers(0, 256, net.input_shape).astype(np.uint8)
    back = artifact.load(new)
    for k, v in run_network(net, img).items():
        np.testing.assert_array_equal(run_network(back, img)[k], v)
    # check: one line per file
    assert artifact.main(["check", str(new), str(old)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].endswith("nodes)") and "version 1" in out[1]


def test_upgrade_refusals(
    net: Artifact, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write_v1(net, tmp_path / "old.npz")
    before = old.read_bytes()
    (tmp_path / "sym.npz").symlink_to(old)
    os.link(old, tmp_path / "hard.npz")
    (tmp_path / "sub").mkdir()
    shutil.copy(old, tmp_path / "sub" / "old.npz")
    bad = tmp_path / "bad.npz"
    write_v1(net, bad)
    with zipfile.ZipFile(bad) as zf:  # a v1 file whose tensor fails its SHA-256
        members = {n: zf.read(n) for n in zf.namelist()}
    b = bytearray(members["pw3.bias.npy"])
    b[-1] ^= 1
    members["pw3.bias.npy"] = bytes(b)
    with zipfile.ZipFile(bad, "w") as zf:
        for n, v in members.items():
            zf.writestr(n, v)
    v2 = artifact.save(net, tmp_path / "v2.npz")
    cases = [
        ([str(old), str(old)], "same file"),
        ([str(old), str(tmp_path / "sym.npz"), "--overwrite"], "same file"),
        ([str(old), str(tmp_path / "hard.npz"), "--overwrite"], "same file"),
        ([str(old), str(tmp_path / "sub" / ".." / "old.npz")], "same file"),
        ([str(old), str(tmp_path / "sub" / "old.npz")], "already exists (pass --overwrite"),
        ([str(bad), str(tmp_path / "n1.npz")], "'pw3.bias' fails its SHA-256 check"),
        ([str(v2), str(tmp_path / "n2.npz")], "already version 2"),
        ([str(tmp_path / "none.npz"), str(tmp_path / "n3.npz")], "no such artifact file"),
    ]
    for args, expect in cases:
        assert artifact.main(["upgrade", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expect in err, (args, err)
    assert old.read_bytes() == before
    assert not any((tmp_path / f"n{i}.npz").exists() for i in (1, 2, 3))
    # --overwrite replaces another file
    assert (
        artifact.main(["upgrade", str(old), str(tmp_path / "sub" / "old.npz"), "--overwrite"]) == 0
    )
    artifact.load(tmp_path / "sub" / "old.npz")


def test_save_refuses_metadata_that_is_not_plain_json(net: Artifact, tmp_path: Path) -> None:
    for bad in (float("nan"), float("inf"), np.float32(1.0)):
        net.metadata = {"loss": bad}
        with pytest.raises(ArtifactError) as e:
            artifact.save(net, tmp_path / "m.npz")
        assert "not plain JSON" in one_line(e)
    assert not (tmp_path / "m.npz").exists()


# --- one bad file does not break the default model choice -----------------------------------


def _corrupt(kind: str, good: Path, bad: Path, net: Artifact) -> None:
    data = good.read_bytes()
    if kind == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "flipped":
        b = bytearray(data)
        b[len(b) // 3] ^= 0x40
        bad.write_bytes(bytes(b))
    elif kind == "version1":
        write_v1(net, bad)
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "directory":
        bad.mkdir()
    elif kind == "symlink loop":
        bad.symlink_to(bad)


@pytest.mark.parametrize(
    "kind", ["truncated", "flipped", "version1", "empty", "directory", "symlink loop"]
)
def test_default_model_skips_a_bad_file(net: Artifact, tmp_path: Path, kind: str) -> None:
    from sw.app import find_default_artifact

    good = tmp_path / "yolo-fastest-voc-a.npz"
    net.metadata = {"measured": {"tud_person_ap": 0.1, "voc_sample_map_all": 0.2}}
    artifact.save(net, good)
    bad = tmp_path / "yolo-fastest-voc-z.npz"  # would win on name and on a higher figure
    better = copy.deepcopy(net)
    better.metadata = {"measured": {"tud_person_ap": 0.9, "voc_sample_map_all": 0.9}}
    artifact.save(better, bad)
    if bad.exists():
        bad.unlink()
    _corrupt(kind, artifact.save(better, tmp_path / "src.npz"), bad, better)
    with pytest.raises(ArtifactError):
        artifact.load(bad)
    assert find_default_artifact(tmp_path) == good
