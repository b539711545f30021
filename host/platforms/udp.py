"""The link over UDP: the Nexys Video's Ethernet bridge (``hdl.eth_link``), one frame a datagram.

``UdpLink`` speaks ``hdl.spec.link_protocol`` (protocol 2.0) over a standard UDP socket:
each request frame is one datagram to the board's address and port, and each answer is
one datagram back from it. A datagram that is not exactly one well-formed response
frame (a CRC mismatch, a wrong length, another protocol) is counted (``malformed``)
and dropped; a well-formed answer to no request in flight is counted (``stale_frames``)
and dropped. It has ``SerialLink``'s public API and error classes, so
``LinkRegisterBus`` and ``LinkMemory`` put it under ``host.accel.driver.Driver``.

Loss and the rule that nothing is applied twice:

- Every request waits ``timeout_s`` for its answer, then is sent again, at most
  ``retries`` times (a write always under the same ``seq``); then ``LinkTimeout`` (or
  ``LinkCrcError`` when only corrupted answers came back). Single requests are
  ``LinkSession``'s stop and wait; bulk transfers use windows (below).
- The state-changing commands (REG_WRITE, MEM_WRITE) are numbered ``last_seq + 1, + 2,
  ...`` from the bridge's HELLO. A resent copy of one the bridge already executed is
  answered with its remembered status (``seq == last_seq``) and not run again.
- ``Status.STALE`` means that copy was not executed, because a newer write was. A
  REG_WRITE (stop and wait: never overtaken by our own writes) is then sent under a new
  ``seq`` after HELLO (``LinkSession``). A MEM_WRITE inside a window may have been executed by an earlier copy whose
  answer was lost, so its range is read back: bytes already in place are done, others
  are written again under a new ``seq``. No copy of an overtaken ``seq`` can execute
  later, so the read-back is final.
- Reads (HELLO, REG_READ, MEM_READ, IRQ) have their own ``seq`` counter: they change
  nothing, so any copy may run.

Bulk transfers at wire speed: ``write_mem`` and ``read_mem`` keep up to ``window``
requests of ``max_payload`` bytes in flight, each answered, matched by ``(cmd, seq)``
however the network orders them, each resent after its own timeout. The default window
(``WINDOW``) covers the round trip of a 1 Gb/s LAN many times over (one 1 KiB datagram
is 8.8 us of wire; see ``host.perf.ethernet``); the socket's buffers are raised to 1 MiB
(where the system allows) so that a wider window fits them too.

The host's CPU per datagram is the bulk rate's limit, and per job the decode rate's. On
Linux every window runs in one call of ``firmware/udp_bulk.c`` (``bulk_library``,
compiled on first use; ``compiled_bulk`` says so): ``write_mem`` and ``read_mem`` as a
range, a job's window (``run_window``) and any other window as a list of requests; the
same numbering, matching, resends, EARLY and STALE rules, its counters added to this
link's, a failure handed back to the same one-line errors (``_compiled_failed``); about
8-12 us of CPU a 1 KiB datagram on this machine against 20-30 in Python
(``host.perf.ethernet``). A job's window is prepared once (``prepare_job``: its requests
and their compiled form point into a staging buffer for A and one for C, bound to the
driver's ``JobIo``) and run again for every token, the whole job in one call
(``submit``: ``systole_udp_job``, which has ``firmware/replay.c``'s ``systole_job``
signature, so the fused decoder's compiled code submits jobs over Ethernet as it does on
the KV260's mapped registers: ``job_entry``). The seq counters live in the struct that
call shares (``_write_seq`` and ``_read_seq`` read it), and the counters it adds are
part of this link's. The Python window (``_exchange``: where no compiler works, a caller's
own clock, the projection's counting) avoids what work it can: a frame is packed by a
precompiled ``struct`` with its CRC run over header and payload in place (one copy of
the payload); every answer is received into one buffer and checked there, a MEM_READ's
payload copied straight into the result; the socket stays blocking and a receive waits
in the kernel (SO_RCVTIMEO) until close to its deadline, then in poll(): one system
call per send and per receive.

Every error is one line naming the address, the request and the wait, and derives from
``LinkError`` as ``SerialLink``'s do. ``parse_address`` reads ``192.168.1.50``,
``192.168.1.50:21337``, ``udp://host[:port]`` or ``udp://`` (the defaults it is given);
``is_udp_address`` tells such a text from a serial port or pyserial URL.
"""

from __future__ import annotations

import binascii
import ctypes
import dataclasses
import ipaddress
import math
import os
import re
import select
import socket
import struct
import sys
import time
from collections import OrderedDict
from functools import lru_cache
from typing import Callable

import numpy as np

from hdl.spec.link_protocol import (
    CRC_BYTES,
    AFTER_VERSION,
    REQUEST_HEADER,
    REQUEST_SYNC,
    RESPONSE_HEADER,
    RESPONSE_OVERHEAD,
    RESPONSE_SYNC,
    SEQ_MODULUS,
    STATE_CHANGING,
    SYNC_BYTES,
    Command,
    HelloInfo,
    ReplayResult,
    Status,
    decode_replay_answer,
    replay_answer_length,
)

from .cbuild import FIRMWARE, shared_library
from .link import (
    LinkCrcError,
    LinkDeviceError,
    LinkError,
    LinkOpenError,
    LinkPortError,
    LinkSession,
    LinkTimeout,
    LinkWrongDevice,
    _describe,
)

__all__ = ["UdpLink", "JobWindow", "JobIo", "WINDOW", "JOB_READS_BEHIND", "DEFAULT_TIMEOUT_S", "DEFAULT_RETRIES", "parse_address", "is_udp_address",
           "LinkError", "LinkOpenError", "LinkTimeout", "LinkCrcError", "LinkWrongDevice", "LinkDeviceError",
           "LinkPortError"]

WINDOW = 32                 # requests in flight in a bulk transfer (see the module docstring)
DEFAULT_TIMEOUT_S = 0.1     # one answer's wait on a LAN; a board answers in microseconds
DEFAULT_RETRIES = 9         # sends after the first: 1 s in all before giving up
# C's MEM_READ_AFTERs sent behind a job's REPLAY (``run_window``): the board's DatagramRx
# holds 16 datagrams while the job runs (hdl.datagram_rx, peer_slots), so these wait
# there instead of being dropped; the rest of C follows the REPLAY's answer.
JOB_READS_BEHIND = 8
_MAX_DATAGRAM = 65536
_SOCKET_BUFFER = 1 << 20    # bytes asked for SO_RCVBUF/SO_SNDBUF: a window of any size never overflows them
# Answers meaning this copy did not arrive intact (not executed): sent again as it is.
_DAMAGED = (Status.CRC, Status.TRUNCATED)
_STATUSES = {int(status): status for status in Status}
_OK = int(Status.OK)
_EARLY = int(Status.EARLY)
_DONE = int(ReplayResult.DONE)

# The frame codec of the hot path: ``hdl.spec.link_protocol``'s layouts with the sync byte
# in front, packed and checked in place (tests/test_link_udp.py holds them to
# ``encode_request`` and ``decode_response``).
_REQUEST_SYNC = bytes((REQUEST_SYNC,))
_pack_request_header = REQUEST_HEADER.pack
_RESPONSE_HEAD = struct.Struct("<B" + RESPONSE_HEADER.format.lstrip("<"))      # sync, cmd, seq, status, length
_RESPONSE_PAYLOAD = SYNC_BYTES + RESPONSE_HEADER.size                          # an answer's first payload byte
_CRC = struct.Struct({2: "<H"}[CRC_BYTES])
_pack_crc = _CRC.pack
_crc16 = binascii.crc_hqx

# Waiting for an answer (Linux): the socket stays blocking and a receive waits in the
# kernel (SO_RCVTIMEO, one system call) while the deadline is far; near it, poll()
# waits exactly. The kernel rounds SO_RCVTIMEO up to its tick (at most 10 ms at HZ=100)
# and may sleep one tick more, so a kernel wait is kept _KERNEL_SLACK_S short of the
# deadline. Elsewhere every receive sets the socket's timeout (poll, then receive).
_KERNEL_WAITS = sys.platform.startswith("linux")
_KERNEL_SLACK_S = 0.025
_KERNEL_WAIT_MIN_S = 2 * _KERNEL_SLACK_S


def _encode_request(command: int, seq: int, address: int, length: int, payload=b"") -> bytes:
    """``encode_request``'s frame, byte for byte, with one copy of ``payload`` (any
    bytes-like object): the CRC runs over the header, then on over the payload in place."""
    header = _pack_request_header(command & 0xFF, seq % SEQ_MODULUS, address, length)
    return b"".join((_REQUEST_SYNC, header, payload, _pack_crc(_crc16(payload, _crc16(header, 0xFFFF)))))


class _BadCrc(Exception):
    """Internal: a datagram was one response frame but failed its CRC."""
_IPV4_PORT = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3})(?::(.*))?")


def is_udp_address(text: str) -> bool:
    """True for ``udp``, ``udp://...`` and a dotted IPv4 address with an optional ``:port`` (what
    ``parse_address`` reads); False for a serial port or pyserial URL (``/dev/ttyUSB0``,
    ``COM3``, ``socket://``, ``loop://``, ``rfc2217://``)."""
    text = text.strip()
    return text.lower() in ("udp", "udp:") or text.lower().startswith("udp://") \
        or _IPV4_PORT.fullmatch(text) is not None


def parse_address(text: str, default_host: str, default_port: int) -> tuple[str, int]:
    """``(host, port)`` of ``192.168.1.50``, ``192.168.1.50:21337``, ``udp://host[:port]`` or
    ``udp://`` (the defaults); ``LinkOpenError`` (one line naming the text) for anything else."""
    raw = text.strip()
    rest = raw[len("udp://"):] if raw.lower().startswith("udp://") else \
        "" if raw.lower() in ("udp", "udp:") else raw
    if rest.endswith("/"):
        rest = rest[:-1]
    if rest.startswith("["):
        raise LinkOpenError(text, "IPv6 addresses are not supported: the board speaks IPv4")
    host, colon, port_text = rest.partition(":")
    host = host or default_host
    if re.fullmatch(r"[\d.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise LinkOpenError(text, f"{host!r} is not an IPv4 address") from None
    elif not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", host):
        raise LinkOpenError(text, f"{host!r} is not a host name or IPv4 address")
    if not colon:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise LinkOpenError(text, f"port {port_text!r} is not a number in 1..65535")
    return host, int(port_text)


class _Link(ctypes.Structure):
    """``struct systole_udp_link`` of ``firmware/udp_bulk.c``: the link's settings, seq
    counters and compiled counters (``UdpLink._shared``: one a link), and one call's results."""

    _fields_ = [("fd", ctypes.c_int32), ("window", ctypes.c_uint32), ("retries", ctypes.c_uint32),
                ("seq_modulus", ctypes.c_uint32), ("timeout_ns", ctypes.c_uint64), ("write_seq", ctypes.c_uint32),
                ("read_seq", ctypes.c_uint32),
                *((name, ctypes.c_uint8) for name in ("request_sync", "response_sync", "status_ok", "status_crc",
                                                      "status_truncated", "status_stale", "status_early", "pad")),
                *((name, ctypes.c_uint64) for name in ("frames", "resent", "answers", "malformed", "crc_errors",
                                                       "stale_frames", "foreign", "early", "bytes_sent",
                                                       "bytes_received")),
                ("refused", ctypes.c_int32), ("failed_status", ctypes.c_int32), ("failed", ctypes.c_int64),
                *((name, ctypes.c_uint32) for name in ("failed_sends", "failed_bad_answers", "failed_early_answers",
                                                       "pad2")),
                ("overtaken", ctypes.c_void_p), ("overtaken_count", ctypes.c_uint64),
                ("by_command", ctypes.c_void_p)]


class _Piece(ctypes.Structure):
    """``struct systole_udp_request``: one request of a compiled window, and what came back."""

    _fields_ = [("address", ctypes.c_uint64), ("payload", ctypes.c_void_p), ("into", ctypes.c_void_p),
                ("wait_ns", ctypes.c_uint64), ("length", ctypes.c_uint32), ("payload_bytes", ctypes.c_uint32),
                ("into_bytes", ctypes.c_uint32),
                *((name, ctypes.c_uint8) for name in ("command", "numbered", "exact", "stale_ok")),
                *((name, ctypes.c_uint32) for name in ("seq", "answered", "sends", "bad_answers", "early_answers"))]


class JobIo(ctypes.Structure):
    """``struct systole_udp_job_io``: one job's memory traffic as the driver describes it
    (``LinkRegisterBus.job_io``: ``a_buf`` and ``c_buf`` device addresses, ``a`` and ``c``
    the host arrays' addresses, set per job) and its prepared window (``UdpLink.prepare_job``).
    The driver's cache-maintenance fields are kept and unused (the bridge's writes
    complete before it answers)."""

    _fields_ = [*((name, ctypes.c_void_p) for name in ("a", "c", "a_stage", "c_stage", "requests")),
                ("c_address", ctypes.c_uint64),
                *((name, ctypes.c_uint32) for name in ("count", "replay", "m", "k", "a_stride", "c_row_bytes",
                                                       "c_stride", "behind", "c_bytes", "max_payload")),
                *((name, ctypes.c_uint8) for name in ("done", "busy", "timeout", "mem_read", "mem_read_after",
                                                      "pad0", "pad1", "pad2")),
                ("result", ctypes.c_int32), ("stage", ctypes.c_int32)]

    def __init__(self, *, a_buf: int, c_buf: int, m: int, k: int, a_stride: int, c_row_bytes: int,
                 c_stride: int, readback: int = 0, sync_state: int = 0):
        super().__init__(c_address=c_buf, m=m, k=k, a_stride=a_stride, c_row_bytes=c_row_bytes,
                         c_stride=c_stride, c_bytes=m * c_stride, done=int(ReplayResult.DONE),
                         busy=int(ReplayResult.BUSY), timeout=int(ReplayResult.TIMEOUT),
                         mem_read=int(Command.MEM_READ), mem_read_after=int(Command.MEM_READ_AFTER))
        self.a_buf, self.c_buf, self.readback, self.sync_state = a_buf, c_buf, readback, sync_state
        self.fds, self.sync_device, self.sync_cpu = [-1] * 5, [0] * 3, [0] * 3
        self.window = self.window_plan = None    # UdpLink.prepare_job's window, and the plan it is for
        self.retired: list = []                  # windows it replaced (copies made before may hold them)
        self.owner = self                        # the io whose window this is (bound copies share it)

    def bound(self, a: int, c: int) -> "JobIo":
        """A copy for compiled code to submit with, reading A at ``a`` and writing C at
        ``c`` (``host.accel.driver.Driver.compiled_job``); its window is this io's."""
        copy = type(self).from_buffer_copy(self)
        copy.a, copy.c = a, c
        copy.owner = self
        return copy


# The compiled calls' results (firmware/udp_bulk.c)
_BULK_DONE, _BULK_GAVE_UP, _BULK_REFUSED, _BULK_WRONG_LENGTH, _BULK_SOCKET, _BULK_MEMORY, _JOB_STALE, \
    _JOB_ANSWER, _JOB_UNPREPARED = range(9)
_JOB_LINK_FAILED = -3       # systole_udp_job: the link failed (JobIo.result and .stage say how)


@lru_cache(maxsize=1)
def bulk_library() -> tuple[ctypes.CDLL | None, str | None]:
    """``(firmware/udp_bulk.c compiled, None)`` or ``(None, why not)``: UdpLink's bulk
    transfers in one call each (``host.platforms.cbuild``)."""
    lib, problem = shared_library(FIRMWARE / "udp_bulk.c", "udp_bulk")
    if lib is not None:
        lib.systole_udp_bulk.restype = lib.systole_udp_window.restype = ctypes.c_int
        lib.systole_udp_bulk.argtypes = [ctypes.POINTER(_Link), ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32,
                                         ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64]
        lib.systole_udp_window.argtypes = [ctypes.POINTER(_Link), ctypes.POINTER(_Piece), ctypes.c_uint64]
        lib.systole_udp_job.restype = ctypes.c_int
        pointer = ctypes.c_void_p
        lib.systole_udp_job.argtypes = [pointer, ctypes.c_uint32, ctypes.c_uint32, pointer, pointer, ctypes.c_uint32,
                                        ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint64,
                                        pointer, ctypes.c_uint32, pointer, pointer]
        lib.systole_crc16.restype = ctypes.c_uint16
        lib.systole_crc16.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint16]
    return lib, problem


class _Request:
    """One request of a window: what to send, and what came back. ``into`` is where a
    MEM_READ's answer goes (a view of the caller's buffer), or None."""

    __slots__ = ("command", "address", "length", "payload", "seq", "frame", "sends", "deadline", "answer",
                 "bad_answers", "into", "wait_s", "early", "early_answers")

    def __init__(self, command: Command, address: int, length: int, payload=b"", into: memoryview | None = None):
        self.command, self.address, self.length, self.payload, self.into = command, address, length, payload, into
        self.seq = self.sends = self.bad_answers = 0      # bad_answers: answers failing their CRC (malformed)
        self.frame = self.answer = b""
        self.deadline = 0.0
        self.wait_s = 0.0          # how long the bridge may work on it (a REPLAY's job), and behind it
        self.early = False         # answered EARLY: waits for its predecessor's answer
        self.early_answers = 0


def _address(buffer) -> int:
    """The address of a contiguous buffer's first byte (kept alive by the caller)."""
    return np.frombuffer(buffer, np.uint8).ctypes.data


class JobWindow:
    """A job's window prepared by ``UdpLink.prepare_job`` and run by ``submit`` (or, with
    no compiled form, ``run_window``): A goes in ``a`` (device layout) and C comes back
    in ``c``. The requests (and, with
    ``firmware/udp_bulk.c``, their compiled form) point into ``a``, ``c`` and the REPLAY
    payload, and are reused for every run."""

    def __init__(self, link: "UdpLink", a_address: int, a_nbytes: int, c_address: int, c_nbytes: int,
                 payload: bytes, reads: int, timeout_s: float):
        self.a, self.c = np.zeros(a_nbytes, np.uint8), np.zeros(c_nbytes, np.uint8)
        self.a_pointer, self.c_pointer = self.a.ctypes.data, self.c.ctypes.data
        self.a_address, self.c_address, self.payload, self.reads = a_address, c_address, payload, reads
        self.limits = link.limits                 # the bridge's limits it was made for
        self.what = f"job (A: {a_nbytes} bytes at {a_address:#x}, C: {c_nbytes} bytes at {c_address:#x})"
        a, c = memoryview(self.a), memoryview(self.c)
        requests = [_Request(Command.MEM_WRITE_AFTER if index else Command.MEM_WRITE, at, length,
                             a[offset:offset + length])
                    for index, (at, offset, length) in enumerate(link._chunks(a_address, a_nbytes))]
        self.replay = _Request(Command.REPLAY_AFTER, 0, len(payload), payload)
        requests.append(self.replay)
        c_pieces = list(link._chunks(c_address, c_nbytes))[:JOB_READS_BEHIND]
        self.behind = [_Request(Command.MEM_READ_AFTER, at, length, into=c[offset:offset + length])
                       for at, offset, length in c_pieces]
        self.rest = sum(length for _, _, length in c_pieces)       # C's bytes read after the REPLAY
        requests += self.behind
        for request in requests[-1 - len(self.behind):]:
            request.wait_s = timeout_s           # the REPLAY and what waits behind it
        self.requests = requests
        index = requests.index(self.replay)
        self.replay_index = index                 # its answer's place in scratch: after the writes'
        self.replay_slot = sum(request.into is None for request in requests[:index])
        self.done_bytes = replay_answer_length(reads)
        self.pieces, self.scratch = link._pieces(requests, collect_stale=True) if link._bulk is not None \
            else (None, None)


class _Counted:
    """A counter of ``UdpLink``'s: what its Python window counted plus what the compiled
    calls added to the link's shared struct (compiled code submits jobs with no Python
    in between, so the struct is where they count)."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, link, owner=None):
        if link is None:
            return self
        return link.__dict__[self.name] + getattr(link._shared, self.name)

    def __set__(self, link, value) -> None:
        link.__dict__[self.name] = value - getattr(link._shared, self.name)


class UdpLink(LinkSession):
    """A ``LinkSession`` over a connected UDP socket: one frame a datagram, windowed bulk.

    ``sock`` is a UDP socket connected to the bridge (``open`` makes one); ``name`` names
    it in messages (``udp://192.168.1.50:21337``). ``timeout_s`` is one answer's wait,
    ``retries`` how many times a request is resent before the link gives up, ``window``
    how many requests a bulk transfer keeps in flight. Single requests (HELLO, registers,
    IRQ) are ``LinkSession``'s stop and wait. Besides the session's counters: ``answers``
    (accepted, by command: ``exchanges``), ``resent``, ``malformed`` (datagrams that are
    not one well-formed frame), ``verified`` (overtaken MEM_WRITEs found in place by
    reading back), ``bytes_sent`` and ``bytes_received`` (UDP payload bytes).
    """

    def __init__(self, sock: socket.socket, *, name: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 retries: int = DEFAULT_RETRIES, window: int = WINDOW,
                 clock: Callable[[], float] | None = None):
        # What every compiled call runs with (_shared_link; job_entry hands it to compiled
        # code): the settings, the seq counters (the one place they are kept: _write_seq
        # and _read_seq read them), the counters the calls add and their STALE list.
        self._shared = _Link()
        self._by_command = np.zeros(256, np.uint64)          # its answers by command
        self._shared.by_command = self._by_command.ctypes.data
        self._shared_overtaken = np.zeros(0, np.int64)
        self._seq_known = False
        self._shared_settings: tuple | None = None
        self._limits_of: tuple = (None, None)              # (a HELLO, its limits): ``limits``
        super().__init__(timeout_s=timeout_s, retries=retries, clock=clock, name=name)
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 1024:
            raise ValueError(f"{name}: window={window!r} must be an integer in 1..1024")
        self.sock = sock
        self.window = window
        self._buffer = bytearray(_MAX_DATAGRAM)         # every datagram is received into it
        self._view = memoryview(self._buffer)
        self._poller = None
        self._kernel_wait_s = math.inf                  # SO_RCVTIMEO now (inf: to be set)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                if sock.getsockopt(socket.SOL_SOCKET, option) < _SOCKET_BUFFER:
                    sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
            except OSError:
                pass                                    # the system's limit stays: windows still work
        if _KERNEL_WAITS:
            sock.settimeout(None)                       # blocking: a send is one system call
            self._poller = select.poll()
            self._poller.register(sock, select.POLLIN)
        self._foreign = 0                        # datagrams of no link frame, this request
        self._refused = False                    # an ICMP "port unreachable" came back
        self.answers = self.resent = self.malformed = self.verified = self.early = 0
        self.job_windows = True                  # False: a job as three exchanges (protocol 2.1's way)
        self.bytes_sent = self.bytes_received = 0
        self._exchanges: dict[Command, int] = {}
        # Bulk transfers in one compiled call (firmware/udp_bulk.c) where it builds, on the
        # monotonic clock it keeps (a caller's own clock keeps the Python window).
        self._bulk = bulk_library()[0] if clock is None and _KERNEL_WAITS else None

    frames, resent, answers, malformed, crc_errors, stale_frames, early, bytes_sent, bytes_received = (
        _Counted() for _ in range(9))

    @property
    def exchanges(self) -> dict[Command, int]:
        """Answers accepted, by command."""
        out = dict(self._exchanges)
        for command in np.flatnonzero(self._by_command).tolist():
            out[Command(command)] = out.get(Command(command), 0) + int(self._by_command[command])
        return out

    @property
    def _write_seq(self) -> int | None:
        return self._shared.write_seq if self._seq_known else None

    @_write_seq.setter
    def _write_seq(self, value: int | None) -> None:
        self._seq_known = value is not None
        if value is not None:
            self._shared.write_seq = value

    @property
    def _read_seq(self) -> int:
        return self._shared.read_seq

    @_read_seq.setter
    def _read_seq(self, value: int) -> None:
        self._shared.read_seq = value

    @classmethod
    def open(cls, address: str, default_host: str, default_port: int, **kwargs) -> "UdpLink":
        """A link to ``address`` (``parse_address``'s forms, with its defaults).
        ``LinkOpenError`` names the address and why: a malformed text, a host name that
        does not resolve, no route. Nothing is sent: ``hello`` checks the bridge."""
        host, port = parse_address(address, default_host, default_port)
        name = f"udp://{host}:{port}"
        try:
            family, kind, proto, _, where = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)[0]
        except (socket.gaierror, UnicodeError) as error:
            raise LinkOpenError(name, f"cannot resolve {host!r} ({getattr(error, 'strerror', None) or error})") \
                from None
        sock = socket.socket(family, kind, proto)
        try:
            sock.connect(where)
        except OSError as error:
            sock.close()
            raise LinkOpenError(name, error.strerror or str(error)) from None
        return cls(sock, name=name, **kwargs)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    # -- datagrams -------------------------------------------------------------------
    _encode = staticmethod(_encode_request)

    def _send(self, frame: bytes, what: str) -> None:
        try:
            self.sock.send(frame)
        except ConnectionRefusedError:
            self._refused = True     # an ICMP "port unreachable" for an earlier datagram: a loss
        except OSError as error:
            raise LinkPortError(f"{self.name}: {what}: could not send ({error.strerror or error}); "
                                "is the network up?") from error
        self.bytes_sent += len(frame)

    def _recv(self, deadline: float) -> int:
        """Receive one datagram into ``_buffer`` by ``deadline`` (on ``clock``): its size, or
        -1 when none came (past the deadline: only one already waiting is taken)."""
        remaining = deadline - self.clock()
        sock = self.sock
        try:
            if not _KERNEL_WAITS:
                sock.settimeout(max(remaining, 0.0))
                size = sock.recv_into(self._buffer)
            elif remaining >= _KERNEL_WAIT_MIN_S:
                if self._kernel_wait_s + _KERNEL_SLACK_S > remaining:
                    # Half the time left: kept for many receives while answers flow.
                    self._set_kernel_wait((remaining - _KERNEL_SLACK_S) / 2)
                size = sock.recv_into(self._buffer)
            elif remaining > 0 and not self._poller.poll(math.ceil(remaining * 1000)):
                return -1
            else:
                size = sock.recv_into(self._buffer, 0, socket.MSG_DONTWAIT)
        except (socket.timeout, BlockingIOError):
            return -1
        except ConnectionRefusedError:
            self._refused = True
            return -1
        except OSError as error:
            raise LinkPortError(f"{self.name}: the socket failed while waiting for an answer "
                                f"({error.strerror or error})") from error
        self.bytes_received += size
        return size

    def _set_kernel_wait(self, seconds: float) -> None:
        whole = int(seconds)                    # seconds >= _KERNEL_SLACK_S / 2: never 0, which waits forever
        micros = int((seconds - whole) * 1e6)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", whole, micros))
        self._kernel_wait_s = whole + micros / 1e6

    def _parse(self, size: int) -> tuple[int, int, int, int] | None:
        """``(cmd, seq, status, payload end)`` of the datagram of ``size`` bytes in ``_buffer``
        (its payload is ``_buffer[_RESPONSE_PAYLOAD:end]``); None (counted) when it is not one
        response frame (``decode_response``'s rules, in its order); ``_BadCrc`` (counted) when
        it is one whose CRC failed."""
        buffer = self._buffer
        if size < RESPONSE_OVERHEAD or buffer[0] != RESPONSE_SYNC:
            self.malformed += 1
            self._foreign += 1
            return None
        _, cmd, seq, status, length = _RESPONSE_HEAD.unpack_from(buffer)
        end = _RESPONSE_PAYLOAD + length
        if size != end + CRC_BYTES:
            self.malformed += 1
            self._foreign += 1
            return None
        if _crc16(self._view[SYNC_BYTES:end], 0xFFFF) != _CRC.unpack_from(buffer, end)[0]:
            self.malformed += 1
            self.crc_errors += 1
            raise _BadCrc
        return cmd, seq, status, end

    def _receive(self, command: Command, seq: int, deadline: float, what: str) -> tuple[Status, bytes]:
        """The answer to ``(command, seq)`` by ``deadline``, other datagrams dropped."""
        while True:
            size = self._recv(deadline)
            if size < 0:
                if self.clock() >= deadline:
                    raise self._no_answer(what, 1)
                continue
            try:
                parsed = self._parse(size)
            except _BadCrc:
                raise LinkCrcError(f"{self.name}: {what}: the answer failed its CRC; a damaged "
                                   "network path?") from None
            if parsed is None:
                continue
            got_command, got_seq, status, end = parsed
            if got_command != command or got_seq != seq:
                self.stale_frames += 1
                continue
            known = _STATUSES.get(status)
            if known is None:
                raise LinkWrongDevice(f"{self.name}: {what}: unknown status {status:#x} in "
                                      "the answer: not a Systole bridge?")
            self._answered(command)
            return known, bytes(self._view[_RESPONSE_PAYLOAD:end])

    def _resync(self) -> None:
        """Drop every datagram waiting in the socket."""
        while self._recv(-math.inf) >= 0:
            pass

    def _answered(self, command: Command) -> None:
        self.answers += 1
        self._exchanges[command] = self._exchanges.get(command, 0) + 1

    def _no_answer(self, what: str, sends: int) -> LinkTimeout:
        waited = f"{sends} send{'s' if sends > 1 else ''} of {self.timeout_s:g} s"
        if self._foreign:
            error = LinkTimeout(f"{self.name}: {what}: no answer ({waited}); {self._foreign} datagrams "
                                "that are not link frames arrived: not a Systole bridge at this address?")
        elif self._refused:
            error = LinkTimeout(f"{self.name}: {what}: no answer ({waited}); the host answers 'port "
                                "unreachable': is the port right?")
        else:
            error = LinkTimeout(f"{self.name}: {what}: no answer ({waited}); is the board on, its "
                                "bitstream loaded, and the address right?")
        error.foreign = self._foreign
        return error

    # -- stop and wait ---------------------------------------------------------------
    def transact(self, command: Command, address: int, length: int, payload: bytes = b"",
                 wait_s: float = 0.0) -> bytes:
        """``LinkSession.transact``; a timeout names every send (``retries + 1``) and what came back."""
        self._foreign, self._refused = 0, False
        try:
            return super().transact(command, address, length, payload, wait_s)
        except LinkTimeout as error:
            if getattr(error, "foreign", None) is None:
                raise
            timeout = self._no_answer(_describe(Command(command), address, length), self.retries + 1)
            raise timeout from None

    def hello(self) -> HelloInfo:
        """``LinkSession.hello``; datagrams that are not link frames, and nothing else, until
        the timeout mean ``LinkWrongDevice``."""
        try:
            return super().hello()
        except LinkTimeout as error:
            if getattr(error, "foreign", 0):
                raise LinkWrongDevice(f"{self.name}: something answers, but with no link frames: not "
                                      "a Systole bridge") from error
            raise

    # -- windows ---------------------------------------------------------------------
    def _exchange(self, requests: list[_Request], what: str, window: int | None = None,
                  collect_stale: bool = False) -> list[_Request]:
        """Send every request, at most ``window`` (default ``self.window``) in flight,
        until each has an answer to act on; return the MEM_WRITEs answered STALE (to
        check by reading back), with ``collect_stale`` every request answered STALE.

        A request without a frame is numbered (a write from the write counter) and framed
        when it is first sent. An answer is matched by ``(cmd, seq)``. A damaged copy
        (CRC, TRUNCATED) is sent again as it is; any other status but OK raises
        ``LinkDeviceError``. A request without an answer is resent after ``timeout_s``,
        ``retries`` times, then the link raises ``LinkTimeout`` (``LinkCrcError`` when only
        corrupted answers came back). With ``firmware/udp_bulk.c`` and no request numbered
        yet, the whole window is one compiled call (``_compiled_window``).
        """
        if self._bulk is not None and requests and not any(request.frame for request in requests):
            return self._compiled_window(requests, what, collect_stale)
        # The loop runs once per datagram: the socket, the clock and the codec are locals.
        send, clock, timeout_s, window = self.sock.send, self.clock, self.timeout_s, window or self.window
        recv, parse, view = self._recv, self._parse, self._view
        in_flight: OrderedDict[int, _Request] = OrderedDict()    # by cmd << 16 | seq, oldest deadline first
        overtaken: list[_Request] = []
        queue = list(reversed(requests))
        self._foreign, self._refused = 0, False
        self._early_waiting = 0                  # requests answered EARLY, not yet sent again
        frames = sent_bytes = 0
        try:
            while queue or in_flight:
                while queue and len(in_flight) < window:
                    request = queue.pop()
                    command = request.command
                    if not request.frame:
                        if command in STATE_CHANGING:
                            request.seq = self._next_write_seq()
                        else:
                            request.seq = self._next_read_seq()
                        request.frame = _encode_request(command, request.seq, request.address, request.length,
                                                        request.payload)
                        request.sends = 0
                    in_flight[command << 16 | request.seq] = request
                    frame = request.frame
                    try:
                        send(frame)
                    except OSError as error:
                        self._send_failed(error, what)
                    sent_bytes += len(frame)
                    frames += 1
                    request.sends += 1
                    request.deadline = clock() + timeout_s + request.wait_s
                oldest = next(iter(in_flight.values()))
                first_deadline = oldest.deadline        # no request in flight has an earlier one
                size = recv(first_deadline)
                if size >= 0:
                    try:
                        parsed = parse(size)
                    except _BadCrc:
                        oldest.bad_answers += 1         # whose it was is unknown: its timeout resends it
                        parsed = None
                    if parsed is not None:
                        command, seq, status, end = parsed
                        request = in_flight.pop(command << 16 | seq, None)
                        if request is None:
                            self.stale_frames += 1
                        elif status == _EARLY:          # its predecessor has not run yet:
                            request.early = True        # sent again when that one answers
                            request.early_answers += 1
                            in_flight[command << 16 | seq] = request
                            self.early += 1
                            self._early_waiting += 1
                        elif status == _OK:
                            into = request.into
                            if into is not None and end - _RESPONSE_PAYLOAD == len(into):
                                into[:] = view[_RESPONSE_PAYLOAD:end]
                                request.answer = into
                            else:
                                request.answer = bytes(view[_RESPONSE_PAYLOAD:end])
                            self._answered(request.command)
                            if self._early_waiting and request.command in STATE_CHANGING:
                                self._release_early(request.seq, in_flight, what)
                        else:
                            self._refused_answer(request, status, in_flight, overtaken, what, collect_stale)
                    if clock() < first_deadline:
                        continue                        # no deadline has passed
                now = clock()
                while in_flight:
                    request = next(iter(in_flight.values()))
                    if request.deadline > now:
                        break
                    if request.sends > self.retries:
                        raise self._gave_up(request, what)
                    self._transmit(request, in_flight, what, again=True)
        finally:
            self.frames += frames
            self.bytes_sent += sent_bytes
        return overtaken

    def _release_early(self, seq: int, in_flight: OrderedDict, what: str) -> None:
        """The request numbered after ``seq``, answered EARLY, goes again now that ``seq``
        has run (an AFTER request runs only right after its predecessor)."""
        following = (seq + 1) % SEQ_MODULUS
        for request in in_flight.values():
            if request.seq == following and request.early and request.command in STATE_CHANGING:
                request.early = False
                self._early_waiting -= 1
                self._transmit(request, in_flight, what, again=True)
                return

    def _refused_answer(self, request: _Request, status: int, in_flight: OrderedDict, overtaken: list,
                        what: str, collect_stale: bool = False) -> None:
        """Act on an answer other than OK to ``request`` (no longer in flight)."""
        known = _STATUSES.get(status)
        if known is None:
            raise LinkWrongDevice(f"{self.name}: {self._what(request, what)}: unknown status "
                                  f"{status:#x} in the answer: not a Systole bridge?")
        if known in _DAMAGED:
            self._transmit(request, in_flight, what, again=True)
        elif known == Status.STALE and (collect_stale or request.command == Command.MEM_WRITE):
            overtaken.append(request)
        else:
            raise LinkDeviceError(request.command, request.address, known, where=self.name)

    def _send_failed(self, error: OSError, what: str) -> None:
        """``_send``'s handling of a failed send: a refusal is a loss, anything else fatal."""
        if isinstance(error, ConnectionRefusedError):
            self._refused = True
            return
        raise LinkPortError(f"{self.name}: {what}: could not send ({error.strerror or error}); "
                            "is the network up?") from error

    def _transmit(self, request: _Request, in_flight: OrderedDict, what: str, again: bool = False) -> None:
        key = request.command << 16 | request.seq
        in_flight.pop(key, None)
        in_flight[key] = request                 # the newest deadline goes last
        self._send(request.frame, what)
        self.frames += 1
        self.resent += 1 if again else 0
        request.sends += 1
        request.deadline = self.clock() + self.timeout_s + request.wait_s

    def _what(self, request: _Request, what: str) -> str:
        one = _describe(request.command, request.address, request.length)
        return one if one == what else f"{one} (of {what})"

    def _gave_up(self, request: _Request, what: str) -> LinkError:
        if request.early_answers:
            return LinkDeviceError(request.command, request.address, Status.EARLY,
                                   where=f"{self.name} ({request.early_answers} times in {request.sends} sends: "
                                         "the request numbered before it never ran)")
        if request.bad_answers:
            return LinkCrcError(f"{self.name}: {self._what(request, what)}: {request.bad_answers} answers "
                                f"failed their CRC ({request.sends} sends of {self.timeout_s:g} s); a "
                                "damaged network path?")
        return self._no_answer(self._what(request, what), request.sends)

    # -- a job in one window (protocol 2.2) -------------------------------------------
    @property
    def pipelines_jobs(self) -> bool:
        """The bridge takes a job's A, REPLAY and C in one window (``run_window``):
        REPLAY and MEM_READ_AFTER (protocol 2.2)."""
        return self.job_windows and self.can_replay and self.info.version >= AFTER_VERSION

    def job_io(self, **fields) -> JobIo:
        """A job's memory traffic as the driver describes it (``LinkRegisterBus.job_io``)."""
        return JobIo(**fields)

    def prepare_job(self, io: JobIo, *, status_offset: int, busy_mask: int, write_offsets: np.ndarray,
                    write_values: np.ndarray, ctrl_offset: int, start: int, done_mask: int, timeout_s: float,
                    read_offsets: np.ndarray) -> "JobWindow":
        """``io``'s job as one window, prepared to run again and again (``LinkRegisterBus``
        keeps it on ``io`` with the driver's plan; it holds while ``info`` is this bridge's
        HELLO): A's MEM_WRITE and MEM_WRITE_AFTERs from ``JobWindow.a``, the register
        sequence (``write_offsets``/``write_values`` uint32, then ``read_offsets``) as a
        REPLAY_AFTER, and up to ``JOB_READS_BEHIND`` MEM_READ_AFTERs into ``JobWindow.c``.
        With ``firmware/udp_bulk.c`` the window's compiled form is bound to ``io`` for
        ``submit`` (and compiled callers: ``job_entry``)."""
        payload = self._replay_payload(
            status_offset=status_offset, busy_mask=busy_mask,
            writes=list(zip(write_offsets.tolist(), write_values.tolist())), ctrl_offset=ctrl_offset,
            start=start, done_mask=done_mask, timeout_s=timeout_s, reads=read_offsets.tolist())
        job = JobWindow(self, io.a_buf, io.m * io.a_stride, io.c_buf, io.c_bytes, payload, len(read_offsets),
                        timeout_s)
        if io.window is not None:                # jobs bound before point into it: kept alive
            io.retired.append(io.window)
        io.requests = 0                          # no compiled form: systole_udp_job refuses io
        if job.pieces is not None:
            io.a_stage, io.c_stage, io.requests = job.a_pointer, job.c_pointer, ctypes.addressof(job.pieces)
            io.count, io.replay, io.behind = len(job.requests), job.replay_index, job.rest
            io.max_payload = self.info.max_payload
            self._room(len(job.requests))
        io.window = job
        return job

    def job_entry(self) -> tuple | None:
        """``(systole_udp_job's address, the link's shared struct's address, what they
        hold for)`` for compiled code that submits prepared jobs itself
        (``host.accel.driver.Driver.compiled_job``: it calls the address with the plan's
        words and a ``JobIo.bound``, as ``firmware/replay.c``'s ``systole_job`` on the
        KV260); None without ``firmware/udp_bulk.c``, with a caller's own clock, or
        without job windows. The struct keeps the seq counters, so Python requests and
        compiled jobs number alike; the third item changes whenever a bound job would be
        stale (the socket or the settings, or a new HELLO's limits)."""
        if self._bulk is None or not self.pipelines_jobs:
            return None
        self._shared_link()
        address = ctypes.cast(self._bulk.systole_udp_job, ctypes.c_void_p).value
        return address, ctypes.addressof(self._shared), (self._shared_settings, self.limits)

    @property
    def limits(self) -> HelloInfo:
        """The bridge's HELLO without its state (``last_seq``, the ``irq`` line): what a
        prepared window depends on (its chunking, its REPLAY's timeout in cycles). A new
        HELLO with the same limits (after a STALE write) keeps every window, and every
        job bound to one."""
        info = self.info
        if self._limits_of[0] is not info:
            self._limits_of = (info, dataclasses.replace(info, last_seq=0, irq=False))
        return self._limits_of[1]

    def submit(self, io: JobIo, read_values: int, read_count: int) -> int:
        """Run ``io``'s prepared job in one call of ``firmware/udp_bulk.c``'s
        ``systole_udp_job``: A from ``io.a`` staged, the window (``run_window``'s rules),
        a read of C made again where its answer was lost, C's rest read, C copied to
        ``io.c``, the read values to ``read_values`` (uint32 at that address). 1 done, 0
        the bridge's timeout, -1 busy; a link failure raises its one-line error."""
        done = self._bulk.systole_udp_job(ctypes.addressof(self._shared_link()), 0, 0, None, None, 0, 0, 0, 0, 0,
                                          None, read_count, read_values, ctypes.addressof(io))
        if done == _JOB_LINK_FAILED:
            self.job_failed(io)
        return done

    def job_failed(self, io: JobIo) -> None:
        """Raise the error of a ``systole_udp_job`` that returned -3 with ``io`` (a bound
        copy or the io itself): what ``run_window`` raises for the same failure."""
        job: JobWindow = io.owner.window
        shared, result, what = self._shared, io.result, job.what
        if result == _JOB_UNPREPARED:
            raise LinkError(f"{self.name}: {what}: its window was prepared without firmware/udp_bulk.c; "
                            "prepare it again (LinkRegisterBus.prepare_job)")
        self._foreign, self._refused = shared.foreign, bool(shared.refused)
        if result == _JOB_STALE:             # its repeat would read again: a STALE one is not ours
            raise LinkDeviceError(Command.REPLAY_AFTER, job.replay.address, Status.STALE, where=self.name)
        if result == _JOB_ANSWER:
            at = job.replay_slot * self.info.max_payload
            self._replay_answer(job, job.scratch[at:at + job.pieces[job.replay_index].answered].tobytes())
            raise AssertionError("systole_udp_job refused a REPLAY answer that decodes")
        if io.stage == 0:
            request = job.requests.__getitem__
        elif io.stage == 1:                  # a read of C made again
            def request(index: int) -> _Request:
                return _Request(Command.MEM_READ, job.requests[index].address, job.requests[index].length)
        else:                                # C's rest, after the REPLAY's answer
            chunks = list(self._chunks(job.c_address + job.rest, len(job.c) - job.rest))

            def request(index: int) -> _Request:
                return _Request(Command.MEM_READ, chunks[index][0], chunks[index][2])
        self._compiled_failed(result, shared, request, what)
        raise AssertionError(f"systole_udp_job failed with result {result}, which is not a failure")

    def _shared_link(self) -> _Link:
        """The struct every compiled call runs with, its settings this link's now (writes
        numbered after HELLO's)."""
        if self._write_seq is None:
            self.hello()
        settings = (self.sock.fileno(), self.retries, self.timeout_s, self.window)
        if self._shared_settings != settings:
            self._shared_settings = settings
            link = self._shared
            link.fd, link.retries, link.seq_modulus = self.sock.fileno(), self.retries, SEQ_MODULUS
            link.timeout_ns, link.window = int(self.timeout_s * 1e9), self.window
            link.request_sync, link.response_sync, link.status_ok = REQUEST_SYNC, RESPONSE_SYNC, _OK
            link.status_crc, link.status_truncated = int(Status.CRC), int(Status.TRUNCATED)
            link.status_stale, link.status_early = int(Status.STALE), _EARLY
        return self._shared

    def _room(self, count: int) -> None:
        """Room in the shared STALE list for a call of ``count`` requests."""
        if len(self._shared_overtaken) < count:
            self._shared_overtaken = np.zeros(max(count, 2 * len(self._shared_overtaken)), np.int64)
            self._shared.overtaken = self._shared_overtaken.ctypes.data

    def _after_call(self, link: _Link) -> None:
        """What a compiled call saw that the link's messages use (its counters and seq
        counters are already the link's)."""
        self._foreign, self._refused = link.foreign, bool(link.refused)

    def run_window(self, job: "JobWindow") -> tuple[ReplayResult, list[int]]:
        """Run a prepared job (protocol 2.2, "a job in one window" in
        ``hdl.spec.link_protocol``): A from ``job.a``, the REPLAY_AFTER, C's first
        MEM_READ_AFTERs, numbered in that order and sent without waiting. The bridge runs
        each at most once and only right after the one before it (an early one is
        answered EARLY and sent again when its predecessor has answered, or at its
        deadline), so the job runs once, on all of A, and C is read after it. One
        answered STALE ran (only its answer was lost): a read of C is made again as a
        plain MEM_READ. C's remaining datagrams are read once the REPLAY has answered.
        Returns the REPLAY's result and its read values; ``job.c`` holds C when DONE.
        (``submit`` runs the same job, A and C included, in one compiled call.)"""
        requests, what = job.requests, job.what
        for request in requests:
            request.frame = b""
            request.early, request.early_answers, request.bad_answers = False, 0, 0
        stale = self._exchange(requests, what, min(self.window, len(requests)), collect_stale=True)
        for request in stale:                # a newer request ran, and only right after this one: it ran
            if request.command == Command.MEM_READ_AFTER:     # its answer was lost: read again
                request.into[:] = self._read_window([(request.address, request.length)], what)[0]
                request.answer = request.into
            elif request is job.replay:      # its repeat reads again: a STALE one is not ours
                raise LinkDeviceError(request.command, request.address, Status.STALE, where=self.name)
        self._check_answers(job.behind, what)
        result, values = self._replay_answer(job, job.replay.answer)
        if result == ReplayResult.DONE and job.rest < len(job.c):
            job.c[job.rest:] = np.frombuffer(self.read_mem(job.c_address + job.rest, len(job.c) - job.rest), np.uint8)
        return result, values

    def _replay_answer(self, job: "JobWindow", answer) -> tuple[ReplayResult, list[int]]:
        """``decode_replay_answer`` of a job's REPLAY answer (bytes or uint8 array), a DONE
        one of the expected length read in place."""
        if len(answer) == job.done_bytes and answer[0] == _DONE:
            return ReplayResult.DONE, np.frombuffer(answer, "<u4", job.reads, 1).tolist()
        try:
            return decode_replay_answer(bytes(answer), job.reads)
        except ValueError as exc:
            raise LinkWrongDevice(f"{self.name}: malformed REPLAY answer ({exc})") from None

    @property
    def compiled_bulk(self) -> bool:
        """Whether ``write_mem`` and ``read_mem`` run in ``firmware/udp_bulk.c``."""
        return self._bulk is not None

    def write_mem(self, address: int, data) -> None:
        """Write ``data`` to device memory at ``address`` (any alignment, any size), up to
        ``window`` datagrams in flight; each byte is written by exactly one executed request
        (or found already in place after an overtaken one, see the module docstring)."""
        view = memoryview(data).cast("B")
        what = f"MEM_WRITE of {len(view)} bytes at {address:#x}"
        if self._bulk is not None and len(view):
            overtaken = self._compiled(Command.MEM_WRITE, address, view, what)
        else:
            overtaken = self._exchange([_Request(Command.MEM_WRITE, start, length, view[offset:offset + length])
                                        for start, offset, length in self._chunks(address, len(view))], what)
        while overtaken:
            requests = []
            for request in overtaken:
                if self._read_window([(request.address, request.length)], what)[0] == request.payload:
                    self.verified += 1
                else:
                    request.frame = b""             # a new seq: the old one can never execute now
                    requests.append(request)
            overtaken = self._exchange(requests, what) if requests else []

    def read_mem(self, address: int, nbytes: int) -> bytes:
        """Read ``nbytes`` of device memory at ``address``, up to ``window`` datagrams in flight."""
        out = bytearray(nbytes)
        view = memoryview(out)
        what = f"MEM_READ of {nbytes} bytes at {address:#x}"
        if self._bulk is not None and nbytes:
            self._compiled(Command.MEM_READ, address, view, what)
            return bytes(out)
        requests = [_Request(Command.MEM_READ, start, length, into=view[offset:offset + length])
                    for start, offset, length in self._chunks(address, nbytes)]
        self._exchange(requests, what)
        self._check_answers(requests, what)
        return bytes(out)

    def _compiled(self, command: Command, address: int, view: memoryview, what: str) -> list[_Request]:
        """``_exchange`` of the whole range in one call of ``firmware/udp_bulk.c`` (the same
        rules, the same counters); the MEM_WRITEs answered STALE, as ``_exchange`` returns
        them; a failure raises what ``_exchange`` raises for it."""
        writes = command in STATE_CHANGING
        link = self._shared_link()
        window = self.info.max_payload
        data = np.frombuffer(view, np.uint8)
        if writes:
            self._room(1 + -(-max(len(view) - (window - address % window), 0) // window))
        result = self._bulk.systole_udp_bulk(ctypes.byref(link), int(command), int(writes), window, address,
                                             data.ctypes.data, len(view))
        self._after_call(link)
        chunks = list(self._chunks(address, len(view))) if result != _BULK_DONE or link.overtaken_count else []

        def request(index: int) -> _Request:
            start, offset, length = chunks[index]
            return _Request(command, start, length, view[offset:offset + length] if writes else b"")

        self._compiled_failed(result, link, request, what)
        return [request(int(index)) for index in self._shared_overtaken[:link.overtaken_count]]

    def _compiled_window(self, requests: list[_Request], what: str, collect_stale: bool) -> list[_Request]:
        """``_exchange`` of ``requests`` (none numbered yet) in one call of
        ``firmware/udp_bulk.c``: the same rules (EARLY included), the same counters, the
        same return and errors. A request's answer lands in its ``into`` or, without one,
        in ``answer``."""
        pieces, scratch = self._pieces(requests, collect_stale)
        link = self._call_pieces(pieces, requests, what)
        return self._stale_pieces(link, pieces, scratch, requests)

    def _pieces(self, requests: list[_Request], collect_stale: bool) -> tuple[ctypes.Array, np.ndarray]:
        """``requests`` as ``firmware/udp_bulk.c``'s, and the buffer the answers of those
        without an ``into`` land in (``max_payload`` bytes each). The pieces point into
        the requests' payloads and ``into`` buffers, which must stay alive while they are used."""
        pieces = (_Piece * len(requests))()
        room = self.info.max_payload
        scratch = np.empty(room * sum(request.into is None for request in requests), np.uint8)
        spare = scratch.ctypes.data
        for piece, request in zip(pieces, requests):
            command = request.command
            piece.command, piece.address, piece.length = command, request.address, request.length
            piece.numbered = command in STATE_CHANGING
            piece.stale_ok = collect_stale or command == Command.MEM_WRITE
            piece.wait_ns = int(request.wait_s * 1e9)
            if request.payload:
                piece.payload, piece.payload_bytes = _address(request.payload), len(request.payload)
            if request.into is not None:
                piece.into, piece.into_bytes, piece.exact = _address(request.into), len(request.into), 1
            else:
                piece.into, piece.into_bytes = spare, room
                spare += room
        return pieces, scratch

    def _call_pieces(self, pieces: ctypes.Array, requests: list[_Request], what: str) -> _Link:
        """The call itself (``systole_udp_window``), a failure raised as ``_exchange`` raises it."""
        link = self._shared_link()
        self._room(len(requests))
        result = self._bulk.systole_udp_window(ctypes.byref(link), pieces, len(requests))
        self._after_call(link)
        self._compiled_failed(result, link, requests.__getitem__, what)
        return link

    def _stale_pieces(self, link: _Link, pieces: ctypes.Array, scratch: np.ndarray,
                      requests: list[_Request]) -> list[_Request]:
        """After a call: each request's answer set (its ``into``, or ``answer`` from
        ``scratch``); the requests answered STALE."""
        stale = set(self._shared_overtaken[:link.overtaken_count].tolist()) if link.overtaken_count else ()
        spare, room = 0, self.info.max_payload
        for index, request in enumerate(requests):
            if request.into is None:
                if index not in stale:
                    request.answer = scratch[spare:spare + pieces[index].answered].tobytes()
                spare += room
            elif index not in stale:
                request.answer = request.into
        return [requests[index] for index in sorted(stale)]

    def _compiled_failed(self, result: int, link: _Link, request: Callable[[int], _Request], what: str) -> None:
        """Raise what the Python window raises for a compiled call's ``result``
        (``request(index)`` is the request it names)."""
        if result == _BULK_DONE:
            return
        if result in (_BULK_GAVE_UP, _BULK_REFUSED, _BULK_WRONG_LENGTH):
            failed = request(link.failed)
            failed.sends, failed.bad_answers = link.failed_sends, link.failed_bad_answers
            failed.early_answers = link.failed_early_answers
        if result == _BULK_GAVE_UP:
            raise self._gave_up(failed, what)
        if result == _BULK_REFUSED:
            self._refused_answer(failed, link.failed_status, OrderedDict(), [], what)
        if result == _BULK_WRONG_LENGTH:
            raise LinkWrongDevice(f"{self.name}: {self._what(failed, what)} returned {link.failed_status} bytes")
        if result == _BULK_SOCKET:
            raise LinkPortError(f"{self.name}: {what}: the socket failed ({os.strerror(link.failed_status)}); "
                                "is the network up?")
        if result == _BULK_MEMORY:
            raise MemoryError(f"{self.name}: {what}: no memory for the transfer's requests")
        raise AssertionError(f"firmware/udp_bulk.c returned {result}")

    def _read_window(self, ranges: list[tuple[int, int]], what: str) -> list[bytes]:
        requests = [_Request(Command.MEM_READ, start, length) for start, length in ranges]
        self._exchange(requests, what)
        self._check_answers(requests, what)
        return [request.answer for request in requests]

    def _check_answers(self, requests: list[_Request], what: str) -> None:
        for request in requests:
            if len(request.answer) != request.length:
                raise LinkWrongDevice(f"{self.name}: {self._what(request, what)} returned "
                                      f"{len(request.answer)} bytes")
