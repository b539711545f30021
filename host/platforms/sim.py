"""The simulator platform: the generated RTL running in Verilator, driven over a socket.

``CosimSession`` builds (once, cached) the simulation top ``sim.cosim.SimSystem``
for an ``AccelConfig``: the accelerator plus a DPI-backed AXI memory. It starts
the simulator in a background thread with ``sim.cosim_server`` as its cocotb test,
and exposes:

- ``bus``: a ``RegisterBus`` whose register accesses are AXI4-Lite transactions in
  the simulation, with ``wait_irq`` and ``now`` in simulated time;
- ``memory``: a ``DeviceMemory`` over the file that the simulated DDR reads. The
  driver writes weights into it at memory speed, never beat by beat.

Everything above this module is the same driver code that runs on a board.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from hdl.config import AccelConfig

from ..bus import MemoryWindow

__all__ = ["CosimSession", "CosimError", "DEFAULT_MEMORY_BASE"]

DEFAULT_MEMORY_BASE = 0x4000_0000
_START_TIMEOUT_S = 600.0       # the first Verilator build of a large config takes minutes


class CosimError(RuntimeError):
    """The simulator could not be started or stopped answering."""


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
    """One running simulation of ``config``'s accelerator with ``memory_bytes`` of DDR."""

    def __init__(self, config: AccelConfig, memory_bytes: int = 1 << 30,
                 memory_base: int = DEFAULT_MEMORY_BASE, read_latency: int = 32,
                 log_file: Path | None = None):
        from sim import cosim, cosim_server
        from sim.runner import BUILD, REPO

        if memory_base + memory_bytes > 1 << config.addr_width:
            raise ValueError(f"memory window {memory_base:#x}+{memory_bytes:#x} exceeds the "
                             f"{config.addr_width}-bit DMA address space")
        self.config = config
        self.clock_hz = config.clock_mhz * 1e6
        self._ops = {name: code for code, name in enumerate(cosim_server.OPS)}
        self._request_struct, self._reply_struct = cosim_server.REQUEST, cosim_server.REPLY
        self._lock = threading.Lock()
        self.requests = 0

        runner, build_dir, sim, toplevel = cosim.build(config)
        workdir = BUILD / "cosim" / f"{config.name}-{os.getpid()}-{id(self):x}"
        workdir.mkdir(parents=True, exist_ok=True)
        # The DDR image lives in RAM when the machine has /dev/shm; it is sparse, so
        # only the pages the driver touches take memory.
        memory_file = tempfile.NamedTemporaryFile(prefix="systole-ddr-", dir=_shm_or(workdir),
                                                  delete=False)
        memory_file.truncate(memory_bytes)
        memory_file.close()
        self._memory_path = Path(memory_file.name)
        self._memory_map = np.memmap(self._memory_path, dtype=np.uint8, mode="r+",
                                     shape=(memory_bytes,))
        self.memory = MemoryWindow(self._memory_map, memory_base)
        self.bus = _SimBus(self)

        # Unix socket paths are limited to ~100 bytes: keep it short, under /tmp.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="systole-"))
        socket_path = self._socket_dir / "sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(socket_path))
        listener.listen(1)
        env = {
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "SYSTOLE_COSIM_SOCKET": str(socket_path),
            "SYSTOLE_COSIM_PERIOD_PS": str(round(1e6 / config.clock_mhz)),
            "SYSTOLE_SIM_MEM": str(self._memory_path),
            "SYSTOLE_SIM_MEM_BASE": hex(memory_base),
        }
        self.log_file = log_file or workdir / "sim.log"
        self._failure: BaseException | None = None
        self._sock: socket.socket | None = None

        def run():
            try:
                runner.test(test_module="sim.cosim_server", hdl_toplevel=toplevel,
                            build_dir=build_dir, test_dir=workdir, extra_env=env,
                            timescale=sim.timescale, log_file=self.log_file)
            except BaseException as exc:          # SystemExit from cocotb on failure too
                self._failure = exc

        self._thread = threading.Thread(target=run, name="systole-cosim", daemon=True)
        self._thread.start()
        listener.settimeout(1.0)
        deadline = time.monotonic() + _START_TIMEOUT_S
        try:
            while self._sock is None:
                try:
                    self._sock, _ = listener.accept()
                except socket.timeout:
                    if not self._thread.is_alive() or time.monotonic() > deadline:
                        reason = f" ({self._failure!r})" if self._failure is not None else ""
                        raise CosimError(f"the simulator did not start{reason}; see {self.log_file}")
        finally:
            # Both processes have mapped the DDR image once the simulator connects (it
            # maps at start-up), so the files can go now: nothing outlives the processes.
            listener.close()
            self._remove_files()
        self._sock.settimeout(None)
        if read_latency != 32:
            self.set_memory("read_latency", read_latency)

    # -- protocol --------------------------------------------------------------------
    def request(self, op: str, a: int = 0, b: int = 0) -> int:
        """Send one request and return its value; ``CosimError`` if the simulator died."""
        with self._lock:
            self.requests += 1
            try:
                self._sock.sendall(self._request_struct.pack(self._ops[op], a, b))
                reply = b""
                while len(reply) < self._reply_struct.size:
                    chunk = self._sock.recv(self._reply_struct.size - len(reply))
                    if not chunk:
                        raise ConnectionError("simulator closed the connection")
                    reply += chunk
            except OSError as exc:
                raise CosimError(f"simulator stopped answering ({exc}); see {self.log_file}") from exc
        status, value = self._reply_struct.unpack(reply)
        if status != 0:
            raise CosimError(f"simulator refused request {op}({a:#x}, {b:#x})")
        return value

    def set_memory(self, control: str, value: int) -> None:
        """Set a control of the simulated memory (``sim.cosim_server.MEMORY_CONTROLS``)."""
        from sim.cosim_server import MEMORY_CONTROLS
        if control not in MEMORY_CONTROLS:
            raise ValueError(f"unknown memory control {control!r}; choose from {MEMORY_CONTROLS}")
        self.request("SET_MEMORY", MEMORY_CONTROLS.index(control), value)

    def cycles(self) -> int:
        """Simulated cycles since reset."""
        return self.request("NOW")

    def close(self) -> None:
        """Stop the simulator and remove the session's files."""
        if self._sock is not None:
            try:
                self.request("CLOSE")
            except CosimError:
                pass
            self._sock.close()
            self._sock = None
            self._thread.join(timeout=60)
        self.memory = self._memory_map = None

    def _remove_files(self) -> None:
        self._memory_path.unlink(missing_ok=True)
        (self._socket_dir / "sock").unlink(missing_ok=True)
        self._socket_dir.rmdir()

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
