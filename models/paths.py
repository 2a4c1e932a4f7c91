"""Where the third-party data (weights, images) lives."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The data folder: `<repo>/data` once the fetcher has filled it, else `$POW2DET_DATA`.

    `<repo>/data` counts as filled when it holds a sub-folder (the fetcher lays files out in
    weights/, unlabeled/, ...); the committed MANIFEST.json or README alone do not, so a local
    mirror named by the environment variable works before `make data` has run. Callers check for
    the files they need and skip or fail with their own message.
    """
    local = REPO_ROOT / "data"
    if local.is_dir() and any(p.is_dir() for p in local.iterdir()):
        return local
    env = os.environ.get("POW2DET_DATA")
    return Path(env) if env else local
