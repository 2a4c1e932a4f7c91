"""The detectors the commands quantize: a built-in darknet VOC model from data/ (``--model``) or
any darknet detector by path (``--cfg --weights [--names]``), loaded and wrapped in a
QuantDetector of the accelerator's weight formats."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.darknet import Darknet, DarknetError, parse_cfg
from models.paths import data_dir
from quant.equalize import equalize_depthwise
from quant.model import LayerFormat, QuantDetector
from sw.darknet.cfg import check_class_names, read_names

MODELS = ("yolo-fastest-voc", "yolo-fastest-xl-voc", "mobilenetv2-yolov3-nano-voc")


class ModelSourceError(ValueError):
    """A model that cannot be loaded; the message is one line naming the file and the problem."""


@dataclass(frozen=True)
class ModelSource:
    """Where a detector's files are: a built-in name or a user's cfg/weights (and names)."""

    name: str  # the built-in name, or the cfg's file stem (plans and metadata use it)
    cfg: Path
    weights: Path
    names: Path | None  # class names, one per line; None: the VOC names of data/
    builtin: bool

    def describe(self) -> str:
        if self.builtin:
            return f"data/weights/darknet/{self.name}.cfg/.weights"
        return f"{self.cfg} + {self.weights}"


def source(
    model: str | None = None,
    cfg: str | Path | None = None,
    weights: str | Path | None = None,
    names: str | Path | None = None,
) -> ModelSource:
    """The model to load: ``cfg`` + ``weights`` (a user's detector) or the built-in ``model``."""
    if cfg is None and weights is None:
        if names is not None:
            raise ModelSourceError("--names goes with --cfg and --weights")
        model = model or MODELS[0]
        if model not in MODELS:
            raise ModelSourceError(f"unknown model {model!r} (built-in: {', '.join(MODELS)})")
        d = data_dir() / "weights" / "darknet"
        return ModelSource(model, d / f"{model}.cfg", d / f"{model}.weights", None, True)
    if cfg is None or weights is None:
        raise ModelSourceError("--cfg and --weights go together (a darknet .cfg and its .weights)")
    paths = [("--cfg", Path(cfg)), ("--weights", Path(weights))]
    if names is not None:
        paths.append(("--names", Path(names)))
    for opt, p in paths:
        if not p.is_file():
            raise ModelSourceError(f"{opt} {p}: no such file")
    # The name goes into plan files and artifact names: keep it a plain file-name stem.
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(cfg).stem) or "model"
    return ModelSource(name, Path(cfg), Path(weights), Path(names) if names else None, False)


def voc_names() -> list[str]:
    return read_names(data_dir() / "weights" / "darknet" / "voc.names")


def class_names(src: ModelSource) -> list[str]:
    """The class names of ``src``; their count must be every [yolo] layer's ``classes``."""
    names = voc_names() if src.names is None else read_names(src.names)
    what = f"--names {src.names}" if src.names else "the 20 VOC names (give --names)"
    try:
        check_class_names(parse_cfg(src.cfg), len(names), what, src.cfg)
    except DarknetError as e:
        raise ModelSourceError(str(e)) from None
    return names


def load_darknet(model: str | ModelSource) -> Darknet:
    """The float darknet model; a cfg or weights file that cannot be imported exactly raises
    ``DarknetError`` with one line naming the file, the layer and the problem."""
    src = model if isinstance(model, ModelSource) else source(model)
    return Darknet.from_files(src.cfg, src.weights)


def build(
    model: str | ModelSource,
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
    src = model if isinstance(model, ModelSource) else source(model)
    net = load_darknet(src)
    dw = ("pow2", bits) if dw_format == "pow2" else ("int", 8)
    fmt = LayerFormat(("pow2", bits), dw)
    acts = None
    if plan is not None:
        from quant import plan as planmod

        kinds = planmod.layer_kinds(net.cfg)
        if isinstance(plan, dict):
            p = planmod.validate(plan, kinds, src.name)
        else:
            p = planmod.load(plan, kinds, src.name)
        formats, acts = planmod.detector_kwargs(p)
        fmt = LayerFormat(("pow2", bits), dw, layers=formats)
    try:
        qdet = QuantDetector(net, fmt, act_bits, head_bits, act_bits_of=acts)
    except ValueError as e:  # a layer the contract has no op for: its layer and op, one line
        raise ModelSourceError(f"{src.cfg.name}: {e}") from None
    if equalize:
        equalize_depthwise(qdet)
    return net, qdet
