"""The link backend's bus: the accelerator behind a ``UartBridge``, over a serial port.

``SerialLink`` speaks the frame protocol of ``hdl.spec.link_protocol`` over any byte
transport with pyserial's interface (``write(bytes)``, ``read(n)`` returning what
arrived within the transport's timeout, ``reset_input_buffer()``). On a Nexys Video
the transport is the board's USB-UART (``SerialLink.open("/dev/ttyUSB0")``); in tests
it is a transport bridged into the cocotb simulation of the bridge, or a Python
model of the bridge. ``LinkRegisterBus`` and ``LinkMemory`` put the link under
``host.accel.driver.Driver`` as its ``RegisterBus`` and ``DeviceMemory``.

Errors are explicit: ``LinkTimeout`` (nothing or too little came back in time),
``LinkCrcError`` (a response failed its CRC, after retries), ``LinkWrongDevice``
(something answers but it is not a Systole bridge), ``LinkDeviceError`` (the bridge
refused the request or the AXI slave returned an error; ``.status`` says which).
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

import numpy as np

from hdl.spec.link_protocol import (
    MAGIC,
    PROTOCOL_VERSION,
    RESPONSE_HEADER,
    RESPONSE_SYNC,
    Command,
    HelloInfo,
    Status,
    crc16,
    encode_request,
    window_ok,
)

__all__ = ["Transport", "LinkError", "LinkTimeout", "LinkCrcError", "LinkWrongDevice", "LinkDeviceError",
           "SerialLink", "LinkRegisterBus", "LinkMemory"]
# Statuses meaning "the request was not executed": retrying cannot double an effect.
_NOT_EXECUTED = (Status.CRC, Status.TRUNCATED)
# Commands that may be repeated when their response is lost (REG_WRITE may hit CTRL/ISR).
_IDEMPOTENT = (Command.HELLO, Command.REG_READ, Command.MEM_READ, Command.MEM_WRITE, Command.IRQ)


class Transport(Protocol):
    """The part of ``serial.Serial`` the link uses."""

    def write(self, data: bytes) -> int | None: ...

    def read(self, size: int) -> bytes: ...

    def reset_input_buffer(self) -> None: ...


class LinkError(RuntimeError):
    """Base class of every link failure."""


class LinkTimeout(LinkError):
    """The device did not answer (or stopped mid-response) within the timeout."""


class LinkCrcError(LinkError):
    """Responses kept failing their CRC: a noisy line or a wrong baud rate."""


class LinkWrongDevice(LinkError):
    """Something answers on the port, but not a compatible Systole bridge."""


class LinkDeviceError(LinkError):
    """The bridge answered with an error status."""

    def __init__(self, command: Command, address: int, status: Status):
        self.command, self.address, self.status = command, address, status
        super().__init__(f"{command.name} at {address:#x} failed: {status.name} ({status.doc})")


class SerialLink:
    """Request/response frames to one ``UartBridge``.

    Every request waits for its response (stop and wait). A response that fails its CRC
    or an error status meaning "not executed" is retried up to ``retries`` times; a
    lost response is retried only for commands that may safely run twice. ``clock``
    measures timeouts (wall time by default; a simulation passes simulated seconds).
    """

    def __init__(self, transport: Transport, *, timeout_s: float = 1.0, retries: int = 2,
                 clock: Callable[[], float] | None = None, name: str = "link"):
        self.transport = transport
        self.timeout_s = timeout_s
        self.retries = retries
        self.clock = clock or getattr(transport, "now", None) or time.monotonic
        self.name = name
        self._seq = 0
        self._info: HelloInfo | None = None
        self.frames = 0          # requests sent, retries included (for statistics)

    @classmethod
    def open(cls, port: str, baud: int, **kwargs) -> "SerialLink":
        """Open ``port`` (a device path or any pyserial URL) at ``baud``, 8N1."""
        import serial
        transport = serial.serial_for_url(port, baudrate=baud, bytesize=8, parity="N", stopbits=1,
                                          timeout=0.05, write_timeout=5.0)
        return cls(transport, name=f"{port} at {baud} baud", **kwargs)

    # -- frames ----------------------------------------------------------------------
    def _read_exact(self, nbytes: int, deadline: float) -> bytes:
        data = b""
        while len(data) < nbytes:
            chunk = self.transport.read(nbytes - len(data))
            data += chunk
            if len(data) < nbytes and self.clock() > deadline:
                raise LinkTimeout(
                    f"{self.name}: the device stopped answering ({len(data)} of {nbytes} bytes "
                    f"within {self.timeout_s} s)" if data else
                    f"{self.name}: no answer within {self.timeout_s} s; is the bitstream loaded "
                    "and the baud rate right?")
        return data

    def _receive(self, command: Command, seq: int, deadline: float) -> tuple[Status, bytes]:
        """The response to (command, seq); stale responses to earlier requests are skipped."""
        while True:
            while self._read_exact(1, deadline)[0] != RESPONSE_SYNC:
                pass
            header = self._read_exact(RESPONSE_HEADER.size, deadline)
            cmd, got_seq, status, length = RESPONSE_HEADER.unpack(header)
            payload = self._read_exact(length, deadline)
            crc = int.from_bytes(self._read_exact(2, deadline), "little")
            if crc != crc16(header + payload):
                raise LinkCrcError(f"{self.name}: response CRC mismatch for {command.name}")
            if (cmd, got_seq) == (command, seq):
                try:
                    return Status(status), payload
                except ValueError:
                    raise LinkWrongDevice(f"{self.name}: unknown status {status:#x} in a response") from None
            # Otherwise a late answer to an earlier request: keep hunting.

    def transact(self, command: Command, address: int, length: int, payload: bytes = b"") -> bytes:
        """Send one request and return the response payload; raise on any failure."""
        attempts = self.retries + 1
        for attempt in range(attempts):
            self._seq = (self._seq + 1) & 0xFF
            frame = encode_request(command, self._seq, address, length, payload)
            self.transport.write(frame)
            self.frames += 1
            last = attempt == attempts - 1
            try:
                status, response = self._receive(command, self._seq, self.clock() + self.timeout_s)
            except LinkCrcError:
                if last or command not in _IDEMPOTENT:
                    raise
                self._resync()
                continue
            except LinkTimeout:
                if last or command not in _IDEMPOTENT:
                    raise
                self._resync()
                continue
            if status in _NOT_EXECUTED and not last:
                self._resync()
                continue
            if status != Status.OK:
                raise LinkDeviceError(command, address, status)
            return response
        raise AssertionError("unreachable")

    def _resync(self) -> None:
        """Drop whatever is in flight so the next response read starts clean."""
        self.transport.reset_input_buffer()

    # -- commands --------------------------------------------------------------------
    def hello(self) -> HelloInfo:
        """Identify the bridge; ``LinkWrongDevice`` unless it speaks this protocol version."""
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
        try:
            info = HelloInfo.parse(payload)
        except Exception as exc:
            raise LinkWrongDevice(f"{self.name}: malformed HELLO answer ({exc})") from exc
        if info.version[0] != PROTOCOL_VERSION[0]:
            raise LinkWrongDevice(f"{self.name}: bridge speaks protocol v{info.version[0]}.{info.version[1]}, "
                                  f"this host v{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}")
        self._info = info
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


class LinkRegisterBus:
    """``host.accel.bus.RegisterBus`` over a ``SerialLink``: the accelerator's s_axi_ctrl."""

    has_irq = True

    def __init__(self, link: SerialLink, poll_interval_s: float = 0.0):
        self.link = link
        self.poll_interval_s = poll_interval_s

    def read32(self, offset: int) -> int:
        return self.link.read_reg(offset)

    def write32(self, offset: int, value: int) -> None:
        self.link.write_reg(offset, value)

    def wait_irq(self, timeout_s: float) -> bool:
        """Poll the bridge's IRQ command until the line is high or ``timeout_s`` passes."""
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
    """``host.accel.bus.DeviceMemory`` over a ``SerialLink``: a window of the board's DDR.

    The window starts at ``device_address`` in the address map the accelerator's DMA
    and the bridge share. Reads and writes go over the link; the sync calls only check
    the range (the bridge's AXI writes complete, with their response, before it answers).
    """

    def __init__(self, link: SerialLink, device_address: int, size: int):
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
