"""The AXI4-Lite register map of ``pow2det_accel`` (docs/accelerator-interface.md, Registers).

One table, :data:`REGISTERS`, says for every register its byte offset, name, access and bit
fields. The RTL's register file (``hw/regfile.py``), the emulator (``sw/emu.py``), the driver
(``sw/driver.py``) and the testbenches read their offsets and bits from here, and
``tests/test_contract.py`` compares the table with the one in the interface document row by
row, so the document, the hardware and the software cannot disagree about a register.
"""

from __future__ import annotations

from dataclasses import dataclass

from sw.contract.config import AccelConfig

# Access of a whole register or of one field, as the document writes it. W1P: write 1 to pulse
# (CTRL.START: a write of 1 starts a run; the bit reads 0).
RW, RO, W1C, W1P, R_W1C = "RW", "RO", "W1C", "W1P", "R/W1C"

ACCEL_ID = 0x50324441  # "P2DA", the ID register
INTERFACE_VERSION = 1  # CONFIG.VERSION: this document's version


@dataclass(frozen=True)
class Field:
    """``width`` bits of a register from bit ``lsb``; ``access`` where it differs from the
    register's (STATUS.BUSY is read-only in a write-1-to-clear register)."""

    name: str
    lsb: int
    width: int = 1
    access: str = ""

    @property
    def mask(self) -> int:
        """The field's bits in the register; for a one-bit field, the value to write or test."""
        return ((1 << self.width) - 1) << self.lsb

    def get(self, word: int) -> int:
        return (word >> self.lsb) & ((1 << self.width) - 1)

    def put(self, value: int) -> int:
        """``value`` at the field's place (masked to its width, as the RTL wires it)."""
        return (value & ((1 << self.width) - 1)) << self.lsb


@dataclass(frozen=True)
class Register:
    offset: int
    name: str
    access: str
    fields: tuple[Field, ...] = ()

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name}")

    @property
    def word(self) -> int:
        """The 32-bit word index the AXI-Lite decoder compares (byte offset / 4)."""
        return self.offset >> 2


REGISTERS: tuple[Register, ...] = (
    Register(0x00, "CTRL", RW, (Field("START", 0, 1, W1P), Field("IRQ_EN", 1))),
    Register(
        0x04,
        "STATUS",
        R_W1C,
        (Field("BUSY", 0, 1, RO), Field("DONE", 1, 1, W1C), Field("ERROR", 2, 1, W1C)),
    ),
    Register(0x08, "ERROR_CODE", RO),
    Register(0x0C, "ERROR_INDEX", RO),
    Register(0x10, "DESC_ADDR", RW),
    Register(0x14, "DESC_COUNT", RW),
    Register(0x18, "ID", RO),
    Register(
        0x1C,
        "CONFIG",
        RO,
        (Field("LANES", 0, 8), Field("MAX_STRIP", 8, 8), Field("VERSION", 16, 4)),
    ),
    Register(0x20, "CONFIG2", RO, (Field("WEIGHT_LINES", 0, 16), Field("INPUT_WORDS16", 16, 16))),
    Register(0x24, "DESC_DONE", RO),
    Register(0x30, "PERF_TOTAL", RO),
    Register(0x34, "PERF_DENSE", RO),
    Register(0x38, "PERF_DW", RO),
    Register(0x3C, "PERF_ELTWISE", RO),
    Register(0x40, "PERF_MEM_STALL", RO),
)
BY_NAME: dict[str, Register] = {r.name: r for r in REGISTERS}
ADDR_BITS = 12  # the AXI4-Lite byte address (s_axi_control_awaddr / araddr)

# Byte offsets, by name (the driver's and the emulator's vocabulary).
REG_CTRL = BY_NAME["CTRL"].offset
REG_STATUS = BY_NAME["STATUS"].offset
REG_ERROR_CODE = BY_NAME["ERROR_CODE"].offset
REG_ERROR_INDEX = BY_NAME["ERROR_INDEX"].offset
REG_DESC_ADDR = BY_NAME["DESC_ADDR"].offset
REG_DESC_COUNT = BY_NAME["DESC_COUNT"].offset
REG_ID = BY_NAME["ID"].offset
REG_CONFIG = BY_NAME["CONFIG"].offset
REG_CONFIG2 = BY_NAME["CONFIG2"].offset
REG_DESC_DONE = BY_NAME["DESC_DONE"].offset
REG_PERF_TOTAL = BY_NAME["PERF_TOTAL"].offset
REG_PERF_DENSE = BY_NAME["PERF_DENSE"].offset
REG_PERF_DW = BY_NAME["PERF_DW"].offset
REG_PERF_ELTWISE = BY_NAME["PERF_ELTWISE"].offset
REG_PERF_MEM_STALL = BY_NAME["PERF_MEM_STALL"].offset

# Fields and their bits.
F_START = BY_NAME["CTRL"].field("START")
F_IRQ_EN = BY_NAME["CTRL"].field("IRQ_EN")
F_BUSY = BY_NAME["STATUS"].field("BUSY")
F_DONE = BY_NAME["STATUS"].field("DONE")
F_ERROR = BY_NAME["STATUS"].field("ERROR")
CTRL_START, CTRL_IRQ_EN = F_START.mask, F_IRQ_EN.mask
STATUS_BUSY, STATUS_DONE, STATUS_ERROR = F_BUSY.mask, F_DONE.mask, F_ERROR.mask
# The sticky bits a write of 1 clears (DONE | ERROR), read off the table.
STATUS_W1C = sum(f.mask for f in BY_NAME["STATUS"].fields if f.access == W1C)
F_LANES, F_MAX_STRIP, F_VERSION = (
    BY_NAME["CONFIG"].field(n) for n in ("LANES", "MAX_STRIP", "VERSION")
)
F_WEIGHT_LINES = BY_NAME["CONFIG2"].field("WEIGHT_LINES")
F_INPUT_WORDS16 = BY_NAME["CONFIG2"].field("INPUT_WORDS16")
WEIGHT_LINE_BYTES = 64  # CONFIG2.WEIGHT_LINES counts 64-byte lines
INPUT_WORD_UNIT = 16  # CONFIG2.INPUT_WORDS16 counts L-byte words / 16


def config_registers(cfg: AccelConfig) -> tuple[int, int]:
    """CONFIG and CONFIG2 as the RTL of build ``cfg`` reports them (each field masked to its
    width, as the wires are)."""
    config = F_LANES.put(cfg.lanes) | F_MAX_STRIP.put(cfg.max_strip)
    config |= F_VERSION.put(INTERFACE_VERSION)
    config2 = F_WEIGHT_LINES.put(cfg.weight_buffer_bytes // WEIGHT_LINE_BYTES)
    config2 |= F_INPUT_WORDS16.put(cfg.input_buffer_words // INPUT_WORD_UNIT)
    return config, config2


def decode_config(config: int, config2: int) -> dict[str, int]:
    """What CONFIG and CONFIG2 say about a build, in AccelConfig's units (the driver compares
    this with the plan's AccelConfig)."""
    return {
        "interface version": F_VERSION.get(config),
        "lanes": F_LANES.get(config),
        "max_strip": F_MAX_STRIP.get(config),
        "weight_buffer_bytes": F_WEIGHT_LINES.get(config2) * WEIGHT_LINE_BYTES,
        "input_buffer_words": F_INPUT_WORDS16.get(config2) * INPUT_WORD_UNIT,
    }


# ERROR_CODE values. The RTL's CHECK (and the emulator) test opcode, shape, strip, sizes, then
# buffers, so a descriptor wrong in two ways reports the first; AXI errors come from the run.
ERR_NONE, ERR_OPCODE, ERR_SHAPE, ERR_STRIP, ERR_BUFFER, ERR_AXI, ERR_SIZES = range(7)
ERROR_BITS = 4  # the ERROR_CODE register's significant bits
ERROR_NAMES: dict[int, str] = {
    ERR_NONE: "none",
    ERR_OPCODE: "unknown opcode",
    ERR_SHAPE: "unsupported kernel, stride or padding",
    ERR_STRIP: "strip too wide",
    ERR_BUFFER: "a buffer too small for the layer",
    ERR_AXI: "AXI error response",
    ERR_SIZES: "inconsistent sizes",
}
