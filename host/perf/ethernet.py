"""``python -m host.perf.ethernet``: the Nexys Video over 1 Gb/s Ethernet, projected.

Decode tok/s of stories15M and Gemma 3 270M end to end, the weight upload time and
the sustained bulk MB/s, for the link as the host speaks it (``UdpLink`` and the
driver, protocol 2.2: per job one window, ``UdpLink.submit``: A's 1 KiB MEM_WRITE
datagrams, the job's register sequence as a REPLAY and C's first MEM_READ_AFTERs sent
back to back, the rest of C in a window of MEM_READs after the REPLAY's answer) and,
side by side in the same run, as protocol 2.1 spoke it (three exchanges a job: A's
window, a stop-and-wait REPLAY, C's window).

The model and its inputs, each measured here or taken from a named source:

- **Exchanges and bytes per token**: the real driver (``host.accel.driver.Driver``)
  runs one job of every matmul shape of the model over ``UdpLink`` against the Python
  bridge of ``tests/udp_board.py`` with an accelerator that finishes at once; every
  exchange (request and answer frame sizes) is recorded. The token's jobs are the
  projection's (``host.perf.projection.project``: K split at ``max_k``).
- **Wire** at 1 Gb/s (8 ns a byte): a datagram of P UDP payload bytes takes preamble
  and SFD 8 + max(64, Ethernet header 14 + IPv4 20 + UDP 8 + P + FCS 4) + inter-frame
  gap 12 bytes. Each direction has its own wire (full duplex).
- **Host** CPU (``time.thread_time`` of the thread running the driver and ``UdpLink``,
  over loopback): per job shape, three ways (``WAYS``): the job as ``generate()``'s fused
  decoder submits it (``submitted``: the driver's ``CompiledJob`` called through
  ``systole_udp_job``'s address, no Python in it), the whole ``driver.matmul``
  (``compiled``: the driver's Python, then one call of ``firmware/udp_bulk.c``) and the
  same with the windows in Python (``python``); per bulk datagram, ``write_mem`` and
  ``read_mem`` of 4 MiB. Both are answered by a ``Playback`` (``host/perf/udp_playback.c``,
  in a thread of its own, not counted) of the bridge model's recorded answers to the
  same requests: a responder as fast as the host asks, so that the figure is the
  host's own work (its system calls and the loopback stack included) and not waits on
  the Python bridge model. The lower and upper quartile over ``--job-repeats`` runs
  (jobs) or ``--repeats`` runs (bulk). A real NIC adds ``--nic-us`` of latency per
  round trip (an assumption, not measured here: interrupt moderation and the PHYs).
- **Board** turnaround (``board_cycles``): the link core's rates as its RTL states
  them (``hdl.link_rx``, ``hdl.link_exec``, ``hdl.link_tx``, ``hdl.datagram_tx``: a
  request byte per cycle in, a W or R beat per cycle, an answer byte per cycle out),
  ``EXCHANGE_CYCLES`` of hand-offs between the blocks per request, the DDR3's latency
  (``hdl.spec.ddr.READ_LATENCY_NS``) per memory command, and the register accesses:
  ``REG_READ_AXI_CYCLES`` / ``REG_WRITE_AXI_CYCLES`` for a REG_READ / REG_WRITE, and
  for a REPLAY ``LinkReplay``'s sequence (``replay_cycles``: the busy read, each
  write, the start, the poll that sees the job done, each read, with the sequencer's
  fetch of every entry). The job's run time is not in it: the polls before the last
  run while the job does, and the job is the accelerator ms below. All at the core's
  clock (``gen.liteeth.CLOCK``, MIG's ui_clk, in ``hdl.spec.boards``: 100 MHz).
  ``sim/test_eth_link.py`` runs the RTL behind LiteEth's core and holds these to
  what it measures: ``board_cycles`` of a 1 KiB MEM_WRITE and MEM_READ datagram to
  the steady-state cycles per datagram of a stream of them (1119 and 1118 cycles at
  the time of writing, against 1119 and 1119 here; within 3%), and the AXI4-Lite
  and REPLAY entry cycles below exactly.
- **At 100 MHz vs the simulated 125 MHz.** The core passes at most a byte per cycle:
  100 MB/s of frame bytes at the board's 100 MHz, below the 1 Gb/s wire's 125. A 1 KiB
  datagram takes ~1145 cycles there (11.5 us with the DDR3's latency), ~89 MB/s of
  payload either way at most against the wire's 115.7: on the board the link core,
  not the wire, bounds bulk transfers. The simulation clocks the core at the GMII's
  125 MHz, where it takes ~1119 cycles (9.0 us, ~114 MB/s), just above the wire's
  8.8 us.
- **Accelerator and host compute** per token: ``host.perf.projection.project`` for the
  nexys_video preset (the cycle model) and ``host.perf.host_time`` (the real
  transformer with free matmuls, timed here; ``--no-host-time``: 0).

A token's link time is, per job, the host's CPU outside its windows (the driver, the
link's Python: nothing is in flight meanwhile) plus the slower of the host's CPU inside
them and the windows' own time: for every exchange the NIC latency, the first
datagram's wires and board time, and each further datagram at the slower of the wires
and the board. The host works on a window while the board does, so the slower of the
two bounds it; 'no overlap' adds them instead (an upper bound). Bulk transfers (the
upload) run at the slowest of the host, the wires and the board per datagram.
"""

from __future__ import annotations

import binascii
import ctypes
import importlib.util
import math
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from hdl.spec.boards import BOARDS
from hdl.spec.config import preset
from hdl.spec.ddr import READ_LATENCY_NS
from hdl.spec.formats import WeightFormat
from hdl.spec.link_protocol import (REGISTER_LAYOUT, REPLAY_ANSWER_LAYOUT, REPLAY_HEADER_LAYOUT,
                                    REPLAY_READ_LAYOUT, REPLAY_WRITE_LAYOUT, REQUEST_OVERHEAD,
                                    RESPONSE_OVERHEAD, Command)

from ..accel.driver import Driver, WeightBuffer
from ..accel.pack import packed_size
from ..cli import ArgumentParser, entry, int_in, nonnegative_float
from ..platforms.link import LinkMemory, LinkRegisterBus
from ..platforms.cbuild import shared_library
from ..platforms.udp import UdpLink, bulk_library
from .projection import STORIES, llama2c_config, llama2c_matmuls, model_matmuls, project

__all__ = ["wire_s", "board_cycles", "board_s", "replay_counts", "replay_cycles", "Exchange", "TokenTraffic", "HostCost", "count_token", "measure_host",
           "JobCpu", "job_cpu", "Playback", "wire_board_s", "Figures", "figures", "shortlist_ms", "main"]

BOARD = BOARDS["nexys_video"]
CONFIG = preset(BOARD.preset)
LINE_BYTES_PER_S = 125e6                      # 1 Gb/s
PREAMBLE_SFD, ETH_HEADER, FCS, IFG, IPV4, UDP, MIN_FRAME = 8, 14, 4, 12, 20, 8, 64
MAX_PAYLOAD = 1024                            # the Ethernet bridge's max_payload (helper D's RTL)
# The link core's rates (cycles; see the module docstring): a request frame byte in, a W
# beat (MEM_WRITE) or an R beat (MEM_READ) on the AXI4 port, an answer frame byte out.
RX_CYCLES_PER_BYTE, MEM_CYCLES_PER_BEAT, TX_CYCLES_PER_BYTE = 1, 1, 1
# Per request, the hand-offs between DatagramRx, LinkRx, LinkExec, LinkTx and DatagramTx
# (measured: a 1 KiB MEM_WRITE datagram takes 1119 cycles = 1040 in + 64 W + 9 out + 6).
EXCHANGE_CYCLES = 6
# An AXI4-Lite access of the accelerator's registers as the link core sees it (hdl.csr
# answers the cycle after the handshake; sim/test_eth_link.py measures them): AR to R 2
# cycles, AW + W to B 3.
REG_READ_AXI_CYCLES, REG_WRITE_AXI_CYCLES = 2, 3
# LinkReplay's sequencer: it fetches an entry's bytes from its buffer one per two cycles,
# then takes two cycles to decode and step to the next; a read's 4 bytes are stored one
# a cycle; the start write follows the last write one cycle later (measured: a write
# every 17 cycles, a read every 12).
REPLAY_FETCH_CYCLES_PER_BYTE, REPLAY_STEP_CYCLES, REPLAY_STORE_CYCLES = 2, 2, REGISTER_LAYOUT.size
TARGETS = {"stories15M": 60.0, "Gemma 3 270M": 5.0, "upload_s": 5.0, "bulk_mb_s": 100.0}
# Schemes the projection can price (host.llm.quant): int8, the default W4A8 (its int4 kinds),
# every linear in int4.
QUANTS = ("smoothquant", "w4a8", "w4-gptq-all")
DEFAULT_QUANTS = QUANTS
REPO = Path(__file__).resolve().parents[2]
# A job's ways: submitted by compiled code (the fused decoder: systole_udp_job through its
# address), by the driver's Python in one compiled call (driver.matmul), or the Python window.
WAYS = ("submitted", "compiled", "python")


# The board clock the link core and the Ethernet core run on: gen.liteeth's CLOCK (host
# imports nothing from gen; tests/test_link_udp.py keeps the two equal).
CORE_CLOCK = "ui_clk"


def core_clock_hz() -> float:
    """The link core's clock (``CORE_CLOCK`` of ``hdl.spec.boards``)."""
    return BOARD.clocks_hz[CORE_CLOCK]


def wire_s(udp_payload: int) -> float:
    """Seconds one datagram of ``udp_payload`` bytes occupies a 1 Gb/s wire."""
    frame = max(MIN_FRAME, ETH_HEADER + IPV4 + UDP + udp_payload + FCS)
    return (PREAMBLE_SFD + frame + IFG) / LINE_BYTES_PER_S


def replay_counts(request: int, answer: int) -> tuple[int, int]:
    """``(writes, reads)`` of a REPLAY whose request frame has ``request`` bytes and whose
    (DONE) answer frame ``answer`` bytes."""
    reads = (answer - RESPONSE_OVERHEAD - REPLAY_ANSWER_LAYOUT.size) // REGISTER_LAYOUT.size
    listed = request - REQUEST_OVERHEAD - REPLAY_HEADER_LAYOUT.size - reads * REPLAY_READ_LAYOUT.size
    return max(listed, 0) // REPLAY_WRITE_LAYOUT.size, max(reads, 0)


def replay_cycles(writes: int, reads: int) -> int:
    """Cycles ``LinkReplay`` runs a REPLAY of ``writes`` writes and ``reads`` reads for,
    without the job: the busy read, the writes, the start, the poll that finds the job
    done, the reads (each list entry fetched first)."""
    write = REPLAY_WRITE_LAYOUT.size * REPLAY_FETCH_CYCLES_PER_BYTE + REPLAY_STEP_CYCLES + REG_WRITE_AXI_CYCLES
    read = REPLAY_READ_LAYOUT.size * REPLAY_FETCH_CYCLES_PER_BYTE + REPLAY_STEP_CYCLES + REG_READ_AXI_CYCLES \
        + REPLAY_STORE_CYCLES
    start = 1 + REG_WRITE_AXI_CYCLES
    return REG_READ_AXI_CYCLES + writes * write + start + REG_READ_AXI_CYCLES + reads * read


def board_cycles(command: str, request: int, answer: int, memory_cycles: int) -> int:
    """Core cycles the board takes for one request frame of ``request`` bytes answered
    with ``answer`` bytes (frame bytes, overheads included), a memory command's bus
    access taking ``memory_cycles`` besides its beats: see the module docstring."""
    cycles = request * RX_CYCLES_PER_BYTE + EXCHANGE_CYCLES + answer * TX_CYCLES_PER_BYTE
    command = command.removesuffix("_AFTER")     # an AFTER request is its command, run in order
    if command in ("MEM_WRITE", "MEM_READ"):
        data = request - REQUEST_OVERHEAD if command == "MEM_WRITE" else answer - RESPONSE_OVERHEAD
        cycles += memory_cycles + -(-data // CONFIG.bus_bytes) * MEM_CYCLES_PER_BEAT
    elif command == "REG_READ":
        cycles += REG_READ_AXI_CYCLES
    elif command == "REG_WRITE":
        cycles += REG_WRITE_AXI_CYCLES
    elif command == "REPLAY":
        cycles += replay_cycles(*replay_counts(request, answer))
    return cycles


def board_s(command: str, request: int, answer: int, clock: float | None = None) -> float:
    """Seconds the bridge takes for one request frame of ``request`` bytes answered with
    ``answer`` bytes (``board_cycles`` with the DDR3's latency, at the core's clock, or
    at ``clock`` Hz)."""
    clock = clock or core_clock_hz()
    return board_cycles(command, request, answer, math.ceil(READ_LATENCY_NS * 1e-9 * clock)) / clock


@dataclass(frozen=True)
class Exchange:
    """One group of datagrams: a stop-and-wait exchange (one pair) or a window."""

    command: str                               # JOB: a job's window (A, REPLAY, C: commands)
    pairs: tuple[tuple[int, int], ...]         # (request frame, answer frame) bytes, per datagram
    commands: tuple[str, ...] = ()             # per datagram, when they differ

    def command_of(self, index: int) -> str:
        return self.commands[index] if self.commands else self.command


@dataclass
class TokenTraffic:
    """What one decode token sends and receives, and in how many exchanges."""

    model: str
    jobs: int
    exchanges: list[Exchange] = field(default_factory=list)
    # Per job: its exchanges and the host's CPU (``job_cpu``) by way ("compiled": the
    # windows in firmware/udp_bulk.c, "python": the Python window).
    costs: list[tuple[list[Exchange], dict]] = field(default_factory=list)

    def host_s(self, way: str, which: int) -> float:
        """The host's CPU seconds per token (``which``: 0 the lower quartile, 1 the upper)."""
        return sum(cpu[way].total[which] for _, cpu in self.costs)

    def link_s(self, way: str, nic_s: float, which: int, overlap: bool = True) -> float:
        """Seconds of link per token: per job, the host's CPU outside its windows, then its
        windows' CPU overlapped with their NIC, wire and board time (the slower of the
        two; ``overlap`` False: their sum)."""
        total = 0.0
        for exchanges, cpu in self.costs:
            host = cpu[way]
            outside, inside = host.total[which] - host.inside[which], host.inside[which]
            wire_board = sum(wire_board_s(e, nic_s) for e in exchanges)
            total += outside + (max(inside, wire_board) if overlap else inside + wire_board)
        return total

    @property
    def datagrams(self) -> int:
        return sum(len(e.pairs) for e in self.exchanges)

    @property
    def stop_and_wait(self) -> int:
        return sum(1 for e in self.exchanges if e.command not in ("MEM_WRITE", "MEM_READ"))

    @property
    def bytes_out(self) -> int:
        return sum(r for e in self.exchanges for r, _ in e.pairs)

    @property
    def bytes_in(self) -> int:
        return sum(a for e in self.exchanges for _, a in e.pairs)


def _board_model():
    """tests/udp_board.py (the Python bridge; kept with the tests, loaded by path)."""
    path = REPO / "tests" / "udp_board.py"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the projection counts traffic against the tests' "
                                "bridge model; run it from a source checkout")
    spec = importlib.util.spec_from_file_location("udp_board", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("udp_board", module)
    spec.loader.exec_module(module)
    return module


def _recorded(link: UdpLink, log: list[Exchange]) -> None:
    """Log every exchange ``link`` makes: frame sizes of each request and answer."""
    transact, exchange = link.transact, link._exchange

    def recorded_transact(command, address, length, payload=b"", wait_s=0.0):
        answer = transact(command, address, length, payload, wait_s)
        log.append(Exchange(Command(command).name, ((REQUEST_OVERHEAD + len(payload),
                                                     RESPONSE_OVERHEAD + len(answer)),)))
        return answer

    def recorded_exchange(requests, what, *args, **kwargs):
        out = exchange(requests, what, *args, **kwargs)
        commands = tuple(r.command.name for r in requests)
        mixed = len(set(commands)) > 1
        log.append(Exchange("JOB" if mixed else commands[0],
                            tuple((len(r.frame), RESPONSE_OVERHEAD + len(r.answer)) for r in requests),
                            commands if mixed else ()))
        return out

    link.transact, link._exchange = recorded_transact, recorded_exchange


def count_token(name: str, matmuls, job_windows: bool = True, repeats: int = 0) -> TokenTraffic:
    """The exchanges of one decode token of ``matmuls``: the real driver's, one job per
    matmul (K split at ``max_k`` as the projection does), against the bridge model;
    each job one window (protocol 2.2, ``UdpLink.run_window``) or, ``job_windows`` False,
    three exchanges (A, REPLAY, C: protocol 2.1's way). With ``repeats``, each job
    shape's host CPU too (``job_cpu``), both ways (``TokenTraffic.host_s``)."""
    board_model = _board_model()
    window = BOARD.dram_window
    per_shape: dict[tuple[int, int], tuple[list[Exchange], dict]] = {}
    traffic = TokenTraffic(name, 0)
    with board_model.UdpBoard(CONFIG, memory_bytes=0, compute=False, max_payload=MAX_PAYLOAD) as board:
        with UdpLink.open(board.url, "127.0.0.1", board.address[1], timeout_s=1.0, retries=3) as link:
            compiled, link._bulk = link._bulk, None      # the Python window, whose frames _recorded sees
            link.job_windows = job_windows
            driver = Driver(LinkRegisterBus(link), LinkMemory(link, window.base, window.size), CONFIG)
            for shape in matmuls:
                for k0 in range(0, shape.k, CONFIG.max_k):
                    k = min(CONFIG.max_k, shape.k - k0)
                    if (shape.n, k) not in per_shape:
                        buffer = driver.alloc(packed_size(shape.n, k, CONFIG.cols))
                        weights = WeightBuffer(buffer, shape.n, k, 0, WeightFormat.INT8)
                        a = np.zeros((1, k), np.int8)
                        driver.matmul(a, weights)                # plans the job
                        log: list[Exchange] = []
                        _recorded(link, log)
                        answers = _recorded_answers(board)
                        driver.matmul(a, weights)                # the steady state: counted
                        del link.transact, link._exchange, board.handle
                        def matmul():
                            return lambda: driver.matmul(a, weights)
                        ways = {"compiled": (compiled, matmul, False), "python": (None, matmul, False)}
                        if job_windows and compiled is not None:
                            ways = {"submitted": (compiled, lambda: submitted(driver, weights, a), True), **ways}
                        cpu = job_cpu(link, ways, answers, repeats) if repeats else {}
                        driver.free(buffer)
                        per_shape[(shape.n, k)] = log, cpu
                    log, cpu = per_shape[(shape.n, k)]
                    traffic.exchanges += log
                    traffic.costs.append((log, cpu))
                    traffic.jobs += 1
    return traffic


def _recorded_answers(board) -> list[bytes]:
    """A list the bridge model's answers are appended to, until ``del board.handle``."""
    answers: list[bytes] = []
    handle = board.handle

    def recording(datagram: bytes):
        answer = handle(datagram)
        if answer is not None:
            answers.append(answer)
        return answer

    board.handle = recording
    return answers


@lru_cache(maxsize=1)
def playback_library() -> tuple[ctypes.CDLL | None, str | None]:
    """``host/perf/udp_playback.c`` compiled (``host.platforms.cbuild``), or ``(None, why not)``."""
    lib, problem = shared_library(Path(__file__).with_name("udp_playback.c"), "udp_playback")
    if lib is not None:
        lib.systole_udp_playback.restype = ctypes.c_int64
        lib.systole_udp_playback.argtypes = [ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                                             ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64)]
    return lib, problem


# The protocol's CRC-16 table: entry i is the CRC of the byte i from 0 (not reflected).
_CRC_TABLE = np.array([binascii.crc_hqx(bytes((i,)), 0) for i in range(256)], np.uint16)


class Playback:
    """A responder as fast as the host asks (``host/perf/udp_playback.c``) on a loopback
    socket, in a thread: it answers the n-th request with ``answers[n % len(answers)]``
    under the request's seq. ``RuntimeError`` at the end if a request was not the
    recorded answer's command."""

    def __init__(self, answers: list[bytes]):
        lib, problem = playback_library()
        if lib is None:
            raise RuntimeError(f"host/perf/udp_playback.c: {problem}")
        self._lib = lib
        self._blob = np.frombuffer(b"".join(answers), np.uint8)
        self._offsets = np.cumsum([0, *map(len, answers)], dtype=np.uint64)
        self._count = len(answers)
        self.answered = ctypes.c_uint64(0)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self._result: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="udp-playback")

    def _run(self) -> None:
        self._result = self._lib.systole_udp_playback(self.sock.fileno(), self._blob.ctypes.data,
                                                      self._offsets.ctypes.data, self._count,
                                                      _CRC_TABLE.ctypes.data, ctypes.byref(self.answered))

    def __enter__(self) -> "Playback":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stop:
            stop.sendto(b"\0", self.address)
        self._thread.join(5)
        self.sock.close()
        if self._result:
            why = "the socket failed" if self._result < 0 else \
                f"request {self._result - 1} was not the recorded answer's command"
            raise RuntimeError(f"playback: {why}")


@dataclass(frozen=True)
class JobCpu:
    """The host's CPU seconds per call of a job, (lower, upper quartile): in all, and
    inside its windows (the compiled calls, or the Python window and stop-and-wait
    exchanges), the part that overlaps the NIC, the wires and the board."""

    total: tuple[float, float]
    inside: tuple[float, float]


class _Timed:
    """``target`` (``firmware/udp_bulk.c``'s library, or a link for its Python window and
    stop-and-wait exchanges) with each call's CPU added to ``inside[0]``."""

    def __init__(self, target, inside: list):
        self._target, self._inside = target, inside

    def __getattr__(self, name: str):
        function = getattr(self._target, name)

        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self._inside[0] += time.thread_time() - start
        return timed


def job_cpu(link: UdpLink, ways: dict[str, tuple], answers: list[bytes], repeats: int) -> dict[str, JobCpu]:
    """The host's CPU seconds (``time.thread_time``: the driver and the link) per call of
    a job, answered by a ``Playback`` of ``answers`` (the bridge model's to the same
    job); per way of ``ways`` (name: ``(library, make, whole)``: the link's ``_bulk``,
    None for the Python window; ``make()``, called with that ``_bulk``, gives the call to
    time; ``whole``: the call is all compiled, inside the window), the lower and upper
    quartile of ``repeats`` calls, in all and inside the windows."""
    peer = link.sock.getpeername()
    bulk = link._bulk
    out = {}
    with Playback(answers) as playback:
        link.sock.connect(playback.address)
        try:
            for way, (library, make, whole) in ways.items():
                inside = [0.0]
                link._bulk = library
                job = make()
                if library is not None and not whole:
                    link._bulk = _Timed(library, inside)
                elif library is None:
                    timed = _Timed(link, inside)
                    link._exchange, link.transact = timed._exchange, timed.transact
                job()                                   # warm
                totals, insides = [], []
                for _ in range(repeats):
                    inside[0] = 0.0
                    start = time.thread_time()
                    job()
                    totals.append(time.thread_time() - start)
                    insides.append(totals[-1] if whole else inside[0])
                _untimed(link)
                out[way] = JobCpu(*(_quartiles(values) for values in (totals, insides)))
        finally:
            _untimed(link)
            link.sock.connect(peer)
            link._bulk = bulk
    return out


def submitted(driver: Driver, weights: WeightBuffer, a: np.ndarray) -> Callable[[], int]:
    """``a`` times ``weights`` as the fused decoder submits it: the driver's
    ``CompiledJob`` called through its address (``systole_udp_job``: no Python between
    the caller and the link), into an array of its own; the call returns its status."""
    c = np.empty((a.shape[0], weights.n), np.int32)
    job = driver.compiled_job(weights, a, c)
    if job is None:
        raise RuntimeError("the driver has no compiled job path over this link")

    def call() -> int:
        status = job.submit()
        if status != 1:
            driver.compiled_job_failed(job, status)
        return status
    return call


def _untimed(link: UdpLink) -> None:
    """``link``'s own window and stop-and-wait methods again (``job_cpu`` timed them)."""
    link.__dict__.pop("_exchange", None)
    link.__dict__.pop("transact", None)


def _quartiles(values: list[float]) -> tuple[float, float]:
    low, _, high = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return low, high


@dataclass
class HostCost:
    """This machine's CPU seconds per 1 KiB datagram of a bulk window, the lower and upper
    quartile over repeats."""

    write: tuple[float, float]
    read: tuple[float, float]


def measure_host(repeats: int = 5, bulk_bytes: int = 4 << 20, compiled: bool = True) -> HostCost:
    """``UdpLink``'s CPU time per 1 KiB MEM_WRITE / MEM_READ datagram of ``write_mem`` and
    ``read_mem`` over loopback, answered by a ``Playback`` of the bridge model's answers
    (``job_cpu``); the windows in ``firmware/udp_bulk.c`` where it builds, or in Python
    (``compiled`` False)."""
    board_model = _board_model()
    data = np.random.default_rng(0).integers(0, 256, bulk_bytes, dtype=np.uint8).tobytes()
    base = BOARD.dram_window.base
    datagrams = bulk_bytes // MAX_PAYLOAD
    out = {}
    with board_model.UdpBoard(CONFIG, memory_bytes=bulk_bytes, max_payload=MAX_PAYLOAD) as board:
        with UdpLink.open(board.url, "127.0.0.1", board.address[1], timeout_s=1.0, retries=3) as link:
            if not compiled:
                link._bulk = None
            link.hello()
            for name, transfer in (("write", lambda: link.write_mem(base, data)),
                                   ("read", lambda: link.read_mem(base, bulk_bytes))):
                answers = _recorded_answers(board)
                transfer()
                del board.handle
                low, high = job_cpu(link, {name: (link._bulk, lambda: transfer, False)}, answers,
                                    repeats)[name].total
                out[name] = (low / datagrams, high / datagrams)
    return HostCost(out["write"], out["read"])


@dataclass
class Figures:
    """One model's projection: per-token link time with job windows (2.2), compiled (as
    built) and in the Python window, and as 2.1 ran jobs."""

    model: str
    traffic: TokenTraffic
    quant: str                     # the quantization scheme: which layer kinds are int4
    accelerator_ms: float
    host_compute_ms: float
    link_ms: float                 # a job a window (protocol 2.2), submitted by compiled code (systole_udp_job)
    driver_link_ms: float          # the same jobs from the driver's Python (driver.matmul), one compiled call each
    python_link_ms: float          # the same windows in Python (where no compiler works)
    three_exchange_link_ms: float  # three exchanges a job (protocol 2.1)
    weight_bytes: int
    serial_link_ms: float = 0.0    # link_ms with no overlap of the host's CPU and the board's time

    @property
    def serial_tok_s(self) -> float:
        return self._tok_s(self.serial_link_ms)

    def _tok_s(self, link_ms: float) -> float:
        return 1e3 / (self.accelerator_ms + self.host_compute_ms + link_ms)

    @property
    def tok_s(self) -> float:
        return self._tok_s(self.link_ms)

    @property
    def driver_tok_s(self) -> float:
        return self._tok_s(self.driver_link_ms)

    @property
    def python_tok_s(self) -> float:
        return self._tok_s(self.python_link_ms)

    @property
    def three_exchange_tok_s(self) -> float:
        return self._tok_s(self.three_exchange_link_ms)


def _pipelined(host: float, pairs, command: str, clock: float | None = None) -> float:
    """Seconds per datagram of a stream: the slowest of host, either wire, the board
    (its core at ``clock`` Hz, default its own)."""
    return [max(host, wire_s(r), wire_s(a), board_s(command, r, a, clock)) for r, a in pairs]


def wire_board_s(exchange: Exchange, nic_s: float) -> float:
    """Seconds of one exchange on the NIC, the wires and the board, the host's CPU not
    counted (``TokenTraffic.link_s`` adds it): the first datagram's round trip (NIC
    latency, both wires, the board), then each further datagram at the slower of the
    wires and the board."""
    request, answer = exchange.pairs[0]
    total = nic_s + wire_s(request) + wire_s(answer) + board_s(exchange.command_of(0), request, answer)
    for index, pair in enumerate(exchange.pairs[1:], 1):
        total += _pipelined(0.0, [pair], exchange.command_of(index))[0]
    return total


def bulk_mb_s(host: HostCost, which: int, clock: float | None = None) -> tuple[float, float]:
    """Sustained MB/s of ``write_mem`` and ``read_mem`` (1 KiB datagrams, window full),
    the board's core at ``clock`` Hz (default its own)."""
    write = (REQUEST_OVERHEAD + MAX_PAYLOAD, RESPONSE_OVERHEAD)
    read = (REQUEST_OVERHEAD, RESPONSE_OVERHEAD + MAX_PAYLOAD)
    return (MAX_PAYLOAD / _pipelined(host.write[which], [write], "MEM_WRITE", clock)[0] / 1e6,
            MAX_PAYLOAD / _pipelined(host.read[which], [read], "MEM_READ", clock)[0] / 1e6)


def scheme_formats(quant: str) -> dict[str, WeightFormat]:
    """``{layer kind: INT4}`` for the kinds quantization scheme ``quant`` stores in 4 bits
    (``host.llm.quant``; the other kinds stay int8)."""
    from ..llm.quant import scheme
    return {kind: WeightFormat.INT4 for kind in scheme(quant).int4_kinds}


def shortlist_ms(vocab: int, dim: int, size: int, repeats: int = 5) -> float:
    """What an int4 classifier's shortlist (``QuantScheme.shortlist``) adds to a greedy
    token's host step, measured here: ``shortlist_argmax`` minus ``argmax_logit`` on
    the same random sums of ``vocab`` entries in random order, every block scanned by
    both (block bounds too large to skip any; a real model's sums let both skip most),
    median of ``repeats``."""
    from ..llm import _numba_fused as kernels
    from ..llm.quant import quantize_weight

    rng = np.random.default_rng(0)
    acc = rng.integers(-2 ** 20, 2 ** 20, (1, vocab)).astype(np.int32)
    w_scale = np.full(vocab, 1e-3, np.float32)
    bounds = np.full(-(-vocab // kernels.ARGMAX_BLOCK), 1e30, np.float32)       # finite, never below a logit
    scanned, x_scale = np.zeros(1, np.int64), np.ones(1, np.float32)
    q8, s8 = quantize_weight(rng.standard_normal((vocab, dim)).astype(np.float32), "channel")
    q_x = rng.integers(-127, 128, (1, dim)).astype(np.int8)
    times: dict[str, list[float]] = {"argmax": [], "shortlist": []}
    for _ in range(repeats + 1):                 # the first compiles
        for which in times:
            t0 = time.perf_counter()
            if which == "argmax":
                kernels.argmax_logit(acc, w_scale, x_scale, bounds, scanned)
            else:
                kernels.shortlist_argmax(acc, w_scale, x_scale, bounds, scanned, size, q8, s8, q_x)
            times[which].append(time.perf_counter() - t0)
    return max(0.0, statistics.median(times["shortlist"][1:]) - statistics.median(times["argmax"][1:])) * 1e3


def figures(cases, nic_s: float, which: int, quants=("smoothquant",),
            shortlist_ms: dict | None = None) -> list[Figures]:
    """Each (name, matmuls, host compute ms, traffic, traffic as 2.1) case's figures, per scheme of
    ``quants`` (the weights' formats change the accelerator's time and the upload, not
    the link's exchanges: A and C are int8 and int32 in every scheme). ``shortlist_ms``
    maps (model, scheme) to the host time a scheme's shortlist adds (``shortlist_ms``);
    ``which`` 0 takes the host's lower quartile CPU per job, 1 the upper."""
    out = []
    for name, matmuls, host_ms, traffic, three in cases:
        link = traffic.link_s("submitted", nic_s, which)
        serial = traffic.link_s("submitted", nic_s, which, overlap=False)
        driver = traffic.link_s("compiled", nic_s, which)
        python = traffic.link_s("python", nic_s, which)
        old = three.link_s("compiled", nic_s, which)
        for quant in quants:
            ms = host_ms + (shortlist_ms or {}).get((name, quant), 0.0)
            p = project(name, matmuls, BOARD, CONFIG, ms, formats=scheme_formats(quant))
            out.append(Figures(name, traffic, quant, p.accelerator_ms, ms, link * 1e3, driver * 1e3, python * 1e3,
                               old * 1e3, p.weight_bytes, serial * 1e3))
    return out


def _cases(host_time: bool):
    """(name, matmuls, host ms) of stories15M and Gemma 3 270M."""
    from .host_time import measure_host_time, random_llama_weights
    out = []
    dims = STORIES["stories15M"]
    config = llama2c_config(**dims)
    ms = measure_host_time(config, random_llama_weights(config), fused=True, greedy=True,
                           repeats=5).median_ms if host_time else 0.0
    out.append(("stories15M", llama2c_matmuls(**dims), ms))
    from ..llm.model import load_model
    gemma = load_model(None, progress=False)
    ms = measure_host_time(gemma.config, gemma.weights, fused=True, greedy=True,
                           repeats=5).median_ms if host_time else 0.0
    out.append(("Gemma 3 270M", model_matmuls(gemma.config), ms))
    return out


def _range(low: float, high: float, fmt: str = "{:.1f}") -> str:
    a, b = sorted((low, high))
    return fmt.format(a) if fmt.format(a) == fmt.format(b) else f"{fmt.format(a)}-{fmt.format(b)}"


@entry
def main(argv: list[str] | None = None) -> int:
    """Print the projection (see the module docstring); exit 0 (targets are reported, not enforced)."""
    parser = ArgumentParser(prog="python -m host.perf.ethernet", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int_in(1), default=5, help="host-cost runs (default: %(default)s)")
    parser.add_argument("--job-repeats", type=int_in(2), default=30, metavar="N",
                        help="timed runs of each job shape (default: %(default)s)")
    parser.add_argument("--nic-us", type=nonnegative_float, default=20.0, metavar="US",
                        help="NIC and kernel latency per round trip, not measured here (default: %(default)s)")
    parser.add_argument("--no-host-time", action="store_true", help="count no host compute per token")
    parser.add_argument("--quant", nargs="+", choices=QUANTS, default=list(DEFAULT_QUANTS), metavar="SCHEME",
                        help=f"quantization schemes, one row each (their int4 layer kinds; default: "
                             f"{' '.join(DEFAULT_QUANTS)}; choices: {', '.join(QUANTS)})")
    args = parser.parse_args(argv)
    print("host CPU per bulk datagram (UdpLink over loopback against recorded answers)...", flush=True)
    host = measure_host(args.repeats)
    python = measure_host(args.repeats, compiled=False)
    print("counting each model's exchanges per token and the host CPU per job (the real driver, an "
          "instant accelerator)...", flush=True)
    cases = [(name, matmuls, ms, count_token(name, matmuls, repeats=args.job_repeats),
              count_token(name, matmuls, job_windows=False, repeats=args.job_repeats))
             for name, matmuls, ms in _cases(not args.no_host_time)]
    nic = args.nic_us * 1e-6
    from ..llm.quant import scheme
    shapes = {"stories15M": (llama2c_config(**STORIES["stories15M"]).vocab_size, STORIES["stories15M"]["dim"])}
    if not args.no_host_time:
        from ..llm.model import load_model
        gemma = load_model(None, progress=False).config
        shapes["Gemma 3 270M"] = (gemma.vocab_size, gemma.dim)
    extra = {(name, quant): shortlist_ms(*shape, scheme(quant).shortlist)
             for name, shape in shapes.items() for quant in args.quant if scheme(quant).shortlist}
    best = figures(cases, nic, 0, args.quant, extra)
    worst = figures(cases, nic, 1, args.quant, extra)
    clock = core_clock_hz()
    us = "{:.1f}"
    print(f"\nNexys Video over 1 Gb/s Ethernet (UDP, {MAX_PAYLOAD}-byte max_payload); board link core at "
          f"{clock / 1e6:g} MHz; NIC latency {args.nic_us:g} us per round trip (assumed)")
    print(f"host CPU per 1 KiB datagram in a window: write {_range(host.write[0] * 1e6, host.write[1] * 1e6, us)} "
          f"us, read {_range(host.read[0] * 1e6, host.read[1] * 1e6, us)} us ({args.repeats} runs; "
          f"{'firmware/udp_bulk.c' if bulk_library()[0] is not None else 'Python: ' + str(bulk_library()[1])}); "
          f"the Python window in the same run: write {_range(python.write[0] * 1e6, python.write[1] * 1e6, us)} "
          f"us, read {_range(python.read[0] * 1e6, python.read[1] * 1e6, us)} us")
    for b in best:
        if b.quant == args.quant[0]:
            t = b.traffic
            def cpu(way: str) -> str:
                return _range(t.host_s(way, 0) * 1e3, t.host_s(way, 1) * 1e3, '{:.2f}')
            print(f"host CPU per token, {b.model}'s {t.jobs} jobs ({args.job_repeats} runs a job, quartiles): "
                  f"{cpu('submitted')} ms submitted by compiled code (systole_udp_job), {cpu('compiled')} ms from "
                  f"the driver's Python, {cpu('python')} ms in the Python window")
    write_wire = wire_s(REQUEST_OVERHEAD + MAX_PAYLOAD)
    print(f"per 1 KiB datagram: wire {write_wire * 1e6:.2f} us; board "
          f"{board_s('MEM_WRITE', REQUEST_OVERHEAD + MAX_PAYLOAD, RESPONSE_OVERHEAD) * 1e6:.2f} us (write), "
          f"{board_s('MEM_READ', REQUEST_OVERHEAD, RESPONSE_OVERHEAD + MAX_PAYLOAD) * 1e6:.2f} us (read)")
    print()
    header = (f"{'model':<14}{'quant':<13}{'jobs':>5}{'exch.':>7}{'s&w':>6}{'KB out':>8}{'KB in':>8}{'accel ms':>10}"
              f"{'host ms':>9}{'link ms':>14}{'tok/s':>12}{'no overlap':>12}{'driver':>12}{'Python win.':>13}"
              f"{'2.1 link ms':>14}"
              f"{'2.1 tok/s':>12}{'target':>8}")
    print(header)
    for b, w in zip(best, worst):
        t = b.traffic
        target = TARGETS[b.model]
        print(f"{b.model:<14}{b.quant:<13}{t.jobs:>5}{len(t.exchanges):>7}{t.stop_and_wait:>6}{t.bytes_out / 1e3:>8.1f}"
              f"{t.bytes_in / 1e3:>8.1f}{b.accelerator_ms:>10.2f}{b.host_compute_ms:>9.2f}"
              f"{_range(b.link_ms, w.link_ms, '{:.2f}'):>14}{_range(b.tok_s, w.tok_s):>12}"
              f"{_range(b.serial_tok_s, w.serial_tok_s):>12}{_range(b.driver_tok_s, w.driver_tok_s):>12}"
              f"{_range(b.python_tok_s, w.python_tok_s):>13}"
              f"{_range(b.three_exchange_link_ms, w.three_exchange_link_ms, '{:.2f}'):>14}"
              f"{_range(b.three_exchange_tok_s, w.three_exchange_tok_s):>12}{'>= ' + format(target, 'g'):>8}")
    (wb, rb), (ww, rw) = bulk_mb_s(host, 0), bulk_mb_s(host, 1)
    simulated = BOARD.ethernet.clock_hz                  # the GMII clock the simulation runs the core at
    (sb, sr), (sw, srw) = bulk_mb_s(host, 0, simulated), bulk_mb_s(host, 1, simulated)
    print(f"\nbulk on the board (the link core at {clock / 1e6:g} MHz, a byte a cycle): write {_range(wb, ww)} MB/s, "
          f"read {_range(rb, rw)} MB/s; the core at the simulated {simulated / 1e6:g} MHz: write {_range(sb, sw)} "
          f"MB/s, read {_range(sr, srw)} MB/s (target >= {TARGETS['bulk_mb_s']:g} there; sim/test_eth_link.py "
          f"measures it); the wire alone: {MAX_PAYLOAD / write_wire / 1e6:.1f} MB/s")
    for b in best:
        print(f"weight upload, {b.model} {b.quant}: {b.weight_bytes / 1e6:.1f} MB in {_range(b.weight_bytes / wb / 1e6, b.weight_bytes / ww / 1e6, '{:.2f}')} s "
              f"(target <= {TARGETS['upload_s']:g} s)")
    print("\n'link ms': per job as the fused decoder submits it (systole_udp_job called through its address, "
          "as generate() decodes over UDP), the slower of the host's CPU in that call and the window's NIC, wire "
          "and board time; 'no overlap': tok/s with those two added instead. 'driver': tok/s with each job from "
          "the driver's Python (driver.matmul: its CPU outside the compiled call added). 'Python win.': the same "
          "with the windows in Python. '2.1': the driver with each job as three exchanges (A's window, a "
          "stop-and-wait REPLAY, C's window), as protocol 2.1 ran it; 'exch.' and 's&w' count the 2.2 traffic "
          "(a job's window is one round trip).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
