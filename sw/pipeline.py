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
* nothing waits forever: every queue operation times out and re-checks the stop event.

:meth:`Pipeline.run_sequential` runs the same stage functions one after another in one thread,
for the throughput comparison of ``bench/runtime.py``.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
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


@dataclass
class PipelineResult:
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0  # live source, pipeline behind
    timeline: list[tuple[int, dict[str, tuple[float, float]]]] = field(default_factory=list)
    t0: float = 0.0
    wall_s: float = 0.0
    error: str | None = None  # "stage: message" of the first failure
    error_trace: str = ""
    interrupted: bool = False
    mode: str = "threaded"


Stage = tuple[str, Callable[[Item], None]]


class Pipeline:
    def __init__(self, source: Source, stages: list[Stage], queue_depth: int = 4,
                 on_output: Callable[[Item], None] | None = None,
                 max_frames: int | None = None) -> None:  # fmt: skip
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self.source = source
        self.stages = stages
        self.depth = max(1, queue_depth)
        self.on_output = on_output
        self.max_frames = max_frames
        self.stop = threading.Event()  # Ctrl-C: every stage ends now
        self.failed_at: int | None = None  # position of the failed stage (capture = 0)
        self.result = PipelineResult()
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
        self.result.timeline.append((item.index, item.times))
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
            while True:
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
        res.wall_s = time.perf_counter() - res.t0
        return res


def stage_stats(res: PipelineResult) -> dict[str, dict[str, float]]:
    """Per stage: mean, median and 95th percentile milliseconds per frame."""
    import numpy as np

    names: list[str] = []
    for _, times in res.timeline:
        for n in times:
            if n not in names:
                names.append(n)
    out = {}
    for n in names:
        ms = np.array([(t[n][1] - t[n][0]) * 1e3 for _, t in res.timeline if n in t])
        out[n] = {"mean": round(float(ms.mean()), 3), "p50": round(float(np.median(ms)), 3),
                  "p95": round(float(np.percentile(ms, 95)), 3)}  # fmt: skip
    return out


def throughput_fps(res: PipelineResult) -> float:
    """Frames out per second of wall time from the first capture to the last output."""
    if not res.timeline:
        return 0.0
    first = min(t["capture"][0] for _, t in res.timeline)
    last = max(max(v[1] for v in t.values()) for _, t in res.timeline)
    return len(res.timeline) / (last - first) if last > first else 0.0
