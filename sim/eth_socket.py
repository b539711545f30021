"""A real UDP socket on this machine bridged into the simulated Ethernet core.

``SocketBridge`` runs inside a cocotb test of ``eth_system``: it binds a UDP socket on
the loopback interface, and every datagram a host program sends there becomes one
Ethernet frame on the core's GMII side (scapy ``Ether / IP / UDP``, from the
testbench's host address), while every UDP datagram the core sends back is
unwrapped and sent to the host program's socket. So the host runs its real
``host.platforms.udp`` code on a real socket, in its own process, and the board is
the RTL.

Faults are injected by a seeded ``FaultPlan``, per direction: a datagram is lost, its
frame reaches the core with a bad Ethernet FCS (the MAC drops it), a byte of its link
frame is flipped under a good FCS (the link CRC catches it), or it is delivered twice.

The host side stops the bridge with a datagram of ``STOP`` bytes. The bridge counts
what it did (``stats``) and the accelerator's job starts it saw on ``s_axi_ctrl``
(``ap_start`` writes to CTRL), so a test can check nothing ran twice.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from hdl.spec.regmap import by_name

__all__ = ["STOP", "FaultPlan", "SocketBridge"]

STOP = b"STOP"                  # a datagram of exactly these bytes ends the bridge
POLL_CYCLES = 64                # how often the socket is looked at, in core clock cycles
FAULTS = ("drop", "bad_fcs", "flip", "duplicate")


@dataclass
class FaultPlan:
    """Which datagrams to spoil: each direction's n-th datagram (from 1) by kind."""

    to_board: dict[int, str] = field(default_factory=dict)
    to_host: dict[int, str] = field(default_factory=dict)

    @classmethod
    def seeded(cls, seed: int, count: int, span: int) -> "FaultPlan":
        """``count`` faults of every kind per direction, spread over the first ``span``
        datagrams (the host's first HELLO is spared)."""
        rng = random.Random(seed)
        plan = cls()
        for table in (plan.to_board, plan.to_host):
            slots = rng.sample(range(3, span), count * len(FAULTS))
            for index, slot in enumerate(slots):
                table[slot] = FAULTS[index % len(FAULTS)]
        return plan

    @classmethod
    def parse(cls, text: str) -> "FaultPlan":
        """``"seed,count,span"`` (``FaultPlan.seeded``), or empty: no faults."""
        if not text.strip():
            return cls()
        seed, count, span = (int(part) for part in text.split(","))
        return cls.seeded(seed, count, span)


class SocketBridge:
    """The loopback socket <-> the testbench's ``Network`` (module docstring)."""

    def __init__(self, tb, plan: FaultPlan):
        self.tb = tb
        self.plan = plan
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.peer = None
        self.stats = {"to_board": 0, "to_host": 0, "job_starts": 0,
                      **{f"{kind}_to_board": 0 for kind in FAULTS},
                      **{f"{kind}_to_host": 0 for kind in FAULTS}}
        self.stopped = False

    async def run(self) -> None:
        """Serve until the host sends ``STOP``."""
        # The helpers end with the test (cocotb ends a test's tasks when it returns).
        cocotb.start_soon(self._answers())
        cocotb.start_soon(self._count_job_starts())
        dut = self.tb.dut
        try:
            while not self.stopped:
                await ClockCycles(dut.aclk, POLL_CYCLES)
                while True:
                    try:
                        data, peer = self.sock.recvfrom(65536)
                    except BlockingIOError:
                        break
                    if data == STOP:
                        self.stopped = True
                        break
                    self.peer = peer
                    self._to_board(data)
        finally:
            self.sock.close()

    def _to_board(self, data: bytes) -> None:
        self.stats["to_board"] += 1
        fault = self.plan.to_board.get(self.stats["to_board"])
        if fault:
            self.stats[f"{fault}_to_board"] += 1
        if fault == "drop":
            return
        if fault == "flip":
            data = _flipped(data)
        packet = self.tb.udp(data)
        self.tb.net.send(packet, corrupt_fcs=fault == "bad_fcs")
        if fault == "duplicate":
            self.tb.net.send(packet)

    async def _answers(self) -> None:
        from scapy.all import UDP
        while True:
            packet = await self.tb.answer(timeout_cycles=1 << 30)
            if self.stopped:
                return
            if packet is None or self.peer is None:
                continue
            data = bytes(packet[UDP].payload)[:packet[UDP].len - 8]
            self.stats["to_host"] += 1
            fault = self.plan.to_host.get(self.stats["to_host"])
            if fault:
                self.stats[f"{fault}_to_host"] += 1
            if fault in ("drop", "bad_fcs"):     # a bad FCS never reaches the host's socket
                continue
            if fault == "flip":
                data = _flipped(data)
            self.sock.sendto(data, self.peer)
            if fault == "duplicate":
                self.sock.sendto(data, self.peer)

    async def _count_job_starts(self) -> None:
        """``ap_start`` writes to CTRL on the accelerator's AXI4-Lite port."""
        dut = self.tb.dut
        ctrl = by_name("CTRL")
        start = next(f.mask for f in ctrl.fields if f.name == "ap_start")
        while True:                 # woken per register write, not per cycle
            await RisingEdge(dut.ctrl_wvalid)
            while True:             # sampled mid-cycle, where the values are settled
                await FallingEdge(dut.aclk)
                if not dut.ctrl_wvalid.value:
                    break
                if dut.ctrl_wready.value:
                    # The link holds AWADDR for the whole write (AW and W offered together).
                    if int(dut.ctrl_awaddr.value) == ctrl.offset and int(dut.ctrl_wdata.value) & start:
                        self.stats["job_starts"] += 1
                    break


def _flipped(data: bytes) -> bytes:
    """``data`` with one bit of a middle byte inverted (past the sync byte)."""
    spoiled = bytearray(data)
    spoiled[len(spoiled) // 2] ^= 0x10
    return bytes(spoiled)
