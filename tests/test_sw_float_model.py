"""``shiftdet detect --cfg --weights``: a user's darknet detector in float on OpenCV, through the
app's letterbox, decoder, NMS and outputs (sw/darknet/float_net.py).

The boxes are checked against an independent path: the PyTorch import (models.darknet, with
OpenCV's batch-norm eps 1e-6 so both compute the same function) decoded by the same
FloatYoloDecoder, frame by frame on the real Yolo-Fastest and the TUD clip. The accelerator's
options and bad files are refused in one line, before any output exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from app_run import run_detect

from models.darknet import Darknet
from models.paths import data_dir
from sw.darknet.cfg import DarknetError
from sw.darknet.float_net import FloatDarknet
from sw.postprocess import FloatYoloDecoder
from sw.preprocess import letterbox

D = data_dir() / "weights" / "darknet"
CFG, WEIGHTS, NAMES = D / "yolo-fastest-voc.cfg", D / "yolo-fastest-voc.weights", D / "voc.names"
CLIP = data_dir() / "video" / "TUD-Stadtmitte" / "TUD-Stadtmitte.mp4"
FRAMES = 3
SIZE = 320  # small: the test is about agreement, not speed

needs_data = pytest.mark.skipif(
    not (WEIGHTS.is_file() and CLIP.is_file()),
    reason=f"Yolo-Fastest weights / TUD clip not found under {data_dir()} (make data)",
)


def _torch_detections(frames: list[np.ndarray], conf: float) -> list[list[tuple]]:
    net = Darknet.from_files(CFG, WEIGHTS, bn_eps=1e-6).eval()  # OpenCV's eps
    fl = FloatDarknet(CFG, WEIGHTS, SIZE, SIZE)
    dec = FloatYoloDecoder(fl.heads, SIZE, SIZE, conf_thresh=conf)
    out = []
    for f in frames:
        rgb, lb = letterbox(f, SIZE, SIZE)
        x = torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
        with torch.no_grad():
            heads = [h[0].double().numpy() for h in net(x)]
        d = dec(heads, lb)
        out.append(
            sorted(zip(d.classes.tolist(), d.scores.tolist(), d.boxes.tolist(), strict=True))
        )
    return out


@needs_data
def test_cfg_run_matches_the_torch_import(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    conf = 0.25
    rc, out, err = run_detect(capsys, str(CLIP), "--cfg", str(CFG), "--weights", str(WEIGHTS),
                              "--names", str(NAMES), "--size", str(SIZE), "--max-frames",
                              str(FRAMES), "--out-dir", str(tmp_path), "--sequential")  # fmt: skip
    assert rc == 0, err
    stem = tmp_path / "TUD-Stadtmitte"
    report = json.loads(stem.with_suffix(".report.json").read_text())
    assert report["backend"] == "opencv-float" and report["plan"] is None
    assert report["float_model"]["size"] == SIZE and report["input_size"] == [SIZE, SIZE]
    assert report["frames_out"] == FRAMES
    assert Path(str(stem) + ".mp4").stat().st_size > 0
    lines = [json.loads(s) for s in Path(str(stem) + ".jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(FRAMES))

    cap = cv2.VideoCapture(str(CLIP))
    frames = [cap.read()[1] for _ in range(FRAMES)]
    cap.release()
    want = _torch_detections(frames, conf)
    assert sum(map(len, want)) >= FRAMES  # people in every frame: the comparison has content
    for i, (rec, ref) in enumerate(zip(lines, want, strict=True)):
        got = sorted((d["class_id"], d["score"], d["box"]) for d in rec["detections"])
        assert [c for c, _, _ in got] == [c for c, _, _ in ref], f"frame {i}"
        assert all(d["class"] == "person" for d in rec["detections"] if d["class_id"] == 14)
        for (_, s, b), (_, rs, rb) in zip(got, ref, strict=True):
            assert abs(s - rs) < 2e-3, f"frame {i}: score {s} vs {rs}"
            assert np.abs(np.array(b) - np.array(rb)).max() < 0.3, f"frame {i}: {b} vs {rb}"


@needs_data
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cfg", str(CFG)], "--cfg and --weights go together"),
        (["--weights", str(WEIGHTS)], "--cfg and --weights go together"),
        (["--cfg", str(CFG), "--weights", str(WEIGHTS), "--backend", "pynq"],
         "--backend: --cfg runs the float model on the CPU"),
        (["--cfg", str(CFG), "--weights", str(WEIGHTS), "--cpu-fallback"],
         "--cpu-fallback: --cfg runs the float model"),
        (["--cfg", str(CFG), "--weights", str(WEIGHTS), "--model", "x.npz"],
         "either --model (an artifact) or --cfg"),
        (["--size", "320"], "--size goes with --cfg"),
        (["--cfg", str(CFG), "--weights", str(D / "yolo-fastest-xl-voc.weights")],
         "weights and cfg do not match"),
        (["--cfg", str(CFG), "--weights", str(WEIGHTS), "--names", str(CFG)],
         "20 classes, --names"),
        (["--cfg", str(WEIGHTS), "--weights", str(WEIGHTS)], "not UTF-8 text (a darknet cfg)"),
        (["--cfg", str(CFG), "--weights", str(WEIGHTS), "--size", "100"],
         "input 100x100: layer 118 [route]"),
        (["--cfg", "missing.cfg", "--weights", str(WEIGHTS)], "--cfg missing.cfg: no such file"),
    ],
)  # fmt: skip
def test_bad_cfg_runs_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                       extra: list[str], message: str) -> None:  # fmt: skip
    out_dir = tmp_path / "out"
    rc, _out, err = run_detect(capsys, str(CLIP), *extra, "--out-dir", str(out_dir))
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_unsupported_activation_names_the_layer(tmp_path: Path) -> None:
    cfg = tmp_path / "mish.cfg"
    cfg.write_text((Path(__file__).parent / "data" / "tiny.cfg").read_text()
                   .replace("activation=leaky", "activation=mish", 1))  # fmt: skip
    (tmp_path / "w.weights").write_bytes(b"\0" * 20)
    with pytest.raises(DarknetError, match=r"layer 0 \[convolutional\].*unsupported activation"):
        FloatDarknet(cfg, tmp_path / "w.weights", 64, 64)
