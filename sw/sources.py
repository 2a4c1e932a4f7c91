"""Frame sources of the video app: a video file, a camera, a stream URL, an image folder or a
still image (``Source.kind``: video, live, folder, image; ``Source.file_name(i)`` names an image
input's frame ``i``, so that the app writes one annotated image per input under its name).

A *file* or *folder* is read completely and in order (the pipeline never drops its frames); a
*camera* or *stream* is live (the pipeline drops frames when it falls behind, and counts them).
A frame that cannot be decoded (a video corrupt midway, an unreadable image in a folder) is
skipped and its index recorded in ``skipped`` (the reason in ``skip_reasons``); reading goes on
with the next frame. Opening failures raise :class:`SourceError` with one line.

Nothing waits forever:

* Only regular files are read (``os.stat``/``fstat`` and ``S_ISREG`` before OpenCV sees them; a
  symbolic link to a regular file is fine). A FIFO, socket or device given as INPUT is refused
  with one line; one inside an image folder is skipped like an unreadable image, never opened
  for reading by OpenCV. ``/dev/video*`` character devices are cameras.
* A live source reads in its own thread and hands frames over through a bounded queue, so
  :meth:`Source.read` waits at most ``read_timeout_s`` for the next frame, whatever the OpenCV
  backend does (FFmpeg streams also get OpenCV's open/read timeouts). A source that stops
  delivering ends with ``end_reason`` set to one line (``stream 'http://...' delivered no frame
  for 10.0 s``); ``end_reason`` is None for a normal end (the last frame of a file or folder, or
  :meth:`Source.close` before the end).
* ``close()`` stops the reader thread and joins it with a bound. A thread stuck inside OpenCV's
  ``read`` beyond that bound (a backend that ignores its timeout) is a daemon thread: it is left
  behind, cannot keep the process alive, releases its capture if the read ever returns, and is
  reported in ``end_reason`` (``...; its reader thread is still blocked in OpenCV ...``).

``Source.files`` lists the regular files the source reads (resolved), so that the app can refuse
an output path that is one of its inputs.
"""

from __future__ import annotations

import os
import queue
import re
import stat
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# FFmpeg prints a line per damaged packet on stderr, OpenCV a warning per stream timeout; the
# source counts, skips and reports these itself. FFmpeg's must be set before the first
# VideoCapture, OpenCV's before its first log line (it is read lazily); a user's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# An image smaller than this on a side is degenerate (a 1x1 placeholder, a broken thumbnail):
# nothing for a detector to find, and FFmpeg's mp4 writer cannot even open at a side of 1.
MIN_IMAGE_SIDE = 16
_CAMERA_DEVICE = re.compile(r"/dev/video\d+")


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
    skipped: list[int] = field(default_factory=list)  # undecodable frames, in index order
    skip_reasons: dict[int, str] = field(default_factory=dict)  # index -> why, for some
    files: list[Path] = field(default_factory=list)  # regular files read, resolved; live: []
    end_reason: str | None = None  # one line when the source ended abnormally, else None
    # "video" (a file), "live" (camera, stream), "folder" or "image" (a still): the app writes
    # an mp4 for the first two, one annotated image per input for the others.
    kind: str = "video"

    def file_name(self, index: int) -> str | None:
        """The file name of frame ``index`` (an image of a folder, a still image), else None."""
        return None

    def read(self) -> Frame | None:
        """The next frame, or None at the end."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _skip(self, index: int, why: str) -> None:
        self.skipped.append(index)
        self.skip_reasons[index] = why


def _kind(mode: int) -> str:
    for test, name in [(stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")]:  # fmt: skip
        if test(mode):
            return name
    return "not a regular file"


def _is_camera_device(path: Path, st: os.stat_result) -> bool:
    """A V4L2 camera node (``/dev/video0``, or a link to one such as ``/dev/v4l/by-id/...``)."""
    return stat.S_ISCHR(st.st_mode) and bool(_CAMERA_DEVICE.fullmatch(os.path.realpath(path)))


def _stat_input(spec: str, path: Path) -> os.stat_result:
    """``os.stat`` (following links) with one-line errors."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        broken = " (a broken symbolic link)" if path.is_symlink() else ""
        hint = ""
        if spec.lower().startswith("file:") and not spec.lower().startswith("file:/"):
            hint = " (a file: URL needs an absolute path, file:///abs/path)"
        raise SourceError(f"input {spec!r} does not exist{broken}{hint}") from None
    except OSError as e:
        raise SourceError(f"input {spec!r} cannot be read: {e.strerror or e}") from None


def _require_regular(spec: str, path: Path) -> os.stat_result:
    st = _stat_input(spec, path)
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"input {spec!r} is not a regular file ({_kind(st.st_mode)})")
    return st


class VideoFileSource(Source):
    """A video file (a regular file: see the module docstring). A frame FFmpeg cannot decode is
    skipped: the reader seeks past it (FFmpeg then restarts at the next decodable frame) and
    records its index; ``max_consecutive_bad`` bad frames in a row end the video early, with
    ``end_reason`` set."""

    def __init__(self, path: Path, max_consecutive_bad: int = 250) -> None:
        path = Path(path)
        _require_regular(str(path), path)
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise SourceError(f"cannot open video {str(path)!r}: not a readable video file")
        w, h = (int(self.cap.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
        if 0 < min(w, h) < MIN_IMAGE_SIDE:
            self.cap.release()
            raise SourceError(f"video {str(path)!r} is {w}x{h} pixels (a side below "
                              f"{MIN_IMAGE_SIDE})")  # fmt: skip
        total = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        super().__init__(str(path), live=False, fps=fps if fps and fps > 0 else 25.0,
                         total=total if total > 0 else None,
                         files=[path.resolve()])  # fmt: skip
        self.pos = 0
        self.max_bad = max_consecutive_bad

    def read(self) -> Frame | None:
        bad = 0
        while True:
            ok, img = self.cap.read()
            if ok and img is not None:
                self.pos += 1
                return Frame(self.pos - 1, img, time.perf_counter())
            if self.total is None or self.pos >= self.total:
                return None
            if bad >= self.max_bad:
                self.end_reason = (f"video {self.name!r}: {bad} undecodable frames in a row, "
                                   f"stopped at frame {self.pos} of {self.total}")  # fmt: skip
                return None
            self._skip(self.pos, "undecodable")
            self.pos += 1
            bad += 1
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, self.pos)

    def close(self) -> None:
        self.cap.release()


class _End:
    """The reader thread's last item: why the source ended (None: it was told to stop)."""

    def __init__(self, reason: str | None) -> None:
        self.reason = reason


class CaptureSource(Source):
    """A camera (an index, or a ``/dev/video*`` node) or a network stream (URL): live.

    One reader thread owns the ``cv2.VideoCapture`` (opens, reads, releases it) and hands frames
    over through a queue of ``queue_depth``; :meth:`read` waits at most ``read_timeout_s``. A
    failed read is retried ``retries`` times (a camera may hiccup); then, or when no frame came
    within the timeout, the source ends with ``end_reason`` set. Opening waits at most
    ``read_timeout_s`` plus a few seconds (FFmpeg gets the same open and read timeouts)."""

    POLL_S = 0.1

    def __init__(self, spec: str, retries: int = 10, *, read_timeout_s: float = 10.0,
                 queue_depth: int = 2) -> None:  # fmt: skip
        if not read_timeout_s > 0:
            raise SourceError(f"read timeout must be positive, not {read_timeout_s!r}")
        target: int | str = int(spec) if spec.isdigit() else spec
        if isinstance(target, int):
            what = f"camera {spec}"
        elif spec.startswith("/dev/"):
            what = f"camera {spec!r}"
        else:
            what = f"stream {spec!r}"
        super().__init__(what, live=True, kind="live")
        self.retries = max(1, retries)
        self.read_timeout_s = float(read_timeout_s)
        self.count = 0
        self._q: queue.Queue[tuple[np.ndarray, float] | _End] = queue.Queue(max(1, queue_depth))
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._open_ok = False
        self._fps = 0.0
        self._ended = False
        self._closed = False
        self.thread = threading.Thread(target=self._run, args=(target,), daemon=True,
                                       name=f"capture-{spec[:40]}")  # fmt: skip
        self.thread.start()
        bound = self.read_timeout_s + 5.0
        if not self._opened.wait(bound):
            self._stop.set()  # the thread releases the capture if the open ever returns
            raise SourceError(f"cannot open {what}: no answer within {bound:.1f} s")
        if not self._open_ok:
            self.thread.join(self.read_timeout_s)
            raise SourceError(f"cannot open {what}")
        self.fps = self._fps if self._fps > 0 else 25.0

    def _make_capture(self, target: int | str) -> cv2.VideoCapture:
        ms = int(self.read_timeout_s * 1000)
        if (isinstance(target, str) and "://" in target
                and cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG)):  # fmt: skip
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            return cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        return cv2.VideoCapture(target)  # a camera, or no FFmpeg: the thread bounds the wait

    def _run(self, target: int | str) -> None:
        cap = None
        try:
            cap = self._make_capture(target)
            self._open_ok = cap.isOpened()
            if self._open_ok:
                self._fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        except Exception:  # noqa: BLE001 - an open that raises is an open that failed
            self._open_ok = False
        finally:
            self._opened.set()
        try:
            if self._open_ok and not self._stop.is_set():
                self._hand(_End(self._read_loop(cap)))
        except Exception as e:  # noqa: BLE001 - reported as the end of the source
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self._hand(_End(f"{self.name}: read failed: {msg}"))
        finally:
            if cap is not None:
                cap.release()

    def _read_loop(self, cap: cv2.VideoCapture) -> str | None:
        fails = 0
        while not self._stop.is_set():
            t0 = time.monotonic()
            ok, img = cap.read()
            if ok and img is not None:
                fails = 0
                if not self._hand((img, time.perf_counter())):
                    return None
                continue
            if self._stop.is_set():
                return None
            if time.monotonic() - t0 >= 0.9 * self.read_timeout_s:  # the backend's own timeout
                return f"{self.name} delivered no frame for {self.read_timeout_s:.1f} s"
            fails += 1
            if fails >= self.retries:
                return f"{self.name} ended: {fails} reads in a row failed"
            self._stop.wait(0.02)
        return None

    def _hand(self, item: tuple[np.ndarray, float] | _End) -> bool:
        """Put ``item`` for :meth:`read`, waiting while the queue is full; False once stopped."""
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=self.POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def read(self) -> Frame | None:
        if self._ended:
            return None
        deadline = time.monotonic() + self.read_timeout_s
        while True:
            if self._stop.is_set():  # closed (from another thread): a normal end
                self._ended = True
                return None
            try:
                item = self._q.get(timeout=max(0.0, min(self.POLL_S, deadline - time.monotonic())))
                break
            except queue.Empty:
                if time.monotonic() >= deadline:
                    self.end_reason = (f"{self.name} delivered no frame for "
                                       f"{self.read_timeout_s:.1f} s")  # fmt: skip
                    self._ended = True
                    self._stop.set()
                    return None
        if isinstance(item, _End):
            self.end_reason = self.end_reason or item.reason
            self._ended = True
            return None
        img, t = item
        self.count += 1
        return Frame(self.count - 1, img, t)

    def close(self, join_timeout_s: float | None = None) -> None:
        """Stop the reader thread and join it, waiting at most ``join_timeout_s`` (default: the
        read timeout plus 2 s, time for a backend's own timeout to end a stuck read)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        bound = self.read_timeout_s + 2.0 if join_timeout_s is None else join_timeout_s
        self.thread.join(bound)
        if self.thread.is_alive():
            left = (f"its reader thread is still blocked in OpenCV after {bound:.1f} s and was "
                    f"left behind (a daemon thread)")  # fmt: skip
            self.end_reason = f"{self.end_reason}; {left}" if self.end_reason else (
                f"{self.name}: {left}")  # fmt: skip


def _open_regular(path: Path) -> bytes | str:
    """The bytes of ``path``, or why not: opened without blocking (O_NONBLOCK: a FIFO does not
    wait for a writer) and checked to be a regular file on the open descriptor (no race)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        return f"cannot open: {e.strerror or e}"
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            return f"not a regular file ({_kind(mode)})"
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    finally:
        os.close(fd)


def _decode_image(data: bytes, suffix: str) -> np.ndarray | str:
    """A (H, W, 3) BGR uint8 image, or why not."""
    if not data:
        return "empty file"
    if suffix in (".jpg", ".jpeg") and data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data:
        # A truncated JPEG: OpenCV refuses it too, after libjpeg prints a line on stderr.
        return "truncated JPEG (no end-of-image marker)"
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        return "undecodable"
    h, w = img.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        return f"degenerate image ({w}x{h} pixels, a side below {MIN_IMAGE_SIDE})"
    return img


class FolderSource(Source):
    """Images of a folder (by suffix, in name order). An entry that is not a regular file (a
    FIFO, a folder, a broken link: never opened by OpenCV), an empty, truncated or undecodable
    image, or a degenerate one (a side below ``MIN_IMAGE_SIDE``) is skipped and recorded."""

    def __init__(self, path: Path, fps: float = 25.0) -> None:
        path = Path(path)
        try:
            with os.scandir(path) as it:
                entries = sorted((e for e in it if Path(e.name).suffix.lower() in IMAGE_SUFFIXES),
                                 key=lambda e: e.name)  # fmt: skip
        except OSError as e:
            raise SourceError(f"cannot list folder {str(path)!r}: {e.strerror or e}") from None
        if not entries:
            raise SourceError(f"folder {str(path)!r} holds no images "
                              f"({', '.join(sorted(IMAGE_SUFFIXES))})")  # fmt: skip
        root = path.resolve()
        files = []
        for e in entries:
            try:
                regular = e.is_file()  # follows links; d_type, no extra syscall for plain files
            except OSError:
                regular = False
            if regular:
                files.append(Path(e.path).resolve() if e.is_symlink() else root / e.name)
        super().__init__(str(path), live=False, fps=fps, total=len(entries), files=files,
                         kind="folder")  # fmt: skip
        self.paths = [path / e.name for e in entries]  # index i of a frame is paths[i]
        self.pos = 0

    def file_name(self, index: int) -> str | None:
        return self.paths[index].name

    def read(self) -> Frame | None:
        while self.pos < len(self.paths):
            i = self.pos
            self.pos += 1
            p = self.paths[i]
            data = _open_regular(p)
            img = data if isinstance(data, str) else _decode_image(data, p.suffix.lower())
            if isinstance(img, str):
                self._skip(i, img)
                continue
            return Frame(i, img, time.perf_counter())
        return None


class ImageFileSource(Source):
    """One still image (a regular file with an image suffix): one frame. It is read and decoded
    when opened, so an unreadable or degenerate image is a one-line :class:`SourceError`."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        data = _open_regular(path)
        img = data if isinstance(data, str) else _decode_image(data, path.suffix.lower())
        if isinstance(img, str):
            raise SourceError(f"cannot read image {str(path)!r}: {img}")
        super().__init__(str(path), live=False, total=1, files=[path.resolve()], kind="image")
        self.path = path
        self._image: np.ndarray | None = img

    def file_name(self, index: int) -> str | None:
        return self.path.name

    def read(self) -> Frame | None:
        img, self._image = self._image, None
        return None if img is None else Frame(0, img, time.perf_counter())


def _file_url_path(spec: str) -> str:
    """The local path of a ``file:`` URL with an absolute path: ``file:///abs``,
    ``file://localhost/abs`` or ``file:/abs`` (RFC 8089; percent-escapes decoded)."""
    u = urllib.parse.urlsplit(spec)
    if u.netloc not in ("", "localhost"):
        raise SourceError(f"input {spec!r}: a file URL on another host ({u.netloc!r}) is not "
                          f"supported")  # fmt: skip
    if u.query or u.fragment:
        raise SourceError(f"input {spec!r}: a file URL with a query or fragment "
                          f"(escape '?' as %3F, '#' as %23)")  # fmt: skip
    if not u.path.startswith("/"):
        raise SourceError(f"input {spec!r}: a file URL needs an absolute path")
    return urllib.request.url2pathname(u.path)


def open_source(spec: str, *, read_timeout_s: float = 10.0) -> Source:
    """INPUT of ``shiftdet detect``.

    * a digit string: a camera index; a ``/dev/video*`` character device: that camera;
    * ``file:///abs/path``, ``file://localhost/abs/path``, ``file:/abs/path``: the same as the
      path (percent-escapes decoded). ``file:relative`` is no URL (RFC 8089 has no relative
      file URLs): it is a path named so, which usually does not exist (the error says how to
      write a file URL);
    * any other ``scheme://...``: a live stream;
    * a folder: its images; a regular file with an image suffix (``IMAGE_SUFFIXES``): that still
      image; any other regular file: a video. Anything else (a FIFO, a socket,
      another device) is refused with one line, before anything opens it.

    ``read_timeout_s``: how long a live source may go without a frame before it ends (with
    ``end_reason`` set); also FFmpeg's open and read timeouts for streams.
    """
    if not spec:
        raise SourceError("input '' is empty")
    if spec.isdigit():
        return CaptureSource(spec, read_timeout_s=read_timeout_s)
    low = spec.lower()
    if low.startswith("file:/"):
        path = Path(_file_url_path(spec))
    elif "://" in spec:
        return CaptureSource(spec, read_timeout_s=read_timeout_s)
    else:
        path = Path(spec)
    st = _stat_input(spec, path)
    if stat.S_ISDIR(st.st_mode):
        return FolderSource(path)
    if _is_camera_device(path, st):
        return CaptureSource(str(path), read_timeout_s=read_timeout_s)
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"input {spec!r} is not a regular file ({_kind(st.st_mode)})")
    if not os.access(path, os.R_OK):
        raise SourceError(f"input {spec!r} is not readable")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFileSource(path)
    return VideoFileSource(path)
