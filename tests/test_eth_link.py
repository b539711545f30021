"""hdl/eth_link.py on the Amaranth simulator: one request frame per UDP datagram.

Datagrams go in as LiteEth's 32-bit user-port words; answers come out as datagrams,
decoded with ``hdl.spec.link_protocol``. Covered without an AXI bus: HELLO (its
``max_payload`` is the UDP one), a link CRC error (answered CRC), a datagram shorter
than its frame (answered TRUNCATED within ``frame_timeout`` + a few cycles), one
flagged with LiteEth's error (FCS; not answered even though its frame checks out),
one without a sync byte (not answered), bytes after a frame (dropped: one answer),
one longer than the longest frame (not answered), back-to-back datagrams (each
answered in order, to its own sender), and the UDP length of every answer.
The full chain with LiteEth and the accelerator is ``sim/test_eth_link.py``.
"""

from __future__ import annotations

import pytest
from amaranth.sim import Simulator

from hdl.eth_link import FRAME_TIMEOUT, MAX_PAYLOAD, EthLink
from hdl.spec.config import preset
from hdl.spec.link_protocol import (REQUEST_OVERHEAD, RESPONSE_OVERHEAD, Command, HelloInfo, Status,
                                    decode_response, encode_request)
from hdl.udp_port import WORD_BYTES

PORT = 0x5359
BUDGET = 4_000


def words(datagram: bytes):
    """LiteEth's words of ``datagram``: (data, last, last_be)."""
    out = []
    for start in range(0, len(datagram), WORD_BYTES):
        chunk = datagram[start:start + WORD_BYTES]
        last = start + WORD_BYTES >= len(datagram)
        out.append((int.from_bytes(chunk, "little"), last, 1 << (len(chunk) - 1) if last else 0))
    return out


def run(datagrams, *, gap=4, tx_stall=0):
    """Send ``datagrams`` ((payload, (ip, port), error) each), the answers' port not ready
    for the first ``tx_stall`` cycles; the answers as (peer, udp length, bytes, cycle of
    the last word)."""
    dut = EthLink(preset("nexys_video"), udp_port=PORT)
    answers = []
    sent_at = []

    async def source(ctx):
        now = 0
        for payload, (ip, port), error in datagrams:
            for index, (data, last, last_be) in enumerate(words(payload)):
                ctx.set(dut.udp_rx.payload, {"data": data, "last": last, "last_be": last_be, "ip_address": ip,
                                             "src_port": port, "dst_port": PORT, "length": len(payload),
                                             "error": error and last})
                ctx.set(dut.udp_rx.valid, 1)
                await ctx.tick()
                now += 1
            ctx.set(dut.udp_rx.valid, 0)
            sent_at.append(now)
            if gap:
                await ctx.tick().repeat(gap)
                now += gap

    async def sink(ctx):
        data, now = bytearray(), 0
        while now < BUDGET:
            ctx.set(dut.udp_tx.ready, now >= tx_stall)
            _, _, valid, word = await ctx.tick().sample(dut.udp_tx.valid, dut.udp_tx.payload)
            now += 1
            if not valid or now <= tx_stall:
                continue
            lanes = WORD_BYTES if not word.last else int(word.last_be).bit_length()
            data += int(word.data).to_bytes(WORD_BYTES, "little")[:lanes]
            if word.last:
                answers.append(((int(word.ip_address), int(word.dst_port), int(word.src_port)),
                                int(word.length), bytes(data), now))
                data = bytearray()

    sim = Simulator(dut)
    sim.add_clock(8e-9)
    sim.add_testbench(source)
    sim.add_testbench(sink, background=True)
    sim.run_until(BUDGET * 8e-9)
    return answers, sent_at


HOST = (0xC0A80101, 40000)


def request(cmd, seq=1, addr=0, length=0, payload=b""):
    return encode_request(cmd, seq, addr, length, payload)


def test_hello_reports_the_udp_max_payload_and_goes_back_to_its_sender():
    answers, _ = run([(request(Command.HELLO, seq=7), HOST, False)])
    assert len(answers) == 1
    (ip, dst_port, src_port), length, frame, _ = answers[0]
    assert (ip, dst_port, src_port) == (*HOST, PORT)
    assert length == len(frame) == RESPONSE_OVERHEAD + len(decode_response(frame)[1])
    header, payload = decode_response(frame)
    assert (header["cmd"], header["seq"], header["status"]) == (Command.HELLO, 7, Status.OK)
    assert HelloInfo.parse(payload).max_payload == MAX_PAYLOAD


def test_bad_link_crc_is_answered_crc():
    frame = bytearray(request(Command.HELLO, seq=3))
    frame[-1] ^= 0x40
    answers, _ = run([(bytes(frame), HOST, False)])
    assert [decode_response(a[2])[0]["status"] for a in answers] == [Status.CRC]


def test_short_datagram_is_answered_truncated_promptly():
    frame = request(Command.HELLO, seq=4)[:-3]
    answers, sent_at = run([(frame, HOST, False)])
    assert [decode_response(a[2])[0]["status"] for a in answers] == [Status.TRUNCATED]
    assert answers[0][3] - sent_at[0] < FRAME_TIMEOUT + 64


def test_flagged_oversized_and_syncless_datagrams_are_not_answered():
    good = request(Command.HELLO, seq=9)
    long = good + bytes(REQUEST_OVERHEAD + MAX_PAYLOAD)          # frame OK, datagram too long
    answers, _ = run([(good, HOST, True), (bytes(40), HOST, False), (long, HOST, False),
                      (good, (0x0A000002, 1234), False)])
    assert len(answers) == 1
    assert answers[0][0][:2] == (0x0A000002, 1234)


def test_bytes_after_the_frame_are_dropped():
    answers, _ = run([(request(Command.HELLO, seq=5) + request(Command.HELLO, seq=6), HOST, False)])
    assert [decode_response(a[2])[0]["seq"] for a in answers] == [5]


def test_back_to_back_datagrams_are_answered_in_order_to_their_senders():
    peers = [(0xC0A80100 + i, 50000 + i) for i in range(6)]
    answers, _ = run([(request(Command.IRQ, seq=i), peer, False) for i, peer in enumerate(peers)], gap=0)
    assert [a[0][:2] for a in answers] == peers
    assert [decode_response(a[2])[0]["seq"] for a in answers] == list(range(6))


def test_the_next_answer_is_collected_while_one_waits_to_be_sent():
    # Three answers come while LiteEth takes none: two are buffered, the third waits in
    # LinkTx; then they go out back to back (one idle cycle between datagrams).
    answers, _ = run([(request(Command.HELLO, seq=i), HOST, False) for i in range(3)], gap=0, tx_stall=600)
    assert [decode_response(a[2])[0]["seq"] for a in answers] == [0, 1, 2]
    words = -(-answers[0][1] // WORD_BYTES)
    assert answers[1][3] - answers[0][3] == words + 1
