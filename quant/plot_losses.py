"""Draw the training-loss curves that quant.qat / quant.datafree checkpoints record.

    python -m quant.plot_losses RUN.ckpt.pt[=label] ... --out docs/img/qat_loss.png

Each checkpoint keeps every step's loss; the plot shows a 25-step moving average per run on a
log scale; where the activations are switched to quantized (--weights-only-frac) the loss
jumps, since from there on it includes the activation rounding.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from quant.checkpoint import load_plain  # noqa: E402


def moving_average(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) < n:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    return (c[n:] - c[:-n]) / n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("runs", nargs="+", help="checkpoint paths, optionally =label")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--window", type=int, default=25)
    args = ap.parse_args(argv)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for spec in args.runs:
        path, _, label = spec.partition("=")
        ck = load_plain(path, model=False)  # weights_only: no code runs from the file
        losses = np.asarray(ck.get("losses", []), dtype=np.float64)
        if losses.size == 0:
            raise SystemExit(f"{path}: the checkpoint records no losses (not a qat checkpoint)")
        y = moving_average(losses, args.window)
        ax.plot(np.arange(len(y)) + args.window, y, label=label or Path(path).name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"distillation loss ({args.window}-step mean)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
