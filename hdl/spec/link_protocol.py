"""The serial link protocol between the host and ``UartBridge``, described once.

Stop-and-wait frames over a byte stream (the Nexys Video's USB-UART, 8N1). The host
sends one request and waits for its response before sending the next. Every frame
ends with a CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no
reflection: ``binascii.crc_hqx(data, 0xFFFF)``) of every byte after the sync byte.
All multi-byte fields are little-endian.

Request (host -> bridge)::

    0xA5 | cmd u8 | seq u8 | addr u64 | length u16 | payload (write commands only) | crc u16

Response (bridge -> host)::

    0x5A | cmd u8 | seq u8 | status u8 | length u16 | payload | crc u16

``cmd`` and ``seq`` are echoed so the host can drop stale responses. A request is
executed only after its CRC checked out, so a corrupted request has no side effect
and is answered with ``Status.CRC``. A request that stops arriving for longer than
the bridge's frame timeout is answered with ``Status.TRUNCATED``; either way the
bridge then hunts for the next 0xA5. Nothing a host sends can hang the bridge.

Memory commands move ``length`` bytes (1..``max_payload``) at any byte address, as
one AXI4 INCR burst with byte strobes. The range must not cross a
``max_payload``-aligned window: ``max_payload`` is a power of two no larger than
4096 bytes and 256 beats, so such a burst never crosses 4 KiB and never exceeds the
AXI4 burst limit. The host splits larger transfers at those windows.

This module imports only the standard library: the host runtime uses it on a PC
without Amaranth.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass

__all__ = ["REQUEST_SYNC", "RESPONSE_SYNC", "MAGIC", "PROTOCOL_VERSION", "Command", "Status",
           "REQUEST_HEADER", "RESPONSE_HEADER", "HELLO_FORMAT", "crc16", "encode_request",
           "encode_response", "HelloInfo", "window_ok"]

REQUEST_SYNC = 0xA5
RESPONSE_SYNC = 0x5A
MAGIC = b"SYLK"                 # HELLO payload starts with this: it is a Systole link bridge
PROTOCOL_VERSION = (1, 0)

REQUEST_HEADER = struct.Struct("<BBQH")     # cmd, seq, addr, length (after the sync byte)
RESPONSE_HEADER = struct.Struct("<BBBH")    # cmd, seq, status, length (after the sync byte)
# HELLO payload: magic, version major, minor, max_payload, bus_bytes, addr_width,
# ctrl_addr_width, irq level.
HELLO_FORMAT = struct.Struct("<4sBBHBBBB")


class Command(enum.IntEnum):
    """Request commands. Only REG_WRITE and MEM_WRITE carry a request payload."""

    HELLO = 0x01      # identity and limits; payload HELLO_FORMAT
    REG_READ = 0x02   # AXI4-Lite read of the 32-bit register at byte offset addr; length 4
    REG_WRITE = 0x03  # AXI4-Lite write; length 4, payload the value (all strobes set)
    MEM_READ = 0x04   # AXI4 burst read of length bytes at addr
    MEM_WRITE = 0x05  # AXI4 burst write of the payload at addr
    IRQ = 0x06        # payload 1 byte: bit 0 = the accelerator's irq line now

    @property
    def has_payload(self) -> bool:
        return self in (Command.REG_WRITE, Command.MEM_WRITE)


class Status(enum.IntEnum):
    """Response status. Codes below AXI_SLVERR mean the request was not executed."""

    def __new__(cls, value: int, doc: str):
        member = int.__new__(cls, value)
        member._value_ = value
        member.doc = doc
        return member

    OK = 0x00, "executed"
    CRC = 0x01, "request CRC mismatch; not executed"
    TRUNCATED = 0x02, "request stopped arriving before its end (frame timeout); not executed"
    BAD_COMMAND = 0x03, "unknown command; not executed"
    BAD_LENGTH = 0x04, "length is 0, above max_payload, or not 4 for a register; not executed"
    BAD_ADDRESS = 0x05, ("memory range crosses a max_payload window, or register offset "
                         "unaligned/out of range; not executed")
    AXI_SLVERR = 0x06, "the AXI slave answered SLVERR (a memory read returns no payload)"
    AXI_DECERR = 0x07, "the AXI interconnect answered DECERR (a memory read returns no payload)"


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (check value of b"123456789": 0x29B1)."""
    return binascii.crc_hqx(data, crc)


def encode_request(cmd: int, seq: int, addr: int, length: int, payload: bytes = b"") -> bytes:
    """One request frame, sync byte to CRC."""
    body = REQUEST_HEADER.pack(cmd & 0xFF, seq & 0xFF, addr, length) + payload
    return bytes([REQUEST_SYNC]) + body + crc16(body).to_bytes(2, "little")


def encode_response(cmd: int, seq: int, status: int, payload: bytes = b"") -> bytes:
    """One response frame, sync byte to CRC (what the bridge sends)."""
    body = RESPONSE_HEADER.pack(cmd & 0xFF, seq & 0xFF, status, len(payload)) + payload
    return bytes([RESPONSE_SYNC]) + body + crc16(body).to_bytes(2, "little")


@dataclass(frozen=True)
class HelloInfo:
    """What a bridge says about itself in its HELLO response."""

    version: tuple[int, int]
    max_payload: int
    bus_bytes: int
    addr_width: int
    ctrl_addr_width: int
    irq: bool

    @classmethod
    def parse(cls, payload: bytes) -> "HelloInfo":
        magic, major, minor, max_payload, bus_bytes, addr_width, ctrl_aw, irq = HELLO_FORMAT.unpack(payload)
        if magic != MAGIC:
            raise ValueError(f"HELLO magic is {magic!r}, expected {MAGIC!r}")
        return cls((major, minor), max_payload, bus_bytes, addr_width, ctrl_aw, bool(irq & 1))


def window_ok(addr: int, length: int, max_payload: int) -> bool:
    """True when ``length`` bytes at ``addr`` fit one ``max_payload``-aligned window."""
    return 1 <= length <= max_payload and addr // max_payload == (addr + length - 1) // max_payload
