"""Detections in the formats other tools read: COCO results JSON, MOTChallenge ``det.txt`` and
PASCAL VOC XML (``shiftdet detect --formats coco,mot,voc``).

Boxes come from :class:`sw.postprocess.Detections`: ``x1, y1, x2, y2`` in 0-based continuous
frame pixels, clipped to ``[0, width] x [0, height]``. Each format gets its own convention:

* **COCO** (``bbox = [x, y, w, h]``): ``[x1, y1, x2 - x1, y2 - y1]``, COCO's own 0-based
  continuous pixels (pycocotools' area is ``w * h``, no +1);
* **VOC XML** and **MOT** are 1-based pixel formats. Both use darknet's VOC writer
  (``print_detector_detections``: ``x + 1``, clipped to ``[1, width] x [1, height]``), the
  convention ``models.evaluate`` scores the detectors with: VOC's ``bndbox`` is that box rounded
  to whole pixels; MOT's ``left, top`` is its corner and ``width = x2 - x1 + 1`` (MOT reads a box
  as ``left .. left + width - 1``), so ``models.evaluate.read_mot_gt`` reads back exactly the
  box ``evaluate_mot`` scores.

Image ids (COCO ``image_id``, MOT frame): a video's frames are numbered from 1. A folder's
images take the number in their file name when every one has a decimal stem and the numbers are
distinct (COCO's ``000000397133.jpg`` -> 397133, MOTChallenge's ``img1/000001.jpg`` -> 1), else
their 1-based position in name order; either way the companion file ``STEM.coco-images.json``
lists ``{id, file_name}`` for every image and names the rule. Category ids are the model's class
index + 1 (its names list order; for the VOC detectors darknet's ``voc.names``: aeroplane = 1 ..
tvmonitor = 20), listed with their names in the same companion file.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from sw.compat import zip_strict
from sw.postprocess import Detections

FORMATS = ("coco", "mot", "voc")
RULE_FRAME = "frame number of the video, 1-based"
RULE_STEM = "the file name's decimal stem (every image has one, all distinct)"
RULE_POSITION = "1-based position of the file in name order (not every stem is a distinct number)"
CATEGORY_RULE = "class index in the model's names list + 1"


def parse_formats(text: str) -> tuple[str, ...]:
    """``--formats``: a comma-separated subset of :data:`FORMATS` (or ``all``), in that order."""
    wanted = [w.strip().lower() for w in text.split(",") if w.strip()]
    if wanted == ["all"]:
        return FORMATS
    bad = [w for w in wanted if w not in FORMATS]
    if bad or not wanted:
        raise ValueError(f"unknown format {bad[0]!r}" if bad else "no format given")
    return tuple(f for f in FORMATS if f in wanted)


def _decimal_stem(name: str) -> int | None:
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return int(stem) if stem.isdigit() and stem.isascii() else None


def image_ids(names: Sequence[str]) -> tuple[list[int], str]:
    """The ids of a folder's images (file names in the folder's order) and the rule used."""
    nums = [_decimal_stem(n) for n in names]
    if names and all(v is not None for v in nums) and len(set(nums)) == len(nums):
        return [int(v) for v in nums if v is not None], RULE_STEM
    return list(range(1, len(names) + 1)), RULE_POSITION


def categories(names: Sequence[str]) -> list[dict[str, Any]]:
    """COCO ``categories`` of the model's classes: ``{"id": index + 1, "name": ...}``."""
    return [{"id": i + 1, "name": n, "supercategory": "none"} for i, n in enumerate(names)]


def _rows(det: Detections) -> list[tuple[list[float], float, int]]:
    return list(zip_strict(det.boxes.tolist(), det.scores.tolist(), det.classes.tolist()))


def coco_records(det: Detections, image_id: int) -> list[dict[str, Any]]:
    """COCO results entries of one image: ``image_id, category_id, bbox [x, y, w, h], score``."""
    out = []
    for (x1, y1, x2, y2), s, c in _rows(det):
        bbox = [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]
        out.append({"image_id": int(image_id), "category_id": int(c) + 1, "bbox": bbox,
                    "score": round(float(s), 5)})  # fmt: skip
    return out


def one_based(box: Sequence[float], width: int, height: int) -> tuple[float, ...]:
    """darknet's VOC writer: ``x + 1``, clipped to ``[1, width] x [1, height]``."""
    x1, y1, x2, y2 = (float(v) + 1.0 for v in box)
    return (min(max(x1, 1.0), width), min(max(y1, 1.0), height),
            min(max(x2, 1.0), width), min(max(y2, 1.0), height))  # fmt: skip


def _score_text(s: float) -> str:
    # Six significant digits: a score above a tiny --conf never prints as 0 (MOT readers drop
    # rows whose confidence is 0: they mark regions to ignore).
    return f"{float(s):.6g}"


def mot_lines(det: Detections, frame: int, width: int, height: int) -> str:
    """MOTChallenge det.txt rows of one frame: ``frame, -1, left, top, width, height, conf,
    -1, -1, -1`` (``frame`` 1-based)."""
    lines = []
    for box, s, _c in _rows(det):
        x1, y1, x2, y2 = one_based(box, width, height)
        lines.append(f"{int(frame)},-1,{x1:.2f},{y1:.2f},{x2 - x1 + 1:.2f},{y2 - y1 + 1:.2f},"
                     f"{_score_text(s)},-1,-1,-1\n")  # fmt: skip
    return "".join(lines)


def _indent(elem: ET.Element, level: int = 0) -> None:
    """Pretty-print in place (ElementTree.indent is Python 3.9+; the board has 3.8)."""
    pad = "\n" + "  " * level
    if len(elem):
        if not (elem.text or "").strip():
            elem.text = pad + "  "
        for child in elem:
            _indent(child, level + 1)
        last = elem[-1]
        last.tail = pad
    if level and not (elem.tail or "").strip():
        elem.tail = pad


def voc_xml(det: Detections, names: Sequence[str], filename: str, width: int, height: int,
            folder: str = "", depth: int = 3) -> bytes:  # fmt: skip
    """A PASCAL VOC annotation of one image (``annotation/folder, filename, size, segmented,
    object{name, pose, truncated, difficult, score, bndbox}``), boxes 1-based whole pixels.
    ``truncated`` is 1 for a box that touches the image border; ``score`` is an extra element
    the VOC readers ignore."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = filename
    src = ET.SubElement(root, "source")
    ET.SubElement(src, "annotation").text = "shiftdet detect"
    size = ET.SubElement(root, "size")
    for tag, v in (("width", width), ("height", height), ("depth", depth)):
        ET.SubElement(size, tag).text = str(int(v))
    ET.SubElement(root, "segmented").text = "0"
    for box, s, c in _rows(det):
        x1, y1, x2, y2 = (int(math.floor(v + 0.5)) for v in one_based(box, width, height))
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = names[c] if c < len(names) else str(c)
        ET.SubElement(obj, "pose").text = "Unspecified"
        border = x1 <= 1 or y1 <= 1 or x2 >= width or y2 >= height
        ET.SubElement(obj, "truncated").text = "1" if border else "0"
        ET.SubElement(obj, "difficult").text = "0"
        ET.SubElement(obj, "score").text = _score_text(s)
        bb = ET.SubElement(obj, "bndbox")
        for tag, v in (("xmin", x1), ("ymin", y1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bb, tag).text = str(v)
    _indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"
