"""Stop signals of a run: SIGINT (Ctrl-C), SIGTERM (``timeout``, ``docker stop``, systemd) and
SIGHUP (the terminal went away) all end a run the same way: the pipeline stops, the outputs
are finalised, and the program exits with ``128 + signal number`` (130, 143, 129).

* While :class:`StopSignals` is active (the main thread of ``shiftdet detect``), a first signal
  calls the run's ``on_stop`` (the pipeline's ``request_stop``): it only sets an event, so
  nothing is torn down in the middle of a write. Before a pipeline exists (start-up: loading,
  compiling, opening), it raises :class:`Interrupted` instead, which unwinds the start-up with
  nothing written.
* A second signal while the outputs are being finalised prints one line and is otherwise
  ignored: finalising is bounded (the pipeline's join timeout, the writer's close), and cutting
  it short is what leaves unplayable files.
* A signal that was *ignored* when the program started stays ignored: a ``nohup`` run ignores
  SIGHUP, and a background job of a non-interactive shell ignores SIGINT; their launcher asked
  for that. Such a run still stops cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

STOP_SIGNALS = tuple(
    s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None
)


class Interrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error
    """A stop signal during start-up; carries the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """Context manager: route the stop signals to ``on_stop`` (set later, when there is a run
    to stop) for its duration, and put the previous handlers back at the end."""

    def __init__(self) -> None:
        self.received: int | None = None  # the first stop signal
        self.on_stop: Callable[[str], None] | None = None
        self._old: dict[int, Any] = {}

    @property
    def name(self) -> str | None:
        return None if self.received is None else signal.Signals(self.received).name

    @property
    def exit_status(self) -> int | None:
        return None if self.received is None else 128 + self.received

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python's rule for handlers
            for s in STOP_SIGNALS:
                old = signal.getsignal(s)
                if old is signal.SIG_IGN:
                    continue
                self._old[s] = old
                signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
        self._old.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            # os.write, not print: a handler may run while sys.stderr is mid-write.
            os.write(2, f"\n{name}: already stopping, finalising the outputs (a few seconds)\n"
                     .encode())  # fmt: skip
            return
        self.received = signum
        if self.on_stop is None:
            raise Interrupted(signum)
        self.on_stop(name)
