"""Labelled fine-tuning: VOC training batches and darknet's YOLOv3 detection loss.

``quant.qat --voc PATH`` adds this loss to the distillation loss so a quantized student can also
learn from labels (a user's VOCdevkit/VOC2012, never the bundled evaluation sample).

Batches go through the deployment letterbox (``sw.preprocess.letterbox``, pad code 128), so the
network is trained on exactly the input geometry the runtime feeds it. Box conventions follow
the evaluator: a VOC box (xmin, ymin, xmax, ymax), 1-based inclusive, is (xmin - 1, ymin - 1,
xmax - 1, ymax - 1) in 0-based frame pixels, which is what ``detections_to_voc`` maps a
detection back from (and darknet's voc_label.py centre/size).

The loss is darknet's ``[yolo]`` layer written as a differentiable function of the raw head
outputs: each ground truth is given to the anchor (over all anchors) whose shape matches it
best, the head whose mask holds that anchor makes its cell/anchor responsible, every other
prediction is pushed to objectness 0 unless it already overlaps a ground truth by more than
``ignore_thresh``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.darknet import YoloSpec
from models.evaluate import VOC_CLASSES, load_voc_ground_truth, voc_image_ids
from quant.data import read_bgr
from sw.preprocess import letterbox

IGNORE_THRESH = 0.5  # ignore_thresh of the three VOC cfgs (darknet yolov3.cfg has .7)


class VocTrainSet:
    """Random letterboxed, randomly flipped batches of a VOC-layout folder with their boxes.

    Images come from ``ImageSets/Main/<image_set>.txt`` when it exists, else every annotation
    (``models.evaluate.voc_image_ids``). Annotations are parsed once; images are read per batch
    (a VOC train set does not fit in memory decoded). "difficult" objects are left out of the
    targets, and therefore also out of the loss's ignore test: a prediction on a difficult
    object is trained towards objectness 0, as darknet does (its voc_label.py drops them too).
    """

    def __init__(
        self,
        root: str | Path,
        size: int,
        image_set: str | None = "trainval",
        seed: int = 0,
        class_names: Sequence[str] = VOC_CLASSES,
    ) -> None:
        self.root = Path(root)
        self.size = size
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder (expected a VOC layout)")
        jpeg_dir = self.root / "JPEGImages"
        if not jpeg_dir.is_dir():
            raise FileNotFoundError(f"{self.root}: no JPEGImages/ folder (expected a VOC layout)")
        ids, self.source = voc_image_ids(self.root, image_set)
        if not ids:
            raise ValueError(f"{self.root}: no images (Annotations/ is empty)")
        self.paths = [jpeg_dir / f"{i}.jpg" for i in ids]
        missing = [p for p in self.paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{missing[0]}: missing image ({len(missing)} of {len(ids)})")
        gt = load_voc_ground_truth(self.root, ids, class_names)
        # Per image: (K, 5) class, x1, y1, x2, y2 in 0-based frame pixels, difficult dropped.
        self.boxes: list[np.ndarray] = []
        for i in ids:
            g = gt[i]
            keep = ~g.difficult
            b = g.boxes[keep] - 1.0
            self.boxes.append(np.concatenate([g.labels[keep, None].astype(np.float64), b], 1))
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        """Restart the random stream (qat seeds it with the step, so a resumed run continues
        with fresh draws rather than repeating the first ones)."""
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.paths)

    def sample(self, index: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
        """One image as (3, S, S) uint8 RGB input codes and its (K, 5) class, cx, cy, w, h in
        network-input pixels (boxes with no extent left after the letterbox are dropped)."""
        img = read_bgr(self.paths[index])
        b = self.boxes[index].copy()
        if flip:
            img = img[:, ::-1]
            # Corners are pixel indices (0-based): pixel i goes to W - 1 - i.
            x1 = img.shape[1] - 1 - b[:, 3]
            x2 = img.shape[1] - 1 - b[:, 1]
            b[:, 1], b[:, 3] = x1, x2
        codes, lb = letterbox(np.ascontiguousarray(img), self.size, self.size)
        # Frame -> network: the inverse of Letterbox.to_frame.
        x1, x2 = b[:, 1] * lb.scale_x + lb.dx, b[:, 3] * lb.scale_x + lb.dx
        y1, y2 = b[:, 2] * lb.scale_y + lb.dy, b[:, 4] * lb.scale_y + lb.dy
        t = np.stack([b[:, 0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], 1)
        t = t[(t[:, 3] > 0) & (t[:, 4] > 0)]
        return np.ascontiguousarray(codes.transpose(2, 0, 1)), t

    def batch(self, n: int) -> tuple[Tensor, Tensor]:
        """(N, 3, S, S) float RGB in [0, 1] and (M, 6) targets [batch index, class, cx, cy, w,
        h] in network-input pixels, for ``n`` random images each flipped with probability 1/2."""
        idx = self.rng.integers(0, len(self.paths), n)
        flips = self.rng.random(n) < 0.5
        imgs, rows = [], []
        for k, (i, f) in enumerate(zip(idx, flips, strict=True)):
            codes, t = self.sample(int(i), bool(f))
            imgs.append(codes)
            rows.append(np.concatenate([np.full((len(t), 1), k, np.float64), t], 1))
        x = torch.from_numpy(np.stack(imgs).astype(np.float32) / 255.0)
        targets = torch.from_numpy(np.concatenate(rows).astype(np.float32).reshape(-1, 6))
        return x, targets


def _wh_iou(wh1: Tensor, wh2: Tensor) -> Tensor:
    """IoU of boxes with the same centre: (M, 2) x (K, 2) -> (M, K)."""
    inter = torch.minimum(wh1[:, None], wh2[None]).prod(-1)
    return inter / (wh1.prod(-1)[:, None] + wh2.prod(-1)[None] - inter)


def _box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of x1, y1, x2, y2 boxes: (P, 4) x (G, 4) -> (P, G)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-9)


def _bce_excess(logits: Tensor, target: Tensor) -> Tensor:
    """Elementwise BCE minus the target's own entropy (= KL divergence): the same gradient as
    BCE, but zero when the prediction is exact, so a perfect output has loss 0 even for soft
    targets (the x, y offsets)."""
    t = target.clamp(1e-12, 1 - 1e-12)
    entropy = -(t * t.log() + (1 - t) * (1 - t).log())
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none") - entropy


def yolo_v3_loss(
    outputs: Sequence[Tensor],
    targets: Tensor,
    heads: Sequence[YoloSpec],
    net_size: int | tuple[int, int],
    ignore_thresh: float = IGNORE_THRESH,
) -> Tensor:
    """Darknet's YOLOv3 loss of raw head outputs against ground truth, summed, / batch size.

    ``outputs``: one (N, A * (5 + C), H, W) tensor per head, in the model's head order;
    ``targets``: (M, 6) [batch index, class, cx, cy, w, h] in network-input pixels; ``heads``:
    the heads' YoloSpec (mask, all anchors, classes, scale_x_y); ``net_size``: the input size
    the outputs were computed at (int, or (width, height)).

    Per ground truth, the best anchor over all anchors by width/height IoU decides; in the head
    whose mask holds it, the cell containing the centre and that anchor are responsible:
    - x, y: BCE of the sigmoid against the offset in the cell, mapped through scale_x_y as the
      decoder (``sw.postprocess.FloatYoloDecoder``) maps it back;
    - w, h: squared error of the raw output against log(w / anchor_w), log(h / anchor_h);
    - both weighted by 2 - w * h / net area, as darknet does, so small boxes count more;
    - objectness BCE towards 1, class BCE towards the one-hot class.
    Two ground truths on the same cell and anchor: the later one wins (darknet overwrites too).
    Every other prediction: objectness BCE towards 0, unless its decoded box (detached) has IoU
    > ``ignore_thresh`` with a ground truth of its image, which is then left alone.
    BCE is taken minus the target's entropy (``_bce_excess``), so an exact output scores 0.
    """
    if not outputs:
        raise ValueError("yolo_v3_loss: no head outputs")
    if len(outputs) != len(heads):
        raise ValueError(f"yolo_v3_loss: {len(outputs)} outputs for {len(heads)} heads")
    net_w, net_h = (net_size, net_size) if isinstance(net_size, int) else net_size
    ref = outputs[0]
    dev, dt = ref.device, ref.dtype
    nb = ref.shape[0]
    targets = targets.to(dev, dt).reshape(-1, 6)
    if (targets[:, 4:6] <= 0).any():
        raise ValueError("yolo_v3_loss: a target box has no width or height")
    if len(targets) and (targets[:, 1].min() < 0 or targets[:, 1].max() >= heads[0].classes):
        raise ValueError(f"yolo_v3_loss: a target class is outside 0..{heads[0].classes - 1}")
    all_anchors = heads[0].anchors
    if any(tuple(h.anchors) != tuple(all_anchors) for h in heads):
        raise ValueError("yolo_v3_loss: the heads do not share one anchor list")
    anchors = torch.tensor(all_anchors, device=dev, dtype=dt)
    best = (
        _wh_iou(targets[:, 4:6], anchors).argmax(1)
        if len(targets)
        else torch.zeros(0, dtype=torch.long, device=dev)
    )
    tb = targets[:, 0].long()
    if len(targets) and (tb.min() < 0 or tb.max() >= nb):
        raise ValueError(f"yolo_v3_loss: a target's batch index is outside 0..{nb - 1}")
    gt_xyxy = torch.cat([targets[:, 2:4] - targets[:, 4:6] / 2,
                         targets[:, 2:4] + targets[:, 4:6] / 2], 1)  # fmt: skip
    area = net_w * net_h
    total = ref.new_zeros(())
    for out, hd in zip(outputs, heads, strict=True):
        na, nc = len(hd.mask), hd.classes
        n, ch, gh, gw = out.shape
        if n != nb or ch != na * (5 + nc):
            raise ValueError(
                f"yolo_v3_loss: head output {tuple(out.shape)}, expected ({nb}, "
                f"{na * (5 + nc)}, H, W)"
            )
        p = out.view(n, na, 5 + nc, gh, gw).permute(0, 1, 3, 4, 2)  # (N, A, H, W, 5 + C)
        sxy = hd.scale_x_y
        head_anchors = torch.tensor(hd.head_anchors, device=dev, dtype=dt)

        # Responsible predictions.
        mask = torch.tensor(hd.mask, device=dev)
        hit = best[:, None] == mask[None]  # (M, A)
        sel = hit.any(1)
        t = targets[sel]
        la = hit[sel].float().argmax(1)
        b = tb[sel]
        gx, gy = t[:, 2] / net_w * gw, t[:, 3] / net_h * gh
        gi = gx.long().clamp(0, gw - 1)
        gj = gy.long().clamp(0, gh - 1)
        key = ((b * na + la) * gh + gj) * gw + gi
        order = torch.arange(len(key), device=dev)
        last = torch.full((n * na * gh * gw,), -1, dtype=torch.long, device=dev)
        last = last.scatter_reduce(0, key, order, reduce="amax")
        keep = last[key] == order
        t, la, b, gi, gj, gx, gy = (v[keep] for v in (t, la, b, gi, gj, gx, gy))
        resp = torch.zeros(n, na, gh, gw, dtype=torch.bool, device=dev)
        resp[b, la, gj, gi] = True
        if len(t):
            ps = p[b, la, gj, gi]  # (K, 5 + C)
            scale = 2 - t[:, 4] * t[:, 5] / area
            txy = (torch.stack([gx - gi, gy - gj], 1) + (sxy - 1) / 2) / sxy
            xy = _bce_excess(ps[:, :2], txy.clamp(0, 1)).sum(1)
            twh = torch.log(t[:, 4:6] / head_anchors[la])
            wh = ((ps[:, 2:4] - twh) ** 2).sum(1)
            onehot = F.one_hot(t[:, 1].long(), nc).to(dt)
            cls = F.binary_cross_entropy_with_logits(ps[:, 5:], onehot, reduction="none").sum(1)
            total = total + (scale * (xy + wh)).sum() + cls.sum()

        # Objectness everywhere: 1 where responsible, 0 elsewhere unless ignored.
        with torch.no_grad():
            pd = p[..., :4].detach()
            col = torch.arange(gw, device=dev, dtype=dt)[None, None, None, :]
            row = torch.arange(gh, device=dev, dtype=dt)[None, None, :, None]
            x = (col + sxy * torch.sigmoid(pd[..., 0]) - (sxy - 1) / 2) / gw * net_w
            y = (row + sxy * torch.sigmoid(pd[..., 1]) - (sxy - 1) / 2) / gh * net_h
            aw = head_anchors[:, 0][None, :, None, None]
            ah = head_anchors[:, 1][None, :, None, None]
            w = torch.exp(pd[..., 2].clamp(max=80)) * aw
            h = torch.exp(pd[..., 3].clamp(max=80)) * ah
            pred = torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], -1)
            ignore = torch.zeros_like(resp)
            for k in range(n):
                g = gt_xyxy[tb == k]
                if len(g):
                    ignore[k] = (_box_iou(pred[k].reshape(-1, 4), g).amax(1) > ignore_thresh).view(
                        na, gh, gw
                    )
            weight = (resp | ~ignore).to(dt)
        obj = F.binary_cross_entropy_with_logits(p[..., 4], resp.to(dt), reduction="none")
        total = total + (obj * weight).sum()
    return total / nb
