"""The Nexys Video flow: block design, constraints, build and program scripts, README.

Board facts (part, board part, pin sites and I/O standards, the oscillator, MIG's
``ui_clk``, the configuration voltage, the DDR3 window, the bridge's control window,
the UART rate) come from ``hdl.spec.boards.BOARDS["nexys_video"]``. What this module
decides is the design: its top-level ports and the board pin each one sits on
(``PORTS``), DDR3 through MIG with a SmartConnect merging the bridge's and the
accelerator's AXI4 masters, everything on MIG's ``ui_clk``. The texts are
``templates/nexys_video/``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hdl.spec.boards import BOARDS, Board
from hdl.spec.config import AccelConfig

from .build_script import build_tcl
from .ip import vlnv
from .render import render

__all__ = ["BOARD", "Port", "PORTS", "bd_tcl", "xdc", "files"]

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
# MIG's system clock as the block design makes it (clk_wiz from the oscillator); the
# design takes the board preset's MIG to want 200 MHz on sys_clk_i.
MIG_SYS_CLK_HZ = 200e6
# MIG's address segment in the block design (named by the MIG IP, not the board).
MIG_SEGMENT = "memmap/memaddr"


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
    ``clock_mhz`` other than ``ui_clk``'s (the accelerator has no clock of its own).
    """
    ui_clk_mhz = board.clocks_hz["ui_clk"] / 1e6
    if config.clock_mhz != ui_clk_mhz:
        raise ValueError(f"clock_mhz={config.clock_mhz}: the Nexys Video design runs on MIG's "
                         f"{ui_clk_mhz:g} MHz ui_clk (DDR3-800, 4:1); use clock_mhz={ui_clk_mhz:g}")
    return render("nexys_video/bd.tcl.j2", config=config, board=board, ports=PORTS,
                  sys_clk_hz=board.clocks_hz[_clock_port(PORTS).pin], mig_sys_clk_hz=MIG_SYS_CLK_HZ,
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
        "nexys_video.xdc": xdc(board),
        "build.tcl": build_tcl(board, config, ips=["systole", "systole_link"], xdc="nexys_video.xdc"),
        "program.tcl": render("nexys_video/program.tcl.j2", board=board),
        "README.md": render("nexys_video/README.md.j2", config=config, board=board, baud=baud,
                            led_roles=_led_roles(board)),
    }
