"""Validation of a job's arguments before any DMA traffic: the rules of ``hdl.spec.job``."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .spec import timing
from .spec.config import AccelConfig
from .spec.formats import WeightFormat, int4_tile_beats
from .spec.job import FIELDS, Job, extents, product_bits, quick_checks
from .spec.regmap import ErrorCode

__all__ = ["JobCheck"]


class JobCheck(wiring.Component):
    """Checks latched job arguments; ``done`` pulses ``LATENCY`` cycles after ``start``.

    One input per job field (``hdl.spec.job.FIELDS``, as wide as its registers, so a
    value beyond its count field is seen and refused). The arguments must hold still
    from ``start`` to ``done``. With ``done``, ``code`` and ``addr`` are what
    ``hdl.spec.job.check`` returns for them (``refused`` is ``code != OK``, as a register): the rules are evaluated on these signals,
    not restated here.

    The compares of rules 1-3 are registered at ``start``; the first failing one is
    picked in two registered steps. The three buffer extents of rule 4 are formed by
    shift-and-add, one multiplier bit per cycle, so no wide multiplier or long carry
    chain sits in the design.
    """

    LATENCY = timing.JOB_CHECK

    def __init__(self, config: AccelConfig):
        self.config = config
        members = {"start": In(1)}
        members.update({f.name: In(f.storage_bits) for f in FIELDS})
        members.update({"done": Out(1), "code": Out(8), "addr": Out(64), "refused": Out(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        bits = product_bits()
        limit = 1 << cfg.addr_width
        job = Job(**{f.name: getattr(self, f.name) for f in FIELDS})
        quick = quick_checks(cfg, job)
        # One port's beats per tile, by format; only meaningful once the format passed.
        beats = Mux(job.w_format == WeightFormat.INT4, int4_tile_beats(job.k), job.k) if cfg.int4 else job.k
        buffers = extents(cfg, job, beats)

        step = Signal(range(self.LATENCY + 1))
        running = Signal()
        first_code = Signal(8)
        first_addr = Signal(64)

        multipliers = [Signal(bits, name=f"mul{i}") for i in range(len(buffers))]
        multiplicands = [Signal(64, name=f"mcand{i}") for i in range(len(buffers))]
        products = [Signal(64, name=f"prod{i}") for i in range(len(buffers))]
        ends = [Signal(66, name=f"end{i}") for i in range(len(buffers))]
        past_top = [Signal(name=f"past_top{i}") for i in range(len(buffers))]

        quick_failed = [Signal(name=f"quick_failed{i}") for i in range(len(quick))]
        first_index = Signal(range(len(quick) + 1))

        m.d.sync += self.done.eq(0)
        with m.If(self.start):
            m.d.sync += [
                running.eq(1),
                step.eq(0),
                *(mul.eq(b.multiplier) for mul, b in zip(multipliers, buffers)),
                *(mcand.eq(b.multiplicand) for mcand, b in zip(multiplicands, buffers)),
                *(p.eq(0) for p in products),
                *(flag.eq(failed) for flag, (failed, _, _) in zip(quick_failed, quick)),
            ]
        with m.Elif(running):
            m.d.sync += step.eq(step + 1)
            with m.If(step == 0):
                m.d.sync += first_index.eq(len(quick))
                # Reversed so the first failing rule in the list is the one that sticks.
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
            with m.If(step < bits):
                for mul, mcand, prod in zip(multipliers, multiplicands, products):
                    with m.If(mul[0]):
                        m.d.sync += prod.eq(prod + mcand)
                    m.d.sync += [mul.eq(mul >> 1), mcand.eq(mcand << 1)]
            with m.Elif(step == bits):
                for end, buffer, prod in zip(ends, buffers, products):
                    m.d.sync += end.eq(buffer.base + prod + buffer.tail)
            with m.Elif(step == bits + 1):
                for flag, end in zip(past_top, ends):
                    m.d.sync += flag.eq(end > limit)
            with m.Else():
                m.d.sync += [running.eq(0), self.done.eq(1), self.code.eq(first_code),
                             self.addr.eq(first_addr),
                             self.refused.eq((first_code != ErrorCode.OK) | Cat(*past_top).any())]
                with m.If(first_code == ErrorCode.OK):
                    for flag, buffer in reversed(list(zip(past_top, buffers))):
                        with m.If(flag):
                            m.d.sync += [self.code.eq(ErrorCode.ADDR_RANGE),
                                         self.addr.eq(buffer.base)]
        return m
