"""An AXI4 memory for simulation: DPI-backed, runtime latency, fault injection.

``SimMemory`` is the AXI4 slaves that serve the accelerator's masters (``m_axi_dma`` on
``bus``, the read-only weight masters ``m_axi_w<p>`` on ``bus<p>``) from the shared-file
memory of ``sim/dpi/systole_mem.cpp``, each port (``SimPort``) through its own one-beat
``systole_mem_port`` (``sim/dpi/systole_mem_port.sv``). Beats never pass through Python, so long jobs
(a 262k-row classifier) simulate at Verilator speed. Weights are placed by writing
the file, which the host driver maps too.

Timing contract (per port; each has its own read pipeline and latency):

- AR is accepted whenever fewer than ``max_reads`` bursts are waiting. A burst's
  first R beat is offered ``read_latency`` cycles after its AR handshake (at the
  earliest). Then one beat per cycle follows while ``rready`` is high; bursts follow
  each other without gaps.
- Up to 4 AW bursts queue; W beats are taken at one per cycle for the burst at
  the head of the queue (never before its AW). B is offered 2 cycles after the W
  beat with ``wlast``.
- ``RRESP``/``BRESP`` are DECERR for beats outside the file's window, and SLVERR
  for bursts that overlap ``[fault_lo, fault_hi)`` when ``fault_read`` /
  ``fault_write`` is set. While ``hang`` is high no AR is accepted (this models
  a memory that stops answering).

DDR timing (``DdrTiming``, one for all ports: they share the DRAM; ``hdl.spec.ddr``
states the constants and their sources; all zero is the ideal memory above):

- ``ddr_rate``: a token bucket caps the beats served (read and write, all ports
  together) at ``ddr_rate`` / 2**16 beats per cycle in which the DRAM serves (no
  refresh, no bank stall), holding at most ``BUCKET_BEATS`` beats of credit per port;
  0: no cap. When the ports want more beats than the credit holds, the grants go round
  the ports, starting one port later each cycle.
- ``refresh_period``, ``refresh_cycles``: no beat is served on any port during the first
  ``refresh_cycles`` of every ``refresh_period`` cycles (counted from reset), and no
  credit accrues then; period 0: no refresh.
- ``bank_stall_rate``, ``bank_stall_cycles``: on each cycle with no stall under way a
  stall of ``bank_stall_cycles`` starts with probability ``bank_stall_rate`` / 2**16,
  drawn from a 16-bit LFSR reset to ``LFSR_SEED`` (a fresh 16-bit word each cycle),
  so a run repeats exactly. No credit accrues during a stall either.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hdl.axi import RESP_DECERR, RESP_OKAY, RESP_SLVERR, AXI4ReadSignature, AXI4Signature
from hdl.spec.config import AccelConfig
from hdl.spec.ddr import RATE_ONE

__all__ = ["SimMemory", "SimPort", "DdrTiming", "BUCKET_BEATS", "LFSR_SEED", "RATE_ONE"]

BUCKET_BEATS = 4            # credit a token bucket holds: a short burst after a pause
LFSR_SEED = 0xACE1


def _answer_from(m: Module, fifo, layout: data.StructLayout, bus, channel: str) -> None:
    """Offer the head of ``fifo`` (entries of ``layout``) on response ``channel`` ("r" or
    "b") of ``bus``: each field to ``<channel><field>``, popped on the handshake."""
    head = Signal(layout)
    m.d.comb += [head.eq(fifo.r_data), getattr(bus, channel + "valid").eq(fifo.r_rdy),
                 fifo.r_en.eq(getattr(bus, channel + "ready"))]
    m.d.comb += [getattr(bus, channel + name).eq(getattr(head, name)) for name in layout.members]


class SimPort(wiring.Component):
    """One AXI4 slave over the shared-file memory (read-only unless ``writes``).

    It serves a beat only in a cycle ``DdrTiming`` grants it: ``want_read``/``want_write``
    say which beats it could serve this cycle, ``grant_read``/``grant_write`` which it
    may, and ``take`` counts the beats it served.
    """

    def __init__(self, config: AccelConfig, max_reads: int, read_latency: int, writes: bool):
        self.config = config
        self.max_reads = max_reads
        self.writes = writes
        controls = {name: member for name, member in control_members(config, read_latency).items()
                    if name not in DDR_CONTROLS}
        super().__init__({"bus": In(AXI4Signature(config) if writes else AXI4ReadSignature(config)),
                          **controls, "want_read": Out(1), "want_write": Out(1),
                          "grant_read": In(1), "grant_write": In(1), "take": Out(2)})

    def elaborate(self, platform):
        m = Module()
        config, bus = self.config, self.bus
        bb = config.bus_bytes
        aw = config.addr_width

        now = Signal(48)
        m.d.sync += now.eq(now + 1)

        def overlaps_fault(addr, beats):
            end = Signal(aw + 9)
            m.d.comb += end.eq(addr + beats * bb)
            return (addr < self.fault_hi) & (end > self.fault_lo)

        # -- reads -------------------------------------------------------------------
        ar_layout = data.StructLayout({"addr": aw, "len": 8, "id": config.id_width,
                                       "due": 48, "fault": 1})
        ar_fifo = m.submodules.ar_fifo = SyncFIFOBuffered(width=ar_layout.size, depth=self.max_reads)
        ar_in = Signal(ar_layout)
        m.d.comb += [
            ar_in.addr.eq(bus.araddr), ar_in.len.eq(bus.arlen), ar_in.id.eq(bus.arid),
            ar_in.due.eq(now + self.read_latency),
            ar_in.fault.eq(self.fault_read & overlaps_fault(bus.araddr, bus.arlen + 1)),
            ar_fifo.w_data.eq(ar_in),
            bus.arready.eq(ar_fifo.w_rdy & ~self.hang),
            ar_fifo.w_en.eq(bus.arvalid & bus.arready),
        ]
        head = Signal(ar_layout)
        m.d.comb += head.eq(ar_fifo.r_data)

        # Read pipeline: issue one memory read per cycle into a small R FIFO, keeping
        # a slot free for the read still in flight.
        r_layout = data.StructLayout({"data": config.bus_bits, "resp": 2, "last": 1,
                                      "id": config.id_width})
        r_fifo = m.submodules.r_fifo = SyncFIFOBuffered(width=r_layout.size, depth=8)
        beat = Signal(8)
        issue = Signal()
        in_flight = Signal()
        flight_layout = data.StructLayout({"resp": 2, "last": 1, "id": config.id_width})
        flight = Signal(flight_layout)    # the beat whose data arrives this cycle
        m.d.comb += [self.want_read.eq(ar_fifo.r_rdy & (head.due <= now) &
                                       (r_fifo.level + in_flight < r_fifo.depth - 1)),
                     issue.eq(self.want_read & self.grant_read)]
        rd_addr = Signal(64)
        rd_data = Signal(config.bus_bits)
        rd_err = Signal()
        # Beat addresses are aligned down to the bus width (an unaligned AxADDR only
        # moves the first beat's valid byte lanes).
        align = ~(bb - 1) & ((1 << aw) - 1)
        m.d.comb += rd_addr.eq((head.addr & align) + beat * bb)
        m.d.sync += in_flight.eq(issue)
        with m.If(issue):
            m.d.sync += [
                flight.resp.eq(Mux(head.fault, RESP_SLVERR, RESP_OKAY)),
                flight.last.eq(beat == head.len),
                flight.id.eq(head.id),
            ]
            with m.If(beat == head.len):
                m.d.sync += beat.eq(0)
                m.d.comb += ar_fifo.r_en.eq(1)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
        r_out = Signal(r_layout)
        m.d.comb += [
            r_out.data.eq(rd_data),
            r_out.last.eq(flight.last),
            r_out.id.eq(flight.id),
            r_out.resp.eq(flight.resp),
            r_fifo.w_data.eq(r_out),
            r_fifo.w_en.eq(in_flight),
        ]
        with m.If(rd_err):
            m.d.comb += r_out.resp.eq(RESP_DECERR)
        _answer_from(m, r_fifo, r_layout, bus, "r")

        wr_en = Signal()
        wr_err = Signal()
        wr_addr = Signal(64)
        wr_data = Signal(config.bus_bits)
        wr_strb = Signal(bb)
        m.d.comb += self.take.eq(issue + wr_en)
        if self.writes:
            # -- writes ------------------------------------------------------------------
            # AW bursts queue up; W beats stream at one per cycle against the queue's head,
            # so back-to-back bursts need no idle cycle between them.
            aw_layout = data.StructLayout({"addr": aw, "id": config.id_width, "fault": 1})
            aw_fifo = m.submodules.aw_fifo = SyncFIFOBuffered(width=aw_layout.size, depth=4)
            aw_in = Signal(aw_layout)
            aw_head = Signal(aw_layout)
            b_layout = data.StructLayout({"id": config.id_width, "resp": 2})
            b_fifo = m.submodules.b_fifo = SyncFIFOBuffered(width=b_layout.size, depth=8)
            w_beat = Signal(8)
            m.d.comb += [
                aw_in.addr.eq(bus.awaddr), aw_in.id.eq(bus.awid),
                aw_in.fault.eq(self.fault_write & overlaps_fault(bus.awaddr, bus.awlen + 1)),
                aw_fifo.w_data.eq(aw_in),
                bus.awready.eq(aw_fifo.w_rdy),
                aw_fifo.w_en.eq(bus.awvalid & bus.awready),
                aw_head.eq(aw_fifo.r_data),
                # Room for the B of this burst and of the one whose B is still on its way.
                self.want_write.eq(aw_fifo.r_rdy & (b_fifo.level < b_fifo.depth - 2)),
                bus.wready.eq(self.want_write & self.grant_write),
                wr_en.eq(bus.wvalid & bus.wready),
            ]
            with m.If(wr_en):
                m.d.sync += w_beat.eq(w_beat + 1)
                with m.If(bus.wlast):
                    m.d.sync += w_beat.eq(0)
                    m.d.comb += aw_fifo.r_en.eq(1)
            # A beat's wr_err arrives one cycle after the beat: B goes out one cycle after
            # the burst's last beat, with every beat's error folded in.
            wrote = Signal()
            wrote_last = Signal()
            wrote_id = Signal(config.id_width)
            wrote_fault = Signal()
            burst_err = Signal()
            m.d.sync += [wrote.eq(wr_en), wrote_last.eq(wr_en & bus.wlast)]
            with m.If(wr_en & bus.wlast):
                m.d.sync += [wrote_id.eq(aw_head.id), wrote_fault.eq(aw_head.fault)]
            b_in = Signal(b_layout)
            m.d.comb += [b_in.id.eq(wrote_id), b_fifo.w_data.eq(b_in), b_fifo.w_en.eq(wrote_last)]
            with m.If(burst_err | (wrote & wr_err)):
                m.d.comb += b_in.resp.eq(RESP_DECERR)
            with m.Elif(wrote_fault):
                m.d.comb += b_in.resp.eq(RESP_SLVERR)
            with m.Else():
                m.d.comb += b_in.resp.eq(RESP_OKAY)
            with m.If(wrote_last):
                m.d.sync += burst_err.eq(0)
            with m.Elif(wrote & wr_err):
                m.d.sync += burst_err.eq(1)
            _answer_from(m, b_fifo, b_layout, bus, "b")
            m.d.comb += [wr_addr.eq(((aw_head.addr & align) + w_beat * bb)[:64]),
                         wr_data.eq(bus.wdata), wr_strb.eq(bus.wstrb)]

        m.submodules.port = Instance(
            "systole_mem_port",
            p_BYTES=bb,
            i_clk=ClockSignal(),
            i_rd_en=issue,
            i_rd_addr=rd_addr,
            o_rd_data=rd_data,
            o_rd_err=rd_err,
            i_wr_en=wr_en,
            i_wr_addr=wr_addr,
            i_wr_data=wr_data,
            i_wr_strb=wr_strb,
            o_wr_err=wr_err,
        )
        return m


class DdrTiming(wiring.Component):
    """Refresh, bank stalls and the bandwidth cap of one DRAM behind ``ports`` ports.

    Each cycle every port says which beats it could serve (``wants[p]``: read, write);
    the ones granted (``grants[p]``) are, in a port order that rotates every cycle
    (read before write within a port), the first ``credit`` beats wanted, and none
    during refresh or a bank stall. ``takes[p]`` returns the beats each port served.
    The bucket holds ``BUCKET_BEATS * ports`` beats of credit.
    """

    def __init__(self, ports: int):
        self.ports = ports
        super().__init__({
            **control_members_ddr(),
            "wants": In(data.ArrayLayout(2, ports)),
            "grants": Out(data.ArrayLayout(2, ports)),
            "takes": In(data.ArrayLayout(2, ports)),
        })

    def elaborate(self, platform):
        m = Module()
        ports = self.ports
        refresh_count = Signal.like(self.refresh_period)
        with m.If((self.refresh_period == 0) | (refresh_count + 1 >= self.refresh_period)):
            m.d.sync += refresh_count.eq(0)
        with m.Else():
            m.d.sync += refresh_count.eq(refresh_count + 1)
        refreshing = Signal()
        m.d.comb += refreshing.eq((self.refresh_period != 0) & (refresh_count < self.refresh_cycles))

        lfsr = Signal(16, init=LFSR_SEED)
        # Galois LFSR x^16 + x^14 + x^13 + x^11 + 1 (taps 0xB400), period 65535, stepped
        # 16 times a cycle: one step's successive states are shifts of each other, which
        # halves how often a small threshold is met; 16 steps give fresh words.
        stepped = lfsr
        for step in range(16):
            following = Signal(16, name=f"lfsr_step{step}")
            m.d.comb += following.eq((stepped >> 1) ^ Mux(stepped[0], 0xB400, 0))
            stepped = following
        m.d.sync += lfsr.eq(stepped)
        stall_left = Signal.like(self.bank_stall_cycles)
        with m.If(stall_left != 0):
            m.d.sync += stall_left.eq(stall_left - 1)
        with m.Elif(lfsr < self.bank_stall_rate):
            m.d.sync += stall_left.eq(self.bank_stall_cycles)

        may_serve = Signal()
        m.d.comb += may_serve.eq(~refreshing & (stall_left == 0))

        # Credit in 1/RATE_ONE beats; ddr_rate == 0 keeps it full (no cap).
        bucket = BUCKET_BEATS * ports
        full = bucket * RATE_ONE
        credit = Signal(range(full + (1 << 24) + 1), init=full)
        credit_beats = Signal(range(bucket + 1))
        m.d.comb += credit_beats.eq(credit >> 16)
        taken = Signal(range(2 * ports + 1))
        m.d.comb += taken.eq(sum(self.takes[p] for p in range(ports)))
        grown = Signal.like(credit)
        # Credit grows only while the DRAM serves: the cap is the rate *between* refreshes
        # and stalls (hdl.spec.ddr: they are inside the long-run cap, not on top of it).
        m.d.comb += grown.eq(credit - taken * RATE_ONE + Mux(may_serve, self.ddr_rate, 0))
        m.d.sync += credit.eq(Mux((self.ddr_rate == 0) | (grown > full), full, grown))

        # Grants: in each rotation, a beat wanted is granted while fewer than
        # credit_beats wanted beats come before it.
        turn = Signal(range(ports))
        m.d.sync += turn.eq(Mux(turn == ports - 1, 0, turn + 1))
        with m.Switch(turn):
            for first in range(ports):
                with m.Case(first):
                    before = 0
                    for p in [(first + i) % ports for i in range(ports)]:
                        for lane in range(2):
                            want = self.wants[p][lane]
                            m.d.comb += self.grants[p][lane].eq(want & may_serve & (before < credit_beats))
                            before = before + want
        return m




class SimMemory(wiring.Component):
    """The AXI4 memory of the co-simulation: ``ports`` ``SimPort``s over one file and
    one ``DdrTiming``; see the module docstring.

    ``bus`` is port 0 (reads and writes), ``bus1`` ... the read-only ports. The controls
    (``control_members``) apply to every port; ``read_latency`` is each port's own
    latency after reset (a control can change it).
    """

    def __init__(self, config: AccelConfig, max_reads: int = 32, read_latency: int = 32, ports: int = 1):
        self.config = config
        self.max_reads = max_reads
        self.ports = ports
        buses = {"bus": In(AXI4Signature(config))}
        buses.update({f"bus{p}": In(AXI4ReadSignature(config)) for p in range(1, ports)})
        super().__init__({**buses, **control_members(config, read_latency=read_latency)})
        self._read_latency = read_latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.timing = timing = DdrTiming(self.ports)
        m.d.comb += [getattr(timing, name).eq(getattr(self, name)) for name in DDR_CONTROLS]
        for p in range(self.ports):
            port = SimPort(self.config, self.max_reads, self._read_latency, writes=p == 0)
            m.submodules[f"port{p}"] = port
            wiring.connect(m, wiring.flipped(self.bus if p == 0 else getattr(self, f"bus{p}")), port.bus)
            m.d.comb += [getattr(port, name).eq(getattr(self, name)) for name in port.signature.members
                         if name in MEMORY_CONTROLS_PER_PORT]
            m.d.comb += [timing.wants[p][0].eq(port.want_read), timing.wants[p][1].eq(port.want_write),
                         port.grant_read.eq(timing.grants[p][0]), port.grant_write.eq(timing.grants[p][1]),
                         timing.takes[p].eq(port.take)]
        return m


DDR_CONTROLS = ("ddr_rate", "refresh_period", "refresh_cycles", "bank_stall_rate", "bank_stall_cycles")
MEMORY_CONTROLS_PER_PORT = ("read_latency", "fault_lo", "fault_hi", "fault_read", "fault_write", "hang")


def control_members_ddr() -> dict:
    """The DRAM-wide controls (``DdrTiming``'s): the cap, refresh and bank stalls."""
    return {name: member for name, member in control_members(None).items() if name in DDR_CONTROLS}


def control_members(config: AccelConfig, read_latency: int = 32) -> dict:
    """The runtime controls of ``SimMemory`` as signature members, in the order of
    ``host.platforms.sim.MEMORY_CONTROLS`` (the names the co-simulation exposes)."""
    from host.platforms.sim import MEMORY_CONTROLS
    aw = config.addr_width if config is not None else 64
    widths = {"read_latency": (16, read_latency), "fault_lo": (aw, 0), "fault_hi": (aw, 0),
              "fault_read": (1, 0), "fault_write": (1, 0), "hang": (1, 0),
              "ddr_rate": (24, 0), "refresh_period": (24, 0), "refresh_cycles": (24, 0),
              "bank_stall_rate": (17, 0), "bank_stall_cycles": (8, 0)}
    assert tuple(widths) == MEMORY_CONTROLS, "SimMemory's controls and MEMORY_CONTROLS disagree"
    assert set(MEMORY_CONTROLS) == set(DDR_CONTROLS) | set(MEMORY_CONTROLS_PER_PORT)
    return {name: In(width, init=init) for name, (width, init) in widths.items()}


def dpi_sources():
    """The non-Amaranth sources of the co-simulation: the memory port (SystemVerilog),
    the model's clock generator (SystemVerilog) and the backing store (C++)."""
    from pathlib import Path
    here = Path(__file__).resolve().parent / "dpi"
    return here / "systole_mem_port.sv", here / "systole_clock.sv", here / "systole_mem.cpp"
