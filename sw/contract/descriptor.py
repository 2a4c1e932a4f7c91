"""Layer descriptors of the accelerator (docs/accelerator-interface.md): 64 bytes each.

The one encoder/decoder of the descriptor format, used by the compiler, the drivers, the RTL's
descriptor fetch (``hw/controller.py`` slices its fields with :data:`LAYOUT`) and the testbenches
alike, so that they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

DESCRIPTOR_BYTES = 64
DESCRIPTOR_WORDS = DESCRIPTOR_BYTES // 4  # little-endian 32-bit words
OP_DENSE, OP_DEPTHWISE, OP_ADD = 1, 2, 3
FMT_POW2, FMT_BINARY, FMT_INT, FMT_POW2X2 = 0, 1, 2, 3  # the weight_format field
WEIGHT_FORMAT_CODES = {"pow2": FMT_POW2, "binary": FMT_BINARY, "int": FMT_INT,
                       "pow2x2": FMT_POW2X2}  # fmt: skip
WEIGHT_FORMAT_NAMES = {v: k for k, v in WEIGHT_FORMAT_CODES.items()}  # field value -> name

# What the interface-1 RTL's CHECK accepts (docs/accelerator-interface.md); the compiler's
# Capabilities default to these, the emulator refuses the rest with ERR_SHAPE as the RTL does,
# and hw/check.py builds CHECK from them.
KERNELS = (1, 3, 5)  # dense and depthwise
STRIDES = (1, 2)
POW2_BITS = (3, 4)  # pow2 widths both engines take (5- and 8-bit pow2 run on the CPU)
BINARY_BITS = (1,)
DW_INT_BITS = tuple(range(2, 9))  # int weights: the depthwise engine only
SHIFT_WEIGHTS: tuple[tuple[str, int], ...] = (
    *(("pow2", b) for b in POW2_BITS), *(("binary", b) for b in BINARY_BITS),
)  # fmt: skip
# pow2x2 (two 4-bit terms a weight): the dense engine, in two passes over each input vector.
DENSE_WEIGHTS: tuple[tuple[str, int], ...] = (*SHIFT_WEIGHTS, ("pow2x2", 8))
DEPTHWISE_WEIGHTS: tuple[tuple[str, int], ...] = (
    *SHIFT_WEIGHTS, *(("int", b) for b in DW_INT_BITS),
)  # fmt: skip
OUT_BITS_MIN, OUT_BITS_MAX = 2, 8  # output code widths (ERR_SIZES outside)

# (word, low bit, width) of every field.
LAYOUT: dict[str, tuple[int, int, int]] = {
    "op": (0, 0, 4),
    "kernel": (0, 4, 4),
    "stride": (0, 8, 2),
    "pad": (0, 10, 3),
    "weight_format": (0, 13, 2),
    "weight_bits": (0, 15, 4),
    "out_bits": (0, 19, 4),
    "add_relu": (0, 23, 1),
    "in_addr": (1, 0, 32),
    "weight_addr": (2, 0, 32),  # in2_addr for an add
    "const_addr": (3, 0, 32),
    "out_addr": (4, 0, 32),
    "in_channels": (5, 0, 16),
    "out_channels": (5, 16, 16),
    "in_height": (6, 0, 16),
    "in_width": (6, 16, 16),
    "out_height": (7, 0, 16),
    "out_width": (7, 16, 16),
    "z_in": (8, 0, 8),
    "z_in2": (8, 8, 8),
    "z_out": (8, 16, 8),
    "strip_width": (8, 24, 8),
    "m_a": (9, 0, 16),
    "m_b": (9, 16, 16),
    "shift": (10, 0, 8),
}


@dataclass
class Descriptor:
    op: int
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    weight_format: int = 0
    weight_bits: int = 4
    out_bits: int = 8
    add_relu: int = 0
    in_addr: int = 0
    weight_addr: int = 0
    const_addr: int = 0
    out_addr: int = 0
    in_channels: int = 0
    out_channels: int = 0
    in_height: int = 0
    in_width: int = 0
    out_height: int = 0
    out_width: int = 0
    z_in: int = 0
    z_in2: int = 0
    z_out: int = 0
    strip_width: int = 0
    m_a: int = 0
    m_b: int = 0
    shift: int = 0

    def pack(self) -> bytes:
        words = [0] * DESCRIPTOR_WORDS
        for name, (word, lo, width) in LAYOUT.items():
            v = getattr(self, name)
            if not 0 <= v < (1 << width):
                raise ValueError(f"descriptor field {name} = {v} does not fit {width} bits")
            words[word] |= v << lo
        return np.array(words, dtype="<u4").tobytes()

    @classmethod
    def unpack(cls, data: bytes) -> Descriptor:
        if len(data) != DESCRIPTOR_BYTES:
            raise ValueError(f"a descriptor is {DESCRIPTOR_BYTES} bytes, got {len(data)}")
        words = np.frombuffer(data, dtype="<u4").tolist()
        kw = {n: (words[w] >> lo) & ((1 << width) - 1) for n, (w, lo, width) in LAYOUT.items()}
        return cls(**kw)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def pack_program(descriptors: list[Descriptor]) -> bytes:
    """The descriptor list as the bytes the host writes at DESC_ADDR."""
    return b"".join(d.pack() for d in descriptors)


assert {f.name for f in fields(Descriptor)} == set(LAYOUT)
