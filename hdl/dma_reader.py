"""``DmaReader``: the AXI4 read master that streams DDR into the accelerator."""

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import Out

from .axi import AXI4ReadSignature, burst_attributes, drive_cache_prot
from .dma_control import StopControl, control_members
from .fifo_flags import track_ready
from .spec.config import AccelConfig

__all__ = ["DmaReader", "read_data_layout"]


def read_data_layout(config: AccelConfig) -> data.StructLayout:
    """Payload of the reader's output: one bus beat, ``last`` ends its command."""
    return data.StructLayout({"data": config.bus_bits, "last": 1})


class DmaReader(wiring.Component):
    """AXI4 read master: commands in, beats out in command order.

    Each command is cut into INCR bursts of at most ``max_burst`` beats that
    never cross 4 KiB (``BurstSplitter``). An AR goes out only when the read
    FIFO (``read_fifo_beats``, counting beats buffered plus beats owed by the
    bus) has room for the whole burst and fewer than ``max_outstanding`` bursts
    are in flight, so RREADY is always high and a slow consumer never stalls
    the interconnect. Single ID (ARID=0), so responses arrive in order.
    ARCACHE/ARPROT: ``hdl.axi.cache_prot(coherent)`` of each burst's command in a
    ``coherent_io`` build (registered with ARADDR), normal non-cacheable otherwise.

    Timing: a command taken at clock edge n presents its first AR from edge
    n+2; ARs can follow one per cycle. An R beat taken at edge n is offered on
    ``data`` from edge n+1 (FIFO with registered read). A long stream to an always-ready
    consumer sustains one beat per cycle while the memory's read latency is at
    most ``read_fifo_beats - max_burst - 4`` cycles (252 for kv260, 44 for
    ``small``) and ``max_outstanding * max_burst`` beats cover it.

    Errors: the first burst answered with SLVERR/DECERR on any beat sets the
    sticky ``error`` and ``error_addr`` (that burst's ARADDR). From then on no
    AR is issued, buffered and later data are dropped (``data.valid`` low),
    every outstanding R beat is still accepted, and commands are taken and
    dropped until ``clear``.

    ``abort`` does the same without setting ``error``: queued commands and
    buffered data are dropped, an AR already presented is held until its
    handshake (AXI forbids withdrawing it), and every R beat owed is accepted
    and discarded. ``idle`` then rises once nothing is outstanding. An abort
    stays in force until then even if ``abort`` falls earlier (a one-cycle
    pulse is enough); commands offered meanwhile are dropped.

    ``clear`` (pulse) clears ``error``; it only acts while ``idle``.
    """

    def __init__(self, config: AccelConfig):
        self.config = config
        super().__init__({
            **control_members(config),
            "data": Out(stream.Signature(read_data_layout(config))),
            "bus": Out(AXI4ReadSignature(config)),
        })
        # Made here, not in ``elaborate``, only so the formal harness can reach its ``draining``.
        self.control = StopControl(self, config)
        # Registered flags (see ``elaborate``), made here only so the formal harness
        # (sim/formal/dma_formal.py) can tie them to the state they summarise.
        self.owed = Signal(range(config.read_fifo_beats + 1))
        self.owed_zero = Signal(init=1)
        self.free = Signal(range(config.read_fifo_beats + 1), init=config.read_fifo_beats)
        self.in_flight_readable = Signal()
        self.in_flight_writable = Signal(init=1)

    def elaborate(self, platform):
        m = Module()
        config = self.config
        bus = self.bus
        depth = config.read_fifo_beats

        # An abort stays in force until every owed beat is back, so even a one-cycle
        # abort leaves no stale beat to leak out later.
        control = self.control
        splitter = control.elaborate(m)
        stop, settled = control.stop, control.settled
        burst = splitter.burst

        # Read-data FIFO; flushed while stopped so its contents never leak out. The reset
        # overrides ``w_en``/``r_en``, so they leave ``stop`` out (it is deep: ``settled``).
        fifo = SyncFIFOBuffered(width=config.bus_bits + 1, depth=depth)
        m.submodules.fifo = fifo = ResetInserter(stop)(fifo)
        # Bursts presented on AR and not yet fully answered: ARADDR and whether
        # the burst ends its command (for ``data.last``). Its level is the
        # number of bursts in flight.
        in_flight = SyncFIFO(width=config.addr_width + 1, depth=config.max_outstanding)
        m.submodules.in_flight = in_flight
        # Beats presented on AR and not yet received. ``owed_zero`` is ``owed == 0``
        # as a register, and the queue's flags are registers too: ``settled`` then
        # costs one LUT, which ``stop`` starts from (``issue`` needs only ``halt``).
        owed, owed_zero = self.owed, self.owed_zero
        in_flight_readable, in_flight_writable = self.in_flight_readable, self.in_flight_writable
        track_ready(m, in_flight, in_flight_readable, in_flight_writable)

        r_beat = Signal()
        m.d.comb += r_beat.eq(bus.rvalid & bus.rready)
        failed = bus.rresp[1]

        # FIFO room not yet claimed, ``depth - fifo.level - owed``, kept as a register updated
        # by the beats each cycle adds and removes: the room check is one compare of two
        # registers instead of two adders and a compare.
        free = self.free
        issue = Signal()
        m.d.comb += issue.eq(burst.valid & ~control.halt & in_flight_writable &
                             (~bus.arvalid | bus.arready) & (burst.p.beats <= free))
        m.d.comb += [
            burst.ready.eq(issue),
            in_flight.w_en.eq(issue),
            in_flight.w_data.eq(Cat(burst.p.addr, burst.p.last)),
        ]
        with m.If(issue):
            m.d.sync += [
                bus.araddr.eq(burst.p.addr),
                bus.arlen.eq(burst.p.beats - 1),
                bus.arvalid.eq(1),
            ]
        with m.Elif(bus.arready):
            m.d.sync += bus.arvalid.eq(0)
        # AxCACHE/AxPROT: registered with the address in a ``coherent_io`` build (the
        # coherent pair for a coherent command's bursts), constants otherwise.
        drive_cache_prot(m, bus, "ar", config.coherent_io, issue, burst.p.coherent)
        m.d.sync += owed.eq(owed + Mux(issue, burst.p.beats, 0) - r_beat)
        # The sum reaches zero iff (owed + beats) wraps to r_beat; that sum is taken
        # from registers, so only ``issue`` arrives late (at the final mux).
        owed_plus_beats = Signal.like(owed)
        m.d.comb += owed_plus_beats.eq(owed + burst.p.beats)
        m.d.sync += owed_zero.eq(Mux(issue, owed_plus_beats == r_beat, owed == r_beat))

        # A beat received moves from ``owed`` to ``fifo.level`` (which always has room for it:
        # that is what ``free`` reserves) unless it failed; a failed one, or one popped, frees
        # its slot. While stopped the FIFO is held in reset (empty next cycle). The terms
        # leave out ``stop``, which selects between the two sums only at the end.
        popped, dropped = fifo.r_en & fifo.r_rdy, r_beat & failed
        with m.If(stop):
            m.d.sync += free.eq(depth + r_beat - owed)
        with m.Else():
            m.d.sync += free.eq(free + popped + dropped - Mux(issue, burst.p.beats, 0))

        m.d.comb += burst_attributes(bus, "ar", config.bus_bytes)
        m.d.comb += bus.rready.eq(1)          # room for every beat was reserved before its AR

        head_addr = in_flight.r_data[:config.addr_width]
        head_ends_command = in_flight.r_data[config.addr_width]
        m.d.comb += [
            in_flight.r_en.eq(r_beat & bus.rlast),
            fifo.w_en.eq(r_beat & ~failed),
            fifo.w_data.eq(Cat(bus.rdata, bus.rlast & head_ends_command)),
        ]
        with m.If(r_beat & failed & ~self.error):
            m.d.sync += [self.error.eq(1), self.error_addr.eq(head_addr)]

        m.d.comb += [
            self.data.valid.eq(fifo.r_rdy & ~stop),
            self.data.p.data.eq(fifo.r_data[:config.bus_bits]),
            self.data.p.last.eq(fifo.r_data[config.bus_bits]),
            fifo.r_en.eq(self.data.ready),
            settled.eq(~bus.arvalid & ~in_flight_readable & owed_zero),
            self.idle.eq(~splitter.busy & settled & (fifo.level == 0)),
        ]
        return m
