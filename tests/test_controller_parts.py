"""The job rules, JobCheck and SkidBuffer (Amaranth simulator).

``hdl.spec.job.check`` is held to a table of outcomes written out by hand from the
rules; JobCheck, which evaluates the same rule declarations on its signals, must
agree with ``check`` on every boundary and on random jobs near them. SkidBuffer must
pass every beat once, in order, under random valid/ready, with ready never depending
on valid.
"""

import random

import pytest
from amaranth.sim import Simulator

from hdl.jobcheck import JobCheck
from hdl.skid import SkidBuffer
from hdl.spec.config import preset
from hdl.spec.job import FIELDS, Job, check, edge_jobs
from hdl.spec.regmap import ErrorCode


def hand_table(cfg):
    """``(job, code, ERR_ADDR)`` written out by hand from the rules in hdl/README.md: an
    independent statement that ``check`` must agree with."""
    bb, cols, ports = cfg.bus_bytes, cfg.cols, cfg.weight_ports
    top = 1 << cfg.addr_width
    assert cols == ports * bb, "the table below assumes one beat of every port per k step of a tile"
    stream = 2 * (2 * bb + 1) * bb                  # one port's stream: two tiles of K beats
    w_stride = stream if ports > 1 else 0
    good = Job(a_addr=0x1000, w_addr=0x8000, c_addr=0x20000, m=3, n=cols + 1, k=2 * bb + 1,
               a_stride=3 * bb, c_stride=8 * cols, w_stride=w_stride)

    def job(**changes):
        return Job(**{**good.__dict__, **changes})

    w_bytes = (ports - 1) * w_stride + stream       # the last port's stream ends the buffer
    c_tail = -(-4 * (cols + 1) // bb) * bb          # 4*(cols+1) bytes in whole beats
    table = [
        (good, ErrorCode.OK, 0),
        (job(m=0), ErrorCode.M_RANGE, 0),
        (job(m=(1 << 24) - 1), ErrorCode.OK, 0),
        (job(m=1 << 24), ErrorCode.M_RANGE, 0),
        (job(m=0x1000001), ErrorCode.M_RANGE, 0),     # would run as M=1 if truncated to 24 bits
        (job(n=0), ErrorCode.N_RANGE, 0),
        (job(n=1 << 24), ErrorCode.N_RANGE, 0),
        (job(k=0), ErrorCode.K_RANGE, 0),
        (job(k=0x10010, a_stride=0x10010), ErrorCode.K_RANGE, 0),   # would run as K=16
        (job(k=cfg.max_k + 1, a_stride=cfg.max_k + bb), ErrorCode.A_OVERFLOW, 0),
        (job(m=0, a_addr=1), ErrorCode.M_RANGE, 0),
        (job(a_addr=0x1001), ErrorCode.ALIGN, 0x1001),
        (job(w_addr=0x8001, c_addr=0x20001), ErrorCode.ALIGN, 0x8001),
        (job(c_addr=0x20000 + bb - 1), ErrorCode.ALIGN, 0x20000 + bb - 1),
        (job(a_stride=3 * bb + 1), ErrorCode.ALIGN, 3 * bb + 1),
        (job(c_stride=8 * cols + 2), ErrorCode.ALIGN, 8 * cols + 2),
        (job(a_stride=2 * bb), ErrorCode.STRIDE, 2 * bb),
        (job(c_stride=c_tail - bb), ErrorCode.STRIDE, c_tail - bb),
        (job(a_addr=top - 3 * bb - 2 * 3 * bb), ErrorCode.OK, 0),     # A ends at the top
        (job(a_addr=top - 2 * 3 * bb - 2 * bb), ErrorCode.ADDR_RANGE, top - 2 * 3 * bb - 2 * bb),
        (job(w_addr=top - w_bytes), ErrorCode.OK, 0),
        (job(w_addr=top - w_bytes + bb), ErrorCode.ADDR_RANGE, top - w_bytes + bb),
        # C: two rows of C_STRIDE, then 4*(cols+1) bytes rounded up to whole beats.
        (job(c_addr=top - 2 * 8 * cols - c_tail), ErrorCode.OK, 0),
        (job(c_addr=top - 2 * 8 * cols - c_tail + bb), ErrorCode.ADDR_RANGE, top - 2 * 8 * cols - c_tail + bb),
        (job(w_addr=(1 << 64) - bb), ErrorCode.ADDR_RANGE, (1 << 64) - bb),
        (job(a_addr=top, w_addr=top), ErrorCode.ADDR_RANGE, top),
    ]
    if ports > 1:
        table += [
            # W_STRIDE is checked after C_STRIDE's alignment and before the strides' sizes.
            (job(w_stride=w_stride + 2), ErrorCode.ALIGN, w_stride + 2),
            (job(w_stride=w_stride + 2, c_stride=8 * cols + 2), ErrorCode.ALIGN, 8 * cols + 2),
            (job(w_stride=w_stride + 2, a_stride=2 * bb), ErrorCode.ALIGN, w_stride + 2),
            (job(w_stride=0), ErrorCode.OK, 0),          # the ports may read one stream
            # The last stream ends at the top; one beat more of stride puts it past.
            (job(w_addr=top - w_bytes, w_stride=w_stride + bb), ErrorCode.ADDR_RANGE, top - w_bytes),
        ]
    else:
        table.append((job(w_stride=3), ErrorCode.OK, 0))  # unused with one port
    return table


@pytest.mark.parametrize("name", ["tiny", "kv260"])
def test_check_follows_the_written_rules(name):
    cfg = preset(name)
    for job, code, addr in hand_table(cfg):
        assert check(cfg, job) == (code, addr), job


@pytest.mark.parametrize("name", ["tiny", "kv260"])
def test_jobcheck_matches_the_rules(name):
    """The RTL evaluates the rules of hdl.spec.job; it must agree with ``check`` on every
    boundary and on random jobs near them, reaching every refusal."""
    cfg = preset(name)
    dut = JobCheck(cfg)
    jobs = [job for job, _, _ in hand_table(cfg)] + edge_jobs(cfg, random.Random(name))
    seen = set()

    async def tb(ctx):
        for job in jobs:
            for spec in FIELDS:
                ctx.set(getattr(dut, spec.name), getattr(job, spec.name))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick().until(dut.done)
            code, addr = ctx.get(dut.code), ctx.get(dut.addr)
            want = check(cfg, job)
            assert (code, addr) == (int(want[0]), want[1]), f"{job}: got {code} {addr:#x}"
            seen.add(want[0])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert seen == set(ErrorCode) - {ErrorCode.START_BUSY, ErrorCode.DMA_READ,
                                     ErrorCode.DMA_WRITE, ErrorCode.ABORTED}


def test_jobcheck_latency_is_fixed():
    cfg = preset("small")
    dut = JobCheck(cfg)

    async def tb(ctx):
        ctx.set(dut.m, 1), ctx.set(dut.n, 1), ctx.set(dut.k, 1)
        ctx.set(dut.a_stride, 8), ctx.set(dut.c_stride, 8)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for cycle in range(1, JobCheck.LATENCY):
            assert not ctx.get(dut.done), f"done early at cycle {cycle}"
            await ctx.tick()
        assert ctx.get(dut.done) and ctx.get(dut.code) == ErrorCode.OK
        await ctx.tick()
        assert not ctx.get(dut.done), "done is a one-cycle pulse"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("p_valid,p_ready", [(1.0, 1.0), (0.7, 0.4), (0.3, 0.9)])
def test_skid_buffer_keeps_order_and_rate(p_valid, p_ready):
    dut = SkidBuffer(16)
    rng = random.Random(int(p_valid * 10 + p_ready))
    beats = [rng.randrange(1 << 16) for _ in range(400)]
    got = []
    cycles = {"n": 0}

    async def producer(ctx):
        for beat in beats:
            while rng.random() >= p_valid:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            out_valid = ctx.get(dut.o.valid)
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, beat)
            assert ctx.get(dut.o.valid) == out_valid, "i.valid reaches o.valid combinationally"
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        while len(got) < len(beats):
            ready = rng.random() < p_ready
            ctx.set(dut.o.ready, not ready)
            other = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, ready)
            assert ctx.get(dut.i.ready) == other, "o.ready reaches i.ready combinationally"
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                got.append(payload)
            cycles["n"] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert got == beats
    if p_valid == p_ready == 1.0:
        assert cycles["n"] <= len(beats) + 2, "full throughput when nobody stalls"
