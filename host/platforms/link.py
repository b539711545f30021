"""The link backend's bus: the accelerator behind a link bridge, over a serial port.

``LinkSession`` is the protocol's client without its transport: it numbers requests,
keeps one deadline per attempt, retries, asks HELLO, and provides the commands
(``hello``/``info``, ``read_reg``, ``write_reg``, ``irq``, ``read_mem``, ``write_mem``,
and ``replay`` where HELLO says the bridge has REPLAY: ``can_replay``).
A transport subclasses it and provides three methods:

- ``_send(frame, what)``: put one request frame on the wire; ``LinkPortError`` if the
  port fails (``what`` names the request for the message);
- ``_receive(command, seq, deadline, what)``: the ``(Status, payload)`` of the answer
  to ``(command, seq)``, dropping anything else (``stale_frames``, ``stray_bytes``),
  by ``deadline`` on ``clock``; ``LinkTimeout`` after it, ``LinkCrcError`` for an
  answer that failed its CRC, ``LinkWrongDevice`` for an unknown status;
- ``_resync()``: drop whatever is in flight before a retry.

and calls ``super().__init__(timeout_s=, retries=, clock=, name=)`` (``name`` starts
every error message) and overrides ``close()`` if it holds a resource. ``_receive``
adds to the counters ``stale_frames``, ``stray_bytes`` and ``crc_errors``.

The policy, protocol 2.0 (``hdl.spec.link_protocol``): the first state-changing
request (``STATE_CHANGING``: REG_WRITE, MEM_WRITE, REPLAY) asks HELLO (once) and numbers itself
``last_seq + 1``; each further one takes the next write sequence number. Reads take
numbers from a separate read counter, a new one for every attempt. A state-changing
request is retried under the *same* seq after a lost or corrupted answer (the bridge
answers a repeat with the remembered status and executes nothing), so every command
is retried safely; an answer ``Status.CRC`` or ``TRUNCATED`` (not executed) is
resent; ``Status.STALE`` (the bridge executed a newer write, e.g. from another host)
asks HELLO again and resends under a number after the bridge's ``last_seq``. Each
resend counts against ``retries``.

``SerialLink`` speaks the frame protocol over any byte
transport with pyserial's interface (``write(bytes)``, ``read(n)`` returning what
arrived within the transport's timeout, ``reset_input_buffer()``). On a Nexys Video
the transport is the board's USB-UART (``SerialLink.open("/dev/ttyUSB0", 921600)``); in
tests it is a transport bridged into the cocotb simulation of the bridge, or a Python
model of the bridge. ``LinkRegisterBus`` and ``LinkMemory`` put the link under
``host.accel.driver.Driver`` as its ``RegisterBus`` and ``DeviceMemory``.

Nothing waits forever: every attempt has one deadline, ``timeout_s`` after it was
sent, and neither stray bytes nor stale frames extend it. Every error is one line
that names the port, the request and, for a timeout, how long was waited. All derive
from ``LinkError`` (a ``host.errors.SystoleError`` and a ``RuntimeError``):

- ``LinkOpenError``: the port cannot be opened (missing, refused, busy, no permission)
  or the baud rate cannot work (``.port`` names it);
- ``LinkTimeout``: no answer, or an answer that stopped mid-frame, by the deadline;
  the message says how many stray bytes and stale frames arrived meanwhile;
- ``LinkCrcError``: a response failed its CRC, after the retries;
- ``LinkWrongDevice``: something answers, but it is not a compatible Systole bridge;
- ``LinkDeviceError``: the bridge refused the request or the AXI slave returned an
  error (``.status`` says which);
- ``LinkPortError``: the port failed while in use (unplugged, or a write that never
  drained).
"""

from __future__ import annotations

import ctypes
import errno
import math
import numbers
import time
from typing import Callable, Protocol

import numpy as np

from hdl.spec.link_protocol import (
    CRC_BYTES,
    HELLO_LAYOUT,
    MAGIC,
    PROTOCOL_VERSION,
    RESPONSE_HEADER,
    RESPONSE_SYNC,
    SEQ_MODULUS,
    SYNC_BYTES,
    Command,
    HelloInfo,
    ReplayResult,
    Status,
    crc16,
    decode_replay_answer,
    encode_replay,
    encode_request,
    replay_answer_length,
    replay_length,
    seq_verdict,
    window_ok,
)

from ..errors import SystoleError

__all__ = ["Transport", "LinkError", "LinkOpenError", "LinkTimeout", "LinkCrcError", "LinkWrongDevice",
           "LinkDeviceError", "LinkPortError", "LinkSession", "SerialLink", "LinkRegisterBus", "LinkMemory"]
# Answers meaning the request did not arrive intact: it is sent again as it was.
_RESEND = (Status.CRC, Status.TRUNCATED)
# No response is longer: max_payload is at most 4096 and HELLO's answer is shorter. A
# header claiming more is noise that happens to start with the sync byte.
_MAX_RESPONSE_PAYLOAD = 4096
REPLAY_CACHE = 1024           # REPLAY payloads kept encoded: a model's decode repeats the same jobs
_HEADER_END = SYNC_BYTES + RESPONSE_HEADER.size
# Why an open failed, by errno: what to do about it.
_OPEN_HINTS = {
    errno.ENOENT: "; is the device connected and powered?",
    errno.EACCES: "; add your user to the dialout group, or check the port's permissions",
    errno.EBUSY: "; another program has the port open",
    errno.ECONNREFUSED: "; nothing listens at that address",
    errno.ENOTTY: "; it is not a serial port",
}


class Transport(Protocol):
    """The part of ``serial.Serial`` the link uses."""

    def write(self, data: bytes) -> int | None: ...

    def read(self, size: int) -> bytes: ...

    def reset_input_buffer(self) -> None: ...


class LinkError(SystoleError, RuntimeError):
    """Base class of every link failure; the message is one line naming the port."""


class LinkOpenError(LinkError):
    """The port cannot be opened, or not at this baud rate; ``.port`` names it."""

    def __init__(self, port: str, reason: str):
        self.port = port
        super().__init__(f"cannot open {port}: {reason}")


class LinkTimeout(LinkError):
    """The device did not answer (or stopped mid-response) within the timeout."""


class LinkCrcError(LinkError):
    """Responses kept failing their CRC: a noisy line or a wrong baud rate."""


class LinkWrongDevice(LinkError):
    """Something answers on the port, but not a compatible Systole bridge."""


class LinkDeviceError(LinkError):
    """The bridge answered with an error status."""

    def __init__(self, command: Command, address: int, status: Status, where: str = ""):
        self.command, self.address, self.status = command, address, status
        super().__init__(f"{where + ': ' if where else ''}{command.name} at {address:#x} failed: "
                         f"{status.name} ({status.doc})")


class LinkPortError(LinkError):
    """The port itself failed while in use: unplugged, or a write that never drained."""


class _Expired(Exception):
    """Internal: the deadline passed after ``got`` bytes of a read had arrived."""

    def __init__(self, got: int):
        self.got = got


# Looked up, not asked of the enum: ``_describe`` runs once per exchange.
_COMMAND_NAMES = {command: command.name for command in Command}
_REGISTER_COMMANDS = frozenset((Command.REG_READ, Command.REG_WRITE))
_MEMORY_COMMANDS = frozenset((Command.MEM_READ, Command.MEM_WRITE, Command.MEM_READ_AFTER, Command.MEM_WRITE_AFTER))


def _describe(command: Command, address: int, length: int) -> str:
    """A request as error messages name it: ``REG_READ 0x10``, ``MEM_READ of 64 bytes at 0x1000``."""
    if command in _REGISTER_COMMANDS:
        return f"{_COMMAND_NAMES[command]} {address:#x}"
    if command in _MEMORY_COMMANDS:
        return f"{_COMMAND_NAMES[command]} of {length} bytes at {address:#x}"
    return _COMMAND_NAMES[command]


def _open_failure(error: BaseException) -> str:
    """Why pyserial could not open a port, in a few words plus the remedy."""
    cause = error.__context__ if isinstance(error.__context__, BaseException) else None
    number = getattr(error, "errno", None) or getattr(cause, "errno", None)
    if isinstance(cause, OSError) and cause.strerror:
        reason = cause.strerror
    elif cause is not None and len(cause.args) == 2 and isinstance(cause.args[1], str):
        number, reason = cause.args        # termios.error: (errno, text)
    else:
        reason = str(error)
    return f"{reason}{_OPEN_HINTS.get(number, '')}"


def _check_baud(port: str, baud) -> int:
    if isinstance(baud, bool) or not isinstance(baud, numbers.Integral) or baud <= 0:
        raise LinkOpenError(port, f"baud rate {baud!r} is not a positive integer")
    return int(baud)


class LinkSession:
    """Request/response frames to one link bridge, whatever carries them (stop and wait).

    Every attempt waits for its answer until a deadline fixed when it is sent,
    ``timeout_s`` later on ``clock`` (``time.monotonic`` by default; a simulation passes
    simulated seconds); nothing that arrives extends it. A lost answer, one that failed
    its CRC, or a status meaning the request did not arrive intact (CRC, TRUNCATED) is
    retried up to ``retries`` times, a state-changing request under the same seq (see
    the module docstring), and ``Status.STALE`` is resent under a new seq. The counters
    add up over the link's life, for statistics.

    Subclasses provide ``_send``, ``_receive`` and ``_resync``, and may count
    ``stray_bytes`` (bytes, or datagrams, that frame nothing) in ``_receive``.
    """

    def __init__(self, *, timeout_s: float = 1.0, retries: int = 2, clock: Callable[[], float] | None = None,
                 name: str = "link"):
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, numbers.Real) \
                or not math.isfinite(timeout_s) or timeout_s <= 0:
            raise ValueError(f"{name}: timeout_s={timeout_s!r} must be a finite number of seconds > 0")
        if isinstance(retries, bool) or not isinstance(retries, numbers.Integral) or retries < 0:
            raise ValueError(f"{name}: retries={retries!r} must be an integer >= 0")
        self.timeout_s = timeout_s
        self.retries = int(retries)
        self.clock = clock or time.monotonic
        self.name = name
        self._info: HelloInfo | None = None
        self._replays: dict[tuple, bytes] = {}   # REPLAY payloads by their fields (_replay_payload)
        self._read_seq = 0                  # the last read's seq (reads: one per attempt)
        self._write_seq: int | None = None  # the last state-changing seq used; None until HELLO
        self.frames = 0                 # requests sent, retries included
        self.stray_bytes = 0            # bytes skipped while hunting for a response's sync byte
        self.stale_frames = 0           # good frames answering another request (late or repeated)
        self.crc_errors = 0             # responses that failed their CRC

    # -- the transport ---------------------------------------------------------------
    # One request frame from its fields: ``encode_request``'s bytes (a transport may
    # build the same bytes faster).
    _encode = staticmethod(encode_request)

    def _send(self, frame: bytes, what: str) -> None:
        """Send one request frame; ``LinkPortError`` if the transport fails."""
        raise NotImplementedError

    def _receive(self, command: Command, seq: int, deadline: float, what: str) -> tuple[Status, bytes]:
        """The answer to ``(command, seq)`` by ``deadline``: ``LinkTimeout``, ``LinkCrcError``."""
        raise NotImplementedError

    def _resync(self) -> None:
        """Drop whatever is in flight so the next answer read starts clean."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the transport."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sequence numbers ------------------------------------------------------------
    def _next_read_seq(self) -> int:
        self._read_seq = (self._read_seq + 1) % SEQ_MODULUS
        return self._read_seq

    def _next_write_seq(self) -> int:
        """The next write sequence number: after the bridge's ``last_seq`` at the first."""
        if self._write_seq is None:
            self.hello()
        self._write_seq = (self._write_seq + 1) % SEQ_MODULUS
        return self._write_seq

    def _follow(self, last_seq: int) -> None:
        """Number the next state-changing request after ``last_seq`` unless ours are newer:
        a number already sent is never given to another request."""
        if self._write_seq is None or seq_verdict(last_seq, self._write_seq) == "execute":
            self._write_seq = last_seq

    # -- requests --------------------------------------------------------------------
    def transact(self, command: Command, address: int, length: int, payload: bytes = b"",
                 wait_s: float = 0.0) -> bytes:
        """Send one request and return the response payload; raise on any failure. Each
        attempt waits ``timeout_s + wait_s`` (``wait_s``: how long the bridge may work)."""
        attempts = self.retries + 1
        changes_state = command.changes_state
        seq = self._next_write_seq() if changes_state else None
        for attempt in range(1, attempts + 1):
            what = _describe(command, address, length)
            what += f" (attempt {attempt} of {attempts})" if attempt > 1 else ""
            if not changes_state:
                seq = self._next_read_seq()  # a late answer to an earlier attempt is then stale
            self._send(self._encode(command, seq, address, length, payload), what)
            deadline = self.clock() + self.timeout_s + wait_s    # fixed now: nothing that arrives extends it
            self.frames += 1
            last = attempt == attempts
            try:
                status, response = self._receive(command, seq, deadline, what)
            except (LinkCrcError, LinkTimeout):
                if last:
                    raise
                self._resync()
                continue                    # a write keeps its seq: executed at most once
            if status in _RESEND and not last:
                self._resync()
                continue
            if status == Status.STALE and not last:
                self._resync()
                self.hello()                # a newer write ran: number after the bridge's
                seq = self._next_write_seq()
                continue
            if status != Status.OK:
                raise LinkDeviceError(command, address, status, where=self.name)
            return response
        raise AssertionError("unreachable")

    # -- commands --------------------------------------------------------------------
    def hello(self) -> HelloInfo:
        """Identify the bridge; ``LinkWrongDevice`` unless it speaks this protocol version.

        Write sequence numbers continue after the bridge's ``last_seq`` (or ours, if newer).
        """
        try:
            payload = self.transact(Command.HELLO, 0, 0)
        except LinkCrcError as exc:
            raise LinkWrongDevice(f"{self.name}: answers with bad CRCs: not a Systole bridge, or the "
                                  "baud rate is wrong") from exc
        except LinkDeviceError as exc:
            raise LinkWrongDevice(f"{self.name}: HELLO refused ({exc.status.name}): not a Systole "
                                  "bridge") from exc
        if len(payload) < len(MAGIC) or not payload.startswith(MAGIC):
            raise LinkWrongDevice(f"{self.name}: HELLO answer {payload[:8]!r} does not start with {MAGIC!r}")
        # The version first: another major version's answer may have another size.
        major, minor = (payload[HELLO_LAYOUT[name].offset] if len(payload) > HELLO_LAYOUT[name].offset
                        else None for name in ("major", "minor"))
        if major is not None and major != PROTOCOL_VERSION[0]:
            raise LinkWrongDevice(f"{self.name}: bridge speaks protocol v{major}.{minor}, "
                                  f"this host v{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}")
        try:
            info = HelloInfo.parse(payload)
        except Exception as exc:
            raise LinkWrongDevice(f"{self.name}: malformed HELLO answer ({exc})") from exc
        self._info = info
        self._replays.clear()                # their timeouts are in this bridge's cycles
        self._follow(info.last_seq)
        return info

    @property
    def info(self) -> HelloInfo:
        """The bridge's HELLO answer (asked once)."""
        return self._info or self.hello()

    def read_reg(self, offset: int) -> int:
        return int.from_bytes(self.transact(Command.REG_READ, offset, 4), "little")

    def write_reg(self, offset: int, value: int) -> None:
        if not 0 <= value < 1 << 32:
            raise ValueError(f"register value {value:#x} does not fit 32 bits")
        self.transact(Command.REG_WRITE, offset, 4, value.to_bytes(4, "little"))

    def irq(self) -> bool:
        """The accelerator's interrupt line, now."""
        return bool(self.transact(Command.IRQ, 0, 0)[0] & 1)

    @property
    def can_replay(self) -> bool:
        """The bridge runs REPLAY (protocol 2.1 or later, ``max_replay`` > 0)."""
        info = self.info
        return info.version >= (2, 1) and info.max_replay > 0 and info.clock_khz > 0

    def replay_fits(self, write_count: int, read_count: int) -> bool:
        """A REPLAY with these counts fits the bridge's ``max_replay``."""
        limit = self.info.max_replay
        return (write_count <= 0xFF and read_count <= 0xFF and replay_length(write_count, read_count) <= limit
                and replay_answer_length(read_count) <= limit)

    def replay(self, *, status_offset: int, busy_mask: int, writes, ctrl_offset: int, start: int,
               done_mask: int, timeout_s: float, reads) -> tuple[ReplayResult, list[int]]:
        """One job's register sequence in one exchange (``Command.REPLAY``): read
        ``status_offset``; BUSY if ``busy_mask`` is set; else write ``writes`` (``(offset,
        value)``) in order, ``start`` to ``ctrl_offset``, read it until ``done_mask``
        (TIMEOUT after ``timeout_s`` of bridge cycles), then read ``reads``. Returns the
        result and, when DONE, the values read. A lost answer is retried under the same
        seq: the bridge does not run the job again, it reads ``reads`` again."""
        reads = list(reads)
        payload = self._replay_payload(status_offset=status_offset, busy_mask=busy_mask, writes=writes,
                                       ctrl_offset=ctrl_offset, start=start, done_mask=done_mask,
                                       timeout_s=timeout_s, reads=reads)
        answer = self.transact(Command.REPLAY, 0, len(payload), payload, wait_s=timeout_s)
        try:
            return decode_replay_answer(answer, len(reads))
        except ValueError as exc:
            raise LinkWrongDevice(f"{self.name}: malformed REPLAY answer ({exc})") from None

    def _replay_payload(self, *, status_offset: int, busy_mask: int, writes, ctrl_offset: int, start: int,
                        done_mask: int, timeout_s: float, reads) -> bytes:
        """A REPLAY request's payload (the timeout in the bridge's cycles); ``LinkWrongDevice``
        when the bridge does not run REPLAY."""
        if not self.can_replay:
            raise LinkWrongDevice(f"{self.name}: the bridge (protocol v{self.info.version[0]}."
                                  f"{self.info.version[1]}) does not run REPLAY")
        key = (status_offset, busy_mask, tuple(writes), ctrl_offset, start, done_mask, timeout_s, tuple(reads))
        payload = self._replays.get(key)
        if payload is None:                  # a model's decode repeats the same few hundred jobs
            cycles = min((1 << 32) - 1, math.ceil(timeout_s * self.info.clock_khz * 1000))
            payload = encode_replay(status_offset=status_offset, busy_mask=busy_mask, ctrl_offset=ctrl_offset,
                                    start=start, done_mask=done_mask, timeout=cycles, writes=key[2], reads=key[7])
            if len(self._replays) >= REPLAY_CACHE:
                self._replays.clear()
            self._replays[key] = payload
        return payload

    def _chunks(self, address: int, nbytes: int):
        """(address, offset, length) pieces that each fit one max_payload window."""
        window = self.info.max_payload
        offset = 0
        while offset < nbytes:
            start = address + offset
            length = min(nbytes - offset, window - start % window)
            assert window_ok(start, length, window)
            yield start, offset, length
            offset += length

    def write_mem(self, address: int, data: bytes) -> None:
        """Write ``data`` to device memory at ``address`` (any alignment, any size)."""
        view = memoryview(data).cast("B")
        for start, offset, length in self._chunks(address, len(view)):
            self.transact(Command.MEM_WRITE, start, length, bytes(view[offset:offset + length]))

    def read_mem(self, address: int, nbytes: int) -> bytes:
        """Read ``nbytes`` of device memory at ``address``."""
        out = bytearray(nbytes)
        for start, offset, length in self._chunks(address, nbytes):
            piece = self.transact(Command.MEM_READ, start, length)
            if len(piece) != length:
                raise LinkWrongDevice(f"{self.name}: MEM_READ of {length} bytes returned {len(piece)}")
            out[offset:offset + length] = piece
        return bytes(out)


class SerialLink(LinkSession):
    """A ``LinkSession`` over a byte stream (a ``UartBridge`` behind a serial port).

    The transport has pyserial's interface; ``clock`` defaults to the transport's
    ``now()`` when it has one (a simulation's), else wall time. While waiting, bytes
    that cannot start a response are skipped (``stray_bytes``) and well-formed answers
    to other requests, late or repeated, are dropped (``stale_frames``).
    """

    def __init__(self, transport: Transport, *, timeout_s: float = 1.0, retries: int = 2,
                 clock: Callable[[], float] | None = None, name: str = "link"):
        super().__init__(timeout_s=timeout_s, retries=retries, name=name,
                         clock=clock or getattr(transport, "now", None))
        self.transport = transport
        self._pending = bytearray()     # bytes read but given back by the sync hunt

    @classmethod
    def open(cls, port: str, baud: int, **kwargs) -> "SerialLink":
        """Open ``port`` (a device path or any pyserial URL) at ``baud``, 8N1.

        ``LinkOpenError`` names the port and why: a baud rate that is not a positive
        integer, a missing device, a refused connection, no permission. A ``socket://``
        connection attempt gives up after pyserial's 5 s; writes after 5 s.
        """
        baud = _check_baud(port, baud)
        try:
            import serial
        except ImportError:
            raise LinkOpenError(port, "pyserial is not installed (pip install pyserial)") from None
        try:
            transport = serial.serial_for_url(port, baudrate=baud, bytesize=8, parity="N", stopbits=1,
                                              timeout=0.05, write_timeout=5.0)
        except (OSError, ValueError) as error:     # serial.SerialException is an OSError
            raise LinkOpenError(port, _open_failure(error)) from error
        return cls(transport, name=f"{port} at {baud} baud", **kwargs)

    def close(self) -> None:
        """Close the transport, when it can be closed."""
        close = getattr(self.transport, "close", None)
        if close is not None:
            close()

    # -- frames ----------------------------------------------------------------------
    def _read(self, nbytes: int, what: str) -> bytes:
        try:
            return self.transport.read(nbytes)
        except OSError as error:
            raise LinkPortError(f"{self.name}: {what}: the port failed while waiting for the answer "
                                f"({error}); was the device unplugged?") from error

    def _take(self, nbytes: int, deadline: float, what: str) -> bytes:
        """``nbytes`` bytes, first those the sync hunt gave back; ``_Expired`` at the deadline."""
        data = self._pending[:nbytes]
        del self._pending[:nbytes]
        while len(data) < nbytes:
            data += self._read(nbytes - len(data), what)
            if len(data) < nbytes and self.clock() > deadline:
                raise _Expired(len(data))
        return bytes(data)

    def _receive(self, command: Command, seq: int, deadline: float, what: str) -> tuple[Status, bytes]:
        """The response to (command, seq), hunted for in the byte stream until ``deadline``."""
        stray = stale = 0
        try:
            while True:
                if self.clock() > deadline:
                    raise self._timeout(what, 0, 0, stray, stale)
                frame, need = b"", _HEADER_END
                try:
                    frame = self._take(SYNC_BYTES, deadline, what)
                    if frame[0] != RESPONSE_SYNC:
                        stray += 1
                        continue
                    frame += self._take(RESPONSE_HEADER.size, deadline, what)
                    cmd, got_seq, status, length = RESPONSE_HEADER.unpack(frame[SYNC_BYTES:])
                    if length > _MAX_RESPONSE_PAYLOAD:
                        # Not a header: the real sync byte may be among the bytes just read.
                        self._pending[:0] = frame[SYNC_BYTES:]
                        stray += 1
                        continue
                    need = _HEADER_END + length + CRC_BYTES
                    frame += self._take(length + CRC_BYTES, deadline, what)
                except _Expired as expired:
                    raise self._timeout(what, len(frame) + expired.got, need, stray, stale) from None
                body, crc = frame[SYNC_BYTES:-CRC_BYTES], frame[-CRC_BYTES:]
                if int.from_bytes(crc, "little") != crc16(body):
                    self.crc_errors += 1
                    skipped = f" after {stray} stray bytes" if stray else ""
                    raise LinkCrcError(f"{self.name}: {what}: response CRC mismatch{skipped}; a noisy "
                                       "line or a wrong baud rate?")
                if (cmd, got_seq) != (command, seq):
                    stale += 1          # a late or repeated answer to an earlier request
                    continue
                try:
                    return Status(status), body[RESPONSE_HEADER.size:]
                except ValueError:
                    raise LinkWrongDevice(f"{self.name}: {what}: unknown status {status:#x} in the "
                                          "answer: not a Systole bridge?") from None
        finally:
            self.stray_bytes += stray
            self.stale_frames += stale

    def _timeout(self, what: str, got: int, need: int, stray: int, stale: int) -> LinkTimeout:
        within = f"within {self.timeout_s} s"
        skipped = ", ".join(part for part in (f"{stray} stray bytes skipped" if stray else "",
                                              f"{stale} stale frames dropped" if stale else "") if part)
        if got:
            of = (f"{got} of {need} bytes" if need > _HEADER_END
                  else f"{got} bytes, the header incomplete")
            text = f"the device stopped answering mid-response ({of} {within})"
            text += f"; {skipped}" if skipped else ""
        elif stray:
            text = (f"no answer {within} ({skipped}); bytes arrive but do not frame an answer: "
                    "a wrong baud rate, or not a Systole bridge?")
        elif stale:
            text = f"no answer {within} ({skipped}); the device answers only earlier requests"
        else:
            text = f"no answer {within}; is the bitstream loaded and the baud rate right?"
        return LinkTimeout(f"{self.name}: {what}: {text}")

    def _send(self, frame: bytes, what: str) -> None:
        try:
            self.transport.write(frame)
        except OSError as error:
            raise LinkPortError(f"{self.name}: {what}: could not send the request ({error}); was "
                                "the device unplugged?") from error

    def _resync(self) -> None:
        """Drop whatever is in flight so the next response read starts clean."""
        self._pending.clear()
        self.transport.reset_input_buffer()


def _int8s(address: int, count: int) -> np.ndarray:
    """The ``count`` int8 at ``address`` (memory the caller keeps alive), as a view."""
    return np.frombuffer((ctypes.c_int8 * count).from_address(address), np.int8)


def _uint32s(address: int, count: int) -> np.ndarray:
    """The ``count`` uint32 at ``address`` (memory the caller keeps alive), as a view."""
    if count == 0:
        return np.zeros(0, np.uint32)
    return np.ctypeslib.as_array((ctypes.c_uint32 * count).from_address(address))


class LinkRegisterBus:
    """``host.accel.bus.RegisterBus`` over a ``LinkSession``: the accelerator's s_axi_ctrl.

    ``replay`` (the driver's planned job in one call, ``host.platforms.replay``'s
    semantics) is offered when the bridge runs REPLAY: one exchange per job. The bridge
    polls ap_done itself, so the driver may use it with interrupts too
    (``replay_waits_on_device``).
    """

    has_irq = True
    replay_waits_on_device = True

    def __init__(self, link: LinkSession, poll_interval_s: float = 0.0):
        self.link = link
        self.poll_interval_s = poll_interval_s

    @property
    def replay(self):
        """``_replay`` when the bridge runs REPLAY (asks HELLO once), else None."""
        return self._replay if self.link.can_replay else None

    def _replay(self, status_offset: int, busy_mask: int, offsets_address: int, values_address: int,
                count: int, ctrl_offset: int, start: int, done_mask: int, timeout_s: float,
                read_offsets_address: int, read_count: int, read_values_address: int) -> int:
        """1: done (``read_values_address`` filled); 0: timeout; -1: busy before the first
        write (``firmware/replay.c``'s ``systole_replay``). The arrays are uint32 at
        those addresses. A sequence too long for one REPLAY runs request by request."""
        offsets, values = _uint32s(offsets_address, count), _uint32s(values_address, count)
        reads, out = _uint32s(read_offsets_address, read_count), _uint32s(read_values_address, read_count)
        writes = list(zip(offsets.tolist(), values.tolist()))
        if not self.link.replay_fits(count, read_count):
            return self._replay_by_requests(status_offset, busy_mask, writes, ctrl_offset, start, done_mask,
                                            timeout_s, reads.tolist(), out)
        result, got = self.link.replay(status_offset=status_offset, busy_mask=busy_mask, writes=writes,
                                       ctrl_offset=ctrl_offset, start=start, done_mask=done_mask,
                                       timeout_s=timeout_s, reads=reads.tolist())
        if result == ReplayResult.DONE:
            out[:] = got
            return 1
        return -1 if result == ReplayResult.BUSY else 0

    @property
    def job(self):
        """``_job`` when the link runs a job's A, registers and C in one window
        (``pipelines_jobs``: UDP to a protocol 2.2 bridge), else None; the driver then
        hands it whole jobs (``host.accel.driver``: ``bus.job`` with a ``job_io``)."""
        return self._job if getattr(self.link, "pipelines_jobs", False) else None

    def job_io(self, **fields):
        """A job's memory traffic as the driver describes it (``LinkMemory.io_spec``: its
        buffers are device addresses): the link's ``JobIo``."""
        return self.link.job_io(**fields)

    def job_entry(self) -> tuple | None:
        """The link's ``job_entry``: compiled code submits the jobs ``prepare_job`` readied
        (``host.accel.driver.Driver.compiled_job``); None where the link has none."""
        entry = getattr(self.link, "job_entry", None)
        return None if entry is None else entry()

    def job_failed(self, io) -> None:
        """Raise the link's error for a compiled submission of ``io`` that returned -3."""
        self.link.job_failed(io)

    def prepare_job(self, status_offset: int, busy_mask: int, offsets_address: int, values_address: int,
                    count: int, ctrl_offset: int, start: int, done_mask: int, timeout_s: float,
                    read_offsets_address: int, read_count: int, read_values_address: int, io):
        """``io``'s window for ``_job``'s arguments (``UdpLink.prepare_job``), prepared once
        a plan and kept on ``io`` while the plan and the bridge's HELLO stand; None when
        the REPLAY does not fit one request (the job then runs request by request)."""
        link = self.link
        plan = (offsets_address, values_address, count, read_offsets_address, read_count, timeout_s)
        job = io.window
        if job is not None and io.window_plan == plan and (job.limits is link.limits or job.limits == link.limits) \
                and (job.pieces is None) == (link._bulk is None):
            return job                           # the driver's plan, and its window, stand
        if not link.replay_fits(count, read_count):
            return None
        io.window_plan = plan
        return link.prepare_job(
            io, status_offset=status_offset, busy_mask=busy_mask, write_offsets=_uint32s(offsets_address, count),
            write_values=_uint32s(values_address, count), ctrl_offset=ctrl_offset, start=start,
            done_mask=done_mask, timeout_s=timeout_s, read_offsets=_uint32s(read_offsets_address, read_count))

    def _job(self, status_offset: int, busy_mask: int, offsets_address: int, values_address: int,
             count: int, ctrl_offset: int, start: int, done_mask: int, timeout_s: float,
             read_offsets_address: int, read_count: int, read_values_address: int, io) -> int:
        """``_replay`` with the job's memory traffic: A from ``io.a`` (int8 ``[m, k]``,
        rows padded to ``a_stride`` with zeros) to ``io.a_buf``, and, when done, C's rows
        (``c_row_bytes`` of every ``c_stride``) from ``io.c_buf`` into ``io.c``; all in
        one window (``prepare_job``) when the REPLAY fits, in one compiled call
        (``UdpLink.submit``) where ``firmware/udp_bulk.c`` builds; else request by request."""
        m, k, a_stride, c_stride, c_row_bytes = io.m, io.k, io.a_stride, io.c_stride, io.c_row_bytes
        link = self.link
        job = self.prepare_job(status_offset, busy_mask, offsets_address, values_address, count, ctrl_offset,
                               start, done_mask, timeout_s, read_offsets_address, read_count,
                               read_values_address, io)
        if job is not None and job.pieces is not None:
            return link.submit(io, read_values_address, read_count)
        if job is not None:
            job.a.reshape(m, a_stride)[:, :k] = _int8s(io.a, m * k).reshape(m, k).view(np.uint8)
            result, got = link.run_window(job)
            done = 1 if result == ReplayResult.DONE else -1 if result == ReplayResult.BUSY else 0
            if done == 1:
                _uint32s(read_values_address, read_count)[:] = got
            c = job.c
        else:
            staged = np.zeros((m, a_stride), np.int8)
            staged[:, :k] = _int8s(io.a, m * k).reshape(m, k)
            link.write_mem(io.a_buf, staged.tobytes())
            done = self._replay(status_offset, busy_mask, offsets_address, values_address, count, ctrl_offset,
                                start, done_mask, timeout_s, read_offsets_address, read_count,
                                read_values_address)
            c = np.frombuffer(link.read_mem(io.c_buf, m * c_stride), np.uint8) if done == 1 else None
        if done == 1:
            target = np.ctypeslib.as_array((ctypes.c_uint8 * (m * c_row_bytes)).from_address(io.c))
            target.reshape(m, c_row_bytes)[:] = c.reshape(m, c_stride)[:, :c_row_bytes]
        return done

    def _replay_by_requests(self, status_offset, busy_mask, writes, ctrl_offset, start, done_mask, timeout_s,
                            reads, out) -> int:
        """The same sequence as separate requests (a plan longer than ``max_replay``)."""
        if self.read32(status_offset) & busy_mask:
            return -1
        for offset, value in writes:
            self.write32(offset, value)
        self.write32(ctrl_offset, start)
        deadline = self.now() + timeout_s
        while not self.read32(ctrl_offset) & done_mask:
            if self.now() > deadline:
                return 0
        out[:] = [self.read32(offset) for offset in reads]
        return 1

    def read32(self, offset: int) -> int:
        return self.link.read_reg(offset)

    def write32(self, offset: int, value: int) -> None:
        self.link.write_reg(offset, value)

    def wait_irq(self, timeout_s: float) -> bool:
        """Poll the bridge's IRQ command until the line is high or ``timeout_s`` passes."""
        if not math.isfinite(timeout_s) or timeout_s < 0:
            raise ValueError(f"wait_irq timeout_s={timeout_s!r} must be a finite number of seconds >= 0")
        deadline = self.now() + timeout_s
        while True:
            if self.link.irq():
                return True
            if self.now() > deadline:
                return False
            if self.poll_interval_s:
                time.sleep(self.poll_interval_s)

    def now(self) -> float:
        return self.link.clock()


class LinkMemory:
    """``host.accel.bus.DeviceMemory`` over a ``LinkSession``: a window of the board's DDR.

    The window starts at ``device_address`` in the address map the accelerator's DMA
    and the bridge share. Reads and writes go over the link; the sync calls only check
    the range (the bridge's AXI writes complete, with their response, before it answers).
    """

    def __init__(self, link: LinkSession, device_address: int, size: int):
        if size <= 0 or device_address < 0:
            raise ValueError(f"window at {device_address:#x} of {size} bytes is empty or negative")
        self.link = link
        self.device_address = device_address
        self.size = size

    def _check(self, offset: int, nbytes: int) -> None:
        if offset < 0 or nbytes < 0 or offset + nbytes > self.size:
            raise ValueError(f"range [{offset:#x}, {offset + nbytes:#x}) is outside the window of "
                             f"{self.size:#x} bytes")

    def write(self, offset: int, data) -> None:
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1).tobytes() if isinstance(data, np.ndarray) \
            else bytes(memoryview(data).cast("B"))
        self._check(offset, len(raw))
        self.link.write_mem(self.device_address + offset, raw)

    def read(self, offset: int, nbytes: int) -> np.ndarray:
        self._check(offset, nbytes)
        return np.frombuffer(self.link.read_mem(self.device_address + offset, nbytes), dtype=np.uint8).copy()

    def sync_for_device(self, offset: int, nbytes: int) -> None:
        self._check(offset, nbytes)

    def sync_for_cpu(self, offset: int, nbytes: int) -> None:
        self._check(offset, nbytes)

    def direct_view(self) -> None:
        """None: the board's memory is reached only through the link."""
        return None

    def io_spec(self) -> tuple[int, None, bool, int]:
        """For a bus that runs whole jobs (``LinkRegisterBus.job``): buffers are named by
        their device addresses (the window's base is ``device_address``); nothing to sync."""
        return self.device_address, None, False, 0
