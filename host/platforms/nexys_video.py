"""The Nexys Video platform: the accelerator behind the ``systole_link`` bridge, over USB-UART.

The board has no CPU; the host drives the accelerator through its link
(``host.platforms.link``). The serial rate and the DDR3 window the bridge and the
DMA share come from the board registry (``hdl.spec.boards``).

``python -m host.platforms.nexys_video [--port P] [--baud B]`` asks the bridge for its
limits and the accelerator for its identity: is the board there, and what is on it?
"""

from __future__ import annotations

import argparse
import os
import sys

from hdl.spec.boards import BOARDS
from hdl.spec.config import AccelConfig
from hdl.spec.regmap import ID_MAGIC, REGISTERS, by_name

from ..accel.driver import Driver
from ..accel.hardware import DriverBackend
from .link import LinkError, LinkMemory, LinkRegisterBus, SerialLink

__all__ = ["BOARD", "DEFAULT_PORT", "open_link", "backend", "main"]

BOARD = BOARDS["nexys_video"]
DEFAULT_PORT = "/dev/ttyUSB0"      # the FT232R of the UART micro-USB port, on Linux


def open_link(port: str | None = None, baud: int | None = None,
              **kwargs) -> tuple[LinkRegisterBus, LinkMemory]:
    """The (bus, memory) pair for a Nexys Video at ``port``; checks the bridge answers.

    ``port`` and ``baud`` default to ``$SYSTOLE_LINK_PORT`` and ``$SYSTOLE_LINK_BAUD``,
    then ``DEFAULT_PORT`` and the board's rate. The memory is the board's DDR3 window.
    """
    port = port or os.environ.get("SYSTOLE_LINK_PORT", DEFAULT_PORT)
    baud = baud or int(os.environ.get("SYSTOLE_LINK_BAUD", BOARD.uart_baud))
    link = SerialLink.open(port, baud, **kwargs)
    link.hello()
    window = BOARD.dram_window
    return LinkRegisterBus(link), LinkMemory(link, window.base, window.size)


def backend(config: AccelConfig) -> DriverBackend:
    """The ``link`` backend: a Nexys Video over its serial link (``SYSTOLE_LINK_PORT``,
    ``SYSTOLE_LINK_BAUD``)."""
    bus, memory = open_link()
    return DriverBackend(config, Driver(bus, memory, config), "link", platform=bus.link)


def main(argv: list[str] | None = None) -> int:
    """The CLI (see the module docstring); 1 when the board does not answer as it should."""
    parser = argparse.ArgumentParser(prog="python -m host.platforms.nexys_video",
                                     description="Is the Nexys Video there, and what is on it?")
    parser.add_argument("--port", help=f"serial port or pyserial URL (default $SYSTOLE_LINK_PORT "
                                       f"or {DEFAULT_PORT})")
    parser.add_argument("--baud", type=int, help=f"baud rate (default $SYSTOLE_LINK_BAUD or "
                                                 f"{BOARD.uart_baud})")
    args = parser.parse_args(argv)
    try:
        bus, memory = open_link(args.port, args.baud)
    except LinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    info = bus.link.info
    print(f"bridge: protocol v{info.version[0]}.{info.version[1]}, {info.bus_bytes}-byte AXI, "
          f"{info.addr_width}-bit addresses, frames of up to {info.max_payload} bytes, irq={int(info.irq)}")
    for reg in REGISTERS:
        if reg.kind == "const":
            print(f"  {reg.name:<14} 0x{bus.read32(reg.offset):08X}")
    ident = bus.read32(by_name("ID").offset)
    if ident != ID_MAGIC:
        print(f"error: ID reads 0x{ident:08X}, not a Systole accelerator behind the bridge", file=sys.stderr)
        return 1
    print(f"DDR window: 0x{memory.device_address:08X} + {memory.size >> 20} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
