"""The Vivado Tcl of a board build, written from the board file and the contract.

Three scripts per board, into ``build/deploy/<board>/scripts/``:

* ``package_ip.tcl``: packages ``pow2det_accel.v`` as the IP ``pow2det.org:pow2det:pow2det_accel``
  with its AXI4-Lite slave, AXI4 master, clock, reset and interrupt interfaces declared port by
  port (nothing left to the packager's name inference) and the register map of
  ``sw/contract/registers.py`` as its IP-XACT memory map;
* ``block_design.tcl``: the PS with the board preset, one PL clock, the master on the HP port
  (through a SmartConnect where the width or the protocol differs), the registers and an AXI
  interrupt controller on the general-purpose master port, the interrupt controller's output on
  the PS's first fabric interrupt (the layout PYNQ's ``Interrupt`` class finds in the .hwh);
* ``build.tcl``: the entry point (``vivado -mode batch -source build.tcl``): sources the other
  two, synthesis, implementation, the timing check (negative WNS or WHS fails the build before
  any bitstream is written), ``write_bitstream`` and the copies of the .bit and the .hwh.

Nothing here needs the Verilog: only the board's AccelConfig and the port names of
``hw/ports.py`` (whose widths follow the data width), so the scripts exist for every board even
where the RTL does not elaborate yet. Every value is braced Tcl, so ``tclsh`` parses the scripts
as they are (``tests/test_vivado_scripts.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import Shape

from deploy.boards import Board
from hw import ports
from sw.contract import ip
from sw.contract.registers import ADDR_BITS, R_W1C, REGISTERS, RO, RW, W1C, W1P

REPO = Path(__file__).resolve().parents[2]
BUILD_ROOT = REPO / "build" / "deploy"
SCRIPT_NAMES = ("package_ip.tcl", "block_design.tcl", "build.tcl")
BD_NAME = "pow2det_bd"
ACCEL_CELL = ip.IP_NAME + "_0"  # the instance name the pynq backend looks for (a prefix match)
INTC_CELL = "axi_intc_0"
REG_BLOCK = "reg0"
# The IP-XACT access of the contract's access kinds. IP-XACT has no write-1-to-clear or pulse
# access; those registers are read-write and say their contract access in the description.
IPXACT_ACCESS = {RW: "read-write", RO: "read-only", W1C: "read-write", W1P: "read-write",
                 R_W1C: "read-write"}  # fmt: skip
LOGICAL_CLOCK, LOGICAL_RESET, LOGICAL_IRQ = "CLK", "RST", "INTERRUPT"


# -- Tcl text ---------------------------------------------------------------------------------


def brace(value: object) -> str:
    """``value`` as one braced Tcl word (no substitution inside). Refuses characters that would
    unbalance the braces, so no board or register text can change a script's structure."""
    s = str(value)
    if any(c in s for c in "{}\\\n"):
        raise ValueError(f"{s!r}: braces, backslashes and newlines are not allowed in Tcl values")
    return "{" + s + "}"


def tcl_dict(props: dict[str, object], prefix: str = "CONFIG.") -> str:
    """A ``[list K {V} ...]`` for ``set_property -dict``, one pair a line."""
    items = "".join(f" \\\n    {prefix}{k} {brace(v)}" for k, v in props.items())
    return f"[list{items} \\\n]"


# -- what the scripts are made of -------------------------------------------------------------


@dataclass(frozen=True)
class PsPorts:
    """The PS's names for the pieces the block design connects (they differ between the
    Zynq-7000 PS7 and the ZynqMP PS8)."""

    ip: str  # the IP's name in the catalog
    rule: str  # apply_bd_automation rule that applies the board preset
    clock_pin: str
    resetn_pin: str
    irq_pin: str
    hp_clock_pin: str
    gp_clock_pin: str
    config: dict[str, str]  # enable the HP slave, the GP master, the PL clock and the IRQ


def _zynqmp_gp_index(gp: str) -> int:
    return {"M_AXI_HPM0_FPD": 0, "M_AXI_HPM1_FPD": 1, "M_AXI_HPM0_LPD": 2}[gp]


def ps_ports(board: Board) -> PsPorts:
    """The PS configuration of ``board``: which ports it enables and what they are called."""
    mhz = f"{board.pl_clock_mhz:g}"
    if board.ps == "zynqmp":
        # PS8 numbers its AXI ports as GP0..GP6: M_AXI_HPM0/1_FPD and M_AXI_HPM0_LPD are the
        # masters GP0..GP2, S_AXI_HPC0/1_FPD and S_AXI_HP0..3_FPD the slaves GP0..GP5.
        hp = int(board.hp_port[len("S_AXI_HP")])
        sgp, mgp = 2 + hp, _zynqmp_gp_index(board.gp_port)
        gp_clk = {0: "maxihpm0_fpd_aclk", 1: "maxihpm1_fpd_aclk", 2: "maxihpm0_lpd_aclk"}[mgp]
        config = {f"PSU__USE__M_AXI_GP{i}": "1" if i == mgp else "0" for i in range(3)}
        config |= {
            f"PSU__MAXIGP{mgp}__DATA_WIDTH": "32",  # registers only: no 128-bit read path
            f"PSU__USE__S_AXI_GP{sgp}": "1",
            f"PSU__SAXIGP{sgp}__DATA_WIDTH": str(board.hp_width),
            "PSU__FPGA_PL0_ENABLE": "1",
            "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ": mhz,
            "PSU__USE__IRQ0": "1",
        }
        return PsPorts(
            ip="zynq_ultra_ps_e", rule="xilinx.com:bd_rule:zynq_ultra_ps_e",
            clock_pin="pl_clk0", resetn_pin="pl_resetn0", irq_pin="pl_ps_irq0",
            hp_clock_pin=f"saxihp{hp}_fpd_aclk", gp_clock_pin=gp_clk, config=config,
        )  # fmt: skip
    hp = int(board.hp_port[len("S_AXI_HP")])
    gp = int(board.gp_port[len("M_AXI_GP")])
    config = {
        f"PCW_USE_M_AXI_GP{gp}": "1",
        f"PCW_USE_S_AXI_HP{hp}": "1",
        f"PCW_S_AXI_HP{hp}_DATA_WIDTH": str(board.hp_width),
        "PCW_FPGA_FCLK0_ENABLE": "1",  # FCLK_CLK0 and FCLK_RESET0_N are on by default
        "PCW_FPGA0_PERIPHERAL_FREQMHZ": mhz,
        "PCW_USE_FABRIC_INTERRUPT": "1",
        "PCW_IRQ_F2P_INTR": "1",
    }
    return PsPorts(
        ip="processing_system7", rule="xilinx.com:bd_rule:processing_system7",
        clock_pin="FCLK_CLK0", resetn_pin="FCLK_RESET0_N", irq_pin="IRQ_F2P",
        hp_clock_pin=f"S_AXI_HP{hp}_ACLK", gp_clock_pin=f"M_AXI_GP{gp}_ACLK", config=config,
    )  # fmt: skip


def master_through_smartconnect(board: Board) -> bool:
    """The master reaches the HP port through a SmartConnect when the widths differ (zcu104:
    256 -> 128) or the port is AXI3 (every Zynq-7000 HP port); else it is wired directly."""
    return board.width_converted or board.ps == "zynq"


def port_widths(data_width: int) -> dict[str, tuple[str, int]]:
    """Every top-level port of the IP: name -> (direction ``in``/``out``, width)."""
    out = {}
    for name, member in ports.accel_ports(data_width).items():
        out[name] = ("in" if member.flow.name == "In" else "out", Shape.cast(member.shape).width)
    return out


def _logical(prefix: str, name: str) -> str:
    return name[len(prefix) :].upper()


def register_access(reg_access: str) -> str:
    return IPXACT_ACCESS[reg_access]


# -- package_ip.tcl ---------------------------------------------------------------------------


def package_ip_tcl(board: Board) -> str:
    cfg = board.accel
    dw = cfg.data_width
    widths = port_widths(dw)
    lite = [n for n in widths if n.startswith(ports.LITE_PREFIX)]
    gmem = [n for n in widths if n.startswith(ports.GMEM_PREFIX)]
    L: list[str] = []
    a = L.append
    a(f"# package_ip.tcl for {board.name}: pow2det_accel ({cfg.lanes} lanes, {dw}-bit master)")
    a(f"# as the IP {ip.VLNV}.")
    a("# Written by `python -m deploy.vivado scripts`; do not edit.")
    a("# Sourced by build.tcl, which sets pow2det_verilog, pow2det_ip_repo, pow2det_ip_pkg and")
    a("# pow2det_part.")
    a("")
    a("create_project -force pow2det_ip_pkg $pow2det_ip_pkg -part $pow2det_part")
    a("add_files -norecurse $pow2det_verilog")
    a(f"set_property top {ip.IP_NAME} [current_fileset]")
    a("update_compile_order -fileset sources_1")
    a(f"ipx::package_project -root_dir $pow2det_ip_repo -vendor {ip.IP_VENDOR} "
      f"-library {ip.IP_LIBRARY} -taxonomy /UserIP -import_files -set_current true "
      "-force")  # fmt: skip
    a("set core [ipx::current_core]")
    a(f"set_property name {ip.IP_NAME} $core")
    a(f"set_property version {ip.IP_VERSION} $core")
    a(f"set_property display_name {brace('pow2det accelerator (' + board.name + ')')} $core")
    a(f"set_property description {brace(f'pow2det_accel, {cfg.lanes} lanes')} $core")
    a("set_property supported_families {zynq Production zynquplus Production} $core")
    a("")
    a("# The ports the Verilog must have, with their directions and widths (hw/ports.py); a")
    a("# Verilog of another data width stops here instead of packaging a wrong interface.")
    a("set pow2det_expected_ports {")
    for name, (direction, width) in widths.items():
        a(f"    {name} {direction} {width}")
    a("}")
    a("foreach {name dir width} $pow2det_expected_ports {")
    a("    set p [ipx::get_ports -quiet $name -of_objects $core]")
    a('    if {$p eq ""} { error "pow2det: the Verilog has no port $name" }')
    a("    # A scalar port has no vector bounds: one bit.")
    a("    set left [get_property size_left $p]")
    a("    set right [get_property size_right $p]")
    a('    set got [expr {$left eq "" ? 1 : abs($left - $right) + 1}]')
    a('    if {$got != $width} { error "pow2det: port $name is $got bits, expected $width" }')
    a("    if {[get_property direction $p] ne $dir} {")
    a('        error "pow2det: port $name is [get_property direction $p], expected $dir"')
    a("    }")
    a("}")
    a("")
    a("# Interfaces and the memory map are declared here, not inferred: drop the packager's.")
    a("foreach m [ipx::get_memory_maps -quiet -of_objects $core] {")
    a("    ipx::remove_memory_map [get_property name $m] $core")
    a("}")
    a("foreach s [ipx::get_address_spaces -quiet -of_objects $core] {")
    a("    ipx::remove_address_space [get_property name $s] $core")
    a("}")
    a("foreach b [ipx::get_bus_interfaces -quiet -of_objects $core] {")
    a("    ipx::remove_bus_interface [get_property name $b] $core")
    a("}")
    a("")
    a("proc pow2det_bus {core name mode bus abstraction portmaps params} {")
    a("    set b [ipx::add_bus_interface $name $core]")
    a("    set_property abstraction_type_vlnv $abstraction $b")
    a("    set_property bus_type_vlnv $bus $b")
    a("    set_property interface_mode $mode $b")
    a("    foreach {logical physical} $portmaps {")
    a("        set_property physical_name $physical [ipx::add_port_map $logical $b]")
    a("    }")
    a("    foreach {param value} $params {")
    a("        set_property value $value [ipx::add_bus_parameter $param $b]")
    a("    }")
    a("    return $b")
    a("}")
    a("")

    def bus(name: str, mode: str, kind: str, maps: list[tuple[str, str]],
            params: dict[str, object]) -> None:  # fmt: skip
        bus_vlnv, abs_vlnv = {
            "aximm": ("xilinx.com:interface:aximm:1.0", "xilinx.com:interface:aximm_rtl:1.0"),
            "clock": ("xilinx.com:signal:clock:1.0", "xilinx.com:signal:clock_rtl:1.0"),
            "reset": ("xilinx.com:signal:reset:1.0", "xilinx.com:signal:reset_rtl:1.0"),
            "interrupt": ("xilinx.com:signal:interrupt:1.0",
                          "xilinx.com:signal:interrupt_rtl:1.0"),
        }[kind]  # fmt: skip
        a(f"pow2det_bus $core {name} {mode} {bus_vlnv} {abs_vlnv} {{")
        for logical, physical in maps:
            a(f"    {logical} {physical}")
        a("} {")
        for k, v in params.items():
            a(f"    {k} {brace(v)}")
        a("}")

    bus(ip.LITE_INTERFACE, "slave", "aximm",
        [(_logical(ports.LITE_PREFIX, n), n) for n in lite],
        {"PROTOCOL": "AXI4LITE", "DATA_WIDTH": 32, "ADDR_WIDTH": ADDR_BITS})  # fmt: skip
    bus(ip.MASTER_INTERFACE, "master", "aximm",
        [(_logical(ports.GMEM_PREFIX, n), n) for n in gmem],
        {"PROTOCOL": "AXI4", "DATA_WIDTH": dw, "ADDR_WIDTH": cfg.addr_width,
         "MAX_BURST_LENGTH": cfg.max_burst, "NUM_READ_OUTSTANDING": cfg.max_reads_outstanding,
         "NUM_WRITE_OUTSTANDING": cfg.max_writes_outstanding})  # fmt: skip
    # The interface names of clock, reset and interrupt are the port names (aclk, aresetn, irq).
    bus(ports.CLOCK, "slave", "clock", [(LOGICAL_CLOCK, ports.CLOCK)],
        {"ASSOCIATED_BUSIF": f"{ip.LITE_INTERFACE}:{ip.MASTER_INTERFACE}",
         "ASSOCIATED_RESET": ports.RESET_N})  # fmt: skip
    bus(ports.RESET_N, "slave", "reset", [(LOGICAL_RESET, ports.RESET_N)],
        {"POLARITY": "ACTIVE_LOW"})  # fmt: skip
    bus(ports.IRQ, "master", "interrupt", [(LOGICAL_IRQ, ports.IRQ)],
        {"SENSITIVITY": "LEVEL_HIGH"})  # fmt: skip
    a("")
    a("# The master's address space: the 32-bit AXI address, the master's data width.")
    a(f"set space [ipx::add_address_space {ip.MASTER_INTERFACE} $core]")
    a(f"set_property range {1 << cfg.addr_width} $space")
    a(f"set_property width {dw} $space")
    a(f"set_property master_address_space_ref {ip.MASTER_INTERFACE} "
      f"[ipx::get_bus_interfaces {ip.MASTER_INTERFACE} -of_objects $core]")  # fmt: skip
    a("")
    a("# The register map of sw/contract/registers.py (docs/accelerator-interface.md).")
    a(f"set map [ipx::add_memory_map {ip.LITE_INTERFACE} $core]")
    a(f"set_property slave_memory_map_ref {ip.LITE_INTERFACE} "
      f"[ipx::get_bus_interfaces {ip.LITE_INTERFACE} -of_objects $core]")  # fmt: skip
    a(f"set block [ipx::add_address_block {REG_BLOCK} $map]")
    a("set_property base_address 0 $block")
    a(f"set_property range {1 << ADDR_BITS} $block")
    a("set_property width 32 $block")
    a("set_property usage register $block")
    for r in REGISTERS:
        a(f"set reg [ipx::add_register {r.name} $block]")
        a(f"set_property address_offset {r.offset:#04x} $reg")
        a("set_property size 32 $reg")
        a(f"set_property access {register_access(r.access)} $reg")
        a(f"set_property description {brace('access ' + r.access)} $reg")
        for f in r.fields:
            acc = f.access or r.access
            a(f"set field [ipx::add_field {f.name} $reg]")
            a(f"set_property bit_offset {f.lsb} $field")
            a(f"set_property bit_width {f.width} $field")
            a(f"set_property access {register_access(acc)} $field")
            a(f"set_property description {brace('access ' + acc)} $field")
    a("")
    a("ipx::create_xgui_files $core")
    a("ipx::update_checksums $core")
    a("ipx::check_integrity $core")
    a("ipx::save_core $core")
    a("close_project")
    return "\n".join(L) + "\n"


# -- block_design.tcl -------------------------------------------------------------------------


def block_design_tcl(board: Board) -> str:
    ps = ps_ports(board)
    L: list[str] = []
    a = L.append
    a(f"# block_design.tcl for {board.name}: the {ps.ip} PS, pow2det_accel and an AXI interrupt")
    a("# controller. Written by `python -m deploy.vivado scripts`; do not edit. Sourced by")
    a("# build.tcl in the open project, with pow2det_have_board set by it.")
    a("")
    a("# The newest version of a Xilinx IP in this Vivado's catalog (no version is pinned, so")
    a("# the script runs on every Vivado of VIVADO_VERSIONS).")
    a("proc pow2det_ipdef {name} {")
    a("    set defs [lsort -dictionary [get_ipdefs -all xilinx.com:ip:${name}:*]]")
    a('    if {[llength $defs] == 0} { error "pow2det: no xilinx.com:ip:$name in the IP catalog" }')
    a("    return [lindex $defs end]")
    a("}")
    a("")
    a(f"create_bd_design {BD_NAME}")
    a(f"set ps [create_bd_cell -type ip -vlnv [pow2det_ipdef {ps.ip}] ps]")
    if board.ps == "zynqmp":
        a("if {$pow2det_have_board} {")
        a(f'    apply_bd_automation -rule {ps.rule} -config {{apply_board_preset "1"}} $ps')
        a("}")
    else:
        # The PS7 rule also makes DDR and FIXED_IO external ports, with or without the preset.
        a("apply_bd_automation -rule " + ps.rule + " -config [list make_external "
          '{FIXED_IO, DDR} apply_board_preset $pow2det_have_board Master Disable Slave '
          "Disable] $ps")  # fmt: skip
    if board.ps_fallback:
        a("if {!$pow2det_have_board} {")
        a(f"    # No board files for {board.board_part}: the minimal PS configuration of the")
        a("    # board file's ps_fallback (crystal, DDR, banks, UART), so the .hwh says what the")
        a("    # board's boot image configured.")
        a("    set_property -dict " + tcl_dict(board.ps_fallback).replace("\n", "\n    ") + " $ps")
        a("}")
    a("# The ports, the PL clock and the fabric interrupt this design uses.")
    a("set_property -dict " + tcl_dict(ps.config) + " $ps")
    a("")
    a(f"set accel [create_bd_cell -type ip -vlnv {ip.VLNV} {ACCEL_CELL}]")
    a("set rst [create_bd_cell -type ip -vlnv [pow2det_ipdef proc_sys_reset] rst_pl]")
    a(f"set intc [create_bd_cell -type ip -vlnv [pow2det_ipdef axi_intc] {INTC_CELL}]")
    a("# Its irq goes to the PS as a single level (not a MicroBlaze bus interface).")
    a("set_property -dict [list CONFIG.C_IRQ_CONNECTION {1} CONFIG.C_IRQ_IS_LEVEL {1}] $intc")
    a("set ctrl_sc [create_bd_cell -type ip -vlnv [pow2det_ipdef smartconnect] ctrl_smc]")
    a("set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {2}] $ctrl_sc")
    a("")
    if master_through_smartconnect(board):
        a("set gmem_sc [create_bd_cell -type ip -vlnv [pow2det_ipdef smartconnect] gmem_smc]")
        a("set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {1}] $gmem_sc")
    a("")
    a("# One clock and its synchronous reset for the whole PL.")
    a(f"set clk [get_bd_pins ps/{ps.clock_pin}]")
    clocked = [f"{ACCEL_CELL}/{ports.CLOCK}", "rst_pl/slowest_sync_clk",
               f"{INTC_CELL}/s_axi_aclk", "ctrl_smc/aclk", f"ps/{ps.gp_clock_pin}",
               f"ps/{ps.hp_clock_pin}"]  # fmt: skip
    if master_through_smartconnect(board):
        clocked.append("gmem_smc/aclk")
    for pin in clocked:
        a(f"connect_bd_net $clk [get_bd_pins {pin}]")
    a(f"connect_bd_net [get_bd_pins ps/{ps.resetn_pin}] [get_bd_pins rst_pl/ext_reset_in]")
    resets = [f"{ACCEL_CELL}/{ports.RESET_N}", f"{INTC_CELL}/s_axi_aresetn", "ctrl_smc/aresetn"]
    if master_through_smartconnect(board):
        resets.append("gmem_smc/aresetn")
    for pin in resets:
        a(f"connect_bd_net [get_bd_pins rst_pl/peripheral_aresetn] [get_bd_pins {pin}]")
    a("")
    a(f"# The registers: {board.gp_port} -> SmartConnect -> s_axi_control and the interrupt")
    a("# controller's registers.")
    a(f"connect_bd_intf_net [get_bd_intf_pins ps/{board.gp_port}] "
      "[get_bd_intf_pins ctrl_smc/S00_AXI]")  # fmt: skip
    a(f"connect_bd_intf_net [get_bd_intf_pins ctrl_smc/M00_AXI] "
      f"[get_bd_intf_pins {ACCEL_CELL}/{ip.LITE_INTERFACE}]")  # fmt: skip
    a(f"connect_bd_intf_net [get_bd_intf_pins ctrl_smc/M01_AXI] "
      f"[get_bd_intf_pins {INTC_CELL}/s_axi]")  # fmt: skip
    a("")
    if master_through_smartconnect(board):
        why = []
        if board.width_converted:
            why.append(f"{board.accel.data_width} -> {board.hp_width} bits")
        if board.ps == "zynq":
            why.append("AXI4 -> AXI3")
        a(f"# The master: m_axi_gmem -> SmartConnect ({', '.join(why)}) -> {board.hp_port}.")
        a(f"connect_bd_intf_net [get_bd_intf_pins {ACCEL_CELL}/{ip.MASTER_INTERFACE}] "
          "[get_bd_intf_pins gmem_smc/S00_AXI]")  # fmt: skip
        a(f"connect_bd_intf_net [get_bd_intf_pins gmem_smc/M00_AXI] "
          f"[get_bd_intf_pins ps/{board.hp_port}]")  # fmt: skip
    else:
        a(f"# The master: m_axi_gmem -> {board.hp_port} directly (both {board.hp_width}-bit AXI4).")
        a(f"connect_bd_intf_net [get_bd_intf_pins {ACCEL_CELL}/{ip.MASTER_INTERFACE}] "
          f"[get_bd_intf_pins ps/{board.hp_port}]")  # fmt: skip
    a("")
    a("# The interrupt: irq -> axi_intc -> the PS's first fabric interrupt, the layout PYNQ's")
    a("# Interrupt class supports (interrupt controllers on that line; also for one interrupt,")
    a("# so that a second needs no other layout).")
    a(f"connect_bd_net [get_bd_pins {ACCEL_CELL}/{ports.IRQ}] [get_bd_pins {INTC_CELL}/intr]")
    a(f"connect_bd_net [get_bd_pins {INTC_CELL}/irq] [get_bd_pins ps/{ps.irq_pin}]")
    a("")
    a("assign_bd_address")
    a("validate_bd_design")
    a("save_bd_design")
    return "\n".join(L) + "\n"


# -- build.tcl --------------------------------------------------------------------------------


def build_tcl(board: Board) -> str:
    versions = " ".join(ip.VIVADO_VERSIONS)
    L: list[str] = []
    a = L.append
    a(f"# build.tcl for {board.name}: vivado -mode batch -source build.tcl")
    either = " or ".join(ip.VIVADO_VERSIONS)
    a(f"# Written by `python -m deploy.vivado scripts` for Vivado {either}; do not edit.")
    a("# Paths are relative to this script: the Verilog in ../verilog/, the project in ../vivado/,")
    a("# the outputs (pow2det.bit, pow2det.hwh, reports) in ../ . $env(POW2DET_JOBS) sets -jobs.")
    a("")
    a("set here [file dirname [file normalize [info script]]]")
    a("set out [file dirname $here]")
    a(f"set pow2det_board {board.name}")
    a(f"set pow2det_part {board.part}")
    a(f"set pow2det_board_part {board.board_part}")
    a(f"set pow2det_clock_mhz {board.pl_clock_mhz:g}")
    a(f"set pow2det_vivado_versions {{{versions}}}")
    a(f"set pow2det_verilog [file join $out verilog {ip.IP_NAME}.v]")
    a("set pow2det_ip_repo [file join $out ip_repo]")
    a("set pow2det_ip_pkg [file join $out ip_pkg]")
    a("set pow2det_project [file join $out vivado]")
    a("set jobs 4")
    a("if {[info exists ::env(POW2DET_JOBS)]} { set jobs $::env(POW2DET_JOBS) }")
    a("")
    a("if {[lsearch -exact $pow2det_vivado_versions [version -short]] < 0} {")
    a('    puts "WARNING: pow2det: written for Vivado $pow2det_vivado_versions,'
      ' running [version -short]"')  # fmt: skip
    a("}")
    a("if {![file exists $pow2det_verilog]} {")
    a('    error "pow2det: no $pow2det_verilog (make bitstream BOARD=$pow2det_board writes it)"')
    a("}")
    a("")
    a("file delete -force $pow2det_ip_repo $pow2det_ip_pkg")
    a("source [file join $here package_ip.tcl]")
    a("")
    a("create_project -force pow2det $pow2det_project -part $pow2det_part")
    a("# The board preset needs the board files: the board file's version, else the newest")
    a("# installed version of the same board; without any, the part alone (and the board")
    a("# file's fallback PS configuration in block_design.tcl).")
    a("set pow2det_have_board 0")
    a("set found [get_board_parts -quiet $pow2det_board_part]")
    a("if {[llength $found] == 0} {")
    a("    set any [join [lreplace [split $pow2det_board_part :] end end *] :]")
    a("    set found [lsort -dictionary [get_board_parts -quiet $any]]")
    a("}")
    a("if {[llength $found] > 0} {")
    a("    set_property board_part [lindex $found end] [current_project]")
    a("    set pow2det_have_board 1")
    a("} else {")
    a('    puts "WARNING: pow2det: no board files for $pow2det_board_part:'
      ' part $pow2det_part only"')  # fmt: skip
    a("}")
    a("set_property ip_repo_paths [list $pow2det_ip_repo] [current_project]")
    a("update_ip_catalog")
    a("source [file join $here block_design.tcl]")
    a("")
    a(f"set bd_file [get_files {BD_NAME}.bd]")
    a("generate_target all $bd_file")
    a("add_files -norecurse [make_wrapper -files $bd_file -top]")
    a(f"set_property top {BD_NAME}_wrapper [current_fileset]")
    a("update_compile_order -fileset sources_1")
    a("")
    a("launch_runs synth_1 -jobs $jobs")
    a("wait_on_run synth_1")
    a('if {[get_property PROGRESS [get_runs synth_1]] ne "100%"} {')
    a('    error "pow2det: synthesis failed (see [get_property DIRECTORY [get_runs synth_1]])"')
    a("}")
    a("launch_runs impl_1 -to_step route_design -jobs $jobs")
    a("wait_on_run impl_1")
    a('# A run stopped at route_design reports "route_design Complete!" when it got there.')
    a("set status [get_property STATUS [get_runs impl_1]]")
    a('if {![string match "route_design Complete*" $status]} {')
    a('    error "pow2det: implementation failed: $status'
      ' (see [get_property DIRECTORY [get_runs impl_1]])"')  # fmt: skip
    a("}")
    a("open_run impl_1")
    a("report_utilization -file [file join $out utilization.rpt]")
    a("report_utilization -hierarchical -file [file join $out utilization_hierarchical.rpt]")
    a("report_timing_summary -max_paths 20 -file [file join $out timing_summary.rpt]")
    a("")
    a("# The timing check: the routed design's worst setup and hold slack. A negative one stops")
    a("# the build here, before a bitstream exists.")
    a("set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]")
    a("set whs [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -hold]]")
    a('puts "pow2det: $pow2det_board at $pow2det_clock_mhz MHz: WNS $wns ns, WHS $whs ns"')
    a('if {$wns eq "" || $whs eq ""} { error "pow2det: no timing paths (unconstrained clock?)" }')
    a("if {$wns < 0 || $whs < 0} {")
    a('    error "pow2det: timing not met: WNS $wns ns, WHS $whs ns (timing_summary.rpt)"')
    a("}")
    a("")
    a("write_bitstream -force [file join $out pow2det.bit]")
    a("# The .hwh beside the .bit with the same stem (what pynq.Overlay reads); Vivado 2022")
    a("# writes it under .gen/, older ones under .srcs/.")
    a(f"set hwh [glob -nocomplain [file join $pow2det_project pow2det.gen sources_1 bd {BD_NAME} "
      f"hw_handoff {BD_NAME}.hwh] [file join $pow2det_project pow2det.srcs sources_1 bd "
      f"{BD_NAME} hw_handoff {BD_NAME}.hwh]]")  # fmt: skip
    a('if {[llength $hwh] == 0} { error "pow2det: no hw_handoff .hwh under $pow2det_project" }')
    a("file copy -force [lindex $hwh 0] [file join $out pow2det.hwh]")
    a('puts "pow2det: wrote [file join $out pow2det.bit] and pow2det.hwh"')
    return "\n".join(L) + "\n"


# -- writing ----------------------------------------------------------------------------------


def out_dir(board: Board, root: Path = BUILD_ROOT) -> Path:
    return root / board.name


def write_scripts(board: Board, root: Path = BUILD_ROOT) -> list[Path]:
    """The three scripts into ``<root>/<board>/scripts/`` and the board's AccelConfig as
    ``<root>/<board>/config.json`` (what ``make board-package`` ships beside the overlay)."""
    d = out_dir(board, root)
    (d / "scripts").mkdir(parents=True, exist_ok=True)
    texts = {
        "package_ip.tcl": package_ip_tcl(board),
        "block_design.tcl": block_design_tcl(board),
        "build.tcl": build_tcl(board),
    }
    paths = []
    for name in SCRIPT_NAMES:
        p = d / "scripts" / name
        p.write_text(texts[name])
        paths.append(p)
    cfg = d / "config.json"
    cfg.write_text(json.dumps(board.accel.as_dict(), indent=1) + "\n")
    paths.append(cfg)
    return paths
