"""Kria KV260 Vision AI Starter Kit (K26 SOM, XCK26-SFVC784-2LV-C): the PL side.

The K26 has no PL oscillator: the PL clock is ``pl_clk0`` from the Zynq UltraScale+ PS,
set by the PS configuration (the FSBL, or the device-tree overlay's clock rate when a
design is loaded under Linux). The carrier gives the PL the fan enable (``fan_en_b``,
active low, A12) and the PMOD header J2 (8 I/Os, 3.3 V). The heartbeat design keeps
the fan on and blinks the first of four LEDs on a PmodLED in J2. Part, pins, I/O
standards, J2 and the clock rate come from ``hdl.spec.boards.BOARDS["kv260"]``.

``default_clk`` is the PS clock: ``create_missing_domain`` instantiates the PS8 block
and a BUFG_PS on PLCLK[0]; its frequency is ``pl_clk0_hz`` (what the loaded PS
configuration provides; 100 MHz with the starter kit's default firmware).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from amaranth.build import Attrs, Connector
from amaranth.hdl import ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import io
from amaranth.vendor import XilinxPlatform
from amaranth_boards.resources import LEDResources

from hdl.spec.boards import BOARDS

from .pins import pin_resource

__all__ = ["KV260Platform", "Heartbeat", "main"]

BOARD = BOARDS["kv260"]
# Slow, weak outputs: the fan enable and LEDs switch rarely (the design's choice).
_QUIET = {"SLEW": "SLOW", "DRIVE": "4"}


class KV260Platform(XilinxPlatform):
    """The KV260 as an Amaranth platform; part, pins, clock and PMOD J2 from ``hdl.spec.boards``."""

    device = BOARD.fpga.device
    package = BOARD.fpga.package
    speed = BOARD.fpga.speed
    default_clk = None          # no PL oscillator: see create_missing_domain
    default_rst = None
    pl_clk0_hz = BOARD.clocks_hz["pl_clk0"]
    resources = [
        pin_resource("fan_en_b", 0, BOARD.pins["fan_en_b"], "o", **_QUIET),
        # A PmodLED (or any LEDs) plugged into J2's top row.
        *LEDResources("pmod_led", pins="1 2 3 4", conn=("pmod", 0),
                      attrs=Attrs(IOSTANDARD=BOARD.connector_iostandards["pmod_j2"], **_QUIET)),
    ]
    connectors = [
        # J2 in Digilent PMOD order (see the registry for the carrier's numbering).
        Connector("pmod", 0, BOARD.connectors["pmod_j2"]),
    ]

    def create_missing_domain(self, name):
        """``sync`` from PS ``pl_clk0`` through BUFG_PS, reset for 16 cycles after start-up."""
        if name != "sync":
            return super().create_missing_domain(name)
        m = Module()
        m.domains.sync = ClockDomain("sync")
        pl_clk = Signal(4)
        pl_clk0 = Signal()
        m.submodules.ps = Instance("PS8", o_PLCLK=pl_clk)
        m.d.comb += pl_clk0.eq(pl_clk[0])
        m.submodules.pl_clk0_buf = Instance("BUFG_PS", i_I=pl_clk0, o_O=ClockSignal("sync"))
        self.add_clock_constraint(pl_clk0, self.pl_clk0_hz)
        # The PS brings the PL clock up only after the PL is configured: count a few
        # cycles of it before releasing the design's reset.
        count = Signal(5, reset_less=True)
        ready = Signal(reset_less=True)
        with m.If(~ready):
            m.d.sync += count.eq(count + 1)
        with m.If(count == 16):
            m.d.sync += ready.eq(1)
        m.d.comb += ResetSignal("sync").eq(~ready)
        return m

    def toolchain_prepare(self, fragment, name, **kwargs):
        overrides = {
            # Kria carrier: thermal shutdown protects the SOM when the fan is off.
            "add_constraints": "set_property BITSTREAM.CONFIG.OVERTEMPSHUTDOWN ENABLE [current_design]",
        }
        return super().toolchain_prepare(fragment, name, **overrides, **kwargs)


class Heartbeat(Elaboratable):
    """Fan on, PMOD LED 0 blinks at about 1 Hz from pl_clk0: proof the PL is alive."""

    def elaborate(self, platform):
        m = Module()
        counter = Signal(27)
        m.d.sync += counter.eq(counter + 1)
        m.submodules.fan = fan = io.Buffer("o", platform.request("fan_en_b", 0, dir="-"))
        m.d.comb += fan.o.eq(1)                        # PinsN: 1 drives the pin low, fan on
        for index in range(4):
            m.submodules[f"led{index}"] = led = io.Buffer("o", platform.request("pmod_led", index, dir="-"))
            m.d.comb += led.o.eq(counter[-1] if index == 0 else Const(0))
        return m


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hdl.boards.kv260", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/boards/kv260"))
    parser.add_argument("--build", action="store_true", help="run Vivado (must be on PATH)")
    args = parser.parse_args(argv)
    plan = KV260Platform().prepare(Heartbeat(), name="heartbeat")
    plan.extract(args.out)
    print(f"wrote the heartbeat build to {args.out}/ (run build_heartbeat.sh there with Vivado)")
    if args.build:
        plan.execute_local(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
