"""Top-1 of the CIFAR-10 ResNets, float and every committed classifier artifact ->
bench/results/classifiers.json (``make bench-classifiers``).

    python bench/classifiers.py [--models resnet20 resnet56] [--threads 1] [--stored]

Each figure is measured here on the report split (models.classifiers.resnet_cifar.SPLIT_TEXT:
the 5,000 test images with index_in_class >= 500); the artifacts run in the torch integer mode
(quant.integer.ArtifactNet, bit-exact with sim.reference). An entry holds the top-1, the command
that made the artifact (from its metadata) and the split; a key whose artifact is not
committed is null with the reason. About 1 minute per ResNet-20 artifact on one thread, 3 per
ResNet-56 one. ``--stored`` takes an artifact's figure from its sealed metadata
(``report_top1``, measured by quant.classify at export with the same function on the same
split) instead of measuring it again, and says so in the entry.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models.classifiers.resnet_cifar import (  # noqa: E402
    SPLIT_TEXT,
    CheckpointError,
    load_cifar,
    load_resnet,
)
from quant.classify import artifact_top1, float_top1  # noqa: E402
from sw import artifact as artmod  # noqa: E402

OUT = REPO / "bench" / "results" / "classifiers.json"
ARTIFACTS = REPO / "models" / "artifacts"
# key stem -> artifact tag (models/artifacts/<model>-cifar10-<tag>.npz)
KINDS = {
    "w4a8_ptq": "w4a8-ptq",
    "w4a8_qat": "w4a8-qat",
    "w4a8_datafree": "w4a8-datafree",
    "binary_qat": "binary-qat",
}


def measure(model: str, stored: bool = False) -> dict[str, Any]:
    x, y = load_cifar("report")
    out: dict[str, Any] = {}
    try:
        net = load_resnet(model)
        out[f"float_top1_{model}"] = {
            "top1": float_top1(net, x, y),
            "command": f"python -m quant.classify float --model {model}",
            "split": SPLIT_TEXT,
        }
    except CheckpointError as e:
        out[f"float_top1_{model}"] = {"top1": None, "reason": str(e)}
    for key, tag in KINDS.items():
        path = ARTIFACTS / f"{model}-cifar10-{tag}.npz"
        entry: dict[str, Any]
        if not path.is_file():
            entry = {"top1": None, "reason": f"not measured: {path.name} is not committed "
                     "(no run within this session's time budget)"}  # fmt: skip
        else:
            art = artmod.load(path)
            use_stored = stored and isinstance(art.metadata.get("report_top1"), float)
            entry = {
                "top1": art.metadata["report_top1"] if use_stored else artifact_top1(art, x, y),
                "measured": "at export by quant.classify (artifact metadata report_top1)"
                if use_stored
                else "by bench/classifiers.py",
                "command": art.metadata.get("command", ""),
                "split": art.metadata.get("split", SPLIT_TEXT),
                "artifact": str(path.relative_to(REPO)),
                "evaluated_with": "torch integer mode (quant.integer.ArtifactNet)",
            }
        out[f"{key}_top1_{model}"] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stored", action="store_true", help="artifacts' stored figures")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = json.loads(OUT.read_text()) if OUT.is_file() else {}
    for model in args.models:
        result.update(measure(model, args.stored))
        tmp = OUT.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, OUT)
    print(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
