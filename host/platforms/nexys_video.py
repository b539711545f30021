"""The Nexys Video platform: the accelerator behind the ``systole_link`` bridge, over USB-UART.

The board has no CPU; the host drives the accelerator through its link
(``host.platforms.link``). The serial rate and the DDR3 window the bridge and the
DMA share come from the board registry (``hdl.spec.boards``).

``python -m host.platforms.nexys_video [--port P] [--baud B] [--timeout S]`` asks the
bridge for its limits and the accelerator for its identity: is the board there, and
what is on it? It prints one line and exits with status 2 when it is not (a missing
port, a bad option, a silent or foreign device), as every Systole command does.
"""

from __future__ import annotations

import argparse
import os

from hdl.spec.boards import BOARDS
from hdl.spec.config import AccelConfig
from hdl.spec.regmap import ID_MAGIC, REGISTERS, by_name

from ..accel.driver import Driver
from ..accel.hardware import DriverBackend
from ..cli import ArgumentParser, entry, int_in, positive_float
from .link import LinkMemory, LinkOpenError, LinkRegisterBus, LinkWrongDevice, SerialLink

__all__ = ["BOARD", "DEFAULT_PORT", "open_link", "backend", "main"]

BOARD = BOARDS["nexys_video"]
DEFAULT_PORT = "/dev/ttyUSB0"      # the FT232R of the UART micro-USB port, on Linux


def open_link(port: str | None = None, baud: int | None = None,
              **kwargs) -> tuple[LinkRegisterBus, LinkMemory]:
    """The (bus, memory) pair for a Nexys Video at ``port``; checks the bridge answers.

    ``port`` and ``baud`` default to ``$SYSTOLE_LINK_PORT`` and ``$SYSTOLE_LINK_BAUD``,
    then ``DEFAULT_PORT`` and the board's rate. A given baud is used as it is: one that
    is not a positive integer is a ``LinkOpenError``, never replaced by the default.
    The memory is the board's DDR3 window.
    """
    if port is None:
        port = os.environ.get("SYSTOLE_LINK_PORT") or DEFAULT_PORT
    if baud is None:
        baud = _environment_baud(port)
    link = SerialLink.open(port, baud, **kwargs)
    try:
        link.hello()
    except BaseException:
        link.close()
        raise
    window = BOARD.dram_window
    return LinkRegisterBus(link), LinkMemory(link, window.base, window.size)


def _environment_baud(port: str) -> int:
    text = os.environ.get("SYSTOLE_LINK_BAUD", "").strip()
    if not text:
        return BOARD.uart_baud
    try:
        baud = int(text, 10)
    except ValueError:
        baud = 0
    if baud <= 0:
        raise LinkOpenError(port, f"$SYSTOLE_LINK_BAUD={text!r} is not a positive integer")
    return baud


def backend(config: AccelConfig) -> DriverBackend:
    """The ``link`` backend: a Nexys Video over its serial link (``SYSTOLE_LINK_PORT``,
    ``SYSTOLE_LINK_BAUD``)."""
    bus, memory = open_link()
    return DriverBackend(config, Driver(bus, memory, config), "link", platform=bus.link)


def _port(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the port must not be empty")
    return text


@entry
def main(argv: list[str] | None = None) -> int:
    """The CLI (see the module docstring)."""
    parser = ArgumentParser(prog="python -m host.platforms.nexys_video",
                            description="Is the Nexys Video there, and what is on it?")
    parser.add_argument("--port", type=_port, help=f"serial port or pyserial URL (default "
                                                   f"$SYSTOLE_LINK_PORT or {DEFAULT_PORT})")
    parser.add_argument("--baud", type=int_in(1), help=f"baud rate (default $SYSTOLE_LINK_BAUD or "
                                                       f"{BOARD.uart_baud})")
    parser.add_argument("--timeout", type=positive_float, default=1.0, metavar="S",
                        help="seconds to wait for each answer (default: %(default)s)")
    args = parser.parse_args(argv)
    bus, memory = open_link(args.port, args.baud, timeout_s=args.timeout)
    with bus.link:
        info = bus.link.info
        print(f"bridge: protocol v{info.version[0]}.{info.version[1]}, {info.bus_bytes}-byte AXI, "
              f"{info.addr_width}-bit addresses, frames of up to {info.max_payload} bytes, "
              f"irq={int(info.irq)}, last write seq {info.last_seq}")
        for reg in REGISTERS:
            if reg.kind == "const":
                print(f"  {reg.name:<14} 0x{bus.read32(reg.offset):08X}")
        ident = bus.read32(by_name("ID").offset)
        if ident != ID_MAGIC:
            raise LinkWrongDevice(f"{bus.link.name}: ID reads 0x{ident:08X}, expected 0x{ID_MAGIC:08X}: "
                                  "the bridge answers, but no Systole accelerator is behind it")
        print(f"DDR window: 0x{memory.device_address:08X} + {memory.size >> 20} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
