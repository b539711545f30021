"""``DmaWriter``: the AXI4 write master that stores results to DDR."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .axi import AXI4WriteSignature, burst_attributes, drive_cache_prot
from .dma_control import StopControl, control_members
from .fifo_flags import track_ready
from .spec.config import AccelConfig

__all__ = ["DmaWriter", "write_data_layout"]


def write_data_layout(config: AccelConfig) -> data.StructLayout:
    """Payload of the writer's input: one bus beat and its byte strobes (WSTRB)."""
    return data.StructLayout({"data": config.bus_bits, "strb": config.bus_bytes})


class DmaWriter(wiring.Component):
    """AXI4 write master: commands and beats in, INCR bursts out.

    Each command is cut into bursts of at most ``max_burst`` beats that never
    cross 4 KiB (``BurstSplitter``). At most ``max_outstanding`` bursts are in
    flight (AW presented, B not yet received). W beats of a burst go out only
    once its AW has been presented, never ahead of it, in AW order, with
    WLAST on each burst's final beat; this is what Xilinx interconnects
    expect, and since W does not wait for the AW *handshake* it cannot
    deadlock against a slave that waits for WVALID before AWREADY. BREADY is
    always high. Single ID (AWID=0).
    AWCACHE/AWPROT: ``hdl.axi.cache_prot(coherent)`` of each burst's command in a
    ``coherent_io`` build (registered with AWADDR), normal non-cacheable otherwise.

    Timing: a command taken at clock edge n presents its first AW from edge
    n+2 and its first W beat from edge n+3 (the ``data`` beat is taken at
    n+2). W carries one beat per cycle while ``data`` is valid and WREADY is
    high, across burst boundaries.

    Errors: the first B with SLVERR/DECERR sets the sticky ``error`` and
    ``error_addr`` (that burst's AWADDR). Then, as under ``abort`` (level), no
    new AW is issued, commands and ``data`` beats are taken and dropped, every
    AW already presented is completed with its missing W beats sent as
    WSTRB=0 (no byte written), and every B is collected. ``idle`` then rises.
    An abort stays in force until then even if ``abort`` falls earlier (a
    one-cycle pulse is enough).

    ``clear`` (pulse) clears ``error``; it only acts while ``idle``.
    """

    def __init__(self, config: AccelConfig):
        self.config = config
        super().__init__({
            **control_members(config),
            "data": In(stream.Signature(write_data_layout(config))),
            "bus": Out(AXI4WriteSignature(config)),
        })
        # Made here, not in ``elaborate``, only so the formal harness can reach its ``draining``.
        self.control = StopControl(self, config)

    def elaborate(self, platform):
        m = Module()
        config = self.config
        bus = self.bus

        # An abort stays in force until every burst presented is complete, so a
        # one-cycle abort still pads every owed W beat.
        control = self.control
        splitter = control.elaborate(m)
        stop, settled = control.stop, control.settled
        burst = splitter.burst

        # Both queues are pushed when an AW is presented. ``awaiting_b`` holds
        # AWADDR until the burst's B arrives (its level counts bursts in
        # flight); ``awaiting_w`` holds the burst length (and whether it is 1)
        # until its last W beat is loaded. A burst leaves ``awaiting_w`` before ``awaiting_b``, so it
        # can never overflow first.
        awaiting_b = SyncFIFO(width=config.addr_width, depth=config.max_outstanding)
        awaiting_w = SyncFIFO(width=len(burst.p.beats) + 1, depth=config.max_outstanding)
        m.submodules.awaiting_b = awaiting_b
        m.submodules.awaiting_w = awaiting_w
        # Their flags as registers: ``settled`` (and so ``stop``) and ``issue`` start
        # from flip-flops, not from level compares.
        b_readable, b_writable = Signal(name="b_readable"), Signal(name="b_writable", init=1)
        w_readable, w_writable = Signal(name="w_readable"), Signal(name="w_writable", init=1)
        track_ready(m, awaiting_b, b_readable, b_writable)
        track_ready(m, awaiting_w, w_readable, w_writable)

        issue = Signal()
        m.d.comb += issue.eq(burst.valid & ~control.halt & b_writable & w_writable &
                             (~bus.awvalid | bus.awready))
        m.d.comb += [
            burst.ready.eq(issue),
            awaiting_b.w_en.eq(issue),
            awaiting_b.w_data.eq(burst.p.addr),
            awaiting_w.w_en.eq(issue),
            awaiting_w.w_data.eq(Cat(burst.p.beats, burst.p.beats == 1)),
        ]
        with m.If(issue):
            m.d.sync += [
                bus.awaddr.eq(burst.p.addr),
                bus.awlen.eq(burst.p.beats - 1),
                bus.awvalid.eq(1),
            ]
        with m.Elif(bus.awready):
            m.d.sync += bus.awvalid.eq(0)
        # AxCACHE/AxPROT: registered with the address in a ``coherent_io`` build (the
        # coherent pair for a coherent command's bursts), constants otherwise.
        drive_cache_prot(m, bus, "aw", config.coherent_io, issue, burst.p.coherent)
        m.d.comb += burst_attributes(bus, "aw", config.bus_bytes)

        # W: beats of the burst at the head of ``awaiting_w``. Whether the beat being loaded
        # ends its burst (``final_beat``) is the head's ``single`` bit for a burst's first
        # beat and otherwise ``later_final``, the compare made when the beat before it was
        # loaded. ``ahead`` is the number of the beat after the one being loaded (the
        # first is 1), so that compare needs no adder; nothing compares the head's length
        # on the way to ``awaiting_w.r_en``.
        head_beats = awaiting_w.r_data[:len(burst.p.beats)]
        head_single = awaiting_w.r_data[len(burst.p.beats)]
        first = Signal(init=1)
        ahead = Signal(range(2, config.max_burst + 2), init=2)
        later_final = Signal()
        final_beat = Signal()
        load_w = Signal()
        # Pad (WSTRB=0) instead of waiting for ``data``: ``stop`` wherever a W beat is owed,
        # since ``stop`` differs from ``halt | draining`` only once settled, when none is.
        # Registers only, unlike ``stop`` (behind ``settled``).
        pad = Signal()
        m.d.comb += [
            pad.eq(control.halt | control.draining),
            final_beat.eq(Mux(first, head_single, later_final)),
            load_w.eq(w_readable & (~bus.wvalid | bus.wready) & (self.data.valid | pad)),
            # While stopped, offered beats are taken and dropped so no producer hangs.
            self.data.ready.eq(load_w | stop),
            awaiting_w.r_en.eq(load_w & final_beat),
        ]
        with m.If(load_w):
            m.d.sync += [
                bus.wdata.eq(Mux(pad, 0, self.data.p.data)),
                bus.wstrb.eq(Mux(pad, 0, self.data.p.strb)),
                bus.wlast.eq(final_beat),
                bus.wvalid.eq(1),
            ]
            with m.If(final_beat):
                m.d.sync += [first.eq(1), ahead.eq(2)]
            with m.Else():
                m.d.sync += [first.eq(0), ahead.eq(ahead + 1), later_final.eq(ahead == head_beats)]
        with m.Elif(bus.wready):
            m.d.sync += bus.wvalid.eq(0)

        # B: one per burst, in order.
        b_beat = Signal()
        m.d.comb += [
            bus.bready.eq(1),
            b_beat.eq(bus.bvalid & bus.bready),
            awaiting_b.r_en.eq(b_beat),
        ]
        with m.If(b_beat & bus.bresp[1] & ~self.error):
            m.d.sync += [self.error.eq(1), self.error_addr.eq(awaiting_b.r_data)]

        m.d.comb += [
            settled.eq(~bus.awvalid & ~bus.wvalid & ~b_readable & ~w_readable),
            self.idle.eq(~splitter.busy & settled),
        ]
        return m
