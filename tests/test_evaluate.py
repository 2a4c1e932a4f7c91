"""models.evaluate: VOC AP / mAP on hand-computed cases, and cross-checks on the real data.

Hand cases use the evaluator's 1-based inclusive boxes directly (`evaluate_detections`); the data
tests go through the drivers, whose detect_fn returns 0-based boxes (converted by +1 as darknet's
VOC writer does). The independent reference below is a plain-Python transcription of the devkit's
`voc_eval` loop (no numpy, zero-increment steps kept, AP from distinct recall levels) so that a
shared mistake with the vectorised code is unlikely.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluate import (
    PERSON_CLASS,
    VOC_CLASSES,
    ImageGT,
    detections_to_voc,
    evaluate_detections,
    evaluate_mot,
    evaluate_voc,
    iou_voc,
    load_voc_ground_truth,
    parse_voc_xml,
    read_mot_gt,
    save_result,
    voc_ap,
    voc_image_ids,
)

# ----------------------------------------------------------------------------------------------
# Independent reference (devkit voc_eval.py semantics, written out longhand)
# ----------------------------------------------------------------------------------------------

Box = tuple[float, float, float, float]


def _ref_iou(a: Box, b: Box) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1.0
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1.0
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area_a = (a[2] - a[0] + 1.0) * (a[3] - a[1] + 1.0)
    area_b = (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0)
    return inter / (area_a + area_b - inter)


def _ref_class_ap(
    dets: list[tuple[str, int, float, Box]],
    gts: dict[str, list[tuple[int, Box, bool]]],
    cls: int,
) -> tuple[float, float] | None:
    """(11-point AP, all-points AP) for one class, or None when it has no non-difficult GT."""
    recs = {
        img: [[box, dif, False] for c, box, dif in objs if c == cls] for img, objs in gts.items()
    }
    npos = sum(1 for objs in recs.values() for o in objs if not o[1])
    if npos == 0:
        return None
    mine = sorted((d for d in dets if d[1] == cls), key=lambda d: -d[2])  # sorted() is stable
    tp_steps, fp_steps = [], []
    for img, _, _, box in mine:
        best, ovmax = -1, -math.inf
        for k, obj in enumerate(recs.get(img, [])):
            ov = _ref_iou(box, obj[0])
            if ov > ovmax:
                best, ovmax = k, ov
        t = f = 0
        if ovmax > 0.5:
            obj = recs[img][best]
            if not obj[1]:
                if obj[2]:
                    f = 1
                else:
                    t = 1
                    obj[2] = True
        else:
            f = 1
        tp_steps.append(t)
        fp_steps.append(f)
    rec, prec, tp, fp = [], [], 0, 0
    for t, f in zip(tp_steps, fp_steps, strict=True):
        tp, fp = tp + t, fp + f
        rec.append(tp / npos)
        prec.append(tp / max(tp + fp, 1e-300))

    def best_prec(r0: float) -> float:
        return max((p for r, p in zip(rec, prec, strict=True) if r >= r0), default=0.0)

    ap11 = sum(best_prec(k / 10) for k in range(11)) / 11
    levels = sorted({r for r in rec if r > 0})
    ap_all, prev = 0.0, 0.0
    for level in levels:
        ap_all += (level - prev) * best_prec(level)
        prev = level
    return ap11, ap_all


def _ref_map(
    dets: list[tuple[str, int, float, Box]], gts: dict[str, list[tuple[int, Box, bool]]], n: int
) -> tuple[float, float, list[tuple[float, float] | None]]:
    per = [_ref_class_ap(dets, gts, c) for c in range(n)]
    valid = [p for p in per if p is not None]
    return sum(p[0] for p in valid) / len(valid), sum(p[1] for p in valid) / len(valid), per


def _to_inputs(
    dets: list[tuple[str, int, float, Box]], gts: dict[str, list[tuple[int, Box, bool]]]
) -> tuple[dict[str, np.ndarray], dict[str, ImageGT]]:
    """The reference's lists -> evaluate_detections' arguments, keeping detection order."""
    det_map: dict[str, list[list[float]]] = {img: [] for img in gts}
    for img, c, s, box in dets:
        det_map[img].append([c, s, *box])
    gt_map = {
        img: ImageGT.from_arrays([o[1] for o in objs], [o[0] for o in objs], [o[2] for o in objs])
        for img, objs in gts.items()
    }
    return {k: np.asarray(v).reshape(-1, 6) for k, v in det_map.items()}, gt_map


# ----------------------------------------------------------------------------------------------
# Hand-computed cases (one or two classes, boxes 1-based inclusive)
# ----------------------------------------------------------------------------------------------

A: Box = (1, 1, 10, 10)  # area 100 with the +1 convention
B: Box = (101, 101, 150, 150)
NAMES = ("a", "b", "c")


def _eval(dets: dict[str, list], gt: dict[str, ImageGT], names=NAMES) -> dict:
    return evaluate_detections({k: np.asarray(v, float) for k, v in dets.items()}, gt, names)


def test_perfect_detections_give_ap_one() -> None:
    gt = {"i1": ImageGT.from_arrays([A, B], [0, 1]), "i2": ImageGT.from_arrays([B], [0])}
    dets = {"i1": [(0, 0.9, *A), (1, 0.3, *B)], "i2": [(0, 0.1, *B)]}
    r = _eval(dets, gt, NAMES[:2])
    assert r["map_all"] == 1.0 and r["map_11pt"] == 1.0
    assert r["per_class"]["a"]["tp"] == 2 and r["per_class"]["a"]["fp"] == 0
    assert r["num_classes_in_mean"] == 2 and r["num_images"] == 2 and r["num_detections"] == 3


def test_false_positive_ranked_above_true_positive() -> None:
    # One object; FP (0.9) then TP (0.8): recall [0, 1], precision [0, 1/2] -> 1/2 both ways.
    gt = {"i": ImageGT.from_arrays([A], [0])}
    r = _eval({"i": [(0, 0.9, *B), (0, 0.8, *A)]}, gt, NAMES[:1])
    assert r["per_class"]["a"]["ap_all"] == pytest.approx(0.5, abs=1e-15)
    assert r["per_class"]["a"]["ap_11pt"] == pytest.approx(0.5, abs=1e-15)
    # Two objects; TP, FP, TP: recall [.5, .5, 1], precision [1, .5, 2/3].
    # All points: .5 * 1 + .5 * 2/3 = 5/6. 11-point: t = 0..0.5 -> 1 (6 points), t = 0.6..1 -> 2/3
    # (5 points): (6 + 10/3) / 11 = 28/33.
    gt = {"i": ImageGT.from_arrays([A, B], [0, 0])}
    far: Box = (300, 300, 320, 320)
    r = _eval({"i": [(0, 0.9, *A), (0, 0.8, *far), (0, 0.7, *B)]}, gt, NAMES[:1])
    assert r["per_class"]["a"]["ap_all"] == pytest.approx(5 / 6, abs=1e-15)
    assert r["per_class"]["a"]["ap_11pt"] == pytest.approx(28 / 33, abs=1e-15)
    assert r["per_class"]["a"]["curve"] == {
        "recall": [0.5, 1.0],
        "precision": [1.0, round(2 / 3, 6)],
    }


def test_difficult_objects_are_neither_tp_nor_fp() -> None:
    # A detection on a difficult object, ranked first, would be an FP if counted (AP 1/2).
    gt = {"i": ImageGT.from_arrays([A, B], [0, 0], [False, True])}
    r = _eval({"i": [(0, 0.95, *B), (0, 0.9, *A)]}, gt, NAMES[:1])
    a = r["per_class"]["a"]
    assert a["ap_all"] == 1.0 and a["ap_11pt"] == 1.0
    assert (a["num_gt"], a["num_difficult"], a["tp"], a["fp"], a["ignored"]) == (1, 1, 1, 0, 1)
    # Missing a difficult object costs nothing either.
    r = _eval({"i": [(0, 0.9, *A)]}, gt, NAMES[:1])
    assert r["per_class"]["a"]["ap_all"] == 1.0


def test_class_with_only_difficult_objects_has_no_ap() -> None:
    gt = {"i": ImageGT.from_arrays([A, B], [0, 1], [False, True])}
    r = _eval({"i": [(0, 0.9, *A), (1, 0.9, *B)]}, gt, NAMES[:2])
    assert r["per_class"]["b"]["ap_all"] is None and r["per_class"]["b"]["num_difficult"] == 1
    assert r["num_classes_in_mean"] == 1 and r["map_all"] == 1.0


def test_duplicate_detection_is_a_false_positive() -> None:
    # A found twice (0.9, 0.8), then B (0.7): the duplicate is an FP, the same curve as
    # TP, FP, TP above.
    gt = {"i": ImageGT.from_arrays([A, B], [0, 0])}
    a2: Box = (1, 1, 10, 9)  # IoU 0.9 with A
    r = _eval({"i": [(0, 0.9, *A), (0, 0.8, *a2), (0, 0.7, *B)]}, gt, NAMES[:1])
    a = r["per_class"]["a"]
    assert (a["tp"], a["fp"]) == (2, 1)
    assert a["ap_all"] == pytest.approx(5 / 6, abs=1e-15)
    assert a["ap_11pt"] == pytest.approx(28 / 33, abs=1e-15)
    # A duplicate ranked after every TP leaves AP at 1 but is still counted.
    r = _eval({"i": [(0, 0.9, *A), (0, 0.8, *B), (0, 0.1, *a2)]}, gt, NAMES[:1])
    assert r["per_class"]["a"]["ap_all"] == 1.0 and r["per_class"]["a"]["fp"] == 1


def test_match_goes_to_the_largest_overlap_even_if_taken() -> None:
    # devkit behaviour: the second detection's best GT is A (already matched) although it also
    # overlaps C by more than 0.5, so it is an FP and C stays missed.
    c: Box = (1, 1, 10, 12)  # IoU(A, C) = 100/120
    det2: Box = (1, 1, 10, 10.5)  # IoU with A 100/105, with C 105/120 = 0.875
    assert iou_voc(det2, [A, c])[0] > iou_voc(det2, [A, c])[1] > 0.5
    gt = {"i": ImageGT.from_arrays([A, c], [0, 0])}
    r = _eval({"i": [(0, 0.9, *A), (0, 0.8, *det2)]}, gt, NAMES[:1])
    assert (r["per_class"]["a"]["tp"], r["per_class"]["a"]["fp"]) == (1, 1)
    assert r["per_class"]["a"]["ap_all"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("det", "iou", "is_tp"),
    [
        ((1, 1, 10, 5), 0.5, False),  # exactly 0.5: VOC needs > 0.5
        ((1, 1, 10, 6), 0.6, True),
        # +1 convention decides: 10 * 5.2 / 100 = 0.52 here, but (9 * 4.2) / 81 = 0.467 with
        # continuous areas, which would be an FP.
        ((1, 1, 10, 5.2), 0.52, True),
        ((1, 1, 10, 4.99), 0.499, False),
    ],
)
def test_iou_threshold_is_strict_with_plus_one_areas(det: Box, iou: float, is_tp: bool) -> None:
    assert iou_voc(det, [A])[0] == pytest.approx(iou, abs=1e-12)
    gt = {"i": ImageGT.from_arrays([A], [0])}
    r = _eval({"i": [(0, 0.9, *det)]}, gt, NAMES[:1])
    assert r["per_class"]["a"]["tp"] == int(is_tp)
    assert r["per_class"]["a"]["ap_all"] == float(is_tp)


def test_class_without_gt_is_excluded_from_the_mean() -> None:
    # a: perfect (AP 1); b: detections but no GT (no AP, not averaged); c: GT but no detections
    # (AP 0, averaged). mAP = (1 + 0) / 2.
    gt = {"i": ImageGT.from_arrays([A, B], [0, 2]), "j": ImageGT.empty()}
    r = _eval({"i": [(0, 0.9, *A), (1, 0.8, *B)], "j": [(1, 0.5, *A)]}, gt)
    pc = r["per_class"]
    assert pc["a"]["ap_all"] == 1.0
    assert pc["b"]["ap_all"] is None and pc["b"]["ap_11pt"] is None and pc["b"]["fp"] == 2
    assert pc["c"]["ap_all"] == 0.0 and pc["c"]["num_det"] == 0
    assert r["num_classes_in_mean"] == 2
    assert r["map_all"] == 0.5 and r["map_11pt"] == 0.5
    json.dumps(r)  # None -> null, everything else plain numbers


def test_voc_ap_known_values() -> None:
    assert voc_ap([], [], False) == 0.0 and voc_ap([], [], True) == 0.0
    # Zig-zag curve: the envelope lifts precision 0.5 at recall 0.5 to 2/3.
    rec, prec = [0.25, 0.5, 0.5, 1.0], [1.0, 1.0, 0.5, 2 / 3]
    assert voc_ap(rec, prec) == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)
    # Recall exactly 3/10 reaches the 0.3 threshold: t = 0, .1, .2, .3 -> 4/11. (The devkit's
    # np.arange thresholds would give 3/11: 0.1 * 3 = 0.30000000000000004 > 3 / 10.)
    assert voc_ap([3 / 10], [1.0], True) == pytest.approx(4 / 11, abs=1e-15)
    assert voc_ap([3 / 10], [1.0], False) == pytest.approx(0.3, abs=1e-15)


def test_equal_scores_keep_input_order() -> None:
    # Same score: the FP listed first counts first (stable sort) -> AP 1/2, not 1.
    gt = {"i": ImageGT.from_arrays([A], [0])}
    r = _eval({"i": [(0, 0.5, *B), (0, 0.5, *A)]}, gt, NAMES[:1])
    assert r["per_class"]["a"]["ap_all"] == 0.5
    r = _eval({"i": [(0, 0.5, *A), (0, 0.5, *B)]}, gt, NAMES[:1])
    assert r["per_class"]["a"]["ap_all"] == 1.0


def test_bad_inputs_are_rejected() -> None:
    gt = {"i": ImageGT.from_arrays([A], [0])}
    with pytest.raises(ValueError, match="without ground truth"):
        _eval({"x": [(0, 0.5, *A)]}, gt, NAMES[:1])
    with pytest.raises(ValueError, match="class ids"):
        _eval({"i": [(3, 0.5, *A)]}, gt, NAMES[:1])
    with pytest.raises(ValueError, match="6 values"):
        evaluate_detections({"i": np.zeros((1, 5))}, gt, NAMES[:1])
    with pytest.raises(ValueError, match="x2 < x1"):
        detections_to_voc([(0, 0.5, 10, 0, 5, 5)], 100, 100)


def test_detections_to_voc_adds_one_and_clips_like_darknet() -> None:
    out = detections_to_voc([(2, 0.5, -3.0, 4.0, 120.0, 40.5)], 100, 50)
    np.testing.assert_array_equal(out, [[2, 0.5, 1.0, 5.0, 100.0, 41.5]])
    assert detections_to_voc([], 10, 10).shape == (0, 6)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_random_small_problems_match_reference(seed: int) -> None:
    rng = random.Random(seed)
    gts: dict[str, list[tuple[int, Box, bool]]] = {}
    dets: list[tuple[str, int, float, Box]] = []
    for i in range(rng.randint(1, 4)):
        img = f"im{i}"
        gts[img] = []
        for _ in range(rng.randint(0, 4)):
            x, y = rng.uniform(1, 60), rng.uniform(1, 60)
            box = (x, y, x + rng.uniform(0, 30), y + rng.uniform(0, 30))
            gts[img].append((rng.randrange(2), box, rng.random() < 0.2))
            for _ in range(rng.randint(0, 2)):
                j = [v + rng.gauss(0, 4) for v in box]
                jb = (min(j[0], j[2]), min(j[1], j[3]), max(j[0], j[2]), max(j[1], j[3]))
                dets.append((img, rng.randrange(2), round(rng.random(), 1), jb))
    det_map, gt_map = _to_inputs(dets, gts)
    r = evaluate_detections(det_map, gt_map, NAMES[:2])
    for c, name in enumerate(NAMES[:2]):
        ref = _ref_class_ap(dets, gts, c)
        got = r["per_class"][name]
        if ref is None:
            assert got["ap_all"] is None and got["ap_11pt"] is None
        else:
            assert got["ap_11pt"] == pytest.approx(ref[0], abs=1e-12)
            assert got["ap_all"] == pytest.approx(ref[1], abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------

XML = """<annotation><filename>x.jpg</filename><size><width>64</width><height>48</height></size>
<object><name>person</name><difficult>1</difficult>
  <bndbox><xmin>5</xmin><ymin>6</ymin><xmax>30.5</xmax><ymax>40</ymax></bndbox>
  <part><name>head</name><bndbox><xmin>9</xmin><ymin>9</ymin><xmax>12</xmax><ymax>12</ymax></bndbox>
  </part></object>
<object><name>dog</name>
  <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object>
</annotation>"""


def test_parse_voc_xml_reads_own_box_and_defaults_difficult(tmp_path: Path) -> None:
    p = tmp_path / "x.xml"
    p.write_text(XML)
    ann = parse_voc_xml(p)
    assert (ann.filename, ann.width, ann.height) == ("x.jpg", 64, 48)
    assert [(o.name, o.box, o.difficult) for o in ann.objects] == [
        ("person", (5.0, 6.0, 30.5, 40.0), True),  # the <part> box is not read
        ("dog", (1.0, 2.0, 3.0, 4.0), False),  # no <difficult> -> 0
    ]


def test_voc_image_ids_and_ground_truth(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    for name in ("b", "a", "c"):
        (tmp_path / "Annotations" / f"{name}.xml").write_text(XML)
    assert voc_image_ids(tmp_path) == (["a", "b", "c"], "all")
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "test.txt").write_text("c\nb\n\n")
    assert voc_image_ids(tmp_path) == (["c", "b"], "test")
    assert voc_image_ids(tmp_path, None) == (["a", "b", "c"], "all")
    gt = load_voc_ground_truth(tmp_path, ["c"])
    np.testing.assert_array_equal(gt["c"].labels, [PERSON_CLASS, VOC_CLASSES.index("dog")])
    np.testing.assert_array_equal(gt["c"].difficult, [True, False])
    with pytest.raises(ValueError, match="not in the class list"):
        load_voc_ground_truth(tmp_path, ["c"], ("person",))


def test_read_mot_gt_drops_ignored_rows_and_clips(tmp_path: Path) -> None:
    p = tmp_path / "gt.txt"
    p.write_text(
        "1,1,10,20,30,40,1,-1,-1,-1\n"
        "1,2,50,50,10,10,0,-1,-1,-1\n"  # conf 0: ignored
        "2,1,-9,5,20,10,1,-1,-1,-1\n"  # partly left of the frame: clipped to x1 = 1
        "2,3,200,5,20,10,1,-1,-1,-1\n"  # entirely right of a 100-wide frame: dropped
    )
    gt = read_mot_gt(p, 100, 80)
    np.testing.assert_array_equal(gt[1], [[10, 20, 39, 59]])  # w=30 pixels: 10..39 inclusive
    np.testing.assert_array_equal(gt[2], [[1, 5, 10, 14]])
    assert len(read_mot_gt(p)[2]) == 2  # no frame size: nothing clipped or dropped


# ----------------------------------------------------------------------------------------------
# Real data: the VOC sample and a TUD clip
# ----------------------------------------------------------------------------------------------


def _voc_root(data_dir: Path) -> Path:
    root = data_dir / "voc2012-sample"
    if not (root / "Annotations").is_dir() or not (root / "JPEGImages").is_dir():
        pytest.skip(f"{root} missing: run `make data`")
    return root


def _oracle(gt: dict[str, ImageGT], ids: list[str]):
    """A detect_fn returning an image's GT as 0-based detections; relies on the documented
    order in which evaluate_voc visits images."""
    it = iter(ids)

    def detect(image: np.ndarray) -> list[tuple[float, ...]]:
        g = gt[next(it)]
        return [(int(c), 1.0, *(b - 1.0)) for b, c in zip(g.boxes, g.labels, strict=True)]

    return detect


def test_voc_sample_ground_truth_as_detections_gives_map_one(
    data_dir: Path, tmp_path: Path
) -> None:
    root = _voc_root(data_dir)
    ids, source = voc_image_ids(root)
    gt = load_voc_ground_truth(root, ids)
    n_obj = sum(len(g.labels) for g in gt.values())
    n_dif = sum(int(g.difficult.sum()) for g in gt.values())
    assert (source, len(ids), n_obj) == ("all", 100, 273)
    r = evaluate_voc(_oracle(gt, ids), root, progress=False, plot_path=tmp_path / "pr.png")
    assert r["map_all"] == 1.0 and r["map_11pt"] == 1.0
    assert r["num_classes_in_mean"] == 20 and r["num_images"] == 100
    pc = r["per_class"].values()
    assert sum(e["num_gt"] for e in pc) == n_obj - n_dif
    assert sum(e["ignored"] for e in pc) == n_dif and sum(e["fp"] for e in pc) == 0
    assert (tmp_path / "pr.png").stat().st_size > 10_000
    saved = json.loads(save_result(r, tmp_path / "r.json").read_text())
    assert saved["map_all"] == 1.0 and saved["image_set"] == "all"
    # `limit` evaluates the first images only.
    r = evaluate_voc(_oracle(gt, ids), root, progress=False, limit=7, with_curves=False)
    assert r["num_images"] == 7 and "curve" not in r["per_class"]["person"]


def test_voc_sample_jittered_matches_reference(data_dir: Path) -> None:
    root = _voc_root(data_dir)
    ids, _ = voc_image_ids(root)
    gt = load_voc_ground_truth(root, ids)
    rng = np.random.default_rng(2024)
    gts = {
        img: [
            (int(c), tuple(map(float, b)), bool(d))
            for b, c, d in zip(g.boxes, g.labels, g.difficult, strict=True)
        ]
        for img, g in gt.items()
    }
    dets: list[tuple[str, int, float, Box]] = []
    for img, objs in gts.items():
        for c, (x1, y1, x2, y2), _ in objs:
            w, h = x2 - x1 + 1, y2 - y1 + 1
            # Misses, near hits, poor boxes, duplicates and wrong classes, with coarse scores
            # so that ties occur.
            for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):
                sigma = float(rng.choice([0.03, 0.1, 0.3]))
                j = np.array([x1, y1, x2, y2]) + rng.normal(0, sigma, 4) * [w, h, w, h]
                box = (min(j[0], j[2]), min(j[1], j[3]), max(j[0], j[2]), max(j[1], j[3]))
                cls = c if rng.random() > 0.05 else int(rng.integers(20))
                dets.append((img, cls, round(float(rng.random()), 2), box))
        for _ in range(int(rng.poisson(1.0))):
            x, y = rng.uniform(1, 300, 2)
            box = (
                float(x),
                float(y),
                float(x + rng.uniform(5, 150)),
                float(y + rng.uniform(5, 150)),
            )
            dets.append((img, int(rng.integers(20)), round(float(rng.random()), 2), box))
    det_map, gt_map = _to_inputs(dets, gts)
    r = evaluate_detections(det_map, gt_map, VOC_CLASSES)
    ref11, ref_all, per = _ref_map(dets, gts, 20)
    assert r["map_11pt"] == pytest.approx(ref11, abs=1e-12)
    assert r["map_all"] == pytest.approx(ref_all, abs=1e-12)
    for name, p in zip(VOC_CLASSES, per, strict=True):
        assert p is not None
        assert r["per_class"][name]["ap_11pt"] == pytest.approx(p[0], abs=1e-12)
        assert r["per_class"][name]["ap_all"] == pytest.approx(p[1], abs=1e-12)
        # The compact stored curve carries both APs (up to its 6-decimal rounding).
        curve = r["per_class"][name]["curve"]
        assert voc_ap(curve["recall"], curve["precision"]) == pytest.approx(p[1], abs=1e-5)
        assert voc_ap(curve["recall"], curve["precision"], True) == pytest.approx(p[0], abs=1e-5)
    assert 0.3 < r["map_all"] < 0.9  # a non-trivial case, not all hits or all misses


def test_tud_campus_person_ap(data_dir: Path, tmp_path: Path) -> None:
    clip = data_dir / "video" / "TUD-Campus"
    if not (clip / "gt.txt").is_file() or not (clip / "TUD-Campus.mp4").is_file():
        pytest.skip(f"{clip} missing: run `make data`")
    gt = read_mot_gt(clip / "gt.txt", 640, 480)

    def detector(keep_every: int):
        frame = 0

        def detect(image: np.ndarray) -> list[tuple[float, ...]]:
            nonlocal frame
            frame += 1
            boxes = gt.get(frame, np.zeros((0, 4)))[::keep_every]
            people = [(PERSON_CLASS, 0.9, *(b - 1.0)) for b in boxes]
            return people + [(VOC_CLASSES.index("car"), 0.99, 0, 0, 50, 50)]  # not a person

        return detect

    r = evaluate_mot(detector(1), clip, progress=False, plot_path=tmp_path / "tud.png")
    assert (r["num_frames"], r["per_class"]["person"]["num_gt"]) == (71, 359)
    assert r["ap_all"] == 1.0 and r["ap_11pt"] == 1.0 and r["map_all"] == 1.0
    assert r["num_detections"] == 359 and (tmp_path / "tud.png").stat().st_size > 5_000
    # Every other person per frame: precision 1 up to the recall reached, known from the counts.
    r = evaluate_mot(detector(2), clip, progress=False, max_frames=30)
    p = r["per_class"]["person"]
    recall = p["tp"] / p["num_gt"]
    assert p["fp"] == 0 and r["num_frames"] == 30
    assert r["ap_all"] == pytest.approx(recall, abs=1e-12)
    assert r["ap_11pt"] == pytest.approx(sum(k / 10 <= recall for k in range(11)) / 11)


# ----------------------------------------------------------------------------------------------
# COCO-format folders (pycocotools) and a user's VOCdevkit
# ----------------------------------------------------------------------------------------------


def _coco_oracle(folder: Path, keep: float = 1.0):
    """detect_fn giving the GT boxes of each image (0-based corners, score 1), looked up by the
    image's pixels; ``keep`` < 1 drops every other box of each image after the first."""
    from coco_folder import COCO_NAMES

    doc = json.loads(next((folder / "annotations").glob("*.json")).read_text())
    by_cat = {c["id"]: c["name"] for c in doc["categories"]}
    voc_of = {COCO_NAMES.get(n, n): i for i, n in enumerate(VOC_CLASSES)}
    table = {}
    for im in doc["images"]:
        img = cv2.imread(str(folder / "val" / im["file_name"]))
        rows = []
        for a in doc["annotations"]:
            if a["image_id"] == im["id"] and by_cat[a["category_id"]] in voc_of:
                x, y, w, h = a["bbox"]
                rows.append((voc_of[by_cat[a["category_id"]]], 1.0, x, y, x + w, y + h))
        if keep < 1.0:
            rows = rows[:1] + rows[1::2][1:]
        table[img.tobytes()] = rows
    return lambda image: table[image.tobytes()]


def test_evaluate_coco_scores_an_oracle_one_and_leaves_unmatched_out(data_dir, tmp_path) -> None:
    from coco_folder import make_coco_folder

    from models.evaluate import evaluate_coco

    folder = make_coco_folder(data_dir / "voc2012-sample", tmp_path / "coco", n=4)
    png = tmp_path / "pr.png"
    r = evaluate_coco(_coco_oracle(folder), folder, progress=False, plot_path=png)
    assert r["map"] == pytest.approx(1.0) and r["map50"] == pytest.approx(1.0)
    assert r["unmatched_categories"] == ["unicorn"] and r["num_images"] == 4
    assert "airplane" not in r["per_class"] and r["category_map"]["aeroplane"] == 100
    assert png.stat().st_size > 5000
    assert all(e["ap50"] == pytest.approx(1.0) for e in r["per_class"].values() if e["num_gt"])
    fewer = evaluate_coco(_coco_oracle(folder, 0.5), folder, progress=False, with_curves=False)
    assert 0.0 < fewer["map"] < 1.0 and "curve" not in next(iter(fewer["per_class"].values()))
    assert evaluate_coco(lambda im: [], folder, progress=False)["map"] == 0.0


def test_find_coco_folder_layouts_and_one_line_errors(data_dir, tmp_path) -> None:
    from coco_folder import make_coco_folder

    from models.evaluate import find_coco_folder

    folder = make_coco_folder(data_dir / "voc2012-sample", tmp_path / "coco", n=2)
    ann = folder / "annotations" / "instances_val.json"
    assert find_coco_folder(folder) == find_coco_folder(ann)
    assert find_coco_folder(folder).images == folder / "val"
    flat = tmp_path / "flat"  # annotations.json beside an images/ folder
    shutil.copytree(folder / "val", flat / "images")
    shutil.copy(ann, flat / "annotations.json")
    assert find_coco_folder(flat).images == flat / "images"
    shutil.copy(ann, folder / "annotations" / "instances_train.json")
    with pytest.raises(ValueError, match="2 annotation files"):
        find_coco_folder(folder)
    with pytest.raises(FileNotFoundError, match="first image '000011.jpg' is in none of"):
        find_coco_folder(flat, images=tmp_path)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a COCO annotations JSON"):
        find_coco_folder(tmp_path / "bad.json")


def test_resolve_voc_root_takes_a_vocdevkit(tmp_path) -> None:
    from models.evaluate import resolve_voc_root

    (tmp_path / "VOCdevkit" / "VOC2007" / "Annotations").mkdir(parents=True)
    kit = tmp_path / "VOCdevkit"
    assert resolve_voc_root(kit) == kit / "VOC2007" == resolve_voc_root(kit / "VOC2007")
    (kit / "VOC2012" / "Annotations").mkdir(parents=True)
    with pytest.raises(ValueError, match="VOC2007, VOC2012: name one"):
        resolve_voc_root(kit)
    assert resolve_voc_root(kit, "2012") == kit / "VOC2012"
    with pytest.raises(FileNotFoundError, match="no Annotations/"):
        resolve_voc_root(tmp_path)
