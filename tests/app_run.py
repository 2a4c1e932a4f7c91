"""The app tests' way of running ``shiftdet detect`` in-process and fingerprinting files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sw import app


def run_detect(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """``shiftdet detect ARGV --no-progress``: (exit status, stdout, stderr); an argparse exit
    is a status like any other."""
    try:
        rc = app.main(["detect", *argv, "--no-progress"])
    except SystemExit as e:  # argparse
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
