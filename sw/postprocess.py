"""Post-processing on the CPU: YOLO head codes -> boxes in the frame, with per-class NMS.

Darknet semantics (AlexeyAB fork, ``[yolo]`` layers of Yolo-Fastest), per head of ``A`` anchors
and ``C`` classes on a ``G_h x G_w`` grid, with ``t = s * (q - z)`` the dequantized head output
(the head's scale and zero point from the artifact):

    x = (col + scale_x_y * sigmoid(t_x) - (scale_x_y - 1) / 2) / G_w * net_w   (input pixels)
    y = (row + scale_x_y * sigmoid(t_y) - (scale_x_y - 1) / 2) / G_h * net_h
    w = exp(t_w) * anchor_w,  h = exp(t_h) * anchor_h                  (anchors in input pixels)
    objectness = sigmoid(t_o); prob[c] = objectness * sigmoid(t_c)

A box is a candidate when objectness > thresh and it is kept for class c when prob[c] > thresh
(darknet's ``get_yolo_detections``), then NMS per class (IoU > 0.45 suppresses, darknet's
``do_nms_sort``) and the boxes are mapped from the letterboxed input back to the frame.

Because a head's codes are bytes and dequantization is affine, ``sigmoid(t)`` and ``exp(t)`` are
256-entry lookup tables per head: no transcendental function is evaluated per frame.
:class:`FloatYoloDecoder` decodes real head outputs (a float model: ``shiftdet detect --cfg``,
the evaluation of float and fake-quant torch models) with the same formula, computing sigmoid and
exp as the LUTs do; both go through one :func:`_decode_head`, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from sw.artifact import Output, Quant
from sw.compat import zip_strict
from sw.preprocess import Letterbox


@dataclass
class Detections:
    """Boxes (N, 4) x1, y1, x2, y2 in frame pixels, scores (N,), class ids (N,)."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.scores.size)

    def to_json(self, names: list[str]) -> list[dict[str, Any]]:
        out = []
        for b, s, c in zip_strict(self.boxes.tolist(), self.scores.tolist(),
                                  self.classes.tolist()):  # fmt: skip
            out.append({
                "class": names[c] if c < len(names) else str(c), "class_id": int(c),
                "score": round(float(s), 4), "box": [round(float(v), 1) for v in b],
            })  # fmt: skip
        return out


@dataclass
class _Head:
    name: str
    anchors: np.ndarray  # (A, 2) input pixels
    classes: int
    scale_x_y: float
    sig: np.ndarray  # 256-entry LUTs over the codes
    exp: np.ndarray


def sig_exp(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sigmoid(t) and exp(t) (capped at t = 80), float64 math with a float32 result: the LUTs'
    entries and the float decoder's values."""
    t = np.asarray(t, dtype=np.float64)
    return (1.0 / (1.0 + np.exp(-t))).astype(np.float32), np.exp(np.minimum(t, 80.0)).astype(
        np.float32
    )


def _luts(q: Quant) -> tuple[np.ndarray, np.ndarray]:
    return sig_exp(q.scale * (np.arange(256, dtype=np.float64) - q.zero))


@dataclass(frozen=True)
class YoloHead:
    """One [yolo] head: anchors (A, 2) in network-input pixels, class count, scale_x_y."""

    anchors: tuple[tuple[float, float], ...]
    classes: int
    scale_x_y: float = 1.0


def heads_of_darknet(cfg: Any) -> list[YoloHead]:
    """The heads of a parsed darknet cfg (`sw.darknet.cfg.DarknetConfig`), in output order."""
    return [
        YoloHead(tuple(s.head_anchors), int(s.classes), float(s.scale_x_y)) for s in cfg.yolo_layers
    ]


def heads_of_artifact(art: Any) -> list[YoloHead]:
    """The heads of an artifact's YOLO outputs (`sw.artifact.Artifact`), in output order."""
    return [
        YoloHead(
            tuple(tuple(float(v) for v in a) for a in o.attrs["anchors"]),
            int(o.attrs["classes"]),
            float(o.attrs.get("scale_x_y", 1.0)),
        )
        for o in art.outputs
        if o.kind == "yolo"
    ]


if TYPE_CHECKING:  # an alias for annotations only (numpy types at run time vary on boards)
    from typing import Tuple

    Candidates = Tuple[np.ndarray, np.ndarray, np.ndarray]
EMPTY: Candidates = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                     np.zeros(0, np.int64))  # fmt: skip


def _decode_head(
    obj: np.ndarray,
    at: Callable[[slice | int, tuple[np.ndarray, ...]], tuple[np.ndarray, np.ndarray]],
    anchors: np.ndarray,
    scale_x_y: float,
    net_w: int,
    net_h: int,
    thr: float,
    max_candidates: int,
) -> Candidates | None:
    """One head's candidates: ``obj`` (A, G_h, G_w) is sigmoid(t_o); ``at(channel, (an, row,
    col))`` gives sigmoid and exp of that channel (an int or the class slice) at the cells."""
    an, row, col = np.nonzero(obj > thr)
    if an.size == 0:
        return None
    if an.size > max_candidates:  # a pathological frame must not stall the app
        top = np.argsort(-obj[an, row, col])[:max_candidates]
        an, row, col = an[top], row[top], col[top]
    cells = (an, row, col)
    gh, gw = obj.shape[1:]
    o = obj[cells]
    sxy = scale_x_y
    x = (col + sxy * at(0, cells)[0] - (sxy - 1) / 2) / gw * net_w
    y = (row + sxy * at(1, cells)[0] - (sxy - 1) / 2) / gh * net_h
    w = at(2, cells)[1] * anchors[an, 0]
    h = at(3, cells)[1] * anchors[an, 1]
    prob = o[:, None] * at(slice(5, None), cells)[0]  # (N, classes)
    i, c = np.nonzero(prob > thr)
    boxes = np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1)[i]
    return boxes.astype(np.float32), prob[i, c].astype(np.float32), c.astype(np.int64)


def _head_view(t: np.ndarray, anchors: int, classes: int, name: str) -> np.ndarray:
    """A head's (C, G_h, G_w) output as (A, 5 + classes, G_h, G_w); a wrong C is one line."""
    ch, gh, gw = t.shape
    if ch != anchors * (5 + classes):
        raise ValueError(f"head {name!r}: {ch} channels for {anchors} anchors")
    return np.asarray(t).reshape(anchors, 5 + classes, gh, gw)


def _join(found: list[Candidates]) -> Candidates:
    if not found:
        return EMPTY
    return tuple(np.concatenate(parts) for parts in zip_strict(*found))  # type: ignore[return-value]


class _Nms:
    """NMS and the map back to the frame, shared by both decoders."""

    nms_thresh: float

    def decode(self, outputs: Any) -> Candidates:
        raise NotImplementedError

    def __call__(self, outputs: Any, lb: Letterbox | None = None) -> Detections:
        boxes, scores, classes = self.decode(outputs)
        if scores.size == 0:
            return Detections()
        keep = nms_per_class(boxes, scores, classes, self.nms_thresh)
        boxes = boxes[keep]
        if lb is not None:
            boxes = lb.to_frame(boxes)
        return Detections(boxes, scores[keep], classes[keep])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (N, 4) and (M, 4) corner boxes (darknet's box_iou, no +1 pixel)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms_per_class(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_thresh: float
) -> np.ndarray:
    """Indices kept by greedy NMS within each class, best score first (OpenCV's C++
    ``NMSBoxesBatched``: the same greedy rule as :func:`nms_per_class_reference`, which the
    tests compare it with, about ten times faster on crowded frames)."""
    if scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)
    keep = cv2.dnn.NMSBoxesBatched(xywh, scores.astype(np.float32), classes.astype(np.int32),
                                   -1.0, float(iou_thresh))  # fmt: skip
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


def nms_per_class_reference(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_thresh: float
) -> np.ndarray:
    """Darknet's do_nms_sort in NumPy: per class, best first, drop boxes with IoU > thresh."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for c in np.unique(classes[order]):
        idx = order[classes[order] == c]
        iou = box_iou(boxes[idx], boxes[idx])
        alive = np.ones(idx.size, dtype=bool)
        for i in range(idx.size):
            if alive[i]:
                keep.append(int(idx[i]))
                alive[i + 1 :] &= iou[i, i + 1 :] <= iou_thresh
    return np.array(sorted(keep, key=lambda i: -scores[i]), dtype=np.int64)


class YoloDecoder(_Nms):
    """Decodes the YOLO outputs of a plan or artifact (``outputs`` with kind ``yolo``)."""

    def __init__(
        self,
        outputs: list[Output],
        quants: dict[str, Quant],
        net_w: int,
        net_h: int,
        conf_thresh: float = 0.25,
        nms_thresh: float = 0.45,
        max_candidates: int = 2000,
    ) -> None:
        self.net_w, self.net_h = net_w, net_h
        self.conf_thresh, self.nms_thresh = conf_thresh, nms_thresh
        self.max_candidates = max_candidates
        self.heads = []
        for o in outputs:
            if o.kind != "yolo":
                continue
            sig, ex = _luts(quants[o.node])
            self.heads.append(_Head(
                o.node, np.asarray(o.attrs["anchors"], dtype=np.float32),
                int(o.attrs["classes"]), float(o.attrs.get("scale_x_y", 1.0)), sig, ex,
            ))  # fmt: skip
        if not self.heads:
            raise ValueError("the model has no YOLO outputs to decode")

    @classmethod
    def for_plan(cls, plan: Any, **kw: Any) -> YoloDecoder:
        quants = {o.node: plan.regions[o.node].quant for o in plan.outputs}
        _, h, w = plan.input_shape
        return cls(plan.outputs, quants, w, h, **kw)

    def decode(self, outputs: dict[str, np.ndarray]) -> Candidates:
        """Candidates before NMS: boxes (input pixels, corners), scores, class ids."""
        found = []
        for hd in self.heads:
            p = _head_view(outputs[hd.name], hd.anchors.shape[0], hd.classes, hd.name)

            def at(k: slice | int, cells: tuple[np.ndarray, ...],
                   hd: _Head = hd, p: np.ndarray = p) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
                an, row, col = cells
                q = p[an, k, row, col]
                return hd.sig[q], hd.exp[q]

            got = _decode_head(hd.sig[p[:, 4]], at, hd.anchors, hd.scale_x_y, self.net_w,
                               self.net_h, self.conf_thresh, self.max_candidates)  # fmt: skip
            if got is not None:
                found.append(got)
        return _join(found)


class FloatYoloDecoder(_Nms):
    """YOLO decoding of real head outputs (a float or fake-quant model), the formula of
    :class:`YoloDecoder` with sigmoid/exp computed as its LUTs compute them, so on dequantized
    codes both decoders give the same boxes (tests/test_quant_detect.py)."""

    def __init__(
        self,
        heads: Sequence[YoloHead],
        net_w: int,
        net_h: int,
        conf_thresh: float = 0.25,
        nms_thresh: float = 0.45,
        max_candidates: int = 2000,
    ) -> None:
        self.heads = list(heads)
        if not self.heads:
            raise ValueError("the model has no YOLO outputs to decode")
        self.anchors = [np.asarray(hd.anchors, dtype=np.float32) for hd in self.heads]
        self.net_w, self.net_h = net_w, net_h
        self.conf_thresh, self.nms_thresh = conf_thresh, nms_thresh
        self.max_candidates = max_candidates

    def decode(self, outputs: Sequence[np.ndarray]) -> Candidates:
        """Candidates before NMS from one (C, H, W) real array per head, in head order."""
        found = []
        for i, (hd, anchors, t) in enumerate(zip_strict(self.heads, self.anchors, outputs)):
            sig, ex = sig_exp(_head_view(t, anchors.shape[0], hd.classes, f"#{i}"))

            def at(k: slice | int, cells: tuple[np.ndarray, ...], sig: np.ndarray = sig,
                   ex: np.ndarray = ex) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
                an, row, col = cells
                return sig[an, k, row, col], ex[an, k, row, col]

            got = _decode_head(sig[:, 4], at, anchors, hd.scale_x_y, self.net_w, self.net_h,
                               self.conf_thresh, self.max_candidates)  # fmt: skip
            if got is not None:
                found.append(got)
        return _join(found)
