"""A two-entry stream register slice that cuts every combinational path through it."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Registers a stream in both directions at full throughput.

    ``o.valid``/``o.payload`` come from the output register and ``i.ready`` from a
    flip-flop (low only while the skid register holds a beat), so neither the
    producer's ``valid`` nor the consumer's ``ready`` reaches the other side in the
    same cycle. Latency one cycle; one beat per cycle when both sides keep up;
    beats leave in order, none lost or duplicated.

    Fanout: only the two valid flags take a reset (a ``ResetInserter`` around the
    buffer, or the domain's), the payload registers are reset-less; ``o.ready``
    enables only the output payload register, the skid register loads whenever it
    is empty.
    """

    def __init__(self, shape):
        self.shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        skid = Signal(self.shape, reset_less=True)
        out = Signal(self.shape, reset_less=True)
        skid_valid = Signal()
        m.d.comb += [self.i.ready.eq(~skid_valid), self.o.payload.eq(out)]
        with m.If(~skid_valid):
            m.d.sync += skid.eq(self.i.payload)
        with m.If(self.o.ready | ~self.o.valid):
            with m.If(skid_valid):
                m.d.sync += [out.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [out.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~skid_valid):
            m.d.sync += skid_valid.eq(1)
        return m
