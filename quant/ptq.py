"""Post-training quantization: calibration + layer-wise reconstruction from unlabeled images.

    python -m quant.ptq --model yolo-fastest-voc --bits 4 --act-bits 8 --dw-format int8 \
        --size 512 --out models/artifacts/yolo-fastest-voc-w4a8-dw8.npz --eval

Steps: BN folding (QuantDetector), optional cross-layer equalization, MSE-optimal per-channel
weight scales, MSE-optimal activation clip ranges on letterboxed calibration images, then the
sequential reconstruction of quant.reconstruct (resumable: the checkpoint is written after every
conv), export to the artifact, and optionally the VOC-sample mAP of the exported integers.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from quant.cli import build_detector, calibrate_and_reconstruct, common_parser, finish, parsed
from quant.data import CALIB_SET, letterbox_batch, unlabeled_images


def main(argv: list[str] | None = None) -> None:
    ap = common_parser(__doc__ or "")
    ap.add_argument("--calib", type=int, default=64, help="calibration images")
    ap.add_argument("--calib-size", type=int, default=320, help="letterbox size for calibration")
    ap.add_argument("--iters", type=int, default=200, help="reconstruction steps per conv")
    ap.add_argument("--batch", type=int, default=8)
    args = parsed(ap.parse_args(argv), argv, "quant.ptq")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    _, qdet = build_detector(args, equalize=args.equalize)
    paths = unlabeled_images()
    order = np.random.default_rng(args.seed).permutation(len(paths))
    calib = [paths[i] for i in order[: args.calib]]
    x = letterbox_batch(calib, args.calib_size)
    calibrate_and_reconstruct(args, qdet, x)
    meta = {
        "calibration": f"{CALIB_SET}: {args.calib} images (seed {args.seed}), letterbox "
        f"{args.calib_size}",
        "reconstruction": f"{args.iters} Adam steps per conv, batch {args.batch}",
        "equalization": bool(args.equalize),
    }
    finish(args, qdet, "ptq: calibration + layer-wise reconstruction", meta, t0)


if __name__ == "__main__":
    main()
