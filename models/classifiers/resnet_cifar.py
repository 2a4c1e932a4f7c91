"""The CIFAR-10 ResNets of He et al. (ResNet-20 / ResNet-56) as akamaster/pytorch_resnet_cifar10
trains them, imported from its checkpoints, plus the CIFAR-10 test set and its report split.

Architecture: conv3x3(3 -> 16) + BN + ReLU, three stages of ``n`` basic blocks (16, 32, 64
channels; the first block of stages 2 and 3 has stride 2), global average pool, linear 64 -> 10.
A basic block is ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; the shortcut is the
identity or, where the shape changes, *option A*: ``x[:, :, ::2, ::2]`` with ``planes // 4``
zero channels padded on each side (parameter-free). n = 3 gives ResNet-20, n = 9 ResNet-56.

The checkpoints are legacy torch files (a dict with ``state_dict``, keys prefixed ``module.``);
they are read with ``torch.load(weights_only=True)`` only, so that no code in them can run, and
any other file fails with one line (:class:`CheckpointError`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.paths import data_dir

DEPTHS = {"resnet20": 3, "resnet56": 9}  # blocks per stage
CHECKPOINTS = {"resnet20": "resnet20-12fca82f.th", "resnet56": "resnet56-4bfd9763.th"}
MEAN = (0.485, 0.456, 0.406)  # the checkpoints' test pre-processing (data/README.md)
STD = (0.229, 0.224, 0.225)
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
WIDTHS = (16, 32, 64)
BN_EPS = 1e-5  # torch's BatchNorm2d default, which the checkpoints were trained with


class CheckpointError(ValueError):
    """A checkpoint that cannot be imported; the message is one line naming file and problem."""


class BasicBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.option_a = stride != 1 or cin != planes
        self.pad = planes // 4

    def shortcut(self, x: Tensor) -> Tensor:
        if not self.option_a:
            return x
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """akamaster's ResNet for CIFAR; state_dict keys equal the checkpoint's without ``module.``."""

    def __init__(self, blocks: int, classes: int = 10) -> None:
        super().__init__()
        self.blocks = blocks
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for s, planes in enumerate(WIDTHS):
            layer = []
            for b in range(blocks):
                stride = 2 if s > 0 and b == 0 else 1
                layer.append(BasicBlock(cin, planes, stride))
                cin = planes
            setattr(self, f"layer{s + 1}", nn.Sequential(*layer))
        self.linear = nn.Linear(64, classes)

    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3]

    def forward(self, x: Tensor) -> Tensor:
        """Normalised images (N, 3, 32, 32) -> logits (N, classes)."""
        out = F.relu(self.bn1(self.conv1(x)))
        for stage in self.stages():
            out = stage(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def checkpoint_path(model: str) -> Path:
    return data_dir() / "weights" / "cifar10-resnet" / CHECKPOINTS[model]


def load_resnet(model: str, path: str | Path | None = None) -> ResNetCifar:
    """``resnet20`` or ``resnet56`` with the weights of ``path`` (default: the data folder's),
    in eval mode. Raises :class:`CheckpointError` (one line) for anything but a checkpoint of
    exactly this architecture, read with ``weights_only=True``."""
    if model not in DEPTHS:
        raise CheckpointError(f"unknown classifier {model!r} (known: {', '.join(DEPTHS)})")
    path = Path(path) if path is not None else checkpoint_path(model)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, zip/EOF errors, a refused global, ...
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise CheckpointError(
            f"{path}: not a checkpoint that loads with weights_only "
            f"({type(exc).__name__}{': ' + first if first else ''})"
        ) from None
    sd = ck.get("state_dict", ck) if isinstance(ck, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: holds no state_dict of tensors")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    net = ResNetCifar(DEPTHS[model])
    want = net.state_dict()
    missing = sorted(set(want) - set(sd) - {k for k in want if k.endswith("num_batches_tracked")})
    unknown = sorted(set(sd) - set(want))
    if missing or unknown:
        what = f"missing {missing[0]!r}" if missing else f"unknown key {unknown[0]!r}"
        raise CheckpointError(f"{path}: not a {model} checkpoint ({what})")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(want[k].shape):
            raise CheckpointError(
                f"{path}: {k} has shape {list(v.shape)}, {model} needs {list(want[k].shape)}"
            )
    net.load_state_dict(sd, strict=False)
    return net.eval()


# ----------------------------------------------------------------------------------------------
# Data: the 10,000 CIFAR-10 test images, split by index_in_class


def cifar_path() -> Path:
    return data_dir() / "cifar10-test" / "cifar10-test-jpeg.npz"


SPLIT_AT = 500  # index_in_class < 500: the 5,000 calibration/training images; the rest: report
SPLIT_TEXT = (
    "CIFAR-10 test set (JPEG copy): calibration/training on index_in_class < 500 (5,000 "
    "images, 500 per class, labels unused), top-1 reported on index_in_class >= 500 (5,000)"
)


def load_cifar(
    split: str = "report", path: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 32, 32, 3) RGB, labels int64) of ``split``: ``train`` (index_in_class
    < 500), ``report`` (the other 5,000) or ``all``."""
    d = np.load(path or cifar_path(), allow_pickle=False)
    idx = d["index_in_class"]
    keep = {"train": idx < SPLIT_AT, "report": idx >= SPLIT_AT, "all": idx >= 0}[split]
    return d["images"][keep], d["labels"][keep].astype(np.int64)


def normalize(images: np.ndarray | Tensor) -> Tensor:
    """uint8 (N, H, W, 3) RGB -> float (N, 3, H, W): [0, 1], then the checkpoints' mean/std."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def top1(fn: object, images: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
    """Top-1 accuracy in percent of ``fn`` (uint8 images (N, 32, 32, 3) -> logits (N, 10))."""
    right = 0
    for i in range(0, len(images), batch):
        logits = fn(images[i : i + batch])  # type: ignore[operator]
        right += int((torch.as_tensor(logits).argmax(1).numpy() == labels[i : i + batch]).sum())
    return 100.0 * right / len(images)
