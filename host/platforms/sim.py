"""The simulator platform: the generated RTL running in Verilator, driven over a socket.

``CosimSession`` starts a simulator process (``python -m sim.cosim``), which builds
(once, cached) the simulation top for an ``AccelConfig``, the accelerator plus a
DPI-backed AXI memory, and serves requests with a cocotb test. The session exposes:

- ``bus``: a ``RegisterBus`` whose register accesses are AXI4-Lite transactions in
  the simulation, with ``wait_irq`` and ``now`` in simulated time;
- ``memory``: a ``DeviceMemory`` over the file that the simulated DDR reads. The
  driver writes weights into it at memory speed, never beat by beat;
- ``memory_fd``: an open descriptor of that file, for another process to map.

The two processes share only the memory file and the request protocol below, so this
module imports nothing from ``sim`` (``sim.cosim_server`` imports the protocol from
here). Everything above this module is the same driver code that runs on a board.

Protocol: request ``<B op><Q a><Q b>``, reply ``<B status><Q value>``. Ops: READ32
(a=offset), WRITE32 (a=offset, b=value), WAIT_IRQ (a=timeout in cycles; value 1 if
irq is high), NOW (value: cycles since reset), SET_MEMORY (a=index in
``MEMORY_CONTROLS``, b=value), CLOSE. Simulated time moves only inside requests, so a
run is deterministic whatever the host does in between.

Nothing waits forever: the simulator has ``_START_TIMEOUT_S`` to build and connect,
and each request ``request_timeout_s`` (600 s by default: one WAIT_IRQ of a large
simulated job takes minutes of wall time) to be answered. A waiting request also
notices within a second that the simulator process has exited. Either way a
``CosimError`` (a ``host.errors.SystoleError``) names the request, how long it
waited and the log file, and the simulator is stopped: a late answer could only be
taken for the next request's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from hdl.spec.config import AccelConfig

from ..accel.bus import MemoryWindow
from ..accel.driver import Driver
from ..accel.hardware import DriverBackend
from ..errors import SystoleError

__all__ = ["CosimSession", "CosimError", "DEFAULT_MEMORY_BASE", "REQUEST", "REPLY", "OPS",
           "MEMORY_CONTROLS", "STATUS_OK", "STATUS_ERROR", "backend"]

DEFAULT_MEMORY_BASE = 0x4000_0000
_START_TIMEOUT_S = 600.0       # the first Verilator build of a large config takes minutes
_REQUEST_TIMEOUT_S = 600.0     # one WAIT_IRQ of a large simulated job takes minutes of wall time
_POLL_S = 0.25                 # how often a waiting request checks the simulator still runs
_REPO = Path(__file__).resolve().parents[2]

REQUEST = struct.Struct("<BQQ")
REPLY = struct.Struct("<BQ")
OPS = ("READ32", "WRITE32", "WAIT_IRQ", "NOW", "SET_MEMORY", "CLOSE")
# SET_MEMORY controls, in order: the simulated memory's ports named mem_<control>.
# The DDR timing controls (ddr_rate ... bank_stall_cycles) are described in sim.sim_memory;
# hdl.spec.ddr gives their values for a board.
MEMORY_CONTROLS = ("read_latency", "fault_lo", "fault_hi", "fault_read", "fault_write", "hang",
                   "ddr_rate", "refresh_period", "refresh_cycles", "bank_stall_rate",
                   "bank_stall_cycles")
STATUS_OK, STATUS_ERROR = 0, 1


class CosimError(SystoleError, RuntimeError):
    """The simulator could not be started, stopped answering, or exited."""


class _SimBus:
    """``RegisterBus`` over the co-simulation socket."""

    has_irq = True

    def __init__(self, session: "CosimSession"):
        self._session = session

    def read32(self, offset: int) -> int:
        return self._session.request("READ32", offset)

    def write32(self, offset: int, value: int) -> None:
        self._session.request("WRITE32", offset, value & 0xFFFF_FFFF)

    def wait_irq(self, timeout_s: float) -> bool:
        cycles = max(1, int(timeout_s * self._session.clock_hz))
        return bool(self._session.request("WAIT_IRQ", cycles))

    def now(self) -> float:
        return self._session.request("NOW") / self._session.clock_hz


class CosimSession:
    """One running simulation of ``config``'s accelerator with ``memory_bytes`` of DDR.

    The simulator's output (its build, then cocotb's log) goes to ``log_file``, which is
    removed on ``close`` unless the simulator failed; a ``CosimError`` names it. Each
    request waits at most ``request_timeout_s`` seconds of wall time for its answer.
    """

    def __init__(self, config: AccelConfig, memory_bytes: int = 1 << 30,
                 memory_base: int = DEFAULT_MEMORY_BASE, read_latency: int = 32,
                 request_timeout_s: float = _REQUEST_TIMEOUT_S):
        if memory_base + memory_bytes > 1 << config.addr_width:
            raise ValueError(f"memory window {memory_base:#x}+{memory_bytes:#x} exceeds the "
                             f"{config.addr_width}-bit DMA address space")
        if isinstance(request_timeout_s, bool) or not (
                isinstance(request_timeout_s, numbers.Real) and math.isfinite(request_timeout_s)
                and request_timeout_s > 0):
            raise ValueError(f"request_timeout_s={request_timeout_s!r} must be a finite number of "
                             "seconds > 0")
        self.config = config
        self.request_timeout_s = float(request_timeout_s)
        self._failed = False
        self.clock_hz = config.clock_mhz * 1e6
        self._ops = {name: code for code, name in enumerate(OPS)}
        self._lock = threading.Lock()
        self.requests = 0
        self._sock: socket.socket | None = None
        self._process: subprocess.Popen | None = None

        # Unix socket paths are limited to ~100 bytes: keep the directory short, under /tmp.
        self._directory = Path(tempfile.mkdtemp(prefix="systole-"))
        self.log_file = self._directory / "sim.log"
        # The DDR image lives in RAM when the machine has /dev/shm; it is sparse, so
        # only the pages the driver touches take memory.
        memory_file = tempfile.NamedTemporaryFile(prefix="systole-ddr-", dir=_shm_or(self._directory),
                                                  delete=False)
        memory_file.truncate(memory_bytes)
        memory_file.close()
        self._memory_path = Path(memory_file.name)
        self._memory_map = np.memmap(self._memory_path, dtype=np.uint8, mode="r+", shape=(memory_bytes,))
        # The file is unlinked once the simulator has mapped it; this descriptor lets a
        # third process (the C self-test in sim/test_firmware_rtl.py) map it as well.
        self.memory_fd = os.open(self._memory_path, os.O_RDWR)
        self.memory = MemoryWindow(self._memory_map, memory_base)
        self.bus = _SimBus(self)
        try:
            self._start(memory_base)
        except BaseException:
            self._stop(failed=True)
            raise
        if read_latency != 32:
            self.set_memory("read_latency", read_latency)

    def _start(self, memory_base: int) -> None:
        socket_path = self._directory / "sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(socket_path))
        listener.listen(1)
        command = [sys.executable, "-m", "sim.cosim",
                   "--config", json.dumps(dataclasses.asdict(self.config)),
                   "--socket", str(socket_path), "--memory", str(self._memory_path),
                   "--memory-base", hex(memory_base)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(_REPO), os.environ.get("PYTHONPATH", "")) if p)}
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(command, cwd=_REPO, env=env, stdout=log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        listener.settimeout(1.0)
        deadline = time.monotonic() + _START_TIMEOUT_S
        try:
            while self._sock is None:
                try:
                    self._sock, _ = listener.accept()
                except socket.timeout:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        raise CosimError(f"the simulator did not start (exit status "
                                         f"{self._process.poll()}): {self._log_tail()}; "
                                         f"see {self.log_file}") from None
        finally:
            # Both processes have mapped the DDR image once the simulator connects (it
            # maps at start-up), so the files can go now: nothing outlives the processes.
            listener.close()
            socket_path.unlink(missing_ok=True)
            self._memory_path.unlink(missing_ok=True)

    def _log_tail(self, lines: int = 6) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " / ".join(text[-lines:]) or "no output"

    # -- protocol --------------------------------------------------------------------
    def request(self, op: str, a: int = 0, b: int = 0) -> int:
        """Send one request and return its value.

        ``CosimError`` when the answer has not come within ``request_timeout_s``, the
        simulator exited or hung up, or it refused the request. After any but the last
        the session is closed and the simulator stopped.
        """
        what = f"{op}({a:#x}, {b:#x})"
        with self._lock:
            if self._sock is None:
                raise CosimError(f"the simulator session is closed; cannot send {what}")
            self.requests += 1
            reply = self._exchange(REQUEST.pack(self._ops[op], a, b), what)
        status, value = REPLY.unpack(reply)
        if status != STATUS_OK:
            raise CosimError(f"simulator refused request {what}")
        return value

    def _exchange(self, request: bytes, what: str) -> bytes:
        """Send ``request``, return the reply; the deadline is fixed before sending."""
        try:
            return self._send_and_wait(request, what)
        except CosimError:
            raise
        except OSError as exc:
            raise self._abandon(f"the simulator stopped answering {what} ({exc})") from exc
        except BaseException:
            # Ctrl-C mid-request: the reply still in flight would be taken for the next one's.
            self._abandon("interrupted")
            raise

    def _send_and_wait(self, request: bytes, what: str) -> bytes:
        deadline = time.monotonic() + self.request_timeout_s
        reply, exited = b"", False
        self._sock.settimeout(self.request_timeout_s)
        self._sock.sendall(request)
        while len(reply) < REPLY.size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._abandon(f"the simulator did not answer {what} within "
                                    f"{self.request_timeout_s:g} s (request_timeout_s); it was stopped")
            self._sock.settimeout(min(remaining, _POLL_S))
            try:
                chunk = self._sock.recv(REPLY.size - len(reply))
            except socket.timeout:
                if self._process is not None and self._process.poll() is not None:
                    if exited:
                        raise self._abandon(f"the simulator exited (status {self._process.poll()}) "
                                            f"before answering {what}: {self._log_tail(3)}") from None
                    exited = True           # one more look: its last reply may have just arrived
                continue
            if not chunk:
                raise self._abandon(f"the simulator hung up before answering {what}{self._exit_note()}: "
                                    f"{self._log_tail(3)}")
            reply += chunk
        return reply

    def _exit_note(self) -> str:
        if self._process is None:
            return ""
        try:
            return f" (exit status {self._process.wait(timeout=1.0)})"
        except subprocess.TimeoutExpired:
            return ""

    def _abandon(self, text: str) -> CosimError:
        """Close the session after a failed request: the stream is out of step now."""
        self._failed = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        return CosimError(f"{text}; see {self.log_file}")

    def set_memory(self, control: str, value: int) -> None:
        """Set a control of the simulated memory (``MEMORY_CONTROLS``)."""
        if control not in MEMORY_CONTROLS:
            raise ValueError(f"unknown memory control {control!r}; choose from {MEMORY_CONTROLS}")
        self.request("SET_MEMORY", MEMORY_CONTROLS.index(control), value)

    def cycles(self) -> int:
        """Simulated cycles since reset."""
        return self.request("NOW")

    def close(self) -> None:
        """Stop the simulator and remove the session's files."""
        failed = False
        if self._sock is not None:
            try:
                self.request("CLOSE")
            except CosimError:
                failed = True
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        self._stop(failed)

    def _stop(self, failed: bool) -> None:
        failed |= self._failed
        if self._process is not None:
            try:
                failed |= self._process.wait(timeout=60) != 0
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
                failed = True
            self._process = None
        self.memory = self._memory_map = None
        if self.memory_fd >= 0:
            os.close(self.memory_fd)
            self.memory_fd = -1
        self._memory_path.unlink(missing_ok=True)
        if not failed:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _shm_or(fallback: Path) -> Path:
    """Put the shared memory file in RAM (/dev/shm) when the machine has it."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def backend(config: AccelConfig, memory_bytes: int = 1 << 30,
            request_timeout_s: float = _REQUEST_TIMEOUT_S) -> DriverBackend:
    """The ``sim`` backend: the RTL in Verilator. The first use of a configuration
    compiles it (minutes)."""
    session = CosimSession(config, memory_bytes=memory_bytes, request_timeout_s=request_timeout_s)
    try:
        driver = Driver(session.bus, session.memory, config)
    except BaseException:
        session.close()
        raise
    return DriverBackend(config, driver, "sim", closer=session.close, platform=session)
