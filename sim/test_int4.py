"""cocotb: 4-bit weights (``hdl.spec.formats``) on the generated top, bit-exact against
host.accel.golden.

On a build that runs int4 (``tiny``): random shapes with int4 and int8 jobs mixed back
to back under every pairing of idle and back-pressure on every port, the 4-bit range's
and the scales' extremes at max K, K across the 64-step blocks' edges, read errors on
every weight port during an int4 job, and soft resets in the middle of one; after each
fault a good int4 job still passes. On a build without int4 (``small``): an int4 job
is refused with FORMAT and issues no DMA traffic, and the next int8 job passes.
"""

import random

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles

from hdl.spec.dma import read_bursts
from hdl.spec.formats import GROUP, WeightFormat, tile_beats
from hdl.spec.job import check
from hdl.spec.regmap import ErrorCode
from host.accel.pack import Int4Weights
from sim.dma_traffic import PAUSES, pause_pairing
from sim.systole_tb import CTRL, SystoleTB
from sim.test_errors import first_burst
from sim.top_build import on_presets, run_top


def int4_operands(rng: np.random.Generator, m: int, n: int, k: int, extremes: bool = False):
    """int8 A [m, k] and Int4Weights [n, k]; ``extremes`` draws only -128/127, q -8/7
    and scales 0/15."""
    groups = -(-k // GROUP)
    if extremes:
        a = rng.choice(np.array([-128, 127], np.int8), size=(m, k))
        q = rng.choice(np.array([-8, 7], np.int8), size=(n, k))
        s = rng.choice(np.array([0, 15, 15, 15], np.uint8), size=(n, groups))
    else:
        a = rng.integers(-128, 128, size=(m, k), dtype=np.int8)
        q = rng.integers(-8, 8, size=(n, k), dtype=np.int8)
        s = rng.integers(0, 16, size=(n, groups), dtype=np.uint8)
    return a, Int4Weights(q, s)


def int8_operands(rng: np.random.Generator, m: int, n: int, k: int):
    return (rng.integers(-128, 128, size=(m, k), dtype=np.int8),
            rng.integers(-128, 128, size=(n, k), dtype=np.int8))


def random_shape(rng: random.Random, cfg):
    tokens = cfg.rows // 2
    m = rng.choice([1, 1, tokens, tokens + 1, cfg.rows + 1, rng.randint(1, 3 * cfg.rows + 1)])
    n = rng.choice([1, cfg.cols, cfg.cols + 1, rng.randint(1, 3 * cfg.cols + 2)])
    k = rng.choice([1, 2, 3, 31, 32, 33, 63, 64, 65, 127, 129, rng.randint(1, cfg.max_k)])
    return m, n, min(k, cfg.max_k)


async def good_int4_job_passes(tb: SystoleTB, rng: random.Random, seed: int):
    cfg = tb.config
    a, w = int4_operands(np.random.default_rng(seed), cfg.rows + 1, cfg.cols + 3, min(cfg.max_k, 2 * 64 + 5))
    await tb.check_matmul(a, w, rng)


def _runs_int4(tb: SystoleTB) -> bool:
    return WeightFormat.INT4 in tb.config.weight_formats


@cocotb.test()
@cocotb.parametrize(idle=PAUSES, backpressure=PAUSES)
async def int4_and_int8_jobs_mixed(dut, idle, backpressure):
    """Random shapes, int4 and int8 jobs alternating, every pause pairing on every port:
    bit-exact, guards intact, bursts and beat counters as ``hdl.spec.dma`` plans them."""
    tb = SystoleTB(dut)
    await tb.reset()
    if not _runs_int4(tb):
        return
    cfg = tb.config
    variant = PAUSES.index(idle) + len(PAUSES) * PAUSES.index(backpressure)
    tb.set_pauses(idle, backpressure, seed=variant)
    rng = random.Random(40 + variant)
    nprng = np.random.default_rng(40 + variant)
    for index in range(max(3, 48 // len(PAUSES) ** 2)):
        m, n, k = random_shape(rng, cfg)
        if index % 3 == 2:
            a, w = int8_operands(nprng, m, n, k)
        else:
            a, w = int4_operands(nprng, m, n, k, extremes=index % 4 == 3)
        dut._log.info(f"job {index}: {'int8' if index % 3 == 2 else 'int4'} M={m} N={n} K={k}")
        await tb.check_matmul(a, w, rng)


@cocotb.test()
async def int4_extremes_at_max_k(dut):
    """K = max_k, A at -128/127 and q * s at -8 * 15 / 7 * 15: the largest sums an int4
    job can make, exact; and all-zero scales give zeros."""
    tb = SystoleTB(dut)
    await tb.reset()
    if not _runs_int4(tb):
        return
    cfg = tb.config
    k, m, n = cfg.max_k, cfg.rows + 1, cfg.cols + 1
    a = np.full((m, k), -128, np.int8)
    a[1::2] = 127
    q = np.full((n, k), -8, np.int8)
    q[1::2] = 7
    s = np.full((n, -(-k // GROUP)), 15, np.uint8)
    await tb.check_matmul(a, Int4Weights(q, s), random.Random(7))
    await tb.check_matmul(a, Int4Weights(q, np.zeros_like(s)), random.Random(8))


@cocotb.test()
async def read_errors_in_an_int4_job(dut):
    """SLVERR on every weight port's int4 stream (first and a later tile): DMA_READ with
    the burst address and port, nothing written outside C, then a good int4 job."""
    tb = SystoleTB(dut)
    await tb.reset()
    if not _runs_int4(tb):
        return
    cfg = tb.config
    bb = cfg.bus_bytes
    rng = random.Random(9)
    nprng = np.random.default_rng(9)
    cases = [(where, port) for port in range(cfg.weight_ports) for where in ("first", "late")]
    for index, (where, port) in enumerate(cases):
        tb.set_pauses(*pause_pairing(2 * index + 1), seed=index)
        m, n, k = cfg.rows + 1, 3 * cfg.cols, 64 + 9
        a, w = int4_operands(nprng, m, n, k)
        job, before = tb.stage(a, w, rng)
        stream = job.w_addr + port * job.w_stride
        fault = stream if where == "first" else stream + 2 * tile_beats(WeightFormat.INT4, k) * bb + bb
        tb.set_faults(reads=(fault, fault + bb))
        result = await tb.run_job(job)
        tb.set_faults()
        want = first_burst(read_bursts(cfg, job, port), fault, fault + bb, bb)
        got = (ErrorCode(result.err_code), result.err_addr, result.err_port)
        assert got == (ErrorCode.DMA_READ, want, port), f"{where} on port {port}: {got}"
        assert tb.guards_intact(job, before), "bytes written outside the C area"
        await good_int4_job_passes(tb, rng, 50 + index)


@cocotb.test()
async def soft_reset_mid_int4_job(dut):
    """CTRL.soft_reset at several points of an int4 job: ABORTED, guards intact, then a
    good int4 job and a good int8 job pass."""
    tb = SystoleTB(dut)
    await tb.reset()
    if not _runs_int4(tb):
        return
    cfg = tb.config
    rng = random.Random(10)
    nprng = np.random.default_rng(10)
    for index, delay in enumerate([0, 30, 70, 150]):
        tb.set_pauses(*pause_pairing(8 - index), seed=index)
        a, w = int4_operands(nprng, cfg.rows + 1, 3 * cfg.cols, min(cfg.max_k, 3 * 64 + 1))
        job, before = tb.stage(a, w, rng)
        await tb.launch(job)
        await ClockCycles(dut.aclk, delay)
        assert await tb.read_reg("STATUS") & 1, f"delay {delay}: job already over"
        await tb.write_reg("CTRL", CTRL["soft_reset"])
        result = await tb.complete(job)
        assert result.err_code == ErrorCode.ABORTED, f"delay {delay}: {ErrorCode(result.err_code).name}"
        assert tb.guards_intact(job, before), "bytes written outside the C area"
        await good_int4_job_passes(tb, rng, 60 + index)
        a8, w8 = int8_operands(nprng, cfg.rows + 1, cfg.cols + 1, 40)
        await tb.check_matmul(a8, w8, rng)


@cocotb.test()
async def formats_the_build_lacks_are_refused(dut):
    """W_FORMAT naming a format CAP_FORMATS does not list (int4 on an int8-only build, or
    an undefined value on any build): FORMAT, ERR_ADDR 0, no DMA traffic; then a good
    job of a format the build runs passes."""
    tb = SystoleTB(dut)
    await tb.reset()
    cfg = tb.config
    rng = random.Random(11)
    nprng = np.random.default_rng(11)
    caps = await tb.read_reg("CAP_FORMATS")
    assert caps == cfg.format_mask
    job = tb.place(cfg.rows + 1, cfg.cols + 1, 70, rng, w_format=WeightFormat.INT4)
    for w_format in (WeightFormat.INT4, 2, 0xFF, 1 << 31):
        bad = job.__class__(**{**job.__dict__, "w_format": int(w_format)})
        want = check(cfg, bad)
        result = await tb.run_job(bad, max_cycles=500)
        got = (ErrorCode(result.err_code), result.err_addr)
        assert got == want, f"W_FORMAT={int(w_format):#x}: RTL {got}, rules {want}"
        if not caps >> int(w_format) & 1 if w_format < 32 else True:
            assert got == (ErrorCode.FORMAT, 0), f"W_FORMAT={int(w_format):#x}: {got}"
    a, w = int8_operands(nprng, cfg.rows + 1, cfg.cols + 1, 40)
    await tb.check_matmul(a, w, rng)


@pytest.mark.parametrize("preset", on_presets("tiny", "small"))
def test_int4(preset):
    run_top("sim.test_int4", preset)
