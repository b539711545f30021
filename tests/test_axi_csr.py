"""Csr (AXI4-Lite slave + register file) and the AXI helpers, in the Amaranth simulator.

Every register kind is driven from ``regmap.REGISTERS`` so a register added
later is covered without touching this file. A bus monitor checks, on every
transfer of every test, that responses never outnumber requests and that
BVALID/RVALID hold with a stable payload until accepted.
"""

import random

import pytest
from amaranth.hdl import Module, Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from hdl.axi import (AXI4LiteSignature, AXI4ReadSignature, AXI4Signature, AXI4WriteSignature,
                     RESP_OKAY, connect_flat, flat_members)
from hdl.spec.config import preset
from hdl.csr import Csr
from hdl.spec.regmap import REGISTERS, by_name, const_value

CONFIG = preset("small")
MAPPED = {reg.offset for reg in REGISTERS}
UNMAPPED = [offset for offset in range(0, 0x100, 4) if offset not in MAPPED]


def field(reg_name, field_name):
    return next(f for f in by_name(reg_name).fields if f.name == field_name)


def bit(reg_name, field_name):
    return 1 << field(reg_name, field_name).lsb


class TB:
    """A Csr, an AXI4-Lite master with configurable ordering and back-pressure, a monitor."""

    def __init__(self, seed=0):
        self.dut = Csr(CONFIG)
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-8)
        self.rng = random.Random(seed)
        self.pulses = {"start": [], "start_busy": [], "soft_reset": []}
        self.counts = {"aw": 0, "w": 0, "b": 0, "ar": 0, "r": 0}
        self.cycle = 0
        self.sim.add_testbench(self.monitor, background=True)

    async def monitor(self, ctx):
        bus = self.dut.bus
        held_b = held_r = None
        async for (_, _, awv, awr, wv, wr, bv, br, bresp, arv, arr, rv, rr, rdata, rresp,
                   start, start_busy, soft_reset) in ctx.tick().sample(
                       bus.awvalid, bus.awready, bus.wvalid, bus.wready, bus.bvalid,
                       bus.bready, bus.bresp, bus.arvalid, bus.arready, bus.rvalid,
                       bus.rready, bus.rdata, bus.rresp,
                       self.dut.start, self.dut.start_busy, self.dut.soft_reset):
            self.cycle += 1
            for name, value in (("start", start), ("start_busy", start_busy),
                                ("soft_reset", soft_reset)):
                if value:
                    self.pulses[name].append(self.cycle)
            if held_b is not None:
                assert bv and bresp == held_b, f"cycle {self.cycle}: B dropped or changed"
            if held_r is not None:
                assert rv and (rdata, rresp) == held_r, f"cycle {self.cycle}: R dropped or changed"
            held_b = bresp if bv and not br else None
            held_r = (rdata, rresp) if rv and not rr else None
            self.counts["aw"] += awv and awr
            self.counts["w"] += wv and wr
            self.counts["b"] += bv and br
            self.counts["ar"] += arv and arr
            self.counts["r"] += rv and rr
            assert self.counts["b"] <= min(self.counts["aw"], self.counts["w"]), self.counts
            assert self.counts["r"] <= self.counts["ar"], self.counts

    async def write(self, ctx, addr, data, strb=0xF, order="together", gap=0, bready_delay=0):
        """One write; ``order`` aw|w|together says which half goes first, ``gap`` cycles ahead."""
        bus = self.dut.bus
        pending = {"aw": order in ("aw", "together"), "w": order in ("w", "together")}
        late = {"aw": "w", "w": "aw", "together": None}[order]
        ctx.set(bus.awaddr, addr)
        ctx.set(bus.wdata, data)
        ctx.set(bus.wstrb, strb)
        ctx.set(bus.bready, 0)
        done = {"aw": False, "w": False}
        waited = 0
        while not all(done.values()):
            if late and waited >= gap and not done[late]:
                pending[late] = True
            ctx.set(bus.awvalid, pending["aw"] and not done["aw"])
            ctx.set(bus.wvalid, pending["w"] and not done["w"])
            _, _, awv, awr, wv, wr = await ctx.tick().sample(
                bus.awvalid, bus.awready, bus.wvalid, bus.wready)
            done["aw"] |= bool(awv and awr)
            done["w"] |= bool(wv and wr)
            waited += 1
            assert waited < 50, "write request not accepted"
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        await self._response(ctx, bus.bvalid, bus.bready, bus.bresp, bready_delay)

    async def read(self, ctx, addr, rready_delay=0):
        bus = self.dut.bus
        ctx.set(bus.araddr, addr)
        ctx.set(bus.arvalid, 1)
        ctx.set(bus.rready, 0)
        await ctx.tick().until(bus.arready)
        ctx.set(bus.arvalid, 0)
        return await self._response(ctx, bus.rvalid, bus.rready, bus.rresp, rready_delay,
                                    bus.rdata)

    async def _response(self, ctx, valid, ready, resp, delay, payload=None):
        for _ in range(delay):
            await ctx.tick()
        ctx.set(ready, 1)
        waited = 0
        while True:
            _, _, v, value, data = await ctx.tick().sample(
                valid, resp, payload if payload is not None else resp)
            if v:
                break
            waited += 1
            assert waited < 20, "no response"
        ctx.set(ready, 0)
        assert value == RESP_OKAY
        return data

    def run(self, testbench):
        self.sim.add_testbench(testbench)
        self.sim.run()
        assert self.counts["aw"] == self.counts["w"] == self.counts["b"]
        assert self.counts["ar"] == self.counts["r"]


def port(dut, reg):
    return getattr(dut, reg.name.lower())


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


def controller_stub(dut):
    """A testbench raising ``busy`` the cycle after ``start``, as the controller does."""
    async def stub(ctx):
        async for _, _, start in ctx.tick().sample(dut.start):
            if start:
                ctx.set(dut.busy, 1)
    return stub


async def finish_job(ctx, dut):
    ctx.set(dut.busy, 0)
    ctx.set(dut.done, 1)
    await ctx.tick()
    ctx.set(dut.done, 0)


def test_ctrl_follows_ap_ctrl_hs():
    tb = TB(seed=6)
    dut = tb.dut
    ctrl = by_name("CTRL").offset
    start, done, idle, ready = (bit("CTRL", f) for f in ("ap_start", "ap_done", "ap_idle", "ap_ready"))
    soft_reset, auto_restart = bit("CTRL", "soft_reset"), bit("CTRL", "auto_restart")
    tb.sim.add_testbench(controller_stub(dut), background=True)

    async def testbench(ctx):
        assert await tb.read(ctx, ctrl) == idle
        await tb.write(ctx, ctrl, start | auto_restart)
        assert len(tb.pulses["start"]) == 1 and not tb.pulses["start_busy"]
        assert ctx.get(dut.busy)
        value = await tb.read(ctx, ctrl)
        assert value & (idle | done | ready | auto_restart) == 0
        # ap_start while busy is refused and flagged.
        await tb.write(ctx, ctrl, start)
        assert len(tb.pulses["start"]) == 1 and len(tb.pulses["start_busy"]) == 1
        # Writing 0 to ap_start does nothing; WSTRB without lane 0 does nothing.
        await tb.write(ctx, ctrl, 0)
        await tb.write(ctx, ctrl, start, strb=0b1110)
        assert len(tb.pulses["start"]) + len(tb.pulses["start_busy"]) == 2
        await finish_job(ctx, dut)
        assert await tb.read(ctx, ctrl) == idle | done | ready
        assert await tb.read(ctx, ctrl) == idle                  # clear on read
        # A done in the same cycle as the clearing read is not lost.
        await tb.write(ctx, ctrl, start)
        bus = dut.bus
        ctx.set(dut.busy, 0)
        ctx.set(bus.araddr, ctrl)
        ctx.set(bus.arvalid, 1)
        ctx.set(dut.done, 1)
        _, _, arready = await ctx.tick().sample(bus.arready)
        assert arready
        ctx.set(bus.arvalid, 0)
        ctx.set(dut.done, 0)
        ctx.set(bus.rready, 1)
        await ctx.tick()
        ctx.set(bus.rready, 0)
        assert await tb.read(ctx, ctrl) == idle | done | ready
        # soft_reset pulses once per write of 1, reads back 0, needs lane 1.
        await tb.write(ctx, ctrl, soft_reset)
        assert len(tb.pulses["soft_reset"]) == 1
        await tb.write(ctx, ctrl, soft_reset, strb=0b0001)
        assert len(tb.pulses["soft_reset"]) == 1
        assert await tb.read(ctx, ctrl) & soft_reset == 0
        for name in ("start", "start_busy", "soft_reset"):
            cycles = tb.pulses[name]
            assert all(b - a > 1 for a, b in zip(cycles, cycles[1:])), (name, cycles)

    tb.run(testbench)


@pytest.mark.parametrize("isr_field", [f.name for f in by_name("ISR").fields])
def test_isr_ier_gie_and_irq(isr_field):
    tb = TB(seed=7)
    dut = tb.dut
    ctrl, gie, ier, isr = (by_name(n).offset for n in ("CTRL", "GIE", "IER", "ISR"))
    mask = bit("ISR", isr_field)
    enable = bit("IER", isr_field)
    gie_on = bit("GIE", "enable")
    interrupt = bit("CTRL", "interrupt")

    async def expect_irq(ctx, level):
        assert ctx.get(dut.irq) == level
        assert bool(await tb.read(ctx, ctrl) & interrupt) == bool(level)

    async def testbench(ctx):
        await finish_job(ctx, dut)                       # IER off: no ISR bit
        assert await tb.read(ctx, isr) == 0
        await tb.write(ctx, ier, enable)
        await tb.write(ctx, gie, gie_on)
        await expect_irq(ctx, 0)
        await finish_job(ctx, dut)
        assert await tb.read(ctx, isr) == mask
        await expect_irq(ctx, 1)
        await tb.write(ctx, gie, 0)                      # GIE gates irq, not ISR
        await expect_irq(ctx, 0)
        assert await tb.read(ctx, isr) == mask
        await tb.write(ctx, gie, gie_on)
        await expect_irq(ctx, 1)
        await tb.write(ctx, isr, mask)                   # toggle on write 1: clears
        assert await tb.read(ctx, isr) == 0
        await expect_irq(ctx, 0)
        await tb.write(ctx, isr, mask)                   # toggle on write 1: sets
        assert await tb.read(ctx, isr) == mask
        await expect_irq(ctx, 1)
        await tb.write(ctx, ier, 0)                      # IER gates irq too
        await expect_irq(ctx, 0)
        await tb.write(ctx, isr, mask, strb=0)           # no lane: no toggle
        assert await tb.read(ctx, isr) == mask
        await tb.write(ctx, isr, 0)                      # writing 0 keeps it
        assert await tb.read(ctx, isr) == mask

    tb.run(testbench)


class _FlatTop(wiring.Component):
    """A top with flat ports around a Csr, as SystoleTop builds them."""

    def __init__(self):
        members = {"irq": Out(1)}
        members.update(flat_members("s_axi_ctrl", AXI4LiteSignature().flip()))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.csr = csr = Csr(CONFIG)
        connect_flat(m, self, "s_axi_ctrl", csr.bus)
        m.d.comb += self.irq.eq(csr.irq)
        return m


def test_flat_ports_carry_the_nested_interface():
    top = _FlatTop()
    lite = AXI4LiteSignature()
    assert {name for name in top.signature.members if name != "irq"} == \
        {f"s_axi_ctrl_{name}" for name in lite.members}
    assert top.signature.members["s_axi_ctrl_awaddr"].flow == wiring.In
    assert top.signature.members["s_axi_ctrl_rdata"].flow == wiring.Out
    sim = Simulator(top)
    sim.add_clock(1e-8)
    reg = by_name("N")
    result = {}

    async def testbench(ctx):
        for name, value in (("awaddr", reg.offset), ("wdata", 1234), ("wstrb", 0xF),
                            ("awvalid", 1), ("wvalid", 1), ("bready", 1)):
            ctx.set(getattr(top, f"s_axi_ctrl_{name}"), value)
        await ctx.tick().until(top.s_axi_ctrl_bvalid)
        ctx.set(top.s_axi_ctrl_awvalid, 0)
        ctx.set(top.s_axi_ctrl_wvalid, 0)
        ctx.set(top.s_axi_ctrl_araddr, reg.offset)
        ctx.set(top.s_axi_ctrl_arvalid, 1)
        ctx.set(top.s_axi_ctrl_rready, 1)
        (result["rdata"],) = await ctx.tick().sample(top.s_axi_ctrl_rdata).until(
            top.s_axi_ctrl_rvalid)

    sim.add_testbench(testbench)
    sim.run()
    assert result["rdata"] == 1234


def test_axi4_signatures_split_into_read_and_write():
    config = preset("kv260")
    full, read, write = AXI4Signature(config), AXI4ReadSignature(config), AXI4WriteSignature(config)
    assert set(full.members) == set(read.members) | set(write.members)
    assert not set(read.members) & set(write.members)
    assert full.members["araddr"].flow == wiring.Out and full.members["rdata"].flow == wiring.In
    assert Shape.cast(full.members["wstrb"].shape).width == config.bus_bytes
    assert Shape.cast(full.members["awaddr"].shape).width == config.addr_width == 40
    assert AXI4ReadSignature(config) == read and AXI4ReadSignature(preset("small")) != read
    with pytest.raises(ValueError, match="data_width=48"):
        AXI4LiteSignature(data_width=48)
