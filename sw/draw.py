"""Drawing detections on a frame (OpenCV), in place."""

from __future__ import annotations

import cv2
import numpy as np

from sw.compat import zip_strict
from sw.postprocess import Detections
from sw.topk import Ranking


def class_color(c: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour per class id (golden-ratio hue steps)."""
    hue = int((c * 0.618034 % 1.0) * 180)
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(frame: np.ndarray, det: Detections, names: list[str]) -> np.ndarray:
    """Boxes with 'class score' labels drawn into ``frame`` (BGR); returns the frame."""
    h, w = frame.shape[:2]
    thick = max(1, round(min(h, w) / 320))
    for (x1, y1, x2, y2), s, c in zip_strict(det.boxes.tolist(), det.scores.tolist(),
                                             det.classes.tolist()):  # fmt: skip
        color = class_color(c)
        p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(frame, p1, p2, color, thick)
        label = f"{names[c] if c < len(names) else c} {s:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(p1[1], th + base + 2)
        cv2.rectangle(frame, (p1[0], ty - th - base - 2), (p1[0] + tw + 2, ty), color, -1)
        cv2.putText(frame, label, (p1[0] + 1, ty - base - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
    return frame


def draw_ranking(frame: np.ndarray, rank: Ranking, names: list[str]) -> np.ndarray:
    """A classifier's best class and its probability written into ``frame``'s top-left corner
    (BGR, in place, scaled to the frame); returns the frame."""
    if rank.classes.size == 0:
        return frame
    h, w = frame.shape[:2]
    c, p = int(rank.classes[0]), float(rank.probs[0])
    label = f"{names[c] if c < len(names) else c} {p:.2f}"
    scale = max(0.25, min(h, w) / 720)
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(frame, (0, 0), (tw + 2, th + base + 2), class_color(c), -1)
    cv2.putText(frame, label, (1, th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                cv2.LINE_AA)  # fmt: skip
    return frame
