"""The Csr testbench (Amaranth simulator): an AXI4-Lite master and a bus monitor.

The master orders AW and W as asked and back-pressures B and R; the monitor checks,
on every transfer of every test, that responses never outnumber requests and that
BVALID/RVALID hold with a stable payload until accepted. Used by
``test_csr_registers.py`` and ``test_csr_control.py``.
"""

import random

from amaranth.sim import Simulator

from hdl.axi import RESP_OKAY
from hdl.csr import Csr
from hdl.spec.config import preset
from hdl.spec.regmap import REGISTERS, by_name

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
