"""One processing element: an int8 x int8 -> int32 multiply-accumulate."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PE"]


class PE(wiring.Component):
    """Output-stationary int8 MAC with registered pass-through (one systolic cell).

    Timing: every input is registered once. ``a`` leaves on ``a_out`` one cycle
    later (to the right neighbour); ``w`` and the flags leave on ``w_out``/``*_out``
    one cycle later (to the neighbour below).

    When ``valid``: ``acc <= (first ? 0 : acc) + a * w``. When ``valid & last`` the
    same sum is also written to ``result`` (the second accumulator of the double
    buffer), which then holds still until the next tile's ``last``. The sum of up to
    2^17 products of int8 values fits the 32-bit accumulator; one multiplier and
    one adder map to a single DSP slice.
    """

    a: In(signed(8))
    w: In(signed(8))
    valid: In(1)
    first: In(1)
    last: In(1)

    a_out: Out(signed(8))
    w_out: Out(signed(8))
    valid_out: Out(1)
    first_out: Out(1)
    last_out: Out(1)

    result: Out(signed(32))

    def elaborate(self, platform):
        m = Module()
        acc = Signal(signed(32))
        base = Signal(signed(32))
        total = Signal(signed(32))
        m.d.comb += [
            base.eq(acc & ~self.first.replicate(32)),   # first: restart from zero
            total.eq(base + self.a * self.w),
        ]
        with m.If(self.valid):
            m.d.sync += acc.eq(total)
            with m.If(self.last):
                m.d.sync += self.result.eq(total)
        m.d.sync += [
            self.a_out.eq(self.a),
            self.w_out.eq(self.w),
            self.valid_out.eq(self.valid),
            self.first_out.eq(self.first),
            self.last_out.eq(self.last),
        ]
        return m
