"""cocotb: the serial link end to end, bit-level UART in, AXI out.

The host side is the real ``host.platforms.link`` code (and ``host.accel.driver`` for the matmul),
run in a cocotb bridge thread; its transport moves bytes through a bit-level model
of the serial line, with the link's timeouts measured in simulated time. Checked
against cocotbext-axi models: an AxiLiteRam stands for the accelerator's registers,
an AxiRam for DDR (both with injectable SLVERR), an AXI monitor for the bursts; the
full system runs a matmul through bridge + accelerator, bit-exact against
``host.accel.golden``.
"""

from __future__ import annotations

import binascii
import logging
import os
import random
import struct
from collections import deque

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, Event, FallingEdge, First, ReadOnly, RisingEdge

from hdl.spec.config import preset
from hdl.spec.link_protocol import Command, Status, encode_request

PRESET = "tiny"
DIVISOR = 8                 # clock cycles per bit: short serial frames in simulation
MAX_PAYLOAD = 64            # small windows so transfers split and bursts are short
FRAME_TIMEOUT = 3000        # cycles (~37 byte times)
CLOCK_NS = 10
LINK_TIMEOUT_S = 400e-6     # simulated seconds (40k cycles)
MODE_ENV = "LINK_SIM_MODE"


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
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteRam, AxiRam
        self.dut = dut
        self.config = preset(PRESET)
        for name in ("m_axi_ctrl", "m_axi_mem", "m_axi_dma"):
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
    """One response frame, parsed and CRC-checked here (independently of host.platforms.link)."""
    data = bytearray()
    waited = 0
    while True:
        while len(data) >= 1 and data[0] != 0x5A:
            del data[0]
        if len(data) >= 6:
            length = struct.unpack_from("<H", data, 4)[0]
            if len(data) >= 8 + length:
                body, crc = bytes(data[1:6 + length]), bytes(data[6 + length:8 + length])
                assert crc == struct.pack("<H", binascii.crc_hqx(body, 0xFFFF)), "bad response CRC"
                cmd, seq, status = body[0], body[1], body[2]
                return cmd, seq, status, body[5:]
        chunk = transport.read(64)
        data += chunk
        if not chunk:
            waited += transport.poll_cycles
            assert waited < deadline_cycles, f"no complete response (got {bytes(data).hex()})"


def exchange(transport: SimTransport, frame: bytes) -> tuple[int, int, int, bytes]:
    transport.write(frame)
    return read_response(transport)


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
        corrupt[14] ^= 0x01                                   # one payload bit flipped
        results["crc"] = exchange(t, bytes(corrupt))
        results["crc_effect"] = tb.mem.read(0x200, 4)
        # A byte lost in the middle: the bridge waits for the rest, then gives up.
        results["lost_byte"] = exchange(t, good[:6] + good[7:])
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
async def matmul_through_link_and_accelerator(dut):
    """host.accel.driver over the link runs matmuls on the RTL; C equals host.accel.golden bit for bit."""
    tb = TB(dut, system=True)
    await tb.reset()
    from host.accel.driver import Driver
    from host.accel.golden import golden_matmul
    from host.platforms.link import LinkMemory, LinkRegisterBus
    from host.accel.pack import pack_weights
    rng = np.random.default_rng(11)
    config = tb.config
    shapes = [(3, 7, 20), (1, 5, config.max_k), (2 * config.rows + 1, 9, 33)]
    outcomes = []

    @bridge
    def host():
        link = tb.link()
        link.hello()
        driver = Driver(LinkRegisterBus(link), LinkMemory(link, 0, 1 << 20), config)
        for index, (m, n, k) in enumerate(shapes):
            extremes = index == 1
            a = (rng.choice(np.array([-128, 127], np.int8), (m, k)) if extremes
                 else rng.integers(-128, 128, (m, k), dtype=np.int8))
            w = (rng.choice(np.array([-128, 127], np.int8), (n, k)) if extremes
                 else rng.integers(-128, 128, (n, k), dtype=np.int8))
            weights = driver.load_matrix(w)
            c = driver.matmul(a, weights)
            outcomes.append((c, golden_matmul(a, pack_weights(w, config.cols)), driver.last_stats))
        return link.frames

    frames = await host()
    assert len(outcomes) == len(shapes)
    for (c, expected, stats), (m, n, k) in zip(outcomes, shapes):
        np.testing.assert_array_equal(c, expected)
        assert stats.busy_cycles > 0 and stats.write_beats > 0
    assert tb.line.framing_errors == 0
    dut._log.info("%d link frames, %d bytes sent to the board", frames, tb.transport.sent)


# -- pytest side ------------------------------------------------------------------------

def _run(system: bool, testcase: str):
    from hdl.link_top import LinkTop
    from sim.link_system import link_sources
    from sim.runner import run_cocotb
    config = preset(PRESET)
    link = LinkTop(config, divisor=DIVISOR, max_payload=MAX_PAYLOAD, frame_timeout=FRAME_TIMEOUT)
    sources, toplevel = link_sources(config, link, system=system)
    run_cocotb(sources=sources, toplevel=toplevel, test_module="sim.test_uart_bridge", testcase=testcase,
               tag=testcase)


@pytest.mark.xdist_group("uart_bridge")
def test_bridge_registers_and_memory():
    _run(False, "bridge_moves_registers_and_memory")


@pytest.mark.xdist_group("uart_bridge")
def test_bridge_bad_frames():
    _run(False, "bridge_answers_bad_frames_with_errors")


@pytest.mark.xdist_group("link_system")
def test_matmul_through_the_link():
    _run(True, "matmul_through_link_and_accelerator")
