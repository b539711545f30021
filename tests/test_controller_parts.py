"""JobCheck and SkidBuffer on the Amaranth simulator.

JobCheck is compared with a plain-Python statement of the argument rules
(hdl/README.md, ErrorCode docs) on hand-picked edge cases and random argument
sets that are near every boundary. SkidBuffer must pass every beat once, in
order, under random valid/ready, with ready never depending on valid.
"""

import random

import pytest
from amaranth.sim import Simulator

from hdl.config import preset
from hdl.jobcheck import JobCheck
from hdl.regmap import ErrorCode
from hdl.skid import SkidBuffer


def reference_check(cfg, a, w, c, m, n, k, a_stride, c_stride):
    """(code, addr) the rules give for one job."""
    bb = cfg.bus_bytes
    top = 1 << cfg.addr_width

    def ceil_to(x, step):
        return -(-x // step) * step

    if not 1 <= m <= cfg.max_mn:
        return ErrorCode.M_RANGE, 0
    if not 1 <= n <= cfg.max_mn:
        return ErrorCode.N_RANGE, 0
    if k == 0:
        return ErrorCode.K_RANGE, 0
    if k > cfg.max_k:
        return ErrorCode.A_OVERFLOW, 0
    for value in (a, w, c, a_stride, c_stride):
        if value % bb:
            return ErrorCode.ALIGN, value
    if a_stride < k:
        return ErrorCode.STRIDE, a_stride
    if c_stride < 4 * n:
        return ErrorCode.STRIDE, c_stride
    extents = [
        (a, (m - 1) * a_stride + ceil_to(k, bb)),
        (w, -(-n // cfg.cols) * k * bb),
        (c, (m - 1) * c_stride + ceil_to(4 * n, bb)),
    ]
    for base, size in extents:
        if base + size > top:
            return ErrorCode.ADDR_RANGE, base
    return ErrorCode.OK, 0


def edge_cases(cfg, rng):
    bb = cfg.bus_bytes
    top = 1 << cfg.addr_width
    good = dict(a=0x1000, w=0x8000, c=0x20000, m=3, n=cfg.cols + 1, k=2 * bb + 1,
                a_stride=3 * bb, c_stride=8 * bb)
    cases = [good, {**good, "m": 0}, {**good, "n": 0}, {**good, "k": 0},
             {**good, "k": cfg.max_k, "a_stride": cfg.max_k},
             {**good, "k": cfg.max_k + 1, "a_stride": cfg.max_k + bb},
             {**good, "m": (1 << 24) - 1}, {**good, "n": (1 << 24) - 1},
             {**good, "a": top - 3 * 3 * bb}, {**good, "a": top - 3 * 3 * bb + bb},
             {**good, "c": top - 2 * 8 * bb - 4 * bb * 2}, {**good, "c": top - 2 * 8 * bb - 2 * bb},
             {**good, "w": (1 << 64) - bb}, {**good, "a": 1, "m": 0}]
    for _ in range(120):
        case = dict(good)
        for key in rng.sample(sorted(good), rng.randint(1, 3)):
            if key in ("a", "w", "c"):
                case[key] = rng.choice([top - rng.randrange(0, 1 << 16) * bb,
                                        rng.randrange(0, 1 << 20) * bb + rng.choice([0, 0, 1]),
                                        top + rng.randrange(0, 4) * bb])
            elif key in ("m", "n"):
                case[key] = rng.choice([0, 1, rng.randrange(1, 1 << 24), (1 << 24) - 1])
            elif key == "k":
                case[key] = rng.choice([0, 1, cfg.max_k, cfg.max_k + 1, rng.randrange(1, 1 << 16)])
            else:
                case[key] = rng.choice([0, bb, rng.randrange(0, 1 << 32), case[key] + 1,
                                        (1 << 32) - bb])
        cases.append(case)
    return cases


@pytest.mark.parametrize("name", ["tiny", "kv260"])
def test_jobcheck_matches_rules(name):
    cfg = preset(name)
    dut = JobCheck(cfg)
    cases = edge_cases(cfg, random.Random(name))
    seen = set()

    async def tb(ctx):
        for case in cases:
            for key, port in (("a", dut.a_addr), ("w", dut.w_addr), ("c", dut.c_addr), ("m", dut.m),
                              ("n", dut.n), ("k", dut.k), ("a_stride", dut.a_stride),
                              ("c_stride", dut.c_stride)):
                ctx.set(port, case[key])
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick().until(dut.done)
            code, addr = ctx.get(dut.code), ctx.get(dut.addr)
            want = reference_check(cfg, case["a"], case["w"], case["c"], case["m"], case["n"],
                                   case["k"], case["a_stride"], case["c_stride"])
            assert (code, addr) == (int(want[0]), want[1]), f"{case}: got {code} {addr:#x}"
            seen.add(want[0])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    refusals = {ErrorCode.M_RANGE, ErrorCode.N_RANGE, ErrorCode.K_RANGE, ErrorCode.A_OVERFLOW,
                ErrorCode.ALIGN, ErrorCode.STRIDE, ErrorCode.ADDR_RANGE, ErrorCode.OK}
    assert refusals <= seen, f"cases never produced {refusals - seen}"


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
