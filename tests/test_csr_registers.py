"""Csr's register file through its AXI4-Lite slave (Amaranth simulator).

Every register kind is driven from ``hdl.spec.regmap.REGISTERS`` so a register added
later is covered without touching this file; AW and W arrive in every order, with
gaps, and requests overlap held responses.
"""


import pytest

from hdl.spec.regmap import REGISTERS, by_name, const_value

from csr_tb import CONFIG, TB, UNMAPPED, port


def test_rw_registers_store_values_and_honour_wstrb():
    tb = TB(seed=1)
    rw = [reg for reg in REGISTERS if reg.kind == "rw"]
    assert rw, "the register map has rw registers"

    async def testbench(ctx):
        expected = {}
        for reg in rw:
            value = tb.rng.getrandbits(32)
            await tb.write(ctx, reg.offset, value)
            expected[reg.name] = value & ((1 << reg.width) - 1)
        for reg in rw:
            assert await tb.read(ctx, reg.offset) == expected[reg.name], reg.name
            assert ctx.get(port(tb.dut, reg)) == expected[reg.name], reg.name
        # Every single-lane and a two-lane strobe: only those bytes change.
        for reg in rw:
            for strb in (0b0001, 0b0010, 0b0100, 0b1000, 0b0110, 0b0000):
                value = tb.rng.getrandbits(32)
                await tb.write(ctx, reg.offset, value, strb=strb)
                mask = sum(0xFF << 8 * lane for lane in range(4) if strb >> lane & 1)
                mask &= (1 << reg.width) - 1
                expected[reg.name] = expected[reg.name] & ~mask | value & mask
                assert await tb.read(ctx, reg.offset) == expected[reg.name], (reg.name, strb)
                assert ctx.get(port(tb.dut, reg)) == expected[reg.name]

    tb.run(testbench)


def test_status_and_const_registers_read_their_sources():
    tb = TB(seed=2)

    async def testbench(ctx):
        for reg in REGISTERS:
            if reg.kind == "status":
                for _ in range(3):
                    value = tb.rng.getrandbits(reg.width)
                    ctx.set(port(tb.dut, reg), value)
                    assert await tb.read(ctx, reg.offset) == value, reg.name
                await tb.write(ctx, reg.offset, 0xFFFF_FFFF)     # read-only: ignored
                assert await tb.read(ctx, reg.offset) == value, reg.name
            elif reg.kind == "const":
                await tb.write(ctx, reg.offset, ~const_value(reg, CONFIG) & 0xFFFF_FFFF)
                assert await tb.read(ctx, reg.offset) == const_value(reg, CONFIG), reg.name

    tb.run(testbench)


def test_unmapped_offsets_read_zero_and_ignore_writes():
    tb = TB(seed=3)
    assert UNMAPPED

    async def snapshot(ctx):
        return {reg.name: await tb.read(ctx, reg.offset) for reg in REGISTERS
                if reg.kind in ("rw", "isr")}

    async def testbench(ctx):
        for reg in REGISTERS:
            if reg.kind == "rw":
                await tb.write(ctx, reg.offset, tb.rng.getrandbits(32))
        before = await snapshot(ctx)
        for offset in UNMAPPED:
            await tb.write(ctx, offset, 0xFFFF_FFFF)
            assert await tb.read(ctx, offset) == 0, hex(offset)
        # Sub-word addresses select the same word.
        reg = next(r for r in REGISTERS if r.kind == "const")
        assert await tb.read(ctx, reg.offset + 3) == const_value(reg, CONFIG)
        assert await snapshot(ctx) == before
        assert not tb.pulses["start"] and not tb.pulses["soft_reset"]

    tb.run(testbench)


@pytest.mark.parametrize("order,gap", [("together", 0), ("aw", 1), ("aw", 6), ("w", 1), ("w", 6)])
def test_aw_and_w_in_any_order_one_response_each(order, gap):
    tb = TB(seed=4)
    reg = by_name("A_ADDR_LO")

    async def testbench(ctx):
        for i in range(4):
            value = tb.rng.getrandbits(32)
            await tb.write(ctx, reg.offset, value, order=order, gap=gap, bready_delay=i * 3)
            assert await tb.read(ctx, reg.offset, rready_delay=i * 2) == value

    tb.run(testbench)
    assert tb.counts["b"] == 4 and tb.counts["r"] == 4


def test_overlapping_requests_are_each_answered_once():
    """AW and W for the next write arrive while B is still held; reads meanwhile."""
    tb = TB(seed=5)
    bus = tb.dut.bus
    m_reg, k_reg = by_name("M"), by_name("K")

    async def testbench(ctx):
        ctx.set(bus.bready, 0)
        for value in (5, 6):
            ctx.set(bus.awaddr, m_reg.offset)
            ctx.set(bus.wdata, value)
            ctx.set(bus.wstrb, 0xF)
            ctx.set(bus.awvalid, 1)
            ctx.set(bus.wvalid, 1)
            _, _, awr, wr = await ctx.tick().sample(bus.awready, bus.wready)
            assert awr and wr
            ctx.set(bus.awvalid, 0)
            ctx.set(bus.wvalid, 0)
            await ctx.tick()
        # The first write's B is held; the second pair waits in the slave.
        for _ in range(5):
            assert ctx.get(bus.bvalid)
            await ctx.tick()
        assert ctx.get(tb.dut.m) == 5
        ctx.set(bus.awvalid, 1)        # a third AW cannot be taken yet
        await ctx.tick()
        assert not ctx.get(bus.awready)
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.bready, 1)
        _, _, bvalid = await ctx.tick().sample(bus.bvalid)
        assert bvalid
        ctx.set(bus.bready, 0)
        await ctx.tick()
        await ctx.tick()
        assert ctx.get(tb.dut.m) == 6 and ctx.get(bus.bvalid)
        ctx.set(bus.bready, 1)
        await ctx.tick()
        ctx.set(bus.bready, 0)
        assert await tb.read(ctx, m_reg.offset) == 6
        await tb.write(ctx, k_reg.offset, 3)
        # A second AR while R is held waits; both get their own data.
        ctx.set(bus.araddr, m_reg.offset)
        ctx.set(bus.arvalid, 1)
        await ctx.tick().until(bus.arready)
        ctx.set(bus.araddr, k_reg.offset)
        for _ in range(4):
            await ctx.tick()
            assert not ctx.get(bus.arready) and ctx.get(bus.rdata) == 6
        ctx.set(bus.rready, 1)
        _, _, rvalid, rdata = await ctx.tick().sample(bus.rvalid, bus.rdata)
        assert rvalid and rdata == 6
        ctx.set(bus.rready, 0)
        await ctx.tick().until(bus.arready)
        ctx.set(bus.arvalid, 0)
        ctx.set(bus.rready, 1)
        (rdata,) = await ctx.tick().sample(bus.rdata).until(bus.rvalid)
        ctx.set(bus.rready, 0)
        assert rdata == 3
        await tb.write(ctx, k_reg.offset, 7)
        assert await tb.read(ctx, k_reg.offset) == 7

    tb.run(testbench)
    assert tb.counts["b"] == 4 and tb.counts["r"] == 4
