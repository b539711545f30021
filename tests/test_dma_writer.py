"""DmaWriter against the AxiMemory model (Amaranth simulator).

Every byte of the memory is compared with a bytearray reference after each run
(so guard bytes around every buffer are checked too), every AW against the bursts
of ``hdl.spec.dma`` (commands at every bus-width offset across a 4 KiB edge among
them); the model checks WLAST, W-after-AW ordering, outstanding bursts and VALID
stability; error and abort endings follow the contract in hdl/README.md.
"""

import zlib

import pytest

from hdl.axi import RESP_DECERR, RESP_SLVERR, cache_prot
from hdl.spec.config import preset
from hdl.dma_writer import DmaWriter
from sim.dma_block_tb import MEM_BYTES, DmaBlockTB
from sim.dma_traffic import Stalls, edge_commands, planned_bursts, random_commands


class TB(DmaBlockTB):
    """A DmaWriter, its memory, a command producer and a data producer."""

    def __init__(self, config, *, write_latency=3, stall="none", errors=(), seed=0, base=0,
                 mem_bytes=MEM_BYTES):
        super().__init__(DmaWriter(config), config, channels=("aw", "w", "b"), stall=stall, seed=seed,
                         base=base, mem_bytes=mem_bytes, write_latency=write_latency, errors=errors)
        self.reference = bytearray(self.image)
        self.data_gaps = Stalls(stall, seed=seed + 11)

    def beats_for(self, commands, *, partial=True):
        """Random beats and strobes for ``commands``; mostly full, some partial/empty."""
        bus_bytes = self.config.bus_bytes
        full = (1 << bus_bytes) - 1
        beats = []
        for addr, count in commands:
            for i in range(count):
                data = self.rng.getrandbits(8 * bus_bytes)
                strb = full if not partial or self.rng.random() < 0.7 else self.rng.getrandbits(bus_bytes)
                beats.append((addr + i * bus_bytes, data, strb))
        return beats

    def apply(self, beats):
        """What the memory must hold after ``beats`` are written."""
        bus_bytes = self.config.bus_bytes
        for addr, data, strb in beats:
            raw = data.to_bytes(bus_bytes, "little")
            for lane in range(bus_bytes):
                if strb >> lane & 1:
                    self.reference[addr - self.base + lane] = raw[lane]

    async def send_data(self, ctx, beats):
        """Offer each ``(addr, data, strb)`` beat, with ``data_gaps``."""
        await self.offer(ctx, self.dut.data, [{"data": data, "strb": strb} for _, data, strb in beats],
                         self.data_gaps)


def check_aws(tb, commands):
    assert [(b.addr, b.beats) for b in tb.mem.aws] == planned_bursts(tb.config, commands)


def write(tb, commands, *, partial=True, coherent=None):
    """Write random beats (some partly strobed when ``partial``) for ``commands`` (with
    their ``coherent`` bits, default 0): memory ends as the reference, no error, every W
    beat taken; the AWs are the commands' bursts."""
    beats = tb.beats_for(commands, partial=partial)
    tb.apply(beats)

    async def commands_bench(ctx):
        await tb.send_commands(ctx, commands, coherent)

    async def data_bench(ctx):
        await tb.send_data(ctx, beats)
        await tb.wait_idle(ctx)
        assert not ctx.get(tb.dut.error)
        assert tb.mem.quiescent()

    tb.run(commands_bench, data_bench)
    check_aws(tb, commands)
    assert tb.mem.w_beats == len(beats)
    assert tb.mem.memory == tb.reference


@pytest.mark.parametrize("config_name,stall,latency", [
    ("tiny", "none", 1),
    ("tiny", "random", 4),
    ("small", "periodic", 2),
    ("small", "lazy", 6),
    ("small", "random", 20),
    ("kv260", "random", 9),
])
def test_writer_writes_every_byte(config_name, stall, latency):
    config = preset(config_name)
    tb = TB(config, write_latency=latency, stall=stall,
            seed=zlib.crc32(f"{config_name}{stall}".encode()),
            base=0xF0_0000_0000 if config.addr_width == 40 else 0x8000_0000)
    limit = 3 * config.max_burst if config.max_burst < 64 else 600
    # Commands must not overlap: the reference applies them in order, the bus may not.
    commands = []
    for addr, beats in random_commands(config, tb.rng, tb.base, MEM_BYTES, 30, limit):
        span = range(addr, addr + beats * config.bus_bytes)
        if all(span.stop <= a or a + b * config.bus_bytes <= span.start for a, b in commands):
            commands.append((addr, beats))
        if len(commands) == 10:
            break
    write(tb, commands)


@pytest.mark.parametrize("config_name,stall", [("tiny", "none"), ("small", "random")])
def test_writer_splits_commands_at_every_offset_across_an_edge(config_name, stall):
    """A 2-beat and a burst-plus-one command at every bus-width offset from a full
    burst below a 4 KiB edge to one beat past it (``edge_commands``); the bytes
    around each one are untouched."""
    config = preset(config_name)
    commands = edge_commands(config, base=0)
    end = max(addr + beats * config.bus_bytes for addr, beats in commands)
    tb = TB(config, write_latency=4, stall=stall, seed=zlib.crc32(f"edge{config_name}{stall}".encode()),
            mem_bytes=end + 4096)         # a page of guard bytes above the last command
    write(tb, commands)


@pytest.mark.parametrize("config_name", ["tiny", "small"])
def test_writer_marks_the_bursts_of_coherent_commands(config_name):
    """Every AW carries its command's attributes: the I/O coherent pair for a coherent
    command in a ``coherent_io`` build (tiny), normal non-cacheable otherwise."""
    from hdl.spec.dma import bursts
    config = preset(config_name)
    commands = edge_commands(config, base=0)[:12]
    coherent = [index % 3 != 1 for index in range(len(commands))]
    end = max(addr + beats * config.bus_bytes for addr, beats in commands)
    tb = TB(config, write_latency=3, stall="random", seed=41, mem_bytes=end + 4096)
    write(tb, commands, coherent=coherent)
    want = [(addr, beats, *cache_prot(flag and config.coherent_io))
            for (a, b), flag in zip(commands, coherent) for addr, beats in bursts(config, a, b)]
    assert [(addr, beats, cache, prot) for ch, addr, beats, cache, prot in tb.mem.bursts] == want
    assert any(c != cache_prot(False)[0] for _, _, _, c, _ in tb.mem.bursts) == config.coherent_io


def test_writer_keeps_max_outstanding_in_flight():
    """Short bursts against a slow B channel: the limit is reached, never exceeded."""
    config = preset("small")
    tb = TB(config, write_latency=40, seed=5)
    write(tb, [(0x100 + 0x40 * i, 2) for i in range(30)], partial=False)
    assert tb.mem.max_writes_in_flight == config.max_outstanding


def possible_bytes(tb, beats):
    """Per memory byte, the values it may hold when beats may or may not land."""
    allowed = [{value} for value in tb.image]
    bus_bytes = tb.config.bus_bytes
    for addr, data, strb in beats:
        raw = data.to_bytes(bus_bytes, "little")
        for lane in range(bus_bytes):
            if strb >> lane & 1:
                allowed[addr - tb.base + lane].add(raw[lane])
    return allowed


@pytest.mark.parametrize("resp", [RESP_SLVERR, RESP_DECERR])
def test_writer_error_completes_every_burst(resp):
    config = preset("small")
    tb = TB(config, stall="random", seed=resp, write_latency=10,
            errors=[(0x2100, 0x2101, resp)])
    commands = [(0x1F00, 20), (0x2000, 200), (0x4000, 50)]
    beats = tb.beats_for(commands)
    bursts = planned_bursts(config, commands)
    faulting = next(addr for addr, count in bursts
                    if addr <= 0x2100 < addr + count * config.bus_bytes)
    observed = {}

    async def commands_bench(ctx):
        await tb.send_commands(ctx, commands)

    async def data_bench(ctx):
        dut = tb.dut
        # Every beat is offered; after the error they are taken and dropped.
        await tb.send_data(ctx, beats)
        while not ctx.get(dut.error):
            await ctx.tick()
        await tb.wait_idle(ctx)
        assert tb.mem.quiescent()
        assert ctx.get(dut.error_addr) == faulting
        observed["aws"] = len(tb.mem.aws)
        for _ in range(20):          # nothing new after the error
            assert ctx.get(dut.idle) and not ctx.get(dut.bus.awvalid)
            await ctx.tick()
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert not ctx.get(dut.error)
        # The writer works again after clear.
        again = [(0x8000, 33)]
        observed["again"] = tb.beats_for(again)
        await tb.send_commands(ctx, again)
        await tb.send_data(ctx, observed["again"])
        await tb.wait_idle(ctx)
        assert not ctx.get(dut.error)

    tb.run(commands_bench, data_bench)
    assert tb.mem.first_write_error == faulting
    # The faulting burst was not written; bursts before it were written exactly.
    allowed = possible_bytes(tb, beats)
    tb.apply([b for b in beats if b[0] < faulting])
    tb.apply(observed["again"])
    for offset, value in enumerate(tb.mem.memory):
        addr = tb.base + offset
        if addr < faulting or 0x8000 <= addr < 0x8000 + 33 * config.bus_bytes:
            assert value == tb.reference[offset], hex(addr)
        elif faulting <= addr < faulting + config.max_burst * config.bus_bytes:
            assert value == tb.image[offset], hex(addr)
        else:
            assert value in allowed[offset], hex(addr)
    # No AW after the error beyond those in flight (the faulting one included).
    position = [addr for addr, _ in bursts].index(faulting)
    assert observed["aws"] <= position + config.max_outstanding


@pytest.mark.parametrize("pulse", [False, True], ids=["level", "pulse"])
def test_writer_abort_pads_missing_beats_then_restarts(pulse):
    """Abort held until idle, or a one-cycle pulse: every AW still gets padded beats."""
    config = preset("small")
    tb = TB(config, stall="random", seed=42, write_latency=5)
    tb.mem.stalls["aw"] = Stalls("sparse", period=5)
    commands = [(0x0000, 400), (0x3000, 100)]
    beats = tb.beats_for(commands)
    SENT = config.max_burst + 3
    observed = {}

    async def commands_bench(ctx):
        await tb.send_commands(ctx, commands[:1])

    async def data_bench(ctx):
        dut = tb.dut
        # Starve W inside the second burst, then abort while an AW is presented.
        await tb.send_data(ctx, beats[:SENT])
        for _ in range(100):
            if ctx.get(dut.bus.awvalid) and not ctx.get(dut.bus.awready):
                break
            await ctx.tick()
        else:
            raise AssertionError("scenario broken: no AW waiting for AWREADY to abort on")
        ctx.set(dut.abort, 1)
        aws_at_abort = len(tb.mem.aws)
        if pulse:
            await ctx.tick()
            ctx.set(dut.abort, 0)
        await tb.send_commands(ctx, commands[1:])          # dropped
        await tb.wait_idle(ctx)
        assert tb.mem.quiescent()
        assert len(tb.mem.aws) <= aws_at_abort + 1
        assert not ctx.get(dut.error)
        observed["aws"] = len(tb.mem.aws)
        observed["w_beats"] = tb.mem.w_beats
        ctx.set(dut.abort, 0)
        again = [(0x5008, 77)]
        observed["again"] = tb.beats_for(again)
        tb.cmd_gaps = Stalls("none")   # offered in the very cycle abort falls
        await tb.send_commands(ctx, again)
        await tb.send_data(ctx, observed["again"])
        await tb.wait_idle(ctx)

    tb.run(commands_bench, data_bench)
    # Every AW got all its beats (the model checks WLAST), padded ones wrote nothing.
    issued = tb.mem.aws[:observed["aws"]]
    assert observed["w_beats"] == sum(b.beats for b in issued)
    assert observed["w_beats"] > SENT
    tb.apply(beats[:SENT])
    tb.apply(observed["again"])
    assert tb.mem.memory == tb.reference
    check_aws(tb, [(b.addr, b.beats) for b in issued] + [(0x5008, 77)])
