"""The accelerator's contract in code: the ground floor every other package reads.

Registers (``registers``), the descriptor layout (``descriptor``), the build parameters
(``config``), the on-chip buffer sizes derived from them (``buffers``), the DDR layout and
packing (``layout``), the weight codes (``codes``), the integer limits (``arith``), how
constants are chosen within them (``requant``), the IP's identity (``ip``) and the cycle model
(``cycles``). Numpy and the standard library only, importing
nothing of hw/, sim/, quant/ or models/, so the board runtime, the RTL, the testbenches and the
quantizer share one definition of each constant (README.md in this folder; tests/test_contract.py
checks the rule and the interface document).
"""
