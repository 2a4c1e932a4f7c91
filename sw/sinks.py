"""Outputs of the video app: annotated mp4 or images, JSON-lines detections, the files of
``--formats`` (COCO results JSON, MOTChallenge det.txt, VOC XML: ``sw/formats.py`` renders
them), a window, an MJPEG server.

Each sink writes frame by frame and is closed exactly once, also after an error, Ctrl-C or a
signal: ``close()`` finalises the mp4 (its index is written then, so the file plays), and every
JSON line goes to the file in one ``write`` as soon as it is made, so the file is complete up to
the last frame handled, also after ``kill -9``.

What survives what:

* a hard kill (SIGKILL, power loss) cannot run ``close()``: an mp4 without its index does not
  play. With ``segment_frames`` the video is a series of mp4 files rotated every N frames, each
  finalised when the next one starts, so such a stop loses at most the last segment;
* a full disk: before every video frame and JSON line the sink checks the free space of its
  folder and stops with :class:`OutputError` naming the file while ``RESERVE_BYTES`` (plus
  room for the mp4 index) are still free, so the index, the report and the timeline can still
  be written; a write that fails anyway (quota, I/O error) is one line too, and a JSON line
  that was half written is cut off again, so the file never ends in half a line;
* small files (the report, the timeline PNG, each annotated image and VOC XML) are written to
  a temporary file and renamed over the old one: a failure leaves the earlier file as it was;
* the COCO results file is a valid JSON list after every frame (:class:`CocoJsonSink`), the
  det.txt holds whole lines (:class:`MotSink`), as the JSON lines do.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sw.atomic import Content, replace_file

# Kept free on an output's file system so that the outputs can be finalised (mp4 index, the
# report, the timeline PNG) after a sink stopped for a full disk.
RESERVE_BYTES = 4 << 20


class OutputError(RuntimeError):
    """An output that cannot be written; the message is one line."""


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still put on ``folder``'s file system."""
    return shutil.disk_usage(folder).free


# The system call the JSON-lines sink writes with (a test injects ENOSPC here).
_os_write: Callable[[int, bytes], int] = os.write


def _why(e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    return e.strerror or str(e)


def check_space(path: Path, need: int) -> None:
    """Raise :class:`OutputError` when writing ``need`` more bytes next to ``path`` would eat
    into the reserve kept for finalising the outputs."""
    free = free_bytes(path.parent)
    if free < need + RESERVE_BYTES:
        raise OutputError(
            f"disk full: {str(path)!r}: {free / 2**20:.1f} MiB free on its file system, "
            f"{(need + RESERVE_BYTES) / 2**20:.1f} MiB are kept for finalising the outputs"
        )


def write_atomic(path: Path, data: Content) -> None:
    """``sw.atomic.replace_file`` for an output: readers see the old file or the new one, never
    a part; an OS error is an :class:`OutputError` naming the file."""
    try:
        replace_file(path, data)
    except OSError as e:
        raise OutputError(f"cannot write {str(path)!r}: {_why(e)}") from None


def check_writable(path: Path) -> None:
    """Fail before any work when ``path`` cannot be created (a missing or read-only folder, a
    folder in the way, a path through a file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create folder for {str(path)!r}: {e.strerror or e}") from None
    if path.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: it is a folder")
    try:  # a probe file beside it: leaves no empty output behind if the run never starts
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".probe-"):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise OutputError(f"cannot write {str(path)!r}: {e.strerror or e}") from None


class VideoSink:
    """An mp4 (MPEG-4 part 2, OpenCV's FFmpeg writer), opened at the first frame's size; frames
    of another size (an image folder) are resized to it. With ``segment_frames`` it writes
    ``STEM.0000.mp4``, ``STEM.0001.mp4``, ... of that many frames each (each finalised when the
    next starts), else one file ``path``."""

    def __init__(self, path: Path, fps: float, segment_frames: int | None = None) -> None:
        check_writable(path)
        self.path, self.fps, self.segment_frames = path, fps, segment_frames
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0  # in all segments
        self.in_segment = 0
        self.segments: list[Path] = []  # written so far, the current one last

    @staticmethod
    def segment_path(path: Path, k: int) -> Path:
        return path.with_name(f"{path.stem}.{k:04d}{path.suffix}")

    def _open(self) -> None:
        k = len(self.segments)
        path = self.path if self.segment_frames is None else self.segment_path(self.path, k)
        assert self.size is not None
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                      self.size)  # fmt: skip
        if not self.writer.isOpened():
            self.writer = None
            raise OutputError(f"cannot write video {str(path)!r} (FFmpeg writer)")
        self.segments.append(path)
        self.in_segment = 0

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if self.size is None:
            # mp4v needs even sides; a tiny first image still gives a viewable video.
            self.size = (max(2 * ((w + 1) // 2), 16), max(2 * ((h + 1) // 2), 16))
        if self.writer is not None and self.in_segment == self.segment_frames:
            self.writer.release()
            self.writer = None
        # Room for this frame uncompressed (a bound on its encoding) and the mp4 index.
        check_space(self.segments[-1] if self.segments else self.path,
                    3 * self.size[0] * self.size[1] + 64 * (self.in_segment + 1))  # fmt: skip
        if self.writer is None:
            self._open()
        if (w, h) != self.size:
            frame = cv2.resize(frame, self.size)
        assert self.writer is not None
        self.writer.write(frame)
        self.frames += 1
        self.in_segment += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


class AppendSink:
    """A file written in whole records, each one ``write`` system call (no user-space buffer):
    the file holds every complete record written, whatever stops the program; a record that
    failed half-way is cut off again. ``what`` names a record in the error message."""

    what = "record"

    def __init__(self, path: Path) -> None:
        check_writable(path)
        self.path = path
        try:
            self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as e:
            raise OutputError(f"cannot write {str(path)!r}: {_why(e)}") from None
        self.size = 0  # bytes of complete records
        self.lines = 0  # records written

    def _write_at(self, data: bytes, tail: bytes = b"") -> None:
        """Write ``data`` over the file's last bytes ``tail`` (a closing tail the data ends with
        again) in one go; on failure the file is put back as it was."""
        assert self.fd is not None, "write after close"
        check_space(self.path, len(data))
        at = self.size - len(tail)
        done = 0
        try:
            os.lseek(self.fd, at, os.SEEK_SET)
            while done < len(data):
                done += _os_write(self.fd, data[done:])
        except OSError as e:
            try:  # never leave half a record: back to the last complete one
                os.ftruncate(self.fd, at)
                os.lseek(self.fd, at, os.SEEK_SET)
                if tail:
                    os.write(self.fd, tail)
            except OSError:
                pass
            raise OutputError(
                f"cannot write {str(self.path)!r}: {_why(e)} (it holds the first {self.lines} "
                f"{self.what}(s), complete)"
            ) from None
        self.size = at + len(data)
        self.lines += 1

    def write_bytes(self, data: bytes) -> None:
        self._write_at(data)

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.fsync(fd)
            except OSError:
                pass  # the records are written; fsync only hurries them to the disk
            finally:
                os.close(fd)


class JsonlSink(AppendSink):
    """One JSON object per line, each line one ``write``."""

    what = "frame"

    def write(self, record: dict[str, Any]) -> None:
        self.write_bytes((json.dumps(record, separators=(",", ":")) + "\n").encode())


class MotSink(AppendSink):
    """MOTChallenge ``det.txt``: a frame's rows in one ``write`` (frames without boxes write
    nothing, as in MOTChallenge's own files)."""

    what = "frame"

    def write(self, rows: str) -> None:
        if rows:
            self.write_bytes(rows.encode())


class CocoJsonSink(AppendSink):
    """A COCO results file, a JSON array of ``{image_id, category_id, bbox, score}``, that is a
    valid JSON document after every frame: each frame's entries and the closing ``]`` are one
    ``write`` over the previous closing ``]``, so a hard kill leaves a file that still loads
    (every frame up to the last whole one), and memory stays flat however long it runs."""

    what = "frame"
    TAIL = b"\n]\n"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entries = 0
        self._write_at(b"[" + self.TAIL)
        self.lines = 0

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        body = ",\n".join(json.dumps(r, separators=(",", ":")) for r in records)
        lead = b",\n" if self.entries else b"\n"
        self._write_at(lead + body.encode() + self.TAIL, self.TAIL)
        self.entries += len(records)


class ImageSink:
    """One file per input image, written atomically (temp file + rename): ``folder / name``,
    encoded by the name's suffix. Every file is complete whenever the program stops."""

    JPEG_QUALITY = 95

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written: list[Path] = []  # bounded by the input folder's size

    def write(self, name: str, frame: np.ndarray) -> Path:
        path = self.folder / name
        suffix = path.suffix.lower()
        jpeg = suffix in (".jpg", ".jpeg")
        params = [cv2.IMWRITE_JPEG_QUALITY, self.JPEG_QUALITY] if jpeg else []
        try:
            ok, buf = cv2.imencode(suffix, frame, params)
        except cv2.error:
            ok = False
        if not ok:
            raise OutputError(f"cannot encode {str(path)!r} as {suffix} (OpenCV)")
        data = buf.tobytes()
        check_space(path, len(data))
        write_atomic(path, data)
        self.written.append(path)
        return path

    def write_file(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        check_space(path, len(data))
        write_atomic(path, data)
        self.written.append(path)
        return path

    def close(self) -> None:
        pass


class WindowSink:
    """An OpenCV window (needs an OpenCV build with GUI support, not the headless wheel)."""

    def __init__(self, title: str = "shiftdet") -> None:
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise OutputError(
                "this OpenCV build has no GUI support (opencv-python-headless); use --serve PORT "
                "to watch in a browser, or write the mp4"
            ) from None

    def write(self, frame: np.ndarray) -> None:
        cv2.imshow(self.title, frame)
        cv2.waitKey(1)

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


class MjpegServer:
    """Serves the newest annotated frame as an MJPEG stream on http://HOST:PORT/ (default
    127.0.0.1, this machine only). The stream has no authentication and no encryption: whoever
    reaches the address sees the video."""

    def __init__(self, port: int, host: str = "127.0.0.1", quality: int = 80) -> None:
        self.quality = quality
        self.jpeg: bytes | None = None
        self.cond = threading.Condition()
        self.closed = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep the console for the app
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                last = None
                while True:
                    with server.cond:
                        server.cond.wait_for(
                            lambda seen=last: server.closed or server.jpeg is not seen, 1.0
                        )
                        if server.closed:
                            return
                        last = jpeg = server.jpeg
                    if jpeg is None:
                        continue
                    try:
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                            + str(len(jpeg)).encode()
                            + b"\r\n\r\n"
                            + jpeg
                            + b"\r\n"
                        )
                    except OSError:  # the browser went away
                        return

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise OutputError(f"cannot serve MJPEG on {host}:{port}: {e.strerror or e}") from None
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg",
                                       daemon=True)  # fmt: skip
        self.thread.start()

    def write(self, frame: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self.cond:
                self.jpeg = buf.tobytes()
                self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
