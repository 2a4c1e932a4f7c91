"""What the board runtime needs from Python versions newer than the boards': PYNQ images ship
Python 3.8 (PYNQ 2.7) to 3.12 (PYNQ 4.0), so every module of the board wheel runs on 3.8
(``tests/test_board_package.py`` checks it); this module holds the few stand-ins that needs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Any


def zip_strict(*seqs: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
    """``zip(*seqs, strict=True)`` (Python 3.10+): the tuples of ``seqs``, and ``ValueError``
    when they differ in length instead of a silent truncation."""
    if all(isinstance(s, Sized) for s in seqs):
        lengths = {len(s) for s in seqs}  # type: ignore[arg-type]
        if len(lengths) > 1:
            raise ValueError(f"zip_strict: arguments differ in length {sorted(lengths)}")
        return zip(*seqs)
    return _zip_checked(seqs)


def _zip_checked(seqs: tuple[Iterable[Any], ...]) -> Iterator[tuple[Any, ...]]:
    end = object()
    its = [iter(s) for s in seqs]
    while True:
        row = tuple(next(it, end) for it in its)
        if all(v is end for v in row):
            return
        if any(v is end for v in row):
            raise ValueError("zip_strict: arguments differ in length")
        yield row
