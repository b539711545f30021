"""cocotb: the DPI-backed simulation memory against its shared file.

The memory model serves the co-simulation (SimBackend) and the efficiency bench,
so its latency, throughput, error responses and file sharing are checked here.
"""

import logging
import mmap
import os
import random
import tempfile

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiMaster, AxiResp

from sim.runner import BUILD, run_cocotb, write_verilog

BASE = 0x8000_0000
SIZE = 1 << 20


class TB:
    def __init__(self, dut):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, 4, unit="ns").start())
        self.axi = AxiMaster(AxiBus.from_prefix(dut, "bus_"), dut.clk, dut.rst)
        self.axi.write_if.log.setLevel(logging.WARNING)
        self.axi.read_if.log.setLevel(logging.WARNING)
        fd = os.open(os.environ["SYSTOLE_SIM_MEM"], os.O_RDWR)
        self.file = np.frombuffer(mmap.mmap(fd, SIZE), dtype=np.uint8)
        os.close(fd)

    async def reset(self, latency=32):
        dut = self.dut
        dut.read_latency.value = latency
        for name in ("fault_lo", "fault_hi", "fault_read", "fault_write", "hang"):
            getattr(dut, name).value = 0
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 2)


@cocotb.test()
async def reads_and_writes_share_the_file(dut):
    """Host writes to the file are read over AXI; AXI writes land in the file."""
    tb = TB(dut)
    await tb.reset(latency=5)
    rng = random.Random(3)
    for _ in range(20):
        offset = rng.randrange(0, SIZE - 600)
        length = rng.randrange(1, 512)
        payload = bytes(rng.randrange(256) for _ in range(length))
        tb.file[offset:offset + length] = np.frombuffer(payload, np.uint8)
        assert (await tb.axi.read(BASE + offset, length)).data == payload
        payload = bytes(rng.randrange(256) for _ in range(length))
        await tb.axi.write(BASE + offset, payload)
        assert tb.file[offset:offset + length].tobytes() == payload


@cocotb.test()
async def latency_then_one_beat_per_cycle(dut):
    """First beat after read_latency cycles, then no gaps within and across bursts."""
    tb = TB(dut)
    latency = 40
    await tb.reset(latency=latency)
    beats = 0
    first = last = None
    cycle = 0

    async def watch():
        nonlocal beats, first, last, cycle
        while True:
            await RisingEdge(dut.clk)
            cycle += 1
            if dut.bus__rvalid.value and dut.bus__rready.value:
                beats += 1
                first = cycle if first is None else first
                last = cycle

    cocotb.start_soon(watch())
    start = cycle
    nbytes = 64 * 16 * 8
    await tb.axi.read(BASE, nbytes)
    assert beats == nbytes // 16
    assert first - start >= latency, (first, start)
    assert last - first + 1 == beats, f"gaps: {beats} beats over {last - first + 1} cycles"


@cocotb.test()
async def writes_stream_one_beat_per_cycle(dut):
    """W beats of back-to-back bursts are taken without gaps."""
    tb = TB(dut)
    await tb.reset()
    cycles = []

    async def watch():
        cycle = 0
        while True:
            await RisingEdge(dut.clk)
            cycle += 1
            if dut.bus__wvalid.value and dut.bus__wready.value:
                cycles.append(cycle)

    cocotb.start_soon(watch())
    nbytes = 16 * 1024                      # 4 bursts of 256 beats
    payload = bytes(random.Random(9).randrange(256) for _ in range(nbytes))
    await tb.axi.write(BASE + 0x4000, payload)
    assert len(cycles) == nbytes // 16
    assert cycles[-1] - cycles[0] + 1 <= len(cycles) + 8, "W beats were stalled between bursts"
    assert tb.file[0x4000:0x4000 + nbytes].tobytes() == payload


@cocotb.test()
async def errors_decode_and_fault_ranges(dut):
    """DECERR outside the window; SLVERR inside an armed fault range; then healthy."""
    tb = TB(dut)
    await tb.reset(latency=3)
    assert (await tb.axi.read(BASE - 4096, 16)).resp == AxiResp.DECERR
    assert (await tb.axi.write(BASE + SIZE, b"x" * 16)).resp == AxiResp.DECERR
    dut.fault_lo.value = BASE + 0x1000
    dut.fault_hi.value = BASE + 0x1010
    dut.fault_read.value = 1
    dut.fault_write.value = 1
    assert (await tb.axi.read(BASE + 0x0FF0, 32)).resp == AxiResp.SLVERR
    assert (await tb.axi.write(BASE + 0x1000, b"y" * 16)).resp == AxiResp.SLVERR
    assert (await tb.axi.read(BASE + 0x1010, 16)).resp == AxiResp.OKAY
    dut.fault_read.value = 0
    dut.fault_write.value = 0
    assert (await tb.axi.read(BASE + 0x1000, 16)).resp == AxiResp.OKAY


def test_sim_memory_verilator():
    from hdl.spec.config import preset
    from sim.sim_memory import SimMemory, dpi_sources

    config = preset("kv260").replace(addr_width=40)
    path = write_verilog(SimMemory(config), "sim_memory", BUILD / "sim" / "src" / "sim_memory.v")
    sv, _clock, cpp = dpi_sources()
    with tempfile.NamedTemporaryFile(dir=BUILD, prefix="simmem-") as backing:
        backing.truncate(SIZE)
        run_cocotb(sources=[path, sv], toplevel="sim_memory", test_module="sim.test_sim_memory",
                   extra_args=(str(cpp),),
                   extra_env={"SYSTOLE_SIM_MEM": backing.name, "SYSTOLE_SIM_MEM_BASE": hex(BASE)})
