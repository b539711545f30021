"""cocotb: bad programming and bad memory on the generated top.

Every refused-job error code (with its ERR_ADDR, the same as ``hdl.spec.job.check``
gives, and no DMA traffic at all), M, N and K wider than their count fields refused
rather than truncated, read and write error responses (job ends cleanly, faulting
burst address captured, every transaction completed), start while busy, soft reset
at several points of a job under idle and back-pressure, and after each of those a
good job that still passes.
"""

import random
from dataclasses import replace

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles

from hdl.spec.dma import read_bursts, write_bursts
from hdl.spec.job import check, row_strides
from hdl.spec.regmap import ErrorCode
from host.accel.pack import packed_size
from sim.dma_traffic import pause_pairing
from sim.systole_tb import CTRL, GUARD_BYTES, SystoleTB
from sim.top_build import on_presets, run_top


def operands(rng: np.random.Generator, m: int, n: int, k: int):
    return (rng.integers(-128, 128, size=(m, k), dtype=np.int8),
            rng.integers(-128, 128, size=(n, k), dtype=np.int8))


async def good_job_passes(tb: SystoleTB, rng: random.Random, seed: int):
    """The engine still computes correctly after whatever happened before."""
    cfg = tb.config
    a, w = operands(np.random.default_rng(seed), cfg.rows + 1, cfg.cols + 3, 2 * cfg.bus_bytes + 3)
    await tb.check_matmul(a, w, rng)


def bad_jobs(tb: SystoleTB, rng: random.Random):
    """(description, job, expected code, expected ERR_ADDR) for every refusal."""
    cfg = tb.config
    bb = cfg.bus_bytes
    k = 3 * bb + 1
    good = tb.place(cfg.rows + 1, cfg.cols + 1, k, rng)
    top = 1 << cfg.addr_width

    def variant(**changes):
        return replace(good, **changes)

    def a_row(k: int) -> int:                # the smallest legal A_STRIDE for K
        return row_strides(cfg, k, good.n)[0]

    w_bytes = packed_size(good.n, good.k, cfg.cols)
    c_row = row_strides(cfg, good.k, good.n)[1]
    last_a = top + bb - (good.m - 1) * good.a_stride - a_row(good.k)
    return [
        ("M=0", variant(m=0), ErrorCode.M_RANGE, 0),
        ("N=0", variant(n=0), ErrorCode.N_RANGE, 0),
        ("K=0", variant(k=0), ErrorCode.K_RANGE, 0),
        # Wider than the count fields (M, N: 24 bits, K: 16): refused, not run truncated.
        ("M=0x1000001, not M=1", variant(m=0x100_0001), ErrorCode.M_RANGE, 0),
        ("N=2^24+N, not N", variant(n=(1 << 24) + good.n), ErrorCode.N_RANGE, 0),
        ("N=2^32-1", variant(n=(1 << 32) - 1), ErrorCode.N_RANGE, 0),
        ("K=0x10010, not K=16", variant(k=0x1_0010, a_stride=a_row(0x1_0010)), ErrorCode.K_RANGE, 0),
        ("K=max_k+1", variant(k=cfg.max_k + 1, a_stride=a_row(cfg.max_k + 1)),
         ErrorCode.A_OVERFLOW, 0),
        ("K=65535", variant(k=65535, a_stride=a_row(65535)), ErrorCode.A_OVERFLOW, 0),
        ("A misaligned", variant(a_addr=good.a_addr + bb // 2), ErrorCode.ALIGN, good.a_addr + bb // 2),
        ("W misaligned", variant(w_addr=good.w_addr + 1), ErrorCode.ALIGN, good.w_addr + 1),
        ("C misaligned", variant(c_addr=good.c_addr + bb - 1), ErrorCode.ALIGN, good.c_addr + bb - 1),
        ("A_STRIDE misaligned", variant(a_stride=good.a_stride + 2), ErrorCode.ALIGN, good.a_stride + 2),
        ("C_STRIDE misaligned", variant(c_stride=good.c_stride + 1), ErrorCode.ALIGN, good.c_stride + 1),
        ("A_STRIDE < K", variant(a_stride=3 * bb), ErrorCode.STRIDE, 3 * bb),
        ("C_STRIDE < 4N", variant(c_stride=c_row - bb), ErrorCode.STRIDE, c_row - bb),
        ("M=0 before misaligned A", variant(m=0, a_addr=1), ErrorCode.M_RANGE, 0),
        ("A past the top", variant(a_addr=top - bb), ErrorCode.ADDR_RANGE, top - bb),
        ("A beyond addr_width", variant(a_addr=top + good.a_addr), ErrorCode.ADDR_RANGE,
         top + good.a_addr),
        ("last A row one beat past the top", variant(a_addr=last_a), ErrorCode.ADDR_RANGE, last_a),
        ("W one beat past the top", variant(w_addr=top - w_bytes + bb), ErrorCode.ADDR_RANGE,
         top - w_bytes + bb),
        ("C last row past the top", variant(c_addr=top - (good.m - 1) * good.c_stride - c_row + bb),
         ErrorCode.ADDR_RANGE, top - (good.m - 1) * good.c_stride - c_row + bb),
        ("C at 2^64 - bb", variant(c_addr=(1 << 64) - bb), ErrorCode.ADDR_RANGE, (1 << 64) - bb),
        *([("W_STRIDE misaligned", variant(w_stride=good.w_stride + 2), ErrorCode.ALIGN, good.w_stride + 2),
           ("last W stream one beat past the top", variant(w_addr=top - w_bytes, w_stride=good.w_stride + bb),
            ErrorCode.ADDR_RANGE, top - w_bytes)]
          if cfg.weight_ports > 1 else []),
    ]


@cocotb.test()
async def bad_jobs_are_refused_without_dma(dut):
    """Each bad job: the ErrorCode and ERR_ADDR written out for it, which are also what
    ``hdl.spec.job.check`` gives; done raised, no AR/AW at all."""
    tb = SystoleTB(dut)
    await tb.reset()
    rng = random.Random(1)
    for description, job, code, addr in bad_jobs(tb, rng):
        result = await tb.run_job(job, max_cycles=500)
        got = (ErrorCode(result.err_code), result.err_addr)
        assert got == (code, addr), \
            f"{description}: got {got[0].name} at {got[1]:#x}, want {code.name} at {addr:#x}"
        oracle = check(tb.config, job)
        assert got == oracle, (f"{description}: the RTL gives {got[0].name} at {got[1]:#x}, "
                               f"hdl.spec.job.check {oracle[0].name} at {oracle[1]:#x}")
    await good_job_passes(tb, rng, 1)


@cocotb.test()
async def buffers_ending_at_the_top_are_accepted(dut):
    """A, W or C ending exactly at 2^addr_width is legal and computed right."""
    tb = SystoleTB(dut)
    await tb.reset()
    cfg = tb.config
    bb = cfg.bus_bytes
    rng = random.Random(2)
    m, n, k = cfg.rows + 1, cfg.cols + 2, 2 * bb + 1
    a, w = operands(np.random.default_rng(2), m, n, k)
    top = 1 << cfg.addr_width
    a_stride, c_stride = row_strides(cfg, k, n)
    w_bytes = packed_size(n, k, cfg.cols)
    low = tb.place(m, n, k, rng, pad=False)
    tb.guard = 0                     # nothing to guard above the top
    for name, job in [
        ("A", replace(low, a_addr=top - m * a_stride)),
        ("W", replace(low, w_addr=top - w_bytes)),
        ("C", replace(low, c_addr=top - m * c_stride)),
    ]:
        dut._log.info(f"{name} ends at the top of the address space")
        await tb.check_matmul(a, w, rng, job)
    tb.guard = GUARD_BYTES


def first_burst(bursts, lo: int, hi: int, bus_bytes: int) -> int:
    """Address of the first burst whose bytes overlap [lo, hi)."""
    for burst in bursts:
        addr, beats = burst[0], burst[1]
        size = burst[2] if len(burst) > 2 else beats * bus_bytes
        if addr < hi and addr + size > lo:
            return addr
    raise AssertionError(f"no burst touches [{lo:#x}, {hi:#x})")


@cocotb.test()
async def read_errors_end_the_job(dut):
    """SLVERR on A or W reads: DMA_READ with the burst address, every burst completed,
    nothing written outside C, and the next good job passes."""
    tb = SystoleTB(dut)
    await tb.reset()
    cfg = tb.config
    bb = cfg.bus_bytes
    rng = random.Random(3)
    nprng = np.random.default_rng(3)
    # A faults on port 0; W faults on every weight port's own stream.
    cases = [("a_second_block", 0), ("a_first", 0)]
    cases += [(where, port) for port in range(cfg.weight_ports) for where in ("w_late", "w_first")]
    for index, (where, port) in enumerate(cases):
        tb.set_pauses(*pause_pairing(2 * index + 1), seed=index)
        m, n, k = 2 * cfg.rows + 1, 3 * cfg.cols, 4 * bb + 3
        a, w = operands(nprng, m, n, k)
        job, before = tb.stage(a, w, rng)
        stream = job.w_addr + port * job.w_stride
        fault = {
            "w_late": stream + 2 * k * bb + bb,                      # tile 2
            "a_second_block": job.a_addr + cfg.rows * job.a_stride + bb,
            "w_first": stream,
            "a_first": job.a_addr,
        }[where]
        tb.set_faults(reads=(fault, fault + bb))
        result = await tb.run_job(job)
        tb.set_faults()
        want = first_burst(read_bursts(cfg, job, port), fault, fault + bb, bb)
        got = (ErrorCode(result.err_code), result.err_addr, result.err_port)
        assert got == (ErrorCode.DMA_READ, want, port), \
            f"{where} on port {port}: {got[0].name} at {got[1]:#x} on port {got[2]}, want {want:#x} on {port}"
        assert tb.guards_intact(job, before), "bytes written outside the C area"
        await good_job_passes(tb, rng, 10 + index)


@cocotb.test()
async def write_errors_end_the_job(dut):
    """SLVERR on a C write: DMA_WRITE with the burst address, all bursts completed, and
    the next good job passes."""
    tb = SystoleTB(dut)
    await tb.reset()
    cfg = tb.config
    bb = cfg.bus_bytes
    rng = random.Random(4)
    nprng = np.random.default_rng(4)
    for index, (row, tile) in enumerate([(0, 0), (1, 2), (cfg.rows, 1)]):
        tb.set_pauses(*pause_pairing(8 - 3 * index), seed=index)
        m, n, k = cfg.rows + 2, 3 * cfg.cols - 1, 2 * bb
        a, w = operands(nprng, m, n, k)
        job, before = tb.stage(a, w, rng)
        fault = job.c_addr + row * job.c_stride + tile * 4 * cfg.cols + 4
        tb.set_faults(writes=(fault, fault + 4))
        result = await tb.run_job(job)
        tb.set_faults()
        want = first_burst(write_bursts(cfg, job), fault, fault + 4, bb)
        assert (result.err_code, result.err_addr) == (ErrorCode.DMA_WRITE, want), \
            f"row {row} tile {tile}: {ErrorCode(result.err_code).name} at {result.err_addr:#x}"
        assert tb.guards_intact(job, before), "bytes written outside the C area"
        await good_job_passes(tb, rng, 20 + index)


@cocotb.test()
async def start_while_busy_is_flagged(dut):
    """ap_start during a job: START_BUSY recorded, the running job still finishes right;
    the next job clears the code."""
    tb = SystoleTB(dut)
    await tb.reset()
    cfg = tb.config
    rng = random.Random(5)
    m, n, k = cfg.rows + 1, 2 * cfg.cols, cfg.max_k // 2
    a, w = operands(np.random.default_rng(5), m, n, k)
    job, before = tb.stage(a, w, rng)
    await tb.launch(job)
    await ClockCycles(dut.aclk, 60)
    assert await tb.read_reg("STATUS") & 1, "job should still be running"
    await tb.start()
    result = await tb.complete(job)
    tb.verify(job, a, w, before, result, code=ErrorCode.START_BUSY)
    await good_job_passes(tb, rng, 5)
    assert await tb.read_reg("ERR_CODE") == ErrorCode.OK


@cocotb.test()
async def soft_reset_mid_job(dut):
    """CTRL.soft_reset while checking, loading A, streaming W and draining, under
    back-pressure: ABORTED, idle, no transaction left open, then a good job passes.
    A soft reset while idle changes nothing."""
    tb = SystoleTB(dut)
    await tb.reset()
    cfg = tb.config
    rng = random.Random(6)
    nprng = np.random.default_rng(6)
    for index, delay in enumerate([0, 25, 45, 90, 160, 260]):
        tb.set_pauses(*pause_pairing(8 - index), seed=index)
        m, n, k = cfg.rows + 1, 3 * cfg.cols, min(cfg.max_k, 16 * cfg.bus_bytes)
        a, w = operands(nprng, m, n, k)
        job, before = tb.stage(a, w, rng)
        await tb.launch(job)
        await ClockCycles(dut.aclk, delay)
        assert await tb.read_reg("STATUS") & 1, f"delay {delay}: job already over"
        await tb.write_reg("CTRL", CTRL["soft_reset"])
        result = await tb.complete(job)
        assert result.err_code == ErrorCode.ABORTED, f"delay {delay}: {ErrorCode(result.err_code).name}"
        assert tb.guards_intact(job, before), "bytes written outside the C area"
        await good_job_passes(tb, rng, 30 + index)

    await tb.write_reg("CTRL", CTRL["soft_reset"])
    await ClockCycles(dut.aclk, 20)
    assert int(dut.irq.value) == 0, "a soft reset while idle ends no job"
    assert await tb.read_reg("ERR_CODE") == ErrorCode.OK
    assert await tb.read_reg("CTRL") & CTRL["ap_idle"]
    await good_job_passes(tb, rng, 40)


@pytest.mark.parametrize("preset", on_presets("tiny", "small"))
def test_errors(preset):
    run_top("sim.test_errors", preset)
