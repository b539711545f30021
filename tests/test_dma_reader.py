"""DmaReader against the AxiMemory model (Amaranth simulator).

Every byte is checked against the memory image, every AR against the bursts of
``hdl.spec.dma`` (commands at every bus-width offset across a 4 KiB edge among
them), outstanding bursts and FIFO credit against the config, and error and abort
endings against the contract in hdl/README.md.
"""

import zlib

import pytest

from gen.bench_dma import measure_read
from hdl.axi import RESP_DECERR, RESP_SLVERR, cache_prot
from hdl.spec.config import preset
from hdl.spec.dma import bursts
from hdl.dma_reader import DmaReader
from sim.dma_block_tb import MEM_BYTES, DmaBlockTB
from sim.dma_traffic import Stalls, edge_commands, planned_bursts, random_commands


class TB(DmaBlockTB):
    """A DmaReader, its memory, a command producer and a data consumer."""

    def __init__(self, config, *, read_latency=6, stall="none", errors=(), seed=0, base=0,
                 mem_bytes=MEM_BYTES):
        super().__init__(DmaReader(config), config, channels=("ar", "r"), stall=stall, seed=seed,
                         base=base, mem_bytes=mem_bytes, read_latency=read_latency, errors=errors)
        self.consumer = Stalls(stall, seed=seed + 11)
        self.received = []           # (data, last)
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

    async def consume(self, ctx):
        """Background: take beats with consumer stalls, track the read credit, count cycles."""
        dut = self.dut
        consumed = 0
        ctx.set(dut.data.ready, 0)
        async for _, _, valid, ready, data, last in ctx.tick().sample(
                dut.data.valid, dut.data.ready, dut.data.p.data, dut.data.p.last):
            self.count_cycle()
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

    def run(self, testbench):
        super().run(testbench, background=[self.consume])


def stream(tb, commands, coherent=None):
    """Read ``commands`` (with their ``coherent`` bits, default 0): every byte arrives in
    order, then nothing more, no error; the ARs are the commands' bursts as
    ``hdl.spec.dma`` plans them."""
    total = sum(beats for _, beats in commands)

    async def testbench(ctx):
        await tb.send_commands(ctx, commands, coherent)
        while len(tb.received) < total:
            await ctx.tick()
        await tb.wait_idle(ctx)
        for _ in range(10):          # nothing more may come out
            assert not ctx.get(tb.dut.data.valid)
            await ctx.tick()
        assert not ctx.get(tb.dut.error)

    tb.run(testbench)
    assert tb.received == tb.expected(commands)
    assert [(b.addr, b.beats) for b in tb.mem.ars] == planned_bursts(tb.config, commands)
    assert tb.mem.quiescent()


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
    stream(tb, random_commands(config, tb.rng, tb.base, MEM_BYTES, 12, limit))


@pytest.mark.parametrize("config_name,stall", [("tiny", "none"), ("small", "random")])
def test_reader_splits_commands_at_every_offset_across_an_edge(config_name, stall):
    """A 2-beat and a burst-plus-one command at every bus-width offset from a full
    burst below a 4 KiB edge to one beat past it (``edge_commands``)."""
    config = preset(config_name)
    commands = edge_commands(config, base=0)
    end = max(addr + beats * config.bus_bytes for addr, beats in commands)
    tb = TB(config, read_latency=7, stall=stall, seed=zlib.crc32(f"edge{config_name}{stall}".encode()),
            mem_bytes=end)
    stream(tb, commands)


@pytest.mark.parametrize("config_name", ["tiny", "small"])
def test_reader_marks_the_bursts_of_coherent_commands(config_name):
    """Every burst carries its command's attributes: the I/O coherent pair for a coherent
    command in a ``coherent_io`` build (tiny), normal non-cacheable otherwise (and every
    burst in small, whatever the command says); commands split at a 4 KiB edge."""
    config = preset(config_name)
    commands = edge_commands(config, base=0)[:12]
    coherent = [index % 3 != 1 for index in range(len(commands))]
    end = max(addr + beats * config.bus_bytes for addr, beats in commands)
    tb = TB(config, read_latency=5, stall="random", seed=31, mem_bytes=end)
    stream(tb, commands, coherent)
    want = [(addr, beats, *cache_prot(flag and config.coherent_io))
            for (a, b), flag in zip(commands, coherent) for addr, beats in bursts(config, a, b)]
    assert [(addr, beats, cache, prot) for ch, addr, beats, cache, prot in tb.mem.bursts] == want
    assert {ch for ch, *_ in tb.mem.bursts} == {"AR"}
    assert any(c != cache_prot(False)[0] for _, _, _, c, _ in tb.mem.bursts) == config.coherent_io


def test_reader_keeps_max_outstanding_in_flight():
    """Short bursts against a long latency: the limit is reached, never exceeded."""
    config = preset("small")
    tb = TB(config, read_latency=48, seed=7)
    commands = [(0x40 * i * 8, 2) for i in range(40)]

    async def testbench(ctx):
        await tb.send_commands(ctx, commands)
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
        await tb.send_commands(ctx, commands)
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
    faulting = next(addr for addr, beats in planned_bursts(config, commands)
                    if addr < 0x2108 and 0x2100 < addr + beats * config.bus_bytes)
    observed = {}

    async def testbench(ctx):
        dut = tb.dut
        await tb.send_commands(ctx, commands)
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
        await tb.send_commands(ctx, [(0x6000, 40)])
        while len(tb.received) < observed["restart"] + 40:
            await ctx.tick()
        await tb.wait_idle(ctx)

    tb.run(testbench)
    assert tb.mem.first_read_error == faulting
    # At most the AR already presented when the error arrived is taken later.
    assert len(tb.mem.ars) - len(bursts(config, 0x6000, 40)) <= observed["ars_at_error"] + 1
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
        await tb.send_commands(ctx, commands[:1])
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
        await tb.send_commands(ctx, commands[1:])
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
        tb.cmd_gaps = Stalls("none")   # offered in the very cycle abort falls
        await tb.send_commands(ctx, [(0x5008, 77)])
        while len(tb.received) < observed["restart"] + 77:
            await ctx.tick()
        await tb.wait_idle(ctx)

    tb.run(testbench)
    assert observed["ars"] == len(tb.mem.ars) - len(bursts(config, 0x5008, 77))
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
