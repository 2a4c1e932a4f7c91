"""Column-strip tiling (docs/arithmetic.md section 10), implemented literally.

Each strip of output columns is computed from the input columns the contract lists for it, with
columns beyond the map borders filled as padding, and the strips are placed side by side. The test
suite checks that the result equals the untiled computation for any strip width.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

# Value of a padding column: an integer (conv: z_in) or MAXPOOL_PAD (ignored by maxpool).
MAXPOOL_PAD = -1


def strips(width_out: int, strip_width: int) -> Iterator[tuple[int, int]]:
    """Output column ranges ``[j0, j1)`` of the strips of a map ``width_out`` columns wide."""
    if strip_width < 1:
        raise ValueError(f"strip width {strip_width} must be at least 1")
    for j0 in range(0, width_out, strip_width):
        yield j0, min(j0 + strip_width, width_out)


def window_columns(kernel: int, stride: int, pad: int, j0: int, j1: int) -> tuple[int, int]:
    """First and last (inclusive) input column that output columns ``[j0, j1)`` read."""
    return j0 * stride - pad, (j1 - 1) * stride - pad + kernel - 1


def cut_window(q: np.ndarray, first: int, last: int, pad_value: int) -> np.ndarray:
    """Input columns ``first..last`` of ``q``; columns outside the map hold ``pad_value``."""
    c, h, w = q.shape
    out = np.full((c, h, last - first + 1), pad_value, dtype=np.int64)
    lo, hi = max(first, 0), min(last, w - 1)
    if lo <= hi:
        out[:, :, lo - first : hi - first + 1] = q[:, :, lo : hi + 1]
    return out


def run_tiled_window_op(
    q: np.ndarray,
    width_out: int,
    strip_width: int,
    kernel: int,
    stride: int,
    pad_left: int,
    pad_value: int,
    compute: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Run a windowed op (conv or maxpool) strip by strip.

    ``compute(window)`` receives the strip's input window, border columns already padded, and
    returns the strip's output columns (it pads rows only).
    """
    parts = []
    for j0, j1 in strips(width_out, strip_width):
        first, last = window_columns(kernel, stride, pad_left, j0, j1)
        out = compute(cut_window(q, first, last, pad_value))
        assert out.shape[-1] == j1 - j0, "a strip produced the wrong number of columns"
        parts.append(out)
    return np.concatenate(parts, axis=-1)


def upsample2x_tiled(q: np.ndarray, strip_width: int, upsample: Callable) -> np.ndarray:
    """Nearest 2x upsampling strip by strip: output columns [j0, j1) read j0//2 .. (j1-1)//2."""
    parts = []
    for j0, j1 in strips(2 * q.shape[2], strip_width):
        first, last = j0 // 2, (j1 - 1) // 2
        up = upsample(q[:, :, first : last + 1])
        off = j0 - 2 * first
        parts.append(up[:, :, off : off + (j1 - j0)])
    return np.concatenate(parts, axis=-1)
