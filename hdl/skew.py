"""Delay lines that skew the array's inputs into a wavefront."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Skew"]


class Skew(wiring.Component):
    """``lanes`` parallel delay lines; lane ``n`` is delayed by ``n`` cycles.

    In front of the array, row ``r`` of activations is delayed ``r`` cycles and
    column ``c`` of weights (with its flags) ``c`` cycles, so the operands of step
    ``k`` meet in PE ``(r, c)`` at the same time. Lane 0 is a wire; every other
    lane is a chain of plain registers (no enable: the array never stalls, bubbles
    travel as ``valid = 0``), which synthesis maps to SRL shift registers.
    """

    def __init__(self, lanes: int, shape):
        if lanes < 1:
            raise ValueError(f"lanes={lanes} must be at least 1")
        self.lanes = lanes
        self.shape = shape
        super().__init__({
            "i": In(data.ArrayLayout(shape, lanes)),
            "o": Out(data.ArrayLayout(shape, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        for lane in range(self.lanes):
            stage = self.i[lane]
            for step in range(lane):
                delayed = Signal(self.shape, name=f"lane{lane}_d{step + 1}")
                m.d.sync += delayed.eq(stage)
                stage = delayed
            m.d.comb += self.o[lane].eq(stage)
        return m
