"""``make demo``: TUD-Stadtmitte through the best committed Yolo-Fastest artifact on ``emu``.

    python -m sw.demo [--max-frames N] [--out-dir out/demo] [--backend emu]

Writes ``out/demo/TUD-Stadtmitte.{mp4,jsonl,report.json,timeline.png}`` (replacing the
previous demo's: the demo's own folder, hence ``--overwrite``). The model is the
best quantized Yolo-Fastest under ``models/artifacts/`` (highest measured mAP in its metadata);
its name and measured mAP go into the report.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sw import app


def data_dir() -> Path:
    """The data folder: the checkout's (``models.paths.data_dir``: ``data/`` once filled, else
    ``$POW2DET_DATA``); on a board, where the runtime is installed without ``models/``,
    ``$POW2DET_DATA`` or ``./data``."""
    try:
        from models.paths import data_dir as checkout_data_dir
    except ImportError:
        return Path(os.environ.get("POW2DET_DATA", "data"))
    return checkout_data_dir()


CLIP = Path("video") / "TUD-Stadtmitte" / "TUD-Stadtmitte.mp4"


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
    except app.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"demo: model {model}")
    argv2 = ["detect", str(clip), "--model", str(model), "--out-dir", str(out),
             "--backend", args.backend, "--print-plan", "--overwrite"]  # fmt: skip
    if args.max_frames:
        argv2 += ["--max-frames", str(args.max_frames)]
    if args.no_progress:
        argv2.append("--no-progress")
    return app.main(argv2)


if __name__ == "__main__":
    sys.exit(main())
