"""Checkpoints of quant.ptq, quant.datafree and quant.qat: written atomically, holding only plain
types, and read with ``torch.load(weights_only=True)`` so that no code in a file runs."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

import torch

from quant.model import QuantDetector


def save_checkpoint(path: Path, qdet: QuantDetector, extra: dict[str, Any]) -> None:
    """Atomic: a killed run never leaves a half-written checkpoint.

    Only plain types go in (dicts, lists, str, int, float, bool, None, tensors: the state dicts
    of the model, the optimiser and the scheduler, step counts, losses), so that every reader
    loads it with ``torch.load(weights_only=True)``, which runs no code from the file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"model": qdet.state_dict(), **extra}, tmp)
    os.replace(tmp, path)


def checkpoint_failure(path: Path | str, problem: str) -> NoReturn:
    """One line naming the file on stderr, exit status 2 (a bad input, not a crash)."""
    print(f"error: {path}: {problem}", file=sys.stderr)
    raise SystemExit(2)


def _unpickling_problem(exc: BaseException) -> str:
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:  # torch's weights_only refusal: name what the file wanted to run or build
        return f"it references {found.group(1)}, which weights_only refuses"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"[:200] if first else type(exc).__name__


def load_plain(path: Path | str, *, model: bool = True) -> dict[str, Any]:
    """A checkpoint of these commands as a dict, read with ``weights_only=True``: only tensors
    and plain containers are built, nothing in the file can run code. Any other file (a crafted
    pickle, a foreign or damaged file; with ``model``, one without a model state) ends the
    program with one line naming it (exit 2)."""
    if not Path(path).is_file():
        checkpoint_failure(path, "no such checkpoint")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, zip/EOF errors, KeyError, ...
        problem = _unpickling_problem(exc)
        checkpoint_failure(path, f"not a checkpoint this tool can load safely ({problem})")
    if not isinstance(ck, dict):
        checkpoint_failure(path, f"not a checkpoint (holds a {type(ck).__name__}, not a dict)")
    if model and not isinstance(ck.get("model"), dict):
        checkpoint_failure(path, "not a checkpoint of quant.ptq/qat/datafree (no model state)")
    return ck


def load_checkpoint(path: Path, qdet: QuantDetector) -> dict[str, Any] | None:
    """Load a checkpoint of save_checkpoint into ``qdet`` (None if there is none at ``path``);
    returns its other entries."""
    if not path.is_file():
        return None
    ck = load_plain(path)
    qdet.load_state_dict(ck.pop("model"))
    qdet.invalidate()
    return ck
