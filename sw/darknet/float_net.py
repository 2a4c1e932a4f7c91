"""A darknet detector (a .cfg and its .weights) in float, run by OpenCV's DNN module on the CPU.

This is what ``shiftdet detect --cfg FILE --weights FILE`` runs: a user's own detector before it
is quantized, through the same letterbox, YOLO decoding, NMS and outputs as an artifact on the
accelerator, so its boxes can be compared with the quantized model's on the same video. The
accelerator itself needs an artifact (``python -m quant.ptq --cfg ... --weights ...`` makes one
on a machine with torch); the board runtime has no torch, and OpenCV reads darknet files itself.

Before OpenCV sees them, both files go through the project's own readers (``sw.darknet.cfg``,
``sw.darknet.weights``), so a cfg the quantizer would refuse, or weights that do not fit the cfg
exactly, fail here too with the same one line, and what runs in float is what can be quantized.
The YOLO heads are the raw outputs of the layer that feeds each ``[yolo]`` layer (OpenCV's
importer puts a ``permute_N`` layer in front of its ``yolo_N`` region layer), decoded by
:class:`sw.postprocess.FloatYoloDecoder`, the formula the runtime applies to an artifact's codes.
OpenCV normalises with eps 1e-6 where darknet uses 1e-5: outputs differ in the 5th digit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sw.darknet.cfg import ConvSpec, DarknetConfig, DarknetError, infer_shapes, parse_cfg
from sw.darknet.weights import read_weights
from sw.postprocess import YoloHead, heads_of_darknet

NAME = "opencv-float"  # the "backend" a report names for this path


@dataclass
class FloatStats:
    """The backends' ``RunStats`` fields the app reads: all of a frame runs on the CPU."""

    pl_s: float = 0.0
    cpu_s: float = 0.0


def _head_layers(net: Any, count: int, where: str) -> list[str]:
    """The OpenCV layer feeding each yolo region layer: the one before its ``permute_N``."""
    names = list(net.getLayerNames())
    outs = list(net.getUnconnectedOutLayersNames())
    heads = []
    for out in outs:
        i = names.index(out)
        if not out.startswith("yolo_") or i < 2 or not names[i - 1].startswith("permute_"):
            raise DarknetError(f"{where}: OpenCV's darknet importer made an unexpected output "
                               f"layer {out!r} (expected permute_N, yolo_N)")  # fmt: skip
        heads.append(names[i - 2])
    if len(heads) != count:
        raise DarknetError(f"{where}: OpenCV finds {len(heads)} YOLO outputs, the cfg {count}")
    return heads


class FloatDarknet:
    """``run(rgb)``: a letterboxed RGB frame -> one (C, H, W) float32 array per YOLO head."""

    name = NAME

    def __init__(self, cfg_path: str | Path, weights_path: str | Path, width: int = 512,
                 height: int = 512) -> None:  # fmt: skip
        cfg_path, weights_path = Path(cfg_path), Path(weights_path)
        where = f"{cfg_path} + {weights_path}"
        self.cfg: DarknetConfig = parse_cfg(cfg_path)
        if self.cfg.channels != 3:
            raise DarknetError(f"{cfg_path}: channels={self.cfg.channels}; the runtime feeds "
                               "RGB frames (channels=3)")  # fmt: skip
        shapes = infer_shapes(self.cfg, height, width)  # a size the network cannot take: 1 line
        convs = [s for s in self.cfg.layers if isinstance(s, ConvSpec)]
        try:
            read_weights(weights_path, convs)  # the exact float count, as the quantizer checks
        except OSError as e:
            raise DarknetError(f"{weights_path}: cannot read ({e.strerror})") from None
        self.heads: list[YoloHead] = heads_of_darknet(self.cfg)
        self.head_shapes = [shapes[i] for i in self.cfg.head_indices]
        try:
            self.net = cv2.dnn.readNetFromDarknet(str(cfg_path), str(weights_path))
        except cv2.error as e:
            why = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown error"
            raise DarknetError(f"{where}: OpenCV cannot read it ({why})") from None
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.head_layers = _head_layers(self.net, len(self.heads), where)
        self.input_shape = (3, height, width)
        self.stats = FloatStats()
        # One forward now: a network OpenCV runs differently from the cfg's shapes fails at
        # start-up, before any output file exists.
        outs = self.run(np.zeros((height, width, 3), np.uint8), hwc=True)
        got = [tuple(o.shape) for o in outs]
        if got != [tuple(s) for s in self.head_shapes]:
            raise DarknetError(f"{where}: OpenCV's heads are {got}, the cfg's "
                               f"{[tuple(s) for s in self.head_shapes]}")  # fmt: skip

    def run(self, image: np.ndarray, hwc: bool = False) -> list[np.ndarray]:
        """RGB codes, (3, H, W) or with ``hwc`` (H, W, 3), uint8 -> real head outputs."""
        t0 = time.perf_counter()
        rgb = image if hwc else np.ascontiguousarray(image.transpose(1, 2, 0))
        self.net.setInput(cv2.dnn.blobFromImage(rgb, 1 / 255.0))  # RGB already: no swap
        outs = [o[0] for o in self.net.forward(self.head_layers)]
        self.stats = FloatStats(cpu_s=time.perf_counter() - t0)
        return outs

    def close(self) -> None:
        self.net = None
