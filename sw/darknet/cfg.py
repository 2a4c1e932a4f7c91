"""Darknet cfg files parsed into validated layer specs with their output shapes.

Follows the AlexeyAB darknet fork that Yolo-Fastest and MobileNetV2-YOLOv3-Nano were trained with:

* layers are numbered from 0 in file order, [net] excluded; `route`/`shortcut` indices are
  absolute, or relative to the current layer when negative;
* convolution `pad=1` means padding `size // 2` and overrides `padding=`; `pad=0` uses `padding=`
  (default 0);
* maxpool pads `padding` (default size - 1) cells of -inf in total, `padding // 2` before, so a
  stride-1 maxpool (SPP) keeps the spatial size.

The parser is strict: an unknown section, an unknown key in a layer section, a value it cannot
honour exactly (e.g. an unsupported activation) or a bad layer index is a `DarknetError` naming
the section, the layer and the problem on one line, because a silently ignored option would give a
network that runs but computes something else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Tuple

import numpy as np

from sw.compat import zip_strict

ACTIVATIONS = ("leaky", "relu", "relu6", "linear")

Shape = Tuple[int, int, int]  # (channels, height, width); typing.Tuple: Python 3.8 boards
MAX_CFG_BYTES = 4 << 20  # a cfg is a text file of some kilobytes; a bigger one is a wrong path
MAX_NAMES_BYTES = 1 << 20  # a class-names file is a short text file


class DarknetError(ValueError):
    """A cfg or weights file that cannot be imported exactly; the message is one line."""


# --------------------------------------------------------------------------------------------
# Layer descriptions (the parsed cfg)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)  # keyword construction only (no kw_only: Python 3.8 boards)
class LayerSpec:
    """Common fields: where the layer is (for error messages) and its output at net size."""

    index: int  # darknet layer number (what route/shortcut indices refer to)
    section: int  # section number in the file, [net] being section 0
    line: int  # 1-based line of the section header
    out_shape: Shape  # (C, H, W) for the [net] width and height

    kind: ClassVar[str] = "layer"

    def where(self) -> str:
        return f"layer {self.index} [{self.kind}] (section {self.section}, line {self.line})"


@dataclass(frozen=True)  # keyword construction only (no kw_only: Python 3.8 boards)
class ConvSpec(LayerSpec):
    in_channels: int
    filters: int
    size: int
    stride: int
    padding: int  # per side, already resolved from pad=/padding=
    groups: int
    batch_normalize: bool
    activation: str  # one of ACTIVATIONS

    kind: ClassVar[str] = "convolutional"

    @property
    def depthwise(self) -> bool:
        """One group per input channel (filters may be a multiple of it)."""
        return self.groups == self.in_channels > 1


@dataclass(frozen=True)  # keyword construction only (no kw_only: Python 3.8 boards)
class ShortcutSpec(LayerSpec):
    source: int  # absolute index of the layer added to the previous layer's output
    activation: str

    kind: ClassVar[str] = "shortcut"


@dataclass(frozen=True)  # keyword construction only (no kw_only: Python 3.8 boards)
class RouteSpec(LayerSpec):
    layers: tuple[int, ...]  # absolute indices, concatenated along channels in this order
    groups: int = 1  # darknet's channel split: keep part `group_id` of `groups` of each input
    group_id: int = 0

    kind: ClassVar[str] = "route"


@dataclass(frozen=True)  # keyword construction only (no kw_only: Python 3.8 boards)
class UpsampleSpec(LayerSpec):
    stride: int  # nearest-neighbour factor

    kind: ClassVar[str] = "upsample"


@dataclass(frozen=True)  # keyword construction only (no kw_only: Python 3.8 boards)
class MaxpoolSpec(LayerSpec):
    size: int
    stride: int
    padding: int  # total over both sides; padding // 2 of it before

    kind: ClassVar[str] = "maxpool"


@dataclass(frozen=True)  # keyword construction only (no kw_only: Python 3.8 boards)
class DropoutSpec(LayerSpec):
    probability: float  # identity at inference

    kind: ClassVar[str] = "dropout"


@dataclass(frozen=True)  # keyword construction only (no kw_only: Python 3.8 boards)
class YoloSpec(LayerSpec):
    mask: tuple[int, ...]  # which anchors this head predicts
    anchors: tuple[tuple[float, float], ...]  # all anchors (w, h) in network-input pixels
    classes: int
    scale_x_y: float

    kind: ClassVar[str] = "yolo"

    @property
    def head_anchors(self) -> tuple[tuple[float, float], ...]:
        return tuple(self.anchors[m] for m in self.mask)


@dataclass(frozen=True)
class DarknetConfig:
    """A parsed cfg: input size and the layer list, validated and with shapes at net size."""

    name: str
    width: int
    height: int
    channels: int
    layers: tuple[LayerSpec, ...]
    net_options: dict[str, str] = field(default_factory=dict)  # raw [net] keys (training etc.)

    @property
    def yolo_layers(self) -> list[YoloSpec]:
        return [s for s in self.layers if isinstance(s, YoloSpec)]

    @property
    def head_indices(self) -> list[int]:
        """Index of the layer feeding each [yolo] layer (its raw output is the head output)."""
        return [s.index - 1 for s in self.yolo_layers]


def channel_selection(channels: int, groups: int, group_id: int) -> np.ndarray:
    """A route's channel split (``groups``/``group_id``) as 1x1 conv weights (out, in, 1, 1):
    ones that pass on chunk ``group_id`` of ``groups`` equal chunks of ``channels``, zeros
    elsewhere. quant.model lowers a split to this conv (docs/arithmetic.md section 7.2), and
    sim's random artifacts use the same weights."""
    if channels % groups:
        raise ValueError(f"route groups={groups} does not divide {channels} channels")
    n = channels // groups
    w = np.zeros((n, channels, 1, 1), np.float32)
    w[np.arange(n), group_id * n + np.arange(n), 0, 0] = 1.0
    return w


# --------------------------------------------------------------------------------------------
# cfg parsing
# --------------------------------------------------------------------------------------------

_SECTION_ALIASES = {
    "net": "net",
    "network": "net",
    "convolutional": "convolutional",
    "conv": "convolutional",
    "shortcut": "shortcut",
    "route": "route",
    "upsample": "upsample",
    "maxpool": "maxpool",
    "max": "maxpool",
    "dropout": "dropout",
    "yolo": "yolo",
}

# [yolo] keys that only matter for training, NMS or decoding choices made elsewhere; accepted and
# ignored. Anything else in a [yolo] section is an error, like in the other layer sections.
_YOLO_IGNORED = frozenset(
    [
        "num",
        "jitter",
        "ignore_thresh",
        "truth_thresh",
        "random",
        "iou_thresh",
        "cls_normalizer",
        "iou_normalizer",
        "obj_normalizer",
        "delta_normalizer",
        "iou_loss",
        "iou_thresh_kind",
        "nms_kind",
        "beta_nms",
        "max_delta",
        "counters_per_class",
        "label_smooth_eps",
        "resize",
        "focal_loss",
        "objectness_smooth",
        "track_history_size",
        "sim_thresh",
        "dets_for_track",
        "dets_for_show",
        "track_ciou_norm",
        "embedding_layer",
        "map",
    ]
)
# [dropout] keys: all identity at inference (dropblock included).
_DROPOUT_IGNORED = frozenset(["dropblock", "dropblock_size_abs", "dropblock_size_rel"])


class _CfgError(Exception):
    """Raised inside a section parser; the caller adds where it happened."""


@dataclass
class _Section:
    kind: str
    number: int
    line: int
    options: dict[str, tuple[str, int]]  # key -> (value, line)
    used: set[str] = field(default_factory=set)

    def _raw(self, key: str) -> str | None:
        if key not in self.options:
            return None
        self.used.add(key)
        return self.options[key][0]

    def get_int(self, key: str, default: int | None = None) -> int:
        raw = self._raw(key)
        if raw is None:
            if default is None:
                raise _CfgError(f"missing key '{key}'")
            return default
        try:
            return int(raw)
        except ValueError:
            raise _CfgError(f"{key}={raw!r} is not an integer") from None

    def get_float(self, key: str, default: float) -> float:
        raw = self._raw(key)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise _CfgError(f"{key}={raw!r} is not a number") from None

    def get_str(self, key: str, default: str) -> str:
        raw = self._raw(key)
        return default if raw is None else raw

    def get_ints(self, key: str) -> list[int]:
        raw = self._raw(key)
        if raw is None:
            raise _CfgError(f"missing key '{key}'")
        try:
            return [int(v) for v in raw.split(",") if v != ""]
        except ValueError:
            raise _CfgError(f"{key}={raw!r} is not a list of integers") from None

    def get_floats(self, key: str) -> list[float]:
        raw = self._raw(key)
        if raw is None:
            raise _CfgError(f"missing key '{key}'")
        try:
            return [float(v) for v in raw.split(",") if v != ""]
        except ValueError:
            raise _CfgError(f"{key}={raw!r} is not a list of numbers") from None

    def check_all_used(self, ignored: Iterable[str] = ()) -> None:
        unknown = sorted(set(self.options) - self.used - set(ignored))
        if unknown:
            key = unknown[0]
            raise _CfgError(
                f"unknown key '{key}' (line {self.options[key][1]}); refusing to ignore it"
            )


def _read_sections(text: str, name: str) -> list[_Section]:
    """Split cfg text into sections the way darknet's read_cfg does (whitespace is stripped)."""
    sections: list[_Section] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())  # darknet strip(): removes every whitespace character
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise DarknetError(f"{name}: line {lineno}: malformed section header {raw!r}")
            header = line[1:-1]
            kind = _SECTION_ALIASES.get(header)
            if kind is None:
                raise DarknetError(
                    f"{name}: section {len(sections)} (layer {len(sections) - 1}, line {lineno}): "
                    f"unknown section [{header}]"
                )
            sections.append(_Section(kind, len(sections), lineno, {}))
            continue
        if not sections:
            raise DarknetError(f"{name}: line {lineno}: option {raw.strip()!r} before any section")
        sec = sections[-1]
        key, eq, value = line.partition("=")
        if not eq or not key:
            raise DarknetError(
                f"{name}: section {sec.number} [{sec.kind}] line {lineno}: "
                f"expected key=value, got {raw.strip()!r}"
            )
        if key in sec.options:
            raise DarknetError(
                f"{name}: section {sec.number} [{sec.kind}] line {lineno}: duplicate key '{key}'"
            )
        sec.options[key] = (value, lineno)
    return sections


def _resolve_index(raw: int, current: int, what: str) -> int:
    """Darknet index rule: negative is relative to the current layer, else absolute."""
    index = current + raw if raw < 0 else raw
    if not 0 <= index < current:
        raise _CfgError(f"{what} {raw} points to layer {index}, not one of layers 0..{current - 1}")
    return index


def _activation(sec: _Section, default: str) -> str:
    act = sec.get_str("activation", default)
    if act not in ACTIVATIONS:
        raise _CfgError(f"unsupported activation '{act}' (supported: {', '.join(ACTIVATIONS)})")
    return act


def _positive(sec: _Section, key: str, default: int | None = None) -> int:
    value = sec.get_int(key, default)
    if value < 1:
        raise _CfgError(f"{key}={value} must be >= 1")
    return value


def _parse_layer(
    sec: _Section, index: int, shapes: list[Shape], specs: list[LayerSpec]
) -> LayerSpec:
    """Build one layer's spec from its section; `shapes` are the outputs of layers 0..index-1."""
    prev: Shape = shapes[-1]
    common = {"index": index, "section": sec.number, "line": sec.line}

    if sec.kind == "convolutional":
        filters = _positive(sec, "filters", 1)
        size = _positive(sec, "size", 1)
        stride = _positive(sec, "stride", 1)
        groups = _positive(sec, "groups", 1)
        pad = sec.get_int("pad", 0)
        padding = sec.get_int("padding", 0)
        bn = sec.get_int("batch_normalize", 0)
        if pad not in (0, 1) or bn not in (0, 1):
            raise _CfgError(f"pad={pad} / batch_normalize={bn} must be 0 or 1")
        if padding < 0:
            raise _CfgError(f"padding={padding} must be >= 0")
        if pad:
            padding = size // 2  # darknet: `if (pad) padding = size / 2;` overrides padding=
        # Darknet's default conv activation is logistic, which we do not support: a missing
        # activation= is reported rather than guessed.
        act = _activation(sec, "logistic")
        sec.check_all_used()
        c_in = prev[0]
        if c_in % groups or filters % groups:
            raise _CfgError(f"groups={groups} does not divide {c_in} inputs and {filters} filters")
        spec: LayerSpec = ConvSpec(
            **common,
            out_shape=(0, 0, 0),
            in_channels=c_in,
            filters=filters,
            size=size,
            stride=stride,
            padding=padding,
            groups=groups,
            batch_normalize=bool(bn),
            activation=act,
        )
    elif sec.kind == "shortcut":
        froms = sec.get_ints("from")
        if len(froms) != 1:
            raise _CfgError(f"from= must name one layer, got {len(froms)}")
        source = _resolve_index(froms[0], index, "from")
        act = _activation(sec, "linear")
        # AlexeyAB's weighted shortcut (weights_type=per_feature|per_channel) has its own
        # weights in the file; only the plain sum is supported.
        if sec.get_str("weights_type", "none") != "none":
            raise _CfgError("weighted shortcut (weights_type) is not supported")
        sec.check_all_used()
        spec = ShortcutSpec(**common, out_shape=(0, 0, 0), source=source, activation=act)
    elif sec.kind == "route":
        raw = sec.get_ints("layers")
        if not raw:
            raise _CfgError("layers= is empty")
        layers = tuple(_resolve_index(r, index, "layers index") for r in raw)
        groups = _positive(sec, "groups", 1)
        group_id = sec.get_int("group_id", 0)
        if not 0 <= group_id < groups:
            raise _CfgError(f"group_id={group_id} not in 0..{groups - 1}")
        sec.check_all_used()
        for src in layers:
            if isinstance(specs[src], YoloSpec):
                # darknet would hand on the [yolo] layer's partly-sigmoided output buffer
                raise _CfgError(f"route to a [yolo] layer ({src}) is not supported")
        spec = RouteSpec(
            **common, out_shape=(0, 0, 0), layers=layers, groups=groups, group_id=group_id
        )
    elif sec.kind == "upsample":
        stride = sec.get_int("stride", 2)
        if stride < 1:
            raise _CfgError(f"stride={stride} not supported (negative means downsample)")
        if sec.get_float("scale", 1.0) != 1.0:
            raise _CfgError("scale != 1 (output multiplier) is not supported")
        sec.check_all_used()
        spec = UpsampleSpec(**common, out_shape=(0, 0, 0), stride=stride)
    elif sec.kind == "maxpool":
        stride = _positive(sec, "stride", 1)
        size = _positive(sec, "size", stride)  # darknet: size defaults to stride
        padding = sec.get_int("padding", size - 1)  # total over both sides
        if padding < 0:
            raise _CfgError(f"padding={padding} must be >= 0")
        sec.check_all_used()
        spec = MaxpoolSpec(**common, out_shape=(0, 0, 0), size=size, stride=stride, padding=padding)
    elif sec.kind == "dropout":
        probability = sec.get_float("probability", 0.5)
        sec.check_all_used(_DROPOUT_IGNORED)
        spec = DropoutSpec(**common, out_shape=(0, 0, 0), probability=probability)
    elif sec.kind == "yolo":
        classes = _positive(sec, "classes", 20)
        mask = tuple(sec.get_ints("mask"))
        flat = sec.get_floats("anchors")
        if not flat or len(flat) % 2:
            raise _CfgError(f"anchors= needs an even, non-zero count of numbers, got {len(flat)}")
        anchors = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
        bad = [m for m in mask if not 0 <= m < len(anchors)]
        if not mask or bad:
            raise _CfgError(f"mask={list(mask)} must index the {len(anchors)} anchors")
        if "num" in sec.options and sec.get_int("num") != len(anchors):
            raise _CfgError(f"num={sec.get_int('num')} but {len(anchors)} anchors are given")
        scale_x_y = sec.get_float("scale_x_y", 1.0)
        # new_coords=1 (scaled-YOLOv4) changes what the raw outputs mean
        if sec.get_int("new_coords", 0) != 0:
            raise _CfgError("new_coords=1 is not supported")
        sec.check_all_used(_YOLO_IGNORED)
        expect = len(mask) * (classes + 5)
        if prev[0] != expect:
            raise _CfgError(
                f"input has {prev[0]} channels, expected {len(mask)} anchors x "
                f"({classes} classes + 5) = {expect}"
            )
        if index == 0 or isinstance(specs[index - 1], YoloSpec):
            raise _CfgError("a [yolo] layer must follow the layer that computes its head")
        spec = YoloSpec(
            **common,
            out_shape=(0, 0, 0),
            mask=mask,
            anchors=anchors,
            classes=classes,
            scale_x_y=scale_x_y,
        )
    else:  # "net" after the first section
        raise _CfgError("[net] may only be the first section")
    return spec


def _out_shape(spec: LayerSpec, shapes: Sequence[Shape], in_shape: Shape) -> Shape:
    """Output (C, H, W) of `spec` given the outputs of earlier layers; raises _CfgError."""
    prev = shapes[spec.index - 1] if spec.index > 0 else in_shape
    c, h, w = prev
    if isinstance(spec, ConvSpec):
        if c != spec.in_channels:
            raise _CfgError(f"expects {spec.in_channels} input channels, got {c}")
        oh = (h + 2 * spec.padding - spec.size) // spec.stride + 1
        ow = (w + 2 * spec.padding - spec.size) // spec.stride + 1
        out = (spec.filters, oh, ow)
    elif isinstance(spec, ShortcutSpec):
        other = shapes[spec.source]
        if other != prev:
            raise _CfgError(f"adds layer {spec.source} of shape {other} to input of shape {prev}")
        out = prev
    elif isinstance(spec, RouteSpec):
        srcs = [shapes[i] for i in spec.layers]
        hw = {s[1:] for s in srcs}
        if len(hw) != 1:
            raise _CfgError(f"concatenates layers {list(spec.layers)} of different sizes {srcs}")
        for i, s in zip_strict(spec.layers, srcs):
            if s[0] % spec.groups:
                raise _CfgError(f"groups={spec.groups} does not divide layer {i}'s {s[0]} channels")
        out = (sum(s[0] // spec.groups for s in srcs), *srcs[0][1:])
    elif isinstance(spec, UpsampleSpec):
        out = (c, h * spec.stride, w * spec.stride)
    elif isinstance(spec, MaxpoolSpec):
        oh = (h + spec.padding - spec.size) // spec.stride + 1
        ow = (w + spec.padding - spec.size) // spec.stride + 1
        out = (c, oh, ow)
    else:  # dropout, yolo: identity
        out = prev
    if min(out) < 1:
        raise _CfgError(f"output shape {out} is empty for input {prev}")
    return out


def parse_cfg_text(text: str, name: str = "<cfg>") -> DarknetConfig:
    """Parse darknet cfg text. `name` only appears in error messages."""
    sections = _read_sections(text, name)
    if not sections or sections[0].kind != "net":
        raise DarknetError(f"{name}: the first section must be [net]")
    net = sections[0]
    try:
        width = _positive(net, "width")
        height = _positive(net, "height")
        channels = _positive(net, "channels", 3)
    except _CfgError as e:
        raise DarknetError(f"{name}: section 0 [net] (line {net.line}): {e}") from None
    # Every other [net] key is a training hyper-parameter; kept raw for whoever wants them.
    net_options = {k: v for k, (v, _) in net.options.items()}

    in_shape: Shape = (channels, height, width)
    specs: list[LayerSpec] = []
    shapes: list[Shape] = []
    for index, sec in enumerate(sections[1:]):
        try:
            spec = _parse_layer(sec, index, shapes or [in_shape], specs)
            spec = replace(spec, out_shape=_out_shape(spec, shapes, in_shape))
        except _CfgError as e:
            raise DarknetError(
                f"{name}: layer {index} [{sec.kind}] (section {sec.number}, line {sec.line}): {e}"
            ) from None
        specs.append(spec)
        shapes.append(spec.out_shape)
    if not any(isinstance(s, YoloSpec) for s in specs):
        raise DarknetError(f"{name}: no [yolo] layer, so the network has no outputs")
    return DarknetConfig(name, width, height, channels, tuple(specs), net_options)


def _read_text(path: Path, what: str, limit: int) -> str:
    """A small text file's contents; a missing, unreadable, huge or non-UTF-8 file is one line."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise DarknetError(f"{path}: {size} bytes is not a {what}")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DarknetError(f"{path}: not UTF-8 text (a {what})") from None
    except OSError as e:
        raise DarknetError(f"{path}: cannot read ({e.strerror})") from None


def parse_cfg(path: str | Path) -> DarknetConfig:
    """Parse a darknet .cfg file (see `parse_cfg_text`)."""
    path = Path(path)
    return parse_cfg_text(_read_text(path, "darknet cfg", MAX_CFG_BYTES), name=path.name)


def check_class_names(cfg: DarknetConfig, count: int, what: str, where: str | Path) -> None:
    """``count`` class names (described by ``what``, e.g. "--names my.names") must be what every
    [yolo] layer of ``cfg`` (the file ``where``) predicts; else a DarknetError on one line."""
    counts = sorted({h.classes for h in cfg.yolo_layers})
    if counts and counts != [count]:
        raise DarknetError(f"{where}: its [yolo] layers have {'/'.join(map(str, counts))} "
                           f"classes, {what} has {count}")  # fmt: skip


def read_names(path: str | Path) -> list[str]:
    """Class names, one per line (blank lines skipped), as darknet's .names files hold them."""
    path = Path(path)
    names = [s.strip() for s in _read_text(path, "class-names file", MAX_NAMES_BYTES).splitlines()]
    names = [s for s in names if s]
    if not names:
        raise DarknetError(f"{path}: no class names in it")
    return names


def infer_shapes(cfg: DarknetConfig, height: int, width: int) -> list[Shape]:
    """Every layer's output (C, H, W) for an input of `height` x `width`; DarknetError if the
    network cannot take that size (e.g. a route joining maps of different sizes)."""
    in_shape: Shape = (cfg.channels, height, width)
    shapes: list[Shape] = []
    for spec in cfg.layers:
        try:
            shapes.append(_out_shape(spec, shapes, in_shape))
        except _CfgError as e:
            raise DarknetError(f"{cfg.name}: input {width}x{height}: {spec.where()}: {e}") from None
    return shapes
