"""The Nexys Video platform: the accelerator behind its link bridge, over USB-UART or Ethernet.

The board has no CPU; the host drives the accelerator through its link: the address
says which. An IPv4 address (``192.168.1.50``, ``192.168.1.50:21337``) or a
``udp://host[:port]`` URL (``udp://`` alone: the board's defaults) is the Gigabit
Ethernet bridge (``host.platforms.udp``); anything else is a serial port or pyserial
URL (``/dev/ttyUSB0``, ``COM3``, ``socket://``, ``loop://``, ``rfc2217://``) for the
USB-UART bridge (``host.platforms.link``). The serial rate, the Ethernet defaults (IP
address, UDP port) and the DDR3 window the bridge and the DMA share come from the
board registry (``hdl.spec.boards``).

``python -m host.platforms.nexys_video [--address A] [--baud B] [--timeout S]`` asks the
bridge for its limits and the accelerator for its identity: is the board there, and
what is on it? It prints one line and exits with status 2 when it is not (a missing
port, a bad address or option, a silent or foreign device), as every Systole command
does. ``--port`` is another name for ``--address``.
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
from .udp import UdpLink, is_udp_address

__all__ = ["BOARD", "DEFAULT_PORT", "open_link", "backend", "main"]

BOARD = BOARDS["nexys_video"]
DEFAULT_PORT = "/dev/ttyUSB0"      # the FT232R of the UART micro-USB port, on Linux


def open_link(port: str | None = None, baud: int | None = None,
              **kwargs) -> tuple[LinkRegisterBus, LinkMemory]:
    """The (bus, memory) pair for a Nexys Video at ``port``; checks the bridge answers.

    ``port`` is the link's address (see the module docstring): UDP for an IPv4 address
    or ``udp://`` URL, else serial. It defaults to ``$SYSTOLE_LINK``, then
    ``$SYSTOLE_LINK_PORT``, then ``DEFAULT_PORT``. A serial link's ``baud`` defaults to
    ``$SYSTOLE_LINK_BAUD``, then the board's rate; a given baud is used as it is: one that
    is not a positive integer is a ``LinkOpenError``, never replaced by the default (and
    one given for a UDP address is refused). ``kwargs`` go to the link (``timeout_s``,
    ``retries``). The memory is the board's DDR3 window.
    """
    if port is None:
        port = os.environ.get("SYSTOLE_LINK") or os.environ.get("SYSTOLE_LINK_PORT") or DEFAULT_PORT
    if is_udp_address(port):
        if baud is not None:
            raise LinkOpenError(port, "a baud rate is for a serial port, not a UDP address")
        link = UdpLink.open(port, BOARD.ethernet.ip_address, BOARD.ethernet.udp_port, **kwargs)
    else:
        link = SerialLink.open(port, _environment_baud(port) if baud is None else baud, **kwargs)
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
    """The ``link`` backend: a Nexys Video over its link, UART or UDP by the address
    (``SYSTOLE_LINK`` or ``SYSTOLE_LINK_PORT``; ``SYSTOLE_LINK_BAUD`` for a serial port)."""
    bus, memory = open_link()
    return DriverBackend(config, Driver(bus, memory, config), "link", platform=bus.link)


def _port(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the port must not be empty")
    return text


def _address(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the address must not be empty")
    return text


@entry
def main(argv: list[str] | None = None) -> int:
    """The CLI (see the module docstring)."""
    parser = ArgumentParser(prog="python -m host.platforms.nexys_video",
                            description="Is the Nexys Video there, and what is on it?")
    parser.add_argument("--port", dest="address", type=_port, help="the same as --address")
    parser.add_argument("--address", dest="address", type=_address,
                        help=f"IPv4 address or udp://host[:port] (Ethernet, default "
                             f"{BOARD.ethernet.ip_address}:{BOARD.ethernet.udp_port}), or a serial port "
                             f"or pyserial URL (default $SYSTOLE_LINK, $SYSTOLE_LINK_PORT or {DEFAULT_PORT})")
    parser.add_argument("--baud", type=int_in(1), help=f"serial baud rate (default $SYSTOLE_LINK_BAUD or "
                                                       f"{BOARD.uart_baud})")
    parser.add_argument("--timeout", type=positive_float, metavar="S",
                        help="seconds to wait for each answer (default: 1 over serial, 0.1 over UDP, "
                             "which resends 9 times)")
    args = parser.parse_args(argv)
    options = {} if args.timeout is None else {"timeout_s": args.timeout}
    bus, memory = open_link(args.address, args.baud, **options)
    with bus.link:
        info = bus.link.info
        print(f"bridge: protocol v{info.version[0]}.{info.version[1]}, {info.bus_bytes}-byte AXI, "
              f"{info.addr_width}-bit addresses, frames of up to {info.max_payload} bytes, "
              f"irq={int(info.irq)}, last write seq {info.last_seq}, over {bus.link.name}")
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
