"""The execution plan: what the compiler (``sw/compiler.py``) hands to the backends.

A plan is a flat, self-contained description of one compiled model on one accelerator build:

* ``memory``: the DDR image (uint8) that starts at ``base``: the descriptor program, every PL
  layer's packed weights and channel records, the pinned input tensor and the activation arena;
* ``descriptors``: the 64-byte layer descriptors (absolute addresses, for ``base``);
* ``regions``: where every tensor, weight block and constant block lives, by name;
* ``steps``: what to run, in order: :class:`PLStep` (a run of consecutive descriptors, started
  with one START) or :class:`CPUStep` (an operation the ARM cores do on the DDR tensors).

Tensors are in the channel-blocked layout of docs/arithmetic.md section 9 (lanes = ``cfg.lanes``).
Everything here is numpy only, so it runs on the board.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sw.artifact import FORMAT_VERSION, Node, Output, Quant
from sw.compat import zip_strict
from sw.contract.config import AccelConfig
from sw.contract.descriptor import DESCRIPTOR_BYTES, OP_ADD, Descriptor, pack_program
from sw.contract.layout import ALIGN, groups
from sw.kernels import conv_out_size


@dataclass(frozen=True)
class Region:
    """A named range of the DDR image; activations also carry their shape and quantization."""

    name: str
    kind: str  # "program" | "weights" | "consts" | "activation"
    offset: int  # bytes from Plan.base
    size: int
    shape: tuple[int, int, int] | None = None  # activations: (C, H, W), real channels
    quant: Quant | None = None
    root: str = ""  # activations: the buffer it lives in (a concat done by addressing)


@dataclass
class PLStep:
    """Descriptors ``first .. first + count - 1`` run with one START."""

    first: int
    count: int
    layers: list[str]


@dataclass
class CPUStep:
    """One layer the ARM cores compute, reading and writing DDR tensors."""

    layer: str
    op: str  # conv | add | concat | upsample | maxpool | avgpool
    inputs: list[str]
    node: Node  # the artifact node (attrs, quant and, for a conv, its tensors)
    reason: str


@dataclass(frozen=True)
class InputWindows:
    """The first conv's input windows packed into channels (docs/arithmetic.md section 10,
    input windows): the frame is written as the (k*k*C, H_out, W_out) tensor whose channel
    ``(u*k + t)*C + c`` at ``(i, j)`` is input channel ``c`` at row ``i*stride + u - pad``,
    column ``j*stride + t - pad`` (``zero``, the input's zero point, outside the frame), and the
    conv runs as a 1x1 conv on it: the same products and sums, k*k times fewer weight taps."""

    kernel: int
    stride: int
    pad: int
    zero: int

    def out_shape(self, c: int, h: int, w: int) -> tuple[int, int, int]:
        return (self.kernel**2 * c, *conv_out_size(h, w, self.kernel, self.stride, self.pad))

    def pack(self, src: np.ndarray) -> np.ndarray:
        """(H, W, C) codes -> (H_out, W_out, k*k*C) codes."""
        h, w, c = src.shape
        k, s, p = self.kernel, self.stride, self.pad
        _, ho, wo = self.out_shape(c, h, w)
        padded = np.full((h + 2 * p, w + 2 * p, c), self.zero, dtype=np.uint8)
        padded[p : p + h, p : p + w] = src
        # A pixel's C codes as one C-byte item: each tap is then one strided copy of whole
        # pixels (4x faster than copying C-byte pieces of a uint8 array).
        pixel = np.dtype((np.void, c))
        pix = padded.view(pixel).reshape(h + 2 * p, w + 2 * p)
        out = np.empty((ho, wo, k * k), dtype=pixel)
        for u in range(k):
            for t in range(k):
                out[:, :, u * k + t] = pix[
                    u : u + s * (ho - 1) + 1 : s, t : t + s * (wo - 1) + 1 : s
                ]
        return out.view(np.uint8).reshape(ho, wo, k * k * c)


@dataclass
class LayerInfo:
    """One row of the plan table."""

    name: str
    op: str  # dense, depthwise, add, concat, upsample, maxpool
    engine: str  # "PL", "CPU" or "addr" (a concat that costs nothing: done by addressing)
    out_shape: tuple[int, int, int]
    strip_width: int = 0
    strips: int = 0
    ddr_bytes: int = 0  # bytes the layer reads and writes in DDR per frame (weights included)
    weight_bytes: int = 0
    descriptor: int | None = None
    cycles: int | None = None
    note: str = ""


@dataclass
class Plan:
    cfg: AccelConfig
    base: int
    memory: np.ndarray  # the whole DDR image, uint8
    static_size: int  # bytes [0, static_size) never change after loading (program, weights)
    descriptors: list[Descriptor]
    regions: dict[str, Region]
    steps: list[PLStep | CPUStep]
    layers: list[LayerInfo]
    input_name: str
    input_shape: tuple[int, int, int]
    input_quant: Quant
    outputs: list[Output]
    classes: list[str] = field(default_factory=list)
    model_name: str = ""
    artifact_version: int = FORMAT_VERSION
    passes: list[str] = field(default_factory=list)
    cycle_model: str = ""  # where predicted cycles came from ("" = no cycle model present)
    # The first conv's input windows packed into channels: the input region then holds them,
    # computed from the frame by write_input / fill_input (None: it holds the frame itself).
    input_windows: InputWindows | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return int(self.memory.size)

    def addr(self, name: str) -> int:
        """Absolute DDR address of a region."""
        return self.base + self.regions[name].offset

    def program_addr(self, index: int = 0) -> int:
        return self.addr("program") + index * DESCRIPTOR_BYTES

    def layer_of_descriptor(self, index: int) -> str:
        for info in self.layers:
            if info.descriptor == index:
                return info.name
        return "?"

    def rebase(self, base: int) -> Plan:
        """The same plan for a DDR image placed at ``base`` (e.g. a pynq buffer's address)."""
        if base % ALIGN:
            raise ValueError(f"plan base 0x{base:x} is not {ALIGN}-byte aligned")
        if base + self.size > 1 << self.cfg.addr_width:
            raise ValueError(
                f"plan of {self.size} bytes at 0x{base:x} exceeds the "
                f"{self.cfg.addr_width}-bit address space"
            )
        delta = base - self.base
        descs = []
        for d in self.descriptors:
            moved = dataclasses.replace(
                d,
                in_addr=d.in_addr + delta,
                weight_addr=d.weight_addr + delta,
                out_addr=d.out_addr + delta,
                const_addr=d.const_addr + delta if d.op != OP_ADD else d.const_addr,
            )
            descs.append(moved)
        mem = self.memory.copy()
        prog = self.regions["program"]
        mem[prog.offset : prog.offset + prog.size] = np.frombuffer(pack_program(descs), np.uint8)
        return dataclasses.replace(self, base=base, memory=mem, descriptors=descs)

    # -- tensors in a DDR image --------------------------------------------------------------

    def tensor_bytes(self, name: str) -> tuple[int, int]:
        """(offset, size) of an activation tensor in the image."""
        r = self.regions[name]
        return r.offset, r.size

    def encode_tensor(self, name: str, q: np.ndarray) -> np.ndarray:
        """(C, H, W) codes -> the tensor's bytes in DDR layout (padding lanes = zero point)."""
        r = self.regions[name]
        assert r.shape is not None and r.quant is not None
        return to_blocked(q, self.cfg.lanes, r.quant.zero)

    def decode_tensor(self, name: str, data: np.ndarray) -> np.ndarray:
        """A tensor's bytes in DDR layout -> (C, H, W) codes (padding lanes dropped)."""
        r = self.regions[name]
        assert r.shape is not None
        return from_blocked(data, r.shape, self.cfg.lanes)

    def write_input(self, mem: np.ndarray, image: np.ndarray, hwc: bool = False) -> None:
        """Write the input codes into an image ``mem`` laid out like ``self.memory``.

        Only the real channels are written: the input region is pinned (never reused for another
        tensor), so its padding lanes keep the zero point that the static image put there.
        ``hwc`` takes an (H, W, C) array, the natural output of OpenCV pre-processing.
        """
        r = self.regions[self.input_name]
        self.fill_input(mem[r.offset : r.offset + r.size], image, hwc)

    def _input_hwc(self, image: np.ndarray, hwc: bool) -> np.ndarray:
        """The input region's tensor, channels last: the frame, or its packed windows."""
        c, h, w = self.input_shape
        src = image if hwc else np.moveaxis(image, 0, -1)
        if src.shape != (h, w, c):
            got = list(image.shape)
            raise ValueError(f"input of shape {got}, the plan expects {[c, h, w]} (C, H, W)")
        return src if self.input_windows is None else self.input_windows.pack(src)

    def input_codes(self, image: np.ndarray, hwc: bool = False) -> np.ndarray:
        """The input region's tensor (C, H, W) for a frame: what ``encode_tensor`` takes."""
        return np.moveaxis(self._input_hwc(image, hwc), -1, 0)

    def fill_input(self, region: np.ndarray, image: np.ndarray, hwc: bool = False) -> None:
        """Write the real channels of the input into the input region's bytes ``region``."""
        src = self._input_hwc(image, hwc)
        h, w, c = src.shape
        lanes = self.cfg.lanes
        view = region.reshape(groups(c, lanes), h, w, lanes)
        for g in range(groups(c, lanes)):
            n = min(lanes, c - g * lanes)
            view[g, :, :, :n] = src[:, :, g * lanes : g * lanes + n]

    def read_outputs(self, mem: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for o in self.outputs:
            off, size = self.tensor_bytes(o.node)
            out[o.node] = self.decode_tensor(o.node, mem[off : off + size])
        return out

    # -- summary ---------------------------------------------------------------------------

    def table(self) -> str:
        """The plan as a text table: layer, engine, tiles, DDR bytes, predicted cycles."""
        with_cycles = bool(self.cycle_model)
        head = ["#", "layer", "op", "engine", "output CxHxW", "tiles", "DDR bytes"]
        if with_cycles:
            head.append("cycles")
        head.append("note")
        rows = []
        for i, li in enumerate(self.layers):
            tiles = f"{li.strips} x {li.strip_width}" if li.engine == "PL" else ""
            c, h, w = li.out_shape
            row = [str(i), li.name, li.op, li.engine, f"{c}x{h}x{w}", tiles, f"{li.ddr_bytes:,}"]
            if with_cycles:
                row.append(f"{li.cycles:,}" if li.cycles is not None else "")
            row.append(li.note)
            rows.append(row)
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        right = {0, 6, 7} if with_cycles else {0, 6}

        def fmt(r: list[str]) -> str:
            cells = [
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip_strict(r, widths))
            ]
            return "  ".join(cells).rstrip()

        lines = [fmt(head), fmt(["-" * w for w in widths])]
        lines += [fmt(r) for r in rows]
        n_pl = sum(1 for li in self.layers if li.engine == "PL")
        n_cpu = sum(1 for li in self.layers if li.engine == "CPU")
        n_seg = sum(1 for s in self.steps if isinstance(s, PLStep))
        arena = self.size - self.static_size
        lines.append(
            f"{self.model_name or 'model'}: {len(self.layers)} layers, {n_pl} on the PL in "
            f"{n_seg} run(s) of {len(self.descriptors)} descriptors, {n_cpu} on the CPU; "
            f"DDR {self.size:,} bytes (static {self.static_size:,}, activations {arena:,}); "
            f"traffic {sum(li.ddr_bytes for li in self.layers):,} bytes/frame"
        )
        if with_cycles:
            total = sum(li.cycles or 0 for li in self.layers)
            ms = total / (self.cfg.clock_mhz * 1e3)
            lines.append(
                f"predicted PL cycles {total:,} = {ms:.2f} ms at {self.cfg.clock_mhz:g} MHz "
                f"({self.cycle_model})"
            )
        else:
            lines.append("predicted cycles: no cycle model given, column left out")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "layers": len(self.layers),
            "descriptors": len(self.descriptors),
            "pl_runs": sum(1 for s in self.steps if isinstance(s, PLStep)),
            "cpu_layers": sum(1 for li in self.layers if li.engine == "CPU"),
            "ddr_bytes": self.size,
            "static_bytes": self.static_size,
        }


def to_blocked(q: np.ndarray, lanes: int, zero: int) -> np.ndarray:
    """(C, H, W) codes -> flat ``[g][i][j][lane]`` bytes with padding lanes = ``zero``."""
    c, h, w = q.shape
    g = groups(c, lanes)
    out = np.empty((g, h, w, lanes), dtype=np.uint8)
    if c < g * lanes:
        out[-1] = zero
    for gi in range(g):
        n = min(lanes, c - gi * lanes)
        out[gi, :, :, :n] = np.moveaxis(q[gi * lanes : gi * lanes + n], 0, -1)
    return out.reshape(-1)


def from_blocked(data: np.ndarray, shape: tuple[int, int, int], lanes: int) -> np.ndarray:
    """Flat channel-blocked bytes -> (C, H, W) codes."""
    c, h, w = shape
    g = groups(c, lanes)
    t = np.asarray(data).reshape(g, h, w, lanes)
    return np.ascontiguousarray(t.transpose(0, 3, 1, 2).reshape(g * lanes, h, w)[:c])
