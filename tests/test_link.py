"""host/platforms/link.py against a byte-level Python model of the bridge protocol.

The model below is written from the protocol text in hdl/spec/link_protocol.py (2.1), with its
own frame parser, its own rule for write sequence numbers and its own REPLAY (``max_replay`` 0
makes it a 2.0 bridge without REPLAY); it injects faults (corrupted,
lost, truncated and foreign answers) so the link's retries, timeouts and error messages are
checked without hardware or simulator.
"""

from __future__ import annotations

import binascii
import struct

import numpy as np
import pytest

from hdl.spec.boards import BOARDS
from hdl.spec.link_protocol import Status
from host.accel.bus import DeviceMemory, RegisterBus
from host.platforms.link import (
    LinkCrcError,
    LinkDeviceError,
    LinkMemory,
    LinkRegisterBus,
    LinkTimeout,
    LinkWrongDevice,
    SerialLink,
)

MAX_PAYLOAD = 64
STALE = 0x08                 # the status for a write older than the last one executed


def _crc(data: bytes) -> bytes:
    return struct.pack("<H", binascii.crc_hqx(data, 0xFFFF))


class BridgeModel:
    """A bridge in Python: registers in a dict, memory in a bytearray, fault knobs."""

    def __init__(self, mem_size=4096, magic=b"SYLK", max_replay=256):
        self.regs: dict[int, int] = {}
        self.mem = bytearray(mem_size)
        self.magic = magic
        self.irq = False
        self.rx = bytearray()
        self.tx = bytearray()
        self.executed: list[tuple[int, int, int]] = []   # (cmd, addr, length)
        self.corrupt_next = 0      # answers whose CRC byte gets flipped
        self.drop_next = 0         # requests executed but never answered
        self.mute = False          # answer nothing at all
        self.cut_answer_at = None  # send only this many bytes of the next answer
        self.reject_next = []      # statuses to answer instead of executing
        self.last_seq = 0          # of the last REG_WRITE/MEM_WRITE executed (0 after reset)
        self.last_status = Status.OK
        self.answered: list[tuple[int, int, int]] = []   # (cmd, seq, status) of every answer
        self.max_replay = max_replay
        self.clock_khz = 100_000
        self.completes = True      # a REPLAY's start write makes the done bits read back once
        self.register_writes: list[tuple[int, int]] = []  # every register write, REG_WRITE or REPLAY
        self.last_result = None    # the last REPLAY's result byte

    def feed(self, data: bytes) -> None:
        self.rx += data
        while True:
            start = self.rx.find(0xA5)
            if start < 0:
                self.rx.clear()
                return
            del self.rx[:start]
            if len(self.rx) < 14:
                return
            cmd, seq, addr, length = struct.unpack("<BHQH", self.rx[1:14])
            body_len = 13 + (length if cmd in (3, 5, 7) else 0)
            if len(self.rx) < 1 + body_len + 2:
                return
            body = bytes(self.rx[1:1 + body_len])
            crc = bytes(self.rx[1 + body_len:3 + body_len])
            del self.rx[:3 + body_len]
            self._answer(cmd, seq, addr, length, body[13:], crc == _crc(body))

    def _answer(self, cmd, seq, addr, length, payload, crc_ok):
        if not crc_ok:
            status, out = Status.CRC, b""
        elif self.reject_next:
            status, out = self.reject_next.pop(0), b""
        elif cmd in (3, 5, 7):
            # A write runs once per seq: the same seq again gets the first answer, an
            # older one (behind by half the 16-bit space or less) gets STALE.
            ahead = (seq - self.last_seq) & 0xFFFF
            if ahead == 0 and cmd == 7 and self.last_status == Status.OK:
                status, out = Status.OK, self._replay(payload, repeat=True)
            elif ahead == 0:
                status, out = self.last_status, b""
            elif ahead >= 0x8000:
                status, out = STALE, b""
            else:
                status, out = self._execute(cmd, addr, length, payload)
                self.last_seq, self.last_status = seq, status
        else:
            status, out = self._execute(cmd, addr, length, payload)
        self.answered.append((cmd, seq, status))
        if self.mute:
            return
        if self.drop_next:
            self.drop_next -= 1
            return
        body = struct.pack("<BHBH", cmd, seq, status, len(out)) + out
        frame = bytearray(b"\x5a" + body + _crc(body))
        if self.corrupt_next:
            self.corrupt_next -= 1
            frame[-1] ^= 0x40
        if self.cut_answer_at is not None:
            frame = frame[:self.cut_answer_at]
            self.cut_answer_at = None
        self.tx += frame

    def _execute(self, cmd, addr, length, payload):
        status, out = Status.OK, b""
        if cmd == 1:
            out = struct.pack("<4sBBHBBBBH", self.magic, 2, 1 if self.max_replay else 0, MAX_PAYLOAD, 16, 32, 8,
                              int(self.irq), self.last_seq)
            if self.max_replay:
                out += struct.pack("<IH", self.clock_khz, self.max_replay)
        elif cmd == 7 and self.max_replay:
            if addr != 0:
                status = Status.BAD_ADDRESS
            elif not 22 <= length <= self.max_replay:
                status = Status.BAD_LENGTH
            else:
                status = self._replay_refusal(payload)
                if status == Status.OK:
                    out = self._replay(payload, repeat=False)
        elif cmd in (2, 3):
            if length != 4:
                status = Status.BAD_LENGTH
            elif cmd == 2:
                out = self.regs.get(addr, 0).to_bytes(4, "little")
            else:
                self.regs[addr] = int.from_bytes(payload, "little")
                self.register_writes.append((addr, self.regs[addr]))
        elif cmd in (4, 5):
            if not (1 <= length <= MAX_PAYLOAD and addr // MAX_PAYLOAD == (addr + length - 1) // MAX_PAYLOAD):
                status = Status.BAD_ADDRESS
            elif addr + length > len(self.mem):
                status = Status.AXI_DECERR
            elif cmd == 4:
                out = bytes(self.mem[addr:addr + length])
            else:
                self.mem[addr:addr + length] = payload
        elif cmd == 6:
            out = bytes([int(self.irq)])
        else:
            status = Status.BAD_COMMAND
        if status == Status.OK:
            self.executed.append((cmd, addr, length))
        return status, out

    @staticmethod
    def _replay_fields(payload):
        head = struct.unpack_from("<HIHIIIBB", payload)
        wc, rc = head[6], head[7]
        writes = [struct.unpack_from("<HI", payload, 22 + 6 * i) for i in range(wc)]
        reads = [struct.unpack_from("<H", payload, 22 + 6 * wc + 2 * i)[0] for i in range(rc)]
        return head, writes, reads

    def _replay_refusal(self, payload):
        wc, rc = payload[20], payload[21]
        if len(payload) != 22 + 6 * wc + 2 * rc or 1 + 4 * rc > self.max_replay:
            return Status.BAD_LENGTH
        (status_offset, _, ctrl_offset, *_), writes, reads = self._replay_fields(payload)
        offsets = [status_offset, ctrl_offset, *(o for o, _ in writes), *reads]
        return Status.BAD_ADDRESS if any(o % 4 or o >= 256 for o in offsets) else Status.OK

    def _replay(self, payload, repeat):
        """The answer to a REPLAY: result 0 done + values, 1 busy, 2 timeout. A repeat only
        reads again (after a done) and keeps the result."""
        (status_offset, busy_mask, ctrl_offset, start, done_mask, _, _, _), writes, reads = \
            self._replay_fields(payload)
        if not repeat:
            if self.regs.get(status_offset, 0) & busy_mask:
                self.last_result = 1
            else:
                for offset, value in writes + [(ctrl_offset, start)]:
                    self.regs[offset] = value
                    self.register_writes.append((offset, value))
                done = self.completes
                self.regs[ctrl_offset] = 0          # ap_done is clear on read
                self.last_result = 0 if done else 2
        if self.last_result != 0:
            return bytes([self.last_result])
        return bytes([0]) + b"".join(struct.pack("<I", self.regs.get(o, 0)) for o in reads)


class ModelTransport:
    """pyserial-like transport to a BridgeModel; time advances 1 ms per read, 50 ms per empty one."""

    def __init__(self, model: BridgeModel):
        self.model = model
        self.time = 0.0

    def now(self) -> float:
        return self.time

    def write(self, data: bytes) -> int:
        self.model.feed(bytes(data))
        return len(data)

    def read(self, size: int) -> bytes:
        self.time += 0.001
        if not self.model.tx:
            self.time += 0.05
            return b""
        out = bytes(self.model.tx[:size])
        del self.model.tx[:size]
        return out

    def reset_input_buffer(self) -> None:
        self.model.tx.clear()


@pytest.fixture
def model():
    return BridgeModel()


@pytest.fixture
def link(model):
    return SerialLink(ModelTransport(model), timeout_s=0.5)


def test_hello_reports_the_bridge_limits(link):
    info = link.hello()
    assert (info.version, info.max_payload, info.bus_bytes, info.addr_width, info.ctrl_addr_width) == \
        ((2, 1), MAX_PAYLOAD, 16, 32, 8)
    assert (info.clock_khz, info.max_replay) == (100_000, 256) and link.can_replay


def test_registers_and_irq_through_the_bus_seam(link, model):
    bus = LinkRegisterBus(link)
    assert isinstance(bus, RegisterBus)
    bus.write32(0x28, 0xDEADBEEF)
    assert model.regs[0x28] == 0xDEADBEEF
    model.regs[0x80] = 0x53595354
    assert bus.read32(0x80) == 0x53595354
    assert bus.wait_irq(0.2) is False            # times out on the link's clock
    model.irq = True
    assert bus.wait_irq(0.2) is True


def test_memory_transfers_split_at_windows(link, model):
    memory = LinkMemory(link, device_address=0x100, size=2048)
    assert isinstance(memory, DeviceMemory)
    data = np.random.default_rng(1).integers(0, 256, 1000, dtype=np.uint8)
    memory.write(7, data)                         # device address 0x107: misaligned start
    assert bytes(model.mem[0x107:0x107 + 1000]) == data.tobytes()
    writes = [(addr, length) for cmd, addr, length in model.executed if cmd == 5]
    assert all(addr // MAX_PAYLOAD == (addr + length - 1) // MAX_PAYLOAD for addr, length in writes)
    assert sum(length for _, length in writes) == 1000 and len(writes) == -(-(0x107 % 64 + 1000) // 64)
    np.testing.assert_array_equal(memory.read(7, 1000), data)
    with pytest.raises(ValueError, match="outside the window"):
        memory.read(2040, 16)


@pytest.mark.parametrize("fault", ["corrupt_next", "drop_next"])
def test_a_read_survives_one_corrupted_or_lost_answer(link, model, fault):
    link.hello()
    model.regs[0x44] = 9
    setattr(model, fault, 1)
    assert link.read_reg(0x44) == 9               # a read may safely run twice: retried


def test_corrupted_answers_are_reported_after_the_retries(link, model):
    link.hello()
    model.corrupt_next = 3
    with pytest.raises(LinkCrcError, match="CRC"):
        link.read_reg(0x10)


@pytest.mark.parametrize("fault", ["corrupt_next", "drop_next"])
def test_a_write_whose_answer_is_lost_is_retried_under_its_seq_and_runs_once(link, model, fault):
    link.hello()
    setattr(model, fault, 1)
    link.write_reg(0x00, 1)                       # ap_start: must not be written twice
    setattr(model, fault, 1)
    link.write_mem(0x40, b"\x11" * 8)
    assert [e for e in model.executed if e[0] in (3, 5)] == [(3, 0x00, 4), (5, 0x40, 8)]
    writes = [(cmd, seq, status) for cmd, seq, status in model.answered if cmd in (3, 5)]
    assert writes == [(3, 1, Status.OK), (3, 1, Status.OK), (5, 2, Status.OK), (5, 2, Status.OK)]
    assert link.frames == 1 + 4


def test_a_retried_write_gets_the_first_answer_even_an_error(link, model):
    link.hello()
    model.drop_next = 1
    with pytest.raises(LinkDeviceError, match="MEM_WRITE at 0x2000 failed: AXI_DECERR"):
        link.write_mem(0x2000, b"\x01")          # beyond the model's memory
    assert [a for a in model.answered if a[0] == 5] == [(5, 1, Status.AXI_DECERR)] * 2


def test_writes_are_numbered_after_hellos_last_seq(model):
    model.last_seq = 0xFFFE                       # a previous session's last write
    link = SerialLink(ModelTransport(model), timeout_s=0.5)
    link.write_reg(0x10, 1)                       # asks HELLO first
    link.write_reg(0x10, 2)
    link.write_reg(0x10, 3)                       # the seq wraps around
    assert [(cmd, seq) for cmd, seq, _ in model.answered] == [(1, 1), (3, 0xFFFF), (3, 0), (3, 1)]
    assert model.regs[0x10] == 3 and model.last_seq == 1


def test_a_new_link_continues_after_the_boards_last_seq(model):
    first = SerialLink(ModelTransport(model), timeout_s=0.5)
    for value in range(5):
        first.write_reg(0x20, value)
    first.write_mem(0, b"\xAA" * 4)
    assert first.info.last_seq == 0 and model.last_seq == 6
    restarted = SerialLink(ModelTransport(model), timeout_s=0.5)    # the host program restarted
    assert restarted.hello().last_seq == 6
    restarted.write_reg(0x20, 99)                 # seq 7: executed, not a repeat of 6
    assert model.regs[0x20] == 99 and model.last_seq == 7
    assert [e for e in model.executed if e[0] in (3, 5)][-1] == (3, 0x20, 4)


def test_stale_is_resent_under_a_seq_after_the_boards(link, model):
    link.hello()
    link.write_reg(0x24, 1)                       # seq 1
    model.last_seq = 40                           # another host wrote meanwhile
    link.write_reg(0x24, 2)                       # seq 2: STALE; HELLO; seq 41
    assert model.regs[0x24] == 2 and model.last_seq == 41
    assert [(cmd, seq, status) for cmd, seq, status in model.answered][-3:] == \
        [(3, 2, STALE), (1, 2, Status.OK), (3, 41, Status.OK)]    # reads count apart


def _request(cmd, seq, addr, payload=b""):
    """A request frame built with struct, as the protocol text says (not by the host code)."""
    body = struct.pack("<BHQH", cmd, seq, addr, len(payload) if cmd in (3, 5) else 4) + payload
    return b"\xa5" + body + _crc(body)


def _answers(model):
    """The (cmd, seq, status) of each answer frame the model queued, parsed with struct."""
    out, tx = [], bytes(model.tx)
    while tx:
        cmd, seq, status, length = struct.unpack("<BHBH", tx[1:7])
        out.append((cmd, seq, status))
        tx = tx[7 + length + 2:]
    model.tx.clear()
    return out


def test_an_old_mem_write_duplicated_after_a_newer_one_is_stale(model):
    model.feed(_request(5, 1, 0x80, b"old!"))
    model.feed(_request(5, 2, 0x80, b"new!"))
    model.feed(_request(5, 1, 0x80, b"old!"))     # the network delivers the first one again
    assert _answers(model) == [(5, 1, Status.OK), (5, 2, Status.OK), (5, 1, STALE)]
    assert bytes(model.mem[0x80:0x84]) == b"new!"


@pytest.mark.parametrize("last_seq", [0, 0xFFFE])
def test_reordered_writes_run_newest_first_and_repeats_answer_as_before(model, last_seq):
    model.last_seq = last_seq
    first, second, third = ((last_seq + ahead) & 0xFFFF for ahead in (1, 2, 3))
    model.feed(_request(3, second, 0x30, b"\x02\0\0\0"))   # overtook the first on the way
    model.feed(_request(3, first, 0x30, b"\x01\0\0\0"))    # older than the last one run
    model.feed(_request(3, second, 0x30, b"\x09\0\0\0"))   # a repeat: the first answer, no write
    model.feed(_request(3, third, 0x34, b"\x03\0\0\0"))    # a newer one runs
    assert _answers(model) == [(3, second, 0), (3, first, STALE), (3, second, 0), (3, third, 0)]
    assert model.regs == {0x30: 2, 0x34: 3}


def test_requests_refused_as_not_executed_are_resent(link, model):
    link.hello()
    model.reject_next = [Status.CRC, Status.TRUNCATED]
    link.write_reg(0x04, 1)
    assert model.regs[0x04] == 1 and link.frames == 1 + 3


def test_device_errors_name_command_address_and_status(link, model):
    link.hello()
    with pytest.raises(LinkDeviceError, match=r"MEM_READ at 0x2000 failed: AXI_DECERR") as info:
        link.read_mem(0x2000, 4)
    assert info.value.status == Status.AXI_DECERR


def test_silent_port_times_out_with_a_hint(model):
    model.mute = True
    link = SerialLink(ModelTransport(model), timeout_s=0.3, retries=1)
    with pytest.raises(LinkTimeout, match="no answer within 0.3 s; is the bitstream loaded"):
        link.hello()


def test_answer_cut_short_times_out(model):
    link = SerialLink(ModelTransport(model), timeout_s=0.5, retries=0)
    link.hello()
    model.cut_answer_at = 5
    with pytest.raises(LinkTimeout, match="stopped answering"):
        link.write_reg(0x08, 1)


def test_answer_cut_short_is_retried_and_the_write_runs_once(link, model):
    link.hello()
    model.cut_answer_at = 5
    link.write_reg(0x08, 1)
    assert [e for e in model.executed if e[0] == 3] == [(3, 0x08, 4)] and link.frames == 1 + 2


def test_foreign_device_is_recognised(model):
    model.magic = b"NOPE"
    with pytest.raises(LinkWrongDevice, match="does not start with b'SYLK'"):
        SerialLink(ModelTransport(model)).hello()


def test_line_noise_is_wrong_device_not_a_crash(model):
    class Noise(ModelTransport):
        def read(self, size):
            self.time += 0.01
            return bytes([0x5A, 1, 1, 0, 0, 0, 0x12, 0x34][:size]) if size else b""
    with pytest.raises(LinkWrongDevice, match="bad CRCs"):
        SerialLink(Noise(model), timeout_s=0.2).hello()


def test_pyserial_transport_opens_a_url():
    # loop:// echoes requests back: a port that is not a bridge is detected, never a hang.
    link = SerialLink.open("loop://", BOARDS["nexys_video"].uart_baud, timeout_s=0.3, retries=0)
    with pytest.raises(LinkTimeout):
        link.hello()


# -- REPLAY: the driver's job sequence in one exchange ------------------------------------

def _replay_through_bus(bus, writes, reads, timeout_s=1e-3, start=0x1):
    """``LinkRegisterBus.replay`` as ``Driver._execute`` calls it (uint32 arrays by address)."""
    offsets = np.array([o for o, _ in writes], np.uint32)
    values = np.array([v for _, v in writes], np.uint32)
    read_offsets = np.array(reads, np.uint32)
    read_values = np.zeros(len(reads), np.uint32)
    code = bus.replay(0x04, 0x1, offsets.ctypes.data, values.ctypes.data, len(writes), 0x00, start, 0x2,
                      timeout_s, read_offsets.ctypes.data, len(reads), read_values.ctypes.data)
    return code, read_values.tolist()


JOB = [(0x10, 0x1000), (0x14, 0), (0x28, 3), (0x10, 0x2000)]
AFTER = [0x80, 0x84, 0x10]


def test_replay_runs_a_job_in_one_exchange(link, model):
    bus = LinkRegisterBus(link)
    assert bus.replay_waits_on_device
    model.regs.update({0x80: 11, 0x84: 22})
    link.hello()
    frames = link.frames
    assert _replay_through_bus(bus, JOB, AFTER) == (1, [11, 22, 0x2000])
    assert link.frames == frames + 1
    assert model.register_writes == [*JOB, (0x00, 0x1)]          # in order, then the start
    model.completes = False
    assert _replay_through_bus(bus, JOB, AFTER) == (0, [0, 0, 0])                    # timeout
    model.regs[0x04] = 0x1
    writes_before = len(model.register_writes)
    assert _replay_through_bus(bus, JOB, AFTER) == (-1, [0, 0, 0])                   # busy: nothing written
    assert len(model.register_writes) == writes_before


def test_a_replay_whose_answer_is_lost_runs_once_and_reads_again(link, model):
    bus = LinkRegisterBus(link)
    model.regs.update({0x80: 11, 0x84: 22})
    link.hello()
    model.drop_next = 1
    assert _replay_through_bus(bus, JOB, AFTER) == (1, [11, 22, 0x2000])
    assert model.register_writes == [*JOB, (0x00, 0x1)]          # the retry wrote nothing
    replays = [a for a in model.answered if a[0] == 7]
    assert len(replays) == 2 and replays[0][1] == replays[1][1]  # one seq, answered twice


def test_replay_is_offered_only_by_a_bridge_that_runs_it():
    old = BridgeModel(max_replay=0)                               # a 2.0 bridge
    link = SerialLink(ModelTransport(old), timeout_s=0.5)
    assert link.hello().version == (2, 0) and not link.can_replay
    assert LinkRegisterBus(link).replay is None


def test_a_plan_too_long_for_one_replay_runs_request_by_request(model):
    model.max_replay = 40                                         # 22 + 6 * 4 + 2 * 3 = 52 bytes
    link = SerialLink(ModelTransport(model), timeout_s=0.5)
    bus = LinkRegisterBus(link)
    model.regs.update({0x80: 11, 0x84: 22})
    link.hello()
    # The model's CTRL is plain memory: a start word with the done bit reads back done.
    assert _replay_through_bus(bus, JOB, AFTER, start=0x3) == (1, [11, 22, 0x2000])
    assert model.register_writes == [*JOB, (0x00, 0x3)]
    assert not [a for a in model.answered if a[0] == 7]


def test_replay_refusals_and_errors_name_the_command(link, model):
    link.hello()
    with pytest.raises(LinkDeviceError, match="REPLAY at 0x0 failed: BAD_ADDRESS"):
        link.replay(status_offset=0x04, busy_mask=1, writes=[(0x11, 0)], ctrl_offset=0, start=1, done_mask=2,
                    timeout_s=1e-3, reads=[])
    assert model.register_writes == []
