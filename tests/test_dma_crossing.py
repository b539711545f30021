"""DmaCrossing with a real DmaReader / DmaWriter behind it, on two asynchronous clocks
(Amaranth simulator, ``sim.axi_mem.AxiMemory`` on the block's clock).

Each test runs at three clock ratios: the block's clock faster than the core's, slower,
and equal but out of phase. The checks are the DMA contract of hdl/README.md seen from
the core's side: every byte in order, errors with the failing burst's address, an abort
held until idle leaving nothing stale behind, ``clear``. On every core cycle the
crossing's ``idle`` is held to the truth: when it reads 1 the block is idle and nothing
the core pushed is still on its way.
"""

import random

import pytest
from amaranth.hdl import DomainRenamer, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from hdl.axi import AXI4ReadSignature, AXI4WriteSignature, RESP_SLVERR
from hdl.dma_crossing import DmaCrossing, connect_contract, contract_signature
from hdl.dma_reader import DmaReader
from hdl.dma_writer import DmaWriter
from hdl.spec.config import preset
from sim.axi_mem import AxiMemory
from sim.dma_traffic import Stalls

CONFIG = preset("small")
MEM_BYTES = 32 * 1024
BUDGET = 60_000          # core cycles before a hang fails the test
# (core period, block period, block phase) in ns: block faster, slower, equal out of phase.
CLOCKS = {"fast-ports": (10.0, 7.3, 0.0), "slow-ports": (10.0, 13.1, 0.0), "same-rate": (10.0, 10.0, 3.7)}


class Crossed(wiring.Component):
    """A DMA block in domain ``axi`` behind a ``DmaCrossing``: the contract in ``sync``
    (as the block's own members), the AXI bus in ``axi``."""

    def __init__(self, config, direction):
        self.config, self.direction = config, direction
        self.block = DmaReader(config) if direction == "read" else DmaWriter(config)
        bus = AXI4ReadSignature(config) if direction == "read" else AXI4WriteSignature(config)
        super().__init__({**contract_signature(config, direction).members, "bus": Out(bus)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.crossing = crossing = DmaCrossing(self.config, self.direction, domain="axi")
        m.submodules.block = DomainRenamer({"sync": "axi"})(self.block)
        connect_contract(m, self.config, self.direction, crossing.block, self.block)
        connect_contract(m, self.config, self.direction, wiring.flipped(self), crossing.core)
        wiring.connect(m, wiring.flipped(self.bus), self.block.bus)
        return m


class TB:
    """Simulator, both clocks, the memory on the block's clock, the idle check."""

    def __init__(self, direction, clocks, *, seed=0, errors=(), stall="random", latency=12):
        core_ns, block_ns, phase_ns = CLOCKS[clocks]
        self.rng = random.Random(seed)
        self.dut = Crossed(CONFIG, direction)
        self.sim = Simulator(self.dut)
        self.sim.add_clock(core_ns * 1e-9)
        self.sim.add_clock(block_ns * 1e-9, phase=phase_ns * 1e-9, domain="axi")
        self.image = bytes(self.rng.randbytes(MEM_BYTES))
        channels = ("ar", "r") if direction == "read" else ("aw", "w", "b")
        self.mem = AxiMemory(self.dut.bus, CONFIG, bytearray(self.image), read_latency=latency,
                             write_latency=latency // 2, errors=list(errors), domain="axi",
                             stalls={ch: Stalls(stall, seed=seed + i) for i, ch in enumerate(channels)})
        self.mem.add_to(self.sim)
        self.gaps = Stalls(stall, seed=seed + 10)
        self.received = []
        self.idle_seen = 0

    async def watch(self, ctx):
        """Every core cycle: the crossing's idle never runs ahead of the block."""
        dut, block = self.dut, self.dut.block
        cycles = 0
        async for _ in ctx.tick():
            cycles += 1
            assert cycles < BUDGET, f"no progress after {BUDGET} core cycles"
            if ctx.get(dut.idle):
                self.idle_seen += 1
                assert ctx.get(block.idle), "idle reported while the block is busy"
                assert not ctx.get(block.cmd.valid), "idle reported with a command on its way"
                assert self.mem.quiescent(), "idle reported with a burst outstanding"

    async def consume(self, ctx):
        """Background: take a reader's beats with random stalls, none during an abort
        (as the controller's ABORT state): the crossing must drop them itself."""
        dut = self.dut
        async for _, _, valid, ready, data, last, abort in ctx.tick().sample(
                dut.data.valid, dut.data.ready, dut.data.p.data, dut.data.p.last, dut.abort):
            assert not (valid and abort), "a beat offered during an abort"
            if valid and ready:
                self.received.append((data, last))
            ctx.set(dut.data.ready, not abort and not self.gaps.stall())

    async def offer(self, ctx, stream, payloads):
        for payload in payloads:
            while self.gaps.stall():
                ctx.set(stream.valid, 0)
                await ctx.tick()
            for name, value in payload.items():
                ctx.set(getattr(stream.p, name), value)
            ctx.set(stream.valid, 1)
            await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)

    async def send_commands(self, ctx, commands):
        await self.offer(ctx, self.dut.cmd, [{"addr": a, "beats": b} for a, b in commands])

    async def wait_idle(self, ctx, budget=4000):
        for _ in range(budget):
            if ctx.get(self.dut.idle):
                return
            await ctx.tick()
        raise AssertionError(f"not idle after {budget} core cycles")

    async def pulse(self, ctx, signal):
        ctx.set(signal, 1)
        await ctx.tick()
        ctx.set(signal, 0)

    def expected(self, commands):
        bb = CONFIG.bus_bytes
        return [(int.from_bytes(self.image[addr + i * bb:addr + (i + 1) * bb], "little"), int(i == n - 1))
                for addr, n in commands for i in range(n)]

    def run(self, bench, reads=True):
        self.sim.add_testbench(self.watch, background=True)
        if reads:
            self.sim.add_testbench(self.consume, background=True)
        self.sim.add_testbench(bench)
        self.sim.run()


@pytest.mark.parametrize("clocks", CLOCKS)
def test_reads_cross_in_order(clocks):
    """Random commands: every beat arrives once, in order; idle follows, and holds."""
    tb = TB("read", clocks, seed=len(clocks))
    commands = [(tb.rng.randrange(0, MEM_BYTES // 2, 8), tb.rng.randrange(1, 90)) for _ in range(12)]
    total = sum(n for _, n in commands)

    async def bench(ctx):
        await tb.send_commands(ctx, commands)
        while len(tb.received) < total:
            await ctx.tick()
        await tb.wait_idle(ctx)
        for _ in range(30):
            assert ctx.get(tb.dut.idle) and not ctx.get(tb.dut.data.valid)
            await ctx.tick()

    tb.run(bench)
    assert tb.received == tb.expected(commands)
    assert tb.idle_seen >= 30


@pytest.mark.parametrize("clocks", CLOCKS)
def test_read_error_abort_clear_restart(clocks):
    """A failing burst: error with its address; abort held until idle drops every beat
    in flight; clear; then a new stream is exact."""
    tb = TB("read", clocks, seed=7, errors=[(0x2100, 0x2108, RESP_SLVERR)])
    commands = [(0x1F00, 20), (0x2000, 200)]
    faulting = next(b.addr for b in _bursts(commands) if b.addr < 0x2108 and 0x2100 < b.end)
    restart = [(0x5008, 70)]
    seen = {}

    async def bench(ctx):
        dut = tb.dut
        await tb.send_commands(ctx, commands)
        while not ctx.get(dut.error):
            await ctx.tick()
        assert ctx.get(dut.error_addr) == faulting
        ctx.set(dut.abort, 1)
        await tb.wait_idle(ctx)
        ctx.set(dut.abort, 0)
        assert ctx.get(dut.error)
        await tb.pulse(ctx, dut.clear)
        for _ in range(30):         # cleared at once, and no old snapshot brings it back
            assert not ctx.get(dut.error)
            await ctx.tick()
        seen["restart"] = len(tb.received)
        await tb.send_commands(ctx, restart)
        while len(tb.received) < seen["restart"] + 70:
            await ctx.tick()
        await tb.wait_idle(ctx)
        assert not ctx.get(dut.error)

    tb.run(bench)
    before = tb.received[:seen["restart"]]
    assert before == tb.expected(commands)[:len(before)]
    assert len(before) <= 20 + (0x2100 - 0x2000) // CONFIG.bus_bytes   # none from the failing burst on
    assert tb.received[seen["restart"]:] == tb.expected(restart)
    assert tb.mem.first_read_error == faulting


@pytest.mark.parametrize("clocks", CLOCKS)
def test_read_abort_mid_stream_leaves_nothing_stale(clocks):
    """Abort after 37 beats of a long command; after idle the next job's beats are its own."""
    tb = TB("read", clocks, seed=3, latency=30)
    first, second = [(0x0000, 500)], [(0x3010, 90)]
    seen = {}

    async def bench(ctx):
        dut = tb.dut
        await tb.send_commands(ctx, first)
        while len(tb.received) < 37:
            await ctx.tick()
        ctx.set(dut.abort, 1)
        await tb.wait_idle(ctx)
        ctx.set(dut.abort, 0)
        assert not ctx.get(dut.error)
        seen["restart"] = len(tb.received)
        await tb.send_commands(ctx, second)
        while len(tb.received) < seen["restart"] + 90:
            await ctx.tick()
        await tb.wait_idle(ctx)

    tb.run(bench)
    before = tb.received[:seen["restart"]]
    assert len(before) < 500 and before == tb.expected(first)[:len(before)]
    assert tb.received[seen["restart"]:] == tb.expected(second)


def _writes(tb, commands):
    bb = CONFIG.bus_bytes
    return [(addr + i * bb, tb.rng.getrandbits(8 * bb), tb.rng.getrandbits(bb) | 1)
            for addr, n in commands for i in range(n)]


def _apply(memory, beats):
    bb = CONFIG.bus_bytes
    for addr, data, strb in beats:
        raw = data.to_bytes(bb, "little")
        for lane in range(bb):
            if strb >> lane & 1:
                memory[addr + lane] = raw[lane]


@pytest.mark.parametrize("clocks", CLOCKS)
def test_writes_cross_in_order(clocks):
    """Commands and strobed beats from the core: the memory ends exactly as written, and
    idle comes only after every B."""
    tb = TB("write", clocks, seed=11)
    commands = [(0x400 * i + 8 * tb.rng.randrange(0, 40), tb.rng.randrange(1, 60)) for i in range(10)]
    beats = _writes(tb, commands)
    reference = bytearray(tb.image)
    _apply(reference, beats)

    async def commands_bench(ctx):
        await tb.send_commands(ctx, commands)

    async def data_bench(ctx):
        await tb.offer(ctx, tb.dut.data, [{"data": d, "strb": s} for _, d, s in beats])
        await tb.wait_idle(ctx)
        assert not ctx.get(tb.dut.error)

    tb.sim.add_testbench(commands_bench)
    tb.run(data_bench, reads=False)
    assert tb.mem.memory == reference
    assert tb.mem.w_beats == len(beats)


@pytest.mark.parametrize("clocks", CLOCKS)
def test_write_error_abort_clear_restart(clocks):
    """A failing B: error with its burst address; abort until idle completes every burst
    and drops the beats still offered; after clear a new write lands exactly."""
    tb = TB("write", clocks, seed=5, errors=[(0x1100, 0x1101, RESP_SLVERR)])
    commands = [(0x1000, 120)]
    faulting = next(b.addr for b in _bursts(commands) if b.addr <= 0x1100 < b.end)
    beats = _writes(tb, commands)
    restart = [(0x6000, 40)]
    again = _writes(tb, restart)

    async def bench(ctx):
        dut = tb.dut
        await tb.send_commands(ctx, commands)
        sent = 0
        ctx.set(dut.data.valid, 1)
        while not ctx.get(dut.error):
            _, data, strb = beats[min(sent, len(beats) - 1)]
            ctx.set(dut.data.p.data, data)
            ctx.set(dut.data.p.strb, strb)
            await ctx.tick()
            sent += ctx.get(dut.data.ready) and sent < len(beats)
        ctx.set(dut.data.valid, 0)
        assert ctx.get(dut.error_addr) == faulting
        ctx.set(dut.abort, 1)
        await tb.wait_idle(ctx)
        ctx.set(dut.abort, 0)
        await tb.pulse(ctx, dut.clear)
        assert not ctx.get(dut.error)
        after_error = bytearray(tb.mem.memory)
        await tb.send_commands(ctx, restart)
        await tb.offer(ctx, dut.data, [{"data": d, "strb": s} for _, d, s in again])
        await tb.wait_idle(ctx)
        assert not ctx.get(dut.error)
        _apply(after_error, again)
        assert tb.mem.memory == after_error

    tb.run(bench, reads=False)
    assert tb.mem.first_write_error == faulting
    assert tb.mem.quiescent()


class _Burst:
    def __init__(self, addr, beats):
        self.addr, self.end = addr, addr + beats * CONFIG.bus_bytes


def _bursts(commands):
    from hdl.spec.dma import bursts
    return [_Burst(addr, n) for a, b in commands for addr, n in bursts(CONFIG, a, b)]
