"""``BurstSplitter``: DMA commands to AXI4 INCR bursts that never cross 4 KiB."""

from amaranth.hdl import C, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .spec.config import AccelConfig
from .spec.dma import BOUNDARY_BYTES

__all__ = ["BurstSplitter", "command_layout", "burst_layout"]


def command_layout(config: AccelConfig) -> data.StructLayout:
    """Payload of a DMA command: ``beats`` full-width beats starting at ``addr``;
    ``coherent``: the data is shared with the CPU job by job (A's rows, C), so its
    bursts are I/O coherent in a ``coherent_io`` build."""
    return data.StructLayout({"addr": config.addr_width, "beats": 32, "coherent": 1})


def burst_layout(config: AccelConfig) -> data.StructLayout:
    """Payload of one burst: ``beats`` in 1..max_burst, ``last`` ends its command,
    ``coherent`` copied from its command."""
    return data.StructLayout({
        "addr": config.addr_width,
        "beats": unsigned(config.max_burst.bit_length()),
        "last": 1,
        "coherent": 1,
    })


class BurstSplitter(wiring.Component):
    """Cuts each command into bursts of at most ``max_burst`` beats, none crossing 4 KiB.

    Timing: the burst output is registered; a burst appears one cycle after its
    command is taken, and bursts follow back to back, one per cycle, across
    command boundaries. ``burst.valid`` is a flip-flop.
    Behind the output register sits one skid entry: while the consumer holds a
    burst, the splitter cuts one more, so advancing (and ``cmd.ready``) waits on
    that entry's flag, never on ``burst.ready``.
    The low ``log2(bus_bytes)`` address bits are ignored (commands are
    beat-aligned by contract). A command of 0 beats is taken and dropped.
    Every burst carries its command's ``coherent`` bit.

    ``flush`` (level): drop the command in progress and the bursts cut, and take
    and drop every command offered. A burst offered while ``flush`` is high is
    gone at the next edge: the consumer must not take it. ``busy``: a command is
    in progress.
    """

    def __init__(self, config: AccelConfig):
        self.config = config
        super().__init__({
            "cmd": In(stream.Signature(command_layout(config))),
            "burst": Out(stream.Signature(burst_layout(config))),
            "flush": In(1),
            "busy": Out(1),
        })
        # Source of the next burst. Created here, not in ``elaborate``, only so the
        # formal harness (sim/formal/dma_formal.py) can state invariants over them;
        # no logic depends on where they are made.
        self.next_addr = Signal(config.addr_width)
        self.remaining = Signal(32)
        self.active = Signal()
        self.coherent = Signal()
        self.skid = Signal(burst_layout(config))
        self.skid_valid = Signal()

    def elaborate(self, platform):
        m = Module()
        config = self.config
        beat_shift = config.bus_bytes.bit_length() - 1
        boundary_shift = BOUNDARY_BYTES.bit_length() - 1

        addr, remaining, active = self.next_addr, self.remaining, self.active
        coherent = self.coherent

        # Beats left before the next 4 KiB boundary: 1 .. 4096/bus_bytes.
        to_boundary = Signal(range((BOUNDARY_BYTES >> beat_shift) + 1))
        m.d.comb += to_boundary.eq((1 << (boundary_shift - beat_shift)) -
                                   addr[beat_shift:boundary_shift])
        limit = Signal.like(to_boundary)
        m.d.comb += limit.eq(Mux(to_boundary > config.max_burst, config.max_burst, to_boundary))
        beats = Signal.like(self.burst.p.beats)
        m.d.comb += beats.eq(Mux(remaining < limit, remaining, limit))
        final = Signal()
        m.d.comb += final.eq(remaining <= limit)

        # The burst is registered so the consumer's decision logic starts at a flop. A
        # burst cut while the output register is held waits in ``skid``, so cutting the next
        # one (``advance``) depends on flip-flops only, not on ``burst.ready``. ``flush``
        # gates only the valid flags and ``active``: the source registers mean nothing
        # once ``active`` is low, so their next value ignores it.
        burst, skid, skid_valid = self.burst, self.skid, self.skid_valid
        out_valid = Signal()
        advance = Signal()
        take = Signal()
        cut = Signal.like(skid)
        m.d.comb += [
            advance.eq(active & ~skid_valid),
            take.eq(self.cmd.valid & (~active | (advance & final))),
            cut.addr.eq(addr),
            cut.beats.eq(beats),
            cut.last.eq(final),
            cut.coherent.eq(coherent),
            burst.valid.eq(out_valid),
            self.cmd.ready.eq(~active | self.flush | (advance & final)),
            self.busy.eq(active | out_valid),
        ]
        with m.If(~out_valid | burst.ready):
            with m.If(skid_valid):
                m.d.sync += [burst.p.eq(skid), out_valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [burst.p.eq(cut), out_valid.eq(advance)]
        with m.Elif(advance):
            m.d.sync += [skid.eq(cut), skid_valid.eq(1)]

        with m.If(take):
            m.d.sync += [
                addr.eq(Cat(C(0, beat_shift), self.cmd.p.addr[beat_shift:])),
                remaining.eq(self.cmd.p.beats),
                coherent.eq(self.cmd.p.coherent),
                active.eq(self.cmd.p.beats != 0),
            ]
        with m.Elif(advance):
            m.d.sync += [
                addr.eq(addr + (beats << beat_shift)),
                remaining.eq(remaining - beats),
            ]
            with m.If(final):
                m.d.sync += active.eq(0)
        with m.If(self.flush):
            m.d.sync += [active.eq(0), out_valid.eq(0), skid_valid.eq(0)]
        return m
