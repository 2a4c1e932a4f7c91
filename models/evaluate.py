"""Detection accuracy: PASCAL VOC mAP@0.5 and person AP on MOTChallenge clips, with PR curves.

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

Detectors plug in through `detect_fn(image_bgr) -> [(class_id, score, x1, y1, x2, y2), ...]` in
0-based pixel coordinates of the original image (what a YOLO decode gives: x = bx * width). The
drivers convert them to the 1-based convention the way darknet writes its VOC results
(`print_detector_detections` in detector.c: add 1, clip to [1, width] x [1, height]).

This module needs no YOLO decoding itself; the decoder, letterbox and NMS belong to the runtime
(sw/) or the model wrapper that builds `detect_fn`.
"""

from __future__ import annotations

import configparser
import json
import math
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray
from tqdm import tqdm

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

# One detection: (class_id, score, x1, y1, x2, y2).
Detection = tuple[int, float, float, float, float, float]
DetectFn = Callable[[np.ndarray], Iterable[Sequence[float]]]
FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VocObject:
    """One <object> of a VOC annotation; box is (xmin, ymin, xmax, ymax), 1-based inclusive."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool


@dataclass(frozen=True)
class VocAnnotation:
    """A parsed VOC XML file. width/height are None when the file has no <size>."""

    filename: str
    width: int | None
    height: int | None
    objects: tuple[VocObject, ...]


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


def parse_voc_xml(path: str | Path) -> VocAnnotation:
    """Read a VOC annotation: every <object>'s name, difficult flag and bndbox.

    Only the object's own <bndbox> is read (direct child): person objects may carry <part>
    elements (head, hand, foot) with their own boxes, which are not objects. A missing
    <difficult> counts as 0, as in the devkit. Coordinates are kept as float because a few VOC
    files hold non-integer values.
    """
    path = Path(path)
    root = ET.parse(path).getroot()
    size = root.find("size")

    def _int(node: ET.Element | None, tag: str) -> int | None:
        text = node.findtext(tag) if node is not None else None
        return int(float(text)) if text not in (None, "") else None

    objects = []
    for obj in root.findall("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if not name or bb is None:
            raise ValueError(f"{path}: <object> without <name> or <bndbox>")
        try:
            box = tuple(float(bb.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as exc:
            raise ValueError(f"{path}: object {name!r}: bad bndbox ({exc})") from None
        if not all(math.isfinite(v) for v in box):
            raise ValueError(f"{path}: object {name!r}: incomplete bndbox")
        difficult = int(float(obj.findtext("difficult") or 0)) != 0
        objects.append(VocObject(name, box, difficult))  # type: ignore[arg-type]
    return VocAnnotation(
        filename=(root.findtext("filename") or path.with_suffix(".jpg").name).strip(),
        width=_int(size, "width"),
        height=_int(size, "height"),
        objects=tuple(objects),
    )


def voc_image_ids(voc_root: str | Path, image_set: str | None = "test") -> tuple[list[str], str]:
    """The image ids to evaluate and where they came from.

    `ImageSets/Main/<image_set>.txt` when it exists (VOCdevkit/VOC2007 with test.txt), else every
    `Annotations/*.xml` in sorted order (the bundled voc2012-sample has no ImageSets). Returns
    (ids, source), source being the image-set name or "all".
    """
    root = Path(voc_root)
    ann_dir = root / "Annotations"
    if not ann_dir.is_dir():
        raise FileNotFoundError(f"{root}: no Annotations/ folder (expected a VOC layout)")
    if image_set is not None:
        set_file = root / "ImageSets" / "Main" / f"{image_set}.txt"
        if set_file.is_file():
            # Lines may carry a second column (per-class set files); the id is the first word.
            ids = [ln.split()[0] for ln in set_file.read_text().splitlines() if ln.strip()]
            return ids, image_set
    return sorted(p.stem for p in ann_dir.glob("*.xml")), "all"


def load_voc_ground_truth(
    voc_root: str | Path, image_ids: Sequence[str], class_names: Sequence[str] = VOC_CLASSES
) -> dict[str, ImageGT]:
    """Parse `Annotations/<id>.xml` for each id into ImageGT (class index per `class_names`).

    An object whose name is not in `class_names` is an error rather than skipped: a typo or a
    wrong class list would otherwise silently shrink the ground truth.
    """
    index = {n: i for i, n in enumerate(class_names)}
    out: dict[str, ImageGT] = {}
    for image_id in image_ids:
        path = Path(voc_root) / "Annotations" / f"{image_id}.xml"
        ann = parse_voc_xml(path)
        unknown = sorted({o.name for o in ann.objects} - index.keys())
        if unknown:
            raise ValueError(f"{path}: class(es) {unknown} not in the class list")
        out[image_id] = ImageGT.from_arrays(
            [o.box for o in ann.objects],
            [index[o.name] for o in ann.objects],
            [o.difficult for o in ann.objects],
        )
    return out


def read_mot_gt(
    gt_path: str | Path, width: int | None = None, height: int | None = None
) -> dict[int, FloatArray]:
    """MOTChallenge gt.txt -> {frame (1-based): (N, 4) person boxes, 1-based inclusive}.

    Rows are `frame, id, left, top, width, height, conf, ...`; rows with conf 0 are "ignore"
    regions and are dropped. A box covering pixels left .. left + w - 1 maps to x2 = left + w - 1
    so that its +1-convention area is w * h. When the frame size is given, boxes are clipped to
    [1, width] x [1, height] - the same clipping the drivers apply to detections, since a detector
    cannot report the part of a pedestrian outside the frame - and boxes left with nothing inside
    the frame are dropped.
    """
    raw = np.loadtxt(gt_path, delimiter=",", ndmin=2, dtype=np.float64)
    if raw.size == 0:
        return {}
    if raw.shape[1] < 7:
        raise ValueError(f"{gt_path}: expected >= 7 columns, got {raw.shape[1]}")
    raw = raw[raw[:, 6] != 0]
    x1, y1 = raw[:, 2], raw[:, 3]
    boxes = np.stack([x1, y1, x1 + raw[:, 4] - 1, y1 + raw[:, 5] - 1], axis=1)
    if width is not None and height is not None:
        keep = (
            (boxes[:, 2] >= 1)
            & (boxes[:, 3] >= 1)
            & (boxes[:, 0] <= width)
            & (boxes[:, 1] <= height)
        )
        raw, boxes = raw[keep], _clip(boxes[keep], width, height)
    frames = raw[:, 0].astype(np.int64)
    return {int(f): boxes[frames == f] for f in np.unique(frames)}


# --------------------------------------------------------------------------------------------
# The metric
# --------------------------------------------------------------------------------------------


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


def _as_det_array(dets: ArrayLike, what: str) -> FloatArray:
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
        arr = _as_det_array(dets, f"image {image_id}")
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


# --------------------------------------------------------------------------------------------
# Drivers
# --------------------------------------------------------------------------------------------


def _clip(boxes: FloatArray, width: int, height: int) -> FloatArray:
    out = boxes.copy()
    out[:, 0::2] = np.clip(out[:, 0::2], 1.0, float(width))
    out[:, 1::2] = np.clip(out[:, 1::2], 1.0, float(height))
    return out


def detections_to_voc(dets: Iterable[Sequence[float]], width: int, height: int) -> FloatArray:
    """detect_fn output (0-based pixels) -> rows in the evaluator's 1-based inclusive convention.

    Exactly darknet's VOC writer: x + 1, then clip to [1, width] x [1, height]; keeping its
    convention keeps our mAP comparable with the one the weights' authors report.
    """
    arr = _as_det_array(list(dets), "detect_fn")
    if len(arr) == 0:
        return arr
    if np.any(arr[:, 4] < arr[:, 2]) or np.any(arr[:, 5] < arr[:, 3]):
        raise ValueError("detect_fn: a box has x2 < x1 or y2 < y1 (expected x1, y1, x2, y2)")
    arr = arr.copy()
    arr[:, 2:6] = _clip(arr[:, 2:6] + 1.0, width, height)
    return arr


def evaluate_voc(
    detect_fn: DetectFn,
    voc_root: str | Path,
    class_names: Sequence[str] = VOC_CLASSES,
    image_set: str | None = "test",
    limit: int | None = None,
    iou_threshold: float = IOU_THRESHOLD,
    progress: bool = True,
    plot_path: str | Path | None = None,
    with_curves: bool = True,
) -> dict[str, Any]:
    """Run `detect_fn` on every image of a VOC-layout folder and compute VOC AP / mAP.

    `voc_root` holds Annotations/ and JPEGImages/ (the bundled data/voc2012-sample, or a
    VOCdevkit/VOC2007); images come from ImageSets/Main/<image_set>.txt when present, else all
    annotations sorted by id, optionally the first `limit`. `detect_fn` gets each image as
    OpenCV loads it (BGR uint8, HxWx3) - in that order, so a caching or oracle detector may rely
    on it - and returns (class_id, score, x1, y1, x2, y2) in 0-based pixels of that image.
    Returns `evaluate_detections`'s dict plus "dataset", "root", "image_set", "seconds" and
    "detect_seconds"; writes the PR-curve figure to `plot_path` when given.
    """
    root = Path(voc_root)
    ids, source = voc_image_ids(root, image_set)
    if limit is not None:
        ids = ids[:limit]
    gt = load_voc_ground_truth(root, ids, class_names)
    detections: dict[str, FloatArray] = {}
    t_start = time.perf_counter()
    t_detect = 0.0
    for image_id in tqdm(ids, desc="VOC eval", unit="img", disable=not progress):
        path = root / "JPEGImages" / f"{image_id}.jpg"
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cannot read image {path}")
        t0 = time.perf_counter()
        raw = detect_fn(image)
        t_detect += time.perf_counter() - t0
        detections[image_id] = detections_to_voc(raw, image.shape[1], image.shape[0])
    result = evaluate_detections(detections, gt, class_names, iou_threshold, True)
    result.update(
        dataset="voc",
        root=str(root),
        image_set=source,
        seconds=time.perf_counter() - t_start,
        detect_seconds=t_detect,
    )
    if plot_path is not None:
        plot_pr_curves(result, plot_path, title=f"VOC {root.name} ({len(ids)} images)")
    if not with_curves:
        _drop_curves(result)
    return result


def _read_seqinfo(clip_dir: Path) -> dict[str, str]:
    ini = clip_dir / "seqinfo.ini"
    if not ini.is_file():
        return {}
    parser = configparser.ConfigParser()
    parser.read(ini)
    return dict(parser["Sequence"]) if parser.has_section("Sequence") else {}


def _find_video(clip_dir: Path, name: str | None) -> Path:
    if name and (clip_dir / f"{name}.mp4").is_file():
        return clip_dir / f"{name}.mp4"
    videos = sorted(clip_dir.glob("*.mp4"))
    if len(videos) != 1:
        raise FileNotFoundError(f"{clip_dir}: expected one .mp4, found {len(videos)}")
    return videos[0]


def evaluate_mot(
    detect_fn: DetectFn,
    clip_dir: str | Path,
    person_class: int = PERSON_CLASS,
    max_frames: int | None = None,
    iou_threshold: float = IOU_THRESHOLD,
    progress: bool = True,
    plot_path: str | Path | None = None,
    with_curves: bool = True,
) -> dict[str, Any]:
    """Person AP on a MOTChallenge clip folder (<name>.mp4, gt/gt.txt or gt.txt, seqinfo.ini).

    Every frame of the video (or the first `max_frames`) is one image, frames without GT
    included; `detect_fn` is called on each frame in order and only its `person_class`
    detections are kept. GT boxes are clipped to the frame as detections are (see read_mot_gt).
    Frame ids in the result are 1-based, as in gt.txt. The dict has the `evaluate_detections`
    fields for the single class "person" (so map_* equal the person AP) plus "ap_11pt",
    "ap_all", "dataset", "root", "num_frames", "seconds", "detect_seconds".
    """
    clip = Path(clip_dir)
    info = _read_seqinfo(clip)
    video = _find_video(clip, info.get("name"))
    gt_path = clip / "gt" / "gt.txt" if (clip / "gt" / "gt.txt").is_file() else clip / "gt.txt"
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise FileNotFoundError(f"OpenCV cannot open {video}")
    expected = int(info["seqlength"]) if "seqlength" in info else None
    n_frames = expected if expected is not None else int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if max_frames is not None:
        n_frames = min(n_frames, max_frames)
    detections: dict[str, FloatArray] = {}
    size: tuple[int, int] | None = None
    t_start = time.perf_counter()
    t_detect = 0.0
    try:
        for frame in tqdm(range(1, n_frames + 1), desc=f"MOT {clip.name}", disable=not progress):
            ok, image = cap.read()
            if not ok:
                # A short read would silently drop GT frames from the evaluation.
                raise ValueError(f"{video}: ended after {frame - 1} frames, expected {n_frames}")
            size = (image.shape[1], image.shape[0])
            t0 = time.perf_counter()
            raw = [d for d in detect_fn(image) if int(d[0]) == person_class]
            t_detect += time.perf_counter() - t0
            dets = detections_to_voc(raw, *size)
            if len(dets):
                dets[:, 0] = 0  # the evaluator's single class
            detections[f"{frame:06d}"] = dets
    finally:
        cap.release()
    if size is None:
        raise ValueError(f"{video}: no frames")
    gt_frames = read_mot_gt(gt_path, *size)
    gt = {}
    for key in detections:
        boxes = gt_frames.get(int(key), np.zeros((0, 4), np.float64))
        gt[key] = ImageGT.from_arrays(boxes, np.zeros(len(boxes), np.int64))
    result = evaluate_detections(detections, gt, ("person",), iou_threshold, True)
    person = result["per_class"]["person"]
    result.update(
        dataset="mot",
        root=str(clip),
        ap_11pt=person["ap_11pt"],
        ap_all=person["ap_all"],
        num_frames=len(detections),
        seconds=time.perf_counter() - t_start,
        detect_seconds=t_detect,
    )
    if plot_path is not None:
        plot_pr_curves(result, plot_path, title=f"{clip.name} person ({len(detections)} frames)")
    if not with_curves:
        _drop_curves(result)
    return result


def _drop_curves(result: dict[str, Any]) -> None:
    for entry in result["per_class"].values():
        entry.pop("curve", None)


def save_result(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write a result dict as indented JSON (None -> null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# PR curves
# --------------------------------------------------------------------------------------------


def plot_pr_curves(result: Mapping[str, Any], path: str | Path, title: str | None = None) -> Path:
    """One PNG with a small PR plot per class that has GT (a single larger plot for one class).

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
        ap_all, ap07 = e["ap_all"], e["ap_11pt"]
        ax.set_title(
            f"{name}: AP {100 * ap_all:.1f} / 11pt {100 * ap07:.1f}\n"
            f"{e['num_gt']} GT, {e['num_det']} det",
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
    fig.suptitle(head, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
