"""A static check of every generated Vivado script, without Vivado.

Each flow's ``build.tcl`` (which sources the IP packaging scripts and ``bd.tcl``), its
XDC and ``program.tcl`` run in ``tclsh`` against stub Vivado commands that record every
call and return named handles (``pin:cell/pin``, ``port:name``, ``cell:name``, ...).
``lint`` then checks the recorded calls:

- **syntax**: every command is in ``SYNTAX`` (the commands the flows use, with the
  options UG835 documents for each, and how many positional arguments it takes), every
  option is one of its command's, and a value from ``VALUES`` where the set is closed;
- **properties**: every ``CONFIG.*`` name set on a cell is in ``CONFIG_FACTS``, a table
  of the IP properties we rely on, each with the file (and version) it was checked in;
- **nets**: every net has exactly one driver (pin directions from ``PINS`` for AMD's IPs,
  from the generated Verilog for ours; an input port drives), every clock and reset of
  ``REQUIRED`` is on a driven net, and so is the clock of every PS port a ``CONFIG.*``
  of ``ENABLES`` turns on; no two ports sit on one package site;
- **interfaces**: every AXI interface of our IPs (from the Verilog) and every enabled PS
  port is connected;
- **segments**: every segment a master's address space reaches (through interface nets
  and SmartConnects, ``SLAVE_SEGMENTS``) is assigned or excluded, and nothing else is; a
  range assigned to our IP's ``reg0`` is the range its packaging script declares.

The last tests break the flows on purpose (the old Nexys Video clocking, a doubled clock
driver, a misspelled ``PSU__`` property, an unassigned segment, a wrong option, an HP port
left unconnected, an HP port's clock left floating or taken from the core's clock, a
misspelled coherent HPC0 port or clock pin, the masters' reset left floating) and show that
each is caught; the kv260 flow without ``coherent_io`` (HP0..HP3) passes too. The clock
check: the two ends of every interface net run on one clock net (``interface_clock``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gen.vivado import generate
from hdl.spec.config import preset

from test_vivado import SANDBOX

pytestmark = pytest.mark.xdist_group("vivado")

# Vivado stubs: each records its call; object getters return "<kind>:<name>" per name.
STUBS = r"""
set ::calls {}
set ::handle 0
namespace eval ::ipx {}
proc ::log {words} { lappend ::calls $words }
proc ::tagged {tag words} {
    set out {}
    set skip 0
    foreach w $words {
        if {$skip} { set skip 0; continue }
        if {$w in {-of_objects -filter}} { set skip 1; continue }
        if {![string match -* $w]} { lappend out "$tag:$w" }
    }
    return $out
}
foreach {cmd tag} {get_bd_pins pin get_bd_ports port get_bd_intf_pins intf get_bd_intf_ports intfport
                   get_bd_addr_spaces space get_bd_addr_segs seg get_ports xport get_runs run
                   ipx::get_address_blocks block} {
    proc $cmd {args} [string map [list TAG $tag CMD $cmd] { ::log [list CMD {*}$args]; return [::tagged TAG $args] }]
}
foreach {cmd tag} {create_bd_cell cell create_bd_port port create_bd_intf_port intfport} {
    proc $cmd {args} [string map [list TAG $tag CMD $cmd] {
        ::log [list CMD {*}$args]; return "TAG:[lindex $args end]"
    }]
}
proc current_design {args} { ::log [list current_design {*}$args]; return design }
proc unknown {args} { ::log $args; return "h[incr ::handle]" }
proc get_property {args} {
    ::log [list get_property {*}$args]
    switch -- [lindex $args 0] {
        SLACK { return 0.1 }
        STATUS { return [expr {[string match *impl* $args] ? "write_bitstream Complete!" : "synth_design Complete!"}] }
        default { return "h[incr ::handle]" }
    }
}
""" + SANDBOX

# -- the documented syntax of each command the flows use -------------------------------
# Source: AMD UG835 "Vivado Design Suite Tcl Command Reference Guide" (2023.2) and, for
# ipx::, UG1118 "Creating and Packaging Custom IP" (2023.2). {option: takes a value},
# (fewest, most) positional arguments (None: any number).
_Q = {"-quiet": False, "-verbose": False}
_GET = {"-filter": True, "-of_objects": True, "-regexp": False, "-nocase": False, "-hierarchical": False, **_Q}
_IPX_GET = {"-of_objects": True, "-filter": True, "-regexp": False, "-nocase": False, **_Q}
SYNTAX: dict[str, tuple[dict[str, bool], tuple[int, int | None]]] = {
    # project and runs
    "create_project": ({"-part": True, "-force": False, "-in_memory": False, "-ip": False, **_Q}, (0, 2)),
    "close_project": ({"-delete": False, **_Q}, (0, 0)),
    "current_project": (dict(_Q), (0, 1)),
    "current_fileset": ({"-constrset": False, "-simset": False, **_Q}, (0, 1)),
    "add_files": ({"-fileset": True, "-norecurse": False, "-copy_to": True, "-force": False,
                   "-scan_for_includes": False, **_Q}, (1, None)),
    "update_compile_order": ({"-fileset": True, "-force_gui": False, **_Q}, (0, 0)),
    "update_ip_catalog": ({"-rebuild": False, "-scan_changes": False, "-repo_path": True, "-add_ip": True,
                           "-delete_ip": True, **_Q}, (0, 0)),
    "get_files": ({**_GET, "-all": False, "-compile_order": True, "-used_in": True, "-norecurse": False}, (0, None)),
    "get_ips": ({**_GET, "-all": False, "-exclude_bd_ips": False}, (0, None)),
    "get_runs": (dict(_GET), (0, None)),
    "get_board_parts": ({**_GET, "-latest_file_version": False, "-latest_hw_revision": False}, (0, None)),
    "get_property": ({"-min": False, "-max": False, **_Q}, (2, 2)),
    "set_property": ({"-dict": True, **_Q}, (1, 3)),
    "generate_target": ({"-force": False, **_Q}, (2, 2)),
    "make_wrapper": ({"-files": True, "-top": False, "-testbench": False, "-inst_template": False,
                      "-fileset": True, "-import": False, "-force": False, **_Q}, (0, 0)),
    "launch_runs": ({"-jobs": True, "-to_step": True, "-next_step": False, "-force": False, "-dir": True,
                     "-scripts_only": False, "-pre_launch_script": True, "-post_launch_script": True, **_Q}, (1, None)),
    "wait_on_run": ({"-timeout": True, **_Q}, (1, 1)),
    "open_run": ({"-name": True, "-pr_config": True, **_Q}, (1, 1)),
    "get_timing_paths": ({"-from": True, "-to": True, "-through": True, "-delay_type": True, "-setup": False,
                          "-hold": False, "-max_paths": True, "-nworst": True, "-unique_pins": False,
                          "-slack_lesser_than": True, "-group": True, **_Q}, (0, 0)),
    "report_timing_summary": ({"-max_paths": True, "-nworst": True, "-file": True, "-delay_type": True,
                               "-report_unconstrained": False, "-warn_on_violation": False, **_Q}, (0, 0)),
    "report_utilization": ({"-file": True, "-hierarchical": False, "-cells": True, **_Q}, (0, 0)),
    "write_hw_platform": ({"-fixed": False, "-force": False, "-include_bit": False, "-include_sim_content": False,
                           "-minimal": False, "-hw": False, "-hw_emu": False, "-file": True, **_Q}, (0, 1)),
    # block design
    "create_bd_design": ({"-dir": True, "-cell": True, "-mode": True, "-bdsource": True, **_Q}, (1, 1)),
    "create_bd_cell": ({"-type": True, "-vlnv": True, "-reference": True, **_Q}, (1, 1)),
    "create_bd_port": ({"-dir": True, "-type": True, "-freq_hz": True, "-from": True, "-to": True, **_Q}, (1, 1)),
    "create_bd_intf_port": ({"-mode": True, "-vlnv": True, **_Q}, (1, 1)),
    "apply_bd_automation": ({"-rule": True, "-config": True, "-opts": True, "-dict": True, **_Q}, (1, 1)),
    "apply_board_connection": ({"-board_interface": True, "-ip_intf": True, "-diagram": True, **_Q}, (0, 0)),
    "connect_bd_net": ({"-net": True, "-boundary_type": True, **_Q}, (2, None)),
    "connect_bd_intf_net": ({"-intf_net": True, "-boundary_type": True, **_Q}, (2, 2)),
    "get_bd_pins": (dict(_GET), (0, None)),
    "get_bd_ports": (dict(_GET), (0, None)),
    "get_bd_intf_pins": (dict(_GET), (0, None)),
    "get_bd_intf_ports": (dict(_GET), (0, None)),
    "get_bd_addr_spaces": (dict(_GET), (0, None)),
    "get_bd_addr_segs": ({**_GET, "-excluded": False}, (0, None)),
    "assign_bd_address": ({"-target_address_space": True, "-offset": True, "-range": True, "-export_to_file": True,
                           "-import_from_file": True, "-dict": True, "-boundary": False, "-combine_segments": False,
                           "-force": False, "-external": False, "-excluded": False, **_Q}, (0, None)),
    "exclude_bd_addr_seg": ({"-target_address_space": True, "-offset": True, "-range": True, **_Q}, (0, 1)),
    "validate_bd_design": ({"-force": False, **_Q}, (0, 1)),
    "save_bd_design": (dict(_Q), (0, 1)),
    # XDC
    "create_clock": ({"-period": True, "-name": True, "-waveform": True, "-add": False, **_Q}, (0, 1)),
    "set_false_path": ({"-from": True, "-to": True, "-through": True, "-setup": False, "-hold": False,
                        "-rise": False, "-fall": False, "-reset_path": False, **_Q}, (0, 0)),
    "set_clock_groups": ({"-group": True, "-asynchronous": False, "-logically_exclusive": False,
                          "-physically_exclusive": False, "-name": True, **_Q}, (0, 0)),
    "set_max_delay": ({"-from": True, "-to": True, "-through": True, "-datapath_only": False, "-rise_from": True,
                       "-fall_from": True, "-rise_to": True, "-fall_to": True, "-reset_path": False,
                       "-ignore_clock_latency": False, **_Q}, (1, 1)),
    "get_ports": (dict(_GET), (0, None)),
    "get_pins": ({**_GET, "-leaf": False}, (0, None)),
    "get_nets": ({**_GET, "-segments": False, "-top_net_of_hierarchical_group": False}, (0, None)),
    "get_cells": ({**_GET, "-primitive": False}, (0, None)),
    # -of: LiteEth's XDC abbreviates -of_objects (Tcl commands of Vivado take any unique prefix).
    "get_clocks": ({**_GET, "-include_generated_clocks": False, "-of": True}, (0, None)),
    "current_design": (dict(_Q), (0, 1)),
    # hardware manager
    "open_hw_manager": (dict(_Q), (0, 0)),
    "connect_hw_server": ({"-url": True, "-allow_non_jtag": False, **_Q}, (0, 0)),
    "open_hw_target": ({"-jtag_mode": True, "-xvc_url": True, **_Q}, (0, 1)),
    "get_hw_devices": (dict(_GET), (0, None)),
    "current_hw_device": (dict(_Q), (0, 1)),
    "program_hw_devices": ({"-skip_program_keys": False, "-disable_eos_check": False, **_Q}, (0, 1)),
    "close_hw_manager": (dict(_Q), (0, 0)),
    # ipx:: (UG1118)
    "ipx::package_project": ({"-root_dir": True, "-vendor": True, "-library": True, "-taxonomy": True,
                              "-import_files": False, "-set_current": True, "-force": False, "-module": True,
                              "-generated_files": False, "-force_update_compile_order": False, **_Q}, (0, 0)),
    "ipx::current_core": (dict(_Q), (0, 1)),
    "ipx::infer_bus_interfaces": (dict(_Q), (2, 2)),
    "ipx::associate_bus_interfaces": ({"-busif": True, "-clock": True, "-reset": True, "-remove": False,
                                       "-clear": False, **_Q}, (1, 1)),
    "ipx::get_bus_interfaces": (dict(_IPX_GET), (0, 1)),
    "ipx::get_bus_parameters": (dict(_IPX_GET), (0, 1)),
    "ipx::get_port_maps": (dict(_IPX_GET), (0, 1)),
    "ipx::get_memory_maps": (dict(_IPX_GET), (0, 1)),
    "ipx::get_address_blocks": (dict(_IPX_GET), (0, 1)),
    "ipx::get_address_spaces": (dict(_IPX_GET), (0, 1)),
    "ipx::add_bus_interface": (dict(_Q), (2, 2)),
    "ipx::add_bus_parameter": (dict(_Q), (2, 2)),
    "ipx::add_port_map": (dict(_Q), (2, 2)),
    "ipx::add_memory_map": (dict(_Q), (2, 2)),
    "ipx::remove_memory_map": (dict(_Q), (2, 2)),
    "ipx::add_address_block": (dict(_Q), (2, 2)),
    "ipx::add_address_space": (dict(_Q), (2, 2)),
    "ipx::add_register": (dict(_Q), (2, 2)),
    "ipx::add_field": (dict(_Q), (2, 2)),
    "ipx::create_xgui_files": (dict(_Q), (1, 1)),
    "ipx::update_checksums": (dict(_Q), (1, 1)),
    "ipx::check_integrity": ({"-quiet": False, "-verbose": False, "-kernel": False, "-xrt": False}, (1, 1)),
    "ipx::save_core": (dict(_Q), (0, 1)),
}
# Tcl's own commands the stubs record (not Vivado's).
TCL_BUILTINS = {"exec", "file"}
# Closed sets of option values (UG835).
VALUES = {
    ("launch_runs", "-to_step"): {"opt_design", "power_opt_design", "place_design", "post_place_power_opt_design",
                                  "phys_opt_design", "route_design", "post_route_phys_opt_design",
                                  "write_bitstream", "write_device_image"},
    ("create_bd_port", "-dir"): {"I", "O", "IO"},
    ("create_bd_port", "-type"): {"clk", "rst", "intr", "ce", "data", "undef"},
    ("create_bd_intf_port", "-mode"): {"Master", "Slave", "MirroredMaster", "MirroredSlave", "System", "Monitor"},
    ("create_bd_cell", "-type"): {"ip", "module", "hier", "inline_hdl", "container"},
    ("get_timing_paths", "-delay_type"): {"max", "min", "min_max", "max_rise", "max_fall", "min_rise", "min_fall"},
}

# -- the board-preset and IP facts the flows rely on -----------------------------------
# The PS's PL-to-PS slave ports a DMA master may take, written here independently of
# hdl.spec.boards: {name: the S_AXI_GP<n> the PSU__ options and segments count it as} (PG201:
# S_AXI_HPC0_FPD/HPC1 are GP0/GP1, S_AXI_HP0_FPD..HP3 GP2..GP5; each port's clock input is
# saxi<name>_fpd_aclk, its segments SAXIGP<n>/<NAME>_DDR_LOW ..: HPC0's as in public
# write_bd_tcl exports, e.g. SAXIGP0/HPC0_DDR_LOW, SAXIGP0/HPC0_LPS_OCM).
_PS_SLAVES = {"HPC0": 0, "HPC1": 1, "HP0": 2, "HP1": 3, "HP2": 4, "HP3": 5}
_KV_PRESET = "XilinxBoardStore boards/Xilinx/kv260_som/1.4/preset_s4.xml (commit 11df4209)"
_KRIA_PYNQ = "Xilinx/Kria-PYNQ kv260/base/base.tcl (commit 21bf5e18)"
_DIGILENT = "Digilent/vivado-boards new/board_files/nexys_video/A.0/1.2/preset.xml (commit d1898bd0)"
_WRITE_BD_TCL = "the mig_7series block of Vivado's write_bd_tcl output (e.g. a MIG 4.2 design exported by 2020.x)"
CONFIG_FACTS: dict[str, dict[str, str]] = {
    "zynq_ultra_ps_e": {
        "PSU__USE__M_AXI_GP0": _KV_PRESET, "PSU__USE__M_AXI_GP1": _KV_PRESET, "PSU__USE__M_AXI_GP2": _KV_PRESET,
        "PSU__USE__IRQ0": _KV_PRESET, "PSU__FPGA_PL0_ENABLE": _KV_PRESET,
        "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ": _KV_PRESET,
        # pl_clk1: the PL0 names with 1 (PG201 lists PL0..PL3 in one form).
        "PSU__FPGA_PL1_ENABLE": _KV_PRESET + " (PL0 form)",
        "PSU__CRL_APB__PL1_REF_CTRL__FREQMHZ": _KV_PRESET + " (PL0 form)",
        "PSU__MAXIGP0__DATA_WIDTH": _KRIA_PYNQ,
        # Kria-PYNQ sets PSU__USE__S_AXI_GP3 / PSU__SAXIGP3__DATA_WIDTH (HP1); GP2, GP4, GP5 are HP0,
        # HP2, HP3 and GP0, GP1 the coherent HPC0, HPC1, same names (PG201).
        **{f"PSU__USE__S_AXI_GP{gp}": _KRIA_PYNQ + " (GP3 form)" for gp in _PS_SLAVES.values()},
        **{f"PSU__SAXIGP{gp}__DATA_WIDTH": _KRIA_PYNQ + " (GP3 form)" for gp in _PS_SLAVES.values()},
    },
    "smartconnect": {"NUM_SI": _KRIA_PYNQ, "NUM_MI": _KRIA_PYNQ},
    "mig_7series": {"XML_INPUT_FILE": _DIGILENT, "BOARD_MIG_PARAM": _WRITE_BD_TCL,
                    "MIG_DONT_TOUCH_PARAM": _WRITE_BD_TCL, "RESET_BOARD_INTERFACE": _WRITE_BD_TCL},
    "clk_wiz": {"PRIM_IN_FREQ": "PG065 (Clocking Wizard 6.0)", "CLKOUT1_REQUESTED_OUT_FREQ": "PG065",
                "USE_RESET": "PG065", "USE_LOCKED": "PG065"},
    "proc_sys_reset": {},
}
# Block-design port properties (UG994).
PORT_PROPERTIES = {"POLARITY", "FREQ_HZ"}

# Pins of AMD's IPs the flows connect: direction, from each IP's product guide (PG150 MIG
# 7-series, PG065 clk_wiz, PG164 proc_sys_reset, PG201 zynq_ultra_ps_e, PG247 SmartConnect).
PINS: dict[str, dict[str, str]] = {
    "mig_7series": {"sys_clk_i": "I", "clk_ref_i": "I", "sys_rst": "I", "aresetn": "I", "ui_clk": "O",
                    "ui_clk_sync_rst": "O", "mmcm_locked": "O", "init_calib_complete": "O", "ui_addn_clk_0": "O"},
    "clk_wiz": {"clk_in1": "I", "clk_out1": "O", "locked": "O", "reset": "I"},
    "proc_sys_reset": {"slowest_sync_clk": "I", "ext_reset_in": "I", "dcm_locked": "I", "aux_reset_in": "I",
                       "peripheral_aresetn": "O", "interconnect_aresetn": "O", "peripheral_reset": "O"},
    "zynq_ultra_ps_e": {"pl_clk0": "O", "pl_clk1": "O", "pl_resetn0": "O", "maxihpm0_fpd_aclk": "I",
                        **{f"saxi{n.lower()}_fpd_aclk": "I" for n in _PS_SLAVES}, "pl_ps_irq0": "I"},
    "smartconnect": {"aclk": "I", "aresetn": "I"},
}
# Inputs that must be driven: the clocks and resets.
REQUIRED: dict[str, tuple[str, ...]] = {
    "mig_7series": ("sys_clk_i", "clk_ref_i", "sys_rst", "aresetn"),   # clk_ref_i: mig.prj's "No Buffer"
    "clk_wiz": ("clk_in1",),
    "proc_sys_reset": ("slowest_sync_clk", "ext_reset_in"),
    "zynq_ultra_ps_e": ("maxihpm0_fpd_aclk",),
    "smartconnect": ("aclk", "aresetn"),
}
# Our IPs' clock and reset inputs: every one their Verilog has (``m_axi_aclk`` and
# ``m_axi_aresetn`` too where the masters have their own clock, ``clk_ref`` of the Ethernet
# link's IDELAYCTRL) must be driven.
OUR_CLOCKS = ("aclk", "aresetn", "m_axi_aclk", "m_axi_aresetn", "clk_ref")
# The clock of each AXI interface: AMD's IPs (PG201: each PS port's own clock input; PG247: a
# SmartConnect's one aclk), and ours by the rule the IP packaging states (hdl/top.py): the
# masters on m_axi_aclk where the IP has it, everything else on aclk.
INTERFACE_CLOCKS = {
    "zynq_ultra_ps_e": {"M_AXI_HPM0_FPD": "maxihpm0_fpd_aclk",
                        **{f"S_AXI_{n}_FPD": f"saxi{n.lower()}_fpd_aclk" for n in _PS_SLAVES}},
}


def interface_clock(ip: str, interface: str, our_ips) -> str | None:
    """The clock input of ``interface`` on a cell of ``ip`` (None: not known)."""
    if ip in our_ips:
        ports = our_ips[ip]
        return "m_axi_aclk" if interface.startswith("m_axi_") and "m_axi_aclk" in ports else "aclk"
    if ip == "smartconnect":
        return "aclk"
    return INTERFACE_CLOCKS.get(ip, {}).get(interface)
# PS ports a CONFIG.* = 1 turns on: {IP: {property: (its clock input, its interface)}} (PG201:
# S_AXI_HP<n>_FPD is PSU__USE__S_AXI_GP<n+2>, clocked by saxihp<n>_fpd_aclk; S_AXI_HPC<n>_FPD
# is PSU__USE__S_AXI_GP<n>, clocked by saxihpc<n>_fpd_aclk).
ENABLES: dict[str, dict[str, tuple[str, str]]] = {
    "zynq_ultra_ps_e": {f"PSU__USE__S_AXI_GP{gp}": (f"saxi{n.lower()}_fpd_aclk", f"S_AXI_{n}_FPD")
                        for n, gp in _PS_SLAVES.items()},
}
# What apply_board_connection adds (Digilent nexys_video 1.2: MIG's sys_clk_i on R4 as
# mig.prj's <System_Clock> says, its own port; issue 13's review).
BOARD_CONNECTIONS = {
    "ddr3_sdram": {"ports": {"sys_clk_i": ("I", "R4")}, "nets": [("port:sys_clk_i", "sys_clk_i")]},
}
# Master interfaces and their address spaces; slave interfaces and the segments behind them.
# Our IPs' masters: each is its own address space (its packaging script's ipx::add_address_space).
MASTER_SPACES = {**{("systole", m): m for m in ("m_axi_dma", "m_axi_w1", "m_axi_w2", "m_axi_w3")},
                 **{(link, m): m for link in ("systole_link", "systole_eth") for m in ("m_axi_ctrl", "m_axi_mem")},
                 ("zynq_ultra_ps_e", "M_AXI_HPM0_FPD"): "Data"}
SLAVE_SEGMENTS = {
    # PG201 / Kria-PYNQ's exclude_bd_addr_seg lines (HP1 there: SAXIGP3/HP1_LPS_OCM): what an HP
    # (or HPC) port reaches.
    **{("zynq_ultra_ps_e", f"S_AXI_{n}_FPD"): tuple(f"SAXIGP{gp}/{n}_{s}" for s in
                                                   ("DDR_LOW", "DDR_HIGH", "LPS_OCM", "QSPI"))
       for n, gp in _PS_SLAVES.items()},
    ("mig_7series", "S_AXI"): ("memmap/memaddr",),
    ("systole", "s_axi_ctrl"): ("s_axi_ctrl/reg0",),
}


def _parse(call: list[str]) -> tuple[dict[str, str | bool], list[str], list[str]]:
    """(options, positionals, errors) of one call by ``SYNTAX``."""
    options, positional, errors = {}, [], []
    spec, (low, high) = SYNTAX[call[0]]
    words = iter(call[1:])
    for word in words:
        if word.startswith("-") and not re.fullmatch(r"-?[0-9.]+", word):
            if word not in spec:
                errors.append(f"{call[0]}: unknown option {word} (allowed: {' '.join(sorted(spec))})")
                continue
            value = next(words, None) if spec[word] else True
            if value is None:
                errors.append(f"{call[0]}: option {word} needs a value")
            allowed = VALUES.get((call[0], word))
            if allowed and value not in allowed:
                errors.append(f"{call[0]} {word} {value}: choose one of {' '.join(sorted(allowed))}")
            options[word] = value
        else:
            positional.append(word)
    if len(positional) < low or (high is not None and len(positional) > high):
        errors.append(f"{call[0]}: {len(positional)} positional arguments {positional}, "
                      f"takes {low}..{'any' if high is None else high}")
    return options, positional, errors


class _Nets:
    """Union-find over block-design objects (``pin:cell/pin``, ``port:name``, interface pins)."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            item = self.parent[item]
        return item

    def join(self, items) -> None:
        items = list(items)
        for other in items[1:]:
            self.parent[self.find(other)] = self.find(items[0])

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for item in self.parent:
            out.setdefault(self.find(item), []).append(item)
        return out


def lint(calls: list[list[str]], our_ips: dict[str, dict[str, tuple[str, int]]]) -> list[str]:
    """Every problem of the recorded ``calls``; ``our_ips``: {ip name: Verilog ports}."""
    errors: list[str] = []
    cells: dict[str, str] = {}              # cell name -> IP name
    ports: dict[str, str] = {}              # port name -> direction
    sites: dict[str, set[str]] = {}         # package site -> ports
    nets, intf = _Nets(), _Nets()
    assigned: set[tuple[str, str]] = set()
    block_ranges: dict[str, int] = {}       # our IP's address block -> declared range
    ranges: list[tuple[str, int]] = []      # (segment, assigned range)
    config: dict[str, dict[str, str]] = {}  # cell name -> {CONFIG.* name: value}
    for call in calls:
        name = call[0]
        if name in TCL_BUILTINS:
            continue
        if name not in SYNTAX:
            errors.append(f"{name}: not a command of the syntax table")
            continue
        options, positional, problems = _parse(call)
        errors += problems
        if name == "create_bd_cell" and positional:
            cells[positional[0]] = str(options.get("-vlnv", "")).split(":")[2] if ":" in str(options.get("-vlnv", "")) \
                else str(options.get("-vlnv", ""))
        elif name == "create_bd_port" and positional:
            ports[positional[0]] = str(options.get("-dir"))
        elif name == "set_property":
            if "-dict" in options:
                words = str(options["-dict"]).split()
                pairs, targets = list(zip(words[0::2], words[1::2])), positional
            else:
                pairs, targets = [(positional[0], positional[1])] if len(positional) == 3 else [], positional[2:]
            for target in targets:
                if target.startswith("block:") and pairs and pairs[0][0] == "range":
                    block_ranges[target.removeprefix("block:")] = int(pairs[0][1], 0)
                for prop, value in pairs:
                    errors += _check_property(target, prop, value, cells, sites)
                    if target.startswith("cell:") and prop.startswith("CONFIG."):
                        config.setdefault(target.removeprefix("cell:"), {})[prop.removeprefix("CONFIG.")] = value
        elif name == "connect_bd_net":
            nets.join(positional)
        elif name == "connect_bd_intf_net":
            intf.join(positional)
        elif name == "apply_board_connection":
            effect = BOARD_CONNECTIONS.get(str(options.get("-board_interface")))
            cell = str(options.get("-ip_intf", "")).split("/")[0]
            if effect is None:
                errors.append(f"apply_board_connection {options.get('-board_interface')}: effect unknown")
                continue
            for port, (direction, site) in effect["ports"].items():
                ports[port] = direction
                sites.setdefault(site, set()).add(port)
            for port, pin in effect["nets"]:
                nets.join([port, f"pin:{cell}/{pin}"])
        elif name in ("assign_bd_address", "exclude_bd_addr_seg"):
            space = str(options.get("-target_address_space", ""))
            for seg in positional:
                assigned.add((space.removeprefix("space:"), seg.removeprefix("seg:")))
                if "-range" in options:
                    ranges.append((seg.removeprefix("seg:"), int(str(options["-range"]), 0)))
    enabled = {cell: [ENABLES[ip][prop] for prop, value in config.get(cell, {}).items()
                      if prop in ENABLES.get(ip, {}) and value.strip("{}") == "1"] for cell, ip in cells.items()}
    errors += _check_nets(nets, cells, ports, our_ips, enabled)
    errors += _check_interfaces(intf, cells, our_ips, enabled)
    errors += _check_clock_domains(intf, nets, cells, our_ips)
    errors += _check_segments(intf, cells, assigned)
    for seg, size in ranges:
        cell, _, block = seg.rpartition("/")
        declared = block_ranges.get(block) if cells.get(cell.split("/")[0]) in our_ips else None
        if declared is not None and declared != size:
            errors.append(f"segment {seg} is assigned 0x{size:X} bytes, the IP declares 0x{declared:X}")
    for site, on_site in sorted(sites.items()):
        if len(on_site) > 1:
            errors.append(f"site {site} has {len(on_site)} ports: {', '.join(sorted(on_site))}")
    return errors


def _check_property(target: str, prop: str, value: str, cells, sites) -> list[str]:
    kind, _, name = target.partition(":")
    if kind == "xport" and prop == "PACKAGE_PIN":
        sites.setdefault(value, set()).add(name)
    if not prop.startswith("CONFIG."):
        return []
    prop = prop.removeprefix("CONFIG.")
    if kind == "port":
        return [] if prop in PORT_PROPERTIES else [f"port {name}: CONFIG.{prop} is not a port property"]
    if kind != "cell":
        return []
    ip = cells.get(name)
    if ip not in CONFIG_FACTS:
        return [f"cell {name} ({ip}): no property facts for this IP"]
    if prop not in CONFIG_FACTS[ip]:
        return [f"cell {name} ({ip}): CONFIG.{prop} is not in the checked facts of {ip}"]
    return []


def _direction(obj: str, cells, ports, our_ips) -> str | None:
    kind, _, name = obj.partition(":")
    if kind == "port":
        return {"I": "driver", "O": "sink", "IO": "bidir"}.get(ports.get(name))
    cell, _, pin = name.partition("/")
    ip = cells.get(cell)
    if ip in our_ips:
        direction = our_ips[ip].get(pin, (None,))[0]
        return {"output": "driver", "input": "sink", "inout": "bidir"}.get(direction)
    return {"O": "driver", "I": "sink"}.get(PINS.get(ip, {}).get(pin))


def _check_nets(nets: _Nets, cells, ports, our_ips, enabled) -> list[str]:
    errors, driven = [], set()
    for members in nets.groups().values():
        roles = {m: _direction(m, cells, ports, our_ips) for m in members}
        errors += [f"{m}: unknown pin or port" for m, role in roles.items() if role is None]
        drivers = sorted(m for m, role in roles.items() if role == "driver")
        if len(drivers) > 1:
            errors.append(f"net of {', '.join(sorted(members))}: {len(drivers)} drivers ({', '.join(drivers)})")
        elif not drivers and "bidir" not in roles.values():     # an inout net: driven from either end
            errors.append(f"net of {', '.join(sorted(members))}: no driver")
        if drivers:                         # (a doubled driver is its own error, not an undriven input)
            driven.update(members)
    for cell, ip in cells.items():
        ours = tuple(pin for pin in OUR_CLOCKS if pin in our_ips.get(ip, {}))
        for pin in (*REQUIRED.get(ip, ()), *ours, *(clock for clock, _ in enabled[cell])):
            if f"pin:{cell}/{pin}" not in driven:
                errors.append(f"{cell}/{pin}: required clock/reset input is not driven")
    return errors


def _check_interfaces(intf: _Nets, cells, our_ips, enabled) -> list[str]:
    """Every AXI interface of our IPs and every enabled PS port is on an interface net."""
    connected = {m for members in intf.groups().values() if len(members) > 1 for m in members}
    errors = []
    for cell, ip in cells.items():
        names = sorted({m.group(1) for p in our_ips.get(ip, {}) if (m := re.match(r"([sm]_axi_[a-z0-9]+)_", p))})
        names += [interface for _, interface in enabled[cell]]
        errors += [f"{cell}/{name}: interface is not connected" for name in names if f"intf:{cell}/{name}" not in connected]
    return errors


def _check_clock_domains(intf: _Nets, nets: _Nets, cells, our_ips) -> list[str]:
    """The two ends of every interface net run on one clock net (a SmartConnect with one
    aclk, or a master and the PS port it drives), since nothing between them crosses."""
    errors = []
    for members in intf.groups().values():
        clocks = {}
        for member in members:
            cell, _, name = member.removeprefix("intf:").partition("/")
            clock = interface_clock(cells.get(cell), name, our_ips)
            if clock is not None:
                clocks[f"{cell}/{name}"] = (clock, nets.find(f"pin:{cell}/{clock}"))
        if len({net for _, net in clocks.values()}) > 1:
            errors.append("interface net of " + ", ".join(f"{end} (clock {clock})" for end, (clock, _) in
                                                         sorted(clocks.items())) + " spans different clock nets")
    return errors


def _check_segments(intf: _Nets, cells, assigned) -> list[str]:
    # A SmartConnect joins every interface of its own.
    for cell, ip in cells.items():
        if ip == "smartconnect":
            intf.join([m for m in list(intf.parent) if m.startswith(f"intf:{cell}/")])
    groups = intf.groups()
    reachable = set()
    for members in groups.values():
        for master in members:
            cell, _, name = master.removeprefix("intf:").partition("/")
            space = MASTER_SPACES.get((cells.get(cell), name))
            if space is None:
                continue
            for slave in members:
                s_cell, _, s_name = slave.removeprefix("intf:").partition("/")
                for seg in SLAVE_SEGMENTS.get((cells.get(s_cell), s_name), ()):
                    reachable.add((f"{cell}/{space}", f"{s_cell}/{seg}"))
    errors = [f"segment {seg} is unassigned in {space}" for space, seg in sorted(reachable - assigned)]
    errors += [f"segment {seg} is assigned in {space}, which cannot reach it" for space, seg in
               sorted(assigned - reachable)]
    return errors


# -- running the scripts -------------------------------------------------------------

def record(scripts: list[Path], tmp_path: Path) -> list[list[str]]:
    """The calls of ``scripts`` sourced in order under the stubs (each from its folder)."""
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        pytest.fail("`tclsh` is not installed; run `make deps` (Debian tools for the tests)")
    log = tmp_path / "calls.txt"
    sources = "\n".join(f"cd {{{s.parent}}}\nif {{[catch {{source {{{s}}}}} m]}} {{ puts stderr \"{s.name}: $m\"; "
                        "set ::failed 1 }" for s in scripts)
    driver = tmp_path / "driver.tcl"
    driver.write_text(STUBS + f"""
set ::failed 0
{sources}
set out [open {{{log}}} w]
foreach call $::calls {{ puts $out [join $call "\\x1f"] }}
close $out
exit $::failed
""")
    result = subprocess.run([tclsh, str(driver)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line.split("\x1f") for line in log.read_text().splitlines()]


def _verilog_ports(path: Path, module: str) -> dict[str, tuple[str, int]]:
    from gen.vivado.ports import verilog_ports
    return verilog_ports(path.read_text(), module)


SCRIPTS = {"kv260": ["build.tcl", "kv260.xdc", "kv260_timing.xdc"],
           "nexys_video": ["build.tcl", "nexys_video.xdc", "ip/hdl/liteeth_core.xdc", "program.tcl"]}


@pytest.fixture(scope="module")
def flows(tmp_path_factory):
    from sim.top_build import top_verilog
    out = {}
    for board in SCRIPTS:
        directory = tmp_path_factory.mktemp(f"lint-{board}")
        generate(board, preset(board), directory, top_verilog=top_verilog(preset(board)))
        out[board] = directory
    return out


def lint_flow(directory: Path, board: str, tmp_path: Path, edit=None) -> list[str]:
    """``lint`` of ``board``'s flow in ``directory``; ``edit(name, text)`` may change a script first."""
    if edit is not None:
        copy = tmp_path / "flow"
        shutil.copytree(directory, copy)
        directory = copy
        for path in (*directory.rglob("*.tcl"), *directory.rglob("*.xdc")):
            path.write_text(edit(path.name, path.read_text()))
    ips = {"systole": _verilog_ports(directory / "ip" / "hdl" / "systole_top.v", "systole_top")}
    for name in ("systole_link", "systole_eth"):
        if (directory / "ip" / "hdl" / f"{name}.v").exists():
            ips[name] = _verilog_ports(directory / "ip" / "hdl" / f"{name}.v", name)
    return lint(record([directory / s for s in SCRIPTS[board]], tmp_path), ips)


@pytest.mark.parametrize("board", sorted(SCRIPTS))
def test_generated_flows_pass_the_static_check(flows, board, tmp_path):
    assert lint_flow(flows[board], board, tmp_path) == []


# The Nexys Video MIG clocking before issue 13: a clk_wiz makes 200 MHz for sys_clk_i and
# the board connection adds its own sys_clk_i port on R4.
OLD_NEXYS_CLOCKING = """set clk_wiz [create_bd_cell -type ip -vlnv xilinx.com:ip:clk_wiz clk_wiz_0]
set_property -dict [list CONFIG.PRIM_IN_FREQ {100.000} CONFIG.CLKOUT1_REQUESTED_OUT_FREQ {200.000} \\
    CONFIG.USE_RESET {false} CONFIG.USE_LOCKED {true}] $clk_wiz
set mig [create_bd_cell -type ip -vlnv xilinx.com:ip:mig_7series mig_7series_0]
apply_board_connection -board_interface "ddr3_sdram" -ip_intf "mig_7series_0/mig_ddr_interface" -diagram "systole_bd"
"""


def _old_nexys_clocking(name: str, text: str) -> str:
    if name != "bd.tcl":
        return text
    start, end = text.index("set mig [create_bd_cell"), text.index("set link [create_bd_cell")
    text = text[:start] + OLD_NEXYS_CLOCKING + "\n" + text[end:]
    start = text.index("connect_bd_net [get_bd_ports sys_clk] [get_bd_pins mig_7series_0/sys_clk_i]")
    end = text.index("\n", text.index("[get_bd_pins systole_eth_0/clk_ref]", start))
    return text[:start] + """connect_bd_net [get_bd_ports sys_clk] [get_bd_pins clk_wiz_0/clk_in1]
connect_bd_net [get_bd_pins clk_wiz_0/clk_out1] [get_bd_pins mig_7series_0/sys_clk_i]""" + text[end:]


def test_the_old_nexys_video_clocking_fails(flows, tmp_path):
    errors = lint_flow(flows["nexys_video"], "nexys_video", tmp_path, _old_nexys_clocking)
    assert any("pin:mig_7series_0/sys_clk_i" in e and "2 drivers" in e for e in errors), errors
    assert "mig_7series_0/clk_ref_i: required clock/reset input is not driven" in errors
    assert "systole_eth_0/clk_ref: required clock/reset input is not driven" in errors
    assert "site R4 has 2 ports: sys_clk, sys_clk_i" in errors


def test_a_doubled_clock_driver_is_caught(flows, tmp_path):
    def doubled(name, text):
        return text + "connect_bd_net [get_bd_pins zynq_ultra_ps_e_0/pl_clk1] [get_bd_pins systole_0/aclk]\n" \
            if name == "bd.tcl" else text
    errors = lint_flow(flows["kv260"], "kv260", tmp_path, doubled)
    assert len(errors) == 1 and "2 drivers (pin:zynq_ultra_ps_e_0/pl_clk0, pin:zynq_ultra_ps_e_0/pl_clk1)" in errors[0]


def test_a_misspelled_psu_property_is_caught(flows, tmp_path):
    def misspelled(name, text):
        return text.replace("CONFIG.PSU__SAXIGP2__DATA_WIDTH", "CONFIG.PSU__SAXIGP2_DATA_WIDTH")
    errors = lint_flow(flows["kv260"], "kv260", tmp_path, misspelled)
    assert errors == ["cell zynq_ultra_ps_e_0 (zynq_ultra_ps_e): CONFIG.PSU__SAXIGP2_DATA_WIDTH is not in the "
                      "checked facts of zynq_ultra_ps_e"]


def test_an_unassigned_segment_is_caught(flows, tmp_path):
    def unexcluded(name, text):
        return re.sub(r"exclude_bd_addr_seg [^\n]*\n[^\n]*HPC0_QSPI\]\n", "", text)
    errors = lint_flow(flows["kv260"], "kv260", tmp_path, unexcluded)
    assert errors == ["segment zynq_ultra_ps_e_0/SAXIGP0/HPC0_QSPI is unassigned in systole_0/m_axi_dma"]


def test_an_undocumented_option_or_value_is_caught(flows, tmp_path):
    def wrong(name, text):
        return text.replace("-to_step write_bitstream", "-to_step bitstream").replace("-include_bit", "-with_bit")
    errors = lint_flow(flows["kv260"], "kv260", tmp_path, wrong)
    assert any("launch_runs -to_step bitstream: choose one of" in e for e in errors), errors
    assert any("write_hw_platform: unknown option -with_bit" in e for e in errors), errors


def test_a_register_range_the_ip_does_not_declare_is_caught(flows, tmp_path):
    def old_range(name, text):      # the 64 KiB reg0 of before issue 13, on the Nexys Video's 4 KiB window
        return text.replace("set_property range 4096 $block", "set_property range 65536 $block")
    errors = lint_flow(flows["nexys_video"], "nexys_video", tmp_path, old_range)
    # ... in the control space of each link (UART bridge, Ethernet).
    assert errors == ["segment systole_0/s_axi_ctrl/reg0 is assigned 0x1000 bytes, the IP declares 0x10000"] * 2


def test_an_ethernet_link_left_out_of_the_control_path_is_caught(flows, tmp_path):
    """The Ethernet link's control master not on the control SmartConnect: its interface
    is unconnected, and the registers assigned in its space are out of its reach."""
    def dropped(name, text):
        return re.sub(r"connect_bd_intf_net \[get_bd_intf_pins systole_eth_0/m_axi_ctrl\][^\n]*\n", "", text)
    errors = lint_flow(flows["nexys_video"], "nexys_video", tmp_path, dropped)
    assert errors == ["systole_eth_0/m_axi_ctrl: interface is not connected",
                      "segment systole_0/s_axi_ctrl/reg0 is assigned in systole_eth_0/m_axi_ctrl, which cannot reach it"]


def test_an_unconnected_hp_port_is_caught(flows, tmp_path):
    def unconnected(name, text):
        return re.sub(r"connect_bd_intf_net [^\n]*systole_0/m_axi_w2\][^\n]*\n", "", text)
    errors = lint_flow(flows["kv260"], "kv260", tmp_path, unconnected)
    # m_axi_w2 is on S_AXI_HP3_FPD (coherent_io: HPC0, HP1, HP3, HP0).
    assert sorted(errors[:2]) == ["systole_0/m_axi_w2: interface is not connected",
                                  "zynq_ultra_ps_e_0/S_AXI_HP3_FPD: interface is not connected"], errors
    # ... and the segments assigned in its space are out of its reach.
    assert {e for e in errors[2:]} == {f"segment zynq_ultra_ps_e_0/SAXIGP5/HP3_{s} is assigned in systole_0/m_axi_w2, "
                                       "which cannot reach it" for s in ("DDR_LOW", "DDR_HIGH", "LPS_OCM", "QSPI")}


def test_a_floating_hp_clock_is_caught(flows, tmp_path):
    def floating(name, text):
        return text.replace("    [get_bd_pins zynq_ultra_ps_e_0/saxihp3_fpd_aclk] \\\n", "")
    errors = lint_flow(flows["kv260"], "kv260", tmp_path, floating)
    assert errors == ["zynq_ultra_ps_e_0/saxihp3_fpd_aclk: required clock/reset input is not driven",
                      "interface net of systole_0/m_axi_w2 (clock m_axi_aclk), zynq_ultra_ps_e_0/S_AXI_HP3_FPD "
                      "(clock saxihp3_fpd_aclk) spans different clock nets"]


def test_an_hp_port_on_the_core_clock_is_caught(flows, tmp_path):
    """HPC0 clocked by pl_clk0 while its master runs on pl_clk1: the interface crosses clocks."""
    def moved(name, text):
        if name != "bd.tcl":
            return text
        text = text.replace("    [get_bd_pins zynq_ultra_ps_e_0/saxihpc0_fpd_aclk] \\\n", "")
        return text + "connect_bd_net [get_bd_pins zynq_ultra_ps_e_0/pl_clk0] [get_bd_pins zynq_ultra_ps_e_0/saxihpc0_fpd_aclk]\n"
    errors = lint_flow(flows["kv260"], "kv260", tmp_path, moved)
    assert errors == ["interface net of systole_0/m_axi_dma (clock m_axi_aclk), zynq_ultra_ps_e_0/S_AXI_HPC0_FPD "
                      "(clock saxihpc0_fpd_aclk) spans different clock nets"]


def test_a_floating_master_reset_is_caught(flows, tmp_path):
    def floating(name, text):
        return re.sub(r"connect_bd_net [^\n]*systole_0/m_axi_aresetn\]\n", "", text)
    errors = lint_flow(flows["kv260"], "kv260", tmp_path, floating)
    assert errors == ["systole_0/m_axi_aresetn: required clock/reset input is not driven"]


def test_a_one_clock_kv260_flow_passes(tmp_path):
    """The kv260 flow of a build whose masters run on aclk: one PL clock, no timing XDC."""
    from sim.top_build import top_verilog
    # Two rows: the array's height changes no port of the top and converts in a third of the time.
    config = preset("kv260").replace(name="kv260-one-clock", axi_clock_mhz=None, rows=2)
    generate("kv260", config, tmp_path / "flow", top_verilog=top_verilog(config))
    assert not (tmp_path / "flow" / "kv260_timing.xdc").exists()
    calls = record([tmp_path / "flow" / s for s in ("build.tcl", "kv260.xdc")], tmp_path)
    ips = {"systole": _verilog_ports(tmp_path / "flow" / "ip" / "hdl" / "systole_top.v", "systole_top")}
    assert "m_axi_aclk" not in ips["systole"]
    assert lint(calls, ips) == []


def test_the_crossing_constraints_bound_both_directions(flows, tmp_path):
    """kv260_timing.xdc: one data-path-only max delay each way between the core's and the
    masters' clocks, of one period of the faster (300 MHz: 3.333 ns), found from the
    IP's own clock pins; no false path or clock group cuts them."""
    calls = record([flows["kv260"] / "kv260_timing.xdc"], tmp_path)
    delays = [call for call in calls if call[0] == "set_max_delay"]
    assert len(delays) == 2 and all("-datapath_only" in call and call[-1] == "3.333" for call in delays), delays
    ends = {(call[call.index("-from") + 1], call[call.index("-to") + 1]) for call in delays}
    pins = [call for call in calls if call[0] == "get_pins"]
    assert any("*/systole_0/aclk" in " ".join(c) for c in pins) and any("*/systole_0/m_axi_aclk" in " ".join(c) for c in pins)
    assert len(ends) == 2 and {(b, a) for a, b in ends} == ends, ends
    assert not any(call[0] in ("set_false_path", "set_clock_groups") for call in calls)
    config = preset("kv260")
    assert f"{1e3 / max(config.clock_mhz, config.axi_clock_mhz):.3f}" == "3.333"


def test_every_weight_master_is_checked(flows):
    """The KV260 flow has four DMA masters, each in MASTER_SPACES, on its own enabled HP port
    (m_axi_dma on the coherent HPC0); the one HP port left (HP2) is turned off."""
    config = preset("kv260")
    assert config.weight_ports == 4 and all(("systole", m) in MASTER_SPACES for m in config.weight_masters)
    bd = (flows["kv260"] / "bd.tcl").read_text()
    on = {prop for prop in ENABLES["zynq_ultra_ps_e"] if f"CONFIG.{prop} {{1}}" in bd}
    assert sorted(ENABLES["zynq_ultra_ps_e"][prop][1] for prop in on) == \
        ["S_AXI_HP0_FPD", "S_AXI_HP1_FPD", "S_AXI_HP3_FPD", "S_AXI_HPC0_FPD"]
    assert "CONFIG.PSU__USE__S_AXI_GP4 {0}" in bd


def test_a_wrong_hpc_name_is_caught(flows, tmp_path):
    """m_axi_dma connected to a misspelled coherent port: the real HPC0 (turned on) is left
    unconnected and the misspelled interface is no port of the PS's."""
    def wrong(name, text):
        return text.replace("zynq_ultra_ps_e_0/S_AXI_HPC0_FPD]", "zynq_ultra_ps_e_0/S_AXI_HPC_0_FPD]")
    errors = lint_flow(flows["kv260"], "kv260", tmp_path, wrong)
    assert "zynq_ultra_ps_e_0/S_AXI_HPC0_FPD: interface is not connected" in errors, errors
    def wrong_clock(name, text):
        return text.replace("zynq_ultra_ps_e_0/saxihpc0_fpd_aclk]", "zynq_ultra_ps_e_0/saxi_hpc0_fpd_aclk]")
    errors = lint_flow(flows["kv260"], "kv260", tmp_path / "clock", wrong_clock)
    assert "zynq_ultra_ps_e_0/saxihpc0_fpd_aclk: required clock/reset input is not driven" in errors, errors


def test_a_non_coherent_kv260_flow_passes(tmp_path):
    """The kv260 flow without coherent_io: m_axi_dma on HP0 as before, HPC0 untouched."""
    from sim.top_build import top_verilog
    config = preset("kv260").replace(name="kv260-noncoherent", coherent_io=False, rows=2)   # rows: as above
    generate("kv260", config, tmp_path / "flow", top_verilog=top_verilog(config))
    bd = (tmp_path / "flow" / "bd.tcl").read_text()
    assert "HPC" not in bd and "PSU__USE__S_AXI_GP0" not in bd
    calls = record([tmp_path / "flow" / s for s in SCRIPTS["kv260"]], tmp_path)
    ips = {"systole": _verilog_ports(tmp_path / "flow" / "ip" / "hdl" / "systole_top.v", "systole_top")}
    assert lint(calls, ips) == []
