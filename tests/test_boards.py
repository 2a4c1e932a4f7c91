"""deploy/boards.py and the board files: the three boards load with the values the block design
relies on, and every kind of broken board file fails in one line naming the file and field."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# deploy/ is not an installed package: it is imported from the checkout.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deploy import boards  # noqa: E402
from sw.contract.config import AccelConfig  # noqa: E402

NAMES = ["pynq-z2", "ultra96v2", "zcu104"]


def test_board_names_and_load_all() -> None:
    assert boards.board_names() == NAMES
    loaded = boards.load_all()
    assert list(loaded) == NAMES
    for name, b in loaded.items():
        assert b.name == name and b.path == boards.BOARDS_DIR / name / "board.toml"
        assert boards.load(b.path) == b  # a path loads the same board as the name


@pytest.mark.parametrize("name", NAMES)
def test_board_consistency(name: str) -> None:
    b = boards.load(name)
    assert isinstance(b.accel, AccelConfig) and b.accel.check() is b.accel
    assert b.accel.clock_mhz == b.pl_clock_mhz
    assert b.hp_width == boards.HP_PORTS[b.ps][b.hp_port]
    assert b.gp_port in boards.GP_PORTS[b.ps]
    # The part's family is the PS's: Zynq-7000 parts are xc7z..., ZynqMP parts xczu....
    assert b.part.startswith("xczu" if b.ps == "zynqmp" else "xc7z")
    # board_part is vendor:board:part0:version (what get_board_parts lists).
    assert re.fullmatch(r"[a-z0-9.]+:[a-z0-9_-]+:part0:\d+\.\d+", b.board_part), b.board_part
    # Every fabric of these families has two flip-flops per LUT (DS190, DS891).
    assert b.resources["ff"] == 2 * b.resources["lut"]
    assert b.ddr_gbps > 0 and b.ddr_source and b.resources_source
    # The master is the HP port's width or wider (then the SmartConnect converts).
    assert b.accel.data_width >= b.hp_width or b.ps == "zynq"
    # The RTL's dense engine needs as many output lanes as lanes (hw/params.py).
    assert b.accel.dense_out_lanes == b.accel.lanes
    for k in b.ps_fallback:
        assert k.startswith(boards.PS_CONFIG_PREFIX[b.ps])


def test_board_values() -> None:
    """The figures of the issue: lanes per board, the width converter only on zcu104, the PS
    clocks (200 MHz on ZynqMP, 100 MHz on the Zynq-7000)."""
    pz, u96, z104 = (boards.load(n) for n in NAMES)
    assert (pz.accel.lanes, u96.accel.lanes, z104.accel.lanes) == (8, 16, 32)
    assert (pz.ps, u96.ps, z104.ps) == ("zynq", "zynqmp", "zynqmp")
    assert (pz.hp_width, u96.hp_width, z104.hp_width) == (64, 128, 128)
    assert [b.width_converted for b in (pz, u96, z104)] == [False, False, True]
    assert (pz.pl_clock_mhz, u96.pl_clock_mhz, z104.pl_clock_mhz) == (100.0, 200.0, 200.0)
    assert (pz.part, u96.part, z104.part) == (
        "xc7z020clg400-1", "xczu3eg-sbva484-1-i", "xczu7ev-ffvc1156-2-e")  # fmt: skip
    # PYNQ-Z2's board files are not part of Vivado: the fallback names its DDR and PS clock.
    assert pz.ps_fallback["PCW_CRYSTAL_PERIPHERAL_FREQMHZ"] == "50"
    assert pz.ps_fallback["PCW_UIPARAM_DDR_BUS_WIDTH"] == "16 Bit"
    assert u96.ps_fallback == {} and z104.ps_fallback == {}


# -- broken board files -----------------------------------------------------------------------


def _variant(tmp_path: Path, edit, name: str = "ultra96v2") -> Path:
    """A copy of a board file under tmp_path/<name>/board.toml with ``edit`` applied to the
    text."""
    text = (boards.BOARDS_DIR / name / "board.toml").read_text()
    new = edit(text)
    assert new != text, "the edit changed nothing"
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    (d / "board.toml").write_text(new)
    return d / "board.toml"


def _sub(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return edit


CASES = [
    ("unknown", _sub('ps = "zynqmp"', 'ps = "zynqmp"\ncolour = "red"'), "colour: unknown field"),
    ("name", _sub('name = "ultra96v2"', 'name = "ultra96"'), "name: 'ultra96' differs"),
    ("ps", _sub('ps = "zynqmp"', 'ps = "versal"'), "ps: 'versal' is not one of"),
    ("missing", _sub('part = "xczu3eg-sbva484-1-i"\n', ""), "part: missing"),
    ("type", _sub("pl_clock_mhz = 200.0", 'pl_clock_mhz = "fast"'), "pl_clock_mhz: 'fast' is"),
    ("clock", _sub("pl_clock_mhz = 200.0", "pl_clock_mhz = 900.0"), "outside 10..500"),
    ("ddr", _sub("ddr_gbps = 4.26", "ddr_gbps = 0"), "ddr_gbps: 0.0 must be > 0"),
    ("hp", _sub('hp_port = "S_AXI_HP0_FPD"', 'hp_port = "S_AXI_HP0"'),
     "hp_port: 'S_AXI_HP0' is not an HP port of zynqmp"),
    ("hp_width", _sub("hp_width = 128", "hp_width = 64"), "hp_width: 64: S_AXI_HP0_FPD is 128"),
    ("gp", _sub('gp_port = "M_AXI_HPM0_FPD"', 'gp_port = "M_AXI_GP0"'),
     "gp_port: 'M_AXI_GP0' is not a master port"),
    ("res_missing", _sub("dsp = 360\n", ""), "resources.dsp: missing"),
    ("res_neg", _sub("dsp = 360", "dsp = -1"), "resources.dsp: -1 must be > 0"),
    ("res_unknown", _sub("dsp = 360", "dsp = 360\nuram = 0"), "resources.uram: unknown field"),
    ("accel_field", _sub("lanes = 16", "lanes = 16\nturbo = 1"),
     "accel.turbo: not an AccelConfig field"),
    ("accel_check", _sub("lanes = 16", "lanes = 12"), "accel: lanes = 12: must be a power"),
    ("accel_clock", _sub("\nclock_mhz = 200.0", "\nclock_mhz = 150.0"),
     "accel.clock_mhz: 150.0 differs from pl_clock_mhz = 200.0"),
    ("toml", _sub('name = "ultra96v2"', 'name = "ultra96v2'), "not valid TOML"),
    ("bool", _sub("hp_width = 128", "hp_width = true"), "hp_width: True is not int"),
    ("fallback_prefix", _sub("[resources]", '[ps_fallback]\nPCW_UART0_PERIPHERAL_ENABLE = "1"\n'
                                            "[resources]"),
     "ps_fallback.PCW_UART0_PERIPHERAL_ENABLE: not a zynqmp PS setting"),
    ("fallback_brace", _sub("[resources]", '[ps_fallback]\nPSU__X = "a} b"\n[resources]'),
     "ps_fallback.PSU__X: 'a} b': braces"),
    ("fallback_type", _sub("[resources]", "[ps_fallback]\nPSU__X = [1]\n[resources]"),
     "ps_fallback.PSU__X: [1] is not a string or a number"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "edit", "message"), CASES, ids=[c[0] for c in CASES])
def test_broken_board_file(tmp_path: Path, case: str, edit, message: str) -> None:
    path = _variant(tmp_path, edit)
    with pytest.raises(boards.BoardError) as e:
        boards.load(path)
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: "), text
    assert message in text, text


def test_missing_board() -> None:
    with pytest.raises(boards.BoardError, match=r"no such board file \(boards: pynq-z2, "):
        boards.load("no-such-board")


def test_fallback_numbers_become_strings(tmp_path: Path) -> None:
    path = _variant(tmp_path, _sub("[resources]", "[ps_fallback]\nPSU__N = 50\n[resources]"))
    assert boards.load(path).ps_fallback == {"PSU__N": "50"}


def test_zynq_board_rules(tmp_path: Path) -> None:
    """The Zynq-7000 port tables: 64-bit HP ports, GP masters."""
    bad = _variant(tmp_path, _sub('hp_port = "S_AXI_HP0"', 'hp_port = "S_AXI_HP0_FPD"'),
                   "pynq-z2")  # fmt: skip
    with pytest.raises(boards.BoardError, match="hp_port: 'S_AXI_HP0_FPD' is not an HP port"):
        boards.load(bad)
    ok = _variant(tmp_path, _sub('hp_port = "S_AXI_HP0"', 'hp_port = "S_AXI_HP2"'), "pynq-z2")
    assert boards.load(ok).hp_port == "S_AXI_HP2"
