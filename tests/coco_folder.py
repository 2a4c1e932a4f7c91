"""A tiny COCO-format dataset made from data/voc2012-sample for the COCO evaluation tests:
``annotations/instances_<split>.json`` beside ``<split>/`` (COCO's own layout), categories named
as COCO names them where VOC's differ (airplane, motorcycle, couch, tv), plus a category no VOC
detector has (``unicorn``, one box), which the evaluation must leave out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from models.evaluate import VOC_CLASSES, parse_voc_xml

COCO_NAMES = {"aeroplane": "airplane", "motorbike": "motorcycle", "sofa": "couch",
              "tvmonitor": "tv", "diningtable": "dining table",
              "pottedplant": "potted plant"}  # fmt: skip


def make_coco_folder(voc: Path, dest: Path, n: int = 4, split: str = "val") -> Path:
    """``dest`` with the first ``n`` VOC-sample images as ``<split>/NNNNNN.jpg`` (ids 11, 12,
    ...) and their boxes as COCO annotations (``[xmin - 1, ymin - 1, w, h]`` of VOC's 1-based
    inclusive boxes; difficult objects as ``iscrowd`` 0 all the same). Returns ``dest``."""
    xmls = sorted((voc / "Annotations").glob("*.xml"))[:n]
    (dest / split).mkdir(parents=True)
    (dest / "annotations").mkdir()
    cats = [{"id": 100 + i, "name": COCO_NAMES.get(c, c)} for i, c in enumerate(VOC_CLASSES)]
    cats.append({"id": 999, "name": "unicorn"})
    images, anns = [], []
    for k, x in enumerate(xmls):
        ann = parse_voc_xml(x)
        iid = 11 + k
        name = f"{iid:06d}.jpg"
        shutil.copy(voc / "JPEGImages" / f"{x.stem}.jpg", dest / split / name)
        images.append({"id": iid, "file_name": name, "width": ann.width, "height": ann.height})
        for o in ann.objects:
            x1, y1, x2, y2 = o.box
            w, h = x2 - x1 + 1, y2 - y1 + 1
            anns.append({"id": len(anns) + 1, "image_id": iid, "bbox": [x1 - 1, y1 - 1, w, h],
                         "category_id": 100 + VOC_CLASSES.index(o.name), "area": w * h,
                         "iscrowd": 0})  # fmt: skip
    anns.append({"id": len(anns) + 1, "image_id": 11, "bbox": [5, 5, 20, 20],
                 "category_id": 999, "area": 400, "iscrowd": 0})  # fmt: skip
    doc = {"images": images, "annotations": anns, "categories": cats}
    (dest / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return dest
