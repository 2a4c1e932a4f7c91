"""Mixed-precision plans: a JSON file of per-layer weight formats and activation bits.

    {"format": "pow2det.plan", "version": 1, "model": "yolo-fastest-xl-voc", "size": 512,
     "budget": {...}, "layers": {"conv0": {"weights": "pow2", "bits": 4, "act_bits": 8},
     "add7": {"act_bits": 4}, ...}, "predicted": {"fps_200mhz": ..., ...}}

``quant.mixed`` writes one; a user may edit it. :func:`load` reads and checks it against the
model's layers and the accelerator's formats (contract: ``DENSE_WEIGHTS`` for dense convs,
``DEPTHWISE_WEIGHTS`` for depthwise ones) and raises :class:`PlanError` with one line naming the
layer and the field. :func:`detector_kwargs` turns it into what QuantDetector takes:
``LayerFormat(dense, depthwise, layers={...})`` and ``act_bits_of={...}``. Layers a plan does not
list keep the command's formats (--bits, --dw-format, --act-bits); the head outputs stay 8-bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.darknet import ConvSpec, DarknetConfig, ShortcutSpec
from sw.contract.descriptor import DENSE_WEIGHTS, DEPTHWISE_WEIGHTS

FORMAT = "pow2det.plan"
VERSION = 1
ACT_BITS = (4, 8)
ALLOWED = {"dense": tuple(DENSE_WEIGHTS), "depthwise": tuple(DEPTHWISE_WEIGHTS)}
LAYER_FIELDS = {"weights", "bits", "act_bits"}


class PlanError(ValueError):
    """A plan that does not fit the model or the accelerator (one line)."""


def layer_kinds(cfg: DarknetConfig) -> dict[str, str]:
    """QuantDetector node names -> "dense", "depthwise" or "add" (the nodes a plan may set)."""
    out: dict[str, str] = {}
    for spec in cfg.layers:
        if isinstance(spec, ConvSpec):
            out[f"conv{spec.index}"] = "depthwise" if spec.groups != 1 else "dense"
        elif isinstance(spec, ShortcutSpec):
            out[f"add{spec.index}"] = "add"
    return out


def _allowed(kind: str) -> str:
    return ", ".join(f"{f} {b}" for f, b in ALLOWED[kind])


def validate(plan: Any, kinds: dict[str, str], model: str | None = None, where: str = "plan"):
    """Check ``plan`` (parsed JSON) against the model's layers; returns it; PlanError else."""

    def fail(msg: str) -> None:
        raise PlanError(f"{where}: {msg}")

    if not isinstance(plan, dict):
        fail("not a JSON object")
    if plan.get("format") != FORMAT:
        fail(f"format: {plan.get('format')!r}, expected {FORMAT!r}")
    if plan.get("version") != VERSION:
        fail(f"version: {plan.get('version')!r}, this tool reads version {VERSION}")
    if model is not None and plan.get("model") not in (None, model):
        fail(f"model: the plan is for {plan.get('model')!r}, not {model!r}")
    layers = plan.get("layers")
    if not isinstance(layers, dict):
        fail("layers: missing or not an object")
    for name, spec in layers.items():
        if name not in kinds:
            fail(f"layers.{name}: no such layer in {model or 'the model'} (convs and adds are "
                 f"named conv<i> / add<i> after their darknet index)")  # fmt: skip
        kind = kinds[name]
        if not isinstance(spec, dict):
            fail(f"layers.{name}: not an object")
        extra = set(spec) - LAYER_FIELDS
        if extra:
            fail(f"layers.{name}.{sorted(extra)[0]}: unknown field (fields: weights, bits, "
                 f"act_bits)")  # fmt: skip
        if "act_bits" in spec and spec["act_bits"] not in ACT_BITS:
            fail(f"layers.{name}.act_bits: {spec['act_bits']!r}, must be 4 or 8")
        has_w = "weights" in spec or "bits" in spec
        if kind == "add":
            if has_w:
                fail(f"layers.{name}: an add has no weights (only act_bits)")
            continue
        if not has_w:
            continue
        if "weights" not in spec or "bits" not in spec:
            fail(f"layers.{name}: weights and bits go together")
        fmt, bits = spec["weights"], spec["bits"]
        if not isinstance(fmt, str) or fmt not in {f for f, _ in ALLOWED[kind]}:
            fail(f"layers.{name}.weights: {fmt!r} is not allowed for a {kind} conv "
                 f"(allowed: {_allowed(kind)})")  # fmt: skip
        if not isinstance(bits, int) or isinstance(bits, bool) or (fmt, bits) not in ALLOWED[kind]:
            fail(f"layers.{name}.bits: {bits!r} bits of {fmt} is not allowed for a {kind} conv "
                 f"(allowed: {_allowed(kind)})")  # fmt: skip
    return plan


def load(path: Path, kinds: dict[str, str], model: str | None = None) -> dict[str, Any]:
    """Read and validate a plan file (PlanError with one line on any problem)."""
    try:
        plan = json.loads(Path(path).read_text())
    except OSError as e:
        raise PlanError(f"{path}: cannot read: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}: not JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    return validate(plan, kinds, model, str(path))


def detector_kwargs(plan: dict[str, Any]) -> tuple[dict[str, tuple[str, int]], dict[str, int]]:
    """(per-conv weight formats for LayerFormat(layers=...), act_bits_of for QuantDetector)."""
    formats, acts = {}, {}
    for name, spec in plan["layers"].items():
        if "weights" in spec:
            formats[name] = (spec["weights"], int(spec["bits"]))
        if "act_bits" in spec:
            acts[name] = int(spec["act_bits"])
    return formats, acts


def write(path: Path, plan: dict[str, Any]) -> None:
    """One layer per line, so that a plan is easy to read and edit."""
    head = {k: v for k, v in plan.items() if k not in ("layers", "predicted")}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f" {json.dumps(k)}: {json.dumps(v)},")
    lines.append(' "layers": {')
    items = list(plan["layers"].items())
    for i, (k, v) in enumerate(items):
        lines.append(f"  {json.dumps(k)}: {json.dumps(v)}{',' if i + 1 < len(items) else ''}")
    lines.append(" }" + ("," if "predicted" in plan else ""))
    if "predicted" in plan:
        lines.append(f' "predicted": {json.dumps(plan["predicted"])}')
    lines.append("}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
