"""A functional model of the accelerator: registers, a DDR byte image and the descriptor engine.

:class:`EmuDevice` behaves like the RTL at the register level (docs/accelerator-interface.md):
the host writes DESC_ADDR / DESC_COUNT and CTRL.START, the device fetches the 64-byte descriptors
from its DDR image, runs them one layer each on the channel-blocked tensors, packed weights and
channel records it finds there, and ends in STATUS.DONE, or STATUS.ERROR with ERROR_CODE and
ERROR_INDEX when a descriptor asks for something the build cannot do. Its checks follow the
error codes of the interface; its arithmetic is ``sw.kernels`` (exact, vectorized).

What it deliberately does not model: timing (PERF counters come from the contract's cycle model,
``sw/contract/cycles.py``) and the strip-by-strip order of computation, which section 10 of
docs/arithmetic.md proves equal to the whole-layer result; the strip width is still checked
against the build (ERROR 3/4), exactly where the RTL would refuse it.

Layout and padding lanes: the model computes on the channel-blocked words where they lie in the
image ((G, H, W, L) views; a depthwise conv and the residual add need no reordering at all, a
dense conv one channels-last gather when its input has several groups), and like the RTL it
computes every lane of every word: padded output channels have zero weights and zero channel
records, so they come out as ``z_out``; padded input lanes hold ``z_in`` and meet zero codes.
Output lanes past the dense engine's output groups (``dense_out_lanes`` not dividing the
lanes) are not computed by the RTL either and are written as ``z_out``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sw import kernels
from sw.artifact import decode_codes
from sw.compat import zip_strict
from sw.compiler import (
    Capabilities,
    cycle_model,
    layer_limit,
    record_lanes,
    weight_block_bytes,
)
from sw.contract.codes import weight_terms
from sw.contract.config import AccelConfig
from sw.contract.descriptor import (
    DESCRIPTOR_BYTES,
    OP_ADD,
    OP_DENSE,
    OP_DEPTHWISE,
    OUT_BITS_MAX,
    OUT_BITS_MIN,
    WEIGHT_FORMAT_NAMES,
    Descriptor,
)
from sw.contract.layout import ALIGN, CHANNEL_RECORD, groups, unpack_codes, unpack_weights
from sw.contract.registers import (
    ACCEL_ID,
    CTRL_IRQ_EN,
    CTRL_START,
    ERR_AXI,
    ERR_BUFFER,
    ERR_OPCODE,
    ERR_SHAPE,
    ERR_SIZES,
    ERR_STRIP,
    REG_CONFIG,
    REG_CONFIG2,
    REG_CTRL,
    REG_DESC_ADDR,
    REG_DESC_COUNT,
    REG_DESC_DONE,
    REG_ERROR_CODE,
    REG_ERROR_INDEX,
    REG_ID,
    REG_PERF_DENSE,
    REG_PERF_DW,
    REG_PERF_ELTWISE,
    REG_PERF_MEM_STALL,
    REG_PERF_TOTAL,
    REG_STATUS,
    REGISTERS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    STATUS_W1C,
    config_registers,
)


class DeviceFault(Exception):
    """Raised inside the model when a descriptor fails; becomes STATUS.ERROR + ERROR_CODE."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


@dataclass
class _Weights:
    """A conv's weights and records as the emulator computes with them: every lane of every
    channel group (the RTL computes whole words), in the accumulator's dtype.

    Multipliers and shifts (G, 1, Wo*L): each output group's L lanes tiled along its output
    row, the order of its words. dense: ``taps`` (k*k, Gi*L, Go*L), ``bias`` (Go*L,);
    depthwise: ``taps`` and ``bias`` (k*k, G, 1, Wo*L) and (G, 1, Wo*L), tiled the same way.
    Output lanes the dense engine does not compute (past its ``dense_out_lanes`` groups) get
    zero multipliers, so they come out as z_out."""

    taps: np.ndarray
    bias: np.ndarray
    m_pos: np.ndarray
    m_neg: np.ndarray
    shift: np.ndarray
    span: tuple[int, int]  # image offsets they were read from, for invalidation
    # kernels.requantize_rows constants, one per output channel group; None where that kernel
    # is not exact (then requantize_bc)
    rows: tuple[kernels.RowRequant | None, ...] = ()


class EmuDevice:
    """Register-level model of one accelerator with ``size`` bytes of DDR at ``base``.

    ``hang_after`` (fault injection for the driver's timeout test): after that many descriptors
    the device stays BUSY forever, as a wedged AXI transaction would leave the RTL.
    """

    def __init__(self, cfg: AccelConfig, size: int, base: int = 0, hang_after: int = -1):
        self.cfg = cfg.check()
        self.caps = Capabilities.of(cfg)
        self.base = base
        self.mem = np.zeros(size, dtype=np.uint8)
        self.hang_after = hang_after
        self.cycles: Callable[[Descriptor, AccelConfig], Any] | None = cycle_model()[0]
        self.regs = dict.fromkeys((reg.offset for reg in REGISTERS), 0)  # the contract's map
        self.regs[REG_ID] = ACCEL_ID
        self.regs[REG_CONFIG], self.regs[REG_CONFIG2] = config_registers(cfg)
        self._cache: dict[bytes, _Weights] = {}
        self._perf: dict[bytes, Any] = {}

    # -- bus interface -----------------------------------------------------------------------

    @property
    def irq(self) -> bool:
        st = self.regs[REG_STATUS]
        return bool(st & (STATUS_DONE | STATUS_ERROR)) and bool(self.regs[REG_CTRL] & CTRL_IRQ_EN)

    def read_reg(self, offset: int) -> int:
        if offset not in self.regs:
            return 0  # unmapped AXI-Lite addresses read as zero
        v = self.regs[offset]
        return v & ~CTRL_START if offset == REG_CTRL else v

    def write_reg(self, offset: int, value: int) -> None:
        value &= 0xFFFFFFFF
        if offset == REG_STATUS:  # W1C on DONE and ERROR; BUSY is read-only
            self.regs[REG_STATUS] &= ~(value & STATUS_W1C)
        elif offset == REG_CTRL:
            self.regs[REG_CTRL] = value & CTRL_IRQ_EN
            if value & CTRL_START and not self.regs[REG_STATUS] & STATUS_BUSY:
                self._run()
        elif offset in (REG_DESC_ADDR, REG_DESC_COUNT):
            self.regs[offset] = value
        # writes to read-only and unmapped registers are ignored, as on the AXI-Lite slave

    def _span(self, addr: int, n: int) -> slice:
        lo = addr - self.base
        if lo < 0 or lo + n > self.mem.size:
            raise DeviceFault(ERR_AXI, f"access 0x{addr:x}+{n} outside DDR")
        return slice(lo, lo + n)

    def write_mem(self, addr: int, data: bytes | np.ndarray) -> None:
        buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
        buf = buf.reshape(-1).view(np.uint8)
        s = self._span(addr, buf.size)
        self.mem[s] = buf
        if any(a < s.stop and s.start < b for w in self._cache.values() for a, b in [w.span]):
            self._cache.clear()  # weights or records rewritten: decode them again

    def read_mem(self, addr: int, n: int) -> np.ndarray:
        return self.mem[self._span(addr, n)].copy()

    def view(self, addr: int, n: int) -> np.ndarray:
        """Zero-copy access, like a pynq buffer's numpy view (the input fast path)."""
        return self.mem[self._span(addr, n)]

    # -- execution -----------------------------------------------------------------------------

    def _run(self) -> None:
        r = self.regs
        for reg in (
            REG_DESC_DONE,
            REG_PERF_TOTAL,
            REG_PERF_DENSE,
            REG_PERF_DW,
            REG_PERF_ELTWISE,
            REG_PERF_MEM_STALL,
            REG_ERROR_CODE,
            REG_ERROR_INDEX,
        ):
            r[reg] = 0
        r[REG_STATUS] = (r[REG_STATUS] & ~(STATUS_DONE | STATUS_ERROR)) | STATUS_BUSY
        for i in range(r[REG_DESC_COUNT]):
            if i == self.hang_after:
                return  # stays BUSY, never DONE: the driver must time out
            try:
                if r[REG_DESC_ADDR] % ALIGN:
                    raise DeviceFault(ERR_AXI, "descriptor address not 64-byte aligned")
                raw = self.mem[
                    self._span(r[REG_DESC_ADDR] + i * DESCRIPTOR_BYTES, DESCRIPTOR_BYTES)
                ]
                d = Descriptor.unpack(raw.tobytes())
                self.execute(d)
            except DeviceFault as e:
                r[REG_ERROR_CODE], r[REG_ERROR_INDEX] = e.code, i
                r[REG_STATUS] = (r[REG_STATUS] & ~STATUS_BUSY) | STATUS_ERROR
                return
            r[REG_DESC_DONE] = i + 1
            if self.cycles is not None:  # counters as the cycle model predicts them
                key = raw.tobytes()
                lc = self._perf.get(key)
                if lc is None:  # deterministic per descriptor: predicted once
                    lc = self._perf[key] = self.cycles(d, self.cfg)
                r[REG_PERF_TOTAL] += int(lc.total)
                r[REG_PERF_DENSE] += int(lc.dense)
                r[REG_PERF_DW] += int(lc.dw)
                r[REG_PERF_ELTWISE] += int(lc.eltwise)
        r[REG_STATUS] = (r[REG_STATUS] & ~STATUS_BUSY) | STATUS_DONE

    def check(self, d: Descriptor) -> None:
        """The refusals of the interface's ERROR_CODE, in the order the RTL's CHECK state tests
        them (hw/check.py): opcode, kernel/stride/pad/format, strip, sizes, buffers."""
        cfg, caps = self.cfg, self.caps
        conv = d.op in (OP_DENSE, OP_DEPTHWISE)
        if not conv and d.op != OP_ADD:
            raise DeviceFault(ERR_OPCODE, f"opcode {d.op}")
        if conv:
            dense = d.op == OP_DENSE
            kernels_ok = caps.dense_kernels if dense else caps.depthwise_kernels
            fmts = caps.dense_weights if dense else caps.depthwise_weights
            fmt = WEIGHT_FORMAT_NAMES.get(d.weight_format)
            if d.kernel not in kernels_ok or d.stride not in caps.strides or d.pad >= d.kernel:
                raise DeviceFault(ERR_SHAPE, f"kernel {d.kernel} stride {d.stride} pad {d.pad}")
            if (fmt, d.weight_bits) not in fmts:
                raise DeviceFault(ERR_SHAPE, f"{d.weight_bits}-bit {fmt} weights")
            if not 1 <= d.strip_width <= cfg.max_strip:
                raise DeviceFault(ERR_STRIP, f"strip {d.strip_width} > {cfg.max_strip}")
        if min(d.in_channels, d.out_channels, d.in_height, d.in_width) < 1:
            raise DeviceFault(ERR_SIZES, "empty tensor")
        if not OUT_BITS_MIN <= d.out_bits <= OUT_BITS_MAX:
            raise DeviceFault(ERR_SIZES, f"out_bits {d.out_bits}")
        if conv:
            ho, wo = kernels.conv_out_size(d.in_height, d.in_width, d.kernel, d.stride, d.pad)
            if (ho, wo) != (d.out_height, d.out_width) or ho < 1 or wo < 1:
                raise DeviceFault(ERR_SIZES, f"output {d.out_height}x{d.out_width} != {ho}x{wo}")
            if d.op == OP_DEPTHWISE and d.in_channels != d.out_channels:
                raise DeviceFault(ERR_SIZES, "depthwise with in != out channels")
            kind = "dense" if d.op == OP_DENSE else "depthwise"
            why = layer_limit(kind, d.in_channels, d.out_channels, d.kernel, d.stride,
                              d.strip_width, cfg, weight_terms(fmt))  # fmt: skip
            if why:
                raise DeviceFault(ERR_BUFFER, why)
        elif (d.in_channels, d.in_height, d.in_width) != (
            d.out_channels, d.out_height, d.out_width,
        ):  # fmt: skip
            raise DeviceFault(ERR_SIZES, "add operands and output differ in shape")
        # Stricter than the RTL, which does not check alignment: the interface requires it.
        addrs = [d.in_addr, d.weight_addr, d.out_addr] + ([d.const_addr] if conv else [])
        if any(a % ALIGN for a in addrs):
            raise DeviceFault(ERR_AXI, "address not 64-byte aligned")

    def _blocked(self, addr: int, c: int, h: int, w: int) -> np.ndarray:
        """A tensor's words as (G, H, W, L), padding lanes included: a view of the image."""
        lanes = self.cfg.lanes
        g = groups(c, lanes)
        return self.mem[self._span(addr, g * h * w * lanes)].reshape(g, h, w, lanes)

    def _weights(self, d: Descriptor) -> _Weights:
        """Decode the layer's packed weights and records from DDR, padding included (cached)."""
        key = d.pack()
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        cfg = self.cfg
        kind = "dense" if d.op == OP_DENSE else "depthwise"
        k, cin, cout = d.kernel, d.in_channels, d.out_channels
        nbytes = weight_block_bytes(kind, cin, cout, k, d.weight_bits, cfg)
        w_at = self._span(d.weight_addr, nbytes)
        if kind == "dense":
            lo, li = cfg.dense_out_lanes, cfg.lanes
            go, gi = groups(cout, lo), groups(cin, li)
            fmt = WEIGHT_FORMAT_NAMES[d.weight_format]
            codes = unpack_weights(self.mem[w_at], fmt, d.weight_bits, (go, gi, k, k, lo, li))
            codes = codes.transpose(0, 4, 1, 5, 2, 3)
            codes = codes.reshape(go * lo, gi * li, k, k)
        else:
            g, lanes = groups(cout, cfg.lanes), cfg.lanes
            codes = unpack_codes(self.mem[w_at], d.weight_bits, g * k * k * lanes)
            codes = codes.reshape(g, k, k, lanes).transpose(0, 3, 1, 2).reshape(-1, 1, k, k)
        v = decode_codes(codes, WEIGHT_FORMAT_NAMES[d.weight_format], d.weight_bits)
        lanes = cfg.lanes
        n_out = groups(cout, lanes) * lanes  # the output lanes written to DDR
        n_rec = groups(cout, record_lanes(kind, cfg)) * record_lanes(kind, cfg)
        c_at = self._span(d.const_addr, n_rec * 16)
        rec = self.mem[c_at].copy().view(CHANNEL_RECORD)[:n_out]
        m_pos, m_neg = rec["m_pos"].copy(), rec["m_neg"].copy()
        if v.shape[0] < n_out:  # lanes past the dense engine's output groups: not computed
            m_pos[v.shape[0] :] = m_neg[v.shape[0] :] = 0
            v = np.concatenate([v, np.zeros((n_out - v.shape[0], *v.shape[1:]), v.dtype)])
        v = v[:n_out]
        bounds = kernels.acc_bounds(rec["bias"], v, max(d.z_in, 255 - d.z_in))
        dt = kernels.dtype_for_bounds(bounds)
        wo = d.out_width
        # Constants tiled along an output row (Wo x the channels of a pixel): the element-wise
        # passes then run over whole rows, not over one pixel's few channels at a time.
        consts = [
            np.tile(c, wo) for c in (rec["bias"].astype(dt), m_pos, m_neg, rec["shift"], bounds)
        ]
        # (G, 1, Wo*L): each output group's L lanes tiled along its row, as the words lie
        g = n_out // lanes
        consts = [
            c.reshape(wo, g, lanes).transpose(1, 0, 2).reshape(g, 1, wo * lanes) for c in consts
        ]
        if kind == "dense":  # (k*k, Cin lanes, Cout lanes): one matmul operand per tap
            taps = v.transpose(2, 3, 1, 0).reshape(k * k, v.shape[1], n_out)
            consts[0] = rec["bias"].astype(dt)  # added to (pixels, Cout): untiled
        else:  # (k*k, G, 1, Wo*L), tiled along the row like the constants
            taps = np.tile(v[:, 0].transpose(1, 2, 0).reshape(k * k, g, 1, lanes), wo)
        span = (min(w_at.start, c_at.start), max(w_at.stop, c_at.stop))
        per_row = [c.reshape(g, -1) for c in consts[1:]]  # (G, row values)
        rows = tuple(
            kernels.row_requant(mp, mn, sh, d.z_out, d.out_bits, b)
            for mp, mn, sh, b in zip_strict(*per_row)
        )
        w = _Weights(np.ascontiguousarray(taps, dtype=dt), *consts[:4], span, rows)
        self._cache[key] = w
        return w

    def execute(self, d: Descriptor) -> None:
        """Run one layer on the DDR image, in its channel-blocked words (no reordering but the
        channels-last gather a dense conv makes of an input of several channel groups, while
        converting it); every output group is written in place."""
        self.check(d)
        x = self._blocked(d.in_addr, d.in_channels, d.in_height, d.in_width)
        out = self._blocked(d.out_addr, d.out_channels, d.out_height, d.out_width)
        if d.op == OP_ADD:  # element-wise: all lanes, padding included, as the RTL does
            y = self._blocked(d.weight_addr, d.in_channels, d.in_height, d.in_width)
            args = (x, d.z_in, y, d.z_in2, d.m_a, d.m_b, d.shift, d.z_out, d.out_bits)
            if kernels.add_rows(*args, bool(d.add_relu), out) is None:
                out[:] = kernels.add(*args, relu=bool(d.add_relu))
            return
        w = self._weights(d)
        go, ho, wo, lanes = out.shape
        if d.op == OP_DEPTHWISE:
            acc = kernels.conv_depthwise_blocked(x, d.z_in, w.taps, w.bias, d.stride, d.pad)
        else:  # (Go, Ho*Wo, L): an output group's pixels x lanes are its words
            acc = kernels.conv_dense_hwc(x, d.z_in, w.taps, w.bias, d.stride, d.pad, go)
        for g, rq in enumerate(w.rows):
            a = acc[g].reshape(ho, wo * lanes)
            if rq is None:
                q = kernels.requantize_bc(a, w.m_pos[g], w.m_neg[g], w.shift[g], d.z_out,
                                          d.out_bits)  # fmt: skip
                out[g] = q.reshape(ho, wo, lanes)
            else:
                kernels.requantize_rows(a, rq, out[g].reshape(ho, wo * lanes))
