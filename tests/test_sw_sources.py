"""Frame sources (sw/sources.py): nothing waits forever (FIFOs, stalled streams), file:// URLs,
folders whose first image is broken, tiny or empty, the ``files`` listing, ``end_reason``.

Every test that could hang if the code were wrong has a pytest-timeout and does the risky call
in a thread joined with a bound; outcomes never depend on sleeps.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from sw.sources import (
    MIN_IMAGE_SIDE,
    CaptureSource,
    FolderSource,
    Source,
    SourceError,
    VideoFileSource,
    open_source,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")


def _bounded(fn: Callable[[], Any], bound: float = 10.0) -> Any:
    """``fn()`` in a daemon thread; fail (instead of hanging) when it takes over ``bound`` s."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(bound)
    if t.is_alive():
        pytest.fail(f"call still blocked after {bound} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _image(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _read_all(src: Source) -> list[tuple[int, tuple[int, ...]]]:
    out = []
    while (f := src.read()) is not None:
        out.append((f.index, f.image.shape))
    return out


def _good_folder(folder: Path, n: int = 3) -> None:
    folder.mkdir()
    for i in range(n):
        assert cv2.imwrite(str(folder / f"b{i}.png"), _image(i))


def _clip(path: Path, frames: int = 5) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert w.isOpened()
    for i in range(frames):
        w.write(_image(i))
    w.release()
    return path


# --- non-regular files -------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("how", ["path", "symlink", "file_url"])
def test_fifo_as_input_is_refused_at_once(tmp_path, how) -> None:
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    spec = {"path": str(fifo), "file_url": fifo.as_uri()}.get(how)
    if how == "symlink":
        (tmp_path / "link.mp4").symlink_to(fifo)
        spec = str(tmp_path / "link.mp4")
    with pytest.raises(SourceError) as e:
        _bounded(lambda: open_source(spec))
    assert str(e.value) == f"input {spec!r} is not a regular file (a FIFO)"
    with pytest.raises(SourceError, match="not a regular file"):  # the class itself checks too
        _bounded(lambda: VideoFileSource(fifo))


def test_other_devices_are_refused_but_symlink_to_a_file_is_fine(tmp_path) -> None:
    with pytest.raises(SourceError, match=r"'/dev/null' is not a regular file \(a character"):
        open_source("/dev/null")
    clip = _clip(tmp_path / "clip.avi")
    (tmp_path / "link.avi").symlink_to(clip)
    src = open_source(str(tmp_path / "link.avi"))
    assert isinstance(src, VideoFileSource) and src.files == [clip.resolve()]
    assert len(_read_all(src)) == 5 and src.end_reason is None
    src.close()
    (tmp_path / "dangling.avi").symlink_to(tmp_path / "gone.avi")
    with pytest.raises(SourceError, match="does not exist \\(a broken symbolic link\\)"):
        open_source(str(tmp_path / "dangling.avi"))


@pytest.mark.timeout(20)
def test_fifo_and_other_non_files_inside_a_folder_are_skipped(tmp_path) -> None:
    folder = tmp_path / "imgs"
    _good_folder(folder)  # b0 b1 b2
    os.mkfifo(folder / "a0.jpg")  # index 0
    os.mkfifo(tmp_path / "elsewhere.fifo")
    (folder / "a1.png").symlink_to(tmp_path / "elsewhere.fifo")  # index 1: a link to a FIFO
    (folder / "a2.png").mkdir()  # index 2: a folder named like an image
    (folder / "c0.png").symlink_to(folder / "b1.png")  # index 6: a link to an image: read
    (folder / "notes.txt").write_text("not an image")  # not listed at all
    src = open_source(str(folder))
    assert isinstance(src, FolderSource) and src.total == 7
    frames = _bounded(lambda: _read_all(src))
    assert [i for i, _ in frames] == [3, 4, 5, 6]
    assert all(shape == (48, 64, 3) for _, shape in frames)
    assert src.skipped == [0, 1, 2] and src.end_reason is None
    assert src.skip_reasons[0] == "not a regular file (a FIFO)"
    assert src.skip_reasons[1] == "not a regular file (a FIFO)"
    assert src.skip_reasons[2] == "not a regular file (a folder)"
    root = folder.resolve()
    assert src.files == [root / "b0.png", root / "b1.png", root / "b2.png", root / "b1.png"]


# --- file:// URLs ------------------------------------------------------------------------------


def test_file_urls_are_the_path(tmp_path, monkeypatch) -> None:
    clip = _clip(tmp_path / "my clip.avi")
    folder = tmp_path / "imgs"
    _good_folder(folder)
    for spec in [clip.as_uri(), "file://localhost" + clip.as_uri()[len("file://"):],
                 "file:" + str(clip).replace(" ", "%20")]:  # fmt: skip
        assert "%20" in spec
        src = open_source(spec)
        assert isinstance(src, VideoFileSource) and not src.live, spec
        assert src.files == [clip.resolve()] and len(_read_all(src)) == 5
        src.close()
    src = open_source(folder.as_uri())
    assert isinstance(src, FolderSource) and len(_read_all(src)) == 3
    assert src.files == [folder.resolve() / f"b{i}.png" for i in range(3)]
    # file:relative is no URL (RFC 8089): a path of that name, which does not exist here
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match="does not exist .*file:///abs/path"):
        open_source("file:imgs")
    with pytest.raises(SourceError, match="another host"):
        open_source("file://example.org/clip.avi")
    with pytest.raises(SourceError, match="does not exist"):
        open_source((tmp_path / "missing.avi").as_uri())


# --- folders whose first image is broken, tiny or empty ----------------------------------------


def _first_image(kind: str) -> tuple[str, bytes]:
    if kind == "truncated_jpeg":
        ok, buf = cv2.imencode(".jpg", _image(9))
        return "a0.jpg", buf.tobytes()[: len(buf) // 2]
    if kind == "garbage_jpeg":
        return "a0.jpg", b"not a jpeg"
    if kind == "empty":
        return "a0.jpg", b""
    size = {"1x1": (1, 1), "2x3": (2, 3), "wide_sliver": (1, 640)}[kind]
    ok, buf = cv2.imencode(".png", np.full((*size, 3), 200, np.uint8))
    return "a0.png", buf.tobytes()


KINDS = ["truncated_jpeg", "garbage_jpeg", "empty", "1x1", "2x3", "wide_sliver"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_first_image_is_skipped_and_the_good_ones_read(tmp_path, kind) -> None:
    folder = tmp_path / "imgs"
    _good_folder(folder)
    name, data = _first_image(kind)
    (folder / name).write_bytes(data)
    src = open_source(str(folder))
    assert src.files[0] == (folder / name).resolve() and len(src.files) == 4  # listed, not read
    assert _read_all(src) == [(1, (48, 64, 3)), (2, (48, 64, 3)), (3, (48, 64, 3))]
    assert src.skipped == [0] and src.end_reason is None
    why = src.skip_reasons[0]
    if kind in ("1x1", "2x3", "wide_sliver"):
        assert why.startswith("degenerate image") and str(MIN_IMAGE_SIDE) in why
    else:
        assert why in ("empty file", "undecodable", "truncated JPEG (no end-of-image marker)")


def test_a_small_but_usable_image_is_kept(tmp_path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), _image(1, MIN_IMAGE_SIDE, MIN_IMAGE_SIDE))
    cv2.imwrite(str(folder / "b.png"), np.zeros((20, 30), np.uint8))  # grey: becomes BGR
    assert _read_all(open_source(str(folder))) == [(0, (16, 16, 3)), (1, (20, 30, 3))]


def test_empty_folder_and_no_images(tmp_path) -> None:
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(SourceError, match="holds no images"):
        open_source(str(tmp_path))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["1x1", "truncated_jpeg"])
def test_the_app_runs_past_a_bad_first_image(tmp_path, capsys, kind) -> None:
    """End to end: the run is not stopped by the first image; the good ones are annotated at
    their own size, and the bad one gets no output."""
    from sim.reference.randnet import random_network
    from sw import app
    from sw.artifact import save

    art = random_network(np.random.default_rng(5), height=64, width=64)
    art.classes = ["a", "b"]
    model = save(art, tmp_path / "m.npz")
    folder = tmp_path / "imgs"
    _good_folder(folder)
    name, data = _first_image(kind)
    (folder / name).write_bytes(data)
    rc = app.main(["detect", str(folder), "--model", str(model), "--out-dir",
                   str(tmp_path / "out"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    rep = json.loads((tmp_path / "out" / "imgs.report.json").read_text())
    assert rep["frames_out"] == 3 and rep["skipped_undecodable"] == [0] and rep["error"] is None
    for i in range(3):
        assert cv2.imread(str(tmp_path / "out" / f"b{i}.png")).shape == (48, 64, 3)
    assert not (tmp_path / "out" / name).exists()


# --- live streams that stall -------------------------------------------------------------------


class _StallingMjpeg:
    """An MJPEG-over-HTTP server on 127.0.0.1 that sends ``frames`` frames, then nothing (the
    connection stays open) until ``release`` is set, or never answers at all (``frames=None``
    : headers included)."""

    def __init__(self, frames: int | None) -> None:
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if frames is None:
                    owner.release.wait(60)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(frames):
                    ok, buf = cv2.imencode(".jpg", _image(i))
                    jpeg = buf.tobytes()
                    head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                    self.wfile.write(head.encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                    self.wfile.flush()
                owner.release.wait(60)  # stalled: the connection open, no more data

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stalling() -> Any:
    servers: list[_StallingMjpeg] = []

    def make(frames: int | None) -> _StallingMjpeg:
        servers.append(_StallingMjpeg(frames))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.mark.timeout(60)
def test_a_stalled_stream_ends_after_the_timeout_with_a_reason(stalling) -> None:
    server = stalling(6)
    src = _bounded(lambda: open_source(server.url, read_timeout_s=2), 30)
    assert isinstance(src, CaptureSource) and src.live and src.files == []
    got = []
    t0 = time.monotonic()
    for _ in range(50):
        f = _bounded(src.read, 30)
        if f is None:
            break
        got.append(f.index)
        assert f.image.shape == (48, 64, 3)
        t0 = time.monotonic()  # the stall starts after the last frame delivered
    stalled_for = time.monotonic() - t0
    assert got == list(range(len(got))) and len(got) >= 3  # FFmpeg may keep one or two back
    assert stalled_for < 15
    assert src.end_reason == f"stream {server.url!r} delivered no frame for 2.0 s"
    assert src.read() is None  # stays ended
    t1 = time.monotonic()
    src.close()
    assert time.monotonic() - t1 < 10 and not src.thread.is_alive()  # joined: no thread left
    assert src.end_reason == f"stream {server.url!r} delivered no frame for 2.0 s"


@pytest.mark.timeout(60)
def test_a_stream_that_never_answers_is_refused_within_a_bound(stalling) -> None:
    server = stalling(None)
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=r"cannot open stream 'http://127\.0\.0\.1:"):
        _bounded(lambda: open_source(server.url, read_timeout_s=2), 30)
    assert time.monotonic() - t0 < 15


class _StuckCapture:
    """A VideoCapture stand-in whose ``read`` blocks until released (a backend that ignores its
    own timeout), after ``good`` frames."""

    def __init__(self, good: int) -> None:
        self.good, self.unblock, self.released = good, threading.Event(), False

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's naming
        return True

    def get(self, prop: int) -> float:
        return 30.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.good > 0:
            self.good -= 1
            return True, _image(self.good)
        self.unblock.wait(60)
        return False, None

    def release(self) -> None:
        self.released = True


@pytest.mark.timeout(60)
def test_a_read_stuck_inside_opencv_is_bounded_and_reported(monkeypatch) -> None:
    fake = _StuckCapture(good=3)
    monkeypatch.setattr(CaptureSource, "_make_capture", lambda self, target: fake)
    src = CaptureSource("rtsp://camera.invalid/stream", read_timeout_s=1)
    assert src.fps == 30.0 and src.name == "stream 'rtsp://camera.invalid/stream'"
    assert [f.index for f in iter(lambda: _bounded(src.read, 20), None)] == [0, 1, 2]
    assert src.end_reason == "stream 'rtsp://camera.invalid/stream' delivered no frame for 1.0 s"
    src.close(join_timeout_s=0.2)
    assert src.thread.is_alive() and src.thread.daemon  # cannot keep the process alive
    assert "reader thread is still blocked in OpenCV" in src.end_reason
    assert src.end_reason.startswith("stream 'rtsp://camera.invalid/stream' delivered no frame")
    fake.unblock.set()  # the backend's read returns at last: the thread releases and ends
    src.thread.join(20)
    assert not src.thread.is_alive() and fake.released


@pytest.mark.timeout(60)
def test_a_camera_whose_reads_fail_ends_with_a_reason_and_close_joins(monkeypatch) -> None:
    class Failing(_StuckCapture):
        def read(self) -> tuple[bool, np.ndarray | None]:
            if self.good > 0:
                self.good -= 1
                return True, _image(self.good)
            return False, None

    fake = Failing(good=2)
    monkeypatch.setattr(CaptureSource, "_make_capture", lambda self, target: fake)
    src = open_source("0", read_timeout_s=5)
    assert isinstance(src, CaptureSource) and src.name == "camera 0"
    assert [f.index for f in iter(lambda: _bounded(src.read, 20), None)] == [0, 1]
    assert src.end_reason == "camera 0 ended: 10 reads in a row failed"
    src.close()
    assert not src.thread.is_alive() and fake.released


@pytest.mark.timeout(60)
def test_close_before_the_end_is_a_normal_end_and_joins(monkeypatch) -> None:
    class Endless(_StuckCapture):
        def read(self) -> tuple[bool, np.ndarray | None]:
            return True, _image(0)

    fake = Endless(good=0)
    monkeypatch.setattr(CaptureSource, "_make_capture", lambda self, target: fake)
    src = open_source("rtsp://camera.invalid/x", read_timeout_s=5)
    assert [_bounded(src.read).index for _ in range(4)] == [0, 1, 2, 3]
    src.close()  # the reader is blocked handing over (the queue is full): stops at once
    assert not src.thread.is_alive() and fake.released and src.end_reason is None
    assert src.read() is None


@pytest.mark.timeout(120)
def test_the_app_ends_a_stalled_stream_with_one_line_and_complete_outputs(
    tmp_path, capsys, stalling
) -> None:
    """``shiftdet detect URL --source-timeout 2`` on a stream that stalls after 6 frames: exit 1,
    the last line says why, and the outputs hold every frame that came (video segments of a
    live source finalised, report final)."""
    from videos import mp4_frames

    from sim.reference.randnet import random_network
    from sw import app
    from sw.artifact import save

    art = random_network(np.random.default_rng(5), height=64, width=64)
    art.classes = ["a", "b"]
    model = save(art, tmp_path / "m.npz")
    server = stalling(6)
    out = tmp_path / "out"
    t0 = time.monotonic()
    rc = _bounded(lambda: app.main(["detect", server.url, "--model", str(model), "--out-dir",
                                    str(out), "--no-progress", "--source-timeout", "2"]),
                  90)  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and time.monotonic() - t0 < 60, err
    assert err.strip().splitlines()[-1] == (
        f"error: capture: stream {server.url!r} delivered no frame for 2.0 s"
    )
    lines = (out / "live.jsonl").read_text().splitlines()
    rep = json.loads((out / "live.report.json").read_text())
    assert rep["final"] and rep["frames_out"] == len(lines) >= 3 and rep["error"]
    segs = sorted(out.glob("live.*.mp4"))  # a live source writes segments by default
    assert [p.name for p in segs] == ["live.0000.mp4"] == rep["video"]
    assert mp4_frames(segs[0]) == len(lines)


def test_a_still_image_is_one_frame_and_a_bad_one_one_line(tmp_path) -> None:
    from sw.sources import ImageFileSource

    cv2.imwrite(str(tmp_path / "shot.png"), _image(4, 40, 56))
    src = open_source(str(tmp_path / "shot.png"))
    assert isinstance(src, ImageFileSource) and src.kind == "image" and src.total == 1
    assert src.file_name(0) == "shot.png" and src.files == [(tmp_path / "shot.png").resolve()]
    assert _read_all(src) == [(0, (40, 56, 3))]
    folder = open_source(str(tmp_path))
    assert folder.kind == "folder" and folder.file_name(0) == "shot.png"
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(SourceError, match=r"cannot read image .*bad\.jpg.*truncated JPEG"):
        open_source(str(tmp_path / "bad.jpg"))
