"""Digilent Nexys Video (XC7A200T-1SBG484C): the pins Systole's designs use.

100 MHz oscillator, the CPU_RESETN button, the 8 user LEDs, the USB-UART (FT232R),
the 5 push buttons and the 8 switches (banks at VADJ = 1.2 V, the board's default).
The DDR3 pins are MIG's business: its generated constraints place them. Part, pins,
I/O standards, clock and baud rate come from ``hdl.spec.boards.BOARDS["nexys_video"]``.

``python -m hdl.boards.nexys_video [--build]`` writes (or, with Vivado on PATH, also
builds) a serial echo bring-up design: every byte received on the USB-UART is sent
back and shown on the LEDs, which checks cable, port and baud rate before the
accelerator bitstream is involved.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from amaranth.build import Clock, Resource
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.vendor import XilinxPlatform

from hdl.spec.boards import BOARDS

from .pins import group_resources, pin_resource, pin_subsignal

__all__ = ["NexysVideoPlatform", "SerialEcho", "main"]

BOARD = BOARDS["nexys_video"]


class NexysVideoPlatform(XilinxPlatform):
    """The Nexys Video as an Amaranth platform; part, pins and clock from ``hdl.spec.boards``."""

    device = BOARD.fpga.device
    package = BOARD.fpga.package
    speed = BOARD.fpga.speed
    default_clk = "clk100"
    default_rst = "rst"
    resources = [
        pin_resource("clk100", 0, BOARD.pins["clk100"], "i", Clock(BOARD.clocks_hz["clk100"])),
        pin_resource("rst", 0, BOARD.pins["cpu_resetn"], "i"),
        *group_resources(BOARD, "led", "led", "o"),
        Resource("uart", 0, pin_subsignal("rx", BOARD.pins["uart_rx"], "i"),
                 pin_subsignal("tx", BOARD.pins["uart_tx"], "o")),
        *group_resources(BOARD, "button", "button", "i"),      # center, down, left, right, up
        *group_resources(BOARD, "switch", "switch", "i"),
    ]
    connectors = []

    def toolchain_prepare(self, fragment, name, **kwargs):
        overrides = {
            "script_before_bitstream": "set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]",
            "add_constraints": f"set_property CFGBVS {BOARD.cfgbvs} [current_design]\n"
                               f"set_property CONFIG_VOLTAGE {BOARD.config_voltage} [current_design]",
        }
        return super().toolchain_prepare(fragment, name, **overrides, **kwargs)


class SerialEcho(Elaboratable):
    """Echoes every byte of the USB-UART and shows the last one on the LEDs.

    Latency: a byte goes out about one bit time after its stop bit was sampled.
    """

    def __init__(self, baud: int = BOARD.uart_baud, clock_hz: float = BOARD.clocks_hz["clk100"]):
        from hdl.uart import divisor_for
        self.divisor = divisor_for(clock_hz, baud)

    def elaborate(self, platform):
        from hdl.uart import UartRx, UartTx
        m = Module()
        m.submodules.rx = rx = UartRx(self.divisor)
        m.submodules.tx = tx = UartTx(self.divisor)
        wiring.connect(m, rx.data, tx.data)
        last = Signal(8)
        with m.If(rx.data.valid & rx.data.ready):
            m.d.sync += last.eq(rx.data.payload)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx_pin = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx_pin = io.Buffer("o", uart.tx)
        m.d.comb += [rx.rx.eq(rx_pin.i), tx_pin.o.eq(tx.tx)]
        for index in range(8):
            m.submodules[f"led{index}"] = led = io.Buffer("o", platform.request("led", index, dir="-"))
            m.d.comb += led.o.eq(last[index])
        return m


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hdl.boards.nexys_video", description=__doc__.splitlines()[0])
    parser.add_argument("--baud", type=int, default=BOARD.uart_baud,
                        help=f"USB-UART rate (default: {BOARD.uart_baud}, the host link's)")
    parser.add_argument("--out", type=Path, default=Path("build/boards/nexys_video"))
    parser.add_argument("--build", action="store_true", help="run Vivado (must be on PATH) and program nothing")
    args = parser.parse_args(argv)
    platform = NexysVideoPlatform()
    plan = platform.prepare(SerialEcho(args.baud), name="serial_echo")
    plan.extract(args.out)
    print(f"wrote the serial echo build to {args.out}/ (run build_serial_echo.sh there with Vivado)")
    if args.build:
        plan.execute_local(args.out)
        print(f"bitstream: {args.out}/serial_echo.bit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
