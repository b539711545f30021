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

from hdl.spec.link_protocol import REQUEST_PAYLOAD_OFFSET, Command, Status, encode_request
from sim.link_tb import MAX_PAYLOAD, TB, exchange, run_link_tests


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
            ((1, 0), MAX_PAYLOAD, tb.config.bus_bytes, tb.config.addr_width, 8)
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
        results["mem_slverr_write"] = exchange(t, encode_request(Command.MEM_WRITE, 12, 0x308, 4, bytes(4)))
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


@pytest.mark.xdist_group("uart_bridge")
def test_uart_bridge():
    """Every cocotb test above, on the bridge alone."""
    run_link_tests(__name__, system=False)
