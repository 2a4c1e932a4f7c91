"""quant.yolo_loss: the YOLOv3 loss (known answer, anchor assignment, optimisation to the box),
the VOC training batches (boxes through the letterbox and flip, difficult objects dropped) and
quant.qat --voc end to end at a tiny size."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.darknet import YoloSpec
from quant.yolo_loss import VocTrainSet, yolo_v3_loss
from sw import artifact as artmod
from sw.postprocess import FloatYoloDecoder, YoloHead
from sw.preprocess import letterbox_geometry

torch.set_num_threads(1)

NET = 320
C = 20
# yolo-fastest-voc.cfg: head 0 (stride 32) masks 3,4,5, head 1 (stride 16) masks 0,1,2.
ANCHORS = ((26.0, 48.0), (67.0, 84.0), (72.0, 175.0), (189.0, 126.0), (137.0, 236.0),
           (265.0, 259.0))  # fmt: skip


def _spec(mask: tuple[int, ...], sxy: float = 1.0) -> YoloSpec:
    return YoloSpec(index=0, section=0, line=0, out_shape=(0, 0, 0), mask=mask, anchors=ANCHORS,
                    classes=C, scale_x_y=sxy)  # fmt: skip


def _heads(sxy: float = 1.0) -> list[YoloSpec]:
    return [_spec((3, 4, 5), sxy), _spec((0, 1, 2), sxy)]


GRIDS = (10, 20)


def _blank(n: int = 1) -> list[torch.Tensor]:
    """Raw outputs predicting nothing: objectness and class logits very negative."""
    outs = []
    for g in GRIDS:
        t = torch.zeros(n, 3, 5 + C, g, g)
        t[:, :, 4:] = -30.0
        outs.append(t)
    return outs


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _encode(outs: list[torch.Tensor], heads: list[YoloSpec], box: list[float]) -> None:
    """Write the exact raw outputs for target row [b, cls, cx, cy, w, h] at its responsible
    head/cell/anchor (its best anchor, found here independently of the loss's code)."""
    b, cls, cx, cy, w, h = box
    ious = [min(w, aw) * min(h, ah) / (w * h + aw * ah - min(w, aw) * min(h, ah))
            for aw, ah in ANCHORS]  # fmt: skip
    k = int(np.argmax(ious))
    for t, hd, g in zip(outs, heads, GRIDS, strict=True):
        if k not in hd.mask:
            continue
        a = hd.mask.index(k)
        gx, gy = cx / NET * g, cy / NET * g
        i, j = int(gx), int(gy)
        s = hd.scale_x_y
        v = t[int(b), a, :, j, i]
        v[0] = _logit((gx - i + (s - 1) / 2) / s)
        v[1] = _logit((gy - j + (s - 1) / 2) / s)
        v[2] = math.log(w / ANCHORS[k][0])
        v[3] = math.log(h / ANCHORS[k][1])
        v[4] = 30.0
        v[5:] = -30.0
        v[5 + int(cls)] = 30.0


def _flat(outs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.reshape(t.shape[0], -1, t.shape[3], t.shape[4]) for t in outs]


@pytest.mark.parametrize("sxy", [1.0, 1.2])
def test_exact_outputs_have_zero_loss(sxy: float) -> None:
    heads = _heads(sxy)
    targets = torch.tensor(
        [[0, 14, 100.3, 140.7, 30.0, 50.0], [0, 3, 210.0, 90.0, 180.0, 140.0],
         [1, 7, 165.0, 158.0, 70.0, 80.0]]
    )  # fmt: skip
    outs = _blank(2)
    for row in targets.tolist():
        _encode(outs, heads, row)
    loss = yolo_v3_loss(_flat(outs), targets, heads, NET)
    assert float(loss) < 1e-4
    # The same outputs against a ground truth one cell (32 px) to the right: clearly worse.
    shifted = targets.clone()
    shifted[:, 2] += 32
    assert float(yolo_v3_loss(_flat(outs), shifted, heads, NET)) > 10.0
    # A slightly wrong width costs something, but little.
    wrong = targets.clone()
    wrong[0, 4] *= 1.1
    assert 1e-4 < float(yolo_v3_loss(_flat(outs), wrong, heads, NET)) < 0.1


@pytest.mark.parametrize("k", range(6))
def test_box_shaped_like_anchor_k_goes_to_its_head_only(k: int) -> None:
    heads = _heads()
    aw, ah = ANCHORS[k]
    cx, cy = 170.0, 150.0
    raw = [t.requires_grad_(True) for t in _flat(_blank())]
    yolo_v3_loss(raw, torch.tensor([[0, 5, cx, cy, aw, ah]]), heads, NET).backward()
    for t, hd, g in zip(raw, heads, GRIDS, strict=True):
        grad = t.grad.view(1, 3, 5 + C, g, g)
        box_grad = grad[0, :, :4].abs().sum(1)  # (A, H, W): only the responsible cell's x,y,w,h
        obj_grad = grad[0, :, 4]
        if k in hd.mask:
            a, i, j = hd.mask.index(k), int(cx / NET * g), int(cy / NET * g)
            assert box_grad[a, j, i] > 0
            assert torch.count_nonzero(box_grad) == 1
            assert obj_grad[a, j, i] < 0  # pushed towards objectness 1
            assert torch.count_nonzero(grad[0, :, 5:].abs().sum(1)) == 1
        else:
            assert torch.count_nonzero(box_grad) == 0
            assert (obj_grad >= 0).all()  # everything pushed towards 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_adam_on_the_loss_alone_finds_the_box() -> None:
    torch.manual_seed(0)
    heads = _heads(1.1)
    raw = [(0.5 * torch.randn(1, 3 * (5 + C), g, g)).requires_grad_(True) for g in GRIDS]
    target = torch.tensor([[0, 11, 123.0, 201.0, 90.0, 60.0]])
    opt = torch.optim.Adam(raw, lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        yolo_v3_loss(raw, target, heads, NET).backward()
        opt.step()
    dec = FloatYoloDecoder([YoloHead(h.head_anchors, C, h.scale_x_y) for h in heads], NET, NET)
    det = dec([t.detach()[0].numpy() for t in raw])
    top = int(np.argmax(det.scores))
    assert det.classes[top] == 11
    assert _iou(det.boxes[top], np.array([78.0, 171.0, 168.0, 231.0])) > 0.9


# --------------------------------------------------------------------------------------------
# VOC training batches

_XML = """<annotation><filename>{id}.jpg</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>"""
_OBJ = """<object><name>{name}</name><difficult>{d}</difficult>
<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"""

# id: (w, h, [(name, difficult, xmin, ymin, xmax, ymax) 1-based inclusive])
_IMAGES = {
    "img_a": (200, 100, [("person", 0, 21, 11, 80, 90), ("dog", 1, 121, 31, 190, 70)]),
    "img_b": (120, 160, [("car", 0, 11, 101, 110, 150), ("cat", 0, 41, 11, 90, 60)]),
}


def _make_voc(root: Path) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for image_id, (w, h, objs) in _IMAGES.items():
        img = np.zeros((h, w, 3), np.uint8)
        for _, d, x1, y1, x2, y2 in objs:  # objects white, difficult ones grey
            img[y1 - 1 : y2, x1 - 1 : x2] = 120 if d else 255
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), img)
        xml = "".join(
            _OBJ.format(name=n, d=d, x1=x1, y1=y1, x2=x2, y2=y2) for n, d, x1, y1, x2, y2 in objs
        )
        (root / "Annotations" / f"{image_id}.xml").write_text(
            _XML.format(id=image_id, w=w, h=h, objects=xml)
        )
    return root


@pytest.fixture
def tiny_voc(tmp_path: Path) -> Path:
    return _make_voc(tmp_path / "voc")


def test_voc_targets_map_back_to_the_xml_boxes(tiny_voc: Path) -> None:
    from models.evaluate import VOC_CLASSES

    size = 64
    ds = VocTrainSet(tiny_voc, size)
    assert len(ds) == 2 and ds.source == "all"
    for index, (w, h, objs) in enumerate(_IMAGES.values()):
        lb = letterbox_geometry(w, h, size, size)
        kept = [o for o in objs if not o[1]]
        for flip in (False, True):
            codes, t = ds.sample(index, flip)
            assert codes.shape == (3, size, size) and t.shape == (len(kept), 5)
            net = np.stack([t[:, 1] - t[:, 3] / 2, t[:, 2] - t[:, 4] / 2,
                            t[:, 1] + t[:, 3] / 2, t[:, 2] + t[:, 4] / 2], 1)  # fmt: skip
            frame = lb.to_frame(net)
            for (name, _, x1, y1, x2, y2), row, cls in zip(kept, frame, t[:, 0], strict=True):
                assert VOC_CLASSES[int(cls)] == name
                # 1-based inclusive -> 0-based (as detections_to_voc maps back); flip i -> W-1-i
                want = np.array([x1 - 1, y1 - 1, x2 - 1, y2 - 1], np.float64)
                if flip:
                    want[[0, 2]] = w - 1 - want[[2, 0]]
                np.testing.assert_allclose(row, want, atol=1e-3)
            # The image went through the same flip: each box's centre is a white object pixel.
            for cx, cy in t[:, 1:3]:
                assert codes[:, int(cy), int(cx)].min() > 200


def test_voc_batch(tiny_voc: Path) -> None:
    ds = VocTrainSet(tiny_voc, 64, seed=3)
    x, t = ds.batch(6)
    assert x.shape == (6, 3, 64, 64) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert t.shape[1] == 6 and set(t[:, 0].long().tolist()) <= set(range(6))
    assert 14 in t[:, 1].tolist() or 6 in t[:, 1].tolist()
    assert 11 not in t[:, 1].tolist()  # the difficult dog never appears
    # Padding is darknet's grey (code 128): img_a is 2:1, so its rows 0..15 are padding.
    assert torch.isclose(x[:, :, 0], torch.tensor(128 / 255)).any()
    # Loss on it is finite and differentiable end to end with random outputs.
    raw = [torch.randn(6, 3 * (5 + C), g, g, requires_grad=True) for g in (2, 4)]
    loss = yolo_v3_loss(raw, t, _heads(), 64)
    loss.backward()
    assert torch.isfinite(loss)


def test_voc_errors(tmp_path: Path) -> None:
    (tmp_path / "x" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="Annotations") as e:
        VocTrainSet(tmp_path / "x", 64)
    assert "\n" not in str(e.value) and str(tmp_path / "x") in str(e.value)
    (tmp_path / "x" / "Annotations").mkdir()
    with pytest.raises(ValueError, match="no images"):
        VocTrainSet(tmp_path / "x", 64)
    root = _make_voc(tmp_path / "y")
    (root / "JPEGImages" / "img_b.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="img_b.jpg"):
        VocTrainSet(root, 64)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        VocTrainSet(tmp_path / "missing", 64)


def test_qat_with_voc_loss(tiny_voc: Path, tmp_path: Path) -> None:
    from quant import qat

    out = tmp_path / "q.npz"
    qat.main(["--size", "64", "--out", str(out), "--steps", "2", "--batch", "2", "--crop", "64",
              "--images", "8", "--calib", "2", "--voc", str(tiny_voc),
              "--det-weight", "0.5"])  # fmt: skip
    meta = artmod.load(out).metadata
    assert "0.5 x YOLOv3 detection loss" in meta["training"]
    assert str(tiny_voc) in meta["training"]
    assert all(math.isfinite(v) for v in meta["loss_first_last_20"])
