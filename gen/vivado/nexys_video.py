"""The Nexys Video flow: block design, constraints, build and program scripts, README.

Board facts (part, board part, pin sites and I/O standards, the oscillator, MIG's
``ui_clk``, the configuration voltage, the DDR3 window, the bridge's control window,
the UART rate) come from ``hdl.spec.boards.BOARDS["nexys_video"]``. What this module
decides is the design: its top-level ports and the board pin each one sits on
(``PORTS``; the Ethernet ones are ``eth_ports``, made from ``gen.liteeth``'s RGMII
ports and pins), DDR3 through MIG (our own ``mig.prj`` from the registry's MIG facts)
with a SmartConnect merging the two links' and the accelerator's AXI4 masters and one
merging the two links' control masters in front of the accelerator's registers,
everything on MIG's ``ui_clk``. The texts are ``templates/nexys_video/``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from gen import liteeth
from hdl.spec.boards import BOARDS, Board, Pin
from hdl.spec.config import AccelConfig

from .build_script import build_tcl
from .ip import ETH_REF_CLOCK, vlnv
from .render import render

__all__ = ["BOARD", "Port", "PORTS", "EthPort", "eth_ports", "eth_pins", "IDELAYCTRL_REF_HZ", "ETH_XDC",
           "MIG_MODULE", "mig", "mig_prj", "bd_tcl", "xdc", "files"]

BOARD = BOARDS["nexys_video"]


@dataclass(frozen=True)
class Port:
    """A top-level port of the Nexys Video design and the board pin (``Board.pins``) it uses."""

    pin: str                    # key of hdl.spec.boards' pins
    direction: str              # block-design direction: "I" or "O"
    role: str                   # what it carries
    type: str | None = None     # block-design port type: "clk", "rst" or none


# The design's pin roles, declared once: the XDC, the block design's ports and the
# README's LED legend are made from this table.
PORTS = {
    "sys_clk": Port("clk100", "I", "system clock", "clk"),
    "cpu_resetn": Port("cpu_resetn", "I", "reset (MIG's sys_rst)", "rst"),
    "uart_rxd": Port("uart_rx", "I", "link requests from the host"),
    "uart_txd": Port("uart_tx", "O", "link answers to the host"),
    "led_calib": Port("led0", "O", "DDR3 calibrated"),
    "led_link": Port("led1", "O", "link busy"),
    "led_irq": Port("led2", "O", "accelerator interrupt"),
}


@dataclass(frozen=True)
class EthPort:
    """A top-level Ethernet port: named after its board pin (or pin group stem, a vector),
    connected to the ``systole_eth`` pin ``ip_pin`` (a ``liteeth_core`` RGMII port)."""

    ip_pin: str
    direction: str              # "I", "O" or "IO"
    width: int
    type: str | None = None     # "rst" for the PHY's reset


_BD_DIRECTIONS = {"input": "I", "output": "O", "inout": "IO"}


def eth_ports(board: Board) -> dict[str, EthPort]:
    """``{top-level port: EthPort}`` of ``board``'s Ethernet: every RGMII port of the core
    on its board pin(s) (``gen.liteeth.RGMII_PINS``); ``ValueError`` names a width that is
    not the board's number of pins."""
    ports = {}
    for core_port, stem in liteeth.RGMII_PINS.items():
        direction, width = liteeth.RGMII_PORTS[core_port]
        pins = eth_pins(board, stem)
        if len(pins) != width:
            raise ValueError(f"{board.name}: the core's {core_port} is {width} bits, the board has "
                             f"{len(pins)} {stem} pins")
        ports[stem] = EthPort(core_port, _BD_DIRECTIONS[direction], width,
                              "rst" if stem == board.ethernet.reset_pin else None)
    return ports


def eth_pins(board: Board, stem: str) -> list[tuple[str, Pin]]:
    """``[(XDC port name, Pin)]`` of a port: ``stem`` itself, or ``stem[0]``.. of a pin group."""
    if stem in board.pins:
        return [(stem, board.pins[stem])]
    return [(f"{stem}[{i}]", pin) for i, pin in enumerate(board.pin_group(stem))]


# IDELAYCTRL's reference (UG471, IDELAYCTRL: REFCLK 200 MHz on a -1 part; LiteEth's S7 RGMII
# PHY also counts its IDELAY taps at 200 MHz). MIG's extra UI clock makes it.
IDELAYCTRL_REF_HZ = 200e6
# LiteEth's constraints for its core, as gen.liteeth writes them (in the IP's hdl/).
ETH_XDC = f"ip/hdl/{liteeth.MODULE}.xdc"
# MIG's address segment in the block design (named by the MIG IP, not the board).
MIG_SEGMENT = "memmap/memaddr"
# The MIG's module name in the block design (<design>_<cell>_0), as mig.prj names it.
MIG_MODULE = "systole_bd_mig_7series_0_0"


def mig(board: Board):
    """``board.mig``, checked against the design: its sys_clk_i is the oscillator's rate,
    its ui_clk the registry's ``ui_clk``; ``ValueError`` names the mismatch."""
    if board.mig is None:
        raise ValueError(f"{board.name}: the registry has no MIG facts (Board.mig)")
    osc_hz = board.clocks_hz[_clock_port(PORTS).pin]
    if board.mig.input_clk_mhz * 1e6 != osc_hz:
        raise ValueError(f"{board.name}: MIG's sys_clk_i wants {board.mig.input_clk_mhz:g} MHz, the oscillator "
                         f"is {osc_hz / 1e6:g} MHz (the design feeds it straight in)")
    if board.mig.ui_clk_hz != board.clocks_hz["ui_clk"]:
        raise ValueError(f"{board.name}: MIG's ui_clk is {board.mig.ui_clk_hz / 1e6:g} MHz, the registry's "
                         f"ui_clk {board.clocks_hz['ui_clk'] / 1e6:g} MHz")
    if board.mig.extra_clk_hz != IDELAYCTRL_REF_HZ:
        raise ValueError(f"{board.name}: MIG's ui_addn_clk_0 is {board.mig.extra_clk_hz / 1e6:g} MHz; it clocks "
                         f"MIG's clk_ref_i and the Ethernet IDELAYCTRL, which want {IDELAYCTRL_REF_HZ / 1e6:g} MHz")
    return board.mig


def mig_prj(board: Board = BOARD) -> str:
    """``mig.prj``: the MIG of ``board.mig`` (Digilent's 1.2 clocking), our AXI width."""
    return render("nexys_video/mig.prj.j2", mig=mig(board), module_name=MIG_MODULE,
                  target_fpga=f"{board.fpga.device}-{board.fpga.package}/-{board.fpga.speed}")


def _clock_port(ports: dict[str, Port]) -> Port:
    return next(port for port in ports.values() if port.type == "clk")


def _ddr_window(board: Board):
    if len(board.dram_windows) != 1:
        raise ValueError(f"{board.name}: the design maps one DDR3 window, the registry has "
                         f"{len(board.dram_windows)}")
    return board.dram_window


def bd_tcl(config: AccelConfig, board: Board = BOARD) -> str:
    """The block design: MIG + SmartConnect + link bridge + accelerator, all on ``ui_clk``.

    Both AXI4 masters see the board's DDR3 window at the same address; the bridge's
    control master reaches the registers at ``board.ctrl_window``. Refuses a
    ``clock_mhz`` other than ``ui_clk``'s (the accelerator has no clock of its own), and
    an ``axi_clock_mhz`` (the masters have none either).
    """
    ui_clk_mhz = board.clocks_hz["ui_clk"] / 1e6
    if config.clock_mhz != ui_clk_mhz:
        raise ValueError(f"clock_mhz={config.clock_mhz}: the Nexys Video design runs on MIG's "
                         f"{ui_clk_mhz:g} MHz ui_clk (DDR3-800, 4:1); use clock_mhz={ui_clk_mhz:g}")
    if config.split_clocks:
        raise ValueError(f"axi_clock_mhz={config.axi_clock_mhz}: the Nexys Video design clocks the "
                         "masters from MIG's ui_clk too, so it has no m_axi_aclk; use --one-clock")
    if liteeth.CLOCK != "ui_clk":
        raise ValueError(f"gen.liteeth.CLOCK={liteeth.CLOCK!r}: the block design clocks the core from ui_clk")
    return render("nexys_video/bd.tcl.j2", config=config, board=board, ports=PORTS,
                  eth_ports=eth_ports(board), eth_ref_clock=ETH_REF_CLOCK, mig=mig(board),
                  accel_vlnv=vlnv("systole"), link_vlnv=vlnv("systole_link"), eth_vlnv=vlnv("systole_eth"),
                  ctrl=board.ctrl_window, ddr=_ddr_window(board), mig_segment=MIG_SEGMENT)


def xdc(board: Board = BOARD) -> str:
    """``nexys_video.xdc``: each port of ``PORTS`` on its registry pin, the clock, the
    configuration voltage; inputs other than the clock and all outputs are false paths."""
    eth = eth_ports(board)
    by_core = {p.ip_pin: name for name, p in eth.items()}
    rx_clock = by_core["rgmii_clocks_rx"]
    # Slow, asynchronous Ethernet pins: the reset pulse (milliseconds), MDC/MDIO (the core
    # leaves them idle), the interrupt (unused by the core).
    slow = [by_core[p] for p in ("rgmii_rst_n", "rgmii_mdc", "rgmii_mdio", "rgmii_int_n")]
    return render("nexys_video/nexys_video.xdc.j2", board=board, ports=PORTS,
                  async_inputs=[n for n, p in PORTS.items() if p.direction == "I" and p.type != "clk"],
                  outputs=[n for n, p in PORTS.items() if p.direction == "O"],
                  eth=board.ethernet, eth_pins=[pin for name in eth for pin in eth_pins(board, name)],
                  eth_rx_clock=rx_clock,
                  eth_slow_inputs=[n for n in slow if eth[n].direction != "O"],
                  eth_slow_outputs=[n for n in slow if eth[n].direction != "I"])


def _led_roles(board: Board) -> str:
    """``LD0 = DDR3 calibrated, ...``: the LEDs' silkscreen names and what they show."""
    leds = set(board.pin_group("led"))
    return ", ".join(f"{board.pins[port.pin].doc} = {port.role}" for port in PORTS.values()
                     if board.pins[port.pin] in leds)


def _pc_address(board: Board) -> dict[str, str]:
    """A static address for the PC in the board's /24 (the board's own excepted), for the README."""
    network = ipaddress.ip_network(f"{board.ethernet.ip_address}/24", strict=False)
    pc = next(str(a) for a in (network[100], network[101]) if str(a) != board.ethernet.ip_address)
    return {"pc_address": pc, "prefix_len": str(network.prefixlen)}


def files(config: AccelConfig, baud: int, board: Board = BOARD) -> dict[str, str]:
    """``{name: text}`` of the Nexys Video flow besides the IPs; the README states ``baud``."""
    return {
        "bd.tcl": bd_tcl(config, board),
        "mig.prj": mig_prj(board),
        "nexys_video.xdc": xdc(board),
        "build.tcl": build_tcl(board, config, ips=["systole", "systole_link", "systole_eth"], xdc="nexys_video.xdc",
                               scoped_xdc={ETH_XDC: liteeth.MODULE}),
        "program.tcl": render("nexys_video/program.tcl.j2", board=board),
        "README.md": render("nexys_video/README.md.j2", config=config, board=board, baud=baud,
                            led_roles=_led_roles(board), eth=board.ethernet, **_pc_address(board)),
    }
