"""The cocotb testbench of the link over Ethernet: a GMII PHY and network made of scapy frames.

``TB`` drives ``eth_system`` (``sim.eth_system``): LiteEth's core in its GMII
simulation variant + ``EthLink`` + the accelerator, clocked at the board's 125 MHz
Ethernet clock. ``Network`` is the PHY's far side: it sends whole Ethernet frames
(scapy ``Ether``, padded to the 60-byte minimum, preamble, SFD and FCS added here)
byte by byte on ``gmii_rx_*`` with the 12-byte inter-frame gap, and collects every
frame on ``gmii_tx_*``, checks its preamble and FCS and parses it with scapy. It
answers the core's ARP requests for the host's address, as a host's kernel would.
``run_eth_tests`` builds the design and runs every cocotb test of a module on it.
"""

from __future__ import annotations

import logging
import zlib
from collections import deque
from dataclasses import replace

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, Event, FallingEdge, First, RisingEdge

from hdl.spec.config import preset

__all__ = ["CONFIG", "CLOCK_NS", "HOST_MAC", "HOST_IP", "HOST_PORT", "Network", "TB", "run_eth_tests"]

# The Nexys Video's accelerator with 2 rows instead of 8 (a quicker build): the link's
# AXI4 port is its 128 bits, which sets the MEM_WRITE burst time the throughput sees.
CONFIG = replace(preset("nexys_video"), name="nexys_video_r2", rows=2)
CLOCK_NS = 8                    # 125 MHz: the GMII clock is the core's clock in the model PHY
HOST_MAC = "02:00:00:00:00:01"
HOST_IP = "192.168.1.100"
HOST_PORT = 40000
PREAMBLE = bytes([0x55] * 7 + [0xD5])
MIN_FRAME = 60                  # Ethernet frame without FCS, padded
GAP_BYTES = 12


def with_fcs(frame: bytes) -> bytes:
    """``frame`` padded to the Ethernet minimum, with its FCS (CRC-32, little-endian)."""
    frame = frame.ljust(MIN_FRAME, b"\0")
    return frame + zlib.crc32(frame).to_bytes(4, "little")


class Network:
    """The PHY's far side: ``send`` whole frames into ``gmii_rx_*``, ``receive`` the core's frames."""

    def __init__(self, dut, board_ip: str):
        self.dut = dut
        self.board_ip = board_ip
        self.outgoing: deque[bytes] = deque()
        self.incoming: deque = deque()
        self.have_outgoing = Event()
        self.have_incoming = Event()
        self.bad_frames = 0              # frames from the core with a bad preamble or FCS
        self.arp_answered = 0
        dut.gmii_rx_dv.value = 0
        dut.gmii_rx_er.value = 0
        dut.gmii_rx_data.value = 0
        dut.gmii_clocks_rx.value = 0
        cocotb.start_soon(self._drive())
        cocotb.start_soon(self._collect())

    def send(self, packet, *, corrupt_fcs: bool = False) -> None:
        """Queue ``packet`` (scapy or bytes); sent after the ones before it, gap included."""
        wire = bytearray(with_fcs(bytes(packet)))
        if corrupt_fcs:
            wire[-1] ^= 0x01
        self.outgoing.append(PREAMBLE + bytes(wire))
        self.have_outgoing.set()

    async def receive(self, timeout_cycles: int = 20_000):
        """The next frame from the core (scapy ``Ether``) other than ARP requests for the
        host, or None after ``timeout_cycles``."""
        if not self.incoming:
            self.have_incoming.clear()
            await First(self.have_incoming.wait(), ClockCycles(self.dut.aclk, timeout_cycles))
        return self.incoming.popleft() if self.incoming else None

    async def _drive(self):
        dut = self.dut
        while True:
            if not self.outgoing:
                self.have_outgoing.clear()
                await self.have_outgoing.wait()
                await FallingEdge(dut.aclk)
            for byte in self.outgoing.popleft():
                dut.gmii_rx_dv.value = 1
                dut.gmii_rx_data.value = byte
                await FallingEdge(dut.aclk)
            dut.gmii_rx_dv.value = 0
            await ClockCycles(dut.aclk, GAP_BYTES)
            await FallingEdge(dut.aclk)

    async def _collect(self):
        from scapy.all import ARP, Ether
        dut = self.dut
        while True:
            await RisingEdge(dut.gmii_tx_en)
            wire = bytearray()
            while True:
                await FallingEdge(dut.aclk)
                if not dut.gmii_tx_en.value:
                    break
                wire.append(int(dut.gmii_tx_data.value))
            start = wire.find(0xD5) + 1
            frame = bytes(wire[start:])
            if wire[:start] != PREAMBLE or zlib.crc32(frame[:-4]) != int.from_bytes(frame[-4:], "little"):
                self.bad_frames += 1
                continue
            packet = Ether(frame[:-4])
            self.dut._log.debug("from the core at %.2f us: %s", get_sim_time("ns") / 1e3, packet.summary())
            if ARP in packet and packet[ARP].op == 1 and packet[ARP].pdst == HOST_IP:
                self.arp_answered += 1
                self.send(Ether(dst=packet.src, src=HOST_MAC) /
                          ARP(op=2, hwsrc=HOST_MAC, psrc=HOST_IP, hwdst=packet.src, pdst=packet[ARP].psrc))
                continue
            self.incoming.append(packet)
            self.have_incoming.set()


class TB:
    """Clock, reset, the network and the AXI memory models of ``eth_system``."""

    def __init__(self, dut):
        from cocotbext.axi import AxiBus, AxiRam, AxiRamRead, AxiReadBus

        from sim.eth_system import BOARD
        self.dut = dut
        self.config = CONFIG
        self.ethernet = BOARD.ethernet
        for name in ("m_axi_mem", *self.config.weight_masters):
            logging.getLogger(f"cocotb.{dut._name}.{name}").setLevel(logging.WARNING)
        cocotb.start_soon(Clock(dut.aclk, CLOCK_NS, unit="ns").start())
        self.net = Network(dut, self.ethernet.ip_address)
        # The SmartConnect + MIG as both masters see them: one memory, two ports.
        self.mem = AxiRam(AxiBus.from_prefix(dut, "m_axi_mem"), dut.aclk, dut.aresetn,
                          reset_active_level=False, size=1 << 20)
        self.dma = AxiRam(AxiBus.from_prefix(dut, "m_axi_dma"), dut.aclk, dut.aresetn,
                          reset_active_level=False, size=1 << 20, mem=self.mem.mem)
        self.weight_ports = [AxiRamRead(AxiReadBus.from_prefix(dut, master), dut.aclk, dut.aresetn,
                                        reset_active_level=False, size=1 << 20, mem=self.mem.mem)
                             for master in self.config.weight_masters[1:]]

    async def reset(self):
        self.dut.aresetn.value = 0
        await ClockCycles(self.dut.aclk, 5)
        self.dut.aresetn.value = 1
        await ClockCycles(self.dut.aclk, 20)

    def udp(self, payload: bytes, *, sport: int = HOST_PORT):
        """A datagram from the host to the board's link port."""
        from scapy.all import IP, UDP, Ether, Raw
        return (Ether(dst=self.ethernet.mac_text, src=HOST_MAC) / IP(src=HOST_IP, dst=self.ethernet.ip_address) /
                UDP(sport=sport, dport=self.ethernet.udp_port) / Raw(payload))

    async def answer(self, timeout_cycles: int = 20_000):
        """The next UDP datagram from the board, or None."""
        from scapy.all import UDP
        while True:
            packet = await self.net.receive(timeout_cycles)
            if packet is None or UDP in packet:
                return packet

    @staticmethod
    def now_s() -> float:
        return get_sim_time("ns") * 1e-9


def run_eth_tests(test_module: str, extra_env: dict[str, str] | None = None) -> None:
    """Build ``eth_system`` and run every cocotb test of ``test_module`` on it (with
    ``extra_env`` in its environment)."""
    from sim.eth_system import eth_link_top, eth_sources
    from sim.runner import run_cocotb
    from sim.top_build import top_build_args
    link = eth_link_top(CONFIG)
    sources, toplevel = eth_sources(CONFIG, link)
    run_cocotb(sources=sources, toplevel=toplevel, test_module=test_module, extra_args=top_build_args(),
               extra_env=extra_env)
