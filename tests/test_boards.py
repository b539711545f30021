"""hdl/boards: both platforms elaborate their bring-up designs to Verilog + XDC without
Vivado, with the board's part and the pins of Digilent's / AMD's board files.

The expected sites below are written from those files; the platforms take theirs from
the registry (``hdl.spec.boards``), and the XDC Amaranth generates must agree with both.
"""

from __future__ import annotations

import inspect
import re

import pytest

from hdl.boards.kv260 import Heartbeat, KV260Platform
from hdl.boards.nexys_video import NexysVideoPlatform, SerialEcho
from hdl.spec.boards import BOARDS


def _locs(xdc: str) -> dict[str, str]:
    return {port: pin for pin, port in re.findall(r'set_property LOC (\S+) \[get_ports "([^"]+)"\]', xdc)}


def _iostandards(xdc: str) -> dict[str, str]:
    return dict((port, std) for std, port in re.findall(r'set_property IOSTANDARD "(\S+)" \[get_ports "([^"]+)"\]', xdc))


@pytest.fixture(scope="module")
def nexys_plan():
    return NexysVideoPlatform().prepare(SerialEcho(baud=921_600), name="serial_echo")


@pytest.fixture(scope="module")
def kv260_plan():
    return KV260Platform().prepare(Heartbeat(), name="heartbeat")


def test_parts():
    assert NexysVideoPlatform()._part == "xc7a200tsbg484-1" == BOARDS["nexys_video"].fpga.part
    assert KV260Platform()._part == "xck26-sfvc784-2LV-c" == BOARDS["kv260"].fpga.part
    assert KV260Platform().family == "ultrascaleplus" and NexysVideoPlatform().family == "series7"


def test_nexys_video_serial_echo_pins(nexys_plan):
    files = nexys_plan.files
    xdc = files["serial_echo.xdc"]
    # Nexys Video reference manual / master XDC: sysclk R4, cpu_resetn G4,
    # uart_tx_in V18 (to the FPGA), uart_rx_out AA19 (from the FPGA), LD0..LD7.
    expected = {"clk100_0__io": "R4", "rst_0__io": "G4", "uart_0__rx__io": "V18", "uart_0__tx__io": "AA19"}
    expected.update({f"led_{i}__io": pin for i, pin in enumerate("T14 T15 T16 U16 V15 W16 W15 Y13".split())})
    assert _locs(xdc) == expected
    assert 'IOSTANDARD "LVCMOS15" [get_ports "rst_0__io"]' in xdc
    assert "create_clock -name clk100_0__io -period 10.0" in xdc
    assert "-part xc7a200tsbg484-1" in files["serial_echo.tcl"]
    verilog = files["serial_echo.v"]
    assert "module serial_echo" in verilog and "STARTUPE2" in verilog


def test_kv260_heartbeat_uses_the_ps_clock(kv260_plan):
    files = kv260_plan.files
    xdc = files["heartbeat.xdc"]
    # KV260 carrier: fan_en_b on A12 (HDA20), PMOD J2 pins 1-4 on H12 E10 D10 C11.
    assert _locs(xdc) == {"fan_en_b_0__io": "A12", "pmod_led_0__io": "H12", "pmod_led_1__io": "E10",
                          "pmod_led_2__io": "D10", "pmod_led_3__io": "C11"}
    assert "create_clock -name pl_clk0 -period 10.0" in xdc
    assert "OVERTEMPSHUTDOWN ENABLE" in xdc
    assert "-part xck26-sfvc784-2LV-c" in files["heartbeat.tcl"]
    verilog = files["heartbeat.v"]
    assert re.search(r"\bPS8\b", verilog) and re.search(r"\bBUFG_PS\b", verilog)


def test_kv260_pmod_order_matches_the_carrier():
    # Carrier pins 1,3,5,7 (top) and 2,4,6,8 (bottom) = Digilent 1-4 and 7-10.
    platform = KV260Platform()
    carrier = {1: "H12", 3: "E10", 5: "D10", 7: "C11", 2: "B10", 4: "E12", 6: "D11", 8: "B11"}
    digilent = dict(zip([1, 2, 3, 4, 7, 8, 9, 10], [carrier[p] for p in (1, 3, 5, 7, 2, 4, 6, 8)]))
    connector = platform.connectors["pmod", 0]
    assert {int(k): v for k, v in connector.mapping.items()} == digilent


def test_nexys_video_xdc_is_the_registrys(nexys_plan):
    board = BOARDS["nexys_video"]
    xdc = nexys_plan.files["serial_echo.xdc"]
    on = {"clk100_0__io": board.pins["clk100"], "rst_0__io": board.pins["cpu_resetn"],
          "uart_0__rx__io": board.pins["uart_rx"], "uart_0__tx__io": board.pins["uart_tx"]}
    on.update({f"led_{i}__io": pin for i, pin in enumerate(board.pin_group("led"))})
    assert _locs(xdc) == {port: pin.site for port, pin in on.items()}
    assert _iostandards(xdc) == {port: pin.iostandard for port, pin in on.items()}
    period_ns = 1e9 / board.clocks_hz["clk100"]
    assert f"create_clock -name clk100_0__io -period {period_ns:.1f}" in xdc
    assert f"CFGBVS {board.cfgbvs} " in xdc and f"CONFIG_VOLTAGE {board.config_voltage} " in xdc
    # Every resource of the platform, the ones the echo does not use too, is on its registry pin.
    platform = NexysVideoPlatform()
    for name, stem in (("led", "led"), ("button", "button"), ("switch", "switch")):
        for number, pin in enumerate(board.pin_group(stem)):
            resource = platform.resources[name, number]
            assert resource.ios[0].names == [pin.site] and resource.attrs["IOSTANDARD"] == pin.iostandard
    assert platform.resources["rst", 0].ios[0].invert is board.pins["cpu_resetn"].active_low


def test_nexys_video_serial_echo_runs_at_the_link_rate():
    board = BOARDS["nexys_video"]
    defaults = {name: p.default for name, p in inspect.signature(SerialEcho).parameters.items()}
    assert defaults == {"baud": board.uart_baud, "clock_hz": board.clocks_hz["clk100"]}


def test_kv260_xdc_is_the_registrys(kv260_plan):
    board = BOARDS["kv260"]
    xdc = kv260_plan.files["heartbeat.xdc"]
    top_row = board.connectors["pmod_j2"].split()[:4]
    expected = {"fan_en_b_0__io": board.pins["fan_en_b"].site,
                **{f"pmod_led_{i}__io": site for i, site in enumerate(top_row)}}
    assert _locs(xdc) == expected
    standards = _iostandards(xdc)
    assert standards["fan_en_b_0__io"] == board.pins["fan_en_b"].iostandard
    assert {standards[f"pmod_led_{i}__io"] for i in range(4)} == {board.connector_iostandards["pmod_j2"]}
    assert f"create_clock -name pl_clk0 -period {1e9 / board.clocks_hz['pl_clk0']:.1f}" in xdc
    assert KV260Platform().resources["fan_en_b", 0].ios[0].invert is board.pins["fan_en_b"].active_low


def test_nexys_video_ethernet_facts_are_whole():
    """The Ethernet facts name a real, active-low reset pin and a power-up pulse the design
    can count at ui_clk (10 ms: the RTL8211E reset timing, unconfirmed here)."""
    board = BOARDS["nexys_video"]
    eth = board.ethernet
    assert board.pins[eth.reset_pin].active_low and eth.reset_pin.startswith("eth_")
    assert eth.reset_low_s == 10e-3
    assert 0 < eth.reset_low_s * board.clocks_hz["ui_clk"] < 1 << 24
    assert eth.clock_hz == 125e6 and eth.interface == "rgmii"
