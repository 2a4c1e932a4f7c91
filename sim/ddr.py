"""DDR images for the accelerator tests: layers of an artifact -> descriptors + memory bytes.

A stand-in for the compiler (``sw/compiler.py``) that the RTL tests can use without depending on
it: it lays out tensors, weights and constants with ``sim.reference.layout`` exactly as
docs/arithmetic.md section 9 says, and encodes descriptors with ``sw.descriptors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.reference import layout
from sw.artifact import Node, Quant
from sw.contract.buffers import bank_words
from sw.contract.config import AccelConfig
from sw.contract.descriptor import OP_ADD, OP_DENSE, OP_DEPTHWISE, WEIGHT_FORMAT_CODES, Descriptor
from sw.contract.layout import align, groups


@dataclass
class DdrImage:
    """A bump allocator over a byte array that stands for the accelerator's view of DDR."""

    base: int = 0x1000
    chunks: dict[int, bytes] = field(default_factory=dict)
    top: int = 0

    def __post_init__(self) -> None:
        self.top = self.base

    def alloc(self, nbytes: int) -> int:
        addr = self.top
        self.top += align(max(nbytes, 1))
        return addr

    def put(self, data: bytes | np.ndarray) -> int:
        raw = bytes(np.asarray(data, dtype=np.uint8).tobytes()) if not isinstance(data, bytes) \
            else data  # fmt: skip
        addr = self.alloc(len(raw))
        self.chunks[addr] = raw
        return addr


def tensor_bytes(shape: tuple[int, int, int], lanes: int) -> int:
    c, h, w = shape
    return groups(c, lanes) * h * w * lanes


def conv_out_shape(node: Node, in_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    a = node.attrs
    k, st, p = a["kernel"], a["stride"], a["pad"]
    _, h, w = in_shape
    return a["out_channels"], (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1


def conv_weight_blob(node: Node, lanes: int) -> bytes:
    a, t = node.attrs, node.tensors
    if a["groups"] == 1:
        order = layout.dense_weight_order(t["codes"], lanes, lanes)
    else:
        order = layout.depthwise_weight_order(t["codes"], lanes)
    return layout.pack_weights(order, a["weight_format"], a["weight_bits"]).tobytes()


def conv_const_blob(node: Node, lanes: int) -> bytes:
    t = node.tensors
    return layout.channel_records(t["bias"], t["m_pos"], t["m_neg"], t["shift"], lanes).tobytes()


def conv_descriptor(
    node: Node,
    in_shape: tuple[int, int, int],
    in_quant: Quant,
    addrs: dict[str, int],
    strip_width: int,
) -> Descriptor:
    """Descriptor of a conv node; ``addrs`` has in, weight, const and out addresses."""
    a = node.attrs
    co, ho, wo = conv_out_shape(node, in_shape)
    return Descriptor(
        op=OP_DENSE if a["groups"] == 1 else OP_DEPTHWISE,
        kernel=a["kernel"], stride=a["stride"], pad=a["pad"],
        weight_format=WEIGHT_FORMAT_CODES[a["weight_format"]], weight_bits=a["weight_bits"],
        out_bits=node.quant.bits, in_addr=addrs["in"], weight_addr=addrs["weight"],
        const_addr=addrs["const"], out_addr=addrs["out"], in_channels=in_shape[0],
        out_channels=co, in_height=in_shape[1], in_width=in_shape[2], out_height=ho,
        out_width=wo, z_in=in_quant.zero, z_out=node.quant.zero, strip_width=strip_width,
    )  # fmt: skip


def add_descriptor(
    node: Node,
    shape: tuple[int, int, int],
    quants: list[Quant],
    addrs: dict[str, int],
) -> Descriptor:
    a = node.attrs
    c, h, w = shape
    return Descriptor(
        op=OP_ADD, out_bits=node.quant.bits, add_relu=int(a["activation"] == "relu"),
        in_addr=addrs["in"], weight_addr=addrs["in2"], out_addr=addrs["out"], in_channels=c,
        out_channels=c, in_height=h, in_width=w, out_height=h, out_width=w,
        z_in=quants[0].zero, z_in2=quants[1].zero, z_out=node.quant.zero,
        m_a=a["m_a"], m_b=a["m_b"], shift=a["shift"],
    )  # fmt: skip


def choose_strip(d: dict[str, int], cfg: AccelConfig) -> int:
    """Widest strip whose window (all input groups) fits one line-buffer bank."""
    bank = bank_words(cfg)
    gi = groups(d["in_channels"], cfg.lanes)
    for ws in range(min(cfg.max_strip, d["out_width"]), 0, -1):
        if gi * ((ws - 1) * d["stride"] + d["kernel"]) <= bank:
            return ws
    return 0
