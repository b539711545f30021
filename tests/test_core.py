"""Compute core (ActBuffer + Feeder + Skew + SystolicArray + Drain) on the Amaranth
simulator, checked against host.accel.golden on random blocks with stalls on both sides,
int8 and int4 weights (hdl.spec.formats) mixed."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.core import ComputeCore
from hdl.skew import Skew
from hdl.spec.config import preset
from host.accel.golden import golden_matmul
from hdl.spec.formats import WeightFormat
from host.accel.pack import Int4Weights, pack_int4, pack_weights

C_BASE = 0x1000


def run_blocks(config, blocks, *, weight_gap, write_stall, seed):
    """Run ``blocks`` = [(A [vr, K] int8, W [N, K] int8 or Int4Weights)] through one
    core, one after the other; return the bytes written per block as {address: byte}
    dicts."""
    dut = ComputeCore(config)
    rng = random.Random(seed)
    bb = config.bus_bytes
    written = [dict() for _ in blocks]
    commands = [[] for _ in blocks]
    state = {"block": 0, "done": False}

    async def controller(ctx):
        for index, (a, w) in enumerate(blocks):
            state["block"] = index
            rows_valid, k = a.shape
            packed = pack(config, w)
            # Held for the whole block, A loading included (int4 writes a pair of rows).
            ctx.set(dut.pair, packed.format is WeightFormat.INT4)
            words = -(-k // bb)
            padded = np.zeros((rows_valid, words * bb), np.int8)
            padded[:, :k] = a
            for r in range(rows_valid):
                for j in range(words):
                    ctx.set(dut.act_write_en, 1)
                    ctx.set(dut.act_write_row, r)
                    ctx.set(dut.act_write_word, j)
                    ctx.set(dut.act_write_data,
                            int.from_bytes(padded[r, j * bb:(j + 1) * bb].tobytes(), "little"))
                    await ctx.tick()
            ctx.set(dut.act_write_en, 0)
            ctx.set(dut.beats, packed.tile_beats)
            ctx.set(dut.n, w.shape[0])
            ctx.set(dut.rows_valid, rows_valid)
            ctx.set(dut.c_addr, C_BASE)
            ctx.set(dut.c_stride, 4 * w.shape[0] + 3 * bb)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            # One core beat is one beat of every weight port, side by side.
            beats = packed.streams().transpose(1, 2, 0, 3).reshape(-1, config.cols)
            for beat in beats:
                while rng.random() < weight_gap:
                    ctx.set(dut.weights.valid, 0)
                    await ctx.tick()
                ctx.set(dut.weights.valid, 1)
                ctx.set(dut.weights.payload, int.from_bytes(beat.tobytes(), "little"))
                await ctx.tick().until(dut.weights.ready)
            ctx.set(dut.weights.valid, 0)
            assert ctx.get(dut.block_done)
            await ctx.tick().until(dut.idle)
            # The writer side may still hold the last beat in its queue; let it settle.
            for _ in range(8):
                await ctx.tick()
        state["done"] = True

    async def writer(ctx):
        pending = []          # (addr, beats) commands not yet matched with data
        current = None        # [addr, beats_left]
        while not state["done"]:
            ctx.set(dut.write_cmd.ready, rng.random() >= write_stall)
            ctx.set(dut.write_data.ready, rng.random() >= write_stall)
            _, _, cmd_valid, cmd_ready, cmd, data_valid, data_ready, beat = await ctx.tick().sample(
                dut.write_cmd.valid, dut.write_cmd.ready, dut.write_cmd.payload,
                dut.write_data.valid, dut.write_data.ready, dut.write_data.payload)
            block = state["block"]
            if cmd_valid and cmd_ready:
                pending.append([cmd.addr, cmd.beats])
                commands[block].append((cmd.addr, cmd.beats))
            if data_valid and data_ready:
                if current is None or current[1] == 0:
                    assert pending, "data beat before its command"
                    current = pending.pop(0)
                raw = beat.data.to_bytes(bb, "little")
                for lane in range(bb):
                    if beat.strb >> lane & 1:
                        addr = current[0] + lane
                        assert addr not in written[block], f"byte {addr:#x} written twice"
                        written[block][addr] = raw[lane]
                current[0] += bb
                current[1] -= 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(controller)
    sim.add_testbench(writer, background=True)
    sim.run()
    return written, commands


def pack(config, w):
    if isinstance(w, Int4Weights):
        return pack_int4(w, config.cols, config.weight_ports)
    return pack_weights(w, config.cols, config.weight_ports)


def expected_bytes(config, a, w):
    """{address: byte} of C rows as the drain must write them (only valid rows/cols)."""
    c = golden_matmul(a, pack(config, w))
    stride = 4 * w.shape[0] + 3 * config.bus_bytes
    out = {}
    for r, row in enumerate(c):
        for i, byte in enumerate(row.astype("<i4").tobytes()):
            out[C_BASE + r * stride + i] = byte
    return out


def random_block(rng, config, rows_valid, k, n, extremes=False, int4=False):
    if extremes:
        a = rng.choice(np.array([-128, 127], np.int8), size=(rows_valid, k))
    else:
        a = rng.integers(-128, 128, size=(rows_valid, k), dtype=np.int8)
    if int4:
        groups = -(-k // 32)
        if extremes:    # the 4-bit range's ends, and the scales' (0 and 15)
            q = rng.choice(np.array([-8, 7], np.int8), size=(n, k))
            s = rng.choice(np.array([0, 15, 15], np.uint8), size=(n, groups))
        else:
            q = rng.integers(-8, 8, size=(n, k), dtype=np.int8)
            s = rng.integers(0, 16, size=(n, groups), dtype=np.uint8)
        return a, Int4Weights(q, s)
    if extremes:
        w = rng.choice(np.array([-128, 127], np.int8), size=(n, k))
    else:
        w = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
    return a, w


CASES = [
    # preset, [(rows_valid, K, N, extremes)], weight_gap, write_stall
    ("tiny", [(2, 7, 9, False), (1, 1, 4, False), (2, 128, 5, True), (1, 3, 1, False)], 0.0, 0.0),
    ("tiny", [(2, 5, 13, False), (2, 1, 8, True), (1, 16, 3, False)], 0.3, 0.5),
    ("small", [(4, 24, 19, False), (3, 1, 17, False), (4, 1024, 8, True)], 0.0, 0.0),
    ("small", [(2, 9, 24, False), (4, 2, 33, False)], 0.25, 0.6),
    # int4 (a token per pair of rows: tiny's blocks hold 1, small4's 2) mixed with int8,
    # K across the 64-step blocks' edges, odd K, K = 1.
    ("tiny", [(1, 7, 9, False, True), (2, 5, 8, False), (1, 128, 17, True, True), (1, 1, 3, False, True),
              (1, 65, 8, False, True)], 0.0, 0.0),
    ("tiny", [(1, 100, 13, False, True), (2, 3, 8, True), (1, 64, 16, True, True)], 0.3, 0.5),
    ("small4", [(2, 130, 19, False, True), (3, 24, 9, False), (1, 1024, 8, True, True),
                (2, 33, 8, False, True)], 0.0, 0.0),
    ("small4", [(2, 63, 24, False, True), (1, 200, 17, False, True)], 0.25, 0.6),
]


def config_named(name):
    """A preset, or ``small4``: the small preset with int4 (small itself runs int8 only)."""
    return preset("small").replace(int4=True) if name == "small4" else preset(name)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_core_matches_golden(case):
    name, shapes, weight_gap, write_stall = CASES[case]
    config = config_named(name)
    rng = np.random.default_rng(case)
    blocks = [random_block(rng, config, *shape) for shape in shapes]
    written, commands = run_blocks(config, blocks, weight_gap=weight_gap,
                                   write_stall=write_stall, seed=case)
    for (a, w), got, cmds in zip(blocks, written, commands):
        rows_valid, n = a.shape[0], w.shape[0]
        tiles = -(-n // config.cols)
        assert len(cmds) == rows_valid * tiles, "one write command per valid row per tile"
        assert got == expected_bytes(config, a, w)


def test_skew_delays_lane_n_by_n_cycles():
    dut = Skew(4, 8)
    seen = []

    async def tb(ctx):
        for step in range(10):
            ctx.set(dut.i, [step] * 4)
            _, _, out = await ctx.tick().sample(dut.o)
            seen.append([int(out[lane]) for lane in range(4)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    for step in range(4, 10):
        assert seen[step] == [step - lane for lane in range(4)]
