"""Readers the app tests check outputs with (imported by the test modules; tests/ is on the
path as pytest's rootdir-relative import puts it there)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2


def mp4_frames(path: Path) -> int:
    """Frames a video file plays (0 for an unplayable file, e.g. an mp4 without its index)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file, which must end in a whole line."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "the JSONL ends in half a line"
    return [json.loads(line) for line in text.splitlines()]
