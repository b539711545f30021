"""A Nexys Video Ethernet bridge in Python: protocol 2.2 over a UDP socket, with faults.

``UdpBoard`` is a thread that answers link requests on a localhost UDP socket as
``hdl.spec.link_protocol`` says a bridge does: one request frame per datagram, the
answer to the datagram's source; ``request_checks`` refuse; the write-sequence rules
(``seq_verdict``) keep every state-changing request from running twice; a byte memory
at the board's DDR3 window; and an accelerator register file whose jobs run the golden
model (``host.accel.golden.golden_job``) at ``ap_start``, or finish at once without
computing (``compute=False``, for counting traffic), so the real driver runs through it.
REPLAY (2.1) runs a planned job's register sequence in one exchange (``max_replay``
bytes, 0: not offered); its repeat re-reads the read list and answers the remembered
result, as the RTL does. The AFTER commands (2.2) run only right after the request
numbered before them (else EARLY); a MEM_READ_AFTER repeat reads again, and the last
REPLAY, followed only by MEM_READ_AFTERs, is answered again by reading its list.

Faults, by a seeded schedule (``Faults``), in either direction: ``drop``, ``duplicate``,
``reorder`` (held back until the next datagram has gone) and ``corrupt`` (one byte
flipped). ``executed`` logs every state-changing request that ran: ``(cmd, seq, addr,
payload)``.
"""

from __future__ import annotations

import random
import socket
import threading
from dataclasses import dataclass, field

import numpy as np

from hdl.spec.boards import BOARDS
from hdl.spec.config import AccelConfig
from hdl.spec.job import FIELDS, Job
from hdl.spec.link_protocol import (
    CRC_BYTES,
    REQUEST_LAYOUT,
    REQUEST_SYNC,
    SYNC_BYTES,
    STATE_CHANGING,
    AFTER,
    MEM_READS,
    REPLAYS,
    Command,
    ReplayResult,
    Status,
    crc16,
    decode_replay,
    encode_hello,
    encode_response,
    replay_status,
    request_status,
    seq_verdict,
)
from hdl.spec.regmap import ErrorCode, REGISTERS, by_name, const_value
from host.accel.golden import golden_job

__all__ = ["Faults", "Registers", "UdpBoard"]

WINDOW = BOARDS["nexys_video"].dram_window


@dataclass
class Faults:
    """Probabilities of each fault for one direction's datagrams, drawn from ``seed``."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    seed: int = 0
    counts: dict = field(default_factory=lambda: dict(drop=0, duplicate=0, reorder=0, corrupt=0))

    def __post_init__(self):
        self._random = random.Random(self.seed)
        self._held: list[bytes] = []

    def apply(self, datagram: bytes) -> list[bytes]:
        """What goes on for ``datagram``: nothing, it, it twice, a damaged copy, or an
        earlier held-back datagram after it."""
        r = self._random
        if r.random() < self.drop:
            self.counts["drop"] += 1
            return []
        if r.random() < self.corrupt:
            self.counts["corrupt"] += 1
            damaged = bytearray(datagram)
            damaged[r.randrange(len(damaged))] ^= 1 << r.randrange(8)
            datagram = bytes(damaged)
        out = [datagram]
        if r.random() < self.duplicate:
            self.counts["duplicate"] += 1
            out.append(datagram)
        if r.random() < self.reorder and not self._held:
            self.counts["reorder"] += 1
            self._held = out
            return []
        out += self._held
        self._held = []
        return out

    def flush(self) -> list[bytes]:
        """A held-back datagram, once nothing followed it for a while."""
        out, self._held = self._held, []
        return out


class Registers:
    """The accelerator's s_axi_ctrl: constants, job registers, CTRL/GIE/IER/ISR; a job runs
    at ``ap_start`` (the golden model on ``memory`` when ``compute``) and is done at once."""

    def __init__(self, config: AccelConfig, memory: np.ndarray | None, base: int, compute: bool = True):
        self.config, self.memory, self.base, self.compute = config, memory, base, compute
        self.words = {reg.offset: const_value(reg, config) if reg.kind == "const" else 0 for reg in REGISTERS}
        self.ctrl = by_name("CTRL")
        self.words[self.ctrl.offset] = self.ctrl.field("ap_idle").mask
        self.isr, self.ier, self.gie = (by_name(n).offset for n in ("ISR", "IER", "GIE"))
        self.jobs = 0

    @property
    def irq(self) -> bool:
        return bool(self.words[self.gie] & 1 and self.words[self.ier] & self.words[self.isr])

    def read(self, offset: int) -> int:
        value = self.words.get(offset, 0)
        if offset == self.ctrl.offset:                     # ap_done is clear-on-read
            self.words[offset] &= ~self.ctrl.field("ap_done").mask
        return value

    def write(self, offset: int, value: int) -> None:
        if offset == self.ctrl.offset:
            if value & self.ctrl.field("soft_reset").mask:
                self.words[offset] = self.ctrl.field("ap_idle").mask
            elif value & self.ctrl.field("ap_start").mask:
                self._run()
        elif offset == self.isr:
            self.words[offset] &= ~value                   # toggle-on-write of set bits
        elif offset in self.words and next(r for r in REGISTERS if r.offset == offset).kind == "rw":
            self.words[offset] = value

    def _run(self) -> None:
        self.jobs += 1
        job = Job(**{f.name: sum(self.words[by_name(r).offset] << 32 * i for i, r in enumerate(f.registers))
                     for f in FIELDS})
        code, address = (golden_job(self.config, job, self.memory, self.base) if self.compute
                         else (ErrorCode.OK, 0))
        self.words[by_name("ERR_CODE").offset] = int(code)
        self.words[by_name("ERR_ADDR_LO").offset] = address & 0xFFFF_FFFF
        self.words[by_name("ERR_ADDR_HI").offset] = address >> 32
        self.words[by_name("PERF_BUSY").offset] = 1000 + self.jobs
        self.words[self.isr] |= 1
        ctrl = self.ctrl
        self.words[ctrl.offset] = ctrl.field("ap_done").mask | ctrl.field("ap_idle").mask | ctrl.field("ap_ready").mask


class UdpBoard:
    """The bridge thread. ``address`` is where it listens; ``memory_bytes`` of DDR at the
    Nexys Video's window base (``memory_bytes=0``: writes are checked and dropped, reads
    return zeros). Use as a context manager, or ``start``/``stop``."""

    def __init__(self, config: AccelConfig, *, memory_bytes: int = 8 << 20, max_payload: int = 1024,
                 compute: bool = True, inbound: Faults | None = None, outbound: Faults | None = None,
                 ctrl_addr_width: int = 12, addr_width: int = 32, max_replay: int = 256,
                 clock_khz: int = 100_000):
        self.config = config
        self.base = WINDOW.base
        self.memory = np.zeros(memory_bytes, np.uint8) if memory_bytes else None
        self.registers = Registers(config, self.memory, self.base, compute)
        self.limits = dict(max_payload=max_payload, ctrl_addr_width=ctrl_addr_width, addr_width=addr_width,
                           max_replay=max_replay)
        self.clock_khz = clock_khz
        self.last_replay: tuple[ReplayResult, list] | None = None   # a repeat re-reads its list
        self.inbound, self.outbound = inbound or Faults(), outbound or Faults(seed=1)
        self.last_seq, self.last_status, self.last_cmd = 0, Status.OK, None
        self.replay_seq, self.replay_ok = 0, False         # the last REPLAY, for its repeat
        self.executed: list[tuple[int, int, int, bytes]] = []
        self.requests = self.dropped = 0                 # datagrams taken, and not frames at all
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.002)
        self.address = self.sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="udp-board")

    @property
    def url(self) -> str:
        return f"udp://{self.address[0]}:{self.address[1]}"

    def start(self) -> "UdpBoard":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def __enter__(self) -> "UdpBoard":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the wire ----------------------------------------------------------------------
    def _serve(self) -> None:
        peer = None
        while not self._stop.is_set():
            try:
                datagram, peer = self.sock.recvfrom(65536)
            except socket.timeout:
                for late in self.inbound.flush():
                    self._answer(late, peer)
                for late in self.outbound.flush():
                    self.sock.sendto(late, peer)
                continue
            except OSError:
                return
            for arrived in self.inbound.apply(datagram):
                self._answer(arrived, peer)

    def _answer(self, datagram: bytes, peer) -> None:
        self.requests += 1
        answer = self.handle(datagram)
        if answer is None:
            self.dropped += 1
            return
        for out in self.outbound.apply(answer):
            self.sock.sendto(out, peer)

    # -- the bridge --------------------------------------------------------------------
    def handle(self, datagram: bytes) -> bytes | None:
        """The answer to one datagram, None when it is not a request frame to answer."""
        header_end = SYNC_BYTES + REQUEST_LAYOUT.size
        if len(datagram) < header_end + CRC_BYTES or datagram[0] != REQUEST_SYNC:
            return None
        fields = REQUEST_LAYOUT.unpack(datagram[SYNC_BYTES:])
        cmd, seq, addr, length = fields["cmd"], fields["seq"], fields["addr"], fields["length"]
        payload_length = length if cmd in (c for c in Command if c.has_payload) else 0
        end = header_end + payload_length
        if len(datagram) < end + CRC_BYTES:
            return encode_response(cmd, seq, Status.TRUNCATED)
        if len(datagram) > end + CRC_BYTES:
            return None
        if int.from_bytes(datagram[end:], "little") != crc16(datagram[SYNC_BYTES:end]):
            return encode_response(cmd, seq, Status.CRC)
        payload = datagram[header_end:end]
        if cmd in STATE_CHANGING:
            if cmd in REPLAYS and seq == self.replay_seq and self.replay_ok:
                result, reads = self.last_replay          # its answer was lost: read the list again
                return encode_response(cmd, seq, Status.OK, self._replay_answer(result, reads))
            verdict = seq_verdict(seq, self.last_seq, after=cmd in AFTER)
            if verdict == "repeat":
                if cmd == Command.MEM_READ_AFTER and self.last_cmd == cmd and self.last_status == Status.OK:
                    return encode_response(cmd, seq, *self._execute(cmd, addr, length, payload))   # reads again
                return encode_response(cmd, seq, self.last_status)
            if verdict in ("stale", "early"):
                return encode_response(cmd, seq, Status.STALE if verdict == "stale" else Status.EARLY)
            status, out = self._execute(cmd, addr, length, payload)
            self.last_seq, self.last_status, self.last_cmd = seq, status, cmd
            if cmd in REPLAYS:
                self.replay_seq, self.replay_ok = seq, status == Status.OK
            elif cmd != Command.MEM_READ_AFTER:
                self.replay_ok = False
            if status == Status.OK:
                self.executed.append((cmd, seq, addr, bytes(payload)))
            return encode_response(cmd, seq, status, out)
        status, out = self._execute(cmd, addr, length, payload)
        return encode_response(cmd, seq, status, out)

    def _execute(self, cmd: int, addr: int, length: int, payload: bytes) -> tuple[Status, bytes]:
        status = request_status(cmd, addr, length, **self.limits)
        if status != Status.OK:
            return status, b""
        if cmd == Command.HELLO:
            return Status.OK, encode_hello(bus_bytes=self.config.bus_bytes, irq=int(self.registers.irq),
                                           last_seq=self.last_seq, clock_khz=self.clock_khz, **self.limits)
        if cmd in REPLAYS:
            return self._replay(payload)
        if cmd == Command.IRQ:
            return Status.OK, bytes((int(self.registers.irq),))
        if cmd == Command.REG_READ:
            return Status.OK, self.registers.read(addr).to_bytes(4, "little")
        if cmd == Command.REG_WRITE:
            self.registers.write(addr, int.from_bytes(payload, "little"))
            return Status.OK, b""
        offset = addr - self.base
        size = self.memory.size if self.memory is not None else WINDOW.size
        if offset < 0 or offset + length > size:
            return Status.AXI_DECERR, b""
        if cmd in MEM_READS:
            return Status.OK, (self.memory[offset:offset + length].tobytes() if self.memory is not None
                               else bytes(length))
        if self.memory is not None:
            self.memory[offset:offset + length] = np.frombuffer(payload, np.uint8)
        return Status.OK, b""

    def _replay(self, payload: bytes) -> tuple[Status, bytes]:
        """A REPLAY: the busy check, the writes, start, the wait (jobs here finish at
        ap_start), the reads (the module docstring of ``hdl.spec.link_protocol``)."""
        status = replay_status(payload, max_replay=self.limits["max_replay"],
                               ctrl_addr_width=self.limits["ctrl_addr_width"])
        if status != Status.OK:
            return status, b""
        head, writes, reads = decode_replay(payload)
        registers = self.registers
        if registers.read(head["status_offset"]) & head["busy_mask"]:
            result = ReplayResult.BUSY
        else:
            for offset, value in writes:
                registers.write(offset, value)
            registers.write(head["ctrl_offset"], head["start"])
            done = registers.read(head["ctrl_offset"]) & head["done_mask"]
            result = ReplayResult.DONE if done else ReplayResult.TIMEOUT
        self.last_replay = (result, reads)
        return Status.OK, self._replay_answer(result, reads)

    def _replay_answer(self, result: ReplayResult, reads: list) -> bytes:
        answer = bytes((int(result),))
        if result == ReplayResult.DONE:
            answer += b"".join(self.registers.read(offset).to_bytes(4, "little") for offset in reads)
        return answer
