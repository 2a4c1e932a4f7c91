"""``make demo``: TUD-Stadtmitte through the best committed Yolo-Fastest artifact on ``emu``.

    python -m sw.demo [--max-frames N] [--out-dir out/demo] [--backend emu]

Writes ``out/demo/TUD-Stadtmitte.{mp4,jsonl,report.json,timeline.png}``. The model is the
best quantized Yolo-Fastest under ``models/artifacts/`` (highest measured mAP in its metadata).
Until the quantizer has committed one, the demo runs a *random, untrained* network with two YOLO
heads at 128x128 instead, so that the whole pipeline can be exercised; it says so loudly, names
its classes ``random-0``/``random-1``, and what it draws are not detections.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from sw import app

REPO = Path(__file__).resolve().parent.parent
CLIP = Path("video") / "TUD-Stadtmitte" / "TUD-Stadtmitte.mp4"


def data_dir() -> Path:
    """``<repo>/data`` once filled (``make data``), else ``$POW2DET_DATA`` (a mirror)."""
    local = REPO / "data"
    if (local / CLIP).is_file():
        return local
    return Path(os.environ.get("POW2DET_DATA", str(local)))


def placeholder_artifact(out_dir: Path) -> Path:
    """A random network with two YOLO heads (sim.reference.randnet): NOT a detector."""
    from sim.reference.randnet import random_network
    from sw.artifact import save

    art = random_network(np.random.default_rng(2024), height=128, width=128)
    art.name = "random-net-128 (untrained test network, NOT a detector)"
    art.classes = ["random-0", "random-1"]
    art.description = "placeholder until models/artifacts/ holds a quantized Yolo-Fastest"
    return save(art, out_dir / "placeholder-random-net-128.npz")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sw.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default="out/demo")
    ap.add_argument("--max-frames", type=int)
    ap.add_argument("--backend", default="emu")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out_dir)
    clip = data_dir() / CLIP
    if not clip.is_file():
        print(f"error: {clip} is missing: run `make data` first", file=sys.stderr)
        return 2
    try:
        model = app.find_default_artifact()
        print(f"demo: model {model}")
    except app.UsageError:
        model = placeholder_artifact(out)
        print(
            "demo: WARNING: no quantized Yolo-Fastest under models/artifacts/ yet; running an "
            "untrained random network instead. Its boxes are NOT detections.",
            file=sys.stderr,
        )
    argv2 = ["detect", str(clip), "--model", str(model), "--out-dir", str(out),
             "--backend", args.backend, "--print-plan"]  # fmt: skip
    if args.max_frames:
        argv2 += ["--max-frames", str(args.max_frames)]
    if args.no_progress:
        argv2.append("--no-progress")
    return app.main(argv2)


if __name__ == "__main__":
    sys.exit(main())
