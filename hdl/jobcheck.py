"""Validation of a job's arguments before any DMA traffic."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .config import AccelConfig
from .regmap import ErrorCode

__all__ = ["JobCheck"]

_PRODUCT_BITS = 24          # M - 1 and ceil(N / cols) are below 2^24


class JobCheck(wiring.Component):
    """Checks latched job arguments; ``done`` pulses ``LATENCY`` cycles after ``start``.

    The arguments must hold still from ``start`` to ``done``. With ``done``,
    ``code`` is the first failing check (``ErrorCode``) or ``OK``, and ``addr``
    the offending value (0 for M/N/K checks):

    1. ``M_RANGE``, ``N_RANGE``: zero or above ``max_mn``; ``K_RANGE``: zero;
       ``A_OVERFLOW``: ``K > max_k``.
    2. ``ALIGN``: A, W, C address, A_STRIDE, C_STRIDE not a multiple of the bus
       width (``addr`` is that address or stride).
    3. ``STRIDE``: ``A_STRIDE < K`` or ``C_STRIDE < 4 N`` (``addr`` is the stride).
    4. ``ADDR_RANGE``: a buffer's last byte is at or beyond ``2^addr_width``
       (``addr`` is the buffer's base). The buffers are exactly what the DMA
       touches: A ``(M-1)*A_STRIDE + ceil(K/bb)*bb`` bytes, W
       ``ceil(N/cols)*K*bb`` bytes, C ``(M-1)*C_STRIDE + ceil(4N/bb)*bb`` bytes.

    The three products are formed by shift-and-add, one bit per cycle, so no
    wide multiplier or long carry chain sits in the design.
    """

    LATENCY = _PRODUCT_BITS + 4

    def __init__(self, config: AccelConfig):
        self.config = config
        super().__init__({
            "start": In(1),
            "a_addr": In(64), "w_addr": In(64), "c_addr": In(64),
            "m": In(24), "n": In(24), "k": In(16),
            "a_stride": In(32), "c_stride": In(32),
            "done": Out(1),
            "code": Out(8),
            "addr": Out(64),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        bb_log2 = exact_log2(cfg.bus_bytes)
        bb_mask = cfg.bus_bytes - 1
        limit = 1 << cfg.addr_width

        step = Signal(range(self.LATENCY + 1))
        running = Signal()
        first_code = Signal(8)
        first_addr = Signal(64)

        # Products (M-1)*A_STRIDE, ceil(N/cols)*(K*bb), (M-1)*C_STRIDE by shift-and-add.
        multipliers = [Signal(_PRODUCT_BITS, name=f"mul{i}") for i in range(3)]
        multiplicands = [Signal(64, name=f"mcand{i}") for i in range(3)]
        products = [Signal(64, name=f"prod{i}") for i in range(3)]
        bases = [self.a_addr, self.w_addr, self.c_addr]
        row_bytes = [
            ((self.k + bb_mask) >> bb_log2) << bb_log2,        # one A row as read
            0,                                                   # W: the product is all of it
            ((4 * self.n + bb_mask) >> bb_log2) << bb_log2,     # one C row as written
        ]
        ends = [Signal(66, name=f"end{i}") for i in range(3)]
        past_top = [Signal(name=f"past_top{i}") for i in range(3)]

        quick = [
            (self.m == 0, ErrorCode.M_RANGE, 0),
            (self.m > cfg.max_mn, ErrorCode.M_RANGE, 0),
            (self.n == 0, ErrorCode.N_RANGE, 0),
            (self.n > cfg.max_mn, ErrorCode.N_RANGE, 0),
            (self.k == 0, ErrorCode.K_RANGE, 0),
            (self.k > cfg.max_k, ErrorCode.A_OVERFLOW, 0),
            ((self.a_addr & bb_mask) != 0, ErrorCode.ALIGN, self.a_addr),
            ((self.w_addr & bb_mask) != 0, ErrorCode.ALIGN, self.w_addr),
            ((self.c_addr & bb_mask) != 0, ErrorCode.ALIGN, self.c_addr),
            ((self.a_stride & bb_mask) != 0, ErrorCode.ALIGN, self.a_stride),
            ((self.c_stride & bb_mask) != 0, ErrorCode.ALIGN, self.c_stride),
            (self.a_stride < self.k, ErrorCode.STRIDE, self.a_stride),
            (self.c_stride < 4 * self.n, ErrorCode.STRIDE, self.c_stride),
        ]

        quick_failed = [Signal(name=f"quick_failed{i}") for i in range(len(quick))]
        first_index = Signal(range(len(quick) + 1))

        m.d.sync += self.done.eq(0)
        with m.If(self.start):
            m.d.sync += [
                running.eq(1),
                step.eq(0),
                multipliers[0].eq(self.m - 1),
                multipliers[1].eq((self.n + cfg.cols - 1) >> exact_log2(cfg.cols)),
                multipliers[2].eq(self.m - 1),
                multiplicands[0].eq(self.a_stride),
                multiplicands[1].eq(self.k << bb_log2),
                multiplicands[2].eq(self.c_stride),
                *(p.eq(0) for p in products),
                *(flag.eq(failed) for flag, (failed, _, _) in zip(quick_failed, quick)),
            ]
        with m.Elif(running):
            m.d.sync += step.eq(step + 1)
            # The compares were registered at start; the priority pick follows in
            # two registered steps (index of the first failure, then its code/value).
            with m.If(step == 0):
                m.d.sync += first_index.eq(len(quick))
                # Reversed so the first failing check in the list is the one that sticks.
                for index, flag in reversed(list(enumerate(quick_failed))):
                    with m.If(flag):
                        m.d.sync += first_index.eq(index)
            with m.If(step == 1):
                with m.Switch(first_index):
                    for index, (_, code, value) in enumerate(quick):
                        with m.Case(index):
                            m.d.sync += [first_code.eq(code), first_addr.eq(value)]
                    with m.Default():
                        m.d.sync += [first_code.eq(ErrorCode.OK), first_addr.eq(0)]
            with m.If(step < _PRODUCT_BITS):
                for mul, mcand, prod in zip(multipliers, multiplicands, products):
                    with m.If(mul[0]):
                        m.d.sync += prod.eq(prod + mcand)
                    m.d.sync += [mul.eq(mul >> 1), mcand.eq(mcand << 1)]
            with m.Elif(step == _PRODUCT_BITS):
                for end, base, prod, extra in zip(ends, bases, products, row_bytes):
                    m.d.sync += end.eq(base + prod + extra)
            with m.Elif(step == _PRODUCT_BITS + 1):
                for flag, end in zip(past_top, ends):
                    m.d.sync += flag.eq(end > limit)
            with m.Else():
                m.d.sync += [running.eq(0), self.done.eq(1),
                             self.code.eq(first_code), self.addr.eq(first_addr)]
                with m.If(first_code == ErrorCode.OK):
                    for flag, base in reversed(list(zip(past_top, bases))):
                        with m.If(flag):
                            m.d.sync += [self.code.eq(ErrorCode.ADDR_RANGE), self.addr.eq(base)]
        return m
