"""The darknet .weights file, cut into the floats of each convolutional layer.

The file is a header (major, minor, revision int32; `seen` int64 when major * 10 + minor >= 2,
else int32) then, per convolutional layer in order, float32 [BN beta, gamma, running mean,
running var] or [conv bias], then the conv weights in (filters, channels / groups, size, size)
order - PyTorch's layout. The file must hold exactly the floats the cfg needs.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sw.darknet.cfg import ConvSpec, DarknetError


@dataclass(frozen=True)
class WeightsHeader:
    major: int
    minor: int
    revision: int
    seen: int  # images seen in training


def read_weights_file(path: str | Path) -> tuple[WeightsHeader, np.ndarray]:
    """Header and the float32 payload of a darknet .weights file."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 12:
        raise DarknetError(f"{path.name}: {len(data)} bytes is too short for a weights header")
    major, minor, revision = struct.unpack_from("<3i", data, 0)
    # darknet writes `seen` as size_t (8 bytes) from format 0.2 on, as int before
    seen_fmt = "<q" if major * 10 + minor >= 2 else "<i"
    offset = 12 + struct.calcsize(seen_fmt)
    if len(data) < offset:
        raise DarknetError(f"{path.name}: {len(data)} bytes is too short for a weights header")
    (seen,) = struct.unpack_from(seen_fmt, data, 12)
    payload = len(data) - offset
    if payload % 4:
        raise DarknetError(
            f"{path.name}: {payload} payload bytes after the header is not a whole number of floats"
        )
    floats = np.frombuffer(data, dtype="<f4", offset=offset).astype(np.float32)
    return WeightsHeader(major, minor, revision, seen), floats


@dataclass(frozen=True)
class ConvWeights:
    """One convolutional layer's floats from the file."""

    spec: ConvSpec
    weight: np.ndarray  # (filters, in_channels / groups, size, size)
    bias: np.ndarray | None  # without batch norm
    bn: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None  # beta, gamma, mean, var


def read_weights(
    path: str | Path, convs: Sequence[ConvSpec]
) -> tuple[WeightsHeader, list[ConvWeights]]:
    """Header and the floats of each of ``convs`` (a cfg's convolutional layers, in order); a
    DarknetError on one line when the file holds fewer or more floats than they need."""
    path = Path(path)
    header, floats = read_weights_file(path)
    pos = 0
    last = None
    out: list[ConvWeights] = []
    for spec in convs:
        n = spec.filters
        shape = (n, spec.in_channels // spec.groups, spec.size, spec.size)
        w_count = int(np.prod(shape))
        need = (4 * n if spec.batch_normalize else n) + w_count
        if pos + need > floats.size:
            raise DarknetError(
                f"{path.name}: {spec.where()} needs {need} floats "
                f"({'4 x ' if spec.batch_normalize else ''}{n} "
                f"{'BN' if spec.batch_normalize else 'bias'} + {w_count} weights) "
                f"but only {floats.size - pos} are left (of {floats.size} after the "
                "header); weights and cfg do not match"
            )

        def take(count: int) -> np.ndarray:
            nonlocal pos
            t = floats[pos : pos + count].copy()
            pos += count
            return t

        if spec.batch_normalize:
            bn = (take(n), take(n), take(n), take(n))  # darknet "biases", "scales", mean, var
            out.append(ConvWeights(spec, take(w_count).reshape(shape), None, bn))
        else:
            bias = take(n)
            out.append(ConvWeights(spec, take(w_count).reshape(shape), bias, None))
        last = spec
    if pos != floats.size:
        after = f"after {last.where()}" if last else "with no convolutional layer"
        raise DarknetError(
            f"{path.name}: {floats.size - pos} floats left over {after} "
            f"(cfg needs {pos}, file has {floats.size}); weights and cfg do not match"
        )
    return header, out
