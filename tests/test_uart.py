"""hdl/uart.py on the Amaranth simulator: the transmitter's line is decoded by a
reference 8N1 decoder in the test, and UartTx -> UartRx loops bytes back unchanged."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hdl.uart import UartRx, UartTx, divisor_for


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_loopback_and_line_timing(divisor):
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    rng = random.Random(divisor)
    sent = [0x00, 0xFF, 0x55, 0xAA] + [rng.randrange(256) for _ in range(12)]
    received, line = [], []

    async def producer(ctx):
        for byte in sent:
            ctx.set(tx.data.payload, byte)
            ctx.set(tx.data.valid, 1)
            await ctx.tick().until(tx.data.ready)
            ctx.set(tx.data.valid, 0)

    async def consumer(ctx):
        ctx.set(rx.data.ready, 1)
        while len(received) < len(sent):
            await ctx.tick()
            assert not ctx.get(rx.overrun) and not ctx.get(rx.framing_error)
            if ctx.get(rx.data.valid):
                received.append(ctx.get(rx.data.payload))

    async def probe(ctx):
        async for _, _, level in ctx.tick().sample(tx.tx):
            line.append(level)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_process(probe)
    sim.run_until(1e-8 * (len(sent) + 2) * 10 * divisor + 1e-6)
    assert received == sent

    # Reference decoder on the sampled line: start edge, then the middle of each bit.
    decoded, t = [], 0
    while t < len(line) and len(decoded) < len(sent):
        if line[t] == 0:
            bits = [line[t + divisor // 2 + divisor * (i + 1)] for i in range(9)]
            assert bits[8] == 1, "stop bit must be high"
            decoded.append(sum(bit << i for i, bit in enumerate(bits[:8])))
            t += 10 * divisor - divisor // 2          # resume inside the stop bit
        else:
            t += 1
    assert decoded == sent


def test_framing_error_and_glitch_are_not_bytes():
    divisor = 8
    dut = UartRx(divisor)
    events = []

    async def drive(ctx):
        ctx.set(dut.data.ready, 1)
        await ctx.tick().repeat(5)
        ctx.set(dut.rx, 0)                             # glitch: low for 2 cycles only
        await ctx.tick().repeat(2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * divisor)
        for bit in [0] + [1, 0] * 4 + [0]:             # stop bit low: framing error
            ctx.set(dut.rx, bit)
            await ctx.tick().repeat(divisor)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * divisor)
        for bit in [0] + [1, 1, 0, 0, 1, 0, 1, 0] + [1]:   # 0x53, valid
            ctx.set(dut.rx, bit)
            await ctx.tick().repeat(divisor)
        await ctx.tick().repeat(2 * divisor)

    async def watch(ctx):
        async for _, _, valid, payload, framing in ctx.tick().sample(dut.data.valid, dut.data.payload,
                                                                      dut.framing_error):
            if framing:
                events.append("framing")
            if valid:
                events.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.add_process(watch)
    sim.run_until(1e-8 * 40 * divisor)
    assert events == ["framing", 0x53]


def test_divisor_for_checks_the_baud_error():
    assert divisor_for(100e6, 921_600) == 109
    assert divisor_for(100e6, 115_200) == 868
    with pytest.raises(ValueError, match="too fast"):
        divisor_for(10e6, 4_000_000)
    with pytest.raises(ValueError, match="off by"):
        divisor_for(12e6, 2_500_000)
