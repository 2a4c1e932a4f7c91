"""A frame pipeline: capture -> stages -> output, one thread per stage, bounded queues.

Why threads: the heavy stages (OpenCV resize and encode, NumPy/BLAS in the emulator, waiting
for the accelerator's interrupt) release the GIL, so stages of consecutive frames overlap.

Rules (issue 5):

* queues are bounded (``queue_depth``), so memory stays flat whatever the speeds;
* a *live* source drops the newest frame when the first queue is full, and counts it; a file
  or folder never drops (capture blocks instead);
* one thread per stage and FIFO queues keep frames in order; the last stage checks it;
* an exception in a stage stops that stage and the ones before it (capture included); the
  stages after it finish the frames already past it and end, so the outputs hold every frame
  before the failing one; Ctrl-C stops every stage at once. Stages poll between frames, so all
  threads end within about one frame's work, and the caller's ``finally`` closes the outputs
  (mp4 index written, JSON lines complete up to the last frame);
* nothing waits forever: every queue operation times out and re-checks the stop event;
* memory stays flat however long a live source runs: the result keeps the first
  ``timeline_rows`` frames' stage times (for the timeline PNG), a window of the last
  ``window`` frames (for percentiles) and running sums (for means and throughput), never a
  record per frame;
* :meth:`Pipeline.request_stop` (a signal handler, a sink that hit a full disk) stops every
  stage like Ctrl-C, from any thread, and the run ends as ``interrupted``.

:meth:`Pipeline.run_sequential` runs the same stage functions one after another in one thread,
for the throughput comparison of ``bench/runtime.py``.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
import typing
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sw.sources import Frame, Source

POLL_S = 0.05
_END = object()  # end-of-stream marker that travels down the queues


@dataclass
class Item:
    """One frame on its way through the pipeline; stages put their results in ``data``."""

    index: int
    frame: Any  # the BGR image
    data: dict[str, Any] = field(default_factory=dict)
    times: dict[str, tuple[float, float]] = field(default_factory=dict)  # stage -> start, end


# Type aliases are evaluated at run time: typing's generics, not ``tuple[...]`` (Python 3.9+),
# so that the module imports on Python 3.8. A row: frame index, stage -> (start, end).
Row = typing.Tuple[int, typing.Dict[str, typing.Tuple[float, float]]]


@dataclass
class PipelineResult:
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0  # live source, pipeline behind
    timeline: list[Row] = field(default_factory=list)  # the first timeline_rows frames
    recent: deque[Row] = field(default_factory=lambda: deque(maxlen=1000))  # the last frames
    stage_sum_s: dict[str, float] = field(default_factory=dict)  # per stage, over every frame
    stage_count: dict[str, int] = field(default_factory=dict)
    first_capture: float | None = None  # perf_counter of the first output frame's capture
    last_end: float | None = None  # ... and of the last output frame's last stage
    t0: float = 0.0
    wall_s: float = 0.0
    error: str | None = None  # "stage: message" of the first failure
    error_trace: str = ""
    interrupted: bool = False
    stop_reason: str | None = None  # why request_stop() was called (e.g. "SIGTERM")
    mode: str = "threaded"

    def add(self, index: int, times: dict[str, tuple[float, float]], keep: int) -> None:
        """Account one output frame: O(stages) work and memory bounded by ``keep`` + window."""
        row = (index, times)
        if len(self.timeline) < keep:
            self.timeline.append(row)
        self.recent.append(row)
        for name, (a, b) in times.items():
            self.stage_sum_s[name] = self.stage_sum_s.get(name, 0.0) + (b - a)
            self.stage_count[name] = self.stage_count.get(name, 0) + 1
        start = times["capture"][0] if "capture" in times else min(a for a, _ in times.values())
        end = max(b for _, b in times.values())
        self.first_capture = start if self.first_capture is None else self.first_capture
        self.last_end = end if self.last_end is None else max(self.last_end, end)


Stage = typing.Tuple[str, typing.Callable[[Item], None]]


class Pipeline:
    def __init__(self, source: Source, stages: list[Stage], queue_depth: int = 4,
                 on_output: Callable[[Item], None] | None = None,
                 max_frames: int | None = None, timeline_rows: int = 80,
                 window: int = 1000) -> None:  # fmt: skip
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self.source = source
        self.stages = stages
        self.depth = max(1, queue_depth)
        self.on_output = on_output
        self.max_frames = max_frames
        self.stop = threading.Event()  # Ctrl-C: every stage ends now
        self.failed_at: int | None = None  # position of the failed stage (capture = 0)
        self.timeline_rows = timeline_rows
        self.result = PipelineResult(recent=deque(maxlen=max(1, window)))
        self._lock = threading.Lock()
        self._last_index = -1

    # -- helpers -------------------------------------------------------------------------------

    def _fail(self, stage: str, exc: BaseException, pos: int | None = None) -> None:
        """Record the first failure; stages at or before ``pos`` stop (all when None)."""
        with self._lock:
            if self.result.error is None:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self.result.error = f"{stage}: {msg}"
                self.result.error_trace = "".join(traceback.format_exception(exc))
            if pos is None:
                self.stop.set()
            else:
                self.failed_at = pos if self.failed_at is None else max(self.failed_at, pos)

    def request_stop(self, reason: str) -> None:
        """Stop every stage now, as Ctrl-C does; safe from any thread or a signal handler
        (it only sets an event). The first reason is kept."""
        if self.result.stop_reason is None:
            self.result.stop_reason = reason
        self.stop.set()

    def _halted(self, pos: int) -> bool:
        return self.stop.is_set() or (self.failed_at is not None and pos <= self.failed_at)

    def _put(self, q: queue.Queue, item: object, pos: int, force: bool = False) -> bool:
        """Put, re-checking the stop conditions; ``force`` (the end marker after a failure)
        ignores a failure but still gives up after Ctrl-C or a while without progress."""
        deadline = time.monotonic() + 10.0
        while not (self.stop.is_set() or (not force and self._halted(pos))):
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                if force and time.monotonic() > deadline:
                    break
        return False

    def _end(self, q_out: queue.Queue, pos: int) -> None:
        """Tell the next stage that no frame follows, unless a later stage failed (it ends its
        successors itself, and nobody reads this queue any more)."""
        if self.failed_at is None or pos >= self.failed_at:
            self._put(q_out, _END, pos, force=True)

    def _get(self, q: queue.Queue, pos: int) -> object | None:
        while not self._halted(pos):
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return None

    def _capture(self) -> Item | None:
        if self.max_frames is not None and self.result.frames_in >= self.max_frames:
            return None
        t0 = time.perf_counter()
        frame: Frame | None = self.source.read()
        if frame is None:
            return None
        item = Item(frame.index, frame.image)
        item.times["capture"] = (t0, time.perf_counter())
        self.result.frames_in += 1
        return item

    def _finish(self, item: Item) -> None:
        if item.index <= self._last_index:
            raise RuntimeError(f"frame {item.index} came out after frame {self._last_index}")
        self._last_index = item.index
        self.result.frames_out += 1
        self.result.add(item.index, item.times, self.timeline_rows)
        if self.on_output is not None:
            self.on_output(item)

    # -- threaded ------------------------------------------------------------------------------

    def _capture_loop(self, q_out: queue.Queue) -> None:
        try:
            while not self._halted(0):
                item = self._capture()
                if item is None:
                    break
                if self.source.live:
                    try:
                        q_out.put_nowait(item)
                    except queue.Full:
                        self.result.dropped += 1
                elif not self._put(q_out, item, 0):
                    break
        except BaseException as e:  # noqa: BLE001 - reported, and the pipeline stops
            self._fail("capture", e, 0)
        finally:
            self._end(q_out, 0)

    def _stage_loop(self, pos: int, name: str, fn: Callable[[Item], None], q_in: queue.Queue,
                    q_out: queue.Queue | None) -> None:  # fmt: skip
        try:
            while True:
                item = self._get(q_in, pos)
                if item is None:  # stopped
                    return
                if item is _END:
                    return
                assert isinstance(item, Item)
                t0 = time.perf_counter()
                fn(item)
                item.times[name] = (t0, time.perf_counter())
                if q_out is None:
                    self._finish(item)
                elif not self._put(q_out, item, pos):
                    return
        except BaseException as e:  # noqa: BLE001
            self._fail(name, e, pos)
        finally:
            if q_out is not None:
                self._end(q_out, pos)

    def run_threaded(self, join_timeout_s: float = 30.0) -> PipelineResult:
        """Run until the source ends, a stage fails, or Ctrl-C; returns what happened."""
        res = self.result
        res.mode = "threaded"
        qs = [queue.Queue(maxsize=self.depth) for _ in self.stages]
        threads = [threading.Thread(target=self._capture_loop, args=(qs[0],), name="capture",
                                    daemon=True)]  # fmt: skip
        for i, (name, fn) in enumerate(self.stages):
            q_out = qs[i + 1] if i + 1 < len(qs) else None
            threads.append(threading.Thread(target=self._stage_loop,
                                            args=(i + 1, name, fn, qs[i], q_out), name=name,
                                            daemon=True))  # fmt: skip
        res.t0 = time.perf_counter()
        for t in threads:
            t.start()
        deadline = None
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(POLL_S)
                if (self.stop.is_set() or self.failed_at is not None) and deadline is None:
                    deadline = time.monotonic() + join_timeout_s
                if deadline is not None and time.monotonic() > deadline:
                    stuck = [t.name for t in threads if t.is_alive()]
                    res.error = res.error or f"stages did not stop: {', '.join(stuck)}"
                    break
        except KeyboardInterrupt:
            res.interrupted = True
            self.stop.set()
            for t in threads:
                t.join(join_timeout_s)
        if res.stop_reason is not None:
            res.interrupted = True
        res.wall_s = time.perf_counter() - res.t0
        return res

    # -- sequential ----------------------------------------------------------------------------

    def run_sequential(self) -> PipelineResult:
        """The same stages one after another, frame by frame, in the calling thread."""
        res = self.result
        res.mode = "sequential"
        res.t0 = time.perf_counter()
        stage = "capture"
        try:
            while not self.stop.is_set():
                stage = "capture"
                item = self._capture()
                if item is None:
                    break
                for name, fn in self.stages:
                    stage = name
                    t0 = time.perf_counter()
                    fn(item)
                    item.times[name] = (t0, time.perf_counter())
                self._finish(item)
        except KeyboardInterrupt:
            res.interrupted = True
        except Exception as e:  # noqa: BLE001
            self._fail(stage, e)
        if res.stop_reason is not None:
            res.interrupted = True
        res.wall_s = time.perf_counter() - res.t0
        return res


def stage_stats(res: PipelineResult) -> dict[str, dict[str, float]]:
    """Per stage: mean milliseconds per frame over every frame, median and 95th percentile over
    the last frames (the result's window)."""
    import numpy as np

    out = {}
    for n, total in res.stage_sum_s.items():
        ms = np.array([(t[n][1] - t[n][0]) * 1e3 for _, t in res.recent if n in t])
        mean = total * 1e3 / res.stage_count[n]
        p50 = float(np.median(ms)) if ms.size else mean
        p95 = float(np.percentile(ms, 95)) if ms.size else mean
        out[n] = {"mean": round(mean, 3), "p50": round(p50, 3), "p95": round(p95, 3)}
    return out


def throughput_fps(res: PipelineResult) -> float:
    """Frames out per second of wall time from the first capture to the last output."""
    if res.first_capture is None or res.last_end is None or res.last_end <= res.first_capture:
        return 0.0
    return res.frames_out / (res.last_end - res.first_capture)
