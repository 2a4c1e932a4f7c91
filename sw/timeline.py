"""The timeline PNG of a run: a Gantt chart of the stages over frames (matplotlib, Agg).

matplotlib is imported here only, when the chart is drawn; without it the app still runs and
says that the chart was left out (the board image may not have it).
"""

from __future__ import annotations

from pathlib import Path

from sw.pipeline import PipelineResult
from sw.sinks import write_atomic


def write_timeline_png(res: PipelineResult, path: Path, max_frames: int = 80,
                       title: str = "") -> bool:  # fmt: skip
    """Draw the first ``max_frames`` frames' stage intervals (the pipeline keeps the first 80);
    False when matplotlib is missing or no frame came out."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = res.timeline[:max_frames]
    if not rows:
        return False
    stages: list[str] = []
    for _, times in rows:
        for n in times:
            if n not in stages:
                stages.append(n)
    t0 = min(t["capture"][0] for _, t in rows if "capture" in t)
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(12, 0.6 * len(stages) + 1.6), dpi=110)
    for k, (idx, times) in enumerate(rows):
        for s, name in enumerate(stages):
            if name in times:
                a, b = times[name]
                ax.broken_barh([((a - t0) * 1e3, max((b - a) * 1e3, 0.05))], (s - 0.4, 0.8),
                               facecolors=cmap(k % 10), edgecolor="none")  # fmt: skip
                if len(rows) <= 30 and (b - a) * 1e3 > 0:
                    ax.text((a - t0) * 1e3, s, str(idx), va="center", fontsize=6)
    ax.set_yticks(range(len(stages)), stages)
    ax.invert_yaxis()
    ax.set_xlabel("time since the first capture (ms); colour = frame")
    ax.set_title(title or f"{res.mode} pipeline, {len(rows)} of {res.frames_out} frames")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # through a temporary file: a full disk leaves the earlier PNG, never a part
        write_atomic(path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)
    return True
