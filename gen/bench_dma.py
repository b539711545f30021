"""``python -m gen.bench_dma``: DMA stream throughput in beats per cycle.

Runs the ``DmaReader`` (and ``DmaWriter``) of a configuration in the Amaranth
simulator against ``sim.axi_mem.AxiMemory`` with a fixed response latency and
no stalls, one long command, and an always-ready consumer/producer. Prints:

- ``steady``: beats / cycles from the first to the last data beat, the
  sustained rate that decode streams at (the accelerator's roofline);
- ``end-to-end``: beats / cycles from the command handshake to the last beat,
  which also pays the latency once.

Every beat read is checked against the memory image.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass

from amaranth.sim import Simulator

from hdl.dma_reader import DmaReader
from hdl.dma_writer import DmaWriter
from hdl.spec.config import PRESETS, AccelConfig, preset
from host.cli import ArgumentParser, entry, int_in, unit_fraction
from sim.axi_mem import AxiMemory

__all__ = ["StreamResult", "measure_read", "measure_write", "main"]


@dataclass(frozen=True)
class StreamResult:
    """One measured stream."""

    beats: int
    latency: int
    steady_cycles: int        # first data beat .. last data beat, inclusive
    total_cycles: int         # command handshake .. last data beat

    @property
    def steady(self) -> float:
        return self.beats / self.steady_cycles

    @property
    def end_to_end(self) -> float:
        return self.beats / self.total_cycles


def _stream_addr(config: AccelConfig) -> int:
    # High in the address space and 3 beats below a 4 KiB page, so the stream
    # starts with a short burst and crosses a page boundary every 4 KiB.
    top = 1 << config.addr_width
    return top - (1 << 24) - 3 * config.bus_bytes


def measure_read(config: AccelConfig, latency: int, beats: int = 4096) -> StreamResult:
    """Stream ``beats`` through a ``DmaReader`` from a memory answering after ``latency`` cycles."""
    addr = _stream_addr(config)
    span = beats * config.bus_bytes
    image = random.Random(latency).randbytes(span)
    dut = DmaReader(config)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    AxiMemory(dut.bus, config, bytearray(image), base=addr, read_latency=latency).add_to(sim)
    marks = {}

    async def testbench(ctx):
        ctx.set(dut.cmd.p.addr, addr)
        ctx.set(dut.cmd.p.beats, beats)
        ctx.set(dut.cmd.valid, 1)
        ctx.set(dut.data.ready, 1)
        await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)
        cycle = received = 0
        async for _, _, valid, data, last in ctx.tick().sample(
                dut.data.valid, dut.data.p.data, dut.data.p.last):
            cycle += 1
            if not valid:
                if cycle > 4 * beats + 1000:
                    raise RuntimeError(f"read stream stalled after {received} of {beats} beats")
                continue
            marks.setdefault("first", cycle)
            offset = received * config.bus_bytes
            if data != int.from_bytes(image[offset:offset + config.bus_bytes], "little"):
                raise AssertionError(f"beat {received} differs from memory")
            received += 1
            if received == beats:
                if not last:
                    raise AssertionError("last beat of the command without last")
                marks["last"] = cycle
                return

    sim.add_testbench(testbench)
    sim.run()
    return StreamResult(beats, latency, marks["last"] - marks["first"] + 1, marks["last"])


def measure_write(config: AccelConfig, latency: int, beats: int = 4096) -> StreamResult:
    """Stream ``beats`` through a ``DmaWriter``; B answers ``latency`` cycles after each burst.

    ``steady`` counts W handshakes from the first to the last; ``total`` from
    the command to the last B.
    """
    addr = _stream_addr(config)
    memory = bytearray(beats * config.bus_bytes)
    dut = DmaWriter(config)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    model = AxiMemory(dut.bus, config, memory, base=addr, write_latency=latency)
    model.add_to(sim)
    full = (1 << config.bus_bytes) - 1
    marks = {}

    async def testbench(ctx):
        ctx.set(dut.cmd.p.addr, addr)
        ctx.set(dut.cmd.p.beats, beats)
        ctx.set(dut.cmd.valid, 1)
        ctx.set(dut.data.valid, 1)
        ctx.set(dut.data.p.strb, full)
        ctx.set(dut.data.p.data, 0)
        cycle = sent = 0
        async for _, _, cmd_ready, ready, wvalid, wready, idle in ctx.tick().sample(
                dut.cmd.ready, dut.data.ready, dut.bus.wvalid, dut.bus.wready, dut.idle):
            cycle += 1
            if cmd_ready:
                ctx.set(dut.cmd.valid, 0)
            if wvalid and wready:
                marks.setdefault("first", cycle)
                marks["last_w"] = cycle
            if ready and sent < beats:
                sent += 1
                ctx.set(dut.data.p.data, sent)
                if sent == beats:
                    ctx.set(dut.data.valid, 0)
            if sent == beats and idle and model.quiescent() and "last_w" in marks:
                marks["done"] = cycle
                return
            if cycle > 4 * beats + 1000:
                raise RuntimeError(f"write stream stalled after {sent} of {beats} beats")

    sim.add_testbench(testbench)
    sim.run()
    expected = b"".join(i.to_bytes(config.bus_bytes, "little") for i in range(beats))
    if memory != expected:
        raise AssertionError("written memory differs from the beats sent")
    return StreamResult(beats, latency, marks["last_w"] - marks["first"] + 1, marks["done"])


@entry
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gen.bench_dma", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="kv260", choices=sorted(PRESETS))
    parser.add_argument("--beats", type=int_in(1, 1 << 20), default=4096, help="beats per stream (default 4096)")
    parser.add_argument("--latency", type=int_in(1, 4096), nargs="+", default=[32, 64],
                        help="memory latencies in cycles (default: 32 64)")
    parser.add_argument("--min", type=unit_fraction, default=0.99,
                        help="fail if a steady read rate is below this (default 0.99)")
    args = parser.parse_args(argv)
    config = preset(args.preset)
    print(f"{config.name}: {config.bus_bits}-bit bus, max_burst {config.max_burst}, "
          f"read FIFO {config.read_fifo_beats} beats, {config.max_outstanding} outstanding")
    ok = True
    for latency in args.latency:
        read = measure_read(config, latency, args.beats)
        write = measure_write(config, latency, args.beats)
        print(f"  latency {latency:3d}: read  {read.steady:.4f} beats/cycle steady, "
              f"{read.end_to_end:.4f} end-to-end ({read.beats} beats, {read.total_cycles} cycles)")
        print(f"               write {write.steady:.4f} beats/cycle steady, "
              f"{write.end_to_end:.4f} end-to-end ({write.beats} beats, {write.total_cycles} cycles)")
        ok &= read.steady >= args.min
    if not ok:
        print(f"FAIL: a steady read rate is below {args.min}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
