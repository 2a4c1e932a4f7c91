"""Evaluation runs: a detector over a VOC-layout folder or a MOTChallenge clip, scored by the
metric, with PR curves on request.

Detectors plug in through `detect_fn(image_bgr) -> [(class_id, score, x1, y1, x2, y2), ...]` in
0-based pixel coordinates of the original image (what a YOLO decode gives: x = bx * width). The
drivers convert them to the 1-based convention the way darknet writes its VOC results
(`print_detector_detections` in detector.c: add 1, clip to [1, width] x [1, height]).

This module needs no YOLO decoding itself; the decoder, letterbox and NMS belong to the runtime
(sw/) or the model wrapper that builds `detect_fn`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from models.evaluate.metric import (
    IOU_THRESHOLD,
    PERSON_CLASS,
    VOC_CLASSES,
    FloatArray,
    ImageGT,
    as_det_array,
    clip_boxes,
    evaluate_detections,
)
from models.evaluate.plots import plot_pr_curves
from models.evaluate.readers import (
    find_video,
    load_voc_ground_truth,
    read_mot_gt,
    read_seqinfo,
    voc_image_ids,
)

# One detection: (class_id, score, x1, y1, x2, y2).
Detection = tuple[int, float, float, float, float, float]
DetectFn = Callable[[np.ndarray], Iterable[Sequence[float]]]


def detections_to_voc(dets: Iterable[Sequence[float]], width: int, height: int) -> FloatArray:
    """detect_fn output (0-based pixels) -> rows in the evaluator's 1-based inclusive convention.

    Exactly darknet's VOC writer: x + 1, then clip to [1, width] x [1, height]; keeping its
    convention keeps our mAP comparable with the one the weights' authors report.
    """
    arr = as_det_array(list(dets), "detect_fn")
    if len(arr) == 0:
        return arr
    if np.any(arr[:, 4] < arr[:, 2]) or np.any(arr[:, 5] < arr[:, 3]):
        raise ValueError("detect_fn: a box has x2 < x1 or y2 < y1 (expected x1, y1, x2, y2)")
    arr = arr.copy()
    arr[:, 2:6] = clip_boxes(arr[:, 2:6] + 1.0, width, height)
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
    return _finish(result, plot_path, f"VOC {root.name} ({len(ids)} images)", with_curves)


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
    info = read_seqinfo(clip)
    video = find_video(clip, info.get("name"))
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
    title = f"{clip.name} person ({len(detections)} frames)"
    return _finish(result, plot_path, title, with_curves)


def _finish(
    result: dict[str, Any], plot_path: str | Path | None, title: str, with_curves: bool
) -> dict[str, Any]:
    """Draw the PR curves to ``plot_path`` when given, then drop them unless ``with_curves``."""
    if plot_path is not None:
        plot_pr_curves(result, plot_path, title=title)
    if not with_curves:
        for entry in result["per_class"].values():
            entry.pop("curve", None)
    return result


def save_result(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write a result dict as indented JSON (None -> null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
