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
import pytest
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiMaster, AxiResp

from hdl.spec.boards import BOARDS
from hdl.spec.config import preset
from host.platforms.sim import MEMORY_CONTROLS
from hdl.spec.ddr import RATE_ONE, beats_per_cycle, ddr_model, serving_share
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
        for name in MEMORY_CONTROLS[1:]:
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


async def count_handshakes(dut, channel: str, cycles: list[int], bus: str = "bus") -> None:
    """Append to ``cycles`` the cycle (counted from the call) of every ``channel``
    handshake on the port ``bus`` (``bus1`` ... for the read-only ones of a multi-port memory)."""
    valid, ready = getattr(dut, f"{bus}__{channel}valid"), getattr(dut, f"{bus}__{channel}ready")
    cycle = 0
    while True:
        await RisingEdge(dut.clk)
        cycle += 1
        if valid.value and ready.value:
            cycles.append(cycle)


@cocotb.test()
async def writes_stream_one_beat_per_cycle(dut):
    """W beats of back-to-back bursts are taken without gaps."""
    tb = TB(dut)
    await tb.reset()
    cycles = []
    cocotb.start_soon(count_handshakes(dut, "w", cycles))
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


async def stream_beat_cycles(tb, nbytes: int) -> list[int]:
    """Read ``nbytes`` from BASE; the cycle (since the read started) of every R beat."""
    dut, cycles = tb.dut, []
    watcher = cocotb.start_soon(count_handshakes(dut, "r", cycles))
    await tb.axi.read(BASE, nbytes)
    watcher.cancel()
    assert len(cycles) == nbytes // 16
    return cycles


def delivered(cycles: list[int]) -> float:
    return (len(cycles) - 1) / (cycles[-1] - cycles[0])


def set_controls(dut, controls: dict[str, int]):
    for name, value in controls.items():
        getattr(dut, name).value = value


@cocotb.test()
async def bandwidth_cap_holds_over_a_long_stream(dut):
    """A 0.37 beat/cycle cap delivers 0.37 beats per cycle (within 1%) to a long stream."""
    tb = TB(dut)
    await tb.reset()
    controls = {"ddr_rate": round(0.37 * RATE_ONE)}
    set_controls(dut, controls)
    got = delivered(await stream_beat_cycles(tb, 64 * 1024))
    want = beats_per_cycle(controls)
    assert abs(got - want) <= 0.01 * want, (got, want)


@cocotb.test()
async def refresh_gaps_come_every_period(dut):
    """With refresh_period 300 and refresh_cycles 20, R pauses for 20 cycles every 300."""
    tb = TB(dut)
    await tb.reset()
    set_controls(dut, {"refresh_period": 300, "refresh_cycles": 20})
    cycles = await stream_beat_cycles(tb, 32 * 1024)
    gaps = [(after, after - before - 1) for before, after in zip(cycles, cycles[1:])
            if after - before > 1]
    assert len(gaps) >= 5, gaps
    assert all(idle == 20 for _, idle in gaps), gaps
    starts = [after for after, _ in gaps]
    assert {b - a for a, b in zip(starts, starts[1:])} == {300}, starts


@cocotb.test()
async def kv260_model_delivers_its_arithmetic(dut):
    """The KV260 model (refresh, bank stalls, cap above the port) gives a saturating
    stream the beats per cycle its stated constants predict, within 1%."""
    tb = TB(dut)
    await tb.reset()
    controls = ddr_model(preset("kv260"), BOARDS["kv260"])
    set_controls(dut, controls)
    cycles = await stream_beat_cycles(tb, 256 * 1024)
    got, want = delivered(cycles), beats_per_cycle(controls)
    assert abs(got - want) <= 0.01 * want, (got, want)
    assert got < 0.97, f"{got} beats/cycle: refresh and bank stalls did not show"


def test_kv260_model_constants():
    """The KV260 model's control values are the stated arithmetic on the board facts, at
    the masters' 300 MHz."""
    controls = ddr_model(preset("kv260"), BOARDS["kv260"])
    assert controls["read_latency"] == 77              # 256 ns at 300 MHz, rounded up
    assert controls["refresh_period"] == 2340          # 7.8 us at 300 MHz
    assert controls["refresh_cycles"] == 105           # 350 ns at 300 MHz
    # One row miss per 512 beats of a 250 MHz stream: 107/65536 per free cycle at 300 MHz,
    # each 27.5 ns (9 cycles, rounded up).
    assert controls["bank_stall_rate"] == 107 and controls["bank_stall_cycles"] == 9
    share = (1 - 105 / 2340) / (1 + 9 * 107 / 65536)
    assert serving_share(controls) == pytest.approx(share)
    # 19.2 GB/s x 0.85 over 16-byte beats at 300 MHz is 3.4 beats per cycle in the long
    # run; served only in the serving share of cycles, in 1/65536 steps.
    assert controls["ddr_rate"] == round(19.2e9 * 0.85 / (16 * 300e6) / share * 65536)
    # Four saturating ports share the cap: 0.85 beats each, 16.32 GB/s in all.
    assert beats_per_cycle(controls, ports=4) == pytest.approx(0.85, abs=1e-5)
    # One port alone is bound by itself: one beat in every serving cycle.
    assert beats_per_cycle(controls) == pytest.approx(share)


def test_a_cap_the_stalls_leave_no_room_for_is_refused():
    """A DRAM that must deliver more between its refreshes and stalls than its peak allows
    (99% of the peak, with 6% of the time stalled) is refused, naming the board."""
    with pytest.raises(ValueError, match="kv260: the cap .99%"):
        ddr_model(preset("kv260"), BOARDS["kv260"], efficiency=0.99)
    with pytest.raises(ValueError, match="efficiency=0"):
        ddr_model(preset("kv260"), BOARDS["kv260"], efficiency=0)


def run_on_a_file(memory, toplevel: str, test_module: str) -> None:
    """Run ``test_module``'s cocotb tests on ``memory`` (a ``SimMemory``) over a fresh
    ``SIZE``-byte backing file at ``BASE``."""
    from sim.sim_memory import dpi_sources

    path = write_verilog(memory, toplevel, BUILD / "sim" / "src" / f"{toplevel}.v")
    sv, _clock, cpp = dpi_sources()
    with tempfile.NamedTemporaryFile(dir=BUILD, prefix="simmem-") as backing:
        backing.truncate(SIZE)
        run_cocotb(sources=[path, sv], toplevel=toplevel, test_module=test_module, extra_args=(str(cpp),),
                   extra_env={"SYSTOLE_SIM_MEM": backing.name, "SYSTOLE_SIM_MEM_BASE": hex(BASE)})


def test_sim_memory_verilator():
    from sim.sim_memory import SimMemory

    run_on_a_file(SimMemory(preset("kv260").replace(addr_width=40)), "sim_memory", "sim.test_sim_memory")
