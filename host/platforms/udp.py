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
is 8.8 us of wire; see ``host.perf.ethernet``) while fitting the default socket buffers.

Every error is one line naming the address, the request and the wait, and derives from
``LinkError`` as ``SerialLink``'s do. ``parse_address`` reads ``192.168.1.50``,
``192.168.1.50:21337``, ``udp://host[:port]`` or ``udp://`` (the defaults it is given);
``is_udp_address`` tells such a text from a serial port or pyserial URL.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from hdl.spec.link_protocol import (
    Command,
    HelloInfo,
    Status,
    decode_response,
    encode_request,
)

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

__all__ = ["UdpLink", "WINDOW", "DEFAULT_TIMEOUT_S", "DEFAULT_RETRIES", "parse_address", "is_udp_address",
           "LinkError", "LinkOpenError", "LinkTimeout", "LinkCrcError", "LinkWrongDevice", "LinkDeviceError",
           "LinkPortError"]

WINDOW = 32                 # requests in flight in a bulk transfer (see the module docstring)
DEFAULT_TIMEOUT_S = 0.1     # one answer's wait on a LAN; a board answers in microseconds
DEFAULT_RETRIES = 9         # sends after the first: 1 s in all before giving up
_MAX_DATAGRAM = 65536
# Answers meaning this copy did not arrive intact (not executed): sent again as it is.
_DAMAGED = (Status.CRC, Status.TRUNCATED)
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


@dataclass
class _Request:
    """One request of an exchange: what to send, and what came back."""

    command: Command
    address: int
    length: int
    payload: bytes = b""
    seq: int = 0
    frame: bytes = b""
    sends: int = 0
    deadline: float = 0.0
    answer: bytes = b""
    bad_answers: int = 0           # answers to it that failed their CRC (seen as malformed)


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
        super().__init__(timeout_s=timeout_s, retries=retries, clock=clock, name=name)
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 1024:
            raise ValueError(f"{name}: window={window!r} must be an integer in 1..1024")
        self.sock = sock
        self.window = window
        self._buffer = bytearray(_MAX_DATAGRAM)
        self._foreign = 0                        # datagrams of no link frame, this request
        self._refused = False                    # an ICMP "port unreachable" came back
        self.answers = self.resent = self.malformed = self.verified = 0
        self.bytes_sent = self.bytes_received = 0
        self.exchanges: dict[Command, int] = {}

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
    def _send(self, frame: bytes, what: str) -> None:
        try:
            self.sock.send(frame)
        except ConnectionRefusedError:
            self._refused = True     # an ICMP "port unreachable" for an earlier datagram: a loss
        except OSError as error:
            raise LinkPortError(f"{self.name}: {what}: could not send ({error.strerror or error}); "
                                "is the network up?") from error
        self.bytes_sent += len(frame)

    def _datagram(self, timeout_s: float) -> bytes | None:
        """One datagram, or None when none arrives within ``timeout_s`` (0: only one waiting)."""
        try:
            self.sock.settimeout(max(timeout_s, 0.0))
            size = self.sock.recv_into(self._buffer)
        except (socket.timeout, BlockingIOError):
            return None
        except ConnectionRefusedError:
            self._refused = True
            return None
        except OSError as error:
            raise LinkPortError(f"{self.name}: the socket failed while waiting for an answer "
                                f"({error.strerror or error})") from error
        self.bytes_received += size
        return bytes(self._buffer[:size])

    def _decode(self, datagram: bytes) -> tuple[dict, bytes] | None:
        """The answer in ``datagram``; None (counted) when it is not one well-formed frame,
        ``LinkCrcError`` when it is one whose CRC failed."""
        try:
            return decode_response(datagram)
        except ValueError as error:
            self.malformed += 1
            if "CRC" in str(error):
                self.crc_errors += 1
                raise LinkCrcError(f"{self.name}: an answer failed its CRC") from None
            self._foreign += 1
            return None

    def _receive(self, command: Command, seq: int, deadline: float, what: str) -> tuple[Status, bytes]:
        """The answer to ``(command, seq)`` by ``deadline``, other datagrams dropped."""
        while True:
            datagram = self._datagram(deadline - self.clock())
            if datagram is None:
                if self.clock() >= deadline:
                    raise self._no_answer(what, 1)
                continue
            try:
                decoded = self._decode(datagram)
            except LinkCrcError:
                raise LinkCrcError(f"{self.name}: {what}: the answer failed its CRC; a damaged "
                                   "network path?") from None
            if decoded is None:
                continue
            fields, payload = decoded
            if (fields["cmd"], fields["seq"]) != (command, seq):
                self.stale_frames += 1
                continue
            try:
                status = Status(fields["status"])
            except ValueError:
                raise LinkWrongDevice(f"{self.name}: {what}: unknown status {fields['status']:#x} in "
                                      "the answer: not a Systole bridge?") from None
            self._answered(command)
            return status, payload

    def _resync(self) -> None:
        """Drop every datagram waiting in the socket."""
        while self._datagram(0) is not None:
            pass

    def _answered(self, command: Command) -> None:
        self.answers += 1
        self.exchanges[command] = self.exchanges.get(command, 0) + 1

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
    def _number(self, request: _Request) -> None:
        """Give ``request`` a fresh seq (a write's from the write counter) and its frame."""
        request.seq = self._next_write_seq() if request.command.changes_state else self._next_read_seq()
        request.frame = encode_request(request.command, request.seq, request.address, request.length,
                                       request.payload)
        request.sends = 0

    def _exchange(self, requests: list[_Request], what: str) -> list[_Request]:
        """Send every request, at most ``window`` in flight, until each has an answer to
        act on; return the MEM_WRITEs answered STALE (to check by reading back).

        An answer is matched by ``(cmd, seq)``. A damaged copy (CRC, TRUNCATED) is sent
        again as it is; any other status but OK raises ``LinkDeviceError``. A request
        without an answer is resent after ``timeout_s``, ``retries`` times, then the link
        raises ``LinkTimeout`` (``LinkCrcError`` when only corrupted answers came back).
        """
        in_flight: OrderedDict[tuple[int, int], _Request] = OrderedDict()   # oldest deadline first
        overtaken: list[_Request] = []
        queue = list(reversed(requests))
        self._foreign, self._refused = 0, False
        while queue or in_flight:
            while queue and len(in_flight) < self.window:
                request = queue.pop()
                if not request.frame:
                    self._number(request)
                self._transmit(request, in_flight, what)
            oldest = next(iter(in_flight.values()))
            datagram = self._datagram(oldest.deadline - self.clock())
            if datagram is not None:
                self._accept(datagram, in_flight, overtaken, oldest, what)
            now = self.clock()
            while in_flight:
                request = next(iter(in_flight.values()))
                if request.deadline > now:
                    break
                if request.sends > self.retries:
                    raise self._gave_up(request, what)
                self._transmit(request, in_flight, what, again=True)
        return overtaken

    def _accept(self, datagram: bytes, in_flight: OrderedDict, overtaken: list, oldest: _Request,
                what: str) -> None:
        """Act on one datagram in a window."""
        try:
            decoded = self._decode(datagram)
        except LinkCrcError:
            oldest.bad_answers += 1          # whose it was is unknown: its timeout resends it
            return
        if decoded is None:
            return
        fields, payload = decoded
        request = in_flight.pop((fields["cmd"], fields["seq"]), None)
        if request is None:
            self.stale_frames += 1
            return
        try:
            status = Status(fields["status"])
        except ValueError:
            raise LinkWrongDevice(f"{self.name}: {self._what(request, what)}: unknown status "
                                  f"{fields['status']:#x} in the answer: not a Systole bridge?") from None
        if status in _DAMAGED:
            self._transmit(request, in_flight, what, again=True)
        elif status == Status.STALE and request.command == Command.MEM_WRITE:
            overtaken.append(request)
        elif status != Status.OK:
            raise LinkDeviceError(request.command, request.address, status, where=self.name)
        else:
            request.answer = payload
            self._answered(request.command)

    def _transmit(self, request: _Request, in_flight: OrderedDict, what: str, again: bool = False) -> None:
        key = (int(request.command), request.seq)
        in_flight.pop(key, None)
        in_flight[key] = request                 # the newest deadline goes last
        self._send(request.frame, what)
        self.frames += 1
        self.resent += 1 if again else 0
        request.sends += 1
        request.deadline = self.clock() + self.timeout_s

    def _what(self, request: _Request, what: str) -> str:
        one = _describe(request.command, request.address, request.length)
        return one if one == what else f"{one} (of {what})"

    def _gave_up(self, request: _Request, what: str) -> LinkError:
        if request.bad_answers:
            return LinkCrcError(f"{self.name}: {self._what(request, what)}: {request.bad_answers} answers "
                                f"failed their CRC ({request.sends} sends of {self.timeout_s:g} s); a "
                                "damaged network path?")
        return self._no_answer(self._what(request, what), request.sends)

    def write_mem(self, address: int, data) -> None:
        """Write ``data`` to device memory at ``address`` (any alignment, any size), up to
        ``window`` datagrams in flight; each byte is written by exactly one executed request
        (or found already in place after an overtaken one, see the module docstring)."""
        view = memoryview(data).cast("B")
        what = f"MEM_WRITE of {len(view)} bytes at {address:#x}"
        requests = [_Request(Command.MEM_WRITE, start, length, bytes(view[offset:offset + length]))
                    for start, offset, length in self._chunks(address, len(view))]
        while requests:
            overtaken = self._exchange(requests, what)
            requests = []
            for request in overtaken:
                if self._read_window([(request.address, request.length)], what)[0] == request.payload:
                    self.verified += 1
                else:
                    request.frame = b""             # a new seq: the old one can never execute now
                    requests.append(request)

    def read_mem(self, address: int, nbytes: int) -> bytes:
        """Read ``nbytes`` of device memory at ``address``, up to ``window`` datagrams in flight."""
        pieces = list(self._chunks(address, nbytes))
        out = bytearray(nbytes)
        what = f"MEM_READ of {nbytes} bytes at {address:#x}"
        for (start, offset, length), answer in zip(pieces, self._read_window([(s, n) for s, _, n in pieces], what)):
            out[offset:offset + length] = answer
        return bytes(out)

    def _read_window(self, ranges: list[tuple[int, int]], what: str) -> list[bytes]:
        requests = [_Request(Command.MEM_READ, start, length) for start, length in ranges]
        self._exchange(requests, what)
        for request in requests:
            if len(request.answer) != request.length:
                raise LinkWrongDevice(f"{self.name}: {self._what(request, what)} returned "
                                      f"{len(request.answer)} bytes")
        return [request.answer for request in requests]
