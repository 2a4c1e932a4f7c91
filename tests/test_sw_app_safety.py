"""`shiftdet detect` never loses or clobbers a user's files: an output that is an input is
refused, nothing is created before every check has passed, every stop signal finalises the
outputs (and a hard kill loses at most the last video segment), a full disk stops the run with
one line and valid files, and bad arguments are one line.

Signals are delivered from inside the pipeline at a known frame (``signal.raise_signal`` in
the output stage) or to a child process after it wrote a known number of lines, and every
handler a test relies on is installed by the test: the outcome does not depend on how the
suite was launched (a background job of a non-interactive shell starts with SIGINT ignored).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from app_run import run_detect as _run
from app_run import sha256_of as _sha
from videos import mp4_frames, read_jsonl

from sw import app, sinks
from sw.pipeline import Item

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 frames of 96x64 (two minutes at 25 fps): a run a test can stop in the middle
    however fast the machine is."""
    path = tmp_path_factory.mktemp("clip") / "long.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (96, 64))
    rng = np.random.default_rng(11)
    base = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    for i in range(3000):
        w.write(np.roll(base, i, axis=1))
    w.release()
    return path


@contextlib.contextmanager
def _handlers(**handlers: object) -> Iterator[None]:
    """Install signal handlers for a test (SIG_DFL / SIG_IGN / a function) and put the old
    ones back."""
    old = {}
    try:
        for name, h in handlers.items():
            s = getattr(signal, name)
            old[s] = signal.signal(s, h)
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _signal_at(monkeypatch: pytest.MonkeyPatch, frame: int, signum: int) -> None:
    """Deliver ``signum`` to this process once the output stage has written ``frame``."""
    real = app.Detector.output

    def output(self: app.Detector, item: Item) -> None:
        real(self, item)
        if item.index == frame:
            signal.raise_signal(signum)

    monkeypatch.setattr(app.Detector, "output", output)


# -- 1. never write over an input; earlier outputs are not clobbered --------------------------


def test_output_that_is_the_input_is_refused(tmp_path, capsys, model, clip) -> None:
    src = tmp_path / "TUD-Campus.mp4"
    src.write_bytes(clip.read_bytes())
    before = _sha(src)
    # the plain case: the input inside the output folder, so its .mp4 output is the input
    rc, _, err = _run(capsys, str(src), "--model", str(model), "--out-dir", str(tmp_path))
    assert rc == 2 and err.count("\n") == 1 and "is the input" in err, err
    # the same file through a symlink and through a hard link in another folder
    for kind in ("symlink", "hardlink"):
        out = tmp_path / kind
        out.mkdir()
        (os.symlink if kind == "symlink" else os.link)(src, out / "TUD-Campus.mp4")
        rc, _, err = _run(capsys, str(src), "--model", str(model), "--out-dir", str(out))
        assert rc == 2 and "is the input" in err and err.count("\n") == 1, (kind, err)
        assert sorted(p.name for p in out.iterdir()) == ["TUD-Campus.mp4"]
    assert _sha(src) == before
    assert not (tmp_path / "TUD-Campus.jsonl").exists()


def test_output_that_is_an_image_of_the_input_folder_is_refused(tmp_path, capsys,
                                                                 model) -> None:  # fmt: skip
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((40, 60, 3), 40 * i, np.uint8))
    # an earlier run's timeline left in the folder is one of its images now
    cv2.imwrite(str(folder / "imgs.timeline.png"), np.zeros((40, 60, 3), np.uint8))
    before = _sha(folder / "imgs.timeline.png")
    rc, _, err = _run(capsys, str(folder), "--model", str(model), "--out-dir", str(folder),
                      "--overwrite")  # fmt: skip
    assert rc == 2 and "is the input" in err and "imgs.timeline.png" in err, err
    assert _sha(folder / "imgs.timeline.png") == before
    assert sorted(p.name for p in folder.iterdir()) == [
        "000.png", "001.png", "002.png", "imgs.timeline.png"]  # fmt: skip


def test_earlier_outputs_need_overwrite(tmp_path, capsys, model, clip) -> None:
    args = [str(clip), "--model", str(model), "--out-dir", str(tmp_path), "--max-frames", "3"]
    assert _run(capsys, *args)[0] == 0
    names = {p.name: _sha(p) for p in tmp_path.iterdir()}
    assert set(names) == {f"TUD-Campus{e}" for e in (".mp4", ".jsonl", ".report.json",
                                                     ".timeline.png")}  # fmt: skip
    rc, _, err = _run(capsys, *args[:-1], "5")
    assert rc == 2 and "exists" in err and "--overwrite" in err and err.count("\n") == 1
    assert {p.name: _sha(p) for p in tmp_path.iterdir()} == names  # untouched
    rc, _, err = _run(capsys, *args[:-1], "5", "--overwrite")
    assert rc == 0, err
    assert len(read_jsonl(tmp_path / "TUD-Campus.jsonl")) == 5
    # segments of an earlier run are outputs too: refused, and removed by --overwrite
    seg = [*args, "--segment-minutes", str(2 / 25 / 60), "--name", "seg"]  # 2 frames each
    assert _run(capsys, *seg)[0] == 0
    assert sorted(p.name for p in tmp_path.glob("seg.*.mp4")) == ["seg.0000.mp4", "seg.0001.mp4"]
    rc, _, err = _run(capsys, *seg[:-2], "--name", "seg", "--no-video")
    assert rc == 2 and "exists" in err
    rc, _, err = _run(capsys, *seg[:-4], "--name", "seg", "--no-video", "--overwrite")
    assert rc == 0 and not list(tmp_path.glob("seg.*.mp4")), err


# -- 2. nothing created or truncated before every check has passed ---------------------------


@pytest.mark.parametrize("case", ["pynq", "emulate_build", "serve_port_taken", "bad_name"])
def test_a_failed_check_creates_and_truncates_nothing(tmp_path, capsys, model, clip,
                                                      case) -> None:  # fmt: skip
    import socket

    out = tmp_path / "out"
    out.mkdir()
    (out / "TUD-Campus.jsonl").write_text('{"frame": 0, "detections": []}\n')  # earlier run
    extra: list[str] = ["--overwrite"]
    blocker = None
    if case == "pynq":
        extra += ["--backend", "pynq"]
    elif case == "emulate_build":
        (tmp_path / "other.json").write_text(json.dumps({"lanes": 8, "max_strip": 16}))
        extra += ["--emulate-build", str(tmp_path / "other.json")]
    elif case == "serve_port_taken":
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        extra += ["--serve", str(blocker.getsockname()[1])]
    elif case == "bad_name":
        extra += ["--name", "../../x"]
    try:
        rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(out),
                          *extra)  # fmt: skip
    finally:
        if blocker is not None:
            blocker.close()
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert sorted(p.name for p in out.iterdir()) == ["TUD-Campus.jsonl"]
    assert (out / "TUD-Campus.jsonl").read_text() == '{"frame": 0, "detections": []}\n'
    assert not (tmp_path / "x.jsonl").exists()


# -- 3. every stop leaves valid files --------------------------------------------------------


@pytest.mark.parametrize("name,status", [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_stop_signal_finalises_every_output(tmp_path, capsys, model, clip, monkeypatch,
                                              name, status) -> None:  # fmt: skip
    _signal_at(monkeypatch, 3, getattr(signal, name))
    with _handlers(SIGINT=signal.default_int_handler, SIGTERM=signal.SIG_DFL,
                   SIGHUP=signal.SIG_DFL):  # fmt: skip
        rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(tmp_path))
    assert rc == status, err
    assert err.strip().splitlines()[-1].startswith(f"interrupted ({name})")
    frames = [r["frame"] for r in read_jsonl(tmp_path / "TUD-Campus.jsonl")]
    assert frames == list(range(len(frames))) and 4 <= len(frames) < 71
    assert mp4_frames(tmp_path / "TUD-Campus.mp4") == len(frames)
    rep = json.loads((tmp_path / "TUD-Campus.report.json").read_text())
    assert rep["final"] and rep["interrupted"] and rep["signal"] == name
    assert rep["frames_out"] == len(frames)


def test_sequential_mode_stops_on_a_signal_too(tmp_path, capsys, model, clip,
                                               monkeypatch) -> None:  # fmt: skip
    _signal_at(monkeypatch, 2, signal.SIGTERM)
    with _handlers(SIGTERM=signal.SIG_DFL):
        rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(tmp_path),
                          "--sequential")  # fmt: skip
    assert rc == 143, err
    assert len(read_jsonl(tmp_path / "TUD-Campus.jsonl")) == 3
    assert mp4_frames(tmp_path / "TUD-Campus.mp4") == 3


def test_an_ignored_sigint_stays_ignored_and_sigterm_still_stops(tmp_path, capsys, model, clip,
                                                                 monkeypatch) -> None:  # fmt: skip
    """A run started with SIGINT ignored (nohup, a background job) is not stopped by it, and
    stops cleanly on SIGTERM."""
    _signal_at(monkeypatch, 2, signal.SIGINT)
    with _handlers(SIGINT=signal.SIG_IGN, SIGTERM=signal.SIG_DFL):
        rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(tmp_path),
                          "--max-frames", "8")  # fmt: skip
        assert rc == 0 and len(read_jsonl(tmp_path / "TUD-Campus.jsonl")) == 8, err
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        _signal_at(monkeypatch, 2, signal.SIGTERM)
        rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(tmp_path),
                          "--overwrite")  # fmt: skip
    assert rc == 143 and 3 <= len(read_jsonl(tmp_path / "TUD-Campus.jsonl")) < 71, err


def test_ctrl_c_during_start_up_is_one_line_and_writes_nothing(tmp_path, capsys, model, clip,
                                                               monkeypatch) -> None:  # fmt: skip
    real = app.compile_model

    def compile_then_ctrl_c(*a: object, **k: object) -> object:
        plan = real(*a, **k)
        signal.raise_signal(signal.SIGINT)
        return plan

    monkeypatch.setattr(app, "compile_model", compile_then_ctrl_c)
    out = tmp_path / "out"
    with _handlers(SIGINT=signal.default_int_handler):
        rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(out))
    assert rc == 130 and err.strip().splitlines() == [
        "interrupted (SIGINT) during start-up: nothing written"]  # fmt: skip
    assert not out.exists() or not list(out.iterdir())


def test_a_second_ctrl_c_while_finalising_is_one_line(tmp_path, capfd, model, clip,
                                                      monkeypatch) -> None:  # fmt: skip
    """(capfd: the handler writes to file descriptor 2 directly.)"""
    _signal_at(monkeypatch, 3, signal.SIGINT)
    real_close = sinks.VideoSink.close

    def close_with_ctrl_c(self: sinks.VideoSink) -> None:
        signal.raise_signal(signal.SIGINT)  # the impatient user, while the mp4 is finalised
        real_close(self)

    monkeypatch.setattr(sinks.VideoSink, "close", close_with_ctrl_c)
    with _handlers(SIGINT=signal.default_int_handler):
        rc, _, err = _run(capfd, str(clip), "--model", str(model), "--out-dir", str(tmp_path))
    assert rc == 130, err
    assert "Traceback" not in err and err.count("already stopping") == 1
    n = len(read_jsonl(tmp_path / "TUD-Campus.jsonl"))
    assert mp4_frames(tmp_path / "TUD-Campus.mp4") == n


def _child(argv: list[str], out: Path) -> subprocess.Popen:
    """The real command in a child process, with the stop signals at their defaults whatever
    this test process inherited."""

    def reset() -> None:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "sw.app", "detect", *argv, "--no-progress"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=reset)  # fmt: skip


def _wait_for_lines(proc: subprocess.Popen, path: Path, n: int, limit_s: float = 120.0) -> None:
    """Poll (not sleep-and-hope) until ``path`` holds ``n`` lines; fail with the child's
    stderr if it ends or the bound passes first."""
    t_end = time.monotonic() + limit_s
    while time.monotonic() < t_end:
        if path.is_file() and path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended early ({proc.returncode}): {proc.stderr.read().decode()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {n} lines in {path} within {limit_s} s")


@pytest.mark.timeout(300)
def test_sigterm_to_the_real_command(tmp_path, model, long_clip) -> None:
    proc = _child([str(long_clip), "--model", str(model), "--out-dir", str(tmp_path)], tmp_path)
    _wait_for_lines(proc, tmp_path / "long.jsonl", 10)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()
    n = len(read_jsonl(tmp_path / "long.jsonl"))
    assert 10 <= n < 3000
    assert mp4_frames(tmp_path / "long.mp4") == n
    rep = json.loads((tmp_path / "long.report.json").read_text())
    assert rep["final"] and rep["signal"] == "SIGTERM" and rep["frames_out"] == n


@pytest.mark.timeout(300)
def test_kill_9_loses_at_most_the_last_segment(tmp_path, model, long_clip) -> None:
    per = 8  # frames per segment
    proc = _child([str(long_clip), "--model", str(model), "--out-dir", str(tmp_path),
                   "--segment-minutes", str(per / 25 / 60)], tmp_path)  # fmt: skip
    _wait_for_lines(proc, tmp_path / "long.jsonl", 4 * per + 1)
    proc.kill()
    proc.communicate(timeout=60)
    lines = read_jsonl(tmp_path / "long.jsonl")  # every line complete
    assert [r["frame"] for r in lines] == list(range(len(lines)))
    segs = sorted(tmp_path.glob("long.*.mp4"))
    assert len(segs) >= 4
    for s in segs[:-1]:  # every segment but the one being written plays, whole
        assert mp4_frames(s) == per, s
    assert len(lines) >= per * (len(segs) - 1)


# -- 4. a full disk ---------------------------------------------------------------------------


def _assert_valid_after_disk_full(out: Path, err: str, culprit: str) -> None:
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: output: ") and culprit in last, err
    assert "Traceback" not in err
    lines = read_jsonl(out / "TUD-Campus.jsonl")
    rep = json.loads((out / "TUD-Campus.report.json").read_text())
    assert rep["final"] and rep["error"] and rep["frames_out"] == len(lines)
    if (out / "TUD-Campus.mp4").exists():
        assert mp4_frames(out / "TUD-Campus.mp4") == len(lines)


def test_disk_full_on_the_jsonl_keeps_complete_lines(tmp_path, capsys, model, clip,
                                                     monkeypatch) -> None:  # fmt: skip
    calls = {"n": 0}
    real = sinks._os_write

    def write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 6:  # half of the sixth line reaches the disk, then it is full
            real(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(sinks, "_os_write", write)
    rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(tmp_path),
                      "--no-video")  # fmt: skip
    assert rc == 1
    _assert_valid_after_disk_full(tmp_path, err, "TUD-Campus.jsonl")
    assert len(read_jsonl(tmp_path / "TUD-Campus.jsonl")) == 5 and "disk full" in err


def test_low_disk_space_stops_before_the_video_breaks(tmp_path, capsys, model, clip,
                                                      monkeypatch) -> None:  # fmt: skip
    checks = {"n": 0}

    def free(folder: Path) -> int:
        checks["n"] += 1
        return 1 << 40 if checks["n"] <= 14 else sinks.RESERVE_BYTES  # full after a while

    monkeypatch.setattr(sinks, "free_bytes", free)
    rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(tmp_path))
    assert rc == 1
    _assert_valid_after_disk_full(tmp_path, err, "disk full")
    assert 3 <= len(read_jsonl(tmp_path / "TUD-Campus.jsonl")) < 71


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB file system (tmpfs; needs root, as CI and the dev machines run)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                       capture_output=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_really_full_disk(small_tmpfs, capsys, model, clip) -> None:
    big = small_tmpfs / "filler"
    with open(big, "wb") as f:  # leave about 5.5 MiB: the guard stops the run well before 71
        f.write(bytes(int(2.5 * 2**20)))
    out = small_tmpfs / "out"
    rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(out))
    assert rc == 1, err
    _assert_valid_after_disk_full(out, err, "disk full")
    assert 1 <= len(read_jsonl(out / "TUD-Campus.jsonl")) < 71


# -- 9. arguments checked up front; 12. the MJPEG server's address ---------------------------


@pytest.mark.parametrize("argv,expect", [
    (["--conf", "-1"], "--conf: -1 is not in [0, 1]"),
    (["--conf", "1.5"], "--conf: 1.5 is not in [0, 1]"),
    (["--nms", "nan"], "--nms: nan is not in [0, 1]"),
    (["--conf", "abc"], "--conf: 'abc' is not a number"),
    (["--serve", "70000"], "port 70000 is not in 0..65535"),
    (["--name", "../../x"], "must be a plain file name"),
    (["--name", "a/b"], "must be a plain file name"),
    (["--queue-depth", "0"], "--queue-depth: 0 must be > 0"),
    (["--max-frames", "-3"], "--max-frames: -3 must be > 0"),
    (["--timeout", "inf"], "--timeout: inf must be > 0"),
    (["--segment-minutes", "-1"], "--segment-minutes: -1 must be >= 0"),
])  # fmt: skip
def test_bad_arguments_are_one_line(tmp_path, capsys, model, clip, argv, expect) -> None:
    out = tmp_path / "out"
    rc, _, err = _run(capsys, str(clip), "--model", str(model), "--out-dir", str(out), *argv)
    assert rc == 2 and err.count("\n") == 1 and expect in err, err
    assert not out.exists() or not list(out.iterdir())


def test_accelerator_clock_must_be_positive(tmp_path, capsys, model, clip) -> None:
    for clock in (0, -200, "fast"):
        (tmp_path / "cfg.json").write_text(json.dumps({"clock_mhz": clock}))
        cfg = str(tmp_path / "cfg.json")
        out = str(tmp_path / "out")
        rc, _, err = _run(
            capsys, str(clip), "--model", str(model), "--out-dir", out, "--config", cfg
        )
        assert rc == 2 and err.count("\n") == 1 and "clock_mhz" in err, err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_serve_binds_loopback_unless_told_and_says_there_is_no_authentication(
    capsys: pytest.CaptureFixture,
) -> None:
    with pytest.raises(SystemExit):
        app.main(["detect", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--serve-host HOST" in help_text and "default 127.0.0.1" in help_text
    assert "no authentication" in help_text
    args = app.build_parser().parse_args(["detect", "x", "--serve", "0"])
    assert args.serve_host == "127.0.0.1"
    srv = sinks.MjpegServer(0, host="127.0.0.1")
    try:
        assert srv.httpd.server_address[0] == "127.0.0.1"
    finally:
        srv.close()
    args = app.build_parser().parse_args(["detect", "x", "--serve", "0", "--serve-host",
                                          "0.0.0.0"])  # fmt: skip
    assert args.serve_host == "0.0.0.0"
