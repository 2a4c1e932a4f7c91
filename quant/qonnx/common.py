"""What the QONNX exporter and importer share: names, the exactness bound, the one-line error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

# QONNX's custom operators (Quant, BipolarQuant) live in this domain; qonnx's executor runs them.
QONNX_DOMAIN = "qonnx.custom_op.general"
ONNX_OPSET = 13  # Resize with nearest_mode, Round, MaxPool pads: all there since 11..13
QONNX_OPSET = 1

# ONNX Runtime has float32 convolutions only (no float64 Conv kernel), so an exported conv sums
# integers in float32: exact when every partial sum is an integer of magnitude <= 2^24, which the
# per-channel bound |bias| + A_in * sum |v| <= 2^24 guarantees in any order of summation (the
# same argument as docs/arithmetic.md section 4.3 for 2^31). The requantization after it runs in
# float64 (|acc * M| < 2^24 * 2^16 = 2^40 < 2^53: exact).
FLOAT32_EXACT = 2**24

# metadata_props keys of an exported model.
META_FORMAT = "pow2det.format"  # "pow2det.artifact version N": the artifact format it came from
META_DIGEST = "pow2det.digest"  # the artifact's content digest (sw.artifact.content_digest)
META_HEADER = "pow2det.header"  # JSON: what the graph cannot hold (names, outputs, code formats)
META_BOUND = "pow2det.exact_bound"  # the exactness bound the export was checked under
CONV_DOC_PREFIX = "pow2det conv "  # + JSON {weight_format, weight_bits[, leaky_slope]}


class QonnxError(ValueError):
    """A model that cannot be exported or imported; the message is one line naming the problem."""


def fail(msg: str) -> NoReturn:
    raise QonnxError(" ".join(msg.split()))


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (also through links): an output must not overwrite an
    input."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
