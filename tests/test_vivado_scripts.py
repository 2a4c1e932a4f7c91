"""The Vivado Tcl of deploy/vivado/ for every board, checked without Vivado.

* Debian's ``tclsh`` splits every script into complete commands (``info complete``);
* the scripts are *run* by ``tclsh`` against a stand-in for Vivado's commands (the ``unknown``
  handler below records every call it did not know and returns a handle), and the test reads
  the recorded calls: the IP-XACT register map against ``sw/contract/registers.py``, the bus
  interfaces' port maps and widths against ``hw/ports.py``, the block design's ports, clock,
  interrupt path and IP names against the board file;
* the failure paths of the scripts: a Verilog port of the wrong width, a negative WNS or WHS
  (no bitstream is written), missing board files (the fallback PS settings apply);
* ``make bitstream`` without Vivado (one line, non-zero) and with a stand-in ``vivado``.

No Verilog is elaborated: the scripts need only the board's configuration and the port names.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# deploy/ is not an installed package: it is imported from the checkout.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deploy import boards  # noqa: E402
from deploy.vivado import bitstream, tcl  # noqa: E402
from hw import ports  # noqa: E402
from sw.contract import ip  # noqa: E402
from sw.contract.registers import ADDR_BITS, REGISTERS  # noqa: E402

TCLSH = shutil.which("tclsh")
pytestmark = pytest.mark.skipif(TCLSH is None, reason="no tclsh (Debian: apt-get install tcl)")
BOARDS = boards.board_names()

# The stand-in for Vivado. Every command tclsh does not know lands in `unknown`, which logs
# "CALL <handle> <command> <args...>" (fields separated by \x1f, newlines as \x1e) and returns
# a value: the path for get_bd_* and create_bd_cell, port handles for the ports of MOCK_PORTS,
# the configured slack for timing paths, a fresh handle otherwise. Commands that write reports
# or the bitstream create their file, so the outputs of a build can be checked.
MOCK_TCL = r"""
set ::mock_log [open $::env(MOCK_LOG) w]
set ::mock_n 0
source $::env(MOCK_PORTS)
proc mock_file {path} { set f [open $path w]; puts $f mock; close $f }
proc mock_value {cmd argv} {
    switch -glob -- $cmd {
        version { return $::env(MOCK_VERSION) }
        get_board_parts {
            set want [lindex $argv end]
            set r {}
            foreach b $::env(MOCK_BOARD_PARTS) { if {[string match $want $b]} { lappend r $b } }
            return $r
        }
        get_ipdefs { return [string map {* 9.9} [lindex $argv end]] }
        get_bd_pins - get_bd_intf_pins - get_bd_cells - get_files - create_bd_cell {
            return [lindex $argv end]
        }
        make_wrapper { return /mock/wrapper.v }
        get_timing_paths { return [expr {"-hold" in $argv ? "path:hold" : "path:setup"}] }
        ipx::get_ports {
            set name [lindex $argv 1]
            return [expr {[dict exists $::mock_ports $name] ? "port:$name" : ""}]
        }
        ipx::get_* { if {[lindex $argv 0] eq "-quiet"} { return {} } }
        get_property {
            lassign $argv prop obj
            if {[string match port:* $obj]} {
                lassign [dict get $::mock_ports [string range $obj 5 end]] dir left right
                set d [dict create direction $dir size_left $left size_right $right]
                return [dict get $d $prop]
            }
            switch -- $prop {
                PROGRESS { return 100% }
                STATUS { return $::env(MOCK_IMPL_STATUS) }
                DIRECTORY { return /mock/run }
                SLACK { return [expr {$obj eq "path:hold" ? $::env(MOCK_WHS) : $::env(MOCK_WNS)}] }
                name { return $obj }
            }
        }
        write_bitstream { mock_file [lindex $argv end] }
        report_utilization - report_timing_summary {
            mock_file [lindex $argv [expr {[lsearch $argv -file] + 1}]]
        }
    }
    return "obj[incr ::mock_n]"
}
proc unknown {cmd args} {
    set r [mock_value $cmd $args]
    set parts [list CALL $r $cmd]
    foreach a $args { lappend parts [string map [list \n \x1e] $a] }
    puts $::mock_log [join $parts \x1f]
    flush $::mock_log
    return $r
}
source [lindex $argv 0]
"""

# Splits each file into commands the way Tcl's parser does and fails on an incomplete one.
PARSE_TCL = r"""
set n 0
foreach path $argv {
    set f [open $path]
    set buf ""
    set first 0
    set line_no 0
    while {[gets $f line] >= 0} {
        incr line_no
        if {$buf eq ""} { set first $line_no }
        append buf $line \n
        if {[info complete $buf]} { if {[string trim $buf] ne ""} { incr n }; set buf "" }
    }
    close $f
    if {[string trim $buf] ne ""} { puts "$path:$first: incomplete command"; exit 1 }
}
puts "commands $n"
"""


@dataclass
class Call:
    handle: str
    cmd: str
    args: list[str]


@dataclass
class Run:
    rc: int
    out: str
    calls: list[Call]
    by_handle: dict[str, Call] = field(default_factory=dict)

    def of(self, cmd: str) -> list[Call]:
        return [c for c in self.calls if c.cmd == cmd]

    def props(self, handle: str) -> dict[str, str]:
        """Every ``set_property NAME VALUE $handle`` on one object."""
        out = {}
        for c in self.of("set_property"):
            if c.args[0] != "-dict" and c.args[-1] == handle:
                out[c.args[0]] = c.args[1]
        return out

    def dict_props(self, target: str) -> dict[str, str]:
        """Every ``set_property -dict [list K V ...] target`` merged, in order."""
        out: dict[str, str] = {}
        for c in self.of("set_property"):
            if c.args[0] == "-dict" and c.args[-1] == target:
                words = tcl_list(c.args[1])
                out.update(zip(words[::2], words[1::2], strict=True))
        return out


def tcl_list(text: str) -> list[str]:
    """A Tcl list's elements, split by tclsh itself."""
    r = subprocess.run([TCLSH], input=f"puts [join [list {{*}}{{{text}}}] \\x1f]\n",
                       capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    return r.stdout.rstrip("\n").split("\x1f")


def port_table(data_width: int, override: dict[str, tuple[str, int]] | None = None,
               exact: dict[str, tuple[str, int]] | None = None) -> str:  # fmt: skip
    """``set ::mock_ports`` for the mock: the ports a Verilog of this width would have
    (``override`` changes some; ``exact``: these ports and no others)."""
    widths = exact if exact is not None else {**tcl.port_widths(data_width), **(override or {})}
    items = []
    for name, (d, w) in widths.items():
        items.append(f"{name} {{{d} {{}} {{}}}}" if w == 1 else f"{name} {{{d} {w - 1} 0}}")
    return "set ::mock_ports [dict create " + " ".join(items) + "]\n"


def write_mock(tmp: Path, board: boards.Board, ports_override=None, ports_exact=None) -> Path:
    mock = tmp / "mock.tcl"
    mock.write_text(MOCK_TCL)
    table = port_table(board.accel.data_width, ports_override, ports_exact)
    (tmp / "ports.tcl").write_text(table)
    return mock


def mock_env(tmp: Path, board: boards.Board, *, wns: float = 0.25, whs: float = 0.02,
             version: str = "2022.1", board_files: bool = True,
             board_parts: str | None = None,
             impl_status: str = "route_design Complete!") -> dict[str, str]:  # fmt: skip
    """The mock's settings; ``board_parts``: the installed board parts (default: the board's
    own where ``board_files``, else none)."""
    if board_parts is None:
        board_parts = board.board_part if board_files else ""
    return {
        **os.environ, "MOCK_LOG": str(tmp / "calls.log"), "MOCK_PORTS": str(tmp / "ports.tcl"),
        "MOCK_VERSION": version, "MOCK_IMPL_STATUS": impl_status, "MOCK_WNS": str(wns),
        "MOCK_WHS": str(whs),
        "MOCK_BOARD_PARTS": board_parts,
    }  # fmt: skip


def read_log(path: Path) -> list[Call]:
    calls = []
    for line in path.read_text().splitlines():
        parts = [p.replace("\x1e", "\n") for p in line.split("\x1f")]
        assert parts[0] == "CALL"
        calls.append(Call(parts[1], parts[2], parts[3:]))
    return calls


def run_build(tmp: Path, board: boards.Board, ports_override=None, ports_exact=None,
              **env_kw) -> Run:  # fmt: skip
    """build.tcl of ``board`` (written into tmp) under the mock, with the Verilog present and
    a .hwh where Vivado 2022 leaves it."""
    tcl.write_scripts(board, tmp)
    d = tmp / board.name
    (d / "verilog").mkdir(exist_ok=True)
    (d / "verilog" / f"{ip.IP_NAME}.v").write_text("// stand-in\n")
    hwh = d / "vivado" / "pow2det.gen" / "sources_1" / "bd" / tcl.BD_NAME / "hw_handoff"
    hwh.mkdir(parents=True, exist_ok=True)
    (hwh / f"{tcl.BD_NAME}.hwh").write_text("<hwh/>\n")
    mock = write_mock(tmp, board, ports_override, ports_exact)
    r = subprocess.run([TCLSH, str(mock), str(d / "scripts" / "build.tcl")],
                       env=mock_env(tmp, board, **env_kw), capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    calls = read_log(tmp / "calls.log")
    return Run(r.returncode, r.stdout + r.stderr, calls, {c.handle: c for c in calls})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """A passing mock build of every board."""
    out = {}
    for name in BOARDS:
        out[name] = run_build(tmp_path_factory.mktemp(name), boards.load(name))
    return out


# -- the scripts parse and run ----------------------------------------------------------------


def test_scripts_written_for_every_board(tmp_path: Path) -> None:
    for name in BOARDS:
        paths = tcl.write_scripts(boards.load(name), tmp_path)
        assert sorted(p.name for p in paths) == sorted([*tcl.SCRIPT_NAMES, "config.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(BOARDS)


def test_tclsh_parses_every_script(tmp_path: Path) -> None:
    files = []
    for name in BOARDS:
        files += [p for p in tcl.write_scripts(boards.load(name), tmp_path) if p.suffix == ".tcl"]
    parse = tmp_path / "parse.tcl"
    parse.write_text(PARSE_TCL)
    r = subprocess.run([TCLSH, str(parse), *map(str, files)], capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert int(r.stdout.split()[-1]) > 100 * len(BOARDS)
    # The parser check can fail: an unbalanced brace is reported with its file and line.
    bad = tmp_path / "bad.tcl"
    bad.write_text("set a 1\nif {$a} {\n    puts x\n")
    r = subprocess.run([TCLSH, str(parse), str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "bad.tcl:2: incomplete command" in r.stdout


@pytest.mark.parametrize("name", BOARDS)
def test_mock_build_passes(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    assert run.rc == 0, run.out
    assert "WARNING" not in run.out
    out = str(tcl.out_dir(boards.load(name), Path("/")))  # the board's folder, any root
    bits = run.of("write_bitstream")
    assert len(bits) == 1 and bits[0].args[-1].endswith(out + "/pow2det.bit")


# -- the IP: register map, interfaces, ports --------------------------------------------------


def _core_children(run: Run, cmd: str, parent: str) -> dict[str, Call]:
    return {c.args[0]: c for c in run.of(cmd) if c.args[-1] == parent}


@pytest.mark.parametrize("name", BOARDS)
def test_register_map_matches_contract(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    (core,) = {c.handle for c in run.of("ipx::current_core")}
    maps = _core_children(run, "ipx::add_memory_map", core)
    assert list(maps) == [ip.LITE_INTERFACE]
    blocks = _core_children(run, "ipx::add_address_block", maps[ip.LITE_INTERFACE].handle)
    assert list(blocks) == [tcl.REG_BLOCK]
    block = blocks[tcl.REG_BLOCK].handle
    bp = run.props(block)
    assert int(bp["range"], 0) == 1 << ADDR_BITS and bp["width"] == "32"
    assert bp["usage"] == "register" and int(bp["base_address"], 0) == 0
    regs = _core_children(run, "ipx::add_register", block)
    assert list(regs) == [r.name for r in REGISTERS]  # same names, same order
    for r in REGISTERS:
        h = regs[r.name].handle
        p = run.props(h)
        assert int(p["address_offset"], 0) == r.offset, r.name
        assert p["size"] == "32", r.name
        assert p["description"] == f"access {r.access}", r.name
        assert p["access"] == ("read-only" if r.access == "RO" else "read-write"), r.name
        fields = _core_children(run, "ipx::add_field", h)
        assert list(fields) == [f.name for f in r.fields], r.name
        for f in r.fields:
            fp = run.props(fields[f.name].handle)
            assert (int(fp["bit_offset"]), int(fp["bit_width"])) == (f.lsb, f.width), f.name
            assert fp["description"] == f"access {f.access or r.access}", f.name
    # The offsets the memory map holds are the contract's, word-aligned and inside the block.
    offsets = sorted(int(run.props(c.handle)["address_offset"], 0) for c in regs.values())
    assert all(o % 4 == 0 and o < 1 << ADDR_BITS for o in offsets)
    assert len(set(offsets)) == len(offsets)


def _bus(run: Run, name: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(properties, port map logical -> physical, bus parameters) of a bus interface."""
    (b,) = [c for c in run.of("ipx::add_bus_interface") if c.args[0] == name]
    maps = {}
    for c in run.of("ipx::add_port_map"):
        if c.args[1] == b.handle:
            maps[c.args[0]] = run.props(c.handle)["physical_name"]
    params = {}
    for c in run.of("ipx::add_bus_parameter"):
        if c.args[1] == b.handle:
            params[c.args[0]] = run.props(c.handle)["value"]
    return run.props(b.handle), maps, params


@pytest.mark.parametrize("name", BOARDS)
def test_interfaces_match_ports_and_board(runs: dict[str, Run], name: str) -> None:
    run, board = runs[name], boards.load(name)
    names = {c.args[0] for c in run.of("ipx::add_bus_interface")}
    assert names == {ip.LITE_INTERFACE, ip.MASTER_INTERFACE, ip.CLOCK_PORT, ip.RESET_N_PORT,
                     ip.IRQ_PORT}  # fmt: skip
    every = dict(ports.accel_ports(board.accel.data_width))
    mapped: list[str] = []
    for intf, prefix, mode in ((ip.LITE_INTERFACE, ports.LITE_PREFIX, "slave"),
                               (ip.MASTER_INTERFACE, ports.GMEM_PREFIX, "master")):  # fmt: skip
        props, maps, params = _bus(run, intf)
        assert props["interface_mode"] == mode
        assert props["abstraction_type_vlnv"] == "xilinx.com:interface:aximm_rtl:1.0"
        want = [n for n in every if n.startswith(prefix)]
        assert sorted(maps.values()) == sorted(want)
        assert all(phys == prefix + logical.lower() for logical, phys in maps.items())
        mapped += maps.values()
        if intf == ip.LITE_INTERFACE:
            assert params == {"PROTOCOL": "AXI4LITE", "DATA_WIDTH": "32",
                              "ADDR_WIDTH": str(ADDR_BITS)}  # fmt: skip
        else:
            assert params["PROTOCOL"] == "AXI4"
            assert int(params["DATA_WIDTH"]) == board.accel.data_width == 8 * board.accel.lanes
            assert int(params["ADDR_WIDTH"]) == board.accel.addr_width
            assert int(params["MAX_BURST_LENGTH"]) == board.accel.max_burst
    _, clk, clk_p = _bus(run, ip.CLOCK_PORT)
    assert clk == {"CLK": ip.CLOCK_PORT}
    assert set(clk_p["ASSOCIATED_BUSIF"].split(":")) == {ip.LITE_INTERFACE, ip.MASTER_INTERFACE}
    assert clk_p["ASSOCIATED_RESET"] == ip.RESET_N_PORT
    _, rst, rst_p = _bus(run, ip.RESET_N_PORT)
    assert rst == {"RST": ip.RESET_N_PORT} and rst_p == {"POLARITY": "ACTIVE_LOW"}
    irq_props, irq, irq_p = _bus(run, ip.IRQ_PORT)
    assert irq == {"INTERRUPT": ip.IRQ_PORT} and irq_p == {"SENSITIVITY": "LEVEL_HIGH"}
    assert irq_props["interface_mode"] == "master"
    # Every port of the IP is in exactly one interface.
    mapped += [ip.CLOCK_PORT, ip.RESET_N_PORT, ip.IRQ_PORT]
    assert sorted(mapped) == sorted(every)
    # The master's address space: 32-bit addresses, the master's width.
    (space,) = run.of("ipx::add_address_space")
    sp = run.props(space.handle)
    assert space.args[0] == ip.MASTER_INTERFACE
    assert int(sp["range"]) == 1 << board.accel.addr_width
    assert int(sp["width"]) == board.accel.data_width
    # The IP's identity is the contract's VLNV.
    (core,) = {c.handle for c in run.of("ipx::current_core")}
    cp = run.props(core)
    (pkg,) = run.of("ipx::package_project")
    a = pkg.args
    vlnv = f"{a[a.index('-vendor') + 1]}:{a[a.index('-library') + 1]}:{cp['name']}:{cp['version']}"
    assert vlnv == ip.VLNV


@pytest.mark.parametrize("name", BOARDS)
def test_port_check_queries_every_port(runs: dict[str, Run], name: str) -> None:
    run, board = runs[name], boards.load(name)
    asked = [c.args[1] for c in run.of("ipx::get_ports")]
    assert sorted(asked) == sorted(ports.accel_ports(board.accel.data_width))


def test_wrong_verilog_width_stops_packaging(tmp_path: Path) -> None:
    board = boards.load("ultra96v2")
    wdata = ports.GMEM_PREFIX + "wdata"
    run = run_build(tmp_path, board, {wdata: ("out", 64)})
    assert run.rc != 0
    assert f"port {wdata} is 64 bits, expected {board.accel.data_width}" in run.out
    assert not run.of("create_bd_design") and not run.of("write_bitstream")


def test_missing_verilog_port_stops_packaging(tmp_path: Path) -> None:
    board = boards.load("zcu104")
    (tmp_path / "x").mkdir()
    widths = tcl.port_widths(board.accel.data_width)
    run = run_build(tmp_path / "x", board)
    assert run.rc == 0
    # Drop one port from the stand-in Verilog: the script names it.
    table = port_table(board.accel.data_width).replace(f" {ip.IRQ_PORT} {{out {{}} {{}}}}", "")
    assert ip.IRQ_PORT in widths and table != port_table(board.accel.data_width)
    (tmp_path / "x" / "ports.tcl").write_text(table)
    d = tmp_path / "x" / board.name
    r = subprocess.run([TCLSH, str(tmp_path / "x" / "mock.tcl"), str(d / "scripts" / "build.tcl")],
                       env=mock_env(tmp_path / "x", board), capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode != 0 and f"the Verilog has no port {ip.IRQ_PORT}" in r.stderr


# -- the block design -------------------------------------------------------------------------


def _net_pairs(run: Run, cmd: str) -> set[tuple[str, str]]:
    pairs = set()
    for c in run.of(cmd):
        ends = [a for a in c.args if not a.startswith("-")]
        for other in ends[1:]:
            pairs.add((ends[0], other))
    return pairs


@pytest.mark.parametrize("name", BOARDS)
def test_block_design_matches_board(runs: dict[str, Run], name: str) -> None:
    run, board = runs[name], boards.load(name)
    zynqmp = board.ps == "zynqmp"
    cells = {c.args[-1]: c.args[c.args.index("-vlnv") + 1] for c in run.of("create_bd_cell")}
    assert cells[tcl.ACCEL_CELL] == ip.VLNV and tcl.ACCEL_CELL.startswith(ip.IP_NAME)
    assert cells["ps"] == ("xilinx.com:ip:zynq_ultra_ps_e:9.9" if zynqmp
                           else "xilinx.com:ip:processing_system7:9.9")  # fmt: skip
    assert cells[tcl.INTC_CELL].startswith("xilinx.com:ip:axi_intc:")
    # The board part, its preset.
    (bp,) = [c for c in run.of("set_property") if c.args[0] == "board_part"]
    assert bp.args[1] == board.board_part
    (proj,) = [c for c in run.of("create_project") if c.args[1] == "pow2det"]
    assert proj.args[proj.args.index("-part") + 1] == board.part
    (auto,) = run.of("apply_bd_automation")
    assert auto.args[auto.args.index("-rule") + 1].endswith(
        "zynq_ultra_ps_e" if zynqmp else "processing_system7"
    )
    assert 'apply_board_preset "1"' in auto.args[-2] or "apply_board_preset 1" in auto.args[-2]
    ps = run.dict_props("ps")
    mhz = f"{board.pl_clock_mhz:g}"
    if zynqmp:
        hp = int(board.hp_port[len("S_AXI_HP")])
        assert ps["CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"] == mhz
        assert ps[f"CONFIG.PSU__USE__S_AXI_GP{2 + hp}"] == "1"
        assert int(ps[f"CONFIG.PSU__SAXIGP{2 + hp}__DATA_WIDTH"]) == board.hp_width
        assert ps["CONFIG.PSU__USE__IRQ0"] == "1"
        irq_pin, clk_pin, rst_pin = "ps/pl_ps_irq0", "ps/pl_clk0", "ps/pl_resetn0"
    else:
        hp = int(board.hp_port[len("S_AXI_HP")])
        assert ps["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"] == mhz
        assert ps[f"CONFIG.PCW_USE_S_AXI_HP{hp}"] == "1"
        assert int(ps[f"CONFIG.PCW_S_AXI_HP{hp}_DATA_WIDTH"]) == board.hp_width
        assert ps[f"CONFIG.PCW_USE_{board.gp_port}"] == "1"
        assert ps["CONFIG.PCW_USE_FABRIC_INTERRUPT"] == ps["CONFIG.PCW_IRQ_F2P_INTR"] == "1"
        irq_pin, clk_pin, rst_pin = "ps/IRQ_F2P", "ps/FCLK_CLK0", "ps/FCLK_RESET0_N"
    intf = _net_pairs(run, "connect_bd_intf_net")
    accel = tcl.ACCEL_CELL
    # Registers: the GP master -> SmartConnect -> the IP's slave and the interrupt controller's.
    assert (f"ps/{board.gp_port}", "ctrl_smc/S00_AXI") in intf
    slaves = {b for a, b in intf if a.startswith("ctrl_smc/M")}
    assert slaves == {f"{accel}/{ip.LITE_INTERFACE}", f"{tcl.INTC_CELL}/s_axi"}
    # The master reaches the board's HP port, through a SmartConnect exactly when the widths
    # differ or the port is AXI3.
    master = f"{accel}/{ip.MASTER_INTERFACE}"
    if board.width_converted or board.ps == "zynq":
        assert (master, "gmem_smc/S00_AXI") in intf
        assert ("gmem_smc/M00_AXI", f"ps/{board.hp_port}") in intf
    else:
        assert (master, f"ps/{board.hp_port}") in intf and "gmem_smc" not in cells
    assert board.width_converted == (name == "zcu104")
    # The interrupt: IP -> axi_intc -> the PS's first fabric interrupt (what PYNQ requires).
    nets = _net_pairs(run, "connect_bd_net")
    assert (f"{accel}/{ip.IRQ_PORT}", f"{tcl.INTC_CELL}/intr") in nets
    assert (f"{tcl.INTC_CELL}/irq", irq_pin) in nets
    intc = run.dict_props(tcl.INTC_CELL)
    assert intc["CONFIG.C_IRQ_CONNECTION"] == "1"
    # One clock for every AXI endpoint and the IP; the IP's reset from the reset block.
    clocked = {b for a, b in nets if a == clk_pin}
    assert f"{accel}/{ip.CLOCK_PORT}" in clocked and f"{tcl.INTC_CELL}/s_axi_aclk" in clocked
    assert len([p for p in clocked if p.startswith("ps/")]) == 2  # the GP and the HP port
    assert (rst_pin, "rst_pl/ext_reset_in") in nets
    assert ("rst_pl/peripheral_aresetn", f"{accel}/{ip.RESET_N_PORT}") in nets
    names = [c.cmd for c in run.calls]
    for step in ("assign_bd_address", "validate_bd_design", "make_wrapper"):
        assert step in names
    assert names.index("assign_bd_address") < names.index("validate_bd_design")


@pytest.mark.parametrize("name", BOARDS)
def test_build_steps_and_outputs(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    names = [c.cmd for c in run.calls]
    order = ["launch_runs", "open_run", "report_utilization", "report_timing_summary",
             "get_timing_paths", "write_bitstream"]  # fmt: skip
    assert [names.index(n) for n in order] == sorted(names.index(n) for n in order)
    synth, impl = run.of("launch_runs")
    assert synth.args[0] == "synth_1" and "-jobs" in synth.args
    assert impl.args[0] == "impl_1" and impl.args[impl.args.index("-to_step") + 1] == "route_design"
    assert "-setup" in run.of("get_timing_paths")[0].args
    assert "-hold" in run.of("get_timing_paths")[1].args


def test_negative_wns_fails_before_the_bitstream(tmp_path: Path) -> None:
    board = boards.load("ultra96v2")
    for sub, kw in (("wns", {"wns": -0.012}), ("whs", {"whs": -0.003})):
        (tmp_path / sub).mkdir()
        run = run_build(tmp_path / sub, board, **kw)
        assert run.rc != 0 and "timing not met" in run.out, run.out
        assert not run.of("write_bitstream")
        assert not (tmp_path / sub / board.name / "pow2det.bit").exists()
        assert (tmp_path / sub / board.name / "timing_summary.rpt").is_file()


def test_failed_implementation_stops(tmp_path: Path) -> None:
    run = run_build(tmp_path, boards.load("zcu104"), impl_status="place_design ERROR")
    assert run.rc != 0 and "implementation failed: place_design ERROR" in run.out
    assert not run.of("open_run") and not run.of("write_bitstream")


def test_hwh_copied_beside_the_bit(runs: dict[str, Run], tmp_path: Path) -> None:
    board = boards.load("pynq-z2")
    run = run_build(tmp_path, board)
    assert run.rc == 0, run.out
    d = tmp_path / board.name
    assert (d / "pow2det.hwh").read_text() == "<hwh/>\n"
    for n in bitstream.OUTPUTS:
        assert (d / n).is_file(), n


def test_without_board_files_fallback_applies(tmp_path: Path) -> None:
    board = boards.load("pynq-z2")
    assert board.ps_fallback
    run = run_build(tmp_path, board, board_files=False)
    assert run.rc == 0, run.out
    assert "no board files for " + board.board_part in run.out
    assert not [c for c in run.of("set_property") if c.args[0] == "board_part"]
    ps = run.dict_props("ps")
    for k, v in board.ps_fallback.items():
        assert ps["CONFIG." + k] == v
    assert ps["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"] == f"{board.pl_clock_mhz:g}"
    (auto,) = run.of("apply_bd_automation")
    assert "apply_board_preset 0" in auto.args[-2]
    # With the board files the fallback is not applied.
    (tmp_path / "with").mkdir()
    run = run_build(tmp_path / "with", board)
    ps = run.dict_props("ps")
    assert "CONFIG.PCW_UIPARAM_DDR_PARTNO" not in ps


def test_newer_board_file_version_is_taken(tmp_path: Path) -> None:
    board = boards.load("ultra96v2")
    newer = board.board_part.rsplit(":", 1)[0] + ":9.0"
    other = "other.com:board:part0:1.0"
    run = run_build(tmp_path, board, board_parts=f"{other} {newer}")
    assert run.rc == 0, run.out
    (bp,) = [c for c in run.of("set_property") if c.args[0] == "board_part"]
    assert bp.args[1] == newer
    assert len(run.of("apply_bd_automation")) == 1
    # Only another board installed: part only, no preset on ZynqMP.
    (tmp_path / "none").mkdir()
    run = run_build(tmp_path / "none", board, board_parts=other)
    assert run.rc == 0 and not run.of("apply_bd_automation")
    assert not [c for c in run.of("set_property") if c.args[0] == "board_part"]


def test_other_vivado_version_warns(tmp_path: Path) -> None:
    run = run_build(tmp_path, boards.load("zcu104"), version="2020.2")
    assert run.rc == 0
    assert "WARNING: pow2det: written for Vivado " + " ".join(ip.VIVADO_VERSIONS) in run.out


def test_tcl_values_cannot_break_out() -> None:
    assert tcl.brace("MIO 14 .. 15") == "{MIO 14 .. 15}"
    for bad in ("a}b", "a{b", "a\\b", "a\nb"):
        with pytest.raises(ValueError):
            tcl.brace(bad)


# -- make bitstream ---------------------------------------------------------------------------


def _path_without_vivado() -> str:
    dirs = [str(REPO / ".venv" / "bin"), "/usr/bin", "/bin"]
    return os.pathsep.join(d for d in dirs if not (Path(d) / "vivado").exists())


def test_make_bitstream_without_vivado_one_line(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("no make")
    env = {**os.environ, "PATH": _path_without_vivado()}
    r = subprocess.run(["make", "-s", "--no-print-directory", "bitstream", "BOARD=zcu104",
                        f"DEPLOY_OUT={tmp_path}"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode != 0
    ours = [ln for ln in (r.stdout + r.stderr).splitlines() if not ln.startswith("make")]
    assert len(ours) == 1, r.stdout + r.stderr
    line = ours[0]
    assert "no `vivado` on PATH" in line
    assert all(v in line for v in ip.VIVADO_VERSIONS)
    assert str(tmp_path / "zcu104" / "scripts") in line
    # The scripts are there, the Verilog was not elaborated.
    assert (tmp_path / "zcu104" / "scripts" / "build.tcl").is_file()
    assert not (tmp_path / "zcu104" / "verilog").exists()


def test_make_bitstream_scripts(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("no make")
    r = subprocess.run(["make", "-s", "--no-print-directory", "bitstream-scripts", "BOARD=all",
                        f"DEPLOY_OUT={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    for name in BOARDS:
        for s in tcl.SCRIPT_NAMES:
            assert (tmp_path / name / "scripts" / s).is_file()


def _fake_vivado(tmp: Path, board: boards.Board) -> Path:
    """A ``vivado`` that runs the -source script under the mock (tclsh)."""
    write_mock(tmp, board)
    exe = tmp / "bin" / "vivado"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n"
                   'while [ $# -gt 0 ]; do [ "$1" = -source ] && src=$2; shift; done\n'
                   f'exec {TCLSH} {tmp / "mock.tcl"} "$src"\n')  # fmt: skip
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_bitstream_flow_with_stand_in_vivado(tmp_path: Path, monkeypatch, capsys) -> None:
    board = boards.load("ultra96v2")
    exe = _fake_vivado(tmp_path, board)
    verilog = tmp_path / "given.v"
    verilog.write_text("// the board's Verilog\n")
    d = tmp_path / "out" / board.name
    hw = d / "vivado" / "pow2det.gen" / "sources_1" / "bd" / tcl.BD_NAME / "hw_handoff"
    hw.mkdir(parents=True)
    (hw / f"{tcl.BD_NAME}.hwh").write_text("<hwh/>\n")
    for k, v in mock_env(tmp_path, board).items():
        monkeypatch.setenv(k, v)
    rc = bitstream.build(board, tmp_path / "out", verilog, str(exe))
    assert rc == 0, capsys.readouterr()
    assert (d / "verilog" / f"{ip.IP_NAME}.v").read_text() == verilog.read_text()
    for n in bitstream.OUTPUTS:
        assert (d / n).is_file()
    # Negative slack: Vivado's non-zero exit is the build's, and no .bit is left over.
    monkeypatch.setenv("MOCK_WNS", "-0.5")
    rc = bitstream.build(board, tmp_path / "out", verilog, str(exe))
    assert rc != 0 and not (d / "pow2det.bit").exists()
    assert "vivado failed" in capsys.readouterr().err


def verilog_ports(text: str, module: str) -> dict[str, tuple[str, int]]:
    """The ports of ``module`` in Verilog as Amaranth writes it (``input [11:0] name;``)."""
    body = text[text.index(f"module {module}(") :]
    body = body[: body.index("endmodule")]
    out = {}
    for m in re.finditer(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s+)?"
                         r"(\w+);", body, re.M):  # fmt: skip
        d, left, right, name = m.groups()
        out[name] = ("in" if d == "input" else "out",
                     abs(int(left) - int(right)) + 1 if left else 1)  # fmt: skip
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", BOARDS)
def test_real_verilog_passes_the_port_check(tmp_path: Path, name: str) -> None:
    """The board's elaborated Verilog (20 to 45 s each) has exactly the ports package_ip.tcl
    checks for, with their widths and directions."""
    from hw import gen

    board = boards.load(name)
    v = gen.generate(board.accel, tmp_path / "pow2det_accel.v")
    found = verilog_ports(v.read_text(), ip.IP_NAME)
    assert found == tcl.port_widths(board.accel.data_width)
    run = run_build(tmp_path, board, ports_exact=found)
    assert run.rc == 0, run.out


def test_hw_gen_board_option() -> None:
    from hw import gen

    for name in BOARDS:
        assert gen.board_config(name) == boards.load(name).accel
    cfg = gen.config_from_args(["max_strip=16"], gen.board_config("zcu104"))
    assert cfg.lanes == 32 and cfg.max_strip == 16
    with pytest.raises(SystemExit, match="no such board file"):
        gen.board_config("no-such-board")


def test_deploy_vivado_cli_unknown_board(capsys) -> None:
    from deploy.vivado.__main__ import main

    assert main(["scripts", "--board", "nope"]) == 2
    assert "no such board file" in capsys.readouterr().err


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
