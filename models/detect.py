"""detect_fn factories for models.evaluate: letterbox -> network -> YOLO decode -> NMS -> frame.

Three kinds of network plug in here, all behind the same `detect_fn(image_bgr)` contract of
`models.evaluate` (returns `(class_id, score, x1, y1, x2, y2)` in 0-based frame pixels):

* float or fake-quant torch models that return raw head outputs (`Darknet`, `QuantDetector` in
  fake-quant mode): decoded by `sw.postprocess.FloatYoloDecoder`, which is the formula of
  `sw.postprocess.YoloDecoder` applied to real head values instead of code LUTs
  (tests/test_quant_detect.py checks that both give the same boxes on dequantized codes);
* integer networks that return head *codes*: an artifact run by `sim.reference.run_network`, or
  `QuantDetector` in integer mode; decoded by the runtime's own `sw.postprocess.YoloDecoder`.

Pre-processing is always the runtime's letterbox (`sw.preprocess.letterbox`, pad code 128), and
the float path feeds `codes / 255`, so a float and a quantized model see the same input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from sw.artifact import Artifact, Output
from sw.postprocess import (
    Detections,
    FloatYoloDecoder,
    YoloDecoder,
    YoloHead,
)
from sw.preprocess import letterbox

DEFAULT_CONF = 0.005  # the evaluation threshold of the reference mAP figures
DEFAULT_NMS = 0.45  # darknet's do_nms_sort threshold

Detection = tuple[int, float, float, float, float, float]
DetectFn = Callable[[np.ndarray], list[Detection]]


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
