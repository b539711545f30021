"""gen/vivado: the generated Vivado flows, checked without Vivado.

- Every TCL script runs in ``tclsh`` with every Vivado command stubbed (Tcl's ``unknown``
  records the call and returns a handle), so syntax errors, undefined variables and
  wrong control flow fail here; the recorded calls are then checked.
- Every port or interface the scripts name on our IPs exists in the generated Verilog
  (parsed here, independently of gen.vivado's own parser); ``systole_eth``'s instance of
  LiteEth's ``liteeth_core`` names only ports that module has, and every net LiteEth's
  XDC names is one of the module's; the IP adds ``liteeth_core.v`` as a source, the build
  reads that XDC scoped to the module.
- The build fails, before writing a bitstream, when the stubbed timing is negative.
- The device-tree overlay compiles with ``dtc -@`` and holds what the KV260 needs.
- The Nexys Video pins agree with Digilent's master XDC (its values written here) and
  with the Amaranth platform.
- Every board fact in the generated files is the registry's (``hdl.spec.boards``): on
  the real registry, and on a registry with every such fact changed, so that a value
  typed into a template or a flow module fails.

One file (longer than most) because one module-scoped fixture generates both flows
once; the Verilog conversion in it is the slow part of these tests.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import jinja2
import pytest

from gen import liteeth
from gen.vivado import generate, ip, kv260, nexys_video
from gen.vivado.render import render
from hdl.spec.boards import BOARDS, HpPort, Pin, Window
from hdl.spec.config import preset
from hdl.spec.regmap import REGISTERS

# One worker generates both flows once (the Verilog conversion is the slow part).
pytestmark = pytest.mark.xdist_group("vivado")

# What a flow does to the file system, logged instead of done (tests/test_vivado_lint.py's
# stubs use it too). ::log is defined by the stubs in front of it.
SANDBOX = r"""
rename exec ::real_exec
proc exec {args} { ::log [list exec {*}$args] }
rename file ::real_file
proc file {sub args} {
    switch -- $sub {
        copy - rename - delete - mkdir { ::log [list file $sub {*}$args] }
        exists { return 1 }
        default { return [::real_file $sub {*}$args] }
    }
}
rename glob ::real_glob
proc glob {args} { return [list [lindex $args end]] }
"""

# Records every command tclsh does not know (all of Vivado's) as one line of a log and
# returns a one-word handle; SLACK and PROGRESS answers are set by the test.
STUBS = r"""
set ::calls {}
set ::handle 0
proc ::log {words} { lappend ::calls $words }
proc unknown {args} { ::log $args; return "h[incr ::handle]" }
proc get_runs {name} { ::log [list get_runs $name]; return $name }
proc get_property {name args} {
    ::log [list get_property $name {*}$args]
    switch -- $name {
        SLACK { return $::slack }
        PROGRESS { return "100%" }
        STATUS { return [expr {[string match *impl* $args] ? "write_bitstream Complete!" : "synth_design Complete!"}] }
        default { return "h[incr ::handle]" }
    }
}
""" + SANDBOX


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"`{tool}` is not installed; run `make deps` (Debian tools for the tests)")
    return path


def run_tcl(script: Path, slack: float, tmp_path: Path) -> tuple[int, list[list[str]], str]:
    """Source ``script`` under the stubs; (exit status, recorded calls, stderr)."""
    tclsh = _require("tclsh")
    log = tmp_path / f"calls-{script.stem}-{slack}.txt"
    driver = tmp_path / f"driver-{script.stem}.tcl"
    driver.write_text(STUBS + f"""
set ::slack {slack}
set status [catch {{source {{{script}}}}} message]
set out [open {{{log}}} w]
foreach call $::calls {{ puts $out $call }}
close $out
if {{$status}} {{ puts stderr $message; exit 1 }}
""")
    result = subprocess.run([tclsh, str(driver)], capture_output=True, text=True, timeout=60,
                            cwd=script.parent)
    calls = []
    if log.exists():
        tcl_list = _require("tclsh")
        # Split each recorded line into words with Tcl itself (braces, nested lists).
        splitter = tmp_path / "split.tcl"
        splitter.write_text('set f [open [lindex $argv 0]]\nwhile {[gets $f line] >= 0} '
                            '{puts [join $line "\\x1f"]}\n')
        words = subprocess.run([tcl_list, str(splitter), str(log)], capture_output=True, text=True).stdout
        calls = [line.split("\x1f") for line in words.splitlines()]
    return result.returncode, calls, result.stderr


_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s*)?(\w+)\s*;", re.M)


def ports_of(verilog: Path, module: str) -> dict[str, tuple[str, int]]:
    """Port name -> (direction, width) from the module header and declarations."""
    text = verilog.read_text()
    header = re.search(rf"module {module}\((.*?)\);", text, re.S).group(1)
    names = {n.strip() for n in header.split(",")}
    body = text[text.index(f"module {module}("):]
    body = body[:body.index("endmodule")]
    found = {name: (d, int(msb) - int(lsb) + 1 if msb else 1) for d, msb, lsb, name in _DECL.findall(body)
             if name in names}
    assert set(found) == names, f"undeclared ports: {names - set(found)}"
    return found


def pins_named(calls, cell: str) -> tuple[set[str], set[str]]:
    """(pins, interface pins) of block-design cell ``cell`` used by get_bd_pins/get_bd_intf_pins."""
    pins, interfaces = set(), set()
    for call in calls:
        if call[0] in ("get_bd_pins", "get_bd_intf_pins"):
            for word in call[1:]:
                if word.startswith(cell + "/"):
                    (pins if call[0] == "get_bd_pins" else interfaces).add(word.split("/", 1)[1])
    return pins, interfaces


@pytest.fixture(scope="module")
def flows(tmp_path_factory):
    """Both boards' flows, generated from the sim-cached Verilog of their presets."""
    from sim.top_build import top_verilog
    out = {}
    for board in ("kv260", "nexys_video"):
        directory = tmp_path_factory.mktemp(board)
        generate(board, preset(board), directory, top_verilog=top_verilog(preset(board)))
        out[board] = directory
    return out


def _check_interfaces(ports, interfaces, pins, read_only=()):
    for name in pins:
        assert name in ports, f"the TCL uses pin {name!r}, which the Verilog does not have"
    for interface in interfaces:
        members = [p for p in ports if p.startswith(interface + "_")]
        if interface in read_only:          # AR and R channels only
            assert len(members) >= 9 and not any(m.startswith(f"{interface}_aw") for m in members), members
            assert f"{interface}_arvalid" in ports and f"{interface}_rready" in ports
            continue
        assert len(members) >= 19, f"interface {interface!r} has only {members} in the Verilog"
        assert f"{interface}_awvalid" in ports and f"{interface}_rready" in ports


@pytest.mark.parametrize("board", ["kv260", "nexys_video"])
def test_build_runs_and_names_only_real_ports(flows, board, tmp_path):
    directory = flows[board]
    status, calls, stderr = run_tcl(directory / "build.tcl", 0.125, tmp_path)
    assert status == 0, stderr
    names = ["create_board_project" if c[0] == "create_project" and "-in_memory" not in c else
             "copy_bitstream" if c[:2] == ["file", "copy"] and c[-1].endswith("systole.bit") else c[0] for c in calls]
    launches = [c for c in calls if c[0] == "launch_runs"]
    assert [c[1] for c in launches] == ["synth_1", "impl_1"]
    assert launches[1][2:4] == ["-to_step", "write_bitstream"]   # the run owns the bitstream (Kria-PYNQ)
    assert "write_bitstream" not in names
    # Order of the flow: packaging, project, block design, synth, impl, timing gate, outputs.
    for earlier, later in (("ipx::save_core", "create_board_project"), ("create_bd_design", "launch_runs"),
                           ("get_timing_paths", "copy_bitstream"), ("copy_bitstream", "write_hw_platform")):
        assert names.index(earlier) < names.index(later), (earlier, later)
    accel = ports_of(directory / "ip" / "hdl" / "systole_top.v", "systole_top")
    pins, interfaces = pins_named(calls, "systole_0")
    masters = preset(board).weight_masters if board == "kv260" else ("m_axi_dma",)
    assert {"aclk", "aresetn", "irq"} <= pins and interfaces == {"s_axi_ctrl", *masters}
    _check_interfaces(accel, interfaces, pins, read_only=masters[1:])
    # Every master of the Verilog is packaged with its address space and associated with aclk.
    verilog_masters = {p.rpartition("_ar")[0] for p in accel if p.startswith("m_axi_") and p.endswith("_arvalid")}
    assert verilog_masters == set(preset(board).weight_masters)
    assert {c[2] for c in calls if c[:2] == ["set_property", "master_address_space_ref"]
            and c[2] in accel_names(accel)} == verilog_masters
    associated = {c[c.index("-busif") + 1] for c in calls if c[0] == "ipx::associate_bus_interfaces" and "-busif" in c}
    assert verilog_masters | {"s_axi_ctrl"} <= associated
    ip_ports = {"systole_top": accel}
    if board == "nexys_video":
        eth = ports_of(directory / "ip" / "hdl" / "systole_eth.v", "systole_eth")
        ip_ports["systole_eth"] = eth
        eth_pins, eth_interfaces = pins_named(calls, "systole_eth_0")
        assert eth_interfaces == {"m_axi_ctrl", "m_axi_mem"}
        _check_interfaces(eth, eth_interfaces, eth_pins)
        assert {"aclk", "aresetn", "irq", "clk_ref"} | set(liteeth.RGMII_PORTS) <= eth_pins
        for name, port in nexys_video.eth_ports(BOARDS["nexys_video"]).items():
            direction, width = eth[port.ip_pin]
            assert (direction, width) == ({"I": "input", "O": "output", "IO": "inout"}[port.direction],
                                          port.width), name
        # The LiteEth Verilog is a source of the systole_eth IP, packaged before the project.
        sources = [c[-1] for c in calls if c[0] == "add_files" and "-fileset" not in c]
        assert sources.count(str(directory / "ip" / "hdl" / "liteeth_core.v")) == 1, sources
        sourced = [c for c in calls if c[0] == "ipx::package_project"]
        assert len(sourced) == 3
        link = ports_of(directory / "ip" / "hdl" / "systole_link.v", "systole_link")
        ip_ports["systole_link"] = link
        link_pins, link_interfaces = pins_named(calls, "systole_link_0")
        assert link_interfaces == {"m_axi_ctrl", "m_axi_mem"}
        _check_interfaces(link, link_interfaces, link_pins)
        assert {"uart_rxd", "uart_txd", "irq", "link_active"} <= link_pins
        assert link["m_axi_mem_wdata"][1] == accel["m_axi_dma_wdata"][1] == preset(board).bus_bits
    # ipx:: names, per packaged module: bus interfaces, clock/reset, the interrupt's port.
    module = None
    for call in calls:
        if call[0] == "set_property" and call[1] == "top":
            module = call[2]
        if module not in ip_ports:
            continue
        ports = ip_ports[module]
        if call[0] == "ipx::associate_bus_interfaces":
            options = dict(zip(call[1::2], call[2::2]))
            assert options["-clock"] in ports
            assert options.get("-reset", "aresetn") in ports
            assert any(p.startswith(options.get("-busif", "aclk") + "_") for p in ports) or "-busif" not in options
        if call[:2] == ["set_property", "physical_name"]:
            assert call[2] in ports and call[2] == "irq"


def accel_names(ports) -> set[str]:
    """The interface prefixes of the accelerator's ports (``m_axi_w1`` of ``m_axi_w1_araddr``)."""
    return {m.group(1) for p in ports if (m := re.match(r"([sm]_axi_[a-z0-9]+)_", p))}


def test_build_fails_when_timing_is_not_met(flows, tmp_path):
    for board, directory in flows.items():
        status, calls, stderr = run_tcl(directory / "build.tcl", -0.042, tmp_path)
        assert status != 0 and "timing NOT met" in stderr, (board, stderr)
        assert "write_hw_platform" not in [c[0] for c in calls], "a failing build must not write an .xsa"
        assert not [c for c in calls if c[:2] == ["file", "copy"] and c[-1].endswith("systole.bit")], \
            "a failing build must not copy a bitstream out"


def test_kv260_block_design(flows, tmp_path):
    config = preset("kv260")
    status, calls, stderr = run_tcl(flows["kv260"] / "bd.tcl", 0.1, tmp_path)
    assert status == 0, stderr
    ps_config = {}
    for call in calls:
        if call[0] == "set_property" and call[1] == "-dict":
            words = call[2].split()
            ps_config.update(zip(words[0::2], (w.strip("{}") for w in words[1::2])))
    # coherent_io: m_axi_dma on S_AXI_HPC0_FPD (S_AXI_GP0); the weight masters on HP1, HP3, HP0
    # (S_AXI_GP3, GP5, GP2); HP2 (GP4, sharing HP1's XPI) off; HPC1 (GP1) left to the preset.
    assert config.coherent_io
    assert {gp: ps_config[f"CONFIG.PSU__USE__S_AXI_GP{gp}"] for gp in (0, 2, 3, 4, 5)} == \
        {0: "1", 2: "1", 3: "1", 4: "0", 5: "1"}
    assert "CONFIG.PSU__USE__S_AXI_GP1" not in ps_config
    assert {int(ps_config[f"CONFIG.PSU__SAXIGP{gp}__DATA_WIDTH"]) for gp in (0, 2, 3, 5)} == {config.bus_bits}
    assert float(ps_config["CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"]) == config.clock_mhz
    # The masters' own clock: pl_clk1 at axi_clock_mhz.
    assert ps_config["CONFIG.PSU__FPGA_PL1_ENABLE"] == "1"
    assert float(ps_config["CONFIG.PSU__CRL_APB__PL1_REF_CTRL__FREQMHZ"]) == config.axi_clock_mhz == 300
    assert ps_config["CONFIG.PSU__USE__M_AXI_GP0"] == "1" and ps_config["CONFIG.PSU__USE__IRQ0"] == "1"
    text = (flows["kv260"] / "bd.tcl").read_text()
    assert "apply_board_preset" in text
    connected = re.findall(r"connect_bd_intf_net \[get_bd_intf_pins systole_0/(\w+)\] "
                           r"\[get_bd_intf_pins zynq_ultra_ps_e_0/(S_AXI_HPC?\d_FPD)\]", text)
    assert connected == [("m_axi_dma", "S_AXI_HPC0_FPD"), ("m_axi_w1", "S_AXI_HP1_FPD"), ("m_axi_w2", "S_AXI_HP3_FPD"),
                         ("m_axi_w3", "S_AXI_HP0_FPD")]
    # pl_clk1 clocks the masters and every HP port they drive; pl_clk0 the core and control.
    core_net = text[text.index("connect_bd_net [get_bd_pins zynq_ultra_ps_e_0/pl_clk0]"):]
    core_net = core_net[:core_net.index("rst_pl_clk0/slowest_sync_clk]")]
    master_net = text[text.index("connect_bd_net [get_bd_pins zynq_ultra_ps_e_0/pl_clk1]"):]
    master_net = master_net[:master_net.index("rst_pl_clk1/slowest_sync_clk]")]
    assert all(f"[get_bd_pins zynq_ultra_ps_e_0/saxi{p}_fpd_aclk]" in master_net for p in ("hpc0", "hp1", "hp3", "hp0")), \
        master_net
    assert "saxihp2_fpd_aclk" not in text
    assert "systole_0/m_axi_aclk]" in master_net and "systole_0/aclk]" in core_net
    assert "saxihp" not in core_net and "maxihpm0_fpd_aclk" in core_net
    assert "[get_bd_pins rst_pl_clk1/peripheral_aresetn] [get_bd_pins systole_0/m_axi_aresetn]" in text
    assert re.search(r"connect_bd_net \[get_bd_pins systole_0/irq\] \[get_bd_pins zynq_ultra_ps_e_0/pl_ps_irq0\]",
                     text)
    assert "-offset 0xA0000000" in text


def test_ip_register_map_comes_from_regmap(flows, tmp_path):
    status, calls, stderr = run_tcl(flows["kv260"] / "ip" / "package_systole.tcl", 0.1, tmp_path)
    assert status == 0, stderr
    added = [c[1] for c in calls if c[0] == "ipx::add_register"]
    assert added == [reg.name for reg in REGISTERS]
    # package_project's own s_axi_ctrl map is removed before ours is added.
    names = [c[0] for c in calls]
    assert names.index("ipx::remove_memory_map") < names.index("ipx::add_memory_map")
    offsets = [int(c[2], 16) for c in calls if c[:2] == ["set_property", "address_offset"]]
    assert offsets == [reg.offset for reg in REGISTERS]
    fields = [c[1] for c in calls if c[0] == "ipx::add_field"]
    assert fields == [f.name.upper() for reg in REGISTERS for f in reg.fields]


def decompiled_overlay(dtso: Path, tmp_path: Path) -> str:
    """``dtso`` compiled with ``dtc -@`` (no errors, no warnings) and decompiled again."""
    dtc = _require("dtc")
    dtbo = tmp_path / f"{dtso.stem}.dtbo"
    result = subprocess.run([dtc, "-@", "-I", "dts", "-O", "dtb", "-o", str(dtbo), str(dtso)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
    return subprocess.run([dtc, "-I", "dtb", "-O", "dts", str(dtbo)], capture_output=True, text=True).stdout


def test_kv260_overlay_compiles_with_the_right_nodes(flows, tmp_path):
    text = decompiled_overlay(flows["kv260"] / "systole.dtso", tmp_path)
    assert 'firmware-name = "systole.bit.bin"' in text
    # HPC0, HP1, HP3, HP0 (AFIFM0, 3, 5, 2) read/write AFI widths 0 (= 128 bit) for the four 128-bit DMA ports.
    assert "config-afi = <0x00 0x00 0x01 0x00 0x06 0x00 0x07 0x00 0x0a 0x00 0x0b 0x00 0x04 0x00 0x05 0x00 0x0e 0xa00>" \
        in text
    assert re.search(r'systole@a0000000 \{\s*compatible = "generic-uio";\s*reg = <0x00 0xa0000000 0x00 0x10000>',
                     text)
    assert "interrupts = <0x00 0x59 0x04>" in text                 # SPI 89 = pl_ps_irq0[0], level high
    assert 'compatible = "ikwzm,u-dma-buf"' in text and 'device-name = "udmabuf0"' in text
    # The weights' buffer is not coherent; A and C's (coherent_io) is, 16 MiB by default.
    udmabuf0 = re.search(r"udmabuf0 \{([^}]*)\}", text).group(1)
    udmabuf1 = re.search(r"udmabuf1 \{([^}]*)\}", text).group(1)
    assert "dma-coherent" not in udmabuf0 and "size = <0x10000000>" in udmabuf0
    assert 'device-name = "udmabuf1"' in udmabuf1 and "dma-coherent;" in udmabuf1 and "size = <0x1000000>" in udmabuf1
    # pl_clk0 (zynqmp_clk 71) at the core's clock, pl_clk1 (72) at the masters'; the UIO node names both.
    config = preset('kv260')
    rates = re.findall(r"assigned-clocks = <0x[0-9a-f]+ (0x[0-9a-f]+)>;\s*assigned-clock-rates = <(0x[0-9a-f]+)>", text)
    assert [(int(c, 16), int(r, 16)) for c, r in rates] == [(71, int(config.clock_mhz * 1e6)),
                                                           (72, int(config.axi_clock_mhz * 1e6))], rates
    fixups = text[text.index("__fixups__"):]
    for label in ("fpga_full", "amba", "gic", "zynqmp_clk", "zynqmp_reset"):
        assert f"{label} = " in fixups
    assert (flows["kv260"] / "systole.dtbo").exists()               # gen.vivado compiled it too
    assert json.loads((flows["kv260"] / "shell.json").read_text()) == {"shell_type": "XRT_FLAT",
                                                                       "num_slots": "1"}
    assert "xmutil loadapp systole" in (flows["kv260"] / "README.md").read_text()
    assert "Overlay(" in (flows["kv260"] / "README.md").read_text()


# Digilent's Nexys Video master XDC (Nexys-Video-Master.xdc): the lines of the pins the
# design uses, as {its port name: (site, I/O standard)}.
DIGILENT_MASTER_XDC = {
    "sysclk": ("R4", "LVCMOS33"),
    "cpu_resetn": ("G4", "LVCMOS15"),
    "uart_tx_in": ("V18", "LVCMOS33"),        # the FT232R's TXD: into the FPGA
    "uart_rx_out": ("AA19", "LVCMOS33"),      # out of the FPGA to the FT232R's RXD
    "led[0]": ("T14", "LVCMOS25"),
    "led[1]": ("T15", "LVCMOS25"),
    "led[2]": ("T16", "LVCMOS25"),
}
# The master-XDC pin each top-level port of our Nexys Video design must sit on.
NEXYS_DESIGN_PINS = {"sys_clk": "sysclk", "cpu_resetn": "cpu_resetn", "uart_rxd": "uart_tx_in",
                     "uart_txd": "uart_rx_out", "led_calib": "led[0]", "led_link": "led[1]",
                     "led_irq": "led[2]"}

_XDC_PIN = re.compile(r"^set_property -dict \{PACKAGE_PIN (\S+) IOSTANDARD (\S+)\} \[get_ports \{(\S+)\}\]$", re.M)


def xdc_pins(xdc: str) -> dict[str, tuple[str, str]]:
    """{port: (site, I/O standard)} of the pin lines of a generated XDC."""
    return {port: (site, standard) for site, standard, port in _XDC_PIN.findall(xdc)}


def test_nexys_video_pins_agree_with_the_platform(flows):
    from hdl.boards.nexys_video import NexysVideoPlatform
    platform = NexysVideoPlatform()
    by_resource = {(r.name, r.number): r for r in platform.resources.values()}

    def pin(name, number=0, sub=None):
        resource = by_resource[(name, number)]
        io = resource.ios[0] if sub is None else next(s for s in resource.ios if s.name == sub).ios[0]
        return io.names[0]

    xdc = (flows["nexys_video"] / "nexys_video.xdc").read_text()
    placed = xdc_pins(xdc)
    assert placed["sys_clk"][0] == pin("clk100")
    assert placed["cpu_resetn"][0] == pin("rst")
    assert placed["uart_rxd"][0] == pin("uart", 0, "rx")
    assert placed["uart_txd"][0] == pin("uart", 0, "tx")
    assert [placed[n][0] for n in ("led_calib", "led_link", "led_irq")] == [pin("led", i) for i in range(3)]
    assert {p for p in placed if not p.startswith("eth_")} == set(NEXYS_DESIGN_PINS)
    for port, master in NEXYS_DESIGN_PINS.items():
        site, standard = DIGILENT_MASTER_XDC[master]
        assert f"PACKAGE_PIN {site} " in xdc and f"[get_ports {{{port}}}]" in xdc
        assert placed[port] == (site, standard), (port, master)


def test_nexys_video_block_design(flows, tmp_path):
    status, calls, stderr = run_tcl(flows["nexys_video"] / "bd.tcl", 0.1, tmp_path)
    assert status == 0, stderr
    text = (flows["nexys_video"] / "bd.tcl").read_text()
    # MIG from our mig.prj: no board connection (it would add sys_clk_i/clk_ref_i ports), no clk_wiz;
    # the oscillator straight on sys_clk_i, MIG's 200 MHz extra clock on clk_ref_i.
    assert "apply_board_connection" not in {c[0] for c in calls} and "clk_wiz" not in text
    assert "CONFIG.XML_INPUT_FILE {mig_a.prj}" in text
    assert "[get_bd_pins mig_7series_0/ui_addn_clk_0] [get_bd_pins mig_7series_0/clk_ref_i]" in text
    copies = [c for c in calls if c[:2] == ["file", "copy"]]
    assert len(copies) == 1 and copies[0][-2].endswith("mig.prj") and copies[0][-1].endswith("mig_a.prj")
    inputs = {}
    for master in ("systole_link_0/m_axi_mem", "systole_0/m_axi_dma", "systole_eth_0/m_axi_mem"):
        found = re.search(rf"connect_bd_intf_net \[get_bd_intf_pins {master}\] \[get_bd_intf_pins smartconnect_mem/(S0\d_AXI)\]",
                          text)
        assert found, master
        inputs[master] = found.group(1)
    assert len(set(inputs.values())) == 3 and "CONFIG.NUM_SI {3}" in text
    assert "smartconnect_mem/M00_AXI] [get_bd_intf_pins mig_7series_0/S_AXI]" in text
    # Both links' control masters through one SmartConnect into the registers.
    ctrl_inputs = re.findall(r"connect_bd_intf_net \[get_bd_intf_pins (\w+)/m_axi_ctrl\] "
                             r"\[get_bd_intf_pins smartconnect_ctrl/(S0\d_AXI)\]", text)
    assert sorted(ctrl_inputs) == [("systole_eth_0", "S01_AXI"), ("systole_link_0", "S00_AXI")]
    assert "smartconnect_ctrl/M00_AXI] [get_bd_intf_pins systole_0/s_axi_ctrl]" in text
    # The IDELAYCTRL reference is MIG's 200 MHz extra clock, the irq reaches both links.
    assert ("[get_bd_pins mig_7series_0/ui_addn_clk_0] [get_bd_pins mig_7series_0/clk_ref_i] \\\n"
            f"    [get_bd_pins systole_eth_0/{ip.ETH_REF_CLOCK}]") in text
    assert nexys_video.mig(BOARDS["nexys_video"]).extra_clk_hz == nexys_video.IDELAYCTRL_REF_HZ == 200e6
    assert "[get_bd_pins systole_link_0/irq] [get_bd_pins systole_eth_0/irq]" in text
    created_ports = {c[-1] for c in calls if c[0] == "create_bd_port"}
    assert created_ports == set(NEXYS_DESIGN_PINS) | set(nexys_video.eth_ports(BOARDS["nexys_video"]))
    used_ports = {word for c in calls if c[0] == "get_bd_ports" for word in c[1:]}
    assert used_ports <= created_ports, f"the wiring names ports never created: {used_ports - created_ports}"


# -- every board fact in the generated files is the registry's ----------------------------

def _hex_pairs(text: str) -> list[tuple[int, int]]:
    """(offset, range) of every ``assign_bd_address -offset O -range R`` in order."""
    return [(int(o, 16), int(r, 16)) for o, r in re.findall(r"-offset (0x[0-9A-Fa-f]+) -range (0x[0-9A-Fa-f]+)", text)]


def check_build_facts(build: str, board) -> None:
    assert re.findall(r" -part (\S+)", build) == [board.fpga.part]
    assert re.findall(r"set_property board_part (\S+) ", build) == ["$board_part"]
    assert re.findall(r"foreach candidate \{([^}]*)\}", build) == [" ".join(board.board_parts)]
    assert board.board_parts[0] == board.board_part


def check_kv260_facts(texts: dict[str, str], board, dts: str, config) -> None:
    """The KV260 flow's part, board part, control window, IRQ and DRAM segments are ``board``'s."""
    ctrl, bd, readme = board.ctrl_window, texts["bd.tcl"], texts["README.md"]
    check_build_facts(texts["build.tcl"], board)
    assert _hex_pairs(bd) == [(ctrl.base, ctrl.size)]
    dma = kv260.dma_ports(config, board)
    assert re.findall(r"^assign_bd_address .*systole_0/(\w+)\] \\\n.*zynq_ultra_ps_e_0/(\S+)\]", bd, re.M) == \
        [(master, port.segment(w.name)) for master, port in dma for w in board.dram_windows]
    assert re.findall(r"^exclude_bd_addr_seg .*systole_0/(\w+)\] \\\n.*zynq_ultra_ps_e_0/(\S+)\]", bd, re.M) == \
        [(master, port.segment(seg)) for master, port in dma for seg in board.dma_excluded_segments]
    for master, port in dma:
        assert f"[get_bd_intf_pins systole_0/{master}] [get_bd_intf_pins zynq_ultra_ps_e_0/{port.interface}]" in bd
        assert f"[get_bd_pins zynq_ultra_ps_e_0/{port.clock_pin}]" in bd
        assert f"CONFIG.{port.use_property} {{1}}" in bd and f"CONFIG.{port.width_property} {{128}}" in bd
    afi = re.search(r"config-afi = <([^>]*)>;", dts).group(1).split()
    assert [int(w, 16) for w in afi[0:-2:2]] == [r for _, port in dma for r in port.afi_registers]
    assert "OVERTEMPSHUTDOWN ENABLE [current_design]" in texts["kv260.xdc"]
    assert "add_files -fileset constrs_1 -norecurse [file join $here kv260.xdc]" in texts["build.tcl"]
    if config.split_clocks:
        assert "set_property used_in_synthesis false [get_files kv260_timing.xdc]" in texts["build.tcl"]
        assert "set_max_delay -datapath_only" in texts["kv260_timing.xdc"]
    else:
        assert "kv260_timing.xdc" not in texts and "pl_clk1" not in bd
    irq_pin = board.irq.partition("[")[0]
    assert f"[get_bd_pins systole_0/irq] [get_bd_pins zynq_ultra_ps_e_0/{irq_pin}]" in bd
    assert f"(GIC SPI {32 + board.irq_spi})" in bd
    node = re.search(r"systole@([0-9a-f]+) \{[^}]*?reg = <([^>]*)>;[^}]*?interrupts = <([^>]*)>;", dts)
    assert node, dts
    cells = [int(c, 16) for c in node.group(2).split()]
    assert int(node.group(1), 16) == ctrl.base
    assert (cells[0] << 32 | cells[1], cells[2] << 32 | cells[3]) == (ctrl.base, ctrl.size)
    assert [int(c, 16) for c in node.group(3).split()] == [0, board.irq_spi, 4]    # SPI, level high
    assert f"registers at 0x{ctrl.base:08X} " in readme and f"interrupt on `{irq_pin}`" in readme
    if config.coherent_io:
        address, value = board.snoop_enable
        assert f"devmem 0x{address:08X} 32 0x{value:X}\n" in readme and "/dev/udmabuf1" in readme
        assert dma[0][1].coherent and not any(port.coherent for _, port in dma[1:])
    else:
        assert "devmem" not in readme and "udmabuf1" not in readme and "udmabuf1" not in dts


def check_nexys_facts(texts: dict[str, str], board, config, baud: int) -> None:
    """The Nexys Video flow's part, pins, clocks, voltage, windows and baud are ``board``'s."""
    ports, xdc, bd, readme = nexys_video.PORTS, texts["nexys_video.xdc"], texts["bd.tcl"], texts["README.md"]
    check_build_facts(texts["build.tcl"], board)
    # Every eth_* pin of the registry, as itself or as a bit of its group's vector.
    eth_pins = {}
    for name, pin in board.pins.items():
        group = re.fullmatch(r"(eth_\w+?)(\d+)", name)
        if group and group.group(1) not in board.pins:
            eth_pins[f"{group.group(1)}[{group.group(2)}]"] = (pin.site, pin.iostandard)
        elif name.startswith("eth_"):
            eth_pins[name] = (pin.site, pin.iostandard)
    assert xdc_pins(xdc) == {**{name: (board.pins[p.pin].site, board.pins[p.pin].iostandard)
                                for name, p in ports.items()}, **eth_pins}
    eth = board.ethernet
    rx_clock = liteeth.RGMII_PINS["rgmii_clocks_rx"]
    period = re.search(rf"create_clock -name {rx_clock} -period (\S+) \[get_ports \{{{rx_clock}\}}\]", xdc)
    assert period and float(period.group(1)) == pytest.approx(1e9 / eth.clock_hz, abs=5e-4)
    assert f"IDELAYE2s of {eth.rx_delay_s * 1e9:g} ns, TXC from a PLL output {eth.tx_delay_s * 1e9:g} ns" in xdc
    assert re.search(rf"set_false_path -to \[get_ports \{{[^}}]*\b{eth.reset_pin}\b", xdc)
    build = texts["build.tcl"]
    assert "source [file join $here ip package_systole_eth.tcl]" in build
    assert ("add_files -fileset constrs_1 -norecurse [file join $here ip/hdl/liteeth_core.xdc]\n"
            "set_property SCOPED_TO_REF liteeth_core [get_files liteeth_core.xdc]\n"
            "set_property used_in_synthesis false [get_files liteeth_core.xdc]\n") in build
    clock = next(name for name, p in ports.items() if p.type == "clk")
    clock_hz = board.clocks_hz[ports[clock].pin]
    period = re.search(rf"create_clock -name {clock} -period (\S+) ", xdc)
    assert period and float(period.group(1)) == pytest.approx(1e9 / clock_hz, abs=5e-4)
    assert f"CFGBVS {board.cfgbvs} " in xdc and f"CONFIG_VOLTAGE {board.config_voltage} " in xdc
    assert f"-type clk -freq_hz {int(clock_hz)} {clock}\n" in bd
    mig = board.mig
    prj = texts["mig.prj"]
    assert f"<InputClkFreq>{mig.input_clk_mhz:g}</InputClkFreq>" in prj and mig.input_clk_mhz * 1e6 == clock_hz
    assert f"<TimePeriod>{mig.memory_period_ps}</TimePeriod>" in prj
    assert f"<C0_S_AXI_DATA_WIDTH>{mig.axi_data_bits}</C0_S_AXI_DATA_WIDTH>" in prj
    assert f"<MemoryDevice>{mig.memory_part}</MemoryDevice>" in prj
    placed = dict((name, (site, std)) for std, site, name in
                  re.findall(r'IOSTANDARD="(\w+)" PADName="(\w+)" SLEW="" VCCAUX_IO="" name="([^"]+)"', prj))
    assert placed == {name: (pin.site, pin.iostandard) for name, pin in mig.pins.items()}
    assert f"[get_bd_ports {clock}] [get_bd_pins mig_7series_0/sys_clk_i]" in bd
    low = {name for name, p in ports.items() if board.pins[p.pin].active_low}
    if board.pins[eth.reset_pin].active_low:
        low.add(eth.reset_pin)
    assert f"create_bd_port -dir O -type rst {eth.reset_pin}\n" in bd
    assert set(re.findall(r"CONFIG.POLARITY ACTIVE_LOW \[get_bd_ports (\w+)\]", bd)) == low
    ddr = board.dram_window
    ctrl = board.ctrl_window
    assert _hex_pairs(bd) == [(ctrl.base, ctrl.size)] * 2 + [(ddr.base, ddr.size)] * 3
    ui_mhz = board.clocks_hz["ui_clk"] / 1e6
    assert f"MIG's ui_clk ({ui_mhz:g} MHz)" in bd and f"MIG's {ui_mhz:g} MHz ui_clk" in readme
    assert config.clock_mhz == ui_mhz
    assert f"get_hw_devices {board.fpga.device}*]" in texts["program.tcl"]
    assert f"USB-UART ({baud} baud, 8N1)" in readme
    assert f"    ping {eth.ip_address} " in readme and f"({eth.ip_address}[:{eth.udp_port}])" in readme
    for p in ports.values():
        if p.pin.startswith("led"):
            assert f"{board.pins[p.pin].doc} = {p.role}" in readme


def check_package_facts(package: str, board, boards, registers: bool = True) -> None:
    """An IP packaged for ``board``'s part, supported on every family of ``boards``; its register
    block is the range ``board``'s block design assigns (its ``ctrl_window``)."""
    families = " ".join(b.fpga.vivado_family for b in boards)
    if registers:
        assert f"set_property range {board.ctrl_window.size} $block\n" in package
    assert f"create_project -in_memory -part {board.fpga.part}\n" in package
    assert f"set_property supported_families {{{families}}} $core" in package


def check_link_facts(package: str, board, baud: int, boards) -> None:
    """The bridge's control master spans ``board``'s control window; its UART runs at ``baud``."""
    check_package_facts(package, board, boards, registers=False)
    assert f"set_property range {board.ctrl_window.size} [ipx::get_address_spaces m_axi_ctrl " in package
    assert f"USB-UART ({baud} baud 8N1)" in package


def _read_flow(directory: Path, names) -> dict[str, str]:
    return {name: (directory / name).read_text() for name in names}


def test_generated_board_facts_are_the_registrys(flows, tmp_path):
    kv, nexys = BOARDS["kv260"], BOARDS["nexys_video"]
    texts = _read_flow(flows["kv260"], kv260.files(preset("kv260"), 256 << 20))
    check_kv260_facts(texts, kv, decompiled_overlay(flows["kv260"] / "systole.dtso", tmp_path), preset("kv260"))
    texts = _read_flow(flows["nexys_video"], nexys_video.files(preset("nexys_video"), nexys.uart_baud))
    check_nexys_facts(texts, nexys, preset("nexys_video"), nexys.uart_baud)
    for board, directory in ((kv, flows["kv260"]), (nexys, flows["nexys_video"])):
        check_package_facts((directory / "ip" / "package_systole.tcl").read_text(), board, BOARDS.values())
    check_link_facts((flows["nexys_video"] / "ip" / "package_systole_link.tcl").read_text(), nexys,
                     nexys.uart_baud, BOARDS.values())
    eth_package = (flows["nexys_video"] / "ip" / "package_systole_eth.tcl").read_text()
    check_package_facts(eth_package, nexys, BOARDS.values(), registers=False)
    assert f"set_property range {nexys.ctrl_window.size} [ipx::get_address_spaces m_axi_ctrl " in eth_package
    assert f"UDP port {nexys.ethernet.udp_port}:" in eth_package
    # The bridge's Verilog: its control master is as wide as the window.
    link = ports_of(flows["nexys_video"] / "ip" / "hdl" / "systole_link.v", "systole_link")
    assert 1 << link["m_axi_ctrl_araddr"][1] == nexys.ctrl_window.size


def _moved(board, **changes):
    """``board`` with every pin on another site, standard and polarity, plus ``changes``."""
    pins = {name: Pin(f"{pin.site}9", "LVCMOS18", pin.doc, active_low=not pin.active_low)
            for name, pin in board.pins.items()}
    return dataclasses.replace(board, pins=pins, **changes)


def test_no_board_fact_is_typed_into_a_flow(flows, tmp_path, monkeypatch):
    """The flows follow a registry whose every fact differs from the real one."""
    kv = BOARDS["kv260"]
    kv_moved = _moved(kv, fpga=dataclasses.replace(kv.fpga, part="xck26-sfvc784-1LV-c",
                                                   vivado_family="zynquplusRFSOC Production"),
                      board_part="xilinx.com:kv260_som:part0:2.0", board_part_versions=("2.0", "1.3"),
                      ctrl_window=Window(0xB001_0000, 0x2_0000, "HPM1_FPD"), irq="pl_ps_irq1[3]", irq_spi=104,
                      dram_windows=(Window(0x4000_0000, 1 << 30, "DDR_MID"),),
                      dma_excluded_segments=("PCIE_LOW",),
                      dma_ports=tuple(HpPort(hp=p.hp + 4, gp=p.gp + 1, afifm=6 - p.afifm, ddrc="moved")
                                      for p in reversed(kv.dma_ports)),
                      coherent_dma_ports=(dataclasses.replace(kv.coherent_dma_ports[0], hp=1, gp=1, afifm=1,
                                                              ddrc="moved"),
                                          *(HpPort(hp=p.hp + 4, gp=p.gp + 1, afifm=6 - p.afifm, ddrc="moved")
                                            for p in reversed(kv.coherent_dma_ports[1:]))),
                      snoop_enable=(0xFD6F_8000, 0x3))
    texts = kv260.files(preset("kv260"), 64 << 20, board=kv_moved)
    dtso = tmp_path / "moved.dtso"
    dtso.write_text(texts["systole.dtso"])
    check_kv260_facts(texts, kv_moved, decompiled_overlay(dtso, tmp_path), preset("kv260"))
    # ... and for a configuration whose masters stay on the core's clock, and one without coherent I/O.
    for other in (preset("kv260").replace(axi_clock_mhz=None), preset("kv260").replace(coherent_io=False)):
        texts = kv260.files(other, 64 << 20, board=kv_moved)
        dtso.write_text(texts["systole.dtso"])
        check_kv260_facts(texts, kv_moved, decompiled_overlay(dtso, tmp_path), other)

    nexys = BOARDS["nexys_video"]
    nexys_moved = _moved(nexys, fpga=dataclasses.replace(nexys.fpga, part="xc7a100tfgg484-2", device="xc7a100t",
                                                         vivado_family="aartix7 Production"),
                         board_part="digilentinc.com:nexys_video:part0:1.1", board_part_versions=(),
                         clocks_hz={"clk100": 125e6, "ui_clk": 50e6}, config_voltage=1.8,
                         mig=dataclasses.replace(nexys.mig, input_clk_mhz=125, memory_period_ps=5000,
                                                 memory_part="DDR3_SDRAM/Components/MT41K128M16XX-15E",
                                                 pins={"ddr3_we_n": Pin("A9", "SSTL135")}),
                         ctrl_window=Window(0x4000_0000, 0x2000, "link m_axi_ctrl"),
                         dram_windows=(Window(0x1000_0000, 256 << 20, "DDR3"),))
    config = preset("nexys_video").replace(clock_mhz=50.0)
    texts = nexys_video.files(config, 115_200, board=nexys_moved)
    assert nexys_moved.cfgbvs == "GND" and "CFGBVS GND " in texts["nexys_video.xdc"]
    check_nexys_facts(texts, nexys_moved, config, 115_200)
    # The IPs: the supported families are the (moved) registry's, the bridge's ranges the board's.
    moved = {"kv260": kv_moved, "nexys_video": nexys_moved}
    monkeypatch.setattr(ip, "BOARDS", moved)
    accel_ports = ports_of(flows["kv260"] / "ip" / "hdl" / "systole_top.v", "systole_top")
    check_package_facts(ip.accel_package_tcl(preset("kv260"), accel_ports, kv_moved.fpga.part, kv_moved), kv_moved,
                        moved.values())
    link_ports = ports_of(flows["nexys_video"] / "ip" / "hdl" / "systole_link.v", "systole_link")
    check_link_facts(ip.link_package_tcl(config, nexys_moved, 115_200, link_ports, nexys_moved.fpga.part),
                     nexys_moved, 115_200, moved.values())
    assert ip.link_ctrl_addr_width(nexys_moved) == 13


def test_kv260_refuses_more_weight_ports_than_hp_ports():
    board = dataclasses.replace(BOARDS["kv260"], dma_ports=BOARDS["kv260"].dma_ports[:2],
                                coherent_dma_ports=BOARDS["kv260"].coherent_dma_ports[:2])
    plain = preset("kv260").replace(coherent_io=False)
    assert [port.interface for _, port in kv260.dma_ports(plain.replace(weight_ports=2, cols=32), board)] == \
        ["S_AXI_HP0_FPD", "S_AXI_HP1_FPD"]
    with pytest.raises(ValueError, match=r"weight_ports=4: kv260 has 2 HP ports \(S_AXI_HP0_FPD, S_AXI_HP1_FPD\)"):
        kv260.files(plain, 256 << 20, board=board)
    with pytest.raises(ValueError, match=r"weight_ports=4: kv260 has 2 HP ports \(S_AXI_HPC0_FPD, S_AXI_HP1_FPD\)"):
        kv260.files(preset("kv260"), 256 << 20, board=board)


def test_kv260_coherent_ports():
    """coherent_io (the kv260 preset): m_axi_dma on the snooping HPC0, the weight masters on
    three HP ports of three XPIs, no port twice; without it, today's HP0..HP3 unchanged."""
    config = preset("kv260")
    assert config.coherent_io
    ports = kv260.dma_ports(config)
    assert [(m, p.interface) for m, p in ports] == [("m_axi_dma", "S_AXI_HPC0_FPD"), ("m_axi_w1", "S_AXI_HP1_FPD"),
                                                    ("m_axi_w2", "S_AXI_HP3_FPD"), ("m_axi_w3", "S_AXI_HP0_FPD")]
    assert [p.coherent for _, p in ports] == [True, False, False, False]
    assert len({p.interface for _, p in ports}) == len({(p.gp, p.afifm) for _, p in ports}) == 4
    hpc0 = ports[0][1]
    assert (hpc0.use_property, hpc0.width_property, hpc0.clock_pin, hpc0.segment("DDR_LOW"), hpc0.afi_registers) == \
        ("PSU__USE__S_AXI_GP0", "PSU__SAXIGP0__DATA_WIDTH", "saxihpc0_fpd_aclk", "SAXIGP0/HPC0_DDR_LOW", (0, 1))
    bd = kv260.bd_tcl(config)
    assert "CONFIG.PSU__USE__S_AXI_GP0 {1}" in bd and "CONFIG.PSU__SAXIGP0__DATA_WIDTH {128}" in bd
    assert "[get_bd_intf_pins systole_0/m_axi_dma] [get_bd_intf_pins zynq_ultra_ps_e_0/S_AXI_HPC0_FPD]" in bd
    # Without coherent_io: exactly the old mapping (and text) on HP0..HP3.
    plain = config.replace(coherent_io=False)
    assert [(m, p.interface) for m, p in kv260.dma_ports(plain)] == \
        [("m_axi_dma", "S_AXI_HP0_FPD"), ("m_axi_w1", "S_AXI_HP1_FPD"), ("m_axi_w2", "S_AXI_HP2_FPD"),
         ("m_axi_w3", "S_AXI_HP3_FPD")]
    plain_bd = kv260.bd_tcl(plain)
    assert "HPC" not in plain_bd and "PSU__USE__S_AXI_GP0" not in plain_bd
    assert "[get_bd_intf_pins systole_0/m_axi_dma] [get_bd_intf_pins zynq_ultra_ps_e_0/S_AXI_HP0_FPD]" in plain_bd
    plain_dtso = kv260.dtso(plain, 256 << 20)
    assert "udmabuf1" not in plain_dtso and "dma-coherent" not in plain_dtso
    # A board without a coherent port refuses coherent_io.
    with pytest.raises(ValueError, match="coherent_io: kv260 has no I/O-coherent port"):
        kv260.dma_ports(config, dataclasses.replace(BOARDS["kv260"], coherent_dma_ports=()))


def test_kv260_coherent_buffer():
    config = preset("kv260")
    texts = kv260.files(config, 64 << 20, coherent_bytes=8 << 20)
    assert "size = <0x800000>;\n                dma-coherent;" in texts["systole.dtso"]
    assert "8 MiB `dma-coherent` one" in texts["README.md"]
    for bad in (0, 1000, 4097, True, 1.5 * 4096):
        with pytest.raises(ValueError, match="coherent_bytes=.* must be a positive multiple of 4 KiB"):
            kv260.files(config, 64 << 20, coherent_bytes=bad)


def test_templates_refuse_a_missing_variable():
    board = BOARDS["kv260"]
    complete = dict(config=preset("kv260"), board=board, ctrl_bits=128, accel_vlnv="v", irq_pin="p",
                    dma=kv260.dma_ports(preset("kv260")), unused_ports=())
    assert "zynq_ultra_ps_e_0/p]" in render("kv260/bd.tcl.j2", **complete)
    del complete["irq_pin"]
    with pytest.raises(jinja2.UndefinedError, match="irq_pin"):
        render("kv260/bd.tcl.j2", **complete)


def test_every_template_is_package_data():
    import gen.vivado
    root = Path(gen.vivado.__file__).parent
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["gen.vivado"]
    carried = {path for pattern in patterns for path in root.glob(pattern)}
    templates = {path for path in (root / "templates").rglob("*") if path.is_file()}
    assert templates and templates <= carried, sorted(map(str, templates - carried))


def test_nexys_video_projection_assumes_the_mig_port():
    """host.perf projects the Nexys Video from its preset's DMA width and clock: they must be
    the MIG's real AXI port (128 bits at ui_clk since issue 13; the preset's 32 bits would be
    a quarter of it)."""
    board, config = BOARDS["nexys_video"], preset("nexys_video")
    mig = nexys_video.mig(board)
    assert mig.axi_data_bits == mig.ui_data_bits == config.bus_bits
    assert config.clock_mhz * 1e6 == mig.ui_clk_hz == board.clocks_hz["ui_clk"]
    assert config.bandwidth_bytes_per_s == mig.axi_bytes_per_s == board.dram_bytes_per_s


_ANSI_PORT = re.compile(r"^\s*(input|output|inout)\s+wire\s+(?:\[(\d+):(\d+)\]\s+)?(\w+),?$", re.M)


def test_the_ethernet_ip_instantiates_the_liteeth_core_it_ships(flows):
    """systole_eth's liteeth_core instance connects every port of the shipped core and no
    other; LiteEth's XDC names only nets of that module (it is read scoped to it); the PHY
    reset pulse is reset_low_s at the core's clock."""
    nexys = BOARDS["nexys_video"]
    hdl = flows["nexys_video"] / "ip" / "hdl"
    core = (hdl / f"{liteeth.MODULE}.v").read_text()
    header = core[core.index(f"module {liteeth.MODULE} ("):]
    header = header[:header.index(");")]
    core_ports = {name: (d, int(msb) - int(lsb) + 1 if msb else 1) for d, msb, lsb, name in _ANSI_PORT.findall(header)}
    assert {p: core_ports[p] for p in liteeth.RGMII_PORTS} == liteeth.RGMII_PORTS
    eth = (hdl / "systole_eth.v").read_text()
    instance = re.search(rf"\(\* keep_hierarchy = \"yes\" \*\)\s*{liteeth.MODULE} core \((.*?)\);", eth, re.S)
    assert instance, "systole_eth must instantiate the core, kept whole for its scoped XDC"
    assert sorted(re.findall(r"\.(\w+)\(", instance.group(1))) == sorted(core_ports)
    xdc = (hdl / f"{liteeth.MODULE}.xdc").read_text()
    nets = set(re.findall(r"get_nets (\w+)\]", xdc))
    assert nets == {"eth_rx_clk", "eth_tx_clk", "sys_clk"}
    for net in nets:
        assert re.search(rf"^wire\s+(\[\S+\]\s+)?{net};", core, re.M), net
    assert "get_ports" not in xdc and "PACKAGE_PIN" not in xdc     # pins are nexys_video.xdc's alone
    cycles = ip.eth_phy_reset_cycles(nexys)
    assert cycles == round(nexys.ethernet.reset_low_s * nexys.clocks_hz[liteeth.CLOCK]) == 1_000_000
    assert f"count != {cycles.bit_length()}'h{cycles:x};" in eth
