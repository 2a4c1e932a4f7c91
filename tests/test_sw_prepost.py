"""Pre-processing (letterbox) and post-processing (YOLO decode, per-class NMS, box mapping)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sw.artifact import Output, Quant
from sw.postprocess import (
    YoloDecoder,
    box_iou,
    nms_per_class,
    nms_per_class_reference,
)
from sw.preprocess import PAD_CODE, letterbox, letterbox_geometry


def test_letterbox_keeps_aspect_centres_and_pads_128() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3)).astype(np.uint8)
    rgb, g = letterbox(frame, 512, 512)
    assert rgb.shape == (512, 512, 3) and rgb.dtype == np.uint8
    assert (g.new_w, g.new_h, g.dx, g.dy) == (512, 384, 0, 64)
    assert (rgb[:64] == PAD_CODE).all() and (rgb[64 + 384 :] == PAD_CODE).all()
    # channel 0 is red: a pure-blue BGR frame puts its value in channel 2
    blue = np.zeros((480, 640, 3), np.uint8)
    blue[..., 0] = 200
    rgb, _ = letterbox(blue, 512, 512)
    assert (rgb[64:448, :, 2] == 200).all() and (rgb[64:448, :, :2] == 0).all()
    # portrait and identity
    g = letterbox_geometry(300, 600, 512, 512)
    assert (g.new_w, g.new_h, g.dx, g.dy) == (256, 512, 128, 0)
    out = np.zeros((64, 64, 3), np.uint8)
    img = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    rgb, g = letterbox(img, 64, 64, out=out)
    assert rgb is out and np.array_equal(rgb, img[:, :, ::-1])


def test_boxes_map_back_to_the_frame() -> None:
    g = letterbox_geometry(640, 480, 512, 512)
    frame_boxes = np.array([[10, 20, 300, 400], [0, 0, 640, 480]], dtype=np.float32)
    s = 512 / 640
    net = frame_boxes * s + np.array([0, 64, 0, 64], np.float32)
    np.testing.assert_allclose(g.to_frame(net), frame_boxes, atol=1e-4)
    # boxes reaching into the padding are clipped to the frame
    assert g.to_frame(np.array([[-20, 0, 600, 520]], np.float32)).tolist() == [[0, 0, 640, 480]]


def _decode_slow(codes, q, anchors, classes, sxy, net_w, net_h, thr):
    """Darknet's formulas cell by cell in float64 (the reading of the text, not of the code)."""
    a = len(anchors)
    _, gh, gw = codes.shape
    out = []
    for n in range(a):
        for row in range(gh):
            for col in range(gw):
                t = [q.scale * (int(codes[n * (5 + classes) + k, row, col]) - q.zero)
                     for k in range(5 + classes)]  # fmt: skip
                sig = [1 / (1 + math.exp(-v)) for v in t]
                if sig[4] <= thr:
                    continue
                x = (col + sxy * sig[0] - (sxy - 1) / 2) / gw * net_w
                y = (row + sxy * sig[1] - (sxy - 1) / 2) / gh * net_h
                w = math.exp(t[2]) * anchors[n][0]
                h = math.exp(t[3]) * anchors[n][1]
                for c in range(classes):
                    p = sig[4] * sig[5 + c]
                    if p > thr:
                        out.append((x - w / 2, y - h / 2, x + w / 2, y + h / 2, p, c))
    return sorted(out, key=lambda r: (r[5], -r[4], r[0]))


@pytest.mark.parametrize("seed", range(4))
def test_decode_matches_darknet_formulas(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes, anchors = 3, [[12.0, 20.0], [40.0, 31.0], [90.0, 120.0]]
    q = Quant(8, int(rng.integers(100, 200)), float(np.float32(rng.uniform(0.02, 0.08))))
    codes = rng.integers(0, 256, (3 * (5 + classes), 7, 9)).astype(np.uint8)
    out = Output("head", "yolo", {"anchors": anchors, "classes": classes, "scale_x_y": 1.05})
    dec = YoloDecoder([out], {"head": q}, net_w=288, net_h=224, conf_thresh=0.3)
    boxes, scores, cls = dec.decode({"head": codes})
    got = sorted(zip(*boxes.T.tolist(), scores.tolist(), cls.tolist(), strict=True),
                 key=lambda r: (r[5], -r[4], r[0]))  # fmt: skip
    want = _decode_slow(codes, q, anchors, classes, 1.05, 288, 224, 0.3)
    assert len(got) == len(want) > 0
    np.testing.assert_allclose(np.array(got)[:, :5], np.array(want)[:, :5], rtol=1e-5, atol=1e-3)
    assert [r[5] for r in got] == [r[5] for r in want]


def test_nms_per_class_darknet_rule() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    # IoU 0.5 (suppressed at 0.45) and IoU 0.4 (kept)
    b = np.array([[0, 0, 10, 5]], np.float32)  # IoU = 50/100 = 0.5
    c = np.array([[0, 0, 10, 4]], np.float32)  # IoU = 0.4
    assert box_iou(a, b)[0, 0] == pytest.approx(0.5)
    boxes = np.concatenate([a, b, c, b])
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 0, 1])
    for fn in (nms_per_class, nms_per_class_reference):
        keep = fn(boxes, scores, classes, 0.45)
        assert sorted(keep.tolist()) == [0, 2, 3], fn.__name__  # b suppressed; b of class 1 kept


@pytest.mark.parametrize("seed", range(3))
def test_nms_fast_equals_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(5, 120, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0.25, 1, n).astype(np.float32)
    classes = rng.integers(0, 4, n)
    fast = nms_per_class(boxes, scores, classes, 0.45)
    ref = nms_per_class_reference(boxes, scores, classes, 0.45)
    assert sorted(fast.tolist()) == sorted(ref.tolist())
    assert 0 < len(fast) < n  # something kept and something suppressed: not a vacuous equality
    assert np.all(np.diff(scores[fast]) <= 0)


def test_decoder_end_to_end_maps_to_frame() -> None:
    """One confident cell: the decoded box lands where the formulas put it, in frame pixels."""
    q = Quant(8, 128, 0.05)
    classes = 2
    codes = np.zeros((1 * (5 + classes), 4, 4), np.uint8)  # code 0: t = -6.4, sigmoid ~ 0.0017
    codes[:, 1, 2] = [128, 128, 128, 128, 255, 0, 255]  # centre of cell (1, 2), obj, class 1
    out = Output("h", "yolo", {"anchors": [[64.0, 32.0]], "classes": classes, "scale_x_y": 1.0})
    dec = YoloDecoder([out], {"h": q}, net_w=128, net_h=128)
    g = letterbox_geometry(256, 128, 128, 128)  # frame 256x128 -> 128x64 at dy = 32
    det = dec({"h": codes}, g)
    assert len(det) == 1 and det.classes[0] == 1
    x, y = (2 + 0.5) / 4 * 128, (1 + 0.5) / 4 * 128  # input pixels
    want = np.array([x - 32, y - 16 - 32, x + 32, y + 16 - 32]) * 2  # frame pixels
    np.testing.assert_allclose(det.boxes[0], want, atol=1e-3)
    assert det.scores[0] == pytest.approx((1 / (1 + math.exp(-6.35))) ** 2, rel=1e-5)
    assert det.to_json(["a", "b"])[0]["class"] == "b"
