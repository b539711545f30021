"""cocotb: the simulation memory with four ports, as the kv260 build's masters see it.

Each port has its own read pipeline; all four share one ``DdrTiming``: one bandwidth
cap, one refresh, one bank-stall process (``sim.sim_memory``). Checked here: the
read-only ports serve the same file, a fault window answers on whichever port reads
there, the cap is shared fairly, refresh stops every port at once, and the KV260 model
delivers to four saturating streams what ``hdl.spec.ddr.beats_per_cycle`` states.
"""

import logging
import mmap
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Combine
from cocotbext.axi import AxiBus, AxiMaster, AxiMasterRead, AxiReadBus, AxiResp

from hdl.spec.boards import BOARDS
from hdl.spec.config import preset
from hdl.spec.ddr import RATE_ONE, beats_per_cycle, ddr_model
from host.platforms.sim import MEMORY_CONTROLS
from sim.test_sim_memory import BASE, SIZE, count_handshakes, run_on_a_file

PORTS = 4
CONFIG = preset("kv260")


class TB:
    def __init__(self, dut):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, 4, unit="ns").start())
        self.ports = [AxiMaster(AxiBus.from_prefix(dut, "bus_"), dut.clk, dut.rst)]
        self.ports += [AxiMasterRead(AxiReadBus.from_prefix(dut, f"bus{p}_"), dut.clk, dut.rst)
                       for p in range(1, PORTS)]
        for port in self.ports:
            for side in (getattr(port, "read_if", port), getattr(port, "write_if", None)):
                if side is not None:
                    side.log.setLevel(logging.WARNING)
        fd = os.open(os.environ["SYSTOLE_SIM_MEM"], os.O_RDWR)
        self.file = np.frombuffer(mmap.mmap(fd, SIZE), dtype=np.uint8)
        os.close(fd)

    async def reset(self, latency=64, **controls):
        dut = self.dut
        dut.read_latency.value = latency
        for name in MEMORY_CONTROLS[1:]:
            getattr(dut, name).value = controls.get(name, 0)
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 2)

    async def read(self, port: int, addr: int, nbytes: int):
        return await self.ports[port].read(addr, nbytes)


async def streams(tb, nbytes: int) -> list[list[int]]:
    """Every port reads ``nbytes`` of its own region at once; each port's beat cycles."""
    cycles = [[] for _ in range(PORTS)]
    watchers = [cocotb.start_soon(count_handshakes(tb.dut, "r", cycles[p], "bus" if p == 0 else f"bus{p}"))
                for p in range(PORTS)]
    reads = [cocotb.start_soon(tb.read(p, BASE + p * nbytes, nbytes)) for p in range(PORTS)]
    await Combine(*reads)
    for watcher in watchers:
        watcher.cancel()
    assert all(len(c) == nbytes // 16 for c in cycles), [len(c) for c in cycles]
    return cycles


def rate(cycles: list[int], first: int, last: int) -> float:
    """Beats per cycle between cycles ``first`` and ``last`` (while every port streams)."""
    return sum(1 for c in cycles if first <= c < last) / (last - first)


@cocotb.test()
async def every_port_reads_the_shared_file(dut):
    """Random bytes in the file come back on every port; a fault window answers SLVERR on
    the port that reads there and nowhere else."""
    tb = TB(dut)
    await tb.reset(latency=5)
    rng = random.Random(5)
    for _ in range(12):
        port = rng.randrange(PORTS)
        offset, length = rng.randrange(0, SIZE - 600), rng.randrange(1, 512)
        payload = bytes(rng.randrange(256) for _ in range(length))
        tb.file[offset:offset + length] = np.frombuffer(payload, np.uint8)
        assert (await tb.read(port, BASE + offset, length)).data == payload, port
    dut.fault_lo.value, dut.fault_hi.value, dut.fault_read.value = BASE + 0x2000, BASE + 0x2010, 1
    for port in range(PORTS):
        assert (await tb.read(port, BASE + 0x2000, 16)).resp == AxiResp.SLVERR, port
        assert (await tb.read(port, BASE + 0x3000, 16)).resp == AxiResp.OKAY, port
    assert (await tb.read(2, BASE - 4096, 16)).resp == AxiResp.DECERR


@cocotb.test()
async def the_cap_is_shared_fairly(dut):
    """A cap of 2 beats per cycle, four saturating ports: about 0.5 each, 2.0 in all."""
    tb = TB(dut)
    await tb.reset(ddr_rate=2 * RATE_ONE)
    cycles = await streams(tb, 64 * 1024)
    first, last = 200, min(c[-1] for c in cycles) - 50
    each = [rate(c, first, last) for c in cycles]
    assert all(abs(r - 0.5) <= 0.02 for r in each), each
    assert abs(sum(each) - 2.0) <= 0.02, each


@cocotb.test()
async def refresh_stops_every_port_at_once(dut):
    """refresh_period 300, refresh_cycles 20: every port pauses 20 cycles, at the same cycles."""
    tb = TB(dut)
    await tb.reset(refresh_period=300, refresh_cycles=20)
    cycles = await streams(tb, 32 * 1024)
    gaps = []
    for port_cycles in cycles:
        gaps.append([(after, after - before - 1) for before, after in zip(port_cycles, port_cycles[1:])
                     if after - before > 1])
    assert len(gaps[0]) >= 5 and all(idle == 20 for _, idle in gaps[0]), gaps[0]
    assert all(g == gaps[0] for g in gaps), "the ports' refresh gaps differ"


@cocotb.test()
async def kv260_model_feeds_four_streams(dut):
    """The KV260 model (four 300 MHz ports under one cap, refresh and bank stalls inside it)
    gives each of four saturating streams the rate beats_per_cycle states (0.85 beats per
    cycle: 16.32 GB/s in all), within 1%."""
    tb = TB(dut)
    controls = ddr_model(CONFIG, BOARDS["kv260"])
    await tb.reset(**controls)
    cycles = await streams(tb, 192 * 1024)
    want = beats_per_cycle(controls, PORTS)
    first, last = 300, min(c[-1] for c in cycles) - 50
    for port, port_cycles in enumerate(cycles):
        got = rate(port_cycles, first, last)
        assert abs(got - want) <= 0.01 * want, (port, got, want)


def test_sim_memory_four_ports_verilator():
    from sim.sim_memory import SimMemory

    run_on_a_file(SimMemory(CONFIG, ports=PORTS), "sim_memory_ports", "sim.test_sim_memory_ports")
