"""Pre-processing: a camera frame (BGR, any size) -> the network's input codes.

Darknet's letterbox (docs/arithmetic.md section 2): resize with the aspect ratio kept so the image
fits the network input, centre it, fill the rest with code 128 (real 0.50196, darknet's 0.5 is
not representable), channel 0 red. The codes are the pixel bytes themselves (``b = 8, z = 0,
s = 1/255``), so no arithmetic is done on them; the result is (H, W, 3) RGB, the layout the
plan's :meth:`~sw.plan.Plan.fill_input` writes straight into the input tensor's lanes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_CODE = 128


@dataclass(frozen=True)
class Letterbox:
    """Where the frame went inside the network input: scaled by ``scale``, offset by
    ``(dx, dy)`` input pixels."""

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    new_w: int
    new_h: int
    dx: int
    dy: int

    @property
    def scale_x(self) -> float:
        return self.new_w / self.src_w

    @property
    def scale_y(self) -> float:
        return self.new_h / self.src_h

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) x1, y1, x2, y2 in network-input pixels -> frame pixels, clipped to the frame."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.dx) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] - self.dy) / self.scale_y
        np.clip(out[:, 0::2], 0, self.src_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.src_h, out=out[:, 1::2])
        return out


def letterbox_geometry(src_w: int, src_h: int, dst_w: int, dst_h: int) -> Letterbox:
    """Darknet's letterbox_image: the side that limits the scale fills the input exactly."""
    if src_w < 1 or src_h < 1:
        raise ValueError(f"empty frame {src_w}x{src_h}")
    if dst_w / src_w < dst_h / src_h:
        new_w, new_h = dst_w, max(1, src_h * dst_w // src_w)
    else:
        new_w, new_h = max(1, src_w * dst_h // src_h), dst_h
    return Letterbox(src_w, src_h, dst_w, dst_h, new_w, new_h, (dst_w - new_w) // 2,
                     (dst_h - new_h) // 2)  # fmt: skip


def _check_frame(frame_bgr: np.ndarray) -> None:
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR frame, got {frame_bgr.shape}")


def letterbox(
    frame_bgr: np.ndarray, dst_w: int, dst_h: int, out: np.ndarray | None = None
) -> tuple[np.ndarray, Letterbox]:
    """(H, W, 3) BGR uint8 frame -> ((dst_h, dst_w, 3) RGB input codes, geometry).

    ``out`` (an array of that shape) is reused when given, so a pipeline allocates nothing per
    frame; only its padding border is rewritten.
    """
    _check_frame(frame_bgr)
    h, w = frame_bgr.shape[:2]
    g = letterbox_geometry(w, h, dst_w, dst_h)
    if out is None:
        out = np.empty((dst_h, dst_w, 3), dtype=np.uint8)
    if (g.new_w, g.new_h) == (w, h):
        resized = frame_bgr
    else:
        resized = cv2.resize(frame_bgr, (g.new_w, g.new_h), interpolation=cv2.INTER_LINEAR)
    out[: g.dy] = PAD_CODE
    out[g.dy + g.new_h :] = PAD_CODE
    out[g.dy : g.dy + g.new_h, : g.dx] = PAD_CODE
    out[g.dy : g.dy + g.new_h, g.dx + g.new_w :] = PAD_CODE
    out[g.dy : g.dy + g.new_h, g.dx : g.dx + g.new_w] = resized[:, :, ::-1]  # BGR -> RGB
    return out, g


def normalized_codes(
    images: np.ndarray,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    zero: int,
    scale: float,
    bits: int = 8,
) -> np.ndarray:
    """Classifier input (docs/arithmetic.md section 2.1): uint8 RGB images (N, H, W, 3) ->
    the codes (N, 3, H, W) of the per-channel normalised pixels ``(x / 255 - mean) / std``,
    quantized per tensor with ``(bits, zero, scale)``: ``clamp(rint(x_n / scale) + zero)``.
    Real zero is the code ``zero``, so the convolutions' zero padding stays exact. float32
    throughout (one definition, shared by quant/ and the board)."""
    x = images.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    q = np.rint(x / np.float32(scale)) + np.float32(zero)
    q = np.clip(q, 0, (1 << bits) - 1).astype(np.uint8)
    return np.ascontiguousarray(q.transpose(0, 3, 1, 2))


def classifier_input(
    frame_bgr: np.ndarray,
    dst_w: int,
    dst_h: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    zero: int,
    scale: float,
    bits: int = 8,
) -> np.ndarray:
    """(H, W, 3) BGR frame -> a classifier's (3, dst_h, dst_w) input codes: the centred crop of
    the frame's aspect ratio ``dst_w : dst_h`` (nothing is cropped from a frame of that shape),
    resized with area averaging (none when it already has the size, so a CIFAR image's codes
    are exactly the evaluation's), then :func:`normalized_codes`."""
    _check_frame(frame_bgr)
    h, w = frame_bgr.shape[:2]
    cw, ch = min(w, h * dst_w // dst_h) or 1, min(h, w * dst_h // dst_w) or 1
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    crop = frame_bgr[y0 : y0 + ch, x0 : x0 + cw]
    if (cw, ch) != (dst_w, dst_h):
        crop = cv2.resize(crop, (dst_w, dst_h), interpolation=cv2.INTER_AREA)
    return normalized_codes(crop[None, :, :, ::-1], mean, std, zero, scale, bits)[0]
