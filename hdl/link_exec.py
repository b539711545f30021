"""``LinkExec``: the link's request executor (a received request in, AXI transactions and
the response out)."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .axi import (BURST_INCR, CACHE_NORMAL_NONCACHEABLE_BUFFERABLE, PROT_DEFAULT, AXI4LiteSignature,
                  AXI4Signature, axsize)
from .link_frame import FRAME_END, PAYLOAD_BYTE, REQUEST_HEADER, RESPONSE_HEADER
from .link_replay import LinkReplay
from .link_window import Window
from .spec.config import AccelConfig
from .spec.link_protocol import (AFTER, HELLO_LAYOUT, IRQ_LAYOUT, MEM_READS, MEM_WRITES, REGISTER_LAYOUT, REPLAYS,
                                 STATE_CHANGING, Command, Status, encode_hello, request_checks, seq_checks,
                                 seq_distance)

__all__ = ["LinkExec", "check_limits"]


def check_limits(config: AccelConfig, *, max_payload: int, ctrl_addr_width: int) -> None:
    """``ValueError`` unless a ``max_payload`` window is one legal burst and register
    offsets have 3..32 bits."""
    bus_bytes = config.bus_bytes
    if max_payload & (max_payload - 1) or not bus_bytes <= max_payload <= 4096 \
            or max_payload // bus_bytes > 256:
        raise ValueError(f"max_payload={max_payload} must be a power of two in {bus_bytes}..4096 "
                         f"and at most 256 beats of {bus_bytes} bytes")
    if not 3 <= ctrl_addr_width <= 32:
        raise ValueError(f"ctrl_addr_width={ctrl_addr_width} must be in 3..32")


def is_any(cmd, commands):
    """``cmd`` is one of ``commands``."""
    return Cat(*(cmd == c for c in commands)).any()


def _axi_status(resp):
    """The link status of an AXI xRESP (EXOKAY counts as OKAY)."""
    return Mux(resp[1], Mux(resp[0], Status.AXI_DECERR, Status.AXI_SLVERR), Status.OK)


class LinkExec(wiring.Component):
    """Executes the requests ``LinkRx`` receives on ``ctrl`` (AXI4-Lite) and ``mem`` (AXI4).

    - ``header``, ``payload``, ``end``: from ``LinkRx`` (same contracts). Payload bytes
      go into the window buffer (MEM_WRITE, ``max_payload`` bytes) or the register
      word (REG_WRITE) as they arrive; nothing else happens before ``end``.
    - An ``end`` that is not OK (CRC, TRUNCATED) is passed to ``response`` in the same
      cycle. Otherwise, one cycle later: a state-changing request (``STATE_CHANGING``)
      that ``seq_checks`` finds a repeat of the last one executed is answered with that
      one's status, a stale one with STALE, both with no AXI traffic; else the first
      failing rule of ``hdl.spec.link_protocol.request_checks`` is answered
      (BAD_COMMAND, BAD_LENGTH, BAD_ADDRESS) with no AXI traffic, HELLO and IRQ are
      answered, or the first AXI valid is raised.
    - ``last_seq`` (0 after reset) and the remembered status: a state-changing request
      that is neither a repeat nor stale sets ``last_seq`` to its ``seq`` when it is
      decided, and its answer's status (a refusal too) is remembered.
    - The AFTER commands (2.2: MEM_WRITE_AFTER, REPLAY_AFTER, MEM_READ_AFTER) run as
      MEM_WRITE, REPLAY and MEM_READ, but a newer one whose seq is not ``last_seq + 1``
      is answered EARLY, not executed and not remembered. A MEM_READ_AFTER repeat after
      an OK answer reads again.
    - REPLAY: its payload goes to ``LinkReplay`` (``max_replay`` bytes; 0 leaves REPLAY
      out, refused as BAD_COMMAND), which then runs it on ``ctrl`` and gives the
      status and answer. A REPLAY (either kind) whose seq is the last REPLAY's, which
      was answered OK and followed by nothing but MEM_READ_AFTERs, runs again with
      ``reread`` (the reads only, the remembered result); any other repeat gets the
      remembered status.
    - REG_READ/REG_WRITE: one AXI4-Lite read or write (AW and W together, all strobes).
      MEM_WRITE/MEM_READ: one INCR burst of full-width beats over the window's beats
      from ``addr`` to its last byte, with byte strobes on the first and last beat; a
      window never crosses 4 KiB nor exceeds 256 beats. W beats come one per cycle
      while taken, the first in the cycle after AW's handshake; read data goes to the
      buffer, so R is never back-pressured. Every valid is raised without waiting for
      ready and held until its handshake; AW goes out before W.
    - ``response``: offered the cycle after the last AXI response (or the check); its
      status is the AXI answer (the worst of a burst: DECERR > SLVERR > OKAY), its
      length 0 on errors. ``end`` is taken in the cycle ``response`` is, so the
      receiver hunts for the next frame only once the answer is out.
    - ``response_payload``: exactly the answer's ``length`` bytes (``HELLO_LAYOUT``
      with ``irq`` sampled a cycle before its byte is offered, ``last_seq``,
      ``clock_khz`` from ``config.clock_mhz`` and ``max_replay``, ``IRQ_LAYOUT``, the
      REPLAY answer, ``REGISTER_LAYOUT``, or the read bytes): the first two cycles after
      ``response`` is offered, then each in the cycle after the previous one was
      taken (a byte per cycle while ``ready`` stays high).
    """

    def __init__(self, config: AccelConfig, *, max_payload: int = 4096, ctrl_addr_width: int = 8,
                 max_replay: int = 256):
        check_limits(config, max_payload=max_payload, ctrl_addr_width=ctrl_addr_width)
        self.config = config
        self.max_payload = max_payload
        self.ctrl_addr_width = ctrl_addr_width
        self.max_replay = max_replay
        super().__init__({
            "header": In(REQUEST_HEADER),
            "payload": In(stream.Signature(PAYLOAD_BYTE, always_ready=True)),
            "end": In(stream.Signature(FRAME_END)),
            "response": Out(stream.Signature(RESPONSE_HEADER)),
            "response_payload": Out(stream.Signature(8)),
            "ctrl": Out(AXI4LiteSignature(addr_width=ctrl_addr_width)),
            "mem": Out(AXI4Signature(config)),
            "irq": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        bb = cfg.bus_bytes
        window = Window(bb, self.max_payload)
        register_bytes = REGISTER_LAYOUT.size

        m.submodules.buffer = buffer = Memory(shape=cfg.bus_bits, depth=self.max_payload // bb, init=[])
        wport = buffer.write_port(granularity=8)
        rport = buffer.read_port()
        m.d.comb += rport.en.eq(0)

        cmd, addr, length = self.header.cmd, self.header.addr, self.header.length
        status = Signal(8)
        resp_len = Signal(len(length))
        reg_data = Signal(8 * register_bytes)   # REG_WRITE payload, REG_READ result
        beat = Signal(8)
        resp_error = Signal()
        aw_done = Signal()
        w_done = Signal()

        end = Signal(64)                        # the last byte
        m.d.comb += end.eq(addr + length - 1)
        burst = window.burst(m, addr, end)
        first_beat, beats_minus_1 = burst.first_beat, burst.beats_minus_1
        all_lanes = (1 << bb) - 1
        lane_bits = window.lane_bits

        # Payload bytes land as they arrive; only a matched CRC lets them reach the bus.
        payload = self.payload.payload
        replay = None
        if self.max_replay:
            m.submodules.replay = replay = LinkReplay(max_replay=self.max_replay,
                                                      ctrl_addr_width=self.ctrl_addr_width)
            m.d.comb += [replay.payload.valid.eq(self.payload.valid & is_any(cmd, REPLAYS)),
                         replay.payload.payload.eq(self.payload.payload), replay.length.eq(length)]
        with m.If(self.payload.valid):
            with m.If(is_any(cmd, MEM_WRITES)):
                position = Signal(window.bits)
                m.d.comb += [position.eq(window.position(addr) + payload.index),
                             wport.addr.eq(window.beat(position)), wport.data.eq(payload.data.replicate(bb)),
                             wport.en.eq(1 << window.lane(position))]
            with m.Else():
                m.d.sync += reg_data.eq(Cat(reg_data[8:], payload.data))

        ctrl, mem = self.ctrl, self.mem
        m.d.comb += [
            ctrl.awaddr.eq(addr), ctrl.awprot.eq(PROT_DEFAULT), ctrl.araddr.eq(addr),
            ctrl.arprot.eq(PROT_DEFAULT), ctrl.wdata.eq(reg_data), ctrl.wstrb.eq((1 << register_bytes) - 1),
            mem.awid.eq(0), mem.awaddr.eq(Cat(Const(0, lane_bits), addr[lane_bits:cfg.addr_width])),
            mem.awlen.eq(beats_minus_1), mem.awsize.eq(axsize(bb)), mem.awburst.eq(BURST_INCR),
            mem.awlock.eq(0), mem.awcache.eq(CACHE_NORMAL_NONCACHEABLE_BUFFERABLE),
            mem.awprot.eq(PROT_DEFAULT), mem.awqos.eq(0),
            mem.arid.eq(0), mem.araddr.eq(mem.awaddr), mem.arlen.eq(beats_minus_1),
            mem.arsize.eq(axsize(bb)), mem.arburst.eq(BURST_INCR), mem.arlock.eq(0),
            mem.arcache.eq(CACHE_NORMAL_NONCACHEABLE_BUFFERABLE), mem.arprot.eq(PROT_DEFAULT),
            mem.arqos.eq(0),
            mem.wdata.eq(rport.data),
        ]

        # A frame that did not arrive intact (CRC, TRUNCATED): nothing to execute.
        unreceived = Signal()
        m.d.comb += unreceived.eq(self.end.valid & (self.end.payload.status != Status.OK))
        refusals = request_checks(cmd, addr, length, max_payload=self.max_payload,
                                  ctrl_addr_width=self.ctrl_addr_width, addr_width=cfg.addr_width,
                                  max_replay=self.max_replay)

        # Write sequence numbers: a state-changing request runs at most once per seq.
        last_seq = Signal(len(self.header.seq))
        last_status = Signal(8)
        last_read_after = Signal()              # the last state-changing request was a MEM_READ_AFTER
        replay_seq = Signal(len(self.header.seq))   # the last REPLAY's seq, and whether it was answered OK
        replay_ok = Signal()
        remember_replay = Signal()
        remember = Signal()                     # the answer's status is last_status's
        distance = Signal(len(self.header.seq))
        m.d.comb += distance.eq(seq_distance(self.header.seq, last_seq))
        repeat, stale = seq_checks(distance)
        changes_state = is_any(cmd, STATE_CHANGING)
        early = is_any(cmd, AFTER) & (distance != 1)       # (a repeat or stale one is decided first)

        def respond(code, nbytes=0):
            m.d.sync += [status.eq(code), resp_len.eq(nbytes)]
            m.next = "RESPOND"

        def address_state(name, valid, ready, next_state):
            """Offer an AR or AW until it is taken."""
            with m.State(name):
                m.d.comb += valid.eq(1)
                with m.If(ready):
                    m.next = next_state

        def write_response_state(name, bus):
            """Take the B of ``bus`` and answer with its status."""
            with m.State(name):
                m.d.comb += bus.bready.eq(1)
                with m.If(bus.bvalid):
                    respond(_axi_status(bus.bresp))

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(unreceived):
                    m.d.comb += [self.response.valid.eq(1), self.end.ready.eq(self.response.ready)]
                with m.Elif(self.end.valid):
                    m.d.sync += [beat.eq(0), aw_done.eq(0), w_done.eq(0), resp_error.eq(0),
                                 remember.eq(0), remember_replay.eq(0)]
                    is_replay = is_any(cmd, REPLAYS)
                    is_read_after = cmd == Command.MEM_READ_AFTER
                    # The last REPLAY, answered OK, is repeated by reading its read list
                    # again (even after later requests); a MEM_READ_AFTER answered OK, by
                    # reading the memory again.
                    reread = is_replay & (self.header.seq == replay_seq) & replay_ok
                    # A newer state-changing request is decided now: refused or executed,
                    # its answer is the one a repeat gets. An early AFTER one is neither.
                    with m.If(changes_state & ~repeat & ~stale & ~early & ~reread):
                        m.d.sync += [last_seq.eq(self.header.seq), remember.eq(1),
                                     last_read_after.eq(is_read_after)]
                        with m.If(is_replay):
                            m.d.sync += [replay_seq.eq(self.header.seq), replay_ok.eq(0), remember_replay.eq(1)]
                        with m.Elif(~is_read_after):     # only its reads may follow a REPLAY's repeat
                            m.d.sync += replay_ok.eq(0)
                    answered_ok = changes_state & repeat & (last_status == Status.OK)
                    if replay is not None:
                        m.d.comb += replay.reread.eq(reread)
                    else:
                        reread = Const(0)
                    verdicts = [(reread, "REPLAY"), (answered_ok & is_read_after & last_read_after, "MEM_AR"),
                                (changes_state & repeat, last_status), (changes_state & stale, Status.STALE),
                                (changes_state & early, Status.EARLY), *refusals]
                    for index, (failed, code) in enumerate(verdicts):
                        with (m.If if index == 0 else m.Elif)(failed):
                            if isinstance(code, str):   # a state to go to
                                if code == "REPLAY" and replay is not None:
                                    m.d.comb += replay.start.eq(1)
                                m.next = code
                            else:
                                respond(code)
                    with m.Elif(cmd == Command.HELLO):
                        respond(Status.OK, HELLO_LAYOUT.size)
                    with m.Elif(cmd == Command.IRQ):
                        respond(Status.OK, IRQ_LAYOUT.size)
                    with m.Elif(cmd == Command.REG_READ):
                        m.next = "LITE_AR"
                    with m.Elif(cmd == Command.REG_WRITE):
                        m.next = "LITE_AW_W"
                    with m.Elif(is_any(cmd, MEM_READS)):
                        m.next = "MEM_AR"
                    with m.Elif(is_replay):
                        if replay is not None:
                            m.d.comb += replay.start.eq(1)
                        m.next = "REPLAY"
                    with m.Else():
                        m.next = "MEM_AW"

            address_state("LITE_AR", ctrl.arvalid, ctrl.arready, "LITE_R")
            with m.State("LITE_R"):
                m.d.comb += ctrl.rready.eq(1)
                with m.If(ctrl.rvalid):
                    m.d.sync += reg_data.eq(ctrl.rdata)
                    respond(_axi_status(ctrl.rresp), Mux(ctrl.rresp[1], 0, register_bytes))

            with m.State("LITE_AW_W"):
                m.d.comb += [ctrl.awvalid.eq(~aw_done), ctrl.wvalid.eq(~w_done)]
                aw_now = aw_done | ctrl.awready
                w_now = w_done | ctrl.wready
                m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]
                with m.If(aw_now & w_now):
                    m.next = "LITE_B"
            write_response_state("LITE_B", ctrl)

            with m.State("MEM_AW"):
                # The buffer's read port has one cycle of latency: the first beat is
                # fetched while AW waits, so W follows AW's handshake at once.
                m.d.comb += [mem.awvalid.eq(1), rport.en.eq(1), rport.addr.eq(first_beat)]
                with m.If(mem.awready):
                    m.next = "MEM_W"
            with m.State("MEM_W"):
                # The port reads the next beat when this one is taken, else this one
                # again: a beat per cycle while WREADY stays high.
                last = beat == beats_minus_1
                m.d.comb += [mem.wvalid.eq(1), mem.wlast.eq(last),
                             mem.wstrb.eq(Mux(beat == 0, burst.first_strb, all_lanes) &
                                         Mux(last, burst.last_strb, all_lanes)),
                             rport.en.eq(1), rport.addr.eq(first_beat + beat + mem.wready)]
                with m.If(mem.wready):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(last):
                        m.next = "MEM_B"
            write_response_state("MEM_B", mem)

            address_state("MEM_AR", mem.arvalid, mem.arready, "MEM_R")
            with m.State("MEM_R"):
                m.d.comb += [mem.rready.eq(1), wport.addr.eq(first_beat + beat), wport.data.eq(mem.rdata)]
                with m.If(mem.rvalid):
                    m.d.comb += wport.en.eq(all_lanes)
                    m.d.sync += beat.eq(beat + 1)
                    # The worst response of the burst wins (DECERR > SLVERR > OKAY).
                    with m.If(mem.rresp[1] & (~resp_error | mem.rresp[0])):
                        m.d.sync += [resp_error.eq(1), status.eq(_axi_status(mem.rresp))]
                    with m.If(mem.rlast):
                        with m.If(resp_error | mem.rresp[1]):
                            m.d.sync += resp_len.eq(0)
                            m.next = "RESPOND"
                        with m.Else():
                            respond(Status.OK, length)

            with m.State("REPLAY"):
                if replay is not None:
                    with m.If(replay.done):
                        respond(replay.status, replay.answer_length)

            with m.State("RESPOND"):
                m.d.comb += self.response.valid.eq(1)
                with m.If(remember):
                    m.d.sync += last_status.eq(status)
                with m.If(remember_replay):
                    m.d.sync += replay_ok.eq(status == Status.OK)
                with m.If(self.response.ready):
                    m.d.comb += self.end.ready.eq(1)
                    m.next = "IDLE"

        if replay is not None:
            # The sequencer has the register bus while it runs.
            with m.If(fsm.ongoing("REPLAY")):
                for name, member in ctrl.signature.members.items():
                    if member.flow == Out:
                        m.d.comb += getattr(ctrl, name).eq(getattr(replay.ctrl, name))
            for name, member in ctrl.signature.members.items():
                if member.flow == In:
                    m.d.comb += getattr(replay.ctrl, name).eq(getattr(ctrl, name))

        passed_on = fsm.ongoing("IDLE") & unreceived
        m.d.comb += [self.response.payload.cmd.eq(cmd), self.response.payload.seq.eq(self.header.seq),
                     self.response.payload.status.eq(Mux(passed_on, self.end.payload.status, status)),
                     self.response.payload.length.eq(Mux(passed_on, 0, resp_len))]
        self._answer(m, fsm.ongoing("RESPOND"), window, rport, resp_len, reg_data, last_seq, replay)
        return m

    def _answer(self, m, responding, window, rport, resp_len, reg_data, last_seq, replay):
        """``response_payload``: the answer's bytes fetched, selected and offered in a
        two-stage pipeline (a byte per cycle while taken)."""
        cmd, addr = self.header.cmd, self.header.addr
        cfg = self.config
        # HELLO's constant bytes, with the irq line and last_seq in their fields.
        live = {HELLO_LAYOUT["irq"].offset: Cat(self.irq, Const(0, 7))}
        seq_field = HELLO_LAYOUT["last_seq"]
        live.update({seq_field.offset + i: last_seq.word_select(i, 8) for i in range(seq_field.size)})
        hello = Array(live.get(i, Const(byte, 8)) for i, byte in enumerate(encode_hello(
            max_payload=self.max_payload, bus_bytes=cfg.bus_bytes, addr_width=cfg.addr_width,
            ctrl_addr_width=self.ctrl_addr_width, clock_khz=round(cfg.clock_mhz * 1000),
            max_replay=self.max_replay)))
        # Two stages, each moving on when the one after it is empty or moves on, so a
        # byte is offered every cycle while they are taken: "fetch" holds the read
        # port's output (its data holds while en is low) and the index it belongs to,
        # "offer" the selected byte.
        index = Signal(len(resp_len))           # the next byte to fetch
        fetched, fetched_index = Signal(), Signal(len(resp_len))
        lane = Signal(range(cfg.bus_bytes))
        offered, byte = Signal(), Signal(8)
        offer_moves = ~offered | self.response_payload.ready
        fetch_moves = ~fetched | offer_moves
        more = responding & (index != resp_len)
        m.d.comb += [self.response_payload.valid.eq(offered), self.response_payload.payload.eq(byte)]
        if replay is not None:
            # The sequencer's answer port reads every cycle: it re-reads the fetched
            # byte unless the fetch stage moves on.
            m.d.comb += replay.answer_index.eq(Mux(fetch_moves, index, fetched_index))
        with m.If(offer_moves):
            m.d.sync += offered.eq(fetched)
            with m.Switch(cmd):
                with m.Case(Command.HELLO):
                    m.d.sync += byte.eq(hello[fetched_index])
                with m.Case(Command.IRQ):
                    m.d.sync += byte.eq(self.irq)
                if replay is not None:
                    with m.Case(*REPLAYS):
                        m.d.sync += byte.eq(replay.answer_byte)
                with m.Case(Command.REG_READ):
                    m.d.sync += byte.eq(reg_data.word_select(
                        fetched_index[:(REGISTER_LAYOUT.size - 1).bit_length()], 8))
                with m.Default():
                    m.d.sync += byte.eq(rport.data.word_select(lane, 8))
        with m.If(fetch_moves):
            position = Signal(window.bits)
            m.d.comb += position.eq(window.position(addr) + index)
            m.d.sync += fetched.eq(more)
            with m.If(more):
                m.d.comb += [rport.en.eq(1), rport.addr.eq(window.beat(position))]
                m.d.sync += [lane.eq(window.lane(position)), fetched_index.eq(index), index.eq(index + 1)]
        with m.If(~responding):
            m.d.sync += [index.eq(0), fetched.eq(0), offered.eq(0)]
