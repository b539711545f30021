"""One processing element: an int8 x int8 -> int32 multiply-accumulate."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .spec import timing

__all__ = ["PE"]


class PE(wiring.Component):
    """Output-stationary int8 MAC with registered pass-through (one systolic cell).

    Timing: ``a`` leaves on ``a_out`` one cycle later (to the right neighbour);
    ``w``, ``w_odd`` and the flags leave on ``w_out``/``*_out`` one cycle later (to
    the neighbour below). A PE built with ``odd=True`` multiplies ``w_odd`` instead
    of ``w``: with 4-bit weights a token takes a pair of array rows, the even row
    the pair's even step and the odd row its odd step (``hdl.spec.formats``); with
    int8 the feeder drives both lanes with the same weight. The MAC is pipelined like a DSP48 slice (multiplier register,
    then accumulator register), so ``RESULT_LATENCY = 2``: the product of the
    inputs seen in cycle ``t`` is in ``acc`` from cycle ``t + 2``.

    When ``valid``: ``acc <= (first ? 0 : acc) + a * w``. When ``valid & last`` the
    same sum is also written to ``result`` (the second accumulator of the double
    buffer), which then holds still until the next tile's ``last``;
    ``result_valid`` pulses in the first cycle the new ``result`` is visible. A
    product is at most 2^14 in magnitude, so the sum of a tile of K <= 65535 (the
    K register's count field) stays below 2^30 and the 32-bit accumulator is exact.
    """

    RESULT_LATENCY = timing.PE_RESULT

    a: In(signed(8))
    w: In(signed(8))
    w_odd: In(signed(8))
    valid: In(1)
    first: In(1)
    last: In(1)

    a_out: Out(signed(8))
    w_out: Out(signed(8))
    w_odd_out: Out(signed(8))
    valid_out: Out(1)
    first_out: Out(1)
    last_out: Out(1)

    result: Out(signed(32))
    result_valid: Out(1)

    def __init__(self, odd: bool = False):
        self.odd = odd
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        product = Signal(signed(16))
        product_valid = Signal()
        product_first = Signal()
        product_last = Signal()
        acc = Signal(signed(32))
        total = Signal(signed(32))

        # Stage 1: the multiplier register (DSP MREG).
        m.d.sync += [
            product.eq(self.a * (self.w_odd if self.odd else self.w)),
            product_valid.eq(self.valid),
            product_first.eq(self.first),
            product_last.eq(self.last),
        ]
        # Stage 2: the accumulator (DSP PREG); `first` selects zero instead of the
        # feedback so a new tile needs no separate clear cycle.
        m.d.comb += total.eq((acc & ~product_first.replicate(32)) + product)
        with m.If(product_valid):
            m.d.sync += acc.eq(total)
            with m.If(product_last):
                m.d.sync += self.result.eq(total)
        m.d.sync += self.result_valid.eq(product_valid & product_last)

        m.d.sync += [
            self.a_out.eq(self.a),
            self.w_out.eq(self.w),
            self.w_odd_out.eq(self.w_odd),
            self.valid_out.eq(self.valid),
            self.first_out.eq(self.first),
            self.last_out.eq(self.last),
        ]
        return m
