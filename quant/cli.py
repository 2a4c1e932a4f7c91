"""Options and steps shared by quant.ptq, quant.datafree and quant.qat."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from quant import zoo
from quant.calibrate import calibrate_activations
from quant.checkpoint import load_checkpoint, save_checkpoint
from quant.export import to_artifact
from quant.model import QuantDetector
from quant.reconstruct import reconstruct
from quant.zoo import MODELS, ModelSource
from sw import artifact as artmod


def common_parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.set_defaults(argv=None, module="quant")
    add_model_args(ap, "yolo-fastest-voc")
    ap.add_argument("--bits", type=int, default=4, choices=(3, 4),
                    help="pow2 bits of the dense convs (the dense engine: 3-4)")  # fmt: skip
    ap.add_argument("--act-bits", type=int, default=8, choices=(4, 8))
    ap.add_argument("--dw-format", default="int8", choices=("pow2", "int8"),
                    help="depthwise weights: pow2 (--bits) or int8")  # fmt: skip
    ap.add_argument("--size", type=int, default=512, help="exported input size (square)")
    ap.add_argument("--out", type=Path, required=True, help="artifact path (.npz)")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="resumable state (default: <out>.ckpt.pt)")  # fmt: skip
    ap.add_argument("--equalize", action="store_true", help="cross-layer range equalization")
    ap.add_argument("--eval", action="store_true", help="measure VOC-sample mAP of the result")
    ap.add_argument("--plan", type=Path, default=None,
                    help="mixed-precision plan (quant.mixed): per-layer weight formats and "
                    "activation bits; layers it does not list keep the options above")  # fmt: skip
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def add_model_args(ap: argparse.ArgumentParser, default: str) -> None:
    """``--model NAME`` (a built-in detector) or ``--cfg FILE --weights FILE [--names FILE]``
    (any darknet detector); `model_source` turns them into a ``quant.zoo.ModelSource``."""
    ap.add_argument("--model", default=None, choices=MODELS,
                    help=f"a built-in detector (default {default}) or --cfg")  # fmt: skip
    ap.add_argument("--cfg", type=Path, default=None, help="a darknet .cfg of your own detector")
    ap.add_argument("--weights", type=Path, default=None, help="its darknet .weights")
    ap.add_argument("--names", type=Path, default=None,
                    help="its class names, one per line (default: the 20 VOC names)")  # fmt: skip
    ap.set_defaults(default_model=default)


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def model_source(args: argparse.Namespace) -> ModelSource:
    """The model the options name (also sets ``args.model`` to its name, ``args.source`` to it);
    a missing file, a --model beside --cfg or a names file that does not fit: one line, exit 2."""
    from models.darknet import DarknetError

    if args.model is not None and (args.cfg is not None or args.weights is not None):
        fail("give either --model or --cfg/--weights, not both")
    try:
        src = zoo.source(args.model or args.default_model, args.cfg, args.weights, args.names)
        args.class_names = zoo.class_names(src)
    except (zoo.ModelSourceError, DarknetError) as e:
        fail(str(e))
    args.model, args.source = src.name, src
    return src


def parsed(
    args: argparse.Namespace, argv: list[str] | None, module: str, state_files: Sequence[Path] = ()
) -> argparse.Namespace:
    """The steps every command takes right after parsing: record the command line, resolve the
    model (one line, exit 2 if it cannot be), check --eval fits its classes, refuse an --out that
    is an input (or one of ``state_files``, the files only this command keeps state in)."""
    args.argv, args.module = argv, module
    model_source(args)
    check_eval(args)
    refuse_overwriting_inputs(args, state_files)
    return args


def refuse_overwriting_inputs(args: argparse.Namespace, extra: Sequence[Path] = ()) -> None:
    """--out must not be a file the command reads or keeps its state in (the darknet files, the
    names, the plan, --init, a checkpoint): one line, exit 2, before anything is computed."""
    src = source_of(args)
    ck = checkpoint_path(args)
    inputs = [src.cfg, src.weights, *([src.names] if src.names else []), ck,
              Path(str(ck) + ".ft.pt"), *extra]  # fmt: skip
    for opt in ("plan", "init"):
        if getattr(args, opt, None) is not None:
            inputs.append(getattr(args, opt))
    out = Path(os.path.abspath(args.out))
    for p in inputs:
        same = out == Path(os.path.abspath(p))
        if not same and out.exists() and p.exists():
            same = os.path.samefile(out, p)
        if same:
            fail(f"--out {args.out} is an input of this command ({p}); "
                 "write the artifact to another path")  # fmt: skip


def build_detector(args: argparse.Namespace, **kw: Any) -> Any:
    """quant.zoo.build with the common options (and --plan); a bad plan, a cfg or weights file
    that cannot be imported, or a layer no op of the contract runs: one line, exit 2."""
    from models.darknet import DarknetError
    from quant.plan import PlanError

    src = getattr(args, "source", None) or model_source(args)
    try:
        return zoo.build(src, args.bits, args.dw_format, args.act_bits,
                         plan=getattr(args, "plan", None), **kw)  # fmt: skip
    except (PlanError, DarknetError, zoo.ModelSourceError) as e:
        fail(str(e))


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that reproduces this run (for the artifact's metadata)."""
    args = sys.argv[1:] if argv is None else argv
    return f"python -m {module} " + " ".join(shlex.quote(a) for a in args)


def checkpoint_path(args: argparse.Namespace) -> Path:
    return args.checkpoint or Path(str(args.out) + ".ckpt.pt")


def calibrate_and_reconstruct(
    args: argparse.Namespace, qdet: QuantDetector, x: torch.Tensor
) -> dict[str, Any]:
    """The post-training core of quant.ptq and quant.datafree on images ``x``: calibrate the
    activation ranges, then reconstruct layer by layer, checkpointing after each conv so that
    rerunning the same command resumes where it stopped."""
    ck_path = checkpoint_path(args)
    ck = load_checkpoint(ck_path, qdet)
    if ck is None:
        calibrate_activations(qdet, list(x.split(8)))
        state = {"done": 0, "log": []}
        save_checkpoint(ck_path, qdet, {"state": state})
    else:
        state = ck["state"]
        print(f"resuming from {ck_path}: {state['done']} convs done")
    return reconstruct(qdet, x, args.iters, args.batch, state,
                       save=lambda s: save_checkpoint(ck_path, qdet, {"state": s}),
                       seed=args.seed)  # fmt: skip


def source_of(args: argparse.Namespace) -> ModelSource:
    return getattr(args, "source", None) or model_source(args)


def class_names_of(args: argparse.Namespace) -> list[str]:
    source_of(args)
    return args.class_names


def check_eval(args: argparse.Namespace, scores_voc: bool | None = None) -> None:
    """--eval (or ``scores_voc``: another option that does) scores the VOC sample: only a detector
    of the 20 VOC classes can be scored on it."""
    if scores_voc is None:
        scores_voc = getattr(args, "eval", False)
    if scores_voc and class_names_of(args) != zoo.voc_names():
        fail(f"--eval scores data/voc2012-sample, which needs the 20 VOC classes in their order; "
             f"{args.names} lists {len(args.class_names)} others (drop --eval)")  # fmt: skip


def pr_curve_path(out: Path) -> Path:
    """Where --eval draws the PR curves of an artifact: beside it, ``<out>.voc.pr.png``."""
    return Path(str(out) + ".voc.pr.png")


def evaluate_artifact(
    art: Any, plot_path: Path | None = None, limit: int | None = None
) -> dict[str, float]:
    """VOC-sample mAP of an artifact (its first ``limit`` images), run by the exact torch
    integer mode; with ``plot_path`` its per-class precision-recall curves are drawn there."""
    from models.detect import artifact_detect_fn
    from models.evaluate import evaluate_voc
    from models.paths import data_dir
    from quant.integer import integer_runner

    detect = artifact_detect_fn(art, runner=integer_runner())
    r = evaluate_voc(detect, data_dir() / "voc2012-sample", limit=limit, plot_path=plot_path,
                     with_curves=plot_path is not None)  # fmt: skip
    return {"map": r["map_all"], "map_11pt": r["map_11pt"]}


def finish(
    args: argparse.Namespace, qdet: QuantDetector, method: str, meta: dict[str, Any],
    t_start: float,
) -> None:  # fmt: skip
    """Export (and optionally evaluate, then re-export with the figure in the metadata)."""
    name = args.out.stem
    metadata = {
        "source_model": source_of(args).describe(),
        "method": method,
        "weights": f"dense pow2 {args.bits}-bit per-channel scale; depthwise "
        + (f"pow2 {args.bits}-bit" if args.dw_format == "pow2" else "int8")
        + "; first and head convs pow2 too",
        "activations": f"{args.act_bits}-bit asymmetric per tensor"
        + ("" if args.act_bits == 8 else "; head outputs 8-bit"),
        "command": command_line(args.module, args.argv),
        **meta,
    }
    if getattr(args, "plan", None) is not None:
        metadata["plan"] = str(args.plan)
        metadata["weights"] = "mixed precision per quant.mixed plan " + str(args.plan)
        metadata["activations"] = "per plan, 8-bit or 4-bit asymmetric per tensor; heads 8-bit"
    metadata = {
        **metadata,
    }
    kw = dict(name=name, classes=class_names_of(args), metadata=metadata,
              description=f"{args.model} {method}")  # fmt: skip
    art = to_artifact(qdet, args.size, **kw)  # validated, not yet written
    if args.eval:
        t0 = time.perf_counter()
        m = evaluate_artifact(art, pr_curve_path(args.out))
        metadata["measured"] = {
            "voc_sample_map_all": m["map"], "voc_sample_map_11pt": m["map_11pt"],
            "dataset": "data/voc2012-sample, 100 images (probably in the training set)",
            "input": f"{args.size}x{args.size} letterbox, conf 0.005, NMS 0.45",
            "eval_seconds": round(time.perf_counter() - t0, 1),
            "pr_curves": pr_curve_path(args.out).name,
        }  # fmt: skip
    metadata["total_seconds"] = round(time.perf_counter() - t_start, 1)
    art.metadata = metadata
    artmod.save(art, args.out)
    print(json.dumps({"out": str(args.out), **metadata}, indent=1))
