"""``make bench-sw`` end to end at the smallest counts: the script runs and writes every key.

A benchmark asserts nothing about speed, but it must not rot: bench/runtime.py once broke on a
changed constructor and nobody saw it until the next ``make bench-sw``. This runs it as
``make bench-sw`` does (its own process, one BLAS thread), on a few frames and the 510-frame
memory run, into a scratch file, and checks the keys and the kinds of value it wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.paths import REPO_ROOT

KEYS = {
    "cpu_stages_ms": dict,
    "pipeline_speedup": float,
    "pipeline_speedup_modelled_pl": float,
    "emu_vs_torch_float_ratio": float,
    "emu_vs_opencv_float_ratio": float,
    "emu_ms_per_frame": float,
    "opencv_float_ms_per_frame": float,
    "peak_rss_mb": float,
    "rss_growth_fraction": float,
    "threads_after_exit": int,
}


def test_bench_runtime_smoke(tmp_path: Path, data_dir: Path) -> None:
    if not (data_dir / "video/TUD-Stadtmitte/TUD-Stadtmitte.mp4").exists():
        pytest.skip("data/ lacks the TUD clip (make data)")
    out = tmp_path / "runtime.json"
    cmd = [sys.executable, str(REPO_ROOT / "bench/runtime.py"), "--pipeline-frames", "4",
           "--cpu-frames", "2", "--torch-frames", "2", "--rss-frames", "510", "--rounds", "1",
           "--out", str(out)]  # fmt: skip
    run = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(out.read_text())
    for key, kind in KEYS.items():
        assert isinstance(doc[key], kind) or (kind is float and isinstance(doc[key], int)), key
    assert set(doc["cpu_stages_ms"]) >= {"preprocess", "decode_nms", "draw", "total"}
    assert doc["emu_ms_per_frame"] > 0 and doc["opencv_float_ms_per_frame"] > 0
    assert doc["threads_after_exit"] == 0
    assert not (REPO_ROOT / "bench/results/runtime.json").samefile(out)
