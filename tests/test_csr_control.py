"""Csr's control word (ap_ctrl_hs), interrupts, and the AXI signatures and flat ports.

CTRL follows the Vitis HLS convention; ISR/IER/GIE gate ``irq`` as the register map
says; ``flat_members``/``connect_flat`` carry a nested interface to Vivado-style ports.
"""

import pytest
from amaranth.hdl import Module, Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from hdl.axi import AXI4LiteSignature, AXI4ReadSignature, AXI4Signature, AXI4WriteSignature, connect_flat, flat_members
from hdl.csr import Csr
from hdl.spec.config import preset
from hdl.spec.regmap import by_name

from csr_tb import CONFIG, TB, bit, controller_stub, finish_job


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
