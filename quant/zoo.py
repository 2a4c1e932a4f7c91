"""The detectors the commands quantize: darknet VOC models from data/, loaded and wrapped in a
QuantDetector of the accelerator's weight formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.darknet import Darknet
from models.paths import data_dir
from quant.equalize import equalize_depthwise
from quant.model import LayerFormat, QuantDetector

MODELS = ("yolo-fastest-voc", "yolo-fastest-xl-voc", "mobilenetv2-yolov3-nano-voc")


def load_darknet(model: str) -> Darknet:
    d = data_dir() / "weights" / "darknet"
    return Darknet.from_files(d / f"{model}.cfg", d / f"{model}.weights")


def voc_names() -> list[str]:
    path = data_dir() / "weights" / "darknet" / "voc.names"
    return [s.strip() for s in path.read_text().splitlines() if s.strip()]


def build(
    model: str,
    bits: int = 4,
    dw_format: str = "pow2",
    act_bits: int = 8,
    equalize: bool = False,
    head_bits: int | None = 8,
    plan: Path | dict[str, Any] | None = None,
) -> tuple[Darknet, QuantDetector]:
    """Float darknet model and its QuantDetector: dense convs pow2 ``bits`` (the dense engine
    supports pow2 3-4 bits), depthwise pow2 ``bits`` or int8; head outputs ``head_bits``.
    ``plan`` (a quant.plan file or its parsed dict) sets the formats and activation bits of the
    layers it lists; the others keep these arguments'."""
    net = load_darknet(model)
    dw = ("pow2", bits) if dw_format == "pow2" else ("int", 8)
    if plan is None:
        qdet = QuantDetector(net, LayerFormat(("pow2", bits), dw), act_bits, head_bits)
    else:
        from quant import plan as planmod

        kinds = planmod.layer_kinds(net.cfg)
        if isinstance(plan, dict):
            p = planmod.validate(plan, kinds, model)
        else:
            p = planmod.load(plan, kinds, model)
        formats, acts = planmod.detector_kwargs(p)
        fmt = LayerFormat(("pow2", bits), dw, layers=formats)
        qdet = QuantDetector(net, fmt, act_bits, head_bits, act_bits_of=acts)
    if equalize:
        equalize_depthwise(qdet)
    return net, qdet
