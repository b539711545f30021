"""The Nexys Video flow: block design, constraints, build and program scripts, README.

Board facts (part, board part, pin sites and I/O standards, the oscillator, MIG's
``ui_clk``, the configuration voltage, the DDR3 window, the bridge's control window,
the UART rate) come from ``hdl.spec.boards.BOARDS["nexys_video"]``. What this module
decides is the design: its top-level ports and the board pin each one sits on
(``PORTS``), DDR3 through MIG (our own ``mig.prj`` from the registry's MIG facts) with
a SmartConnect merging the bridge's and the accelerator's AXI4 masters, everything on MIG's ``ui_clk``. The texts are
``templates/nexys_video/``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hdl.spec.boards import BOARDS, Board
from hdl.spec.config import AccelConfig

from .build_script import build_tcl
from .ip import vlnv
from .render import render

__all__ = ["BOARD", "Port", "PORTS", "MIG_MODULE", "mig", "mig_prj", "bd_tcl", "xdc", "files"]

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
    return render("nexys_video/bd.tcl.j2", config=config, board=board, ports=PORTS,
                  mig=mig(board),
                  accel_vlnv=vlnv("systole"), link_vlnv=vlnv("systole_link"),
                  ctrl=board.ctrl_window, ddr=_ddr_window(board), mig_segment=MIG_SEGMENT)


def xdc(board: Board = BOARD) -> str:
    """``nexys_video.xdc``: each port of ``PORTS`` on its registry pin, the clock, the
    configuration voltage; inputs other than the clock and all outputs are false paths."""
    return render("nexys_video/nexys_video.xdc.j2", board=board, ports=PORTS,
                  async_inputs=[n for n, p in PORTS.items() if p.direction == "I" and p.type != "clk"],
                  outputs=[n for n, p in PORTS.items() if p.direction == "O"])


def _led_roles(board: Board) -> str:
    """``LD0 = DDR3 calibrated, ...``: the LEDs' silkscreen names and what they show."""
    leds = set(board.pin_group("led"))
    return ", ".join(f"{board.pins[port.pin].doc} = {port.role}" for port in PORTS.values()
                     if board.pins[port.pin] in leds)


def files(config: AccelConfig, baud: int, board: Board = BOARD) -> dict[str, str]:
    """``{name: text}`` of the Nexys Video flow besides the IPs; the README states ``baud``."""
    return {
        "bd.tcl": bd_tcl(config, board),
        "mig.prj": mig_prj(board),
        "nexys_video.xdc": xdc(board),
        "build.tcl": build_tcl(board, config, ips=["systole", "systole_link"], xdc="nexys_video.xdc"),
        "program.tcl": render("nexys_video/program.tcl.j2", board=board),
        "README.md": render("nexys_video/README.md.j2", config=config, board=board, baud=baud,
                            led_roles=_led_roles(board)),
    }
