"""DmaReader against the AxiMemory model (Amaranth simulator).

Every byte is checked against the memory image, every AR against the greedy
4 KiB/max_burst split, outstanding bursts and FIFO credit against the config,
and error and abort endings against the contract in hdl/README.md.
"""

import random
import zlib

import pytest
from amaranth.sim import Simulator

from gen.bench_dma import measure_read
from hdl.axi import RESP_DECERR, RESP_SLVERR
from hdl.spec.config import preset
from hdl.dma_reader import DmaReader
from sim.axi_mem import AxiMemory, Stalls, random_commands, reference_bursts

MEM_BYTES = 48 * 1024
BUDGET = 40_000          # cycles; a hang fails instead of spinning forever


class TB:
    """A DmaReader, its memory, and a command producer / data consumer."""

    def __init__(self, config, *, read_latency=6, stall="none", errors=(), seed=0, base=0):
        self.config = config
        self.rng = random.Random(seed)
        self.dut = DmaReader(config)
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-8)
        self.base = base
        self.image = bytes(self.rng.randbytes(MEM_BYTES))
        self.mem = AxiMemory(
            self.dut.bus, config, bytearray(self.image), base=base, read_latency=read_latency,
            stalls={ch: Stalls(stall, seed=seed + i) for i, ch in enumerate(("ar", "r"))},
            errors=errors, seed=seed)
        self.mem.add_to(self.sim)
        self.producer = Stalls(stall, seed=seed + 10)
        self.consumer = Stalls(stall, seed=seed + 11)
        self.received = []           # (data, last)
        self.cycles = 0
        self.max_credit_in_use = 0

    def beat(self, addr):
        offset = addr - self.base
        return int.from_bytes(self.image[offset:offset + self.config.bus_bytes], "little")

    def expected(self, commands):
        beats = []
        for addr, count in commands:
            for i in range(count):
                beats.append((self.beat(addr + i * self.config.bus_bytes), int(i == count - 1)))
        return beats

    async def send(self, ctx, commands):
        """Offer each command, with producer gaps; returns once all are taken."""
        dut = self.dut
        for addr, beats in commands:
            while self.producer.stall():
                ctx.set(dut.cmd.valid, 0)
                await ctx.tick()
            ctx.set(dut.cmd.p.addr, addr)
            ctx.set(dut.cmd.p.beats, beats)
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)

    async def consume(self, ctx):
        """Background: take beats with consumer stalls, track the read credit."""
        dut = self.dut
        consumed = 0
        ctx.set(dut.data.ready, 0)
        async for _, _, valid, ready, data, last in ctx.tick().sample(
                dut.data.valid, dut.data.ready, dut.data.p.data, dut.data.p.last):
            self.cycles += 1
            if self.cycles > BUDGET:
                raise AssertionError(f"no progress after {BUDGET} cycles")
            if valid and ready:
                self.received.append((data, last))
                consumed += 1
            # Beats requested and not yet consumed must fit the read FIFO.
            in_use = self.mem.ar_beats - consumed - self.discarded
            self.max_credit_in_use = max(self.max_credit_in_use, in_use)
            assert in_use <= self.config.read_fifo_beats, (
                f"{in_use} beats requested but unconsumed exceed the FIFO "
                f"({self.config.read_fifo_beats})")
            ctx.set(dut.data.ready, not self.consumer.stall())

    discarded = 0                    # beats dropped by abort/error (credit returned)

    async def wait_idle(self, ctx, budget=5000):
        for _ in range(budget):
            if ctx.get(self.dut.idle):
                return
            await ctx.tick()
        raise AssertionError(f"DmaReader not idle after {budget} cycles")

    def run(self, testbench):
        self.sim.add_testbench(self.consume, background=True)
        self.sim.add_testbench(testbench)
        self.sim.run()


def check_ars(tb, commands):
    expected = [burst for addr, beats in commands
                for burst in reference_bursts(tb.config, addr, beats)]
    assert [(b.addr, b.beats) for b in tb.mem.ars] == expected


@pytest.mark.parametrize("config_name,stall,latency", [
    ("tiny", "none", 1),
    ("tiny", "random", 9),
    ("small", "periodic", 5),
    ("small", "lazy", 12),
    ("small", "random", 33),
    ("kv260", "random", 40),
])
def test_reader_streams_every_byte(config_name, stall, latency):
    config = preset(config_name)
    tb = TB(config, read_latency=latency, stall=stall, seed=zlib.crc32(f"{config_name}{stall}".encode()),
            base=0xF0_0000_0000 if config.addr_width == 40 else 0x8000_0000)
    limit = 3 * config.max_burst if config.max_burst < 64 else 600
    commands = random_commands(config, tb.rng, tb.base, MEM_BYTES, 12, limit)
    total = sum(beats for _, beats in commands)

    async def testbench(ctx):
        await tb.send(ctx, commands)
        while len(tb.received) < total:
            await ctx.tick()
        await tb.wait_idle(ctx)
        for _ in range(10):          # nothing more may come out
            assert not ctx.get(tb.dut.data.valid)
            await ctx.tick()
        assert not ctx.get(tb.dut.error)

    tb.run(testbench)
    assert tb.received == tb.expected(commands)
    check_ars(tb, commands)
    assert tb.mem.quiescent()


def test_reader_keeps_max_outstanding_in_flight():
    """Short bursts against a long latency: the limit is reached, never exceeded."""
    config = preset("small")
    tb = TB(config, read_latency=48, seed=7)
    commands = [(0x40 * i * 8, 2) for i in range(40)]

    async def testbench(ctx):
        await tb.send(ctx, commands)
        while len(tb.received) < 80:
            await ctx.tick()
        await tb.wait_idle(ctx)

    tb.run(testbench)
    assert tb.received == tb.expected(commands)
    assert tb.mem.max_reads_in_flight == config.max_outstanding


def test_reader_credit_bounds_a_slow_consumer():
    """A consumer taking 1 beat in 4: the FIFO credit limit is reached, never exceeded."""
    config = preset("small")
    tb = TB(config, read_latency=3, seed=8)
    tb.consumer = Stalls("sparse", period=4)
    commands = [(0x1000, 300)]

    async def testbench(ctx):
        await tb.send(ctx, commands)
        while len(tb.received) < 300:
            await ctx.tick()
        await tb.wait_idle(ctx)

    tb.run(testbench)
    assert tb.received == tb.expected(commands)
    assert tb.max_credit_in_use == config.read_fifo_beats


@pytest.mark.parametrize("resp", [RESP_SLVERR, RESP_DECERR])
def test_reader_error_ends_cleanly(resp):
    config = preset("small")
    tb = TB(config, read_latency=20, stall="random", seed=resp,
            errors=[(0x2100, 0x2108, resp)])
    commands = [(0x1F00, 20), (0x2000, 200), (0x4000, 50)]
    bursts = [b for addr, beats in commands for b in reference_bursts(config, addr, beats)]
    faulting = next(addr for addr, beats in bursts
                    if addr < 0x2108 and 0x2100 < addr + beats * config.bus_bytes)
    observed = {}

    async def testbench(ctx):
        dut = tb.dut
        await tb.send(ctx, commands)
        while not ctx.get(dut.error):
            await ctx.tick()
        observed["ars_at_error"] = len(tb.mem.ars)
        assert ctx.get(dut.error_addr) == faulting
        # clear is ignored until the reader is idle
        assert not ctx.get(dut.idle)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert ctx.get(dut.error)
        await tb.wait_idle(ctx)
        assert tb.mem.quiescent()
        assert ctx.get(dut.error) and ctx.get(dut.error_addr) == faulting
        tb.discarded = tb.mem.ar_beats - len(tb.received)
        observed["received_at_idle"] = len(tb.received)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert not ctx.get(dut.error)
        # A new command after the error is served from scratch.
        observed["restart"] = len(tb.received)
        await tb.send(ctx, [(0x6000, 40)])
        while len(tb.received) < observed["restart"] + 40:
            await ctx.tick()
        await tb.wait_idle(ctx)

    tb.run(testbench)
    assert tb.mem.first_read_error == faulting
    # At most the AR already presented when the error arrived is taken later.
    assert len(tb.mem.ars) - len(reference_bursts(config, 0x6000, 40)) <= observed["ars_at_error"] + 1
    before = tb.received[:observed["received_at_idle"]]
    assert before == tb.expected(commands)[:len(before)]
    # Nothing from the faulting beat on reaches the consumer.
    assert len(before) <= 20 + (0x2100 - 0x2000) // config.bus_bytes
    assert tb.received[observed["restart"]:] == tb.expected([(0x6000, 40)])


@pytest.mark.parametrize("pulse", [False, True], ids=["level", "pulse"])
def test_reader_abort_mid_transfer_then_restart(pulse):
    """Abort held until idle, or a one-cycle pulse: either way nothing stale leaks out."""
    config = preset("small")
    tb = TB(config, read_latency=30, stall="random", seed=99)
    tb.mem.stalls["ar"] = Stalls("sparse", period=5)
    commands = [(0x0000, 500), (0x3000, 100)]
    observed = {}

    async def testbench(ctx):
        dut = tb.dut
        await tb.send(ctx, commands[:1])
        while len(tb.received) < 37:
            await ctx.tick()
        # Abort while an AR waits for ARREADY: it must stay presented.
        while not (ctx.get(dut.bus.arvalid) and not ctx.get(dut.bus.arready)):
            await ctx.tick()
        ctx.set(dut.abort, 1)
        ars_at_abort = len(tb.mem.ars)
        if pulse:
            await ctx.tick()
            ctx.set(dut.abort, 0)
        # A command offered during abort is dropped.
        await tb.send(ctx, commands[1:])
        await tb.wait_idle(ctx)
        assert tb.mem.quiescent()
        assert len(tb.mem.ars) <= ars_at_abort + 1
        assert not ctx.get(dut.error)
        for _ in range(20):
            assert ctx.get(dut.idle) and not ctx.get(dut.data.valid)
            await ctx.tick()
        observed["ars"] = len(tb.mem.ars)
        tb.discarded = tb.mem.ar_beats - len(tb.received)
        ctx.set(dut.abort, 0)
        observed["restart"] = len(tb.received)
        tb.producer = Stalls("none")   # offered in the very cycle abort falls
        await tb.send(ctx, [(0x5008, 77)])
        while len(tb.received) < observed["restart"] + 77:
            await ctx.tick()
        await tb.wait_idle(ctx)

    tb.run(testbench)
    assert observed["ars"] == len(tb.mem.ars) - len(reference_bursts(config, 0x5008, 77))
    prefix = tb.received[:observed["restart"]]
    assert prefix == tb.expected(commands[:1])[:len(prefix)]
    assert tb.received[observed["restart"]:] == tb.expected([(0x5008, 77)])
    assert tb.mem.quiescent()


@pytest.mark.parametrize("config_name,latency", [
    ("kv260", 32),
    ("kv260", 64),
    ("small", preset("small").read_fifo_beats - preset("small").max_burst - 4),
])
def test_reader_sustains_one_beat_per_cycle(config_name, latency):
    """The decode roofline: no bubbles in a long stream while the latency fits the credit."""
    result = measure_read(preset(config_name), latency, beats=1500)
    assert result.steady >= 0.99, result
