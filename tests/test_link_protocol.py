"""hdl/spec/link_protocol.py: the layouts against the protocol text, and what derives from them.

The expected frames below are written out byte by byte from the module docstring
(sync, fields in order, little-endian, CRC-16/CCITT-FALSE by ``binascii``), so a
field moved or resized in a layout fails here even though encoder and decoder would
still agree with each other. The write sequence numbers' verdicts (protocol 2.0) are
checked on ints, wraparound included, and on the Amaranth values ``hdl.link_exec`` uses.
REPLAY's payload (protocol 2.1) is written out byte by byte the same way.
"""

import binascii
import random
import subprocess
import sys
from pathlib import Path

import pytest

from hdl.link_frame import REQUEST_HEADER, RESPONSE_HEADER
from hdl.spec.link_protocol import (HELLO_FORMAT, HELLO_LAYOUT, NOT_EXECUTED,
                                    REQUEST_HEADER as REQUEST_STRUCT, REQUEST_LAYOUT, REQUEST_OVERHEAD, REQUEST_PAYLOAD_OFFSET,
                                    RESPONSE_HEADER as RESPONSE_STRUCT, RESPONSE_LAYOUT, RESPONSE_OVERHEAD,
                                    SEQ_MODULUS, STATE_CHANGING, Command, HelloInfo, Layout, Status,
                                    decode_request, decode_response, encode_hello, encode_request,
                                    encode_response, request_status, seq_checks, seq_distance,
                                    seq_verdict, window_ok, HELLO_2_0_SIZE, PROTOCOL_VERSION, ReplayResult,
                                    decode_replay, decode_replay_answer, encode_replay, replay_status)


def _with_crc(frame_hex: str) -> bytes:
    frame = bytes.fromhex(frame_hex)
    return frame + binascii.crc_hqx(frame[1:], 0xFFFF).to_bytes(2, "little")


def test_request_frame_as_the_text_says():
    #          sync cmd seq (LE u16) addr (LE u64) length payload
    expected = _with_crc("a5 05 0701 8877665544332211 0200 aabb")
    assert encode_request(Command.MEM_WRITE, 0x107, 0x1122334455667788, 2, b"\xAA\xBB") == expected
    assert decode_request(expected) == ({"cmd": 5, "seq": 0x107, "addr": 0x1122334455667788, "length": 2},
                                        b"\xAA\xBB")
    # A read carries no payload whatever its length says.
    read = _with_crc("a5 04 08ff 0010000000000000 0001")
    assert decode_request(read) == ({"cmd": 4, "seq": 0xFF08, "addr": 0x1000, "length": 256}, b"")
    # seq is taken modulo 2**16, all 16 bits of it.
    assert encode_request(Command.REG_READ, 0x1_ABCD, 0, 4) == encode_request(Command.REG_READ, 0xABCD, 0, 4)


def test_response_frame_as_the_text_says():
    #          sync cmd seq (LE u16) status length payload
    expected = _with_crc("5a 02 09a0 00 0400 78563412")
    assert encode_response(Command.REG_READ, 0xA009, Status.OK, b"\x78\x56\x34\x12") == expected
    assert decode_response(expected) == ({"cmd": 2, "seq": 0xA009, "status": 0, "length": 4},
                                         b"\x78\x56\x34\x12")
    stale = _with_crc("5a 03 3412 08 0000")
    assert encode_response(Command.REG_WRITE, 0x1234, Status.STALE) == stale


def test_derived_formats_and_overheads():
    assert (REQUEST_STRUCT.format, RESPONSE_STRUCT.format, HELLO_FORMAT.format) == \
        ("<BHQH", "<BHBH", "<4sBBHBBBBHIH")
    assert (REQUEST_OVERHEAD, RESPONSE_OVERHEAD, REQUEST_PAYLOAD_OFFSET) == (1 + 13 + 2, 1 + 6 + 2, 14)
    assert REQUEST_LAYOUT["length"].offset == 11 and RESPONSE_LAYOUT["status"].offset == 3
    assert SEQ_MODULUS == 1 << 16


def test_rtl_header_layouts_are_the_protocol_layouts():
    """hdl.link_frame's StructLayouts: the same fields, order and widths, byte i at bits 8i."""
    for rtl, layout in ((REQUEST_HEADER, REQUEST_LAYOUT), (RESPONSE_HEADER, RESPONSE_LAYOUT)):
        assert [(name, f.offset, f.width) for name, f in rtl] == \
            [(f.name, 8 * f.offset, 8 * f.size) for f in layout.fields]


def test_hello_round_trip_and_refusals():
    payload = encode_hello(max_payload=4096, bus_bytes=16, addr_width=32, ctrl_addr_width=8, irq=1,
                           last_seq=0xBEEF, clock_khz=100_000, max_replay=256)
    #                               magic    major minor max_payload bus addr ctrl irq last_seq clock_khz max_replay
    assert payload == bytes.fromhex("53594c4b 02 02 0010 10 20 08 01 efbe a0860100 0001")
    assert PROTOCOL_VERSION == (2, 2)
    assert HelloInfo.parse(payload) == HelloInfo((2, 2), 4096, 16, 32, 8, True, 0xBEEF, 100_000, 256)
    # A 2.0 bridge's answer ends after last_seq: no clock, no REPLAY.
    old = bytes.fromhex("53594c4b 02 00 0010 10 20 08 01 efbe")
    assert len(old) == HELLO_2_0_SIZE
    assert HelloInfo.parse(old) == HelloInfo((2, 0), 4096, 16, 32, 8, True, 0xBEEF, 0, 0)
    with pytest.raises(ValueError, match=r"magic is b'XXXX', expected b'SYLK'"):
        HelloInfo.parse(b"XXXX" + payload[4:])
    with pytest.raises(ValueError, match=f"HELLO answer is 19 bytes, expected {HELLO_LAYOUT.size}"):
        HelloInfo.parse(payload[:-1])


def test_decoders_refuse_bad_frames():
    good = encode_response(Command.IRQ, 1, Status.OK, b"\x01")
    with pytest.raises(ValueError, match="CRC mismatch"):
        decode_response(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ValueError, match="frame is 9 bytes, its header says 10"):
        decode_response(good[:-1])
    with pytest.raises(ValueError, match="not a frame starting with 0xa5"):
        decode_request(good)


def test_layout_refuses_what_it_cannot_describe():
    with pytest.raises(ValueError, match="an integer field is 1, 2, 4 or 8 bytes, not 3"):
        Layout(("x", 3))
    with pytest.raises(ValueError, match="duplicate field names"):
        Layout(("x", 1), ("x", 2))
    with pytest.raises(ValueError, match=r"fields \['cmd'\] do not match"):
        REQUEST_LAYOUT.pack(cmd=1)


@pytest.mark.parametrize("seq, last_seq, verdict", [
    (1, 0, "execute"), (0, 0, "repeat"), (0xFFFF, 0, "stale"),       # after reset
    (0x7FFF, 0, "execute"), (0x8000, 0, "stale"),                    # half the space ahead: behind
    (5, 5, "repeat"), (6, 5, "execute"), (4, 5, "stale"),
    (0, 0xFFFF, "execute"), (3, 0xFFFE, "execute"),                 # wraparound
    (0xFFFE, 0xFFFF, "stale"), (0xFFFF, 2, "stale"),
    (0x7FFE, 0xFFFF, "execute"), (0x7FFF, 0xFFFF, "stale"),
])
def test_seq_verdict(seq, last_seq, verdict):
    assert seq_verdict(seq, last_seq) == verdict
    assert seq_distance(seq, last_seq) == (seq - last_seq + SEQ_MODULUS) % SEQ_MODULUS
    # An AFTER request runs only right after its predecessor: any other newer one is early.
    after = "early" if verdict == "execute" and seq_distance(seq, last_seq) != 1 else verdict
    assert seq_verdict(seq, last_seq, after=True) == after


def test_seq_checks_on_amaranth_values_agree_with_ints():
    """The operators ``hdl.link_exec`` applies to 16-bit signals (a 17-bit difference,
    modulo 2**16) give the verdict the ints do."""
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator
    seq, last_seq, distance = Signal(16), Signal(16), Signal(16)
    m = Module()
    m.d.comb += distance.eq(seq_distance(seq, last_seq))
    repeat, stale = seq_checks(distance)
    rng = random.Random(3)
    edges = [0, 1, 0x7FFE, 0x7FFF, 0x8000, 0x8001, 0xFFFE, 0xFFFF]
    cases = [(a, b) for a in edges for b in edges] + [(rng.randrange(SEQ_MODULUS), rng.randrange(SEQ_MODULUS))
                                                      for _ in range(300)]
    seen = []

    async def bench(ctx):
        for a, b in cases:
            ctx.set(seq, a)
            ctx.set(last_seq, b)
            seen.append((ctx.get(distance), ctx.get(repeat), ctx.get(stale)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    expected = [(seq_distance(a, b), *seq_checks(seq_distance(a, b))) for a, b in cases]
    assert seen == [(d, int(r), int(s)) for d, r, s in expected]


def test_what_was_not_executed():
    assert {Status.STALE, Status.EARLY} <= set(NOT_EXECUTED) and Status.OK not in NOT_EXECUTED
    assert not {Status.AXI_SLVERR, Status.AXI_DECERR} & set(NOT_EXECUTED)   # a write may have landed
    assert STATE_CHANGING == (Command.REG_WRITE, Command.MEM_WRITE, Command.REPLAY, Command.MEM_READ_AFTER,
                              Command.MEM_WRITE_AFTER, Command.REPLAY_AFTER)
    # every command with a payload changes state; of the others only the ordered read does
    assert [c for c in Command if c.changes_state and c != Command.MEM_READ_AFTER] == \
        [c for c in Command if c.has_payload]


LIMITS = {"max_payload": 64, "ctrl_addr_width": 8, "addr_width": 32}


@pytest.mark.parametrize("cmd, addr, length, status", [
    (Command.HELLO, 0x1234, 77, Status.OK),               # HELLO and IRQ ignore addr and length
    (Command.IRQ, 0, 0, Status.OK),
    (0x7E, 0, 0, Status.BAD_COMMAND),
    (0x00, 0x11, 4, Status.BAD_COMMAND),                  # the command is checked first
    (Command.REG_READ, 0xFC, 4, Status.OK),
    (Command.REG_WRITE, 0x10, 2, Status.BAD_LENGTH),
    (Command.REG_READ, 0x11, 4, Status.BAD_ADDRESS),      # unaligned
    (Command.REG_READ, 0x100, 4, Status.BAD_ADDRESS),     # beyond ctrl_addr_width
    (Command.REG_READ, 0x101, 3, Status.BAD_LENGTH),      # length before address
    (Command.MEM_READ, 0x3F, 1, Status.OK),
    (Command.MEM_WRITE, 0xFFFF_FFC0, 64, Status.OK),      # the last window of a 32-bit space
    (Command.MEM_READ, 0, 0, Status.BAD_LENGTH),
    (Command.MEM_WRITE, 0, 65, Status.BAD_LENGTH),
    (Command.MEM_READ, 62, 4, Status.BAD_ADDRESS),        # crosses a window
    (Command.MEM_READ, 1 << 32, 1, Status.BAD_ADDRESS),   # beyond addr_width
])
def test_request_rules(cmd, addr, length, status):
    assert request_status(cmd, addr, length, **LIMITS) == status


@pytest.mark.parametrize("addr, length, max_replay, status", [
    (0, 22, 256, Status.OK),                              # the header alone: no writes, no reads
    (0, 21, 256, Status.BAD_LENGTH),
    (0, 257, 256, Status.BAD_LENGTH),
    (4, 22, 256, Status.BAD_ADDRESS),
    (0, 22, 0, Status.BAD_COMMAND),                       # a bridge without REPLAY
])
def test_replay_request_rules(addr, length, max_replay, status):
    assert request_status(Command.REPLAY, addr, length, max_replay=max_replay, **LIMITS) == status


def test_replay_payload_as_the_text_says():
    payload = encode_replay(status_offset=0x04, busy_mask=0x1, ctrl_offset=0x00, start=0x1, done_mask=0x2,
                            timeout=100_000, writes=[(0x10, 0x11223344), (0x28, 3)], reads=[0x80, 0x84])
    #                         status_offset busy_mask ctrl start    done     timeout  wc rc
    assert payload == bytes.fromhex("0400 01000000 0000 01000000 02000000 a0860100 02 02"
                                    "1000 44332211 2800 03000000"        # (offset, value) each
                                    "8000 8400")                          # offsets
    head, writes, reads = decode_replay(payload)
    assert (head["timeout"], writes, reads) == (100_000, [(0x10, 0x11223344), (0x28, 3)], [0x80, 0x84])
    rules = {"max_replay": 64, "ctrl_addr_width": 8}
    assert replay_status(payload, **rules) == Status.OK
    assert replay_status(payload + b"\0", **rules) == Status.BAD_LENGTH          # counts say 46 bytes
    assert replay_status(payload[:-2], **rules) == Status.BAD_LENGTH
    for bad in ([(0x12, 0)], [(0x100, 0)]):                                      # unaligned, too far
        wrong = encode_replay(status_offset=4, busy_mask=1, ctrl_offset=0, start=1, done_mask=2, timeout=1,
                              writes=bad, reads=[])
        assert replay_status(wrong, **rules) == Status.BAD_ADDRESS
    many_reads = encode_replay(status_offset=4, busy_mask=1, ctrl_offset=0, start=1, done_mask=2, timeout=1,
                               writes=[], reads=[0] * 16)                         # 54 bytes; answer 65
    assert replay_status(many_reads, **rules) == Status.BAD_LENGTH
    assert decode_replay_answer(bytes.fromhex("00 01000000 02000000"), 2) == (ReplayResult.DONE, [1, 2])
    assert decode_replay_answer(b"\x02", 2) == (ReplayResult.TIMEOUT, [])
    with pytest.raises(ValueError, match="expected 9"):
        decode_replay_answer(b"\x00", 2)
    with pytest.raises(ValueError, match="at most 255"):
        encode_replay(status_offset=4, busy_mask=1, ctrl_offset=0, start=1, done_mask=2, timeout=1,
                      writes=[(0, 0)] * 256, reads=[])


def test_memory_rules_agree_with_the_hosts_window_split():
    rng = random.Random(2)
    for _ in range(2000):
        addr, length = rng.randrange(1 << 12), rng.randrange(0, 130)
        executed = request_status(Command.MEM_READ, addr, length, **LIMITS) == Status.OK
        assert executed == window_ok(addr, length, LIMITS["max_payload"]), (addr, length)


def test_the_host_reads_it_without_amaranth():
    code = ("import sys, hdl.spec.link_protocol; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'amaranth'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr
