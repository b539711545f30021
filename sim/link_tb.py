"""The cocotb testbench of the serial link: a bit-level serial line, the AXI models, a runner.

``TB`` drives ``systole_link`` (the bridge alone: an AxiLiteRam stands for the
accelerator's registers, an AxiRam for DDR, both with injectable SLVERR) or
``link_system`` (bridge + accelerator sharing one AxiRam, as the SmartConnect + MIG
look from both masters). ``SimTransport`` is a pyserial-like transport through the
bit-level ``SerialLine``, for the real ``host.platforms.link`` code run in a cocotb
``bridge`` thread; the link's timeouts are measured in simulated time. ``BurstLog``
records every AXI4 burst of the bridge. ``run_link_tests`` builds the design and
runs every cocotb test of a module on it.
"""

from __future__ import annotations

import logging
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.task import resume
from cocotb.triggers import ClockCycles, Event, FallingEdge, First, ReadOnly, RisingEdge

from hdl.spec.config import preset
from hdl.spec.link_protocol import CRC_BYTES, RESPONSE_LAYOUT, RESPONSE_SYNC, SYNC_BYTES, decode_response

__all__ = ["PRESET", "DIVISOR", "MAX_PAYLOAD", "FRAME_TIMEOUT", "SerialLine", "SimTransport", "BurstLog",
           "TB", "read_response", "exchange", "run_link_tests"]

PRESET = "tiny"
DIVISOR = 4                 # clock cycles per bit: the fastest line UartRx takes (short frames)
MAX_PAYLOAD = 64            # small windows so transfers split and bursts are short
FRAME_TIMEOUT = 3000        # cycles (~37 byte times)
CLOCK_NS = 10
LINK_TIMEOUT_S = 400e-6     # simulated seconds (40k cycles)


class SerialLine:
    """The host end of the UART: drives ``uart_rxd`` and decodes ``uart_txd`` bit by bit."""

    def __init__(self, dut, divisor: int):
        self.dut, self.divisor = dut, divisor
        self.to_dut: deque[int] = deque()
        self.from_dut: deque[int] = deque()
        self.have_output = Event()
        self.have_input = Event()
        self.framing_errors = 0
        dut.uart_rxd.value = 1
        cocotb.start_soon(self._send())
        cocotb.start_soon(self._receive())

    async def _send(self):
        while True:
            if not self.to_dut:
                self.have_output.clear()
                await self.have_output.wait()
            byte = self.to_dut.popleft()
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                self.dut.uart_rxd.value = bit
                await ClockCycles(self.dut.aclk, self.divisor)

    async def _receive(self):
        while True:
            await FallingEdge(self.dut.uart_txd)
            await ClockCycles(self.dut.aclk, self.divisor // 2)
            if self.dut.uart_txd.value != 0:
                continue                                   # glitch, not a start bit
            byte = 0
            for i in range(8):
                await ClockCycles(self.dut.aclk, self.divisor)
                byte |= int(self.dut.uart_txd.value) << i
            await ClockCycles(self.dut.aclk, self.divisor)
            if self.dut.uart_txd.value != 1:
                self.framing_errors += 1
            self.from_dut.append(byte)
            self.have_input.set()


class SimTransport:
    """pyserial-like transport into the simulation, for use from a ``bridge`` thread.

    ``read`` waits (in simulated time) up to ``poll_cycles`` for bytes; ``now`` is the
    simulated time in seconds, so the link's timeouts are deterministic.
    """

    def __init__(self, dut, line: SerialLine, poll_cycles: int = 400):
        self.dut, self.line, self.poll_cycles = dut, line, poll_cycles
        self._now = 0.0
        self.sent = 0

    def now(self) -> float:
        return self._now

    def write(self, data: bytes) -> int:
        resume(self._write)(bytes(data))
        self.sent += len(data)
        return len(data)

    async def _write(self, data: bytes):
        self.line.to_dut.extend(data)
        self.line.have_output.set()

    def read(self, size: int) -> bytes:
        return resume(self._read)(size)

    async def _read(self, size: int) -> bytes:
        if not self.line.from_dut:
            self.line.have_input.clear()
            await First(self.line.have_input.wait(), ClockCycles(self.dut.aclk, self.poll_cycles))
        out = bytes(self.line.from_dut.popleft() for _ in range(min(size, len(self.line.from_dut))))
        self._now = get_sim_time("ns") * 1e-9
        return out

    def reset_input_buffer(self) -> None:
        resume(self._clear)()

    async def _clear(self):
        self.line.from_dut.clear()

    def wait_cycles(self, cycles: int) -> None:
        resume(self._wait)(cycles)

    async def _wait(self, cycles: int):
        await ClockCycles(self.dut.aclk, cycles)
        self._now = get_sim_time("ns") * 1e-9


class BurstLog:
    """Records every AW and AR handshake of an AXI4 master port: (addr, beats)."""

    def __init__(self, dut, prefix: str):
        self.writes: list[tuple[int, int]] = []
        self.reads: list[tuple[int, int]] = []
        cocotb.start_soon(self._watch(dut, prefix, "aw", self.writes))
        cocotb.start_soon(self._watch(dut, prefix, "ar", self.reads))

    @staticmethod
    async def _watch(dut, prefix, channel, log):
        valid, ready = getattr(dut, f"{prefix}_{channel}valid"), getattr(dut, f"{prefix}_{channel}ready")
        addr, length = getattr(dut, f"{prefix}_{channel}addr"), getattr(dut, f"{prefix}_{channel}len")
        # Sleep while VALID is low: the bridge raises it once per burst.
        while True:
            await ReadOnly()
            if valid.value == 1 and ready.value == 1:
                log.append((int(addr.value), int(length.value) + 1))
            if valid.value == 1:
                await RisingEdge(dut.aclk)
            else:
                await RisingEdge(valid)


def _with_faults(ram, fault: dict):
    """Make ``ram`` answer SLVERR for accesses overlapping ``fault['range']`` (if set)."""
    def overlaps(address, length):
        window = fault.get("range")
        return window is not None and address < window[1] and address + length > window[0]

    async def read(address, length):
        if overlaps(address, length):
            raise IOError(f"injected read fault at {address:#x}")
        return ram.read(address % ram.size, length)

    async def write(address, data):
        if overlaps(address, len(data)):
            raise IOError(f"injected write fault at {address:#x}")
        ram.write(address % ram.size, data)

    ram.read_if._read = read
    ram.write_if._write = write


class TB:
    """Clock, reset, serial line, and AXI models for ``systole_link`` or ``link_system``."""

    def __init__(self, dut, *, system: bool):
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteRam, AxiRam, AxiRamRead, AxiReadBus
        self.dut = dut
        self.config = preset(PRESET)
        for name in ("m_axi_ctrl", "m_axi_mem", *self.config.weight_masters):
            logging.getLogger(f"cocotb.{dut._name}.{name}").setLevel(logging.WARNING)
        cocotb.start_soon(Clock(dut.aclk, CLOCK_NS, unit="ns").start())
        self.line = SerialLine(dut, DIVISOR)
        self.transport = SimTransport(dut, self.line)
        self.mem_fault: dict = {}
        self.reg_fault: dict = {}
        self.mem = AxiRam(AxiBus.from_prefix(dut, "m_axi_mem"), dut.aclk, dut.aresetn,
                          reset_active_level=False, size=1 << 20)
        _with_faults(self.mem, self.mem_fault)
        self.mem_log = BurstLog(dut, "m_axi_mem")
        if system:
            # The SmartConnect + MIG as both masters see them: one memory, two ports.
            self.dma = AxiRam(AxiBus.from_prefix(dut, "m_axi_dma"), dut.aclk, dut.aresetn,
                              reset_active_level=False, size=1 << 20, mem=self.mem.mem)
            self.weight_ports = [AxiRamRead(AxiReadBus.from_prefix(dut, master), dut.aclk, dut.aresetn,
                                            reset_active_level=False, size=1 << 20, mem=self.mem.mem)
                                 for master in self.config.weight_masters[1:]]
        else:
            self.regs = AxiLiteRam(AxiLiteBus.from_prefix(dut, "m_axi_ctrl"), dut.aclk, dut.aresetn,
                                   reset_active_level=False, size=256)
            _with_faults(self.regs, self.reg_fault)
            dut.irq.value = 0

    async def reset(self):
        self.dut.aresetn.value = 0
        await ClockCycles(self.dut.aclk, 5)
        self.dut.aresetn.value = 1
        await ClockCycles(self.dut.aclk, 5)

    def link(self, **kwargs):
        from host.platforms.link import SerialLink
        return SerialLink(self.transport, timeout_s=LINK_TIMEOUT_S, name="sim link", **kwargs)


def read_response(transport: SimTransport, deadline_cycles: int = 20000) -> tuple[int, int, int, bytes]:
    """One response frame, hunted for in the byte stream and checked by ``decode_response``
    (the protocol description, not ``host.platforms.link``): (cmd, seq, status, payload)."""
    data = bytearray()
    header_end = SYNC_BYTES + RESPONSE_LAYOUT.size
    waited = 0
    while True:
        while data and data[0] != RESPONSE_SYNC:
            del data[0]
        if len(data) >= header_end:
            frame_end = header_end + RESPONSE_LAYOUT.unpack(data[SYNC_BYTES:])["length"] + CRC_BYTES
            if len(data) >= frame_end:
                fields, payload = decode_response(bytes(data[:frame_end]))
                return fields["cmd"], fields["seq"], fields["status"], payload
        chunk = transport.read(64)
        data += chunk
        if not chunk:
            waited += transport.poll_cycles
            assert waited < deadline_cycles, f"no complete response (got {bytes(data).hex()})"


def exchange(transport: SimTransport, frame: bytes) -> tuple[int, int, int, bytes]:
    """Send ``frame`` and return the response to it (see ``read_response``)."""
    transport.write(frame)
    return read_response(transport)


def run_link_tests(test_module: str, *, system: bool) -> None:
    """Build ``systole_link`` (alone, or in ``link_system`` with the accelerator when
    ``system``) and run every cocotb test of ``test_module`` on it."""
    from hdl.link_top import LinkTop
    from sim.link_system import link_sources
    from sim.runner import run_cocotb
    config = preset(PRESET)
    link = LinkTop(config, divisor=DIVISOR, max_payload=MAX_PAYLOAD, frame_timeout=FRAME_TIMEOUT)
    sources, toplevel = link_sources(config, link, system=system)
    run_cocotb(sources=sources, toplevel=toplevel, test_module=test_module)
