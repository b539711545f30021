"""cocotb: the PE's generated Verilog against a numpy model of its MAC contract."""

import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sim.runner import BUILD, run_cocotb, write_verilog


class TB:
    def __init__(self, dut):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def reset(self):
        self.dut.rst.value = 1
        for name in ("a", "w", "valid", "first", "last"):
            getattr(self.dut, name).value = 0
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0


@cocotb.test()
async def pe_matches_numpy_dot_products(dut):
    """Random tiles of random length with bubbles: result == exact dot product."""
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(1)
    for tile in range(40):
        length = rng.choice([1, 2, 3, 17, 64])
        extremes = tile % 4 == 0
        a = [rng.choice([-128, 127]) if extremes else rng.randint(-128, 127) for _ in range(length)]
        w = [rng.choice([-128, 127]) if extremes else rng.randint(-128, 127) for _ in range(length)]
        for k in range(length):
            while rng.random() < 0.2:          # bubble: valid low must not disturb the sum
                dut.valid.value = 0
                dut.a.value = rng.randint(-128, 127)
                dut.w.value = rng.randint(-128, 127)
                await RisingEdge(dut.clk)
            dut.a.value, dut.w.value = a[k], w[k]
            dut.valid.value = 1
            dut.first.value = int(k == 0)
            dut.last.value = int(k == length - 1)
            await RisingEdge(dut.clk)
        dut.valid.value = 0
        await RisingEdge(dut.clk)           # products of the last beat reach result (latency 2)
        await ReadOnly()
        assert dut.result_valid.value == 1
        expected = int(np.dot(np.array(a, np.int64), np.array(w, np.int64)))
        assert dut.result.value.to_signed() == expected, (tile, length)
        assert dut.w_out.value.to_signed() == w[-1]
        await RisingEdge(dut.clk)


def test_pe_verilator():
    from hdl.pe import PE
    path = write_verilog(PE(), "pe", BUILD / "sim" / "src" / "pe.v")
    run_cocotb(sources=[path], toplevel="pe", test_module="sim.test_pe")
