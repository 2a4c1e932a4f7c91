"""Board descriptions: ``deploy/boards/<name>/board.toml``, loaded as a frozen :class:`Board`.

The board file is the one place a board is described (part, PS, ports, clock, DDR, resources
and the accelerator's AccelConfig); the Tcl generator and the make targets read it from here.
Every problem is one line, ``<file>: <field>: <problem>`` (:class:`BoardError`).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from sw.contract.config import AccelConfig, ConfigError

BOARDS_DIR = Path(__file__).resolve().parent / "boards"
PS_KINDS = ("zynq", "zynqmp")
# The ports each PS offers for the master (HP) and the registers (GP), with their data widths.
HP_PORTS = {"zynq": {"S_AXI_HP0": 64, "S_AXI_HP1": 64, "S_AXI_HP2": 64, "S_AXI_HP3": 64},
            "zynqmp": {f"S_AXI_HP{i}_FPD": 128 for i in range(4)}}  # fmt: skip
GP_PORTS = {"zynq": ("M_AXI_GP0", "M_AXI_GP1"),
            "zynqmp": ("M_AXI_HPM0_FPD", "M_AXI_HPM1_FPD", "M_AXI_HPM0_LPD")}  # fmt: skip
RESOURCES = ("lut", "ff", "dsp", "bram36")
# The prefix of the PS IP's configuration names (processing_system7, zynq_ultra_ps_e).
PS_CONFIG_PREFIX = {"zynq": "PCW_", "zynqmp": "PSU__"}


class BoardError(ValueError):
    """A missing or invalid board file; the message is one line naming the file and field."""


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    board_part: str
    ps: str
    pl_clock_mhz: float
    ddr_gbps: float
    ddr_source: str
    hp_port: str
    hp_width: int
    gp_port: str
    resources: dict[str, int]
    resources_source: str
    accel: AccelConfig
    path: Path
    # PS configuration (CONFIG.<name> = value) the block design applies only when Vivado has
    # no board files for board_part (optional; the board preset covers it otherwise).
    ps_fallback: dict[str, str] = field(default_factory=dict)

    @property
    def width_converted(self) -> bool:
        """True when the master is wider than the HP port (SmartConnect converts the width)."""
        return self.accel.data_width > self.hp_width


def board_names() -> list[str]:
    return sorted(p.parent.name for p in BOARDS_DIR.glob("*/board.toml"))


def board_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml":
        return p
    return BOARDS_DIR / str(name_or_path) / "board.toml"


def load(name_or_path: str | Path) -> Board:
    """The board ``name`` (a folder of deploy/boards) or a board.toml path."""
    path = board_path(name_or_path)
    if not path.is_file():
        raise BoardError(f"{path}: no such board file (boards: {', '.join(board_names())})")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BoardError(f"{path}: not valid TOML: {e}") from None

    def bad(field: str, why: str) -> BoardError:
        return BoardError(f"{path}: {field}: {why}")

    def get(field: str, typ: type | tuple, table: dict = data, prefix: str = "") -> object:
        if field not in table:
            raise bad(prefix + field, "missing")
        v = table[field]
        if isinstance(v, bool) or not isinstance(v, typ):
            raise bad(prefix + field, f"{v!r} is not {getattr(typ, '__name__', 'a number')}")
        return v

    known = {f.name for f in dataclasses.fields(Board)} - {"path"}
    for k in data:
        if k not in known:
            raise bad(k, "unknown field")
    name = get("name", str)
    if name != path.parent.name:
        raise bad("name", f"{name!r} differs from the folder name {path.parent.name!r}")
    ps = get("ps", str)
    if ps not in PS_KINDS:
        raise bad("ps", f"{ps!r} is not one of {', '.join(PS_KINDS)}")
    num = (int, float)
    clock = float(get("pl_clock_mhz", num))
    if not 10 <= clock <= 500:
        raise bad("pl_clock_mhz", f"{clock} is outside 10..500")
    ddr = float(get("ddr_gbps", num))
    if not ddr > 0:
        raise bad("ddr_gbps", f"{ddr} must be > 0")
    hp = get("hp_port", str)
    if hp not in HP_PORTS[ps]:
        raise bad("hp_port", f"{hp!r} is not an HP port of {ps} ({', '.join(HP_PORTS[ps])})")
    hp_width = get("hp_width", int)
    if hp_width != HP_PORTS[ps][hp]:
        raise bad("hp_width", f"{hp_width}: {hp} is {HP_PORTS[ps][hp]}-bit")
    gp = get("gp_port", str)
    if gp not in GP_PORTS[ps]:
        raise bad("gp_port", f"{gp!r} is not a master port of {ps} ({', '.join(GP_PORTS[ps])})")
    res_t = get("resources", dict)
    res: dict[str, int] = {}
    for k in RESOURCES:
        v = get(k, int, res_t, "resources.")
        if v <= 0:
            raise bad(f"resources.{k}", f"{v} must be > 0")
        res[k] = v
    for k in res_t:
        if k not in RESOURCES:
            raise bad(f"resources.{k}", "unknown field")
    accel_t = get("accel", dict)
    fields = {f.name for f in dataclasses.fields(AccelConfig)}
    for k in accel_t:
        if k not in fields:
            raise bad(f"accel.{k}", "not an AccelConfig field")
    try:
        accel = AccelConfig(**accel_t).check()
    except ConfigError as e:
        raise bad("accel", str(e)) from None
    if accel.clock_mhz != clock:
        raise bad("accel.clock_mhz", f"{accel.clock_mhz} differs from pl_clock_mhz = {clock}")
    fallback: dict[str, str] = {}
    if "ps_fallback" in data:
        for k, v in get("ps_fallback", dict).items():
            if not k.startswith(PS_CONFIG_PREFIX[ps]):
                raise bad(f"ps_fallback.{k}", f"not a {ps} PS setting ({PS_CONFIG_PREFIX[ps]}...)")
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise bad(f"ps_fallback.{k}", f"{v!r} is not a string or a number")
            # The Tcl writer braces values: braces, backslashes or newlines would break out.
            if any(c in str(v) for c in "{}\\\n"):
                raise bad(f"ps_fallback.{k}", f"{v!r}: braces, backslashes, newlines not allowed")
            fallback[k] = str(v)
    return Board(
        name=name, part=get("part", str), board_part=get("board_part", str), ps=ps,
        pl_clock_mhz=clock, ddr_gbps=ddr, ddr_source=get("ddr_source", str), hp_port=hp,
        hp_width=hp_width, gp_port=gp, resources=res,
        resources_source=get("resources_source", str), accel=accel, path=path,
        ps_fallback=fallback,
    )  # fmt: skip


def load_all() -> dict[str, Board]:
    return {n: load(n) for n in board_names()}
