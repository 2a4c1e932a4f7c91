"""COCO-format evaluation: a detector over a folder of images with a COCO annotations JSON,
scored by pycocotools (COCO mAP@[.5:.95], mAP@.5, mAP@.75 and the rest of COCOeval's twelve),
with per-class PR curves at IoU 0.5.

The folder can be laid out as COCO ships it (``annotations/instances_val2017.json`` beside
``val2017/``) or as a user exports one (``annotations.json`` or a single ``*.json`` beside the
images or an ``images/`` folder); ``find_coco_folder`` says which files it took, and an explicit
annotations file or image folder overrides the search.

Categories are matched to the model's classes by name: case, spaces, ``_`` and ``-`` do not
count, and VOC's names meet COCO's (aeroplane = airplane, motorbike = motorcycle, sofa = couch,
tvmonitor = tv). Ground-truth categories no class matches are left out of the mean and listed
in the result (``unmatched_categories``); detections of classes no category matches are dropped.
Boxes go to pycocotools in COCO's convention: ``[x1, y1, x2 - x1, y2 - y1]`` in 0-based pixels,
clipped to the image (no +1 pixel, unlike the VOC metric).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from models.evaluate.metric import VOC_CLASSES, as_det_array

METRIC_COCO = "COCO bbox AP (pycocotools COCOeval): mean over IoU 0.50:0.05:0.95, 101 recall points"
STAT_NAMES = ("map", "map50", "map75", "map_small", "map_medium", "map_large",
              "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large")  # fmt: skip
# VOC name -> COCO name, after normalisation (the other pairs only differ in spaces).
ALIASES = {"aeroplane": "airplane", "motorbike": "motorcycle", "sofa": "couch", "tvmonitor": "tv"}


def _norm(name: str) -> str:
    n = re.sub(r"[\s_-]+", "", name.strip().lower())
    return ALIASES.get(n, n)


@dataclass(frozen=True)
class CocoFolder:
    """The annotations file and the folder its ``file_name``s are relative to."""

    annotations: Path
    images: Path


def _find_annotations(root: Path) -> Path:
    if (root / "annotations.json").is_file():
        return root / "annotations.json"
    for where in (root, root / "annotations"):
        found = sorted(where.glob("*.json")) if where.is_dir() else []
        inst = [p for p in found if p.name.startswith("instances_")]
        found = inst or found
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ValueError(f"{where}: {len(found)} annotation files "
                             f"({', '.join(p.name for p in found[:4])}): name one")  # fmt: skip
    raise FileNotFoundError(f"{root}: no COCO annotations JSON (annotations.json, *.json or "
                            f"annotations/instances_*.json)")  # fmt: skip


def find_coco_folder(
    root: str | Path, annotations: str | Path | None = None, images: str | Path | None = None
) -> CocoFolder:
    """Where a COCO-format dataset's annotations and images are (see the module docstring).

    ``root``: a folder or the annotations JSON itself. The image folder is the first of
    ``images``, ``<root>/images``, ``<root>/<set>`` (``instances_<set>.json``, also beside the
    ``annotations/`` folder) and the annotations' own folder that holds the first image."""
    root = Path(root)
    if annotations is not None:
        ann = Path(annotations)
    elif root.is_file():
        ann = root
    elif root.is_dir():
        ann = _find_annotations(root)
    else:
        raise FileNotFoundError(f"{root}: no such folder or file")
    if not ann.is_file():
        raise FileNotFoundError(f"{ann}: no such annotations file")
    base = root if root.is_dir() else ann.parent
    first = _first_file_name(ann)
    if images is not None:
        cands = [Path(images)]
    else:
        sets = [ann.stem[len("instances_") :]] if ann.stem.startswith("instances_") else []
        cands = [base / "images", *(d / s for s in sets for d in (base, ann.parent.parent)),
                 ann.parent, base]  # fmt: skip
    for c in cands:
        if first is None or (c / first).is_file():
            return CocoFolder(ann, c)
    raise FileNotFoundError(f"{ann}: its first image {first!r} is in none of "
                            f"{', '.join(str(c) for c in dict.fromkeys(cands))} "
                            f"(name the image folder)")  # fmt: skip


def _first_file_name(ann: Path) -> str | None:
    try:
        doc = json.loads(ann.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{ann}: not a COCO annotations JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise ValueError(f"{ann}: not a COCO annotations JSON (no 'images' list)")
    for key in ("annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise ValueError(f"{ann}: not a COCO annotations JSON (no {key!r} list)")
    ims = sorted(doc["images"], key=lambda i: i.get("id", 0))
    return str(ims[0]["file_name"]) if ims else None


def match_categories(
    categories: Sequence[dict[str, Any]], class_names: Sequence[str]
) -> tuple[dict[int, int], list[str]]:
    """{model class index: GT category id} by name, and the GT category names left unmatched."""
    by_name = {_norm(n): i for i, n in enumerate(class_names)}
    out: dict[int, int] = {}
    unmatched = []
    for c in categories:
        i = by_name.get(_norm(str(c["name"])))
        if i is None or i in out:
            unmatched.append(str(c["name"]))
        else:
            out[i] = int(c["id"])
    return out, unmatched


def _quiet() -> contextlib.AbstractContextManager[Any]:
    """pycocotools prints its progress on stdout: kept off the command's own output."""
    return contextlib.redirect_stdout(io.StringIO())


def evaluate_coco(
    detect_fn: Any,
    root: str | Path,
    class_names: Sequence[str] = VOC_CLASSES,
    annotations: str | Path | None = None,
    images: str | Path | None = None,
    limit: int | None = None,
    progress: bool = True,
    plot_path: str | Path | None = None,
    with_curves: bool = True,
) -> dict[str, Any]:
    """Run ``detect_fn`` (models.evaluate's contract: BGR image -> ``(class_id, score, x1, y1,
    x2, y2)`` in 0-based pixels) on every image of a COCO-format folder (by image id, the first
    ``limit``) and score it with pycocotools. Returns ``{"map" (AP@[.5:.95]), "map50", "map75",
    ... (STAT_NAMES), "per_class": {name: {"ap", "ap50", "num_gt", "num_det"[, "curve"]}},
    "category_map", "unmatched_categories", "dataset", "root", "annotations", "images",
    "num_images", "num_detections", "seconds", "detect_seconds"}``; draws the PR curves at IoU
    0.5 to ``plot_path`` when given."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    where = find_coco_folder(root, annotations, images)
    with _quiet():
        gt = COCO(str(where.annotations))
    cats = gt.loadCats(gt.getCatIds())
    cat_of, unmatched = match_categories(cats, class_names)
    if not cat_of:
        raise ValueError(f"{where.annotations}: no category matches a class of the model "
                         f"({', '.join(c['name'] for c in cats[:5])} ... vs "
                         f"{', '.join(class_names[:5])} ...)")  # fmt: skip
    img_ids = sorted(gt.getImgIds())[:limit]
    results: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    t_detect = 0.0
    for iid in tqdm(img_ids, desc="COCO eval", unit="img", disable=not progress):
        info = gt.loadImgs(iid)[0]
        path = where.images / info["file_name"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cannot read image {path}")
        t0 = time.perf_counter()
        dets = as_det_array(list(detect_fn(image)), "detect_fn")
        t_detect += time.perf_counter() - t0
        h, w = image.shape[:2]
        for c, s, x1, y1, x2, y2 in dets.tolist():
            if int(c) not in cat_of:
                continue
            x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
            y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
            results.append({"image_id": iid, "category_id": cat_of[int(c)], "score": float(s),
                            "bbox": [x1, y1, x2 - x1, y2 - y1]})  # fmt: skip
    ev_cats = sorted(cat_of.values())
    ev = None
    if results:  # pycocotools cannot load an empty result list
        with _quiet():
            ev = COCOeval(gt, gt.loadRes(results), "bbox")
            ev.params.imgIds, ev.params.catIds = img_ids, ev_cats
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    stats = [float(v) for v in ev.stats] if ev is not None else [0.0] * len(STAT_NAMES)
    name_of = {cid: class_names[i] for i, cid in cat_of.items()}
    per_class: dict[str, dict[str, Any]] = {}
    for k, cid in enumerate(ev_cats):
        n_gt = len(gt.getAnnIds(imgIds=img_ids, catIds=[cid], iscrowd=False))
        n_det = sum(r["category_id"] == cid for r in results)
        entry: dict[str, Any] = {"num_gt": n_gt, "num_det": n_det, "ap": None, "ap50": None}
        if ev is not None and n_gt:
            prec = ev.eval["precision"][:, :, k, 0, -1]  # IoUs x recall points, all areas
            entry["ap"] = float(np.mean(np.clip(prec, 0, None)))
            entry["ap50"] = float(np.mean(np.clip(prec[0], 0, None)))
            if with_curves or plot_path is not None:
                entry["curve"] = {"recall": [round(float(v), 6) for v in ev.params.recThrs],
                                  "precision": [round(max(float(v), 0.0), 6)
                                                for v in prec[0]]}  # fmt: skip
        per_class[name_of[cid]] = entry
    result: dict[str, Any] = {"metric": METRIC_COCO, **dict(zip(STAT_NAMES, stats, strict=True))}
    result.update(
        per_class=per_class,
        category_map={name_of[cid]: cid for cid in ev_cats},
        unmatched_categories=unmatched,
        dataset="coco",
        root=str(root),
        annotations=str(where.annotations),
        images=str(where.images),
        num_images=len(img_ids),
        num_detections=len(results),
        seconds=time.perf_counter() - t_start,
        detect_seconds=t_detect,
    )
    if plot_path is not None and any("curve" in e for e in per_class.values()):
        from models.evaluate.plots import plot_pr_curves

        plot_pr_curves(result, plot_path, title=f"COCO {Path(root).name} ({len(img_ids)} images)")
    if not with_curves:
        for e in per_class.values():
            e.pop("curve", None)
    return result
