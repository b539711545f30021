"""hdl/link_rx.py on the Amaranth simulator, fed frames made by ``encode_request``.

Every frame's header fields, payload bytes and end status are compared with what
``hdl.spec.link_protocol`` encoded: good frames of every command, corrupted CRCs,
truncated frames, an oversize length, noise, and frames split by gaps either side
of the frame timeout.
"""

import random
from dataclasses import dataclass, field

import pytest
from amaranth.sim import Simulator

from hdl.link_rx import LinkRx, check_frame_timeout
from hdl.spec.link_protocol import (CRC_BYTES, REQUEST_LAYOUT, REQUEST_PAYLOAD_OFFSET, SYNC_BYTES,
                                    Command, Status, encode_request)

TIMEOUT = 40            # cycles
BUDGET = 20_000         # cycles; a hang fails instead of spinning forever


@dataclass(frozen=True)
class Gap:
    """Idle cycles on ``rx`` between two bytes."""

    cycles: int


@dataclass
class Frame:
    """What the receiver reported for one frame."""

    status: int
    header: dict
    payload: list = field(default_factory=list)     # (index, byte)
    offered_cycle: int = 0                           # end.valid first seen
    end_cycle: int = 0                               # end taken


@dataclass
class Run:
    frames: list
    stray_payload: list       # payload bytes after the last end
    take_cycles: list         # cycle of every byte taken from rx
    ready_while_ending: bool  # rx.ready high while end was waiting
    busy: list                # busy, per cycle


def run_rx(items, *, end_delay=0, tail=TIMEOUT + 10) -> Run:
    """Feed ``items`` (bytes, ints and ``Gap``s) to a LinkRx; take each ``end`` after ``end_delay`` cycles."""
    dut = LinkRx(frame_timeout=TIMEOUT)
    frames, payload, takes, busy = [], [], [], [None]     # busy[cycle], cycles counted from 1
    flags = {"ready_while_ending": False, "offered": None}
    fields = [getattr(dut.header, name) for name in REQUEST_LAYOUT.names]

    async def source(ctx):
        for item in items:
            for byte in ([item] if isinstance(item, (int, Gap)) else item):
                if isinstance(byte, Gap):
                    await ctx.tick().repeat(byte.cycles)
                    continue
                ctx.set(dut.rx.payload, byte)
                ctx.set(dut.rx.valid, 1)
                await ctx.tick().until(dut.rx.ready)
                ctx.set(dut.rx.valid, 0)
        await ctx.tick().repeat(tail)

    async def taker(ctx):
        waited = 0
        async for _, _, valid in ctx.tick().sample(dut.end.valid):
            waited = waited + 1 if valid else 0
            ctx.set(dut.end.ready, waited == end_delay + 1)

    async def monitor(ctx):
        cycle = 0
        signals = (dut.rx.valid, dut.rx.ready, dut.payload.valid, dut.payload.payload.index,
                   dut.payload.payload.data, dut.end.valid, dut.end.ready, dut.end.payload.status,
                   dut.busy, *fields)
        async for _, _, rx_valid, rx_ready, p_valid, p_index, p_data, e_valid, e_ready, status, b, *values \
                in ctx.tick().sample(*signals):
            cycle += 1
            assert cycle < BUDGET, "the receiver hangs"
            busy.append(b)
            if rx_valid and rx_ready:
                takes.append(cycle)
            if p_valid:
                payload.append((p_index, p_data))
            if e_valid and rx_ready:
                flags["ready_while_ending"] = True
            if e_valid and flags["offered"] is None:
                flags["offered"] = cycle
            if e_valid and e_ready:
                frames.append(Frame(status, dict(zip(REQUEST_LAYOUT.names, values)), list(payload),
                                    flags["offered"], cycle))
                payload.clear()
                flags["offered"] = None

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(taker, background=True)
    sim.add_testbench(monitor, background=True)
    sim.run()
    return Run(frames, payload, takes, flags["ready_while_ending"], busy)


def request(cmd, seq=0x3C, addr=0x0123_4567_89AB_CDEF, length=0, payload=b"") -> tuple[bytes, dict]:
    """A frame and the header fields it encodes."""
    return (encode_request(cmd, seq, addr, length, payload),
            {"cmd": cmd, "seq": seq, "addr": addr, "length": length})


def indexed(payload: bytes) -> list:
    return list(enumerate(payload))


@pytest.mark.parametrize("cmd", [*Command, 0x00, 0x7E, 0xFF])
def test_header_and_payload_of_every_command(cmd):
    rng = random.Random(cmd)
    writes = cmd in (Command.REG_WRITE, Command.MEM_WRITE, Command.REPLAY, Command.MEM_WRITE_AFTER,
                     Command.REPLAY_AFTER)
    length = 4 if cmd in (Command.REG_READ, Command.REG_WRITE) else rng.randrange(1, 40)
    body = rng.randbytes(length) if writes else b""
    frame, fields = request(cmd, rng.randrange(1 << 16), rng.getrandbits(64), length, body)
    run = run_rx([frame])
    assert [(f.status, f.header, f.payload) for f in run.frames] == [(Status.OK, fields, indexed(body))]
    assert not run.stray_payload and not run.ready_while_ending


def test_extreme_field_values_land_in_their_fields():
    frames = [request(Command.MEM_READ, 0xFFFF, (1 << 64) - 1, 0xFFFF), request(Command.HELLO, 0, 0, 0),
              request(Command.MEM_READ, 0x8000, 1 << 63, 0x8000), request(Command.REG_READ, 0x00FF, 0, 4)]
    run = run_rx([frame for frame, _ in frames])
    assert [(f.status, f.header) for f in run.frames] == [(Status.OK, fields) for _, fields in frames]


@pytest.mark.parametrize("where", ["seq", "addr", "length", "payload", "crc_low", "crc_high"])
def test_corrupted_frame_is_reported_crc(where):
    body = bytes(range(10, 18))
    frame, fields = request(Command.MEM_WRITE, 9, 0x200, len(body), body)
    index = {"payload": REQUEST_PAYLOAD_OFFSET + 3, "crc_low": len(frame) - CRC_BYTES,
             "crc_high": len(frame) - 1}.get(where)
    if index is None:
        index = SYNC_BYTES + REQUEST_LAYOUT[where].offset
    corrupt = bytearray(frame)
    corrupt[index] ^= 0x80 if where == "length" else 0x01
    # A length 128 larger claims 128 more payload bytes: send them, so the frame ends by its CRC.
    if where == "length":
        fields = {**fields, "length": fields["length"] ^ 0x80}
        corrupt += bytes(0x80)                          # the longer payload the header now claims
    run = run_rx([bytes(corrupt), Gap(3), frame])
    assert [f.status for f in run.frames] == [Status.CRC, Status.OK]
    assert run.frames[0].header == {**fields, **({"seq": 8} if where == "seq" else {}),
                                    **({"addr": 0x201} if where == "addr" else {})}
    assert run.frames[1].payload == indexed(body)


@pytest.mark.parametrize("cut", [1, 2, REQUEST_PAYLOAD_OFFSET - 1, REQUEST_PAYLOAD_OFFSET + 5, -1])
def test_truncated_frame_ends_a_timeout_after_its_last_byte(cut):
    body = bytes(range(20))
    frame, fields = request(Command.MEM_WRITE, 0x44, 0x300, len(body), body)
    before, _ = request(Command.MEM_READ, 0xEE, (1 << 64) - 1, 0xFFFF)   # leaves all ones behind
    run = run_rx([before, frame[:cut]])
    assert [f.status for f in run.frames] == [Status.OK, Status.TRUNCATED]
    got = frame[SYNC_BYTES:cut]
    # The fields that arrived whole are kept; the rest read zero (a partial one, its low bytes).
    expected = {name: int.from_bytes(got[f.offset:f.offset + f.size], "little")
                for name, f in ((n, REQUEST_LAYOUT[n]) for n in REQUEST_LAYOUT.names)}
    assert run.frames[1].header == expected
    assert run.frames[1].offered_cycle - run.take_cycles[-1] == TIMEOUT + 2    # after TIMEOUT + 1 idle cycles


def test_oversize_length_is_received_whole():
    """The receiver knows no max_payload: a long write is taken whole and left to the executor."""
    body = random.Random(3).randbytes(300)
    frame, fields = request(Command.MEM_WRITE, 1, 0x40, len(body), body)
    run = run_rx([frame])
    assert [(f.status, f.header) for f in run.frames] == [(Status.OK, fields)]
    assert run.frames[0].payload == indexed(body)


def test_frame_split_by_gaps_up_to_the_timeout():
    rng = random.Random(7)
    body = rng.randbytes(12)
    frame, fields = request(Command.MEM_WRITE, 2, 0x1000, len(body), body)
    items = [item for byte in frame for item in (byte, Gap(rng.choice([1, 5, TIMEOUT - 1, TIMEOUT])))]
    run = run_rx(items)
    assert [(f.status, f.header, f.payload) for f in run.frames] == [(Status.OK, fields, indexed(body))]
    gaps = [b - a - 1 for a, b in zip(run.take_cycles, run.take_cycles[1:])]
    assert max(gaps) == TIMEOUT


def test_a_gap_one_cycle_over_the_timeout_truncates_then_the_next_frame_arrives():
    frame, fields = request(Command.REG_READ, 5, 0x10, 4)
    split = SYNC_BYTES + REQUEST_LAYOUT["addr"].offset
    run = run_rx([frame[:split], Gap(TIMEOUT + 1), frame[split:], Gap(TIMEOUT + 5), frame])
    assert [f.status for f in run.frames] == [Status.TRUNCATED, Status.OK]
    assert run.frames[1].header == fields


def test_noise_is_skipped_and_rx_waits_while_the_end_is_pending():
    first, first_fields = request(Command.MEM_WRITE, 1, 0x20, 2, b"\xA5\x5A")
    second, second_fields = request(Command.IRQ, 2, 0, 0)
    run = run_rx([bytes([0x00, 0x5A, 0xFF, 0x13]), first, second], end_delay=25)
    assert [(f.status, f.header) for f in run.frames] == [(Status.OK, first_fields), (Status.OK, second_fields)]
    assert run.frames[0].payload == [(0, 0xA5), (1, 0x5A)]    # a sync value inside a frame is data
    assert not run.ready_while_ending
    # The second frame's sync byte waits until the first frame's end is taken.
    assert run.take_cycles[4 + len(first)] > run.frames[0].end_cycle
    sync_taken = run.take_cycles[4]
    assert run.busy[sync_taken] == 0 and run.busy[sync_taken + 1] == 1
    assert run.busy[run.frames[0].end_cycle] == 1 and run.busy[run.frames[0].end_cycle + 1] == 0


def test_frame_timeout_must_be_a_timeout():
    with pytest.raises(ValueError, match="frame_timeout=15 cycles is too short"):
        check_frame_timeout(15)
