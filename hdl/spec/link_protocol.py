"""The serial link protocol between the host and ``UartBridge``, described once.

Stop-and-wait frames over a byte stream (the Nexys Video's USB-UART, 8N1). The host
sends one request and waits for its response before sending the next. A frame is a
sync byte, a header, a payload, and a CRC-16/CCITT-FALSE (polynomial 0x1021, initial
value 0xFFFF, no reflection: ``binascii.crc_hqx(data, 0xFFFF)``) of every byte after
the sync byte. All multi-byte fields are little-endian.

Request (host -> bridge), header ``REQUEST_LAYOUT``::

    0xA5 | cmd u8 | seq u16 | addr u64 | length u16 | payload (write commands only) | crc u16

Response (bridge -> host), header ``RESPONSE_LAYOUT``::

    0x5A | cmd u8 | seq u16 | status u8 | length u16 | payload | crc u16

``cmd`` and ``seq`` are echoed so the host can drop stale responses. A request is
executed only after its CRC checked out, so a corrupted request has no side effect
and is answered with ``Status.CRC``.

**Nothing is applied twice** (protocol 2.0). The state-changing commands
(``STATE_CHANGING``: REG_WRITE, MEM_WRITE, REPLAY) carry a write sequence number in ``seq``:
the bridge remembers the ``seq`` and status of the last one it executed
(``last_seq``, reported by HELLO; 0 after reset) and decides by ``seq_checks``:

- ``seq`` newer than ``last_seq`` (``(seq - last_seq) mod 2**16`` in 1..2**15 - 1):
  checked and executed as usual; ``last_seq`` and the status are remembered;
- ``seq == last_seq``: a retry of the last one; not executed again, answered with the
  remembered status (a REG_WRITE's retry after a lost answer cannot start a job twice);
- older: a late or reordered copy; not executed, answered ``Status.STALE``.

So a host numbers its state-changing requests ``last_seq + 1, + 2, ...`` (from HELLO)
and resends a request under the same ``seq`` when its answer is lost, and under a new
one after ``STALE`` (a request overtaken by a newer one). Reads (HELLO, REG_READ,
MEM_READ, IRQ) change nothing and are executed every time; their ``seq`` only matches
answers to requests. Over UDP (``hdl.eth_link``) a datagram carries exactly one frame,
as above, and the answer goes back to the datagram's source address and port. A request that stops arriving for longer than
the bridge's frame timeout is answered with ``Status.TRUNCATED``; either way the
bridge then hunts for the next 0xA5. Nothing a host sends can hang the bridge.

**REPLAY** (protocol 2.1) runs one planned accelerator job in one exchange. Its
payload (``length`` bytes, at most HELLO's ``max_replay``; ``addr`` must be 0) is
``REPLAY_HEADER_LAYOUT`` (status_offset u16, busy_mask u32, ctrl_offset u16, start u32,
done_mask u32, timeout u32 in bridge cycles, write_count u8, read_count u8), then
``write_count`` x ``REPLAY_WRITE_LAYOUT`` (offset u16, value u32), then ``read_count``
x ``REPLAY_READ_LAYOUT`` (offset u16); ``replay_length`` gives the total, which must
equal ``length``. After the CRC, the seq rules and ``request_checks``, the payload is
checked (``replay_checks``: the length matches the counts, the answer fits
``max_replay``, every offset is a register offset) and refused with no bus traffic if
it fails. Then over AXI4-Lite: read ``status_offset``; if ``busy_mask`` bits are set,
the result is BUSY; else the writes in order, ``start`` to ``ctrl_offset``, then
``ctrl_offset`` is read until ``done_mask`` bits are set (the driver's clear-on-read
ap_done) or ``timeout`` cycles after the start write passed (result TIMEOUT), then the
reads in order (result DONE). The answer (status OK) is ``REPLAY_ANSWER_LAYOUT``
(``ReplayResult``), followed, when DONE, by ``read_count`` x u32 read values. An AXI
error response ends the sequence with AXI_SLVERR/AXI_DECERR and no payload. A REPLAY
**repeat** (same seq, same payload, e.g. the answer was lost) does not run the job
again: if the first one was answered OK, the bridge reads the read list again (it must
be idempotent: the driver's counters and ERR_CODE are) and answers the remembered
result with the fresh values, so the answer has the same form as the first; otherwise
it answers the remembered status with no payload. HELLO's ``clock_khz`` converts
seconds to timeout cycles; ``max_replay`` 0 (or a 2.0 bridge) means no REPLAY.

**A job in one window** (protocol 2.2). ``MEM_WRITE_AFTER``, ``REPLAY_AFTER`` and
``MEM_READ_AFTER`` are MEM_WRITE, REPLAY and MEM_READ numbered as state-changing
requests (``AFTER``) that run only right after the request numbered just before them:
a newer one whose ``seq`` is not ``last_seq + 1`` is answered ``Status.EARLY`` and not
executed (nor remembered). A host sends a job's A (a MEM_WRITE, then MEM_WRITE_AFTERs),
its REPLAY_AFTER and the first of C's MEM_READ_AFTERs numbered in that order, in one
window, without waiting between them. Whatever the network drops, duplicates or
reorders, each runs at most once and only after all before it ran: the job never sees
a partial A, and C is never read before the job. A request answered STALE therefore
ran (a later one of the chain ran after it); only its answer was lost. Two repeats
complete the picture: a MEM_READ_AFTER repeat (``seq == last_seq``, answered OK) reads
again, and a REPLAY (either kind) whose seq is the last REPLAY's, answered OK and
followed by nothing but MEM_READ_AFTERs, is answered by reading its list again, so a
lost REPLAY answer is recovered without running the job again.

Memory commands move ``length`` bytes (1..``max_payload``) at any byte address, as
one AXI4 INCR burst with byte strobes. The range must not cross a
``max_payload``-aligned window: ``max_payload`` is a power of two no larger than
4096 bytes and 256 beats, so such a burst never crosses 4 KiB and never exceeds the
AXI4 burst limit. The host splits larger transfers at those windows.

Every header and payload format is a ``Layout``: an ordered list of fields with their
sizes in bytes. The ``struct`` formats (``REQUEST_HEADER``, ``RESPONSE_HEADER``,
``HELLO_FORMAT``), the frame overheads and offsets, and the RTL's header registers
(``hdl.link_frame``) are all derived from these layouts; nothing counts byte
indices by hand.

This module imports only the standard library: the host runtime uses it on a PC
without Amaranth.
"""

from __future__ import annotations

import binascii
import enum
import operator
import struct
from dataclasses import dataclass
from functools import reduce

from .regmap import DocIntEnum

__all__ = ["REQUEST_SYNC", "RESPONSE_SYNC", "MAGIC", "PROTOCOL_VERSION", "Command", "Status",
           "LayoutField", "Layout", "REQUEST_LAYOUT", "RESPONSE_LAYOUT", "HELLO_LAYOUT",
           "REGISTER_LAYOUT", "IRQ_LAYOUT", "REQUEST_HEADER", "RESPONSE_HEADER", "HELLO_FORMAT",
           "SYNC_BYTES", "CRC_BYTES", "SEQ_MODULUS", "STATE_CHANGING", "NOT_EXECUTED", "seq_distance",
           "seq_checks", "seq_verdict", "REQUEST_PAYLOAD_OFFSET", "REQUEST_OVERHEAD",
           "RESPONSE_OVERHEAD", "crc16", "encode_request", "encode_response", "decode_request",
           "decode_response", "encode_hello", "HelloInfo", "window_ok", "request_checks", "request_status",
           "ReplayResult", "REPLAY_HEADER_LAYOUT", "REPLAY_WRITE_LAYOUT", "REPLAY_READ_LAYOUT",
           "REPLAY_ANSWER_LAYOUT", "HELLO_2_0_SIZE", "offset_refused", "replay_length", "replay_answer_length",
           "replay_checks", "encode_replay", "decode_replay", "replay_status", "decode_replay_answer",
           "REPLAY_VERSION", "AFTER_VERSION", "AFTER", "REPLAYS", "MEM_READS", "MEM_WRITES"]

REQUEST_SYNC = 0xA5
RESPONSE_SYNC = 0x5A
MAGIC = b"SYLK"                 # HELLO payload starts with this: it is a Systole link bridge
PROTOCOL_VERSION = (2, 2)       # 2.0: seq u16, write sequence numbers (nothing applied twice);
                                # 2.1: REPLAY, HELLO's clock_khz and max_replay;
                                # 2.2: the AFTER commands, Status.EARLY (a job's A, REPLAY and C in one window)


@dataclass(frozen=True)
class LayoutField:
    """One field of a ``Layout``: ``size`` bytes at ``offset``; an unsigned little-endian
    integer, or a byte string when ``raw``."""

    name: str
    size: int
    offset: int
    raw: bool = False

    @property
    def code(self) -> str:
        """This field's ``struct`` format code."""
        return f"{self.size}s" if self.raw else {1: "B", 2: "H", 4: "I", 8: "Q"}[self.size]


class Layout:
    """An ordered, gap-free sequence of little-endian fields: ``Layout(("cmd", 1), ("addr", 8))``.

    A field is ``(name, bytes)``, or ``(name, bytes, "raw")`` for a byte string. Offsets
    follow from the order; ``struct`` packs and unpacks exactly ``size`` bytes.
    """

    def __init__(self, *fields: tuple):
        placed, offset = [], 0
        for name, size, *kind in fields:
            if kind not in ([], ["raw"]):
                raise ValueError(f"field {name!r}: kind {kind!r} must be omitted or 'raw'")
            if not kind and size not in (1, 2, 4, 8):
                raise ValueError(f"field {name!r}: an integer field is 1, 2, 4 or 8 bytes, not {size}")
            placed.append(LayoutField(name, size, offset, raw=bool(kind)))
            offset += size
        self.fields: tuple[LayoutField, ...] = tuple(placed)
        self.size = offset
        self.struct = struct.Struct("<" + "".join(f.code for f in placed))
        self._by_name = {f.name: f for f in placed}
        if len(self._by_name) != len(placed):
            raise ValueError(f"duplicate field names in {[f.name for f in placed]}")

    def __getitem__(self, name: str) -> LayoutField:
        return self._by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def pack(self, **values) -> bytes:
        """The ``size`` bytes of ``values``; every field must be given, nothing else."""
        if set(values) != set(self._by_name):
            raise ValueError(f"fields {sorted(values)} do not match the layout's {list(self.names)}")
        return self.struct.pack(*(values[name] for name in self.names))

    def unpack(self, data: bytes) -> dict:
        """The fields of the first ``size`` bytes of ``data``, by name."""
        return dict(zip(self.names, self.struct.unpack_from(data)))


REQUEST_LAYOUT = Layout(("cmd", 1), ("seq", 2), ("addr", 8), ("length", 2))
RESPONSE_LAYOUT = Layout(("cmd", 1), ("seq", 2), ("status", 1), ("length", 2))
SEQ_MODULUS = 1 << 8 * REQUEST_LAYOUT["seq"].size
# The HELLO answer: who the bridge is and its limits; ``irq`` is the line's level now,
# ``last_seq`` the seq of the last state-changing request executed (0 after reset).
HELLO_LAYOUT = Layout(("magic", len(MAGIC), "raw"), ("major", 1), ("minor", 1), ("max_payload", 2),
                      ("bus_bytes", 1), ("addr_width", 1), ("ctrl_addr_width", 1), ("irq", 1),
                      ("last_seq", 2), ("clock_khz", 4), ("max_replay", 2))
# A 2.0 bridge's HELLO answer ends after last_seq (no REPLAY).
HELLO_2_0_SIZE = HELLO_LAYOUT["last_seq"].offset + HELLO_LAYOUT["last_seq"].size
# REPLAY's request payload: this header, write_count writes, read_count reads.
REPLAY_HEADER_LAYOUT = Layout(("status_offset", 2), ("busy_mask", 4), ("ctrl_offset", 2), ("start", 4),
                              ("done_mask", 4), ("timeout", 4), ("write_count", 1), ("read_count", 1))
REPLAY_WRITE_LAYOUT = Layout(("offset", 2), ("value", 4))
REPLAY_READ_LAYOUT = Layout(("offset", 2))
REPLAY_ANSWER_LAYOUT = Layout(("result", 1))    # then read_count x REGISTER_LAYOUT when DONE
REGISTER_LAYOUT = Layout(("value", 4))     # REG_WRITE payload, REG_READ answer: one 32-bit register
IRQ_LAYOUT = Layout(("irq", 1))            # IRQ answer: bit 0 is the accelerator's irq line

REQUEST_HEADER = REQUEST_LAYOUT.struct      # cmd, seq, addr, length (after the sync byte)
RESPONSE_HEADER = RESPONSE_LAYOUT.struct    # cmd, seq, status, length (after the sync byte)
HELLO_FORMAT = HELLO_LAYOUT.struct

SYNC_BYTES = 1
CRC_BYTES = 2
REQUEST_PAYLOAD_OFFSET = SYNC_BYTES + REQUEST_LAYOUT.size      # frame index of a request's first payload byte
REQUEST_OVERHEAD = SYNC_BYTES + REQUEST_LAYOUT.size + CRC_BYTES    # request frame bytes besides the payload
RESPONSE_OVERHEAD = SYNC_BYTES + RESPONSE_LAYOUT.size + CRC_BYTES  # response frame bytes besides the payload


class Command(enum.IntEnum):
    """Request commands. Only REG_WRITE and MEM_WRITE carry a request payload."""

    HELLO = 0x01      # identity and limits; payload HELLO_LAYOUT
    REG_READ = 0x02   # AXI4-Lite read of the 32-bit register at byte offset addr; length 4
    REG_WRITE = 0x03  # AXI4-Lite write; length 4, payload the value (all strobes set)
    MEM_READ = 0x04   # AXI4 burst read of length bytes at addr
    MEM_WRITE = 0x05  # AXI4 burst write of the payload at addr
    IRQ = 0x06        # payload IRQ_LAYOUT: bit 0 = the accelerator's irq line now
    REPLAY = 0x07     # a planned job in one exchange (2.1); see the module docstring
    MEM_READ_AFTER = 0x08   # MEM_READ right after the request numbered before it (2.2)
    MEM_WRITE_AFTER = 0x09  # MEM_WRITE right after ... (2.2); see "a job in one window" above
    REPLAY_AFTER = 0x0A     # REPLAY right after ... (2.2)

    @property
    def has_payload(self) -> bool:
        return self in (Command.REG_WRITE, Command.MEM_WRITE, Command.REPLAY, Command.MEM_WRITE_AFTER,
                        Command.REPLAY_AFTER)

    @property
    def changes_state(self) -> bool:
        """Executed at most once per write sequence number (``seq_verdict``)."""
        return self in STATE_CHANGING


# The AFTER commands (2.2): each runs only right after the request numbered before it.
AFTER = (Command.MEM_READ_AFTER, Command.MEM_WRITE_AFTER, Command.REPLAY_AFTER)
STATE_CHANGING = (Command.REG_WRITE, Command.MEM_WRITE, Command.REPLAY, *AFTER)
REPLAYS = (Command.REPLAY, Command.REPLAY_AFTER)
MEM_READS = (Command.MEM_READ, Command.MEM_READ_AFTER)
MEM_WRITES = (Command.MEM_WRITE, Command.MEM_WRITE_AFTER)
# Versions a bridge may answer HELLO with (``HelloInfo.version``): what each adds.
REPLAY_VERSION = (2, 1)
AFTER_VERSION = (2, 2)


class ReplayResult(DocIntEnum):
    """The first byte of a REPLAY answer (status OK)."""

    DONE = 0x00, "the job ran and done_mask was seen; the read values follow"
    BUSY = 0x01, "busy_mask was set before the first write; nothing was written"
    TIMEOUT = 0x02, "done_mask not seen within timeout cycles of the start write"


class Status(DocIntEnum):
    """Response status. ``NOT_EXECUTED`` lists the codes meaning the request had no effect."""

    OK = 0x00, "executed"
    CRC = 0x01, "request CRC mismatch; not executed"
    TRUNCATED = 0x02, "request stopped arriving before its end (frame timeout); not executed"
    BAD_COMMAND = 0x03, "unknown command; not executed"
    BAD_LENGTH = 0x04, ("length is 0, above max_payload, or not 4 for a register; a REPLAY whose "
                        "length is not its counts' or above max_replay; not executed")
    BAD_ADDRESS = 0x05, ("memory range crosses a max_payload window, or register offset "
                         "unaligned/out of range (REPLAY: addr not 0, or one of its offsets); "
                         "not executed")
    AXI_SLVERR = 0x06, "the AXI slave answered SLVERR (a memory read returns no payload)"
    AXI_DECERR = 0x07, "the AXI interconnect answered DECERR (a memory read returns no payload)"
    STALE = 0x08, ("a state-changing request older than the last one executed (a late or "
                   "reordered copy); not executed")
    EARLY = 0x09, ("an AFTER request whose predecessor (seq - 1) is not the last one executed; "
                   "not executed (2.2)")


# The answers after which the request had no effect: it can be sent again.
NOT_EXECUTED = (Status.CRC, Status.TRUNCATED, Status.BAD_COMMAND, Status.BAD_LENGTH,
                Status.BAD_ADDRESS, Status.STALE, Status.EARLY)


def seq_distance(seq, last_seq):
    """How far ``seq`` is ahead of ``last_seq``, modulo ``SEQ_MODULUS`` (operators only:
    ints here, Amaranth values in ``hdl.link_exec``)."""
    return (seq - last_seq) % SEQ_MODULUS


def seq_checks(distance) -> tuple:
    """``(repeat, stale)`` of a state-changing request whose ``seq`` is ``distance``
    (``seq_distance``) ahead of the last executed one: a repeat (0 ahead) is answered with
    the remembered status, a stale copy (half the sequence space or more ahead, i.e.
    behind) with ``Status.STALE``; neither is executed. Otherwise it is newer: checked
    (``request_checks``) and executed. Operators only, like ``request_checks``."""
    return distance == 0, distance >= SEQ_MODULUS // 2


def seq_verdict(seq: int, last_seq: int, after: bool = False) -> str:
    """``"execute"``, ``"repeat"``, ``"stale"`` or (an AFTER request, ``after``) ``"early"``
    for a state-changing request (ints)."""
    distance = seq_distance(seq, last_seq)
    repeat, stale = seq_checks(distance)
    return "repeat" if repeat else "stale" if stale else "early" if after and distance != 1 else "execute"


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (check value of b"123456789": 0x29B1)."""
    return binascii.crc_hqx(data, crc)


def _frame(sync: int, body: bytes) -> bytes:
    return bytes([sync]) + body + crc16(body).to_bytes(CRC_BYTES, "little")


def _unframe(sync: int, frame: bytes, header: Layout, payload_length) -> tuple[dict, bytes]:
    if len(frame) < SYNC_BYTES + header.size + CRC_BYTES or frame[0] != sync:
        raise ValueError(f"{bytes(frame[:8]).hex()}... is not a frame starting with {sync:#04x}")
    fields = header.unpack(frame[SYNC_BYTES:])
    end = SYNC_BYTES + header.size + payload_length(fields)
    if len(frame) != end + CRC_BYTES:
        raise ValueError(f"frame is {len(frame)} bytes, its header says {end + CRC_BYTES}")
    body = bytes(frame[SYNC_BYTES:end])
    if int.from_bytes(frame[end:], "little") != crc16(body):
        raise ValueError("frame CRC mismatch")
    return fields, body[header.size:]


def encode_request(cmd: int, seq: int, addr: int, length: int, payload: bytes = b"") -> bytes:
    """One request frame, sync byte to CRC."""
    return _frame(REQUEST_SYNC, REQUEST_LAYOUT.pack(cmd=cmd & 0xFF, seq=seq % SEQ_MODULUS, addr=addr,
                                                    length=length) + payload)


def encode_response(cmd: int, seq: int, status: int, payload: bytes = b"") -> bytes:
    """One response frame, sync byte to CRC (what the bridge sends)."""
    return _frame(RESPONSE_SYNC, RESPONSE_LAYOUT.pack(cmd=cmd & 0xFF, seq=seq % SEQ_MODULUS, status=status,
                                                      length=len(payload)) + payload)


def decode_request(frame: bytes) -> tuple[dict, bytes]:
    """The header fields and payload of one whole request frame; ``ValueError`` if malformed."""
    def payload_length(fields):
        writes = {int(c) for c in Command if c.has_payload}
        return fields["length"] if fields["cmd"] in writes else 0
    return _unframe(REQUEST_SYNC, frame, REQUEST_LAYOUT, payload_length)


def decode_response(frame: bytes) -> tuple[dict, bytes]:
    """The header fields and payload of one whole response frame; ``ValueError`` if malformed."""
    return _unframe(RESPONSE_SYNC, frame, RESPONSE_LAYOUT, lambda fields: fields["length"])


def encode_hello(*, max_payload: int, bus_bytes: int, addr_width: int, ctrl_addr_width: int,
                 irq: int = 0, last_seq: int = 0, clock_khz: int = 0, max_replay: int = 0) -> bytes:
    """The HELLO answer of a bridge with these limits (``HELLO_LAYOUT``)."""
    return HELLO_LAYOUT.pack(magic=MAGIC, major=PROTOCOL_VERSION[0], minor=PROTOCOL_VERSION[1],
                             max_payload=max_payload, bus_bytes=bus_bytes, addr_width=addr_width,
                             ctrl_addr_width=ctrl_addr_width, irq=irq, last_seq=last_seq,
                             clock_khz=clock_khz, max_replay=max_replay)


@dataclass(frozen=True)
class HelloInfo:
    """What a bridge says about itself in its HELLO response."""

    version: tuple[int, int]
    max_payload: int
    bus_bytes: int
    addr_width: int
    ctrl_addr_width: int
    irq: bool
    last_seq: int = 0
    clock_khz: int = 0          # the bridge's clock (2.1; 0 from a 2.0 bridge)
    max_replay: int = 0         # REPLAY's payload and answer limit (2.1; 0: no REPLAY)

    @classmethod
    def parse(cls, payload: bytes) -> "HelloInfo":
        """``ValueError`` unless ``payload`` is a HELLO answer (size and magic); a 2.0
        answer (``HELLO_2_0_SIZE`` bytes, minor 0) says clock_khz 0 and max_replay 0."""
        old = len(payload) == HELLO_2_0_SIZE and len(payload) > HELLO_LAYOUT["minor"].offset \
            and payload[HELLO_LAYOUT["minor"].offset] == 0
        if len(payload) != HELLO_LAYOUT.size and not old:
            raise ValueError(f"HELLO answer is {len(payload)} bytes, expected {HELLO_LAYOUT.size}")
        f = HELLO_LAYOUT.unpack(bytes(payload) + bytes(HELLO_LAYOUT.size - len(payload)))
        if f["magic"] != MAGIC:
            raise ValueError(f"HELLO magic is {f['magic']!r}, expected {MAGIC!r}")
        return cls((f["major"], f["minor"]), f["max_payload"], f["bus_bytes"], f["addr_width"],
                   f["ctrl_addr_width"], bool(f["irq"] & 1), f["last_seq"], f["clock_khz"], f["max_replay"])


def window_ok(addr: int, length: int, max_payload: int) -> bool:
    """True when ``length`` bytes at ``addr`` fit one ``max_payload``-aligned window."""
    return 1 <= length <= max_payload and addr // max_payload == (addr + length - 1) // max_payload


def offset_refused(offset, ctrl_addr_width: int):
    """True for a register offset that is unaligned or beyond ``ctrl_addr_width`` (operators only)."""
    return ((offset & (REGISTER_LAYOUT.size - 1)) != 0) | ((offset >> ctrl_addr_width) != 0)


def request_checks(cmd, addr, length, *, max_payload: int, ctrl_addr_width: int, addr_width: int,
                   max_replay: int = 0) -> list:
    """The rules that refuse a received request, in order: ``(failed, status)`` each.

    The first rule that fails gives the answer, and the request is not executed. Only
    operators are used, so the same rules run on ints (``request_status``, a model of
    the bridge) and on Amaranth values (``hdl.link_exec``). ``max_payload`` is a power
    of two; memory commands must not cross a ``max_payload``-aligned window. A bridge
    with ``max_replay`` 0 refuses REPLAY as BAD_COMMAND; REPLAY's payload is checked
    further by ``replay_checks`` once it is known.
    """
    window_bits = (max_payload - 1).bit_length()
    register_bytes = REGISTER_LAYOUT.size
    is_reg = (cmd == Command.REG_READ) | (cmd == Command.REG_WRITE)
    is_mem = reduce(operator.or_, (cmd == c for c in (*MEM_READS, *MEM_WRITES)))
    is_replay = reduce(operator.or_, (cmd == c for c in REPLAYS))
    end = addr + length - 1                 # the last byte; only looked at once length >= 1
    commands = [c for c in Command if c not in REPLAYS or max_replay]
    return [
        (reduce(operator.and_, (cmd != c for c in commands)), Status.BAD_COMMAND),
        (is_replay & ((length < REPLAY_HEADER_LAYOUT.size) | (length > max_replay)), Status.BAD_LENGTH),
        (is_replay & (addr != 0), Status.BAD_ADDRESS),
        (is_reg & (length != register_bytes), Status.BAD_LENGTH),
        (is_mem & ((length == 0) | (length > max_payload)), Status.BAD_LENGTH),
        (is_reg & offset_refused(addr, ctrl_addr_width), Status.BAD_ADDRESS),
        (is_mem & ((addr >> window_bits) != (end >> window_bits)), Status.BAD_ADDRESS),
        (is_mem & ((addr >> addr_width) != 0), Status.BAD_ADDRESS),
    ]


def request_status(cmd: int, addr: int, length: int, *, max_payload: int, ctrl_addr_width: int,
                   addr_width: int, max_replay: int = 0) -> Status:
    """``Status.OK`` if a bridge with these limits executes the request (for REPLAY: goes
    on to ``replay_checks``), else why not."""
    for failed, status in request_checks(cmd, addr, length, max_payload=max_payload,
                                         ctrl_addr_width=ctrl_addr_width, addr_width=addr_width,
                                         max_replay=max_replay):
        if failed:
            return status
    return Status.OK


def replay_length(write_count, read_count):
    """The bytes of a REPLAY payload with these counts (operators only)."""
    return REPLAY_HEADER_LAYOUT.size + write_count * REPLAY_WRITE_LAYOUT.size + read_count * REPLAY_READ_LAYOUT.size


def replay_answer_length(read_count):
    """The bytes of a DONE answer to a REPLAY with ``read_count`` reads (operators only)."""
    return REPLAY_ANSWER_LAYOUT.size + read_count * REGISTER_LAYOUT.size


def replay_checks(length, write_count, read_count, offsets_refused, *, max_replay: int) -> list:
    """The rules that refuse a REPLAY's payload after ``request_checks``, in order, as
    ``(failed, status)``; ``offsets_refused`` is true when ``offset_refused`` holds for
    status_offset, ctrl_offset or any listed offset. Operators only (ints here, Amaranth
    values in ``hdl.link_replay``)."""
    return [
        (length != replay_length(write_count, read_count), Status.BAD_LENGTH),
        (replay_answer_length(read_count) > max_replay, Status.BAD_LENGTH),
        (offsets_refused, Status.BAD_ADDRESS),
    ]


def encode_replay(*, status_offset: int, busy_mask: int, ctrl_offset: int, start: int, done_mask: int,
                  timeout: int, writes, reads) -> bytes:
    """A REPLAY payload: ``writes`` are ``(offset, value)`` pairs, ``reads`` offsets;
    ``timeout`` in bridge cycles. ``ValueError`` if a count exceeds a byte."""
    writes, reads = list(writes), list(reads)
    if len(writes) > 0xFF or len(reads) > 0xFF:
        raise ValueError(f"{len(writes)} writes and {len(reads)} reads: a REPLAY holds at most 255 of each")
    return (REPLAY_HEADER_LAYOUT.pack(status_offset=status_offset, busy_mask=busy_mask, ctrl_offset=ctrl_offset,
                                      start=start, done_mask=done_mask, timeout=timeout,
                                      write_count=len(writes), read_count=len(reads))
            + b"".join(REPLAY_WRITE_LAYOUT.pack(offset=o, value=v) for o, v in writes)
            + b"".join(REPLAY_READ_LAYOUT.pack(offset=o) for o in reads))


def decode_replay(payload: bytes) -> tuple[dict, list, list]:
    """``(header fields, writes, reads)`` of a REPLAY payload whose length matches its counts
    (``ValueError`` otherwise)."""
    if len(payload) < REPLAY_HEADER_LAYOUT.size:
        raise ValueError(f"REPLAY payload of {len(payload)} bytes is shorter than its header")
    head = REPLAY_HEADER_LAYOUT.unpack(payload)
    wc, rc = head["write_count"], head["read_count"]
    if len(payload) != replay_length(wc, rc):
        raise ValueError(f"REPLAY payload of {len(payload)} bytes, its counts say {replay_length(wc, rc)}")
    at = REPLAY_HEADER_LAYOUT.size
    writes = [tuple(REPLAY_WRITE_LAYOUT.unpack(payload[at + i * REPLAY_WRITE_LAYOUT.size:]).values())
              for i in range(wc)]
    at += wc * REPLAY_WRITE_LAYOUT.size
    reads = [REPLAY_READ_LAYOUT.unpack(payload[at + i * REPLAY_READ_LAYOUT.size:])["offset"] for i in range(rc)]
    return head, writes, reads


def replay_status(payload: bytes, *, max_replay: int, ctrl_addr_width: int) -> Status:
    """``Status.OK`` if a REPLAY payload that passed ``request_checks`` is run, else why not."""
    head = REPLAY_HEADER_LAYOUT.unpack(payload)
    wc, rc = head["write_count"], head["read_count"]
    offsets = [head["status_offset"], head["ctrl_offset"]]
    if len(payload) == replay_length(wc, rc):
        _, writes, reads = decode_replay(payload)
        offsets += [o for o, _ in writes] + reads
    refused = any(offset_refused(o, ctrl_addr_width) for o in offsets)
    for failed, status in replay_checks(len(payload), wc, rc, refused, max_replay=max_replay):
        if failed:
            return status
    return Status.OK


def decode_replay_answer(payload: bytes, read_count: int) -> tuple[ReplayResult, list[int]]:
    """``(result, read values)`` of a REPLAY answer (status OK); ``ValueError`` if malformed."""
    if len(payload) < REPLAY_ANSWER_LAYOUT.size:
        raise ValueError("REPLAY answer is empty")
    result = ReplayResult(REPLAY_ANSWER_LAYOUT.unpack(payload)["result"])
    expected = replay_answer_length(read_count) if result == ReplayResult.DONE else REPLAY_ANSWER_LAYOUT.size
    if len(payload) != expected:
        raise ValueError(f"REPLAY answer ({result.name}) is {len(payload)} bytes, expected {expected}")
    values = list(struct.unpack_from(f"<{read_count}I", payload, REPLAY_ANSWER_LAYOUT.size)) \
        if result == ReplayResult.DONE else []
    return result, values
