"""gen/vivado.py: the generated Vivado flows, checked without Vivado.

- Every TCL script runs in ``tclsh`` with every Vivado command stubbed (Tcl's ``unknown``
  records the call and returns a handle), so syntax errors, undefined variables and
  wrong control flow fail here; the recorded calls are then checked.
- Every port or interface the scripts name on our IPs exists in the generated Verilog
  (parsed here, independently of gen.vivado's own parser).
- The build fails, before writing a bitstream, when the stubbed timing is negative.
- The device-tree overlay compiles with ``dtc -@`` and holds what the KV260 needs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gen.vivado import NEXYS_PINS, generate
from hdl.spec.config import preset
from hdl.spec.regmap import REGISTERS

# One worker generates both flows once (the Verilog conversion is the slow part).
pytestmark = pytest.mark.xdist_group("vivado")

# Records every command tclsh does not know (all of Vivado's) as one line of a log and
# returns a one-word handle; SLACK and PROGRESS answers are set by the test.
STUBS = r"""
set ::calls {}
set ::handle 0
proc ::log {words} { lappend ::calls $words }
proc unknown {args} { ::log $args; return "h[incr ::handle]" }
proc get_property {name args} {
    ::log [list get_property $name {*}$args]
    switch -- $name {
        SLACK { return $::slack }
        PROGRESS { return "100%" }
        default { return "h[incr ::handle]" }
    }
}
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


_DECL = re.compile(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s*)?(\w+)\s*;", re.M)


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


def _check_interfaces(ports, interfaces, pins):
    for name in pins:
        assert name in ports, f"the TCL uses pin {name!r}, which the Verilog does not have"
    for interface in interfaces:
        members = [p for p in ports if p.startswith(interface + "_")]
        assert len(members) >= 19, f"interface {interface!r} has only {members} in the Verilog"
        assert f"{interface}_awvalid" in ports and f"{interface}_rready" in ports


@pytest.mark.parametrize("board", ["kv260", "nexys_video"])
def test_build_runs_and_names_only_real_ports(flows, board, tmp_path):
    directory = flows[board]
    status, calls, stderr = run_tcl(directory / "build.tcl", 0.125, tmp_path)
    assert status == 0, stderr
    names = [c[0] if c[0] != "create_project" or "-in_memory" in c else "create_board_project" for c in calls]
    # Order of the flow: packaging, project, block design, synth, impl, timing gate, outputs.
    for earlier, later in (("ipx::save_core", "create_board_project"), ("create_bd_design", "launch_runs"),
                           ("get_timing_paths", "write_bitstream"), ("write_bitstream", "write_hw_platform")):
        assert names.index(earlier) < names.index(later), (earlier, later)
    accel = ports_of(directory / "ip" / "hdl" / "systole_top.v", "systole_top")
    pins, interfaces = pins_named(calls, "systole_0")
    assert {"aclk", "aresetn", "irq"} <= pins and interfaces == {"s_axi_ctrl", "m_axi_dma"}
    _check_interfaces(accel, interfaces, pins)
    ip_ports = {"systole_top": accel}
    if board == "nexys_video":
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


def test_build_fails_when_timing_is_not_met(flows, tmp_path):
    for board, directory in flows.items():
        status, calls, stderr = run_tcl(directory / "build.tcl", -0.042, tmp_path)
        assert status != 0 and "timing NOT met" in stderr, (board, stderr)
        assert "write_bitstream" not in [c[0] for c in calls], "a failing build must not write a bitstream"


def test_kv260_block_design(flows, tmp_path):
    config = preset("kv260")
    status, calls, stderr = run_tcl(flows["kv260"] / "bd.tcl", 0.1, tmp_path)
    assert status == 0, stderr
    ps_config = {}
    for call in calls:
        if call[0] == "set_property" and call[1] == "-dict":
            words = call[2].split()
            ps_config.update(zip(words[0::2], (w.strip("{}") for w in words[1::2])))
    assert ps_config["CONFIG.PSU__USE__S_AXI_GP2"] == "1"                     # S_AXI_HP0_FPD
    assert int(ps_config["CONFIG.PSU__SAXIGP2__DATA_WIDTH"]) == config.bus_bits
    assert float(ps_config["CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"]) == config.clock_mhz
    assert ps_config["CONFIG.PSU__USE__M_AXI_GP0"] == "1" and ps_config["CONFIG.PSU__USE__IRQ0"] == "1"
    text = (flows["kv260"] / "bd.tcl").read_text()
    assert "apply_board_preset" in text
    assert re.search(r"connect_bd_intf_net \[get_bd_intf_pins systole_0/m_axi_dma\] "
                     r"\[get_bd_intf_pins zynq_ultra_ps_e_0/S_AXI_HP0_FPD\]", text)
    assert re.search(r"connect_bd_net \[get_bd_pins systole_0/irq\] \[get_bd_pins zynq_ultra_ps_e_0/pl_ps_irq0\]",
                     text)
    assert "-offset 0xA0000000" in text


def test_ip_register_map_comes_from_regmap(flows, tmp_path):
    status, calls, stderr = run_tcl(flows["kv260"] / "ip" / "package_systole.tcl", 0.1, tmp_path)
    assert status == 0, stderr
    added = [c[1] for c in calls if c[0] == "ipx::add_register"]
    assert added == [reg.name for reg in REGISTERS]
    offsets = [int(c[2], 16) for c in calls if c[:2] == ["set_property", "address_offset"]]
    assert offsets == [reg.offset for reg in REGISTERS]
    fields = [c[1] for c in calls if c[0] == "ipx::add_field"]
    assert fields == [f.name.upper() for reg in REGISTERS for f in reg.fields]


def test_kv260_overlay_compiles_with_the_right_nodes(flows, tmp_path):
    dtc = _require("dtc")
    dtso = flows["kv260"] / "systole.dtso"
    dtbo = tmp_path / "systole.dtbo"
    result = subprocess.run([dtc, "-@", "-I", "dts", "-O", "dtb", "-o", str(dtbo), str(dtso)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
    text = subprocess.run([dtc, "-I", "dtb", "-O", "dts", str(dtbo)], capture_output=True, text=True).stdout
    assert 'firmware-name = "systole.bit.bin"' in text
    # HP0 read/write AFI widths 0 (= 128 bit) for the 128-bit DMA port.
    assert "config-afi = <0x04 0x00 0x05 0x00 0x0e 0xa00>" in text
    assert re.search(r'systole@a0000000 \{\s*compatible = "generic-uio";\s*reg = <0x00 0xa0000000 0x00 0x10000>',
                     text)
    assert "interrupts = <0x00 0x59 0x04>" in text                 # SPI 89 = pl_ps_irq0[0], level high
    assert 'compatible = "ikwzm,u-dma-buf"' in text and 'device-name = "udmabuf0"' in text
    assert f"assigned-clock-rates = <{hex(int(preset('kv260').clock_mhz * 1e6))}>" in text
    fixups = text[text.index("__fixups__"):]
    for label in ("fpga_full", "amba", "gic", "zynqmp_clk", "zynqmp_reset"):
        assert f"{label} = " in fixups
    assert (flows["kv260"] / "systole.dtbo").exists()               # gen.vivado compiled it too
    assert json.loads((flows["kv260"] / "shell.json").read_text()) == {"shell_type": "XRT_FLAT",
                                                                       "num_slots": "1"}
    assert "xmutil loadapp systole" in (flows["kv260"] / "README.md").read_text()
    assert "Overlay(" in (flows["kv260"] / "README.md").read_text()


def test_nexys_video_pins_agree_with_the_platform(flows):
    from hdl.boards.nexys_video import NexysVideoPlatform
    platform = NexysVideoPlatform()
    by_resource = {(r.name, r.number): r for r in platform.resources.values()}

    def pin(name, number=0, sub=None):
        resource = by_resource[(name, number)]
        io = resource.ios[0] if sub is None else next(s for s in resource.ios if s.name == sub).ios[0]
        return io.names[0]

    assert NEXYS_PINS["sys_clk"][0] == pin("clk100")
    assert NEXYS_PINS["cpu_resetn"][0] == pin("rst")
    assert NEXYS_PINS["uart_rxd"][0] == pin("uart", 0, "rx")
    assert NEXYS_PINS["uart_txd"][0] == pin("uart", 0, "tx")
    assert [NEXYS_PINS[n][0] for n in ("led_calib", "led_link", "led_irq")] == [pin("led", i) for i in range(3)]
    xdc = (flows["nexys_video"] / "nexys_video.xdc").read_text()
    for port, (site, _) in NEXYS_PINS.items():
        assert f"PACKAGE_PIN {site} " in xdc and f"[get_ports {{{port}}}]" in xdc


def test_nexys_video_block_design(flows, tmp_path):
    status, calls, stderr = run_tcl(flows["nexys_video"] / "bd.tcl", 0.1, tmp_path)
    assert status == 0, stderr
    text = (flows["nexys_video"] / "bd.tcl").read_text()
    assert 'apply_board_connection -board_interface "ddr3_sdram"' in text
    for master in ("systole_link_0/m_axi_mem", "systole_0/m_axi_dma"):
        assert re.search(rf"connect_bd_intf_net \[get_bd_intf_pins {master}\] \[get_bd_intf_pins smartconnect_mem/S0\d_AXI\]",
                         text)
    assert "smartconnect_mem/M00_AXI] [get_bd_intf_pins mig_7series_0/S_AXI]" in text
    assert "systole_link_0/m_axi_ctrl] [get_bd_intf_pins systole_0/s_axi_ctrl]" in text
    created_ports = {c[-1] for c in calls if c[0] == "create_bd_port"}
    assert created_ports == set(NEXYS_PINS)
