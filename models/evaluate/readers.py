"""Ground truth readers: VOC annotations and image sets, MOTChallenge gt.txt and clip folders, in
the metric's form (1-based inclusive boxes, `ImageGT`)."""

from __future__ import annotations

import configparser
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.evaluate.metric import VOC_CLASSES, FloatArray, ImageGT, clip_boxes


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


def resolve_voc_root(path: str | Path, year: str | None = None) -> Path:
    """The VOC folder (the one holding Annotations/ and JPEGImages/) of ``path``: ``path``
    itself, or the ``VOC<year>`` folder inside a VOCdevkit (the only one, or ``year``'s)."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    if (root / "Annotations").is_dir():
        return root
    inner = sorted(p for p in root.glob("VOC*") if (p / "Annotations").is_dir())
    if year is not None:
        inner = [p for p in inner if p.name == f"VOC{year}"]
    if len(inner) == 1:
        return inner[0]
    if not inner:
        raise FileNotFoundError(f"{root}: no Annotations/ folder, nor a VOC20xx/ folder with "
                                f"one (expected a VOC layout or a VOCdevkit)")  # fmt: skip
    raise ValueError(f"{root}: holds {', '.join(p.name for p in inner)}: name one of them")


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
        raw, boxes = raw[keep], clip_boxes(boxes[keep], width, height)
    frames = raw[:, 0].astype(np.int64)
    return {int(f): boxes[frames == f] for f in np.unique(frames)}


def read_seqinfo(clip_dir: Path) -> dict[str, str]:
    """The [Sequence] entries of a clip's seqinfo.ini (none when it has no such file)."""
    ini = clip_dir / "seqinfo.ini"
    if not ini.is_file():
        return {}
    parser = configparser.ConfigParser()
    parser.read(ini)
    return dict(parser["Sequence"]) if parser.has_section("Sequence") else {}


def find_video(clip_dir: Path, name: str | None) -> Path:
    """The clip's video: <name>.mp4, else its only .mp4."""
    if name and (clip_dir / f"{name}.mp4").is_file():
        return clip_dir / f"{name}.mp4"
    videos = sorted(clip_dir.glob("*.mp4"))
    if len(videos) != 1:
        raise FileNotFoundError(f"{clip_dir}: expected one .mp4, found {len(videos)}")
    return videos[0]
