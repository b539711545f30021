"""cocotb: the Nexys Video's link over Gigabit Ethernet, from whole Ethernet frames to AXI.

``sim.eth_tb`` plays the PHY and the network with scapy frames on LiteEth's GMII
(simulation variant of the board's core, at 125 MHz); ``EthLink`` and the accelerator
sit behind it. Checked: ARP (the board's MAC), ICMP echo, HELLO over UDP (answered to
the sender's address and port, ``max_payload`` 1024), a register read reaching the
accelerator, MEM_WRITE + MEM_READ through the AXI model, a frame with a bad Ethernet
FCS (dropped: no answer, nothing written), a bad link CRC (``Status.CRC``). Then the
bulk figure: 1024-byte MEM_WRITE datagrams back to back, two in flight, payload bytes
per simulated second printed (not asserted).
"""

from __future__ import annotations

import cocotb
import pytest

from sim.eth_tb import HOST_IP, HOST_MAC, HOST_PORT, TB, run_eth_tests

BULK_DATAGRAMS = 24
BULK_WINDOW = 2                 # requests in flight: the next is on the wire while one runs


def _link():
    from hdl.spec import link_protocol
    return link_protocol


def datagram(packet) -> bytes:
    """A UDP packet's payload without the Ethernet padding scapy leaves after it."""
    from scapy.all import UDP
    return bytes(packet[UDP].payload)[:packet[UDP].len - 8]


async def exchange(tb: TB, frame: bytes, *, sport: int = HOST_PORT):
    """Send one request frame in a datagram; the answer's (UDP packet, header, payload)."""
    from scapy.all import UDP
    tb.net.send(tb.udp(frame, sport=sport))
    packet = await tb.answer()
    assert packet is not None, "no answer"
    header, payload = _link().decode_response(datagram(packet))
    return packet, header, payload


@cocotb.test()
async def arp_and_icmp(dut):
    """ARP who-has the board: answered with its MAC; ICMP echo: echoed."""
    from scapy.all import ARP, ICMP, IP, Ether, Raw
    tb = TB(dut)
    await tb.reset()
    eth = tb.ethernet
    tb.net.send(Ether(dst="ff:ff:ff:ff:ff:ff", src=HOST_MAC) /
                ARP(op=1, hwsrc=HOST_MAC, psrc=HOST_IP, pdst=eth.ip_address))
    reply = await tb.net.receive()
    assert reply is not None and ARP in reply, f"no ARP reply: {reply!r}"
    assert (reply[ARP].op, reply[ARP].hwsrc, reply[ARP].psrc) == (2, eth.mac_text, eth.ip_address)
    assert (reply[ARP].hwdst, reply[ARP].pdst, reply.dst) == (HOST_MAC, HOST_IP, HOST_MAC)

    tb.net.send(Ether(dst=eth.mac_text, src=HOST_MAC) / IP(src=HOST_IP, dst=eth.ip_address) /
                ICMP(type=8, id=0x1234, seq=7) / Raw(bytes(range(48))))
    echo = await tb.net.receive()
    assert echo is not None and ICMP in echo, f"no echo reply: {echo!r}"
    assert (echo[ICMP].type, echo[ICMP].id, echo[ICMP].seq) == (0, 0x1234, 7)
    assert bytes(echo[ICMP].payload) == bytes(range(48))
    assert (echo[IP].src, echo[IP].dst) == (eth.ip_address, HOST_IP)
    assert tb.net.bad_frames == 0


@cocotb.test()
async def hello_register_and_memory(dut):
    """HELLO, a register read of the accelerator, MEM_WRITE then MEM_READ round trip."""
    from scapy.all import IP, UDP
    link = _link()
    tb = TB(dut)
    await tb.reset()
    eth = tb.ethernet
    packet, header, payload = await exchange(tb, link.encode_request(link.Command.HELLO, 1, 0, 0), sport=41000)
    assert (packet[IP].src, packet[IP].dst) == (eth.ip_address, HOST_IP)
    assert (packet[UDP].sport, packet[UDP].dport) == (eth.udp_port, 41000)
    assert packet[UDP].len - 8 == link.RESPONSE_OVERHEAD + len(payload)
    assert header["status"] == link.Status.OK
    hello = link.HelloInfo.parse(payload)
    assert hello.max_payload == 1024 and hello.bus_bytes == tb.config.bus_bytes
    assert tb.net.arp_answered <= 1          # the core asks for the host's MAC unless cached

    from hdl.spec.regmap import ID_MAGIC, REGISTERS
    id_offset = next(r.offset for r in REGISTERS if r.name == "ID")
    _, header, payload = await exchange(tb, link.encode_request(link.Command.REG_READ, 2, id_offset, 4))
    assert header["status"] == link.Status.OK and int.from_bytes(payload, "little") == ID_MAGIC

    data = bytes((7 * i + 3) & 0xFF for i in range(300))
    address = 0x2000 + 5                     # unaligned start, 300 bytes inside one window
    _, header, _ = await exchange(tb, link.encode_request(link.Command.MEM_WRITE, 1, address, len(data), data))
    assert header["status"] == link.Status.OK
    assert tb.mem.read(address, len(data)) == data
    _, header, payload = await exchange(tb, link.encode_request(link.Command.MEM_READ, 3, address, len(data)))
    assert header["status"] == link.Status.OK and payload == data


@cocotb.test()
async def corrupted_frames(dut):
    """A bad Ethernet FCS: dropped (no answer, memory untouched); a bad link CRC: Status.CRC."""
    link = _link()
    tb = TB(dut)
    await tb.reset()
    data = bytes(range(64))
    write = link.encode_request(link.Command.MEM_WRITE, 1, 0x3000, len(data), data)
    tb.net.send(tb.udp(write), corrupt_fcs=True)
    assert await tb.answer(timeout_cycles=4000) is None
    assert tb.mem.read(0x3000, len(data)) == bytes(len(data))

    bad_crc = bytearray(write)
    bad_crc[-1] ^= 0xFF
    _, header, _ = await exchange(tb, bytes(bad_crc))
    assert header["status"] == link.Status.CRC
    assert tb.mem.read(0x3000, len(data)) == bytes(len(data))

    _, header, _ = await exchange(tb, write)          # the same request, intact: executed once
    assert header["status"] == link.Status.OK
    assert tb.mem.read(0x3000, len(data)) == data


@cocotb.test()
async def bulk_write_throughput(dut):
    """1024-byte MEM_WRITEs back to back (two in flight): payload bytes per simulated second."""
    from scapy.all import UDP
    link = _link()
    tb = TB(dut)
    await tb.reset()
    await exchange(tb, link.encode_request(link.Command.HELLO, 0, 0, 0))   # the ARP cache is warm
    size = 1024
    blocks = [bytes((seq * 31 + i) & 0xFF for i in range(size)) for seq in range(BULK_DATAGRAMS)]
    start = tb.now_s()
    sent = answered = 0
    while answered < BULK_DATAGRAMS:
        while sent < BULK_DATAGRAMS and sent - answered < BULK_WINDOW:
            tb.net.send(tb.udp(link.encode_request(link.Command.MEM_WRITE, sent + 1, 0x10000 + sent * size,
                                                   size, blocks[sent])))
            sent += 1
        packet = await tb.answer()
        assert packet is not None, f"no answer to write {answered + 1}"
        header, _ = link.decode_response(datagram(packet))
        assert (header["seq"], header["status"]) == (answered + 1, link.Status.OK)
        answered += 1
    elapsed = tb.now_s() - start
    for seq, block in enumerate(blocks):
        assert tb.mem.read(0x10000 + seq * size, size) == block
    rate = BULK_DATAGRAMS * size / elapsed
    dut._log.info("bulk MEM_WRITE: %d x %d bytes in %.1f us simulated: %.1f MB/s of payload "
                  "(%.0f cycles per datagram at %g MHz)", BULK_DATAGRAMS, size, elapsed * 1e6, rate / 1e6,
                  elapsed / BULK_DATAGRAMS * 125e6, 125)
    print(f"\nEthernet link bulk MEM_WRITE: {rate / 1e6:.1f} MB/s of payload")


@pytest.mark.xdist_group("eth_system")
def test_link_over_ethernet():
    """Every cocotb test above, on LiteEth's core + EthLink + the accelerator."""
    run_eth_tests(__name__)
