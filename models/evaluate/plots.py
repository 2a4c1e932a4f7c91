"""PR-curve figures of an evaluation result (matplotlib, headless)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def plot_pr_curves(result: Mapping[str, Any], path: str | Path, title: str | None = None) -> Path:
    """One PNG with a small PR plot per class that has GT (a single larger plot for one class):
    a VOC result (``evaluate_voc``/``evaluate_mot``) or a COCO one (``evaluate_coco``, its
    curves at IoU 0.5 on COCO's 101 recall points).

    Each panel draws the PR points stored in the result (precision at each TP) and shades the
    monotone envelope whose area is the all-points AP. Uses matplotlib's object API (no pyplot)
    so it works headless and leaves no global figure state behind.
    """
    from matplotlib.figure import Figure  # deferred: matplotlib import costs ~0.3 s

    classes = [
        (name, e) for name, e in result["per_class"].items() if e.get("num_gt") and "curve" in e
    ]
    if not classes:
        raise ValueError("plot_pr_curves: no class with ground truth and a stored curve")
    n = len(classes)
    ncols = min(5, n)
    nrows = math.ceil(n / ncols)
    panel = 4.5 if n == 1 else 2.6
    fig = Figure(figsize=(panel * ncols, panel * nrows * 0.95 + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (name, e) in zip(axes.flat, classes, strict=False):
        rec = np.asarray(e["curve"]["recall"], np.float64)
        prec = np.asarray(e["curve"]["precision"], np.float64)
        if len(rec):
            env = np.maximum.accumulate(prec[::-1])[::-1]
            ax.fill_between(
                np.concatenate(([0.0], rec)),
                np.concatenate(([env[0]], env)),
                step="pre",
                alpha=0.25,
                linewidth=0,
            )
            ax.plot(rec, prec, linewidth=1.2, marker="." if len(rec) < 40 else None)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        if "ap50" in e:  # a COCO result (models.evaluate.coco): its curve is at IoU 0.5
            aps = f"AP50 {100 * (e['ap50'] or 0):.1f} / AP {100 * (e['ap'] or 0):.1f}"
        else:
            aps = f"AP {100 * e['ap_all']:.1f} / 11pt {100 * e['ap_11pt']:.1f}"
        ax.set_title(
            f"{name}: {aps}\n{e['num_gt']} GT, {e['num_det']} det",
            fontsize=8 if n > 1 else 10,
        )
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("recall", fontsize=7)
        ax.set_ylabel("precision", fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    head = title or "precision / recall"
    m_all, m07 = result.get("map_all"), result.get("map_11pt")
    if m_all is not None and m07 is not None and n > 1:
        head += f" - mAP@0.5 {100 * m_all:.2f} (all points), {100 * m07:.2f} (11-point)"
    elif result.get("map50") is not None:
        head += (f" - COCO mAP@.5 {100 * result['map50']:.2f}, "
                 f"mAP@[.5:.95] {100 * result['map']:.2f}")  # fmt: skip
    fig.suptitle(head, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
