"""A testbench base for one DMA block (``DmaReader`` or ``DmaWriter``) on the Amaranth
simulator, against ``sim.axi_mem.AxiMemory``.

``DmaBlockTB`` holds what the reader's and the writer's tests share: the simulator
and its clock, a memory image of random bytes at ``base`` answered by ``AxiMemory``
(with a ``Stalls`` pattern on the block's channels), a command producer with gaps,
a cycle budget that turns a hang into a failure, and ``wait_idle``. Each test file
adds its data side (a consumer for the reader, a producer for the writer).
"""

from __future__ import annotations

import random

from amaranth.sim import Simulator

from sim.axi_mem import AxiMemory
from sim.dma_traffic import Stalls

__all__ = ["MEM_BYTES", "BUDGET", "DmaBlockTB"]

MEM_BYTES = 48 * 1024
BUDGET = 40_000          # cycles; a hang fails instead of spinning forever


class DmaBlockTB:
    """``dut`` (a DMA block with ``bus``, ``cmd`` and ``idle``) against its memory.

    ``channels`` are the AXI channels of the block whose memory side follows
    ``stall`` (each with its own seed); ``memory`` goes to ``AxiMemory`` (latencies,
    ``errors``). ``image`` is the memory's initial content, ``mem.memory`` its
    content now; ``cmd_gaps`` decides when the command producer idles.
    """

    def __init__(self, dut, config, *, channels: tuple[str, ...], stall: str = "none",
                 seed: int = 0, base: int = 0, mem_bytes: int = MEM_BYTES, **memory):
        self.config = config
        self.rng = random.Random(seed)
        self.dut = dut
        self.sim = Simulator(dut)
        self.sim.add_clock(1e-8)
        self.base = base
        self.image = bytes(self.rng.randbytes(mem_bytes))
        self.mem = AxiMemory(
            dut.bus, config, bytearray(self.image), base=base,
            stalls={ch: Stalls(stall, seed=seed + i) for i, ch in enumerate(channels)},
            seed=seed, **memory)
        self.mem.add_to(self.sim)
        self.cmd_gaps = Stalls(stall, seed=seed + 10)
        self.cycles = 0

    async def offer(self, ctx, stream, payloads, gaps: Stalls):
        """Offer each payload (field name -> value) on ``stream``, idling while ``gaps``
        stalls; returns once the last one is taken."""
        for payload in payloads:
            while gaps.stall():
                ctx.set(stream.valid, 0)
                await ctx.tick()
            for name, value in payload.items():
                ctx.set(getattr(stream.p, name), value)
            ctx.set(stream.valid, 1)
            await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)

    async def send_commands(self, ctx, commands, coherent=None):
        """Offer each ``(addr, beats)`` command, with ``cmd_gaps``; returns once all are taken.
        ``coherent``: each command's ``coherent`` bit (default all 0)."""
        coherent = coherent or [0] * len(commands)
        await self.offer(ctx, self.dut.cmd, [{"addr": addr, "beats": beats, "coherent": int(flag)}
                                             for (addr, beats), flag in zip(commands, coherent)],
                         self.cmd_gaps)

    async def wait_idle(self, ctx, budget: int = 5000):
        """Tick until the block is idle; fail after ``budget`` cycles."""
        for _ in range(budget):
            if ctx.get(self.dut.idle):
                return
            await ctx.tick()
        raise AssertionError(f"{type(self.dut).__name__} not idle after {budget} cycles")

    def count_cycle(self):
        """One more cycle; fail once the run has taken ``BUDGET`` cycles."""
        self.cycles += 1
        if self.cycles > BUDGET:
            raise AssertionError(f"no progress after {BUDGET} cycles")

    async def _count_cycles(self, ctx):
        async for _ in ctx.tick():
            self.count_cycle()

    def run(self, *testbenches, background=None):
        """Simulate until every testbench returns. ``background`` benches run alongside;
        one of them must call ``count_cycle`` every cycle (by default a bench of its own
        does: each bench woken per cycle slows the simulator)."""
        for bench in background or [self._count_cycles]:
            self.sim.add_testbench(bench, background=True)
        for bench in testbenches:
            self.sim.add_testbench(bench)
        self.sim.run()
