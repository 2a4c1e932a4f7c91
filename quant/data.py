"""Images for calibration and training: the unlabeled ImageNet sample only (never VOC/TUD).

Two views of an image: the deployment letterbox (sw.preprocess, pad code 128) for calibration
and export checks, and random square crops of a randomly rescaled image for fine-tuning.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from models.paths import data_dir
from sw.preprocess import letterbox

CALIB_SET = "data/unlabeled/imagenet-1k-sample"


def unlabeled_images(root: Path | None = None) -> list[Path]:
    root = root or data_dir() / "unlabeled" / "imagenet-1k-sample"
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise FileNotFoundError(f"no images under {root}")
    return files


def read_bgr(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read {path}")
    return img


def letterbox_codes(path: Path, size: int) -> np.ndarray:
    """(3, size, size) uint8 input codes, exactly what the runtime feeds the network."""
    codes, _ = letterbox(read_bgr(path), size, size)
    return np.ascontiguousarray(codes.transpose(2, 0, 1))


def letterbox_batch(paths: list[Path], size: int) -> Tensor:
    """(N, 3, size, size) float RGB in [0, 1] (codes / 255)."""
    arr = np.stack([letterbox_codes(p, size) for p in paths]).astype(np.float32) / 255.0
    return torch.from_numpy(arr)


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size RGB crop of ``img`` rescaled so its short side is size * U(1, 1.6),
    flipped half of the time: (3, size, size) uint8."""
    h, w = img.shape[:2]
    short = size * rng.uniform(1.0, 1.6)
    f = short / min(h, w)
    nh, nw = max(size, round(h * f)), max(size, round(w * f))
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    y = int(rng.integers(0, nh - size + 1))
    x = int(rng.integers(0, nw - size + 1))
    crop = img[y : y + size, x : x + size, ::-1]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop.transpose(2, 0, 1))


class CropSampler:
    """Batches of random crops from a fixed list of images (decoded once, kept in memory)."""

    def __init__(self, paths: list[Path], size: int, seed: int = 0, max_side: int = 500) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.images = []
        for p in paths:
            img = read_bgr(p)
            f = max_side / max(img.shape[:2])
            if f < 1:
                img = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)),
                                 interpolation=cv2.INTER_AREA)  # fmt: skip
            self.images.append(img)

    def batch(self, n: int) -> Tensor:
        idx = self.rng.integers(0, len(self.images), n)
        arr = np.stack([random_crop(self.images[i], self.size, self.rng) for i in idx])
        return torch.from_numpy(arr.astype(np.float32) / 255.0)
