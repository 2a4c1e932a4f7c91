"""Frame sources of the video app: a video file, a camera index, a stream URL or an image folder.

A *file* or *folder* is read completely and in order (the pipeline never drops its frames); a
*camera* or *stream* is live (the pipeline drops frames when it falls behind, and counts them).
A frame that cannot be decoded (a video corrupt midway, an unreadable image in a folder) is
skipped and its index recorded in ``skipped``; reading goes on with the next frame.
Opening failures raise :class:`SourceError` with one line.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

# FFmpeg prints a line per damaged packet on stderr; the source counts and reports bad frames
# itself. Must be set before the first VideoCapture; a user's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class SourceError(RuntimeError):
    """An input that cannot be opened; the message is one line."""


@dataclass
class Frame:
    index: int  # position in the source (frames of a file, images of a folder, reads of a camera)
    image: np.ndarray  # (H, W, 3) BGR uint8
    t_capture: float  # time.perf_counter() when it was read


@dataclass
class Source:
    name: str
    live: bool = False
    fps: float = 25.0
    total: int | None = None  # frames, when known
    skipped: list[int] = field(default_factory=list)  # undecodable frames

    def read(self) -> Frame | None:
        """The next frame, or None at the end."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class VideoFileSource(Source):
    """A video file. A frame FFmpeg cannot decode is skipped: the reader seeks past it (FFmpeg
    then restarts at the next decodable frame) and records its index."""

    def __init__(self, path: Path, max_consecutive_bad: int = 250) -> None:
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise SourceError(f"cannot open video {str(path)!r}: not a readable video file")
        total = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        super().__init__(str(path), live=False, fps=fps if fps and fps > 0 else 25.0,
                         total=total if total > 0 else None)  # fmt: skip
        self.pos = 0
        self.max_bad = max_consecutive_bad

    def read(self) -> Frame | None:
        bad = 0
        while True:
            ok, img = self.cap.read()
            if ok and img is not None:
                self.pos += 1
                return Frame(self.pos - 1, img, time.perf_counter())
            if self.total is None or self.pos >= self.total or bad >= self.max_bad:
                return None
            self.skipped.append(self.pos)
            self.pos += 1
            bad += 1
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, self.pos)

    def close(self) -> None:
        self.cap.release()


class CaptureSource(Source):
    """A camera (index) or a network stream (URL): live. A failed read is retried a few times
    (a camera may hiccup); then the stream is over."""

    def __init__(self, spec: str, retries: int = 10) -> None:
        target: int | str = int(spec) if spec.isdigit() else spec
        self.cap = cv2.VideoCapture(target)
        what = f"camera {spec}" if isinstance(target, int) else f"stream {spec!r}"
        if not self.cap.isOpened():
            raise SourceError(f"cannot open {what}")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        super().__init__(what, live=True, fps=fps if fps and fps > 0 else 25.0)
        self.retries = retries
        self.count = 0

    def read(self) -> Frame | None:
        for _ in range(self.retries):
            ok, img = self.cap.read()
            if ok and img is not None:
                self.count += 1
                return Frame(self.count - 1, img, time.perf_counter())
            time.sleep(0.02)
        return None

    def close(self) -> None:
        self.cap.release()


class FolderSource(Source):
    """Images of a folder in name order; an unreadable image is skipped and counted."""

    def __init__(self, path: Path, fps: float = 25.0) -> None:
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"folder {str(path)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        super().__init__(str(path), live=False, fps=fps, total=len(files))
        self.files = files
        self.pos = 0

    def read(self) -> Frame | None:
        while self.pos < len(self.files):
            i = self.pos
            self.pos += 1
            img = cv2.imread(str(self.files[i]), cv2.IMREAD_COLOR)
            if img is not None:
                return Frame(i, img, time.perf_counter())
            self.skipped.append(i)
        return None


def open_source(spec: str) -> Source:
    """INPUT of ``shiftdet detect``: a digit string is a camera, ``scheme://...`` a stream, a
    folder a set of images, anything else a video file."""
    if spec.isdigit():
        return CaptureSource(spec)
    if "://" in spec:
        return CaptureSource(spec)
    p = Path(spec)
    if p.is_dir():
        return FolderSource(p)
    if not p.exists():
        raise SourceError(f"input {spec!r} does not exist")
    if not os.access(p, os.R_OK):
        raise SourceError(f"input {spec!r} is not readable")
    return VideoFileSource(p)
