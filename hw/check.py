"""CHECK: the error code of one decoded descriptor (docs/accelerator-interface.md, Errors).

Two levels: every condition is registered each cycle from ``layer`` (which holds still through
a layer), and ``error`` picks the first true one combinationally, so that neither half is a long
path. The descriptor controller registers ``error`` in its CHECK state, one cycle after the last
size CHECK reads (SETUP3's ``blocks``) is in place, and refuses the layer (STATUS.ERROR,
ERROR_CODE, ERROR_INDEX) when it is not 0. The codes are the contract's,
tested in the order the document gives them: opcode, then kernel/stride/pad/weight format,
strip width, sizes, buffers. ``sw/emu.py`` refuses the same descriptors with the same codes
(tests/test_hw_units.py compares the two on random descriptors).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.interfaces import layer_layout
from hw.params import HwParams
from sw.contract.descriptor import (
    BINARY_BITS,
    DENSE_WEIGHTS,
    DEPTHWISE_WEIGHTS,
    DW_INT_BITS,
    FMT_BINARY,
    FMT_INT,
    FMT_POW2,
    FMT_POW2X2,
    KERNELS,
    OP_ADD,
    OP_DENSE,
    OP_DEPTHWISE,
    OUT_BITS_MAX,
    OUT_BITS_MIN,
    POW2_BITS,
    STRIDES,
)
from sw.contract.registers import (
    ERR_BUFFER,
    ERR_OPCODE,
    ERR_SHAPE,
    ERR_SIZES,
    ERR_STRIP,
    ERROR_BITS,
)

# The checks below take pow2 and binary weights in both engines, 8-bit pow2x2 in the dense
# engine only and a contiguous range of int widths in the depthwise engine only: the
# contract's sets must have that shape.
SHIFT = (*(("pow2", b) for b in POW2_BITS), *(("binary", b) for b in BINARY_BITS))
assert DENSE_WEIGHTS == (*SHIFT, ("pow2x2", 8))
assert DEPTHWISE_WEIGHTS == (*SHIFT, *(("int", b) for b in DW_INT_BITS))
assert DW_INT_BITS == tuple(range(DW_INT_BITS[0], DW_INT_BITS[-1] + 1))


def any_of(sig: object, values: tuple[int, ...]) -> object:
    """``sig`` equals one of ``values`` (an OR of comparisons, left to right)."""
    out = sig == values[0]
    for v in values[1:]:
        out = out | (sig == v)
    return out


class DescriptorCheck(wiring.Component):
    """``layer`` (fields and the sizes SETUP derived) in, the contract's error code out."""

    def __init__(self, hp: HwParams) -> None:
        self._hp = hp
        super().__init__({"layer": In(layer_layout(hp)), "error": Out(ERROR_BITS)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        hp, f = self._hp, self.layer
        op, k, st, pad = f.op, f.kernel, f.stride, f.pad
        wfmt, wbits = f.weight_format, f.weight_bits
        cin, cout = f.in_channels, f.out_channels
        H, W, Ho, Wo = f.in_height, f.in_width, f.out_height, f.out_width
        is_dense, is_dw = op == OP_DENSE, op == OP_DEPTHWISE
        stride_sh = st == 2
        # The output size the input implies, a register ahead of the flags (the descriptor's
        # fields hold from WAITD on, so it is in place long before CHECK).
        ho_exp, wo_exp = Signal(18), Signal(18)
        m.d.sync += [
            ho_exp.eq(((H + 2 * pad - k) >> stride_sh) + 1),
            wo_exp.eq(((W + 2 * pad - k) >> stride_sh) + 1),
        ]
        conv = is_dense | is_dw
        bad_kernel = ~any_of(k, KERNELS) | ~any_of(st, STRIDES) | (pad >= k)
        pow2_ok = (wfmt == FMT_POW2) & any_of(wbits, POW2_BITS)
        bin_ok = (wfmt == FMT_BINARY) & any_of(wbits, BINARY_BITS)
        int_ok = (wfmt == FMT_INT) & (wbits >= DW_INT_BITS[0]) & (wbits <= DW_INT_BITS[-1])
        x2_ok = (wfmt == FMT_POW2X2) & (wbits == 8)
        bad_fmt = Mux(is_dense, ~(pow2_ok | bin_ok | x2_ok), ~(pow2_ok | bin_ok | int_ok))
        bad_sizes = (
            (cin == 0) | (cout == 0) | (H == 0) | (W == 0)
            | (f.out_bits < OUT_BITS_MIN) | (f.out_bits > OUT_BITS_MAX)
        )  # fmt: skip
        bad_conv = (
            (H + 2 * pad < k) | (W + 2 * pad < k) | (Ho != ho_exp) | (Wo != wo_exp)
            | (is_dw & (cin != cout))
        )  # fmt: skip
        bad_add = (cin != cout) | (H != Ho) | (W != Wo)
        bad_buf = (
            (f.slot_words > hp.bank_words)
            | (f.go > hp.channel_groups)
            | (is_dense & (f.blocks > hp.weight_blocks))
        )
        # In the contract's order: the first error with a true term names the error. Each term
        # is a register of its own; the OR of an error's terms happens after them.
        conditions = [
            (ERR_OPCODE, [~(conv | (op == OP_ADD))]),
            (ERR_SHAPE, [conv & bad_kernel, conv & bad_fmt]),
            (ERR_STRIP, [conv & ((f.strip_width == 0) | (f.strip_width > hp.cfg.max_strip))]),
            (ERR_SIZES, [bad_sizes, conv & bad_conv, (op == OP_ADD) & bad_add]),
            (ERR_BUFFER, [conv & bad_buf]),
        ]
        flags = []
        for code, terms in conditions:
            flags.append(Signal(len(terms), name=f"flags_{code}"))
            m.d.sync += flags[-1].eq(Cat(*terms))
        for i, (code, _) in enumerate(conditions):
            with (m.If if i == 0 else m.Elif)(flags[i].any()):
                m.d.comb += self.error.eq(code)
        return m
