"""``python -m gen.vivado ip|kv260|nexys_video``: Vivado flows for the two boards.

Vivado is not run here: this writes TCL that a user with Vivado runs with one
command, under ``build/vivado/<target>/`` (or ``--out``):

``ip``           ``hdl/systole_top.v`` + ``package_ip.tcl`` (``ipx::`` packaging: the
                 ``s_axi_ctrl``/``m_axi_dma`` interfaces inferred, ``aclk`` associated
                 with both and ``aresetn`` as its reset, ``irq`` an interrupt, a memory
                 map whose registers come from ``hdl/regmap.py``). With ``--link`` also
                 the ``systole_link`` UART bridge IP.
``kv260``        the IP, ``bd.tcl`` (``zynq_ultra_ps_e`` with the KV260 board preset,
                 HPM0_FPD -> SmartConnect -> ``s_axi_ctrl``, ``m_axi_dma`` -> 128-bit
                 S_AXI_HP0_FPD, ``pl_clk0`` at the preset's clock, ``irq`` ->
                 ``pl_ps_irq0``), ``build.tcl`` (synth, impl, FAIL on negative WNS/WHS,
                 ``.bit``, ``.bit.bin`` via bootgen, ``.xsa`` with bitstream, ``.hwh``),
                 ``systole.dtso`` (+ ``systole.dtbo`` when ``dtc`` is installed),
                 ``shell.json``, ``README.md``.
``nexys_video``  both IPs, ``bd.tcl`` (MIG 7-series for the DDR3 from the Digilent board
                 preset, a SmartConnect merging the bridge's and the accelerator's AXI4
                 masters into the MIG, everything on MIG's ``ui_clk``), ``nexys_video.xdc``,
                 ``build.tcl`` with the same timing rule, ``program.tcl``, ``README.md``.

Run a flow with ``cd build/vivado/<target> && vivado -mode batch -source build.tcl``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hdl.spec.config import AccelConfig
from hdl.spec.regmap import REGISTERS

from .verilog import REPO, add_config_args, config_from_args

__all__ = ["Board", "BOARDS", "IP_VENDOR", "IP_LIBRARY", "KV260_CTRL_BASE", "verilog_ports",
           "package_ip_tcl", "kv260_bd_tcl", "kv260_dtso", "nexys_video_bd_tcl", "build_tcl",
           "generate", "main"]

IP_VENDOR = "systole.dev"
IP_LIBRARY = "systole"
IP_VERSION = "1.0"
ACCEL_VLNV = f"{IP_VENDOR}:{IP_LIBRARY}:systole:{IP_VERSION}"
LINK_VLNV = f"{IP_VENDOR}:{IP_LIBRARY}:systole_link:{IP_VERSION}"
KV260_CTRL_BASE = 0xA000_0000       # start of the HPM0_FPD window (0xA000_0000..0xAFFF_FFFF)
CTRL_RANGE = 0x1_0000               # 64 KiB segment (the map uses 0x00..0xFF)
PL_PS_IRQ0_SPI = 89                 # pl_ps_irq0[0] is GIC SPI 121 = 32 + 89
LINK_CTRL_ADDR_WIDTH = 12           # the bridge's AXI4-Lite master covers one 4 KiB segment


@dataclass(frozen=True)
class Board:
    """A board the flows target."""

    name: str
    part: str
    board_part: str
    preset: str
    families: str                   # IP supported families (ipx)


BOARDS = {
    "kv260": Board("kv260", "xck26-sfvc784-2LV-c", "xilinx.com:kv260_som:part0:1.4", "kv260",
                   "zynquplus Production"),
    "nexys_video": Board("nexys_video", "xc7a200tsbg484-1", "digilentinc.com:nexys_video:part0:1.2",
                         "nexys_video", "artix7 Production"),
}


# -- Verilog ports --------------------------------------------------------------------

_PORT_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s*)?([A-Za-z_]\w*)\s*;",
                        re.M)


def verilog_ports(verilog: str, module: str) -> dict[str, tuple[str, int]]:
    """``{port: (direction, width)}`` of ``module`` in Amaranth-generated Verilog."""
    start = re.search(rf"^module\s+{re.escape(module)}\s*\(", verilog, re.M)
    if start is None:
        raise ValueError(f"module {module!r} not found in the Verilog")
    end = verilog.find("endmodule", start.end())
    body = verilog[start.end():end]
    header = body[:body.find(");")]
    names = [n.strip() for n in header.replace("\n", " ").split(",") if n.strip()]
    ports = {}
    for direction, msb, lsb, name in _PORT_DECL.findall(body):
        if name in names:
            ports[name] = (direction, abs(int(msb) - int(lsb)) + 1 if msb else 1)
    missing = set(names) - set(ports)
    if missing:
        raise ValueError(f"no declaration found for ports {sorted(missing)} of {module}")
    return ports


def _interface_prefixes(ports: dict) -> set[str]:
    return {m.group(1) for name in ports if (m := re.match(r"^([sm]_axi_[a-z0-9]+)_", name))}


# -- IP packaging -----------------------------------------------------------------------

def _tcl_text(text: str) -> str:
    """A braced Tcl word: the text with braces and backslashes neutralised."""
    return "{" + re.sub(r"[{}\\\[\]]", "", text.replace("\n", " ")) + "}"


def _register_tcl() -> str:
    """ipx:: register and field declarations from hdl/regmap.py (PYNQ reads them from the .hwh)."""
    out = []
    for reg in REGISTERS:
        access = {"RW": "read-write", "RO": "read-only", "R/TOW": "read-write"}[reg.access]
        out += [f"set reg [ipx::add_register {reg.name} $block]",
                f"set_property address_offset 0x{reg.offset:02X} $reg",
                "set_property size 32 $reg",
                f"set_property description {_tcl_text(reg.doc)} $reg"]
        for fld in reg.fields:
            out += [f"set fld [ipx::add_field {fld.name.upper()} $reg]",
                    f"set_property bit_offset {fld.lsb} $fld",
                    f"set_property bit_width {fld.width} $fld",
                    f"set_property access {access} $fld",
                    f"set_property description {_tcl_text(fld.doc)} $fld"]
    return "\n".join(out)


def package_ip_tcl(*, top: str, name: str, display_name: str, description: str, ports: dict,
                   board: Board | None = None, irq_mode: str = "master", slave_regs: bool = True,
                   master_ranges: dict[str, int] | None = None) -> str:
    """TCL packaging ``hdl/<top>.v`` as IP ``name`` into ``<script dir>/<name>/``.

    ``ports`` is the module's port list (``verilog_ports``); every interface prefix in it
    is inferred, associated with ``aclk`` and ``aresetn``. ``irq`` becomes an interrupt
    (``master`` = output, ``slave`` = input). ``master_ranges`` sets the address-space
    range of each AXI master.
    """
    part = board.part if board else BOARDS["kv260"].part
    families = " ".join(b.families for b in BOARDS.values())
    busses = sorted(_interface_prefixes(ports))
    lines = [
        f"# Package {top}.v as the Vivado IP {IP_VENDOR}:{IP_LIBRARY}:{name}:{IP_VERSION}.",
        "# Generated by `python -m gen.vivado`; run: vivado -mode batch -source "
        f"package_{name}.tcl",
        "# Own variable names: build.tcl sources this script in its global scope.",
        "set pkg_dir [file normalize [file dirname [info script]]]",
        f"set ip_root [file join $pkg_dir {name}]",
        f"create_project -in_memory -part {part}",
        f"add_files -norecurse [file join $pkg_dir hdl {top}.v]",
        f"set_property top {top} [current_fileset]",
        "update_compile_order -fileset sources_1",
        f"ipx::package_project -root_dir $ip_root -vendor {IP_VENDOR} -library {IP_LIBRARY} "
        "-taxonomy /UserIP -import_files -set_current true -force",
        "set core [ipx::current_core]",
        f"set_property name {name} $core",
        f"set_property version {IP_VERSION} $core",
        f"set_property display_name {_tcl_text(display_name)} $core",
        f"set_property description {_tcl_text(description)} $core",
        f"set_property supported_families {{{families}}} $core",
        "",
        "# Interfaces from the port names (<prefix>_<axi signal>, aclk, aresetn).",
        "ipx::infer_bus_interfaces xilinx.com:interface:aximm_rtl:1.0 $core",
        "ipx::infer_bus_interfaces xilinx.com:signal:clock_rtl:1.0 $core",
        "ipx::infer_bus_interfaces xilinx.com:signal:reset_rtl:1.0 $core",
    ]
    for bus in busses:
        lines.append(f"if {{[llength [ipx::get_bus_interfaces {bus} -of_objects $core]] != 1}} "
                     f"{{error \"interface {bus} was not inferred from the {bus}_* ports\"}}")
    lines += [f"ipx::associate_bus_interfaces -busif {bus} -clock aclk $core" for bus in busses]
    lines += [
        "ipx::associate_bus_interfaces -clock aclk -reset aresetn $core",
        "set rst [ipx::get_bus_interfaces aresetn -of_objects $core]",
        "if {[llength [ipx::get_bus_parameters POLARITY -of_objects $rst]] == 0} {ipx::add_bus_parameter POLARITY $rst}",
        "set_property value ACTIVE_LOW [ipx::get_bus_parameters POLARITY -of_objects $rst]",
        "",
        "# The interrupt: level, active high.",
        "ipx::add_bus_interface irq $core",
        "set irq [ipx::get_bus_interfaces irq -of_objects $core]",
        "set_property abstraction_type_vlnv xilinx.com:signal:interrupt_rtl:1.0 $irq",
        "set_property bus_type_vlnv xilinx.com:signal:interrupt:1.0 $irq",
        f"set_property interface_mode {irq_mode} $irq",
        "ipx::add_port_map INTERRUPT $irq",
        "set_property physical_name irq [ipx::get_port_maps INTERRUPT -of_objects $irq]",
        "ipx::add_bus_parameter SENSITIVITY $irq",
        "set_property value LEVEL_HIGH [ipx::get_bus_parameters SENSITIVITY -of_objects $irq]",
    ]
    if slave_regs:
        lines += [
            "",
            "# s_axi_ctrl: one address block holding the register map of hdl/regmap.py.",
            "ipx::add_memory_map s_axi_ctrl $core",
            "set_property slave_memory_map_ref s_axi_ctrl [ipx::get_bus_interfaces s_axi_ctrl -of_objects $core]",
            "ipx::add_address_block reg0 [ipx::get_memory_maps s_axi_ctrl -of_objects $core]",
            "set block [ipx::get_address_blocks reg0 -of_objects [ipx::get_memory_maps s_axi_ctrl -of_objects $core]]",
            f"set_property range {CTRL_RANGE} $block",
            "set_property width 32 $block",
            "set_property usage register $block",
            _register_tcl(),
        ]
    for bus, size in (master_ranges or {}).items():
        lines += [
            "",
            f"# {bus}: the master's address space.",
            f"if {{[llength [ipx::get_address_spaces {bus} -of_objects $core]] == 0}} "
            f"{{ipx::add_address_space {bus} $core}}",
            f"set_property master_address_space_ref {bus} [ipx::get_bus_interfaces {bus} -of_objects $core]",
            f"set_property range {size} [ipx::get_address_spaces {bus} -of_objects $core]",
            f"set_property width 32 [ipx::get_address_spaces {bus} -of_objects $core]",
        ]
    lines += [
        "",
        "ipx::create_xgui_files $core",
        "ipx::update_checksums $core",
        "ipx::check_integrity $core",
        "ipx::save_core $core",
        "close_project",
        f'puts "packaged {name} into $ip_root"',
        "",
    ]
    return "\n".join(lines)


# -- KV260 ------------------------------------------------------------------------------

def _afi_width_code(bits: int) -> int:
    """AFIFM read/write width code of the zynqmp AFI node: 0 = 128, 1 = 64, 2 = 32 bit."""
    try:
        return {128: 0, 64: 1, 32: 2}[bits]
    except KeyError:
        raise ValueError(f"an HP port is 32, 64 or 128 bits wide, not {bits}") from None


def kv260_bd_tcl(config: AccelConfig) -> str:
    """The KV260 block design: PS + SmartConnect + accelerator."""
    if config.bus_bits not in (32, 64, 128):
        raise ValueError(f"bus_bits={config.bus_bits}: S_AXI_HP0_FPD is at most 128 bits wide")
    if config.addr_width < 40:
        raise ValueError(f"addr_width={config.addr_width}: the KV260's DDR (above 4 GiB too) needs 40 bits")
    return f"""# KV260 block design: Zynq UltraScale+ PS, the Systole accelerator and its wiring.
# Generated by `python -m gen.vivado kv260` for the '{config.name}' configuration; sourced by build.tcl.
create_bd_design systole_bd

set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e zynq_ultra_ps_e_0]
apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {{apply_board_preset "1"}} $ps
set_property -dict [list \\
    CONFIG.PSU__USE__M_AXI_GP0 {{1}} \\
    CONFIG.PSU__MAXIGP0__DATA_WIDTH {{128}} \\
    CONFIG.PSU__USE__M_AXI_GP1 {{0}} \\
    CONFIG.PSU__USE__M_AXI_GP2 {{0}} \\
    CONFIG.PSU__USE__S_AXI_GP2 {{1}} \\
    CONFIG.PSU__SAXIGP2__DATA_WIDTH {{{config.bus_bits}}} \\
    CONFIG.PSU__FPGA_PL0_ENABLE {{1}} \\
    CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {{{config.clock_mhz:g}}} \\
    CONFIG.PSU__USE__IRQ0 {{1}} \\
] $ps

set systole [create_bd_cell -type ip -vlnv {ACCEL_VLNV} systole_0]
set ctrl_sc [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect smartconnect_ctrl]
set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] $ctrl_sc
set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_pl_clk0]

# One clock, pl_clk0, for the PL, both PS AXI ports and the interconnect.
connect_bd_net [get_bd_pins zynq_ultra_ps_e_0/pl_clk0] \\
    [get_bd_pins systole_0/aclk] [get_bd_pins smartconnect_ctrl/aclk] \\
    [get_bd_pins zynq_ultra_ps_e_0/maxihpm0_fpd_aclk] [get_bd_pins zynq_ultra_ps_e_0/saxihp0_fpd_aclk] \\
    [get_bd_pins rst_pl_clk0/slowest_sync_clk]
connect_bd_net [get_bd_pins zynq_ultra_ps_e_0/pl_resetn0] [get_bd_pins rst_pl_clk0/ext_reset_in]
connect_bd_net [get_bd_pins rst_pl_clk0/peripheral_aresetn] [get_bd_pins systole_0/aresetn]
connect_bd_net [get_bd_pins rst_pl_clk0/interconnect_aresetn] [get_bd_pins smartconnect_ctrl/aresetn]

# Control: HPM0_FPD -> SmartConnect (128-bit AXI4 to 32-bit AXI4-Lite) -> s_axi_ctrl.
connect_bd_intf_net [get_bd_intf_pins zynq_ultra_ps_e_0/M_AXI_HPM0_FPD] [get_bd_intf_pins smartconnect_ctrl/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins smartconnect_ctrl/M00_AXI] [get_bd_intf_pins systole_0/s_axi_ctrl]
# DMA: m_axi_dma straight into S_AXI_HP0_FPD, both {config.bus_bits} bits: no width converter.
connect_bd_intf_net [get_bd_intf_pins systole_0/m_axi_dma] [get_bd_intf_pins zynq_ultra_ps_e_0/S_AXI_HP0_FPD]
# Interrupt: irq -> pl_ps_irq0[0] (GIC SPI {32 + PL_PS_IRQ0_SPI}).
connect_bd_net [get_bd_pins systole_0/irq] [get_bd_pins zynq_ultra_ps_e_0/pl_ps_irq0]

# Address map: the registers at 0x{KV260_CTRL_BASE:08X} (the .dtso's UIO node); the DMA sees all of DDR.
assign_bd_address -offset 0x{KV260_CTRL_BASE:08X} -range 0x{CTRL_RANGE:X} \\
    -target_address_space [get_bd_addr_spaces zynq_ultra_ps_e_0/Data] [get_bd_addr_segs systole_0/s_axi_ctrl/reg0]
assign_bd_address -target_address_space [get_bd_addr_spaces systole_0/m_axi_dma] \\
    [get_bd_addr_segs zynq_ultra_ps_e_0/SAXIGP2/HP0_DDR_LOW]
assign_bd_address -target_address_space [get_bd_addr_spaces systole_0/m_axi_dma] \\
    [get_bd_addr_segs zynq_ultra_ps_e_0/SAXIGP2/HP0_DDR_HIGH]

validate_bd_design
save_bd_design
"""


def kv260_dtso(config: AccelConfig, udmabuf_bytes: int) -> str:
    """Device-tree overlay: bitstream, AFI widths, PL clock, UIO registers + irq, u-dma-buf."""
    code = _afi_width_code(config.bus_bits)
    return f"""// Systole on the KV260: device-tree overlay for `xmutil loadapp systole`.
// Generated by `python -m gen.vivado kv260` for the '{config.name}' configuration.
// Compile: dtc -@ -I dts -O dtb -o systole.dtbo systole.dtso
/dts-v1/;
/plugin/;

/ {{
    fragment@0 {{
        target = <&fpga_full>;
        __overlay__ {{
            #address-cells = <2>;
            #size-cells = <2>;
            firmware-name = "systole.bit.bin";
            resets = <&zynqmp_reset 116>, <&zynqmp_reset 117>, <&zynqmp_reset 118>, <&zynqmp_reset 119>;
        }};
    }};

    fragment@1 {{
        target = <&amba>;
        __overlay__ {{
            // AFI widths: S_AXI_HP0_FPD read (4) and write (5) at {config.bus_bits} bits
            // (0 = 128, 1 = 64, 2 = 32); 14 = FPD HPM0/HPM1 at 128 bits.
            afi0: afi0 {{
                compatible = "xlnx,afi-fpga";
                config-afi = <4 {code}>, <5 {code}>, <14 0xa00>;
            }};
            // pl_clk0 (zynqmp_clk 71) at {config.clock_mhz:g} MHz, as in the block design.
            clocking0: clocking0 {{
                compatible = "xlnx,fclk";
                clocks = <&zynqmp_clk 71>;
                clock-output-names = "fabric_clk";
                #clock-cells = <0>;
                assigned-clocks = <&zynqmp_clk 71>;
                assigned-clock-rates = <{int(config.clock_mhz * 1e6)}>;
            }};
        }};
    }};

    fragment@2 {{
        target = <&amba>;
        __overlay__ {{
            #address-cells = <2>;
            #size-cells = <2>;
            // The registers for userspace (/dev/uioN named "systole"); irq = pl_ps_irq0[0].
            systole: systole@{KV260_CTRL_BASE:x} {{
                compatible = "generic-uio";
                reg = <0x0 0x{KV260_CTRL_BASE:08x} 0x0 0x{CTRL_RANGE:x}>;
                interrupt-parent = <&gic>;
                interrupts = <0 {PL_PS_IRQ0_SPI} 4>;
                clocks = <&clocking0>;
            }};
            // DMA buffers for A, packed W and C: /dev/udmabuf0 (u-dma-buf module).
            udmabuf0: udmabuf0 {{
                compatible = "ikwzm,u-dma-buf";
                device-name = "udmabuf0";
                size = <0x{udmabuf_bytes:x}>;
            }};
        }};
    }};
}};
"""


def shell_json() -> str:
    """``shell.json`` of a flat (non-DFX) design for dfx-mgr / xmutil."""
    return json.dumps({"shell_type": "XRT_FLAT", "num_slots": "1"}, indent=4) + "\n"


def _timing_check(label: str) -> str:
    return f"""# Timing: a build that does not meet timing FAILS here, before any bitstream is written.
set setup_paths [get_timing_paths -delay_type max -max_paths 1 -nworst 1]
set hold_paths [get_timing_paths -delay_type min -max_paths 1 -nworst 1]
if {{[llength $setup_paths] == 0 || [llength $hold_paths] == 0}} {{
    error "{label}: no timed paths; are the clocks constrained?"
}}
set wns [get_property SLACK $setup_paths]
set whs [get_property SLACK $hold_paths]
report_timing_summary -max_paths 20 -file [file join $out timing_summary.rpt]
report_utilization -file [file join $out utilization.rpt]
puts "{label}: WNS $wns ns, WHS $whs ns"
if {{$wns eq "" || $whs eq "" || $wns < 0 || $whs < 0}} {{
    error "{label}: timing NOT met (WNS $wns ns, WHS $whs ns); see timing_summary.rpt"
}}
"""


def build_tcl(board: Board, config: AccelConfig, *, ips: list[str], xdc: str | None, outputs: str) -> str:
    """Project, IP packaging, block design, synthesis, implementation, timing gate, outputs."""
    package = "\n".join(f"source [file join $here ip package_{ip}.tcl]" for ip in ips)
    constraints = f"add_files -fileset constrs_1 -norecurse [file join $here {xdc}]\n" if xdc else ""
    return f"""# Build the {board.name} bitstream and its companions. Generated by `python -m gen.vivado {board.name}`
# for the '{config.name}' configuration ({config.rows}x{config.cols} array, {config.bus_bits}-bit DMA,
# {config.clock_mhz:g} MHz).
#   cd {board.name} && vivado -mode batch -source build.tcl [-tclargs JOBS]
# Fails (exit status 1) on any error, including timing not met.
set here [file normalize [file dirname [info script]]]
set out $here
set jobs [expr {{[llength $argv] > 0 ? [lindex $argv 0] : 4}}]
set project systole_{board.name}

# Board files: Vivado 2022.2+ ships the Kria boards; Digilent's come from their board repository.
if {{[llength [get_board_parts -quiet {board.board_part}]] == 0}} {{
    error "board part {board.board_part} is not installed: add the board files (Vivado: Tools > Settings > Board Repository, or set_param board.repoPaths)"
}}

# Package the IP (the Verilog is in ip/hdl/).
{package}

create_project -force $project [file join $here project] -part {board.part}
set_property board_part {board.board_part} [current_project]
set_property ip_repo_paths [file join $here ip] [current_project]
update_ip_catalog -rebuild
{constraints}
source [file join $here bd.tcl]
set bd_file [get_files systole_bd.bd]
generate_target all $bd_file
set wrapper [make_wrapper -files $bd_file -top]
add_files -norecurse $wrapper
set_property top systole_bd_wrapper [current_fileset]
update_compile_order -fileset sources_1

launch_runs synth_1 -jobs $jobs
wait_on_run synth_1
if {{[get_property PROGRESS [get_runs synth_1]] ne "100%"}} {{
    error "synthesis failed; see [get_property DIRECTORY [get_runs synth_1]]/runme.log"
}}
launch_runs impl_1 -to_step route_design -jobs $jobs
wait_on_run impl_1
if {{[get_property PROGRESS [get_runs impl_1]] ne "100%"}} {{
    error "implementation failed; see [get_property DIRECTORY [get_runs impl_1]]/runme.log"
}}
open_run impl_1

{_timing_check(board.name)}
write_bitstream -force [file join $out systole.bit]
write_hw_platform -fixed -include_bit -force -file [file join $out systole.xsa]
{outputs}
puts "{board.name}: done; outputs in $out"
"""


def _kv260_outputs() -> str:
    return """# .hwh for PYNQ (next to the .bit, same base name).
set hwh [glob -nocomplain [file join $here project $project.gen sources_1 bd systole_bd hw_handoff systole_bd.hwh] \\
                          [file join $here project $project.srcs sources_1 bd systole_bd hw_handoff systole_bd.hwh]]
if {[llength $hwh] == 0} {error "no systole_bd.hwh found under [file join $here project]"}
file copy -force [lindex $hwh 0] [file join $out systole.hwh]
# .bit.bin for the FPGA manager (xmutil/dfx-mgr): bootgen writes it next to the .bit.
cd $out
exec bootgen -arch zynqmp -image [file join $here systole.bif] -process_bitstream bin -w on
cd $here
if {![file exists [file join $out systole.bit.bin]]} {error "bootgen did not write systole.bit.bin"}
# The overlay: compiled here too when dtc is installed (gen.vivado already did if it could).
if {[auto_execok dtc] ne ""} {
    exec dtc -@ -I dts -O dtb -o [file join $out systole.dtbo] [file join $here systole.dtso]
}
"""


def _kv260_readme(config: AccelConfig, udmabuf_bytes: int) -> str:
    return f"""# Systole on the KV260 ('{config.name}': {config.rows}x{config.cols} PEs, {config.bus_bits}-bit DMA at {config.clock_mhz:g} MHz)

Generated by `python -m gen.vivado kv260`.

## Build (Vivado 2022.2 or newer, with the Kria board files)

    vivado -mode batch -source build.tcl -tclargs 8

This packages the IP (`ip/package_systole.tcl`), creates the block design (`bd.tcl`),
synthesizes and implements, **fails if WNS or WHS is negative**, then writes
`systole.bit`, `systole.bit.bin` (bootgen), `systole.xsa` (with bitstream),
`systole.hwh` and `systole.dtbo`, plus `timing_summary.rpt` and `utilization.rpt`.

## Load it with xmutil (Kria Ubuntu or PetaLinux)

    sudo mkdir -p /lib/firmware/xilinx/systole
    sudo cp systole.bit.bin systole.dtbo shell.json /lib/firmware/xilinx/systole/
    sudo xmutil unloadapp
    sudo xmutil loadapp systole
    ls /dev/uio* /dev/udmabuf0      # the registers (UIO named "systole") and the DMA buffer

The overlay binds the registers at 0x{KV260_CTRL_BASE:08X} to `generic-uio` (boot with
`uio_pdrv_genirq.of_id=generic-uio` on the kernel command line if `/dev/uioN` does not
appear) with the interrupt on `pl_ps_irq0`, and asks `u-dma-buf` for a
{udmabuf_bytes >> 20} MiB buffer (`sudo modprobe u-dma-buf` first; the module is the
`u-dma-buf` package / ikwzm's driver). It sets `pl_clk0` to {config.clock_mhz:g} MHz
and the S_AXI_HP0_FPD width to {config.bus_bits} bits.

The C self-test, cross-compiled from the repository root:

    make -C firmware REGS=../build/{config.name}/systole_regs.h CROSS_COMPILE=aarch64-linux-gnu-
    scp build/firmware/aarch64-linux-gnu-{config.name}/selftest ubuntu@kria:
    sudo ./selftest run /dev/uio4 udmabuf0      # use the uio whose name is "systole"

## PYNQ

With PYNQ for Kria, copy `systole.bit` and `systole.hwh` side by side, then:

    from pynq import Overlay, allocate
    ol = Overlay("systole.bit")
    regs = ol.systole_0                     # register map from the .hwh (ID at 0x80)
    hex(regs.read(0x80))                    # 0x53595354 = 'SYST'
    buf = allocate(shape=(1 << 20,), dtype="u1")
    buf.physical_address                    # program A/W/C addresses with this
    buf.flush(); ...; buf.invalidate()      # around each job (the HP port is not coherent)
"""


def kv260_files(config: AccelConfig, udmabuf_bytes: int) -> dict[str, str]:
    board = BOARDS["kv260"]
    return {
        "bd.tcl": kv260_bd_tcl(config),
        "build.tcl": build_tcl(board, config, ips=["systole"], xdc=None, outputs=_kv260_outputs()),
        "systole.dtso": kv260_dtso(config, udmabuf_bytes),
        "shell.json": shell_json(),
        "systole.bif": "all:\n{\n    [destination_device = pl] systole.bit\n}\n",
        "README.md": _kv260_readme(config, udmabuf_bytes),
    }


# -- Nexys Video ------------------------------------------------------------------------

NEXYS_PINS = {
    # port: (pin, iostandard) from the Nexys Video reference manual / master XDC
    "sys_clk": ("R4", "LVCMOS33"),
    "cpu_resetn": ("G4", "LVCMOS15"),
    "uart_rxd": ("V18", "LVCMOS33"),      # FT232R TXD -> FPGA (uart_tx_in)
    "uart_txd": ("AA19", "LVCMOS33"),     # FPGA -> FT232R RXD (uart_rx_out)
    "led_calib": ("T14", "LVCMOS25"),     # LD0: DDR3 calibrated
    "led_link": ("T15", "LVCMOS25"),      # LD1: a link request is being handled
    "led_irq": ("T16", "LVCMOS25"),       # LD2: the accelerator's interrupt
}


def nexys_video_xdc() -> str:
    lines = ["# Nexys Video pins of the Systole design (DDR3 pins come from the MIG board preset).",
             "# Generated by `python -m gen.vivado nexys_video`."]
    for port, (pin, standard) in NEXYS_PINS.items():
        lines.append(f"set_property -dict {{PACKAGE_PIN {pin} IOSTANDARD {standard}}} [get_ports {{{port}}}]")
    lines += [
        "create_clock -name sys_clk -period 10.000 [get_ports {sys_clk}]",
        "# Asynchronous, slow pins: the UART is synchronised inside, LEDs are cosmetic.",
        "set_false_path -from [get_ports {uart_rxd cpu_resetn}]",
        "set_false_path -to [get_ports {uart_txd led_calib led_link led_irq}]",
        "set_property CFGBVS VCCO [current_design]",
        "set_property CONFIG_VOLTAGE 3.3 [current_design]",
        "set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]",
        "",
    ]
    return "\n".join(lines)


def nexys_video_bd_tcl(config: AccelConfig) -> str:
    """The Nexys Video block design: MIG + SmartConnect + bridge + accelerator on ui_clk."""
    from hdl.spec.boards import BOARDS as REGISTRY
    ddr_base, ddr_size = REGISTRY["nexys_video"].dram_window.base, REGISTRY["nexys_video"].dram_window.size
    if config.clock_mhz != 100.0:
        raise ValueError(f"clock_mhz={config.clock_mhz}: the Nexys Video design runs on MIG's 100 MHz "
                         "ui_clk (DDR3-800, 4:1); use clock_mhz=100")
    return f"""# Nexys Video block design: DDR3 (MIG from the board preset), the UART bridge and the
# accelerator. Generated by `python -m gen.vivado nexys_video` for '{config.name}'; sourced by build.tcl.
#
# Why a SmartConnect merges the two AXI4 masters (bridge m_axi_mem, accelerator
# m_axi_dma) into MIG's single port: it is verified AMD IP that arbitrates, keeps IDs
# apart and handles bursts, and the block design needs an interconnect for MIG anyway.
# An arbiter in our RTL would add a block to verify and buy nothing.
create_bd_design systole_bd

create_bd_port -dir I -type clk -freq_hz 100000000 sys_clk
create_bd_port -dir I -type rst cpu_resetn
set_property CONFIG.POLARITY ACTIVE_LOW [get_bd_ports cpu_resetn]
create_bd_port -dir I uart_rxd
create_bd_port -dir O uart_txd
create_bd_port -dir O led_calib
create_bd_port -dir O led_link
create_bd_port -dir O led_irq

# MIG's system clock is 200 MHz (its reference clock too) in the board preset.
set clk_wiz [create_bd_cell -type ip -vlnv xilinx.com:ip:clk_wiz clk_wiz_0]
set_property -dict [list CONFIG.PRIM_IN_FREQ {{100.000}} CONFIG.CLKOUT1_REQUESTED_OUT_FREQ {{200.000}} \\
    CONFIG.USE_RESET {{false}} CONFIG.USE_LOCKED {{true}}] $clk_wiz
set mig [create_bd_cell -type ip -vlnv xilinx.com:ip:mig_7series mig_7series_0]
apply_board_connection -board_interface "ddr3_sdram" -ip_intf "mig_7series_0/mig_ddr_interface" -diagram "systole_bd"

set link [create_bd_cell -type ip -vlnv {LINK_VLNV} systole_link_0]
set systole [create_bd_cell -type ip -vlnv {ACCEL_VLNV} systole_0]
set mem_sc [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect smartconnect_mem]
set_property -dict [list CONFIG.NUM_SI {{2}} CONFIG.NUM_MI {{1}}] $mem_sc
set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_ui_clk]

connect_bd_net [get_bd_ports sys_clk] [get_bd_pins clk_wiz_0/clk_in1]
connect_bd_net [get_bd_pins clk_wiz_0/clk_out1] [get_bd_pins mig_7series_0/sys_clk_i]
connect_bd_net [get_bd_ports cpu_resetn] [get_bd_pins mig_7series_0/sys_rst]

# Everything runs on MIG's ui_clk (100 MHz): no clock crossing in the data path.
connect_bd_net [get_bd_pins mig_7series_0/ui_clk] \\
    [get_bd_pins systole_0/aclk] [get_bd_pins systole_link_0/aclk] \\
    [get_bd_pins smartconnect_mem/aclk] [get_bd_pins rst_ui_clk/slowest_sync_clk]
connect_bd_net [get_bd_pins mig_7series_0/ui_clk_sync_rst] [get_bd_pins rst_ui_clk/ext_reset_in]
connect_bd_net [get_bd_pins mig_7series_0/mmcm_locked] [get_bd_pins rst_ui_clk/dcm_locked]
connect_bd_net [get_bd_pins rst_ui_clk/peripheral_aresetn] \\
    [get_bd_pins systole_0/aresetn] [get_bd_pins systole_link_0/aresetn] [get_bd_pins mig_7series_0/aresetn]
connect_bd_net [get_bd_pins rst_ui_clk/interconnect_aresetn] [get_bd_pins smartconnect_mem/aresetn]

# Control: the bridge's AXI4-Lite master drives the accelerator's registers directly.
connect_bd_intf_net [get_bd_intf_pins systole_link_0/m_axi_ctrl] [get_bd_intf_pins systole_0/s_axi_ctrl]
# Memory: bridge (bulk loads/reads) and accelerator DMA share MIG's {config.bus_bits}-bit AXI port.
connect_bd_intf_net [get_bd_intf_pins systole_link_0/m_axi_mem] [get_bd_intf_pins smartconnect_mem/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins systole_0/m_axi_dma] [get_bd_intf_pins smartconnect_mem/S01_AXI]
connect_bd_intf_net [get_bd_intf_pins smartconnect_mem/M00_AXI] [get_bd_intf_pins mig_7series_0/S_AXI]

connect_bd_net [get_bd_pins systole_0/irq] [get_bd_pins systole_link_0/irq] [get_bd_ports led_irq]
connect_bd_net [get_bd_ports uart_rxd] [get_bd_pins systole_link_0/uart_rxd]
connect_bd_net [get_bd_pins systole_link_0/uart_txd] [get_bd_ports uart_txd]
connect_bd_net [get_bd_pins systole_link_0/link_active] [get_bd_ports led_link]
connect_bd_net [get_bd_pins mig_7series_0/init_calib_complete] [get_bd_ports led_calib]

# Address map: registers at 0 in the bridge's control space; DDR at 0x{ddr_base:08X} for
# both masters (hdl.spec.boards).
assign_bd_address -offset 0x00000000 -range 0x1000 \\
    -target_address_space [get_bd_addr_spaces systole_link_0/m_axi_ctrl] [get_bd_addr_segs systole_0/s_axi_ctrl/reg0]
assign_bd_address -offset 0x{ddr_base:08X} -range 0x{ddr_size:X} \\
    -target_address_space [get_bd_addr_spaces systole_link_0/m_axi_mem] [get_bd_addr_segs mig_7series_0/memmap/memaddr]
assign_bd_address -offset 0x{ddr_base:08X} -range 0x{ddr_size:X} \\
    -target_address_space [get_bd_addr_spaces systole_0/m_axi_dma] [get_bd_addr_segs mig_7series_0/memmap/memaddr]

validate_bd_design
save_bd_design
"""


def _nexys_readme(config: AccelConfig, baud: int) -> str:
    return f"""# Systole on the Nexys Video ('{config.name}': {config.rows}x{config.cols} PEs, {config.bus_bits}-bit DMA at {config.clock_mhz:g} MHz)

Generated by `python -m gen.vivado nexys_video`. No CPU on the board: the host runtime
drives the accelerator through the USB-UART ({baud} baud, 8N1) and the `systole_link`
bridge, which turns link frames into AXI4-Lite register and AXI4 DDR3 transactions.

## Build (Vivado with Digilent's board files, for the MIG DDR3 preset)

    vivado -mode batch -source build.tcl -tclargs 8

Packages both IPs, builds the block design (`bd.tcl`: MIG + SmartConnect + bridge +
accelerator on MIG's 100 MHz ui_clk), **fails if WNS or WHS is negative**, then writes
`systole.bit` and `systole.xsa`.

## Program and talk to it

    vivado -mode batch -source program.tcl        # JTAG, volatile
    python -m host.platforms.nexys_video --port /dev/ttyUSB0   # HELLO: the bridge answers with its limits

LD0 = DDR3 calibrated, LD1 = link busy, LD2 = accelerator interrupt. Linux users may
`echo 1 > /sys/bus/usb-serial/devices/ttyUSB0/latency_timer` for short round trips.
"""


def nexys_video_files(config: AccelConfig, baud: int) -> dict[str, str]:
    board = BOARDS["nexys_video"]
    return {
        "bd.tcl": nexys_video_bd_tcl(config),
        "nexys_video.xdc": nexys_video_xdc(),
        "build.tcl": build_tcl(board, config, ips=["systole", "systole_link"], xdc="nexys_video.xdc",
                               outputs=""),
        "program.tcl": """# Program the Nexys Video over JTAG with systole.bit (volatile).
set here [file normalize [file dirname [info script]]]
open_hw_manager
connect_hw_server
open_hw_target
set device [lindex [get_hw_devices xc7a200t*] 0]
current_hw_device $device
set_property PROGRAM.FILE [file join $here systole.bit] $device
program_hw_devices $device
close_hw_manager
""",
        "README.md": _nexys_readme(config, baud),
    }


# -- driver ------------------------------------------------------------------------------

def _write(out: Path, files: dict[str, str]) -> list[Path]:
    written = []
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def _ip_files(config: AccelConfig, ip_dir: Path, *, link: bool, board: Board | None, baud: int,
              top_verilog: Path | None) -> list[Path]:
    """hdl/*.v and package_*.tcl under ``ip_dir``, from the Verilog's real port lists."""
    hdl_dir = ip_dir / "hdl"
    hdl_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if top_verilog is None:
        from .verilog import write_artefacts
        written += write_artefacts(config, hdl_dir)
    else:
        shutil.copyfile(top_verilog, hdl_dir / "systole_top.v")
        written.append(hdl_dir / "systole_top.v")
    ports = verilog_ports((hdl_dir / "systole_top.v").read_text(), "systole_top")
    files = {"package_systole.tcl": package_ip_tcl(
        top="systole_top", name="systole", display_name="Systole int8 matmul accelerator",
        description=f"C = A x W^T, int8 in, int32 out; {config.rows}x{config.cols} PEs, "
                    f"{config.bus_bits}-bit AXI4 DMA, AXI4-Lite registers ('{config.name}')",
        ports=ports, board=board, master_ranges={"m_axi_dma": 1 << config.addr_width})}
    if link:
        from amaranth.back import verilog as amaranth_verilog
        from hdl.link_top import LinkTop
        top = LinkTop(config, baud=baud, ctrl_addr_width=LINK_CTRL_ADDR_WIDTH)
        text = amaranth_verilog.convert(top, name="systole_link", emit_src=False)
        (hdl_dir / "systole_link.v").write_text(text)
        written.append(hdl_dir / "systole_link.v")
        files["package_systole_link.tcl"] = package_ip_tcl(
            top="systole_link", name="systole_link", display_name="Systole UART link bridge",
            description=f"USB-UART ({baud} baud 8N1) frames to AXI4-Lite and AXI4 masters",
            ports=verilog_ports(text, "systole_link"), board=board, irq_mode="slave", slave_regs=False,
            master_ranges={"m_axi_ctrl": 1 << LINK_CTRL_ADDR_WIDTH, "m_axi_mem": 1 << config.addr_width})
    return written + _write(ip_dir, files)


def compile_overlay(dtso: Path) -> Path | None:
    """``dtc -@`` the overlay next to its source; None when dtc is not installed."""
    if shutil.which("dtc") is None:
        return None
    dtbo = dtso.with_suffix(".dtbo")
    subprocess.run(["dtc", "-@", "-q", "-I", "dts", "-O", "dtb", "-o", str(dtbo), str(dtso)], check=True)
    return dtbo


def generate(target: str, config: AccelConfig, out: Path, *, baud: int = 921_600,
             udmabuf_bytes: int = 256 << 20, top_verilog: Path | None = None, link: bool = False) -> list[Path]:
    """Write every file of ``target`` (``ip``, ``kv260``, ``nexys_video``) under ``out``.

    ``link`` adds the ``systole_link`` bridge IP to the ``ip`` target (the Nexys Video
    flow always has it).
    """
    if target == "ip":
        return _ip_files(config, out, link=link, board=None, baud=baud, top_verilog=top_verilog)
    if target == "kv260":
        written = _ip_files(config, out / "ip", link=False, board=BOARDS["kv260"], baud=baud,
                            top_verilog=top_verilog)
        written += _write(out, kv260_files(config, udmabuf_bytes))
        dtbo = compile_overlay(out / "systole.dtso")
        return written + ([dtbo] if dtbo else [])
    if target == "nexys_video":
        written = _ip_files(config, out / "ip", link=True, board=BOARDS["nexys_video"], baud=baud,
                            top_verilog=top_verilog)
        return written + _write(out, nexys_video_files(config, baud))
    raise ValueError(f"unknown target {target!r}; choose ip, kv260 or nexys_video")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gen.vivado", description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["ip", "kv260", "nexys_video"])
    add_config_args(parser)
    parser.add_argument("--out", type=Path, help="output directory (default: build/vivado/<target>)")
    parser.add_argument("--baud", type=int, default=921_600, help="Nexys Video UART baud rate")
    parser.add_argument("--udmabuf-mib", type=int, default=256, help="KV260 u-dma-buf size in MiB")
    parser.add_argument("--link", action="store_true", help="ip: also package the systole_link UART bridge")
    args = parser.parse_args(argv)
    explicit = any(a.startswith("--preset") for a in (sys.argv[1:] if argv is None else argv))
    if args.target == "nexys_video" and not explicit:
        args.preset = "nexys_video"
    try:
        config = config_from_args(args)
    except (ValueError, KeyError) as exc:
        parser.error(str(exc))
    out = args.out or REPO / "build" / "vivado" / args.target
    try:
        written = generate(args.target, config, out, baud=args.baud, udmabuf_bytes=args.udmabuf_mib << 20,
                           link=args.link)
    except ValueError as exc:
        parser.error(str(exc))
    for path in written:
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    if args.target != "ip":
        print(f"next: cd {out} && vivado -mode batch -source build.tcl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
