"""Outputs of the video app: annotated mp4, JSON-lines detections, a window, an MJPEG server.

Each sink writes frame by frame and is closed exactly once, also after an error or Ctrl-C:
``close()`` finalises the mp4 (its index is written then, so the file plays), and every JSON line
is flushed as soon as it is written, so the file is complete up to the last frame handled.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np


class OutputError(RuntimeError):
    """An output that cannot be written; the message is one line."""


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
    of another size (an image folder) are resized to it."""

    def __init__(self, path: Path, fps: float) -> None:
        check_writable(path)
        self.path, self.fps = path, fps
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if self.writer is None:
            self.size = (w, h)
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"),
                                          self.fps, self.size)  # fmt: skip
            if not self.writer.isOpened():
                self.writer = None
                raise OutputError(f"cannot write video {str(self.path)!r} (FFmpeg writer)")
        if (w, h) != self.size:
            frame = cv2.resize(frame, self.size)
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


class JsonlSink:
    """One JSON object per line, flushed per frame."""

    def __init__(self, path: Path) -> None:
        check_writable(path)
        self.path = path
        self.f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.lines = 0

    def write(self, record: dict[str, Any]) -> None:
        self.f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.f.flush()
        self.lines += 1

    def close(self) -> None:
        if not self.f.closed:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()


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
    """Serves the newest annotated frame as an MJPEG stream on http://127.0.0.1:PORT/ ."""

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
