"""Detection accuracy of float and quantized detectors: VOC-sample mAP (and TUD person AP).

Usage (the `make eval` recipe line is in docs/accuracy.md):

    .venv/bin/python -m bench.accuracy float --model yolo-fastest-voc --size 512
    .venv/bin/python -m bench.accuracy artifact models/artifacts/yolo-fastest-voc-w4a8-dw8.npz \
        --key w4a8_ptq_map_yolo_fastest_512_dw8

Each run merges its figure into bench/results/accuracy.json under `results[key]` with the
command, the run time and the evaluation settings; keys that were not measured stay null with
a reason in `missing`. Letterbox to a square input, conf 0.005, NMS 0.45, mAP all-points (VOC2010+)
and 11-point both stored; the headline figure is all-points. Artifacts are run by the torch
integer mode of quant.model, which tests/test_quant_export.py proves equal to sim.reference's
integers (the NumPy reference itself takes seconds per 512x512 frame); `--reference` uses it.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where bench/sw.py (another tool) would
# shadow the sw package: drop it. `python -m bench.accuracy` needs no such help.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import platform
import shlex
import time
from datetime import UTC, datetime
from typing import Any

import torch

from models.darknet import Darknet
from models.detect import (
    DEFAULT_CONF,
    DEFAULT_NMS,
    artifact_detect_fn,
    float_detect_fn,
    heads_of_darknet,
)
from models.evaluate import evaluate_mot, evaluate_voc
from models.paths import REPO_ROOT, data_dir

RESULTS = REPO_ROOT / "bench" / "results" / "accuracy.json"
SHORT = {"yolo-fastest-voc": "yolo_fastest", "yolo-fastest-xl-voc": "xl"}
# The keys the issue asks for; anything not measured stays null with a reason.
KEYS = [
    f"{kind}_map_{m}_512{dw}"
    for m in ("xl", "yolo_fastest")
    for kind in ("float", "w4a8_ptq", "w4a8_datafree", "w4a8_qat", "w4a4_qat")
    for dw in (("",) if kind == "float" else ("", "_dw8"))
]


def load_float(model: str) -> Darknet:
    d = data_dir() / "weights" / "darknet"
    return Darknet.from_files(d / f"{model}.cfg", d / f"{model}.weights")


def merge_result(key: str, entry: dict[str, Any], path: Path = RESULTS) -> None:
    """Put one measured figure into accuracy.json (other keys untouched)."""
    doc: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    doc.setdefault("results", {})
    doc.setdefault("missing", {})
    doc["results"][key] = entry
    doc["missing"].pop(key, None)
    for k in KEYS:
        if k not in doc["results"]:
            doc["missing"].setdefault(k, "not measured in this session")
    doc["settings"] = {
        "voc": "data/voc2012-sample (100 VOC2012 trainval images, probably in the training set)",
        "metric": "VOC mAP@0.5, all-points (headline) and 11-point",
        "conf_thresh": DEFAULT_CONF,
        "nms_thresh": DEFAULT_NMS,
        "preprocess": "letterbox, pad code 128, RGB codes / 255",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def record(path: str, key: str) -> None:
    """Copy the figure that quant.ptq/qat/datafree --eval measured on the exported integers
    (same detect_fn, same integer runner as `artifact`) into accuracy.json, with its command."""
    from sw import artifact as artmod

    art = artmod.load(path)
    m = art.metadata.get("measured")
    if not m:
        raise SystemExit(f"{path}: no measured mAP in its metadata (export with --eval)")
    entry = {
        "map": m["voc_sample_map_all"],
        "map_11pt": m["voc_sample_map_11pt"],
        "size": art.input_shape[1],
        "source": path,
        "images": 100,
        "command": art.metadata.get("command"),
        "method": art.metadata.get("method"),
        "seconds": m.get("eval_seconds"),
        "note": "measured by the producing command's --eval on the exported artifact",
    }
    print(json.dumps({key: entry}, indent=1))
    merge_result(key, entry)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    f = sub.add_parser("float", help="the float darknet model")
    f.add_argument("--model", default="yolo-fastest-voc", choices=sorted(SHORT))
    a = sub.add_parser("artifact", help="a quantized artifact (.npz)")
    a.add_argument("path")
    a.add_argument("--reference", action="store_true", help="run sim.reference (slow)")
    r = sub.add_parser("record", help="record the mAP an artifact's producing run measured")
    r.add_argument("path")
    r.add_argument("--key", required=True)
    for p in (f, a):
        p.add_argument("--size", type=int, default=512)
        p.add_argument("--key", default=None, help="accuracy.json key (default derived)")
        p.add_argument("--mot", action="store_true", help="also TUD-Stadtmitte person AP")
        p.add_argument("--limit", type=int, default=None, help="first N VOC images only")
        p.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if args.what == "record":
        record(args.path, args.key)
        return
    if args.what == "float":
        model = load_float(args.model)
        detect = float_detect_fn(model, heads_of_darknet(model.cfg), args.size)
        key = args.key or f"float_map_{SHORT[args.model]}_{args.size}"
        source = args.model
    else:
        from quant.model import integer_runner
        from sw import artifact as artmod

        art = artmod.load(args.path)
        if art.input_shape[1] != args.size:
            args.size = art.input_shape[1]
        runner = None if args.reference else integer_runner()
        detect = artifact_detect_fn(art, runner=runner)
        key = args.key or f"artifact_{art.name}"
        source = args.path
    voc = evaluate_voc(detect, data_dir() / "voc2012-sample", limit=args.limit, with_curves=False)
    entry: dict[str, Any] = {
        "map": voc["map_all"],
        "map_11pt": voc["map_11pt"],
        "size": args.size,
        "source": source,
        "images": args.limit or 100,
        "command": "bench/accuracy.py " + " ".join(shlex.quote(s) for s in sys.argv[1:]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
    }
    if args.mot:
        mot = evaluate_mot(detect, data_dir() / "video" / "TUD-Stadtmitte", with_curves=False)
        entry["tud_person_ap"] = mot["ap_all"]
    entry["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({key: entry}, indent=1))
    if not args.no_save:
        merge_result(key, entry)


if __name__ == "__main__":
    main()
