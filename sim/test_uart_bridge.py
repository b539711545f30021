"""cocotb: the UART bridge alone (``systole_link``), bit-level UART in, AXI out.

The host side is the real ``host.platforms.link`` code in a cocotb bridge thread,
talking through ``sim.link_tb``'s bit-level serial line. An AxiLiteRam stands for
the accelerator's registers, an AxiRam for DDR (both with injectable SLVERR), an AXI
monitor records the bursts. Bad frames are written with ``encode_request`` and their
answers parsed with ``decode_response`` (``hdl.spec.link_protocol``).
"""

from __future__ import annotations

import random
import struct

import cocotb
import pytest
from cocotb.task import bridge, resume

from hdl.spec.link_protocol import (PROTOCOL_VERSION, REQUEST_PAYLOAD_OFFSET, Command, HelloInfo, ReplayResult,
                                    Status, decode_replay_answer, encode_replay, encode_request, seq_verdict)
from sim.link_tb import MAX_PAYLOAD, TB, exchange, run_link_tests


def register(tb):
    """A reader of the register model's 32-bit words by byte offset."""
    return lambda offset: struct.unpack("<I", tb.regs.read(offset, 4))[0]


@cocotb.test()
async def bridge_moves_registers_and_memory(dut):
    """Register and memory traffic through the link equals the models' contents."""
    tb = TB(dut, system=False)
    await tb.reset()
    rng = random.Random(5)
    payload = bytes(rng.randrange(256) for _ in range(300))
    irq_seen = []

    @bridge
    def host():
        link = tb.link()
        info = link.hello()
        assert (info.version, info.max_payload, info.bus_bytes, info.addr_width, info.ctrl_addr_width) == \
            (PROTOCOL_VERSION, MAX_PAYLOAD, tb.config.bus_bytes, tb.config.addr_width, 8)
        assert (info.clock_khz, info.max_replay) == (round(tb.config.clock_mhz * 1000), 256)
        assert info.last_seq == 0
        for offset, value in ((0x10, 0x12345678), (0x2C, 0xFFFFFFFF), (0xFC, 0xA5A55A5A)):
            link.write_reg(offset, value)
        reg_image = tb.regs.read(0, 256)
        assert struct.unpack_from("<I", reg_image, 0x10)[0] == 0x12345678
        assert struct.unpack_from("<I", reg_image, 0x2C)[0] == 0xFFFFFFFF
        assert struct.unpack_from("<I", reg_image, 0xFC)[0] == 0xA5A55A5A
        tb.regs.write(0x80, struct.pack("<I", 0x53595354))
        assert link.read_reg(0x80) == 0x53595354
        # Misaligned start and end, several windows: byte strobes and splitting.
        link.write_mem(0x1003, payload)
        assert tb.mem.read(0x1003, len(payload)) == payload
        assert tb.mem.read(0x1000, 3) == bytes(3) and tb.mem.read(0x1003 + len(payload), 8) == bytes(8)
        back = link.read_mem(0x1001, 305)
        assert back == bytes(2) + payload + bytes(3)
        irq_seen.append(link.irq())
        set_irq()
        irq_seen.append(link.irq())
        irq_seen.append(link.hello().irq)
        # The register writes, then one MEM_WRITE per window, numbered 1.. after last_seq 0.
        windows = -(-(0x1003 % MAX_PAYLOAD + len(payload)) // MAX_PAYLOAD)
        assert link.hello().last_seq == 3 + windows

    @resume
    async def set_irq():
        dut.irq.value = 1

    await host()
    assert irq_seen == [False, True, True]
    assert tb.line.framing_errors == 0
    bb = tb.config.bus_bytes
    for addr, beats in tb.mem_log.writes + tb.mem_log.reads:
        assert addr % bb == 0
        assert addr // MAX_PAYLOAD == (addr + beats * bb - 1) // MAX_PAYLOAD, (addr, beats)
        assert addr // 4096 == (addr + beats * bb - 1) // 4096 and beats <= 256
    written = sorted(tb.mem_log.writes)
    first, end = 0x1003 // bb * bb, -(-(0x1003 + len(payload)) // bb) * bb
    assert written[0][0] == first and sum(beats for _, beats in written) * bb == end - first


@cocotb.test()
async def bridge_answers_bad_frames_with_errors(dut):
    """Corrupted, truncated, unknown and illegal requests are answered and have no effect."""
    tb = TB(dut, system=False)
    await tb.reset()
    results = {}

    @bridge
    def host():
        t = tb.transport
        good = encode_request(Command.MEM_WRITE, 1, 0x200, 4, b"\x11\x22\x33\x44")
        corrupt = bytearray(good)
        corrupt[REQUEST_PAYLOAD_OFFSET + 1] ^= 0x01            # one payload bit flipped
        results["crc"] = exchange(t, bytes(corrupt))
        results["crc_effect"] = tb.mem.read(0x200, 4)
        # A byte lost in the middle: the bridge waits for the rest, then gives up.
        middle = len(good) // 2
        results["lost_byte"] = exchange(t, good[:middle] + good[middle + 1:])
        # Length field says more than is sent.
        results["short"] = exchange(t, encode_request(Command.MEM_WRITE, 2, 0x200, 40, b"\x01" * 40)[:30])
        results["noise_then_good"] = exchange(t, bytes([0x00, 0x13, 0xFF, 0x5A]) + good)
        results["good_effect"] = tb.mem.read(0x200, 4)
        results["bad_cmd"] = exchange(t, encode_request(0x7E, 3, 0, 0))
        results["reg_len"] = exchange(t, encode_request(Command.REG_READ, 4, 0x10, 2))
        results["reg_unaligned"] = exchange(t, encode_request(Command.REG_READ, 5, 0x11, 4))
        results["reg_range"] = exchange(t, encode_request(Command.REG_READ, 6, 0x100, 4))
        results["mem_cross"] = exchange(t, encode_request(Command.MEM_READ, 7, MAX_PAYLOAD - 2, 4))
        results["mem_zero"] = exchange(t, encode_request(Command.MEM_READ, 8, 0, 0))
        results["mem_big"] = exchange(t, encode_request(Command.MEM_READ, 9, 0, MAX_PAYLOAD + 1))
        results["mem_big_write"] = exchange(t, encode_request(Command.MEM_WRITE, 15, 0x400, MAX_PAYLOAD + 1,
                                                              bytes(range(MAX_PAYLOAD + 1))))
        results["mem_addr_range"] = exchange(t, encode_request(Command.MEM_READ, 10, 1 << 40, 4))
        tb.mem_fault["range"] = (0x300, 0x310)
        results["mem_slverr_read"] = exchange(t, encode_request(Command.MEM_READ, 11, 0x300, 8))
        results["mem_slverr_write"] = exchange(t, encode_request(Command.MEM_WRITE, 16, 0x308, 4, bytes(4)))
        tb.reg_fault["range"] = (0x40, 0x44)
        results["reg_slverr"] = exchange(t, encode_request(Command.REG_READ, 13, 0x40, 4))
        results["reg_ok"] = exchange(t, encode_request(Command.REG_READ, 14, 0x44, 4))

    await host()
    r = results
    assert r["crc"][:3] == (Command.MEM_WRITE, 1, Status.CRC)
    assert r["crc_effect"] == bytes(4)
    assert r["lost_byte"][2] == Status.TRUNCATED
    assert r["short"][:3] == (Command.MEM_WRITE, 2, Status.TRUNCATED)
    assert r["noise_then_good"][:3] == (Command.MEM_WRITE, 1, Status.OK)
    assert r["good_effect"] == b"\x11\x22\x33\x44"
    assert len([w for w in tb.mem_log.writes if w[0] == 0x200]) == 1, "only the good frame may write"
    assert r["bad_cmd"][:3] == (0x7E, 3, Status.BAD_COMMAND)
    assert r["reg_len"][2] == Status.BAD_LENGTH
    assert r["reg_unaligned"][2] == Status.BAD_ADDRESS
    assert r["reg_range"][2] == Status.BAD_ADDRESS
    assert r["mem_cross"][2] == Status.BAD_ADDRESS
    assert r["mem_zero"][2] == Status.BAD_LENGTH
    assert r["mem_big"][2] == Status.BAD_LENGTH
    assert r["mem_big_write"][:3] == (Command.MEM_WRITE, 15, Status.BAD_LENGTH)
    assert r["mem_addr_range"][2] == Status.BAD_ADDRESS
    assert r["mem_slverr_read"][2:] == (Status.AXI_SLVERR, b"")
    assert r["mem_slverr_write"][2] == Status.AXI_SLVERR
    assert r["reg_slverr"][2:] == (Status.AXI_SLVERR, b"")
    assert r["reg_ok"][2] == Status.OK and len(r["reg_ok"][3]) == 4
    # Refused requests issued no AXI traffic: only the good write, the two SLVERR memory
    # accesses and nothing else reached m_axi_mem.
    assert sorted(tb.mem_log.writes) == [(0x200, 1), (0x308, 1)]
    assert tb.mem_log.reads == [(0x300, 2)]


@cocotb.test()
async def bridge_runs_each_write_seq_once(dut):
    """Protocol 2.0: a state-changing request runs once per seq; a repeat gets the first
    answer, an older seq STALE, neither touches the bus; HELLO reports last_seq."""
    tb = TB(dut, system=False)
    await tb.reset()
    steps = []

    @bridge
    def host():
        t = tb.transport

        def send(cmd, seq, addr, length=0, payload=b""):
            cmd_, seq_, status, out = exchange(t, encode_request(cmd, seq, addr, length, payload))
            assert (cmd_, seq_) == (cmd, seq)
            return status, out

        def reg_write(seq, offset, value):
            return send(Command.REG_WRITE, seq, offset, 4, struct.pack("<I", value))[0]

        def last_seq():
            status, out = send(Command.HELLO, 0x4242, 0)
            return HelloInfo.parse(out).last_seq

        def reg(offset):
            return struct.unpack("<I", tb.regs.read(offset, 4))[0]

        steps.append(("reset", last_seq()))
        steps.append(("write", reg_write(1, 0x20, 0x1111), reg(0x20)))
        steps.append(("repeat", reg_write(1, 0x20, 0x2222), reg(0x20)))      # the retry must not land
        steps.append(("hello", last_seq()))
        steps.append(("older", reg_write(0, 0x24, 0x3333), reg(0x24)))
        steps.append(("refused", reg_write(2, 0x11, 0x4444)))                # unaligned: remembered too
        steps.append(("refused repeat", reg_write(2, 0x28, 0x5555), reg(0x28)))
        steps.append(("mem", send(Command.MEM_WRITE, 3, 0x200, 4, b"\x01\x02\x03\x04")[0],
                      tb.mem.read(0x200, 4)))
        steps.append(("mem repeat", send(Command.MEM_WRITE, 3, 0x200, 4, b"\xAA" * 4)[0],
                      tb.mem.read(0x200, 4)))
        steps.append(("mem older", send(Command.MEM_WRITE, 2, 0x200, 4, b"\xBB" * 4)[0],
                      tb.mem.read(0x200, 4)))
        tb.mem_fault["range"] = (0x300, 0x310)
        steps.append(("slverr", send(Command.MEM_WRITE, 4, 0x300, 4, bytes(4))[0]))
        steps.append(("slverr repeat", send(Command.MEM_WRITE, 4, 0x300, 4, bytes(4))[0]))
        tb.mem_fault.clear()
        # Reads change nothing and run every time, whatever their seq.
        tb.regs.write(0x30, struct.pack("<I", 7))
        first = send(Command.REG_READ, 9, 0x30, 4)
        tb.regs.write(0x30, struct.pack("<I", 8))
        steps.append(("reads", first, send(Command.REG_READ, 9, 0x30, 4)))
        # Across half the sequence space and the wraparound.
        for seq in (0x8003, 3, 0xFFFF, 0x0000):
            steps.append((f"seq {seq:#06x}", reg_write(seq, 0x34, seq), reg(0x34)))
        steps.append(("hello after wrap", last_seq()))
        # A host that starts now numbers its writes after the bridge's last_seq.
        link = tb.link()
        link.write_reg(0x38, 0xCAFE)
        steps.append(("new link", link.info.last_seq, reg(0x38), last_seq()))

    await host()
    ok, stale = Status.OK, Status.STALE
    assert steps == [
        ("reset", 0),
        ("write", ok, 0x1111),
        ("repeat", ok, 0x1111),
        ("hello", 1),
        ("older", stale, 0),
        ("refused", Status.BAD_ADDRESS),
        ("refused repeat", Status.BAD_ADDRESS, 0),
        ("mem", ok, b"\x01\x02\x03\x04"),
        ("mem repeat", ok, b"\x01\x02\x03\x04"),
        ("mem older", stale, b"\x01\x02\x03\x04"),
        ("slverr", Status.AXI_SLVERR),
        ("slverr repeat", Status.AXI_SLVERR),
        ("reads", (ok, struct.pack("<I", 7)), (ok, struct.pack("<I", 8))),
        ("seq 0x8003", ok, 0x8003),                 # 0x7FFF ahead of 4: newer
        ("seq 0x0003", stale, 0x8003),              # 0x8000 ahead: behind
        ("seq 0xffff", ok, 0xFFFF),
        ("seq 0x0000", ok, 0x0000),                 # wraps around
        ("hello after wrap", 0),
        ("new link", 0, 0xCAFE, 1),
    ]
    assert seq_verdict(0x8003, 4) == "execute" and seq_verdict(3, 0x8003) == "stale"
    # One burst each for the executed memory writes, none for repeats and stale copies.
    assert sorted(tb.mem_log.writes) == [(0x200, 1), (0x300, 1)]


@cocotb.test()
async def bridge_replays_a_register_sequence(dut):
    """REPLAY: busy check, writes in order, start, done poll or timeout, reads; refusals and
    AXI errors touch nothing more; a repeat reads again and writes nothing."""
    tb = TB(dut, system=False)
    await tb.reset()
    steps = []
    status_offset, ctrl_offset = 0x04, 0x00
    reg = register(tb)

    def set_reg(offset, value):
        tb.regs.write(offset, struct.pack("<I", value))

    @bridge
    def host():
        t = tb.transport

        def replay(seq, writes, reads, *, start=0x1, done_mask=0x1, timeout=300, addr=0, extra=b"", **kw):
            payload = encode_replay(status_offset=kw.get("status_offset", status_offset), busy_mask=0x4,
                                    ctrl_offset=ctrl_offset, start=start, done_mask=done_mask,
                                    timeout=timeout, writes=writes, reads=reads) + extra
            cmd, seq_, status, out = exchange(t, encode_request(Command.REPLAY, seq, addr, len(payload), payload))
            assert (cmd, seq_) == (Command.REPLAY, seq)
            return (Status(status), *decode_replay_answer(out, len(reads))) if status == Status.OK \
                else (Status(status), out)

        set_reg(0x40, 0xDEAD)
        job = [(0x20, 0x11), (0x24, 0x22), (0x20, 0x33)]     # the later write to 0x20 wins
        steps.append(("done", replay(1, job, [0x20, 0x24, 0x40]), reg(ctrl_offset)))
        set_reg(0x20, 0)                                     # a repeat must not write it again
        set_reg(0x40, 0xBEEF)                                # ... but reads again
        steps.append(("repeat", replay(1, job, [0x20, 0x24, 0x40]), reg(0x20)))
        set_reg(status_offset, 0x4)
        steps.append(("busy", replay(2, [(0x28, 5)], [0x28]), reg(0x28)))
        steps.append(("busy repeat", replay(2, [(0x28, 5)], [0x28]), reg(0x28)))
        set_reg(status_offset, 0)
        steps.append(("timeout", replay(3, [(0x28, 6)], [0x28], done_mask=0x2), reg(0x28)))
        steps.append(("unaligned", replay(4, [(0x2C, 7), (0x31, 8)], [0x2C]), reg(0x2C)))
        steps.append(("too far", replay(5, [(0x2C, 7)], [0x100]), reg(0x2C)))
        steps.append(("bad status offset", replay(6, [(0x2C, 7)], [], status_offset=0x102), reg(0x2C)))
        steps.append(("counts", replay(7, [(0x2C, 7)], [], extra=b"\0\0"), reg(0x2C)))
        steps.append(("addr", replay(8, [(0x2C, 7)], [], addr=4), reg(0x2C)))
        tb.reg_fault["range"] = (0x34, 0x38)
        steps.append(("slverr", replay(9, [(0x2C, 9), (0x34, 1), (0x30, 9)], []), reg(0x2C), reg(0x30)))
        tb.reg_fault.clear()
        # The host's LinkSession.replay, from HELLO on.
        link = tb.link()
        result, values = link.replay(status_offset=status_offset, busy_mask=0x4, writes=[(0x38, 0xA5A5)],
                                     ctrl_offset=ctrl_offset, start=0x1, done_mask=0x1, timeout_s=1e-5,
                                     reads=[0x38, 0x40])
        steps.append(("link", result, values, link.frames))

    await host()
    ok = Status.OK
    done, busy, timeout = ReplayResult.DONE, ReplayResult.BUSY, ReplayResult.TIMEOUT
    assert steps == [
        ("done", (ok, done, [0x33, 0x22, 0xDEAD]), 0x1),
        ("repeat", (ok, done, [0, 0x22, 0xBEEF]), 0),
        ("busy", (ok, busy, []), 0),
        ("busy repeat", (ok, busy, []), 0),
        ("timeout", (ok, timeout, []), 6),
        ("unaligned", (Status.BAD_ADDRESS, b""), 0),
        ("too far", (Status.BAD_ADDRESS, b""), 0),
        ("bad status offset", (Status.BAD_ADDRESS, b""), 0),
        ("counts", (Status.BAD_LENGTH, b""), 0),
        ("addr", (Status.BAD_ADDRESS, b""), 0),
        ("slverr", (Status.AXI_SLVERR, b""), 9, 0),          # stops at the failing write
        ("link", done, [0xA5A5, 0xBEEF], 2),                 # HELLO, then one REPLAY
    ]


@cocotb.test()
async def bridge_runs_a_job_window_in_order(dut):
    """Protocol 2.2: the AFTER commands run only right after the request numbered before
    them (else EARLY, nothing touched); a MEM_READ_AFTER repeat reads again; the last
    REPLAY, followed only by MEM_READ_AFTERs, is answered again by reading its list (the
    job is not started again); anything else ends that (STALE)."""
    tb = TB(dut, system=False)
    await tb.reset()
    steps = []
    ctrl_offset, status_offset = 0x00, 0x04
    reg = register(tb)

    @bridge
    def host():
        t = tb.transport

        def send(cmd, seq, addr=0, length=0, payload=b""):
            cmd_, seq_, status, out = exchange(t, encode_request(cmd, seq, addr, length, payload))
            assert (cmd_, seq_) == (cmd, seq)
            return Status(status), out

        job = encode_replay(status_offset=status_offset, busy_mask=0x4, ctrl_offset=ctrl_offset, start=0x1,
                            done_mask=0x1, timeout=300, writes=[(0x20, 0x77)], reads=[0x20, 0x40])
        tb.regs.write(0x40, struct.pack("<I", 0xAA))
        steps.append(("write early", send(Command.MEM_WRITE_AFTER, 2, 0x500, 4, b"\x05\x06\x07\x08")[0],
                      tb.mem.read(0x500, 8)))
        steps.append(("write", send(Command.MEM_WRITE, 1, 0x504, 4, b"\x01\x02\x03\x04")[0]))
        steps.append(("write after", send(Command.MEM_WRITE_AFTER, 2, 0x500, 4, b"\x05\x06\x07\x08")[0],
                      tb.mem.read(0x500, 8)))
        steps.append(("read early", send(Command.MEM_READ_AFTER, 4, 0x500, 8)))
        status, out = send(Command.REPLAY_AFTER, 3, 0, len(job), job)
        steps.append(("replay", status, decode_replay_answer(out, 2), reg(ctrl_offset)))
        steps.append(("read after", send(Command.MEM_READ_AFTER, 4, 0x500, 8)))
        tb.mem.write(0x500, b"\x10")                      # a repeat reads again
        steps.append(("read repeat", send(Command.MEM_READ_AFTER, 4, 0x500, 2)))
        steps.append(("second read", send(Command.MEM_READ_AFTER, 5, 0x504, 2)))
        tb.regs.write(0x20, struct.pack("<I", 0))          # the repeat must not run the job again
        tb.regs.write(0x40, struct.pack("<I", 0xBB))
        status, out = send(Command.REPLAY_AFTER, 3, 0, len(job), job)
        steps.append(("replay again", status, decode_replay_answer(out, 2), reg(0x20)))
        steps.append(("plain write", send(Command.MEM_WRITE, 6, 0x508, 1, b"\x09")[0]))
        steps.append(("replay stale", send(Command.REPLAY_AFTER, 3, 0, len(job), job)[0], reg(0x20)))
        steps.append(("read stale", send(Command.MEM_READ_AFTER, 5, 0x504, 2)))

    await host()
    ok, done = Status.OK, ReplayResult.DONE
    assert steps == [
        ("write early", Status.EARLY, bytes(8)),
        ("write", ok),
        ("write after", ok, b"\x05\x06\x07\x08\x01\x02\x03\x04"),
        ("read early", (Status.EARLY, b"")),
        ("replay", ok, (done, [0x77, 0xAA]), 0x1),
        ("read after", (ok, b"\x05\x06\x07\x08\x01\x02\x03\x04")),
        ("read repeat", (ok, b"\x10\x06")),
        ("second read", (ok, b"\x01\x02")),
        ("replay again", ok, (done, [0, 0xBB]), 0),
        ("plain write", ok),
        ("replay stale", Status.STALE, 0),
        ("read stale", (Status.STALE, b"")),
    ]
    # One burst for each write that ran, one for each read that ran (EARLY and STALE: none).
    beat = tb.config.bus_bytes

    def bursts(*ranges):
        return [(a - a % beat, -(-(a % beat + n) // beat)) for a, n in ranges]

    assert tb.mem_log.writes == bursts((0x504, 4), (0x500, 4), (0x508, 1))
    assert tb.mem_log.reads == bursts((0x500, 8), (0x500, 2), (0x504, 2))


@pytest.mark.xdist_group("uart_bridge")
def test_uart_bridge():
    """Every cocotb test above, on the bridge alone."""
    run_link_tests(__name__, system=False)
