"""The video app (`python -m sw.app detect`, console command `shiftdet detect`): outputs, frame
order, live dropping, and every bad input giving one line and keeping what was written.

The model is a random network (sim.reference.randnet) with two YOLO heads at 64x64: it exercises
the whole path but is not a detector, so no test looks at what it detects, only that it detects
something (at `--conf 0.05` it gives over 200 boxes a frame on the clip, at the default 0.25 over
100), so that the checks on the boxes cannot pass on an empty list."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from app_run import run_detect as _run
from videos import mp4_frames, read_jsonl

from sim.reference.randnet import random_network
from sw import app
from sw.artifact import save
from sw.pipeline import Item, Pipeline
from sw.sources import Frame, Source


def test_detect_video_writes_all_outputs(tmp_path, capsys, model, clip) -> None:
    rc, out, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(tmp_path),
                        "--max-frames", "15", "--conf", "0.05")  # fmt: skip
    assert rc == 0, err
    lines = read_jsonl(tmp_path / "TUD-Campus.jsonl")
    assert [r["frame"] for r in lines] == list(range(15))
    assert all(r["detections"] for r in lines), [len(r["detections"]) for r in lines]
    inside = 0  # boxes not clipped to the frame on any side
    for r in lines:
        for d in r["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= 640 and 0 <= y1 <= y2 <= 480 and 0.05 <= d["score"] <= 1
            assert d["class"] in ("random-0", "random-1")
            inside += 0 < x1 and x2 < 640 and 0 < y1 and y2 < 480
    assert inside > 0, "every box was clipped to the frame: the mapping back was not exercised"
    assert mp4_frames(tmp_path / "TUD-Campus.mp4") == 15
    rep = json.loads((tmp_path / "TUD-Campus.report.json").read_text())
    assert rep["frames_out"] == 15 and rep["dropped_live"] == 0 and rep["error"] is None
    assert set(rep["stage_ms"]) == {"capture", "preprocess", "accelerator", "postprocess", "output"}
    assert (tmp_path / "TUD-Campus.timeline.png").stat().st_size > 1000
    assert "15 frames" in out and "fps" in out


def test_sequential_and_threaded_agree(tmp_path, capsys, model, clip) -> None:
    for mode in ("seq", "thr"):
        extra = ["--sequential"] if mode == "seq" else []
        rc, _, err = _run(
            capsys,
            str(clip),
            "--model",
            str(model),
            "--out-dir",
            str(tmp_path / mode),
            "--max-frames",
            "6",
            "--no-video",
            "--conf",
            "0.05",
            *extra,
        )
        assert rc == 0, err
    seq = read_jsonl(tmp_path / "seq" / "TUD-Campus.jsonl")
    assert [r["frame"] for r in seq] == list(range(6))
    assert all(r["detections"] for r in seq), [len(r["detections"]) for r in seq]
    assert seq == read_jsonl(tmp_path / "thr" / "TUD-Campus.jsonl")
    assert not (tmp_path / "seq" / "TUD-Campus.mp4").exists()


def test_corrupt_video_skips_counts_and_reports(tmp_path, capsys, model, clip) -> None:
    data = bytearray(clip.read_bytes())
    at = int(len(data) * 0.3)
    data[at : at + 20000] = bytes(20000)  # zeroed packets in the middle of a real clip
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(data)
    out = tmp_path / "out"
    rc, _, err = _run(capsys, str(bad), "--model", str(model), "--out-dir", str(out))
    assert rc == 0, err
    rep = json.loads((out / "corrupt.report.json").read_text())
    skipped = rep["skipped_undecodable"]
    assert skipped and rep["frames_out"] + len(skipped) == 71
    frames = [r["frame"] for r in read_jsonl(out / "corrupt.jsonl")]
    assert frames == sorted(set(range(71)) - set(skipped))
    warn = [line for line in err.splitlines() if "undecodable" in line]
    assert len(warn) == 1 and f"{len(skipped)} undecodable frame(s) skipped" in warn[0]
    assert mp4_frames(out / "corrupt.mp4") == rep["frames_out"]


def test_image_folder_with_an_unreadable_image(tmp_path, capsys, model, data_dir) -> None:
    imgs = sorted((data_dir / "voc2012-sample" / "JPEGImages").glob("*.jpg"))[:3]
    if len(imgs) < 3:
        pytest.skip("VOC sample images missing")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, p in enumerate(imgs):
        shutil.copy(p, folder / f"{i * 2:03d}.jpg")
    (folder / "001.jpg").write_bytes(b"not a jpeg")
    rc, _, err = _run(capsys, str(folder), "--model", str(model), "--out-dir", str(tmp_path))
    assert rc == 0, err
    recs = read_jsonl(tmp_path / "imgs.jsonl")
    assert [r["frame"] for r in recs] == [0, 2, 3]
    assert [r["file"] for r in recs] == ["000.jpg", "002.jpg", "004.jpg"]
    assert "1 undecodable frame(s) skipped (indices 1..1)" in err
    # one annotated image per readable input, each at its own size; no mp4
    for name, src in zip(("000.jpg", "002.jpg", "004.jpg"), imgs, strict=True):
        assert cv2.imread(str(tmp_path / name)).shape == cv2.imread(str(src)).shape, name
    assert not (tmp_path / "001.jpg").exists() and not (tmp_path / "imgs.mp4").exists()


@pytest.mark.parametrize("case", ["missing", "not_video", "version", "config", "out_dir",
                                  "no_model"])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, model, clip, case) -> None:
    args = [str(clip), "--model", str(model), "--out-dir", str(tmp_path / "o"), "--max-frames",
            "2"]  # fmt: skip
    expect = ""
    if case == "missing":
        args[0], expect = str(tmp_path / "nope.mp4"), "does not exist"
    elif case == "not_video":
        (tmp_path / "x.mp4").write_text("hello")
        args[0], expect = str(tmp_path / "x.mp4"), "cannot open video"
    elif case == "version":  # a file of a future format version, well formed otherwise
        from sw import artifact

        header, arrays = artifact.read_members(model)
        old = tmp_path / "future.npz"
        future = artifact.FORMAT_VERSION + 1  # one past the newest, whatever that is now
        old.write_bytes(artifact.pack({**header, "version": future}, arrays))
        args[2], expect = str(old), f"artifact version {future} is not supported"
    elif case == "config":
        (tmp_path / "other.json").write_text(json.dumps({"lanes": 8, "max_strip": 16}))
        args += ["--emulate-build", str(tmp_path / "other.json")]
        expect = "compiled for another accelerator build: lanes 16 (hardware: 8)"
    elif case == "out_dir":
        (tmp_path / "file").write_text("x")
        args[4], expect = str(tmp_path / "file" / "sub"), "cannot create folder"
    elif case == "no_model":
        args = [args[0], "--model", str(tmp_path / "none.npz")]
        expect = "no such artifact file"
    t0 = time.monotonic()
    rc, out, err = _run(capsys, *args)
    assert rc == 2 and time.monotonic() - t0 < 30
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], err
    assert not (tmp_path / "o" / "TUD-Campus.jsonl").exists() or case == "config"


def test_stage_exception_stops_cleanly_and_keeps_outputs(tmp_path, capsys, model, clip,
                                                         monkeypatch) -> None:  # fmt: skip
    real = app.Detector.postprocess

    def failing(self, item: Item) -> None:
        if item.index == 5:
            raise ValueError("injected failure\nsecond line")
        real(self, item)

    monkeypatch.setattr(app.Detector, "postprocess", failing)
    rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(tmp_path))
    assert rc == 1
    assert err.strip().splitlines()[-1] == "error: postprocess: injected failure"
    assert [r["frame"] for r in read_jsonl(tmp_path / "TUD-Campus.jsonl")] == list(range(5))
    assert mp4_frames(tmp_path / "TUD-Campus.mp4") == 5  # finalised: it plays
    assert json.loads((tmp_path / "TUD-Campus.report.json").read_text())["error"]


def test_ctrl_c_finalises_outputs(tmp_path, capsys, model, clip, monkeypatch) -> None:
    """Ctrl-C at a known frame, delivered from inside the pipeline. The test installs the
    SIGINT handler it relies on: a suite started with SIGINT ignored (a background job of a
    non-interactive shell, nohup, some CI runners) must pass the same way (the app keeps an
    ignored SIGINT ignored; tests/test_sw_app_safety.py checks that case)."""
    import signal

    real = app.Detector.output

    def interrupting(self, item: Item) -> None:
        real(self, item)
        if item.index == 3:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C does

    monkeypatch.setattr(app.Detector, "output", interrupting)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(tmp_path))
    finally:
        signal.signal(signal.SIGINT, old)
    assert rc == 130 and "interrupted" in err
    frames = [r["frame"] for r in read_jsonl(tmp_path / "TUD-Campus.jsonl")]
    assert frames == list(range(len(frames))) and 4 <= len(frames) < 71
    assert mp4_frames(tmp_path / "TUD-Campus.mp4") == len(frames)


class _FakeCamera(Source):
    """A live source that produces frames faster than the pipeline can take them."""

    def __init__(self, n: int) -> None:
        super().__init__("fake camera", live=True)
        self.n, self.i = n, 0

    def read(self) -> Frame | None:
        if self.i >= self.n:
            return None
        time.sleep(0.002)
        self.i += 1
        return Frame(self.i - 1, np.zeros((4, 4, 3), np.uint8), time.perf_counter())


class _FakeFile(_FakeCamera):
    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.live = False


def _slow(item: Item) -> None:
    time.sleep(0.02)


def test_live_source_drops_and_file_does_not() -> None:
    seen: list[int] = []
    pipe = Pipeline(_FakeCamera(60), [("work", _slow), ("out", lambda it: None)],
                    queue_depth=2, on_output=lambda it: seen.append(it.index))  # fmt: skip
    res = pipe.run_threaded()
    assert res.error is None and res.dropped > 0
    assert res.frames_out + res.dropped == 60 and seen == sorted(seen)
    seen.clear()
    pipe = Pipeline(_FakeFile(30), [("work", _slow), ("out", lambda it: None)], queue_depth=2,
                    on_output=lambda it: seen.append(it.index))  # fmt: skip
    res = pipe.run_threaded()
    assert res.dropped == 0 and seen == list(range(30))


def test_a_failing_stage_never_hangs_the_others() -> None:
    def boom(item: Item) -> None:
        if item.index == 2:
            raise RuntimeError("stage failed")

    t0 = time.monotonic()
    res = Pipeline(_FakeFile(10**6), [("a", _slow), ("b", boom), ("c", _slow)],
                   queue_depth=2).run_threaded()  # fmt: skip
    assert res.error == "b: stage failed" and time.monotonic() - t0 < 10


def test_committed_detector_on_a_real_frame(data_dir: Path) -> None:
    """The quantized Yolo-Fastest under models/artifacts/ at 512x512 on TUD-Stadtmitte frame 1:
    emu equals sim.reference bit for bit, and the decoded boxes land on the annotated people."""
    from sim.reference import run_network
    from sw import artifact
    from sw.accel_config import AccelConfig
    from sw.backends.emu import EmuBackend
    from sw.compiler import compile_model
    from sw.postprocess import YoloDecoder, box_iou
    from sw.preprocess import letterbox

    try:
        path = app.find_default_artifact()
    except app.UsageError:
        pytest.skip("no quantized Yolo-Fastest committed under models/artifacts/")
    clip = data_dir / "video" / "TUD-Stadtmitte"
    if not (clip / "TUD-Stadtmitte.mp4").is_file():
        pytest.skip("TUD-Stadtmitte missing from data/")
    art = artifact.load(path)
    plan = compile_model(art, AccelConfig())
    cap = cv2.VideoCapture(str(clip / "TUD-Stadtmitte.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    _, h, w = art.input_shape
    rgb, lb = letterbox(frame, w, h)
    out = EmuBackend(plan).run(rgb, hwc=True)
    ref = run_network(art, np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    for name in ref:
        np.testing.assert_array_equal(out[name], ref[name], err_msg=name)
    det = YoloDecoder.for_plan(plan)(out, lb)
    gt = np.loadtxt(clip / "gt.txt", delimiter=",", ndmin=2)
    g = gt[gt[:, 0] == 1][:, 2:6]  # MOT: 1-based left, top, width, height
    boxes = np.c_[g[:, 0] - 1, g[:, 1] - 1, g[:, 0] + g[:, 2] - 1, g[:, 1] + g[:, 3] - 1]
    person = art.classes.index("person")
    hits = box_iou(det.boxes[det.classes == person].astype(np.float64), boxes).max(axis=1) >= 0.5
    assert hits.sum() >= min(4, len(boxes)), f"{hits.sum()} of {len(boxes)} people found"


def test_mjpeg_server_serves_the_newest_frame() -> None:
    import urllib.request

    from sw.sinks import MjpegServer

    srv = MjpegServer(0)  # an ephemeral port
    try:
        frame = np.full((48, 64, 3), 90, np.uint8)
        srv.write(frame)
        with urllib.request.urlopen(srv.url, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            head = r.read(200)
        assert head.startswith(b"--frame\r\nContent-Type: image/jpeg")
        jpeg = srv.jpeg
        assert jpeg is not None
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == frame.shape and abs(int(img.mean()) - 90) <= 2
    finally:
        srv.close()


def test_show_without_gui_is_one_line(tmp_path, capsys, model, clip) -> None:
    import re

    if not re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):
        pytest.skip("this OpenCV build has a GUI")
    rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(tmp_path),
                      "--show")  # fmt: skip
    assert rc == 2 and err.strip().splitlines() == [
        "error: this OpenCV build has no GUI support (opencv-python-headless); use --serve PORT "
        "to watch in a browser, or write the mp4"
    ]


def test_default_artifact_prefers_measured_person_ap(tmp_path: Path) -> None:
    """The demo model: best TUD person AP, then best VOC mAP; unreadable files are skipped and
    an empty folder is a one-line usage error."""
    with pytest.raises(app.UsageError, match="no model artifact"):
        app.find_default_artifact(tmp_path)
    figures = {"a": {"voc_sample_map_all": 0.60}, "b": {"voc_sample_map_all": 0.58,
               "tud_person_ap": 0.80}, "c": {"voc_sample_map_all": 0.59}}  # fmt: skip
    for name, measured in figures.items():
        art = random_network(np.random.default_rng(5), height=32, width=32)
        art.metadata = {"measured": measured}
        save(art, tmp_path / f"yolo-fastest-voc-{name}.npz")
    (tmp_path / "yolo-fastest-voc-zz.npz").write_bytes(b"not an artifact")
    assert app.find_default_artifact(tmp_path).name == "yolo-fastest-voc-b.npz"
    (tmp_path / "yolo-fastest-voc-b.npz").unlink()
    assert app.find_default_artifact(tmp_path).name == "yolo-fastest-voc-a.npz"
