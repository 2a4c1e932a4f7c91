"""Exact import of darknet YOLO detectors (cfg + weights) into PyTorch, checked against OpenCV's
reader: `cfg` parses and validates the cfg, `weights` reads the weights file, `modules` holds
the PyTorch layers and `Darknet`."""

from models.darknet.cfg import (
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
from models.darknet.modules import BN_EPS, LEAKY_SLOPE, ConvLayer, Darknet, ShortcutLayer, activate
from models.darknet.weights import ConvWeights, WeightsHeader, read_weights, read_weights_file

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
