"""models.detect: the float YOLO decoder equals the runtime's code decoder on dequantized codes,
and the detect_fn factories produce frame-space boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.detect import artifact_detect_fn, float_detect_fn
from models.paths import data_dir
from sw.artifact import Output, Quant
from sw.postprocess import (
    FloatYoloDecoder,
    YoloDecoder,
    YoloHead,
    heads_of_artifact,
    heads_of_darknet,
)

torch.set_num_threads(1)  # shared CI machine: avoid thread-pool thrashing

HEADS = [
    YoloHead(((26.0, 48.0), (67.0, 84.0), (72.0, 175.0)), 20, 1.05),
    YoloHead(((189.0, 126.0), (137.0, 236.0), (265.0, 259.0)), 20, 1.0),
]


@pytest.mark.parametrize("conf", [0.005, 0.25])
@pytest.mark.parametrize("seed", [0, 1])
def test_float_decoder_equals_code_decoder(conf: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    outputs, quants, codes, reals = [], {}, {}, []
    for k, (hd, g) in enumerate(zip(HEADS, (16, 8), strict=True)):
        name = f"conv{k}"
        q = Quant(8, int(rng.integers(100, 200)), float(np.float32(rng.uniform(0.03, 0.12))))
        c = rng.integers(0, 256, (75, g, g)).astype(np.uint8)
        attrs = {"anchors": [list(a) for a in hd.anchors], "classes": 20, "scale_x_y": hd.scale_x_y}
        outputs.append(Output(name, "yolo", attrs))
        quants[name] = q
        codes[name] = c
        reals.append(q.scale * (c.astype(np.float64) - q.zero))
    ref = YoloDecoder(outputs, quants, 512, 512, conf_thresh=conf, nms_thresh=0.45)
    mine = FloatYoloDecoder(HEADS, 512, 512, conf_thresh=conf, nms_thresh=0.45)
    rb, rs, rc = ref.decode(codes)
    mb, ms, mc = mine.decode(reals)
    assert rs.size > 0
    assert np.array_equal(rc, mc)
    assert np.array_equal(rs, ms)
    assert np.array_equal(rb, mb)
    d1, d2 = ref(codes), mine(reals)
    assert np.array_equal(d1.boxes, d2.boxes) and np.array_equal(d1.scores, d2.scores)


needs_data = pytest.mark.skipif(
    not (data_dir() / "weights" / "darknet" / "yolo-fastest-voc.weights").is_file(),
    reason="darknet weights not found (run make data)",
)


@needs_data
def test_detect_fns_on_a_real_image(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import cv2

    from quant.calibrate import calibrate_activations
    from quant.data import letterbox_batch, unlabeled_images
    from quant.export import export
    from quant.integer import integer_runner
    from quant.model import LayerFormat, QuantDetector
    from quant.zoo import load_darknet, voc_names

    img_path = sorted((data_dir() / "voc2012-sample" / "JPEGImages").glob("*.jpg"))[0]
    img = cv2.imread(str(img_path))
    net = load_darknet("yolo-fastest-voc")
    dets = float_detect_fn(net, heads_of_darknet(net.cfg), 320, conf_thresh=0.1)(img)
    assert dets, "the float model finds something in a VOC image"
    h, w = img.shape[:2]
    for _, s, x1, y1, x2, y2 in dets:
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h and 0.1 < s <= 1
    qdet = QuantDetector(net, LayerFormat(("pow2", 4), ("int", 8)))
    calibrate_activations(qdet, [letterbox_batch(unlabeled_images()[:2], 64)], per_tensor=5000)
    art = export(qdet, tmp_path / "a.npz", 64, name="a", classes=voc_names())
    assert heads_of_artifact(art)[0].anchors == heads_of_darknet(net.cfg)[0].anchors
    ref = artifact_detect_fn(art, conf_thresh=0.01)(img)
    fast = artifact_detect_fn(art, conf_thresh=0.01, runner=integer_runner())(img)
    assert ref == fast
