"""The PASCAL VOC AP / mAP@0.5 metric on detections and ground truth in its 1-based convention.

The metric follows the official PASCAL VOC devkit (`VOCdevkit/.../voc_eval.py`, the Python port
used by py-faster-rcnn and darknet's `reval_voc.py`), so numbers are comparable with the published
VOC 2007 test mAP of the Yolo-Fastest weights:

* boxes are 1-based inclusive pixel coordinates, so a box's area is (x2 - x1 + 1) * (y2 - y1 + 1)
  and the intersection width is max(0, min(x2) - max(x1) + 1);
* per class, detections are taken in decreasing score order; each is compared with the ground
  truth (GT) of its image and assigned to the GT box of largest IoU. IoU > 0.5 (strictly) with an
  unmatched non-difficult box is a true positive (TP); with an already matched box it is a false
  positive (FP, a duplicate) even when another box also overlaps enough - that is what the devkit
  does; with a "difficult" box it is neither TP nor FP; IoU <= 0.5 is an FP;
* recall = TP / (number of non-difficult GT), precision = TP / (TP + FP) after each detection;
* AP both ways: the VOC2007 11-point metric (mean over t in {0, 0.1, ..., 1} of the largest
  precision at recall >= t) and the all-points metric of VOC2010+ (area under the monotone
  precision envelope);
* mAP is the mean over the classes with at least one non-difficult GT object; a class without one
  has no AP (None in the result) and is left out of the mean.

Two deliberate details, both documented where they happen: ties in score keep their input order
(a stable sort; the devkit's quicksort leaves them unspecified), and the 11 recall thresholds are
k / 10 exactly (the devkit's `np.arange(0., 1.1, 0.1)` yields 0.30000000000000004 etc., so a
recall of exactly 3/10 would miss its threshold there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# darknet's voc.names order, which is the class order of the models' outputs.
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
PERSON_CLASS = VOC_CLASSES.index("person")
IOU_THRESHOLD = 0.5
METRIC = (
    "PASCAL VOC AP (devkit voc_eval.py): greedy by score, IoU > threshold, +1 pixel areas, "
    "difficult ignored"
)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ImageGT:
    """Ground truth of one image in the evaluator's form (1-based inclusive boxes)."""

    boxes: FloatArray  # (N, 4) x1, y1, x2, y2
    labels: NDArray[np.int64]  # (N,) class index
    difficult: NDArray[np.bool_]  # (N,)

    @staticmethod
    def empty() -> ImageGT:
        return ImageGT(np.zeros((0, 4), np.float64), np.zeros(0, np.int64), np.zeros(0, np.bool_))

    @staticmethod
    def from_arrays(
        boxes: ArrayLike, labels: ArrayLike, difficult: ArrayLike | None = None
    ) -> ImageGT:
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        lab = np.asarray(labels, np.int64).reshape(-1)
        dif = (
            np.zeros(len(b), np.bool_)
            if difficult is None
            else np.asarray(difficult, np.bool_).reshape(-1)
        )
        if not len(b) == len(lab) == len(dif):
            raise ValueError(f"ImageGT: {len(b)} boxes, {len(lab)} labels, {len(dif)} flags")
        return ImageGT(b, lab, dif)


def clip_boxes(boxes: FloatArray, width: int, height: int) -> FloatArray:
    """Boxes (N, 4) clipped to [1, width] x [1, height], the 1-based frame."""
    out = boxes.copy()
    out[:, 0::2] = np.clip(out[:, 0::2], 1.0, float(width))
    out[:, 1::2] = np.clip(out[:, 1::2], 1.0, float(height))
    return out


def iou_voc(box: ArrayLike, boxes: ArrayLike) -> FloatArray:
    """IoU of one box with each of `boxes`, all 1-based inclusive (devkit's +1 areas)."""
    b = np.asarray(box, np.float64)
    bs = np.asarray(boxes, np.float64).reshape(-1, 4)
    iw = np.maximum(np.minimum(bs[:, 2], b[2]) - np.maximum(bs[:, 0], b[0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(bs[:, 3], b[3]) - np.maximum(bs[:, 1], b[1]) + 1.0, 0.0)
    inter = iw * ih
    union = (
        (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0)
        + (bs[:, 2] - bs[:, 0] + 1.0) * (bs[:, 3] - bs[:, 1] + 1.0)
        - inter
    )
    return inter / union


# Exactly k / 10: the devkit's np.arange(0., 1.1, 0.1) gives 0.30000000000000004, 0.6000000000000001
# and 0.7000000000000001, which a recall of exactly 3/10, 6/10 or 7/10 would fail to reach.
_ELEVEN_POINTS = np.arange(11, dtype=np.float64) / 10.0


def voc_ap(recall: ArrayLike, precision: ArrayLike, use_07_metric: bool = False) -> float:
    """AP from a PR curve (recall non-decreasing), as the devkit's `voc_ap`.

    11-point: mean over t = 0, 0.1, ..., 1 of max(precision[recall >= t]) (0 when none).
    All-points: pad the curve with (0, 0) and (1, 0), make precision monotone from the right
    (the envelope) and sum rectangle areas where recall changes.
    """
    rec = np.asarray(recall, np.float64)
    prec = np.asarray(precision, np.float64)
    if use_07_metric:
        ap = 0.0
        for t in _ELEVEN_POINTS:
            mask = rec >= t
            ap += float(np.max(prec[mask])) if mask.any() else 0.0
        return ap / 11.0
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@dataclass
class ClassEval:
    """Matching outcome for one class; arrays follow detections in decreasing score order."""

    num_gt: int  # non-difficult GT objects (the recall denominator)
    num_difficult: int
    scores: FloatArray
    tp: NDArray[np.bool_]
    fp: NDArray[np.bool_]  # a detection matched to a difficult object is neither tp nor fp

    @property
    def num_det(self) -> int:
        return len(self.scores)

    def curve(self) -> tuple[FloatArray, FloatArray]:
        """(recall, precision) after each counted detection; ignored ones are dropped.

        Dropping the ignored detections equals the devkit's zero-increment steps: those repeat
        the previous (recall, precision) point, which changes neither AP.
        """
        counted = self.tp | self.fp
        tp = np.cumsum(self.tp[counted], dtype=np.float64)
        fp = np.cumsum(self.fp[counted], dtype=np.float64)
        rec = tp / self.num_gt if self.num_gt else np.full_like(tp, np.nan)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        return rec, prec

    def ap(self, use_07_metric: bool) -> float | None:
        if self.num_gt == 0:
            return None  # undefined: no object to find
        rec, prec = self.curve()
        return voc_ap(rec, prec, use_07_metric)


def evaluate_class(
    det_images: Sequence[str],
    det_scores: ArrayLike,
    det_boxes: ArrayLike,
    gt: Mapping[str, tuple[FloatArray, NDArray[np.bool_]]],
    iou_threshold: float = IOU_THRESHOLD,
) -> ClassEval:
    """Greedy VOC matching of one class's detections against its GT (boxes, difficult) per image.

    A detection on an image missing from `gt` is an FP (the image has no object of the class).
    """
    scores = np.asarray(det_scores, np.float64).reshape(-1)
    boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    # Stable, so that equal scores keep input order and results are reproducible.
    order = np.argsort(-scores, kind="stable")
    matched = {k: np.zeros(len(b), np.bool_) for k, (b, _) in gt.items()}
    tp = np.zeros(len(order), np.bool_)
    fp = np.zeros(len(order), np.bool_)
    for d, j in enumerate(order):
        image = det_images[j]
        if image not in gt or len(gt[image][0]) == 0:
            fp[d] = True
            continue
        gt_boxes, gt_difficult = gt[image]
        overlaps = iou_voc(boxes[j], gt_boxes)
        best = int(np.argmax(overlaps))
        if overlaps[best] > iou_threshold:
            if gt_difficult[best]:
                continue  # neither TP nor FP
            if matched[image][best]:
                fp[d] = True  # duplicate of an already found object
            else:
                tp[d] = True
                matched[image][best] = True
        else:
            fp[d] = True
    num_difficult = sum(int(dif.sum()) for _, dif in gt.values())
    num_gt = sum(len(dif) for _, dif in gt.values()) - num_difficult
    return ClassEval(num_gt, num_difficult, scores[order], tp, fp)


def as_det_array(dets: ArrayLike, what: str) -> FloatArray:
    """Detection rows (N, 6) as float64, checked: (class_id, score, x1, y1, x2, y2) each."""
    arr = np.asarray(dets, np.float64)
    if arr.size == 0:
        return np.zeros((0, 6), np.float64)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(f"{what}: detections must be rows of 6 values, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: non-finite detection values")
    return arr


def _curve_points(ev: ClassEval) -> dict[str, list[float]]:
    """The PR curve at each TP plus its last point: compact (<= num_gt + 1 points) and lossless
    for both APs, because the best precision at any recall level is reached at the TP that
    entered the level (later FPs at the same recall only lower it)."""
    rec, prec = ev.curve()
    if len(rec) == 0 or ev.num_gt == 0:
        return {"recall": [], "precision": []}
    keep = ev.tp[ev.tp | ev.fp].copy()
    keep[-1] = True
    return {
        "recall": [round(float(v), 6) for v in rec[keep]],
        "precision": [round(float(v), 6) for v in prec[keep]],
    }


def evaluate_detections(
    detections: Mapping[str, ArrayLike],
    ground_truth: Mapping[str, ImageGT],
    class_names: Sequence[str] = VOC_CLASSES,
    iou_threshold: float = IOU_THRESHOLD,
    with_curves: bool = True,
) -> dict[str, Any]:
    """VOC AP per class and mAP, from detections already in the 1-based inclusive convention.

    `detections` maps image id -> rows (class_id, score, x1, y1, x2, y2); `ground_truth` maps
    every evaluated image id (also those without objects, whose detections are all FPs) to its
    ImageGT. Returns a JSON-serialisable dict:
    `{"map_11pt", "map_all", "num_classes_in_mean", "num_images", "num_detections", "per_class":
    {name: {"ap_11pt", "ap_all", "num_gt", "num_difficult", "num_det", "tp", "fp", "ignored",
    "max_recall"[, "curve": {"recall", "precision"}]}}}`; a class without non-difficult GT has
    AP None and is not in the mean.
    """
    unknown = sorted(set(detections) - set(ground_truth))
    if unknown:
        raise ValueError(f"detections for images without ground truth: {unknown[:5]}")
    n_cls = len(class_names)
    per_class_dets: list[tuple[list[str], list[FloatArray]]] = [([], []) for _ in range(n_cls)]
    total = 0
    for image_id, dets in detections.items():
        arr = as_det_array(dets, f"image {image_id}")
        total += len(arr)
        cls = arr[:, 0].astype(np.int64)
        if len(arr) and (np.any(cls != arr[:, 0]) or cls.min() < 0 or cls.max() >= n_cls):
            raise ValueError(f"image {image_id}: class ids must be integers in [0, {n_cls})")
        for c in np.unique(cls):
            rows = arr[cls == c]
            per_class_dets[c][0].extend([image_id] * len(rows))
            per_class_dets[c][1].append(rows)

    per_class: dict[str, dict[str, Any]] = {}
    aps_07: list[float] = []
    aps_all: list[float] = []
    for c, name in enumerate(class_names):
        gt_c = {}
        for image_id, g in ground_truth.items():
            sel = g.labels == c
            gt_c[image_id] = (g.boxes[sel], g.difficult[sel])
        images, chunks = per_class_dets[c]
        rows = np.concatenate(chunks) if chunks else np.zeros((0, 6))
        ev = evaluate_class(images, rows[:, 1], rows[:, 2:6], gt_c, iou_threshold)
        ap07, ap_all = ev.ap(True), ev.ap(False)
        if ap07 is not None and ap_all is not None:
            aps_07.append(ap07)
            aps_all.append(ap_all)
        n_tp = int(ev.tp.sum())
        entry: dict[str, Any] = {
            "ap_11pt": ap07,
            "ap_all": ap_all,
            "num_gt": ev.num_gt,
            "num_difficult": ev.num_difficult,
            "num_det": ev.num_det,
            "tp": n_tp,
            "fp": int(ev.fp.sum()),
            "ignored": int(ev.num_det - n_tp - ev.fp.sum()),
            "max_recall": n_tp / ev.num_gt if ev.num_gt else None,
        }
        if with_curves:
            entry["curve"] = _curve_points(ev)
        per_class[name] = entry
    return {
        "metric": METRIC,
        "iou_threshold": iou_threshold,
        "map_11pt": float(np.mean(aps_07)) if aps_07 else None,
        "map_all": float(np.mean(aps_all)) if aps_all else None,
        "num_classes_in_mean": len(aps_all),
        "num_images": len(ground_truth),
        "num_detections": total,
        "per_class": per_class,
    }
