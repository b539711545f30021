"""hdl/link_tx.py on the Amaranth simulator: its frames equal ``encode_response``.

Responses of every status with payloads of 0 to 255 bytes are sent with gaps in the
payload stream and back-pressure on ``tx``; the bytes on ``tx`` must be the frame
``hdl.spec.link_protocol.encode_response`` makes, the response must be taken with
the frame's last byte, and exactly ``length`` payload bytes must be taken.
"""

import random

import pytest
from amaranth.sim import Simulator

from hdl.link_tx import LinkTx
from hdl.spec.link_protocol import Command, Status, encode_response

BUDGET = 40_000         # cycles; a hang fails instead of spinning forever


def run_tx(responses, *, seed=0, payload_gaps=0.0, tx_gaps=0.0, extra_bytes=0):
    """Send ``responses`` ((cmd, seq, status, payload) each) through a LinkTx.

    ``payload_gaps``/``tx_gaps`` are the chances of a cycle without payload valid or tx
    ready; each payload stream offers ``extra_bytes`` more bytes than its length.
    Returns the bytes on tx, the clock edge of each tx handshake, the edges after which
    each response was offered and at which it was taken, and the payload bytes left untaken.
    """
    dut = LinkTx()
    rng = random.Random(seed)
    out, tx_cycles, offered, taken, left = bytearray(), [], [], [], []

    async def producer(ctx):
        now = 0                     # clock edges so far
        for cmd, seq, status, payload in responses:
            for name, value in (("cmd", cmd), ("seq", seq), ("status", status), ("length", len(payload))):
                ctx.set(getattr(dut.response.payload, name), value)
            ctx.set(dut.response.valid, 1)
            offered.append(now)
            pending = list(payload) + [0xEE] * extra_bytes
            while True:
                if pending and rng.random() >= payload_gaps:
                    ctx.set(dut.payload.valid, 1)
                    ctx.set(dut.payload.payload, pending[0])
                _, _, p_taken, r_taken = await ctx.tick().sample(dut.payload.ready & dut.payload.valid,
                                                                 dut.response.ready)
                now += 1
                if p_taken:
                    pending.pop(0)
                ctx.set(dut.payload.valid, 0)
                if r_taken:
                    break
            ctx.set(dut.response.valid, 0)
            taken.append(now)
            left.append(len(pending))
            gap = rng.randrange(1, 4)
            await ctx.tick().repeat(gap)
            now += gap

    async def consumer(ctx):
        now = 0
        async for _, _, valid, ready, byte in ctx.tick().sample(dut.tx.valid, dut.tx.ready, dut.tx.payload):
            now += 1
            assert now < BUDGET, "the sender hangs"
            if valid and ready:
                out.append(byte)
                tx_cycles.append(now)
            ctx.set(dut.tx.ready, rng.random() >= tx_gaps)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer, background=True)
    sim.run()
    return bytes(out), tx_cycles, offered, taken, left


def random_responses(rng, lengths):
    return [(rng.choice([*Command, 0x7E]), rng.randrange(1 << 16), rng.choice(list(Status)), rng.randbytes(n))
            for n in lengths]


@pytest.mark.parametrize("payload_gaps, tx_gaps", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.7), (0.6, 0.6)])
def test_frames_are_what_encode_response_makes(payload_gaps, tx_gaps):
    rng = random.Random(int(10 * payload_gaps + 100 * tx_gaps))
    responses = random_responses(rng, [0, 1, 2, 4, 12, 64, 130])
    out, *_ = run_tx(responses, seed=rng.randrange(1000), payload_gaps=payload_gaps, tx_gaps=tx_gaps)
    assert out == b"".join(encode_response(*r) for r in responses)


def test_extreme_header_values():
    responses = [(0xFF, 0xFF, 0xFF, bytes(255)), (0, 0, 0, b""), (0x80, 0x01, Status.AXI_DECERR, b"\xFF")]
    out, *_ = run_tx(responses, tx_gaps=0.3)
    assert out == b"".join(encode_response(*r) for r in responses)


def test_response_taken_with_the_last_byte_and_exactly_length_bytes_taken():
    rng = random.Random(4)
    responses = random_responses(rng, [0, 3, 17])
    out, tx_cycles, offered, taken, left = run_tx(responses, seed=5, tx_gaps=0.4, payload_gaps=0.3,
                                                  extra_bytes=2)
    assert out == b"".join(encode_response(*r) for r in responses)
    assert left == [2, 2, 2]                          # the extra bytes stay in the stream
    ends = [tx_cycles[i - 1] for i in _frame_ends(responses)]
    assert taken == ends


def test_sync_byte_is_offered_the_cycle_after_the_response():
    responses = [(Command.HELLO, 1, Status.OK, b"")]
    out, tx_cycles, offered, taken, left = run_tx(responses)
    assert tx_cycles[0] == offered[0] + 2                 # valid from cycle +1, taken at once
    # Every further byte follows its predecessor at once when tx is always ready.
    assert tx_cycles == list(range(tx_cycles[0], tx_cycles[0] + len(out)))


def _frame_ends(responses):
    """Index (one past) of each frame's last byte in the concatenated output."""
    ends, total = [], 0
    for r in responses:
        total += len(encode_response(*r))
        ends.append(total)
    return ends

