"""Exact import of darknet YOLO detectors (cfg + weights) into PyTorch, checked against OpenCV's
reader. The file formats are read by `sw.darknet` (`cfg` parses and validates the cfg, `weights`
cuts the weights file into each conv's floats): they live in the torch-free runtime, which runs a
user's cfg in float through OpenCV too. `modules` holds the PyTorch layers and `Darknet`."""

from models.darknet.modules import BN_EPS, LEAKY_SLOPE, ConvLayer, Darknet, ShortcutLayer, activate
from sw.darknet.cfg import (
    ACTIVATIONS,
    ConvSpec,
    DarknetConfig,
    DarknetError,
    DropoutSpec,
    LayerSpec,
    MaxpoolSpec,
    RouteSpec,
    Shape,
    ShortcutSpec,
    UpsampleSpec,
    YoloSpec,
    infer_shapes,
    parse_cfg,
    parse_cfg_text,
)
from sw.darknet.weights import ConvWeights, WeightsHeader, read_weights, read_weights_file

__all__: list[str] = [
    "ACTIVATIONS",
    "BN_EPS",
    "LEAKY_SLOPE",
    "ConvLayer",
    "ConvSpec",
    "ConvWeights",
    "Darknet",
    "DarknetConfig",
    "DarknetError",
    "DropoutSpec",
    "LayerSpec",
    "MaxpoolSpec",
    "RouteSpec",
    "Shape",
    "ShortcutLayer",
    "ShortcutSpec",
    "UpsampleSpec",
    "WeightsHeader",
    "YoloSpec",
    "activate",
    "infer_shapes",
    "parse_cfg",
    "parse_cfg_text",
    "read_weights",
    "read_weights_file",
]
