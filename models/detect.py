"""detect_fn factories for models.evaluate: letterbox -> network -> YOLO decode -> NMS -> frame.

Three kinds of network plug in here, all behind the same `detect_fn(image_bgr)` contract of
`models.evaluate` (returns `(class_id, score, x1, y1, x2, y2)` in 0-based frame pixels):

* float or fake-quant torch models that return raw head outputs (`Darknet`, `QuantDetector` in
  fake-quant mode): decoded by :class:`FloatYoloDecoder`, which is the formula of
  `sw.postprocess.YoloDecoder.decode` applied to real head values instead of code LUTs
  (tests/test_quant_detect.py checks that both give the same boxes on dequantized codes);
* integer networks that return head *codes*: an artifact run by `sim.reference.run_network`, or
  `QuantDetector` in integer mode; decoded by the runtime's own `sw.postprocess.YoloDecoder`.

Pre-processing is always the runtime's letterbox (`sw.preprocess.letterbox`, pad code 128), and
the float path feeds `codes / 255`, so a float and a quantized model see the same input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sw.artifact import Artifact, Output
from sw.postprocess import Detections, YoloDecoder, nms_per_class
from sw.preprocess import Letterbox, letterbox

DEFAULT_CONF = 0.005  # the evaluation threshold of the reference mAP figures
DEFAULT_NMS = 0.45  # darknet's do_nms_sort threshold
MAX_CANDIDATES = 2000  # as YoloDecoder: caps a pathological frame

Detection = tuple[int, float, float, float, float, float]
DetectFn = Callable[[np.ndarray], list[Detection]]


@dataclass(frozen=True)
class YoloHead:
    """One [yolo] head: anchors (A, 2) in network-input pixels, class count, scale_x_y."""

    anchors: tuple[tuple[float, float], ...]
    classes: int
    scale_x_y: float = 1.0


def heads_of_darknet(cfg: object) -> list[YoloHead]:
    """The heads of a parsed darknet cfg (`models.darknet.DarknetConfig`), in output order."""
    return [
        YoloHead(tuple(s.head_anchors), int(s.classes), float(s.scale_x_y))
        for s in cfg.yolo_layers  # type: ignore[attr-defined]
    ]


def heads_of_artifact(art: Artifact) -> list[YoloHead]:
    return [
        YoloHead(
            tuple(tuple(float(v) for v in a) for a in o.attrs["anchors"]),
            int(o.attrs["classes"]),
            float(o.attrs.get("scale_x_y", 1.0)),
        )
        for o in art.outputs
        if o.kind == "yolo"
    ]


def _sig_exp(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sigmoid and exp as YoloDecoder's LUTs compute them: float64 math, float32 result."""
    t = np.asarray(t, dtype=np.float64)
    return (1.0 / (1.0 + np.exp(-t))).astype(np.float32), np.exp(np.minimum(t, 80.0)).astype(
        np.float32
    )


class FloatYoloDecoder:
    """YOLO decoding of real head outputs, expression for expression `YoloDecoder.decode`.

    The runtime decoder indexes 256-entry LUTs with codes; here the same sigmoid/exp values are
    computed from the real outputs (float64, cast to float32 like the LUTs), and the rest of the
    arithmetic is copied with the same dtypes, so on dequantized codes both decoders agree.
    """

    def __init__(
        self,
        heads: Sequence[YoloHead],
        net_w: int,
        net_h: int,
        conf_thresh: float = DEFAULT_CONF,
        nms_thresh: float = DEFAULT_NMS,
        max_candidates: int = MAX_CANDIDATES,
    ) -> None:
        self.heads = list(heads)
        self.net_w, self.net_h = net_w, net_h
        self.conf_thresh, self.nms_thresh = conf_thresh, nms_thresh
        self.max_candidates = max_candidates

    def decode(self, outputs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates before NMS from one (C, H, W) real array per head, in head order."""
        all_b, all_s, all_c = [], [], []
        thr = self.conf_thresh
        for hd, t in zip(self.heads, outputs, strict=True):
            anchors = np.asarray(hd.anchors, dtype=np.float32)
            a = anchors.shape[0]
            ch, gh, gw = t.shape
            if ch != a * (5 + hd.classes):
                raise ValueError(f"head with {a} anchors got {ch} channels")
            sig, ex = _sig_exp(np.asarray(t).reshape(a, 5 + hd.classes, gh, gw))
            obj = sig[:, 4]
            an, row, col = np.nonzero(obj > thr)
            if an.size == 0:
                continue
            if an.size > self.max_candidates:
                top = np.argsort(-obj[an, row, col])[: self.max_candidates]
                an, row, col = an[top], row[top], col[top]
            o = obj[an, row, col]
            sxy = hd.scale_x_y
            x = (col + sxy * sig[an, 0, row, col] - (sxy - 1) / 2) / gw * self.net_w
            y = (row + sxy * sig[an, 1, row, col] - (sxy - 1) / 2) / gh * self.net_h
            w = ex[an, 2, row, col] * anchors[an, 0]
            h = ex[an, 3, row, col] * anchors[an, 1]
            prob = o[:, None] * sig[an, 5:, row, col]
            i, c = np.nonzero(prob > thr)
            boxes = np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1)[i]
            all_b.append(boxes.astype(np.float32))
            all_s.append(prob[i, c].astype(np.float32))
            all_c.append(c.astype(np.int64))
        if not all_b:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        return np.concatenate(all_b), np.concatenate(all_s), np.concatenate(all_c)

    def __call__(self, outputs: Sequence[np.ndarray], lb: Letterbox | None = None) -> Detections:
        boxes, scores, classes = self.decode(outputs)
        if scores.size == 0:
            return Detections()
        keep = nms_per_class(boxes, scores, classes, self.nms_thresh)
        boxes = boxes[keep]
        if lb is not None:
            boxes = lb.to_frame(boxes)
        return Detections(boxes, scores[keep], classes[keep])


def _as_list(d: Detections) -> list[Detection]:
    return [
        (int(c), float(s), float(b[0]), float(b[1]), float(b[2]), float(b[3]))
        for b, s, c in zip(d.boxes, d.scores, d.classes, strict=True)
    ]


def float_detect_fn(
    model: torch.nn.Module,
    heads: Sequence[YoloHead],
    size: int = 512,
    conf_thresh: float = DEFAULT_CONF,
    nms_thresh: float = DEFAULT_NMS,
) -> DetectFn:
    """detect_fn for a torch model mapping (1, 3, H, W) RGB in [0, 1] to raw head outputs."""
    dec = FloatYoloDecoder(heads, size, size, conf_thresh, nms_thresh)
    buf = np.empty((size, size, 3), np.uint8)

    def detect(image_bgr: np.ndarray) -> list[Detection]:
        codes, lb = letterbox(image_bgr, size, size, out=buf)
        x = torch.from_numpy(codes.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
        with torch.no_grad():
            outs = model(x)
        return _as_list(dec([o[0].double().numpy() for o in outs], lb))

    return detect


def codes_detect_fn(
    run: Callable[[np.ndarray], dict[str, np.ndarray]],
    outputs: list[Output],
    quants: dict[str, object],
    size: int = 512,
    conf_thresh: float = DEFAULT_CONF,
    nms_thresh: float = DEFAULT_NMS,
) -> DetectFn:
    """detect_fn for an integer network: `run(codes CHW uint8) -> head codes by node name`."""
    dec = YoloDecoder(outputs, quants, size, size, conf_thresh, nms_thresh)  # type: ignore[arg-type]
    buf = np.empty((size, size, 3), np.uint8)

    def detect(image_bgr: np.ndarray) -> list[Detection]:
        codes, lb = letterbox(image_bgr, size, size, out=buf)
        out = run(np.ascontiguousarray(codes.transpose(2, 0, 1)))
        return _as_list(dec(out, lb))

    return detect


def artifact_detect_fn(
    art: Artifact | str | Path,
    conf_thresh: float = DEFAULT_CONF,
    nms_thresh: float = DEFAULT_NMS,
    runner: Callable[[Artifact, np.ndarray], dict[str, np.ndarray]] | None = None,
) -> DetectFn:
    """detect_fn for an artifact at its own input size, run by the bit-exact NumPy reference
    (slow: seconds per 512x512 frame) unless `runner(art, codes)` is given (e.g. the torch
    integer mode of quant.model, which equals the reference bit for bit and is much faster)."""
    from sim.reference.network import run_network
    from sw import artifact as artmod

    if not isinstance(art, Artifact):
        art = artmod.load(art)
    _, h, w = art.input_shape
    if h != w:
        raise ValueError("square inputs only")
    quants = {o.node: art.quant_of(o.node) for o in art.outputs}
    run = runner or run_network
    return codes_detect_fn(lambda c: run(art, c), art.outputs, quants, h, conf_thresh, nms_thresh)
