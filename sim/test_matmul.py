"""cocotb: whole matmuls on the generated top, bit-exact against host.accel.golden.

Random shapes (multiples of the array and not, M=1, M > rows, K from 1 to max_k)
under every pairing of idle and back-pressure (``PAUSES`` x ``PAUSES``), -128/127
operands and int32 extremes at max K, A, W and C swept across a 4 KiB edge in
bus-width steps with guard bytes around C, a decode job on the bench's
32-cycle-latency memory, the capability registers and the interrupt logic. Every
test here runs on every preset it is run for; the shapes only the kv260 build can
take are in ``sim.test_matmul_kv260``.
"""

import random

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles, RisingEdge

from hdl.spec.regmap import REGISTERS, ErrorCode, const_value
from sim.dma_traffic import PAUSES, edge_offsets, pause_pairing
from sim.systole_tb import CTRL, SystoleTB
from sim.top_build import on_presets, run_top


def operands(rng: np.random.Generator, m: int, n: int, k: int, extremes: bool = False):
    """int8 A [m, k] and W [n, k]; ``extremes`` draws only -128 and 127."""
    if extremes:
        pick = np.array([-128, 127], np.int8)
        return rng.choice(pick, size=(m, k)), rng.choice(pick, size=(n, k))
    return (rng.integers(-128, 128, size=(m, k), dtype=np.int8),
            rng.integers(-128, 128, size=(n, k), dtype=np.int8))


def random_shape(rng: random.Random, cfg):
    m = rng.choice([1, 1, cfg.rows, cfg.rows + 1, rng.randint(1, 3 * cfg.rows + 1)])
    n = rng.choice([1, cfg.cols, cfg.cols + 1, rng.randint(1, 3 * cfg.cols + 2)])
    k = rng.choice([1, 2, cfg.bus_bytes - 1, cfg.bus_bytes, cfg.bus_bytes + 1,
                    rng.randint(1, 48), rng.randint(1, cfg.max_k)])
    return m, n, k


@cocotb.test()
async def capabilities_match_config(dut):
    """ID/VERSION/CAP_* read the AccelConfig's values; the engine starts idle."""
    tb = SystoleTB(dut)
    await tb.reset()
    for reg in REGISTERS:
        if reg.kind == "const":
            got = await tb.read_reg(reg.name)
            assert got == const_value(reg, tb.config), f"{reg.name}={got:#x}"
    ctrl = await tb.read_reg("CTRL")
    assert ctrl & CTRL["ap_idle"] and not ctrl & (CTRL["ap_done"] | CTRL["ap_start"])
    assert await tb.read_reg("STATUS") == 0
    assert await tb.read_reg("ERR_CODE") == ErrorCode.OK
    assert await tb.ctrl.read_dword(0xFC) == 0          # unmapped
    first = await tb.read_reg("CYCLES_LO")
    await ClockCycles(dut.aclk, 50)
    assert await tb.read_reg("CYCLES_LO") - first >= 50


@cocotb.test()
@cocotb.parametrize(idle=PAUSES, backpressure=PAUSES)
async def random_matmuls(dut, idle, backpressure):
    """Random shapes and operands with the memory's R and B channels pausing as ``idle``
    and its AR, AW and W channels as ``backpressure``: bit-exact, guards intact."""
    tb = SystoleTB(dut)
    await tb.reset()
    cfg = tb.config
    variant = PAUSES.index(idle) + len(PAUSES) * PAUSES.index(backpressure)
    tb.set_pauses(idle, backpressure, seed=variant)
    rng = random.Random(11 + variant)
    nprng = np.random.default_rng(11 + variant)
    # About 80 jobs on the smallest array and 40 on larger ones, over all the pairings.
    jobs = (80 if cfg.rows * cfg.cols <= 8 else 40) // len(PAUSES) ** 2
    for index in range(jobs):
        m, n, k = random_shape(rng, cfg)
        a, w = operands(nprng, m, n, k, extremes=index % 4 == 3)
        dut._log.info(f"job {index}: M={m} N={n} K={k}")
        await tb.check_matmul(a, w, rng)


@cocotb.test()
async def int32_extremes_at_max_k(dut):
    """K = max_k with -128/127 operands reaches the largest and smallest sums."""
    tb = SystoleTB(dut)
    await tb.reset()
    cfg = tb.config
    k = cfg.max_k
    m, n = cfg.rows + 1, cfg.cols + 1
    a = np.full((m, k), -128, np.int8)
    a[1::2] = 127
    w = np.full((n, k), -128, np.int8)
    w[1::2] = 127
    result = await tb.check_matmul(a, w, random.Random(5))
    assert result.err_code == ErrorCode.OK
    c = a[:, :1].astype(np.int64) * w[:, :1].T.astype(np.int64) * k
    assert c.max() == 128 * 128 * k and c.min() == -128 * 127 * k


@cocotb.test()
async def buffers_across_4k_edges(dut):
    """A, W and C each start at every beat offset from a full burst below a 4 KiB edge
    to one beat past it (``edge_offsets``), with A rows and W tiles longer than a
    burst, so every split at the edge happens; the bursts are checked against
    ``hdl.spec.dma`` on every job."""
    tb = SystoleTB(dut)
    await tb.reset()
    cfg = tb.config
    rng = random.Random(3)
    nprng = np.random.default_rng(3)
    offsets = list(edge_offsets(cfg))
    # Two A rows and two W tiles (the second one channel wide, so C's last beat is
    # partly strobed); A rows and W tiles one beat longer than a burst.
    m, n = 2, cfg.cols + 1
    k = min(cfg.max_k, cfg.max_burst * cfg.bus_bytes + 1)
    for index in range(len(offsets)):
        # In one job A, W and C meet their edges at different offsets.
        placement = tuple(offsets[(index + shift * len(offsets) // 3) % len(offsets)]
                          for shift in range(3))
        tb.set_pauses(*pause_pairing(index), seed=index)
        a, w = operands(nprng, m, n, k)
        job = tb.place(m, n, k, rng, offsets=placement)
        dut._log.info(f"A, W, C at {placement} beats from an edge")
        await tb.check_matmul(a, w, rng, job)


@cocotb.test()
async def irq_follows_gie_ier_isr(dut):
    """irq = GIE & (IER & ISR): masked by GIE, ISR set only for enabled events,
    cleared by writing ISR; ap_done/ap_ready clear on read."""
    tb = SystoleTB(dut)
    await tb.reset()
    cfg = tb.config
    rng = random.Random(8)
    nprng = np.random.default_rng(8)
    irq_seen = []

    async def watch():
        while True:
            await RisingEdge(dut.aclk)
            if int(dut.irq.value):
                irq_seen.append(1)

    async def poll_done():
        for _ in range(500):
            if await tb.read_reg("CTRL") & CTRL["ap_done"]:
                return
        raise AssertionError("ap_done never rose")

    a, w = operands(nprng, 2, cfg.cols, 8)
    job = tb.place(2, cfg.cols, 8, rng)
    tb.load_operands(job, a, w, rng)
    await tb.program(job)
    watcher = cocotb.start_soon(watch())

    await tb.write_reg("GIE", 0)
    await tb.write_reg("IER", 0b11)
    await tb.start()
    await poll_done()
    assert not irq_seen, "irq rose with GIE=0"
    assert await tb.read_reg("ISR") == 0b11, "done and ready both latched in ISR"
    assert not await tb.read_reg("CTRL") & (CTRL["ap_done"] | CTRL["ap_ready"]), "clear on read"
    await tb.write_reg("GIE", 1)
    await ClockCycles(dut.aclk, 2)
    assert int(dut.irq.value) == 1, "pending ISR raises irq once GIE is set"
    await tb.write_reg("ISR", 0b01)
    assert int(dut.irq.value) == 1, "ready is still pending"
    await tb.write_reg("ISR", 0b10)
    await ClockCycles(dut.aclk, 2)
    assert int(dut.irq.value) == 0 and await tb.read_reg("ISR") == 0

    irq_seen.clear()
    await tb.write_reg("IER", 0)
    await tb.start()
    await poll_done()
    await ClockCycles(dut.aclk, 4)
    assert not irq_seen and await tb.read_reg("ISR") == 0, "IER=0 sets no ISR bit"
    watcher.cancel()

    await tb.write_reg("IER", 1)
    assert (await tb.run_job(job)).err_code == ErrorCode.OK


def reader_streams(config, latency: int) -> bool:
    """The DMA reader keeps enough reads in flight to stream one beat per cycle from a
    memory answering after ``latency`` cycles (its contract, ``hdl/dma_reader.py``):
    its FIFO credit beyond one burst and its outstanding bursts both cover the latency."""
    return (latency <= config.read_fifo_beats - config.max_burst - 4
            and latency <= config.max_outstanding * config.max_burst)


@cocotb.test()
async def latency_memory_decode(dut):
    """A decode job on the 32-cycle-latency memory of the bench: correct, and, where the
    reader has the depth to stream (``reader_streams``), the weight stream is the
    only bottleneck (cycle counts are exact in simulation)."""
    latency = 32
    tb = SystoleTB(dut, memory="latency", read_latency=latency)
    await tb.reset()
    cfg = tb.config
    rng = random.Random(21)
    k, n = cfg.max_k // 2, 6 * cfg.cols - 1
    a, w = operands(np.random.default_rng(21), 1, n, k)
    result = await tb.check_matmul(a, w, rng)
    if not reader_streams(cfg, latency):
        dut._log.info(f"{cfg.name}: the reader cannot stream at {latency} cycles; "
                      f"PERF_STALL={result.perf_stall} not bounded")
        return
    ideal = -(-n // cfg.cols) * k
    assert result.perf_stall < 200, f"{result.perf_stall} stall cycles on a steady stream"
    assert ideal <= result.perf_busy < ideal + 400, f"PERF_BUSY={result.perf_busy} for {ideal} beats"


@pytest.mark.parametrize("preset", on_presets("tiny", "small"))
def test_matmul(preset):
    run_top("sim.test_matmul", preset)
