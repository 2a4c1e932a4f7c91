"""Integer limits of the arithmetic contract (docs/arithmetic.md sections 4 and 5).

The artifact loader refuses constants beyond them, the reference and the RTL are built to them
(``hw/requant.py`` sizes its accumulators with ACC_BITS), and ``quant/`` chooses multipliers
within them: one definition for all.
"""

from __future__ import annotations

ACC_BITS = 32  # signed accumulators (section 4.3): no adder ever wraps
ACC_MIN, ACC_MAX = -(2 ** (ACC_BITS - 1)), 2 ** (ACC_BITS - 1) - 1
MULT_BITS = 16  # M_pos, M_neg, M_a, M_c are unsigned 16-bit
MULT_MAX = 2**MULT_BITS - 1
SHIFT_MAX = 47  # the 48-bit product P = acc * M never needs a larger shift
SHIFT_BITS = SHIFT_MAX.bit_length()  # 6: the bits of a shift the RTL keeps
