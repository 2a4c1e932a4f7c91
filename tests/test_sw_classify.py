"""``shiftdet classify``: a classifier artifact (the committed CIFAR-10 ResNet-20) over an image
folder on the emulator, against the evaluation's own input path (quant.classify.codes_of, the
codes the reported top-1 was measured on) run through the same emulator, image by image; plus the
crop/resize rule, the ranking's softmax and order, and the one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from app_run import run_detect

from models.classifiers.resnet_cifar import cifar_path, load_cifar
from quant import classify
from sw import app
from sw import artifact as artmod
from sw.accel_config import DEFAULT_CONFIG
from sw.artifact import Quant
from sw.backends.emu import EmuBackend
from sw.compiler import compile_model
from sw.preprocess import classifier_input
from sw.topk import TopK

REPO = Path(__file__).resolve().parent.parent
R20 = REPO / "models" / "artifacts" / "resnet20-cifar10-w4a8-qat.npz"
DETECTOR = REPO / "models" / "artifacts" / "yolo-fastest-voc-w4a8-dw8-cle.npz"
N = 24
needs_data = pytest.mark.skipif(
    not cifar_path().is_file(), reason="CIFAR-10 not fetched (make data)"
)


def _classify(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    try:
        rc = app.main(["classify", *argv, "--no-progress"])
    except SystemExit as e:
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


@needs_data
def test_folder_equals_the_evaluation_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    x, y = load_cifar("report")
    pick = np.arange(0, len(x), len(x) // N)[:N]
    folder = tmp_path / "cifar"
    folder.mkdir()
    for i in pick:  # PNG: lossless, so the folder holds exactly the evaluation's pixels
        cv2.imwrite(str(folder / f"{i:05d}.png"), x[i][:, :, ::-1])
    rc, _out, err = _classify(capsys, str(folder), "--model", str(R20), "--top", "3",
                              "--out-dir", str(tmp_path / "out"), "--sequential")  # fmt: skip
    assert rc == 0, err
    recs = [json.loads(s) for s in (tmp_path / "out" / "cifar.jsonl").read_text().splitlines()]
    assert [r["file"] for r in recs] == [f"{i:05d}.png" for i in pick]
    report = json.loads((tmp_path / "out" / "cifar.report.json").read_text())
    assert report["task"] == "classify" and report["frames_out"] == N
    assert all((tmp_path / "out" / r["file"]).is_file() for r in recs)  # labelled images

    art = artmod.load(R20)
    plan = compile_model(art, DEFAULT_CONFIG)
    codes = classify.codes_of(x[pick])
    q = plan.regions["fc"].quant
    correct = 0
    with EmuBackend(plan) as emu:
        for k, (rec, c) in enumerate(zip(recs, codes, strict=True)):
            t = q.scale * (emu.run(c)["fc"].reshape(-1).astype(np.float64) - q.zero)
            p = np.exp(t - t.max()) / np.exp(t - t.max()).sum()
            want = np.argsort(-p, kind="stable")[:3]
            assert [d["class_id"] for d in rec["top"]] == want.tolist(), f"image {pick[k]}"
            assert [d["class"] for d in rec["top"]] == [art.classes[i] for i in want]
            np.testing.assert_allclose([d["prob"] for d in rec["top"]], p[want], atol=6e-6)
            correct += int(want[0] == y[pick[k]])
    assert correct >= N * 0.6, f"top-1 {correct}/{N}: the model is not classifying"


def test_classifier_input_crops_the_centre_and_keeps_exact_sizes() -> None:
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mean, std, q = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), Quant(8, 100, 0.02)
    got = classifier_input(img, 32, 32, mean, std, q.zero, q.scale)
    ref = np.clip(np.rint(((img[:, :, ::-1] / 255.0 - mean) / std) / q.scale) + q.zero, 0, 255)
    np.testing.assert_array_equal(got, ref.transpose(2, 0, 1).astype(np.uint8))
    wide = np.zeros((32, 96, 3), np.uint8)
    wide[:, 32:64] = img  # the centre square is the image; the sides are cropped away
    np.testing.assert_array_equal(classifier_input(wide, 32, 32, mean, std, q.zero, q.scale), got)
    assert classifier_input(wide, 16, 16, mean, std, q.zero, q.scale).shape == (3, 16, 16)


def test_topk_order_ties_and_shape() -> None:
    rank = TopK("fc", Quant(8, 10, 0.5), 4, k=3)({"fc": np.array([12, 14, 14, 10], np.uint8)})
    assert rank.classes.tolist() == [1, 2, 0]  # a tie keeps the lower class first
    e = np.exp(0.5 * np.array([2.0, 4, 4, 0]))
    np.testing.assert_allclose(rank.probs, (e / e.sum())[[1, 2, 0]])
    with pytest.raises(ValueError, match="3 values for 4 classes"):
        TopK("fc", Quant(8, 0, 1.0), 4)({"fc": np.zeros(3, np.uint8)})


@pytest.mark.parametrize(
    ("command", "model", "message"),
    [
        ("classify", DETECTOR, "a detector (YOLO outputs): shiftdet detect runs it"),
        ("detect", R20, "no YOLO outputs (a classifier: shiftdet classify)"),
    ],
)
def test_the_wrong_kind_of_model_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, command: str, model: Path, message: str
) -> None:
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    argv = [str(img), "--model", str(model), "--out-dir", str(tmp_path / "out")]
    if command == "classify":
        rc, _, err = _classify(capsys, *argv)
    else:
        rc, _, err = run_detect(capsys, *argv)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "out").exists()
