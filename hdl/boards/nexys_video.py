"""Digilent Nexys Video (XC7A200T-1SBG484C): the pins Systole's designs use.

100 MHz oscillator, the CPU_RESETN button, the 8 user LEDs, the USB-UART (FT232R),
the 5 push buttons and the 8 switches (banks at VADJ = 1.2 V, the board's default).
The DDR3 pins are MIG's business: its generated constraints place them.

``python -m hdl.boards.nexys_video [--build]`` writes (or, with Vivado on PATH, also
builds) a serial echo bring-up design: every byte received on the USB-UART is sent
back and shown on the LEDs, which checks cable, port and baud rate before the
accelerator bitstream is involved.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from amaranth.build import Attrs, Clock, Pins, PinsN, Resource
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.vendor import XilinxPlatform
from amaranth_boards.resources import ButtonResources, LEDResources, SwitchResources, UARTResource

__all__ = ["NexysVideoPlatform", "SerialEcho", "main"]


class NexysVideoPlatform(XilinxPlatform):
    """The Nexys Video as an Amaranth platform (part xc7a200tsbg484-1)."""

    device = "xc7a200t"
    package = "sbg484"
    speed = "1"
    default_clk = "clk100"
    default_rst = "rst"
    resources = [
        Resource("clk100", 0, Pins("R4", dir="i"), Clock(100e6), Attrs(IOSTANDARD="LVCMOS33")),
        # CPU_RESETN: low while pressed.
        Resource("rst", 0, PinsN("G4", dir="i"), Attrs(IOSTANDARD="LVCMOS15")),
        *LEDResources(pins="T14 T15 T16 U16 V15 W16 W15 Y13", attrs=Attrs(IOSTANDARD="LVCMOS25")),
        # FPGA side of the FT232R: rx is the chip's TXD (uart_tx_in), tx its RXD (uart_rx_out).
        UARTResource(0, rx="V18", tx="AA19", attrs=Attrs(IOSTANDARD="LVCMOS33")),
        # center, down, left, right, up
        *ButtonResources(pins="B22 D22 C22 D14 F15", attrs=Attrs(IOSTANDARD="LVCMOS12")),
        *SwitchResources(pins="E22 F21 G21 G22 H17 J16 K13 M17", attrs=Attrs(IOSTANDARD="LVCMOS12")),
    ]
    connectors = []

    def toolchain_prepare(self, fragment, name, **kwargs):
        overrides = {
            "script_before_bitstream": "set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]",
            "add_constraints": "set_property CFGBVS VCCO [current_design]\n"
                               "set_property CONFIG_VOLTAGE 3.3 [current_design]",
        }
        return super().toolchain_prepare(fragment, name, **overrides, **kwargs)


class SerialEcho(Elaboratable):
    """Echoes every byte of the USB-UART and shows the last one on the LEDs.

    Latency: a byte goes out about one bit time after its stop bit was sampled.
    """

    def __init__(self, baud: int = 921_600, clock_hz: float = 100e6):
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
    parser.add_argument("--baud", type=int, default=921_600)
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
