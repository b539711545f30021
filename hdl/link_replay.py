"""``LinkReplay``: the link's REPLAY sequencer (a planned job's register accesses in one request)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .axi import PROT_DEFAULT, AXI4LiteSignature
from .link_frame import PAYLOAD_BYTE, header_layout
from .spec.link_protocol import (REGISTER_LAYOUT, REPLAY_ANSWER_LAYOUT, REPLAY_HEADER_LAYOUT,
                                 REPLAY_READ_LAYOUT, REPLAY_WRITE_LAYOUT, ReplayResult, Status,
                                 offset_refused, replay_answer_length, replay_checks, replay_length)

__all__ = ["LinkReplay"]

_HEADER = header_layout(REPLAY_HEADER_LAYOUT)


def _axi_status(resp):
    """The link status of an AXI xRESP (EXOKAY counts as OKAY)."""
    return Mux(resp[1], Mux(resp[0], Status.AXI_DECERR, Status.AXI_SLVERR), Status.OK)


class LinkReplay(wiring.Component):
    """Runs one REPLAY payload (``hdl.spec.link_protocol``) on ``ctrl`` (AXI4-Lite).

    - ``payload``: the REPLAY's payload bytes as they arrive (only REPLAY's; indices at or
      above ``max_replay`` are dropped). The header is captured and every offset checked
      (``offset_refused``) as the bytes pass; the rest lands in a byte buffer.
    - ``start`` (one cycle, with ``length`` the payload length): the CRC, the seq rules
      and ``request_checks`` passed. The first failing ``replay_checks`` rule ends the run
      with its status and no AXI traffic. Otherwise, with ``reread`` low: the busy read,
      the writes, the start write, the done polls (``timeout`` cycles counted from the
      start write's B), the reads; with ``reread`` high (a repeat): only the reads, and
      the result byte of the last run is kept.
    - ``done``: high for one cycle at the end, with ``status`` (OK, a refusal, or the
      first AXI error) and ``answer_length`` (the answer's bytes when OK, else 0); the
      answer (result byte, then the values) stays in the buffer until the next run.
    - ``answer_index`` -> ``answer_byte``: byte ``answer_index`` of the answer, one
      cycle later (only while no run is under way).
    - AXI4-Lite: one access at a time; AW and W together; every valid raised without
      waiting for ready and held until its handshake.
    """

    def __init__(self, *, max_replay: int, ctrl_addr_width: int):
        if not replay_length(0, 0) <= max_replay <= 4096:
            raise ValueError(f"max_replay={max_replay} must be in {replay_length(0, 0)}..4096")
        self.max_replay = max_replay
        self.ctrl_addr_width = ctrl_addr_width
        super().__init__({
            "payload": In(stream.Signature(PAYLOAD_BYTE, always_ready=True)),
            "length": In(16),
            "start": In(1),
            "reread": In(1),
            "done": Out(1),
            "status": Out(8),
            "answer_length": Out(16),
            "answer_index": In(16),
            "answer_byte": Out(8),
            "ctrl": Out(AXI4LiteSignature(addr_width=ctrl_addr_width)),
        })

    def elaborate(self, platform):
        m = Module()
        size = self.max_replay
        # Bytes 0..size-1: the request payload; size..2*size-1: the answer.
        m.submodules.buffer = buffer = Memory(shape=8, depth=2 * size, init=[])
        wport = buffer.write_port()
        rport = buffer.read_port()
        answer_base = size

        header = Signal(_HEADER)
        refused = Signal()                  # an offset seen so far is refused
        low = Signal(8)                     # an offset's low byte, until its high byte comes
        entry = Signal(range(max(REPLAY_WRITE_LAYOUT.size, REPLAY_READ_LAYOUT.size) + 1))
        writes_left = Signal(8)             # while receiving: entries still to come
        reads_left = Signal(8)

        # -- reception: capture the header, check each offset, store every byte --------
        head_bytes = REPLAY_HEADER_LAYOUT.size
        data, index = self.payload.payload.data, self.payload.payload.index
        header_now = Signal(_HEADER)
        m.d.comb += [header_now.eq(header),
                     header_now.as_value().word_select(index[:(head_bytes - 1).bit_length()], 8).eq(data)]
        offset_now = Cat(low, data)

        def offset_byte(at):
            """Byte ``at`` of an entry whose offset is its first two bytes."""
            with m.If(at == 0):
                m.d.sync += low.eq(data)
            with m.Elif(at == 1):
                with m.If(offset_refused(offset_now, self.ctrl_addr_width)):
                    m.d.sync += refused.eq(1)

        with m.If(self.payload.valid):
            with m.If(index < size):
                m.d.comb += [wport.en.eq(1), wport.addr.eq(index), wport.data.eq(data)]
            with m.If(index == 0):
                m.d.sync += [refused.eq(0), entry.eq(0)]
            with m.If(index < head_bytes):
                m.d.sync += header.eq(header_now)
                with m.If(index == head_bytes - 1):
                    m.d.sync += [writes_left.eq(header_now.write_count), reads_left.eq(header_now.read_count),
                                 entry.eq(0)]
                    for name in ("status_offset", "ctrl_offset"):
                        with m.If(offset_refused(getattr(header_now, name), self.ctrl_addr_width)):
                            m.d.sync += refused.eq(1)
            with m.Elif(writes_left != 0):
                offset_byte(entry)
                m.d.sync += entry.eq(entry + 1)
                with m.If(entry == REPLAY_WRITE_LAYOUT.size - 1):
                    m.d.sync += [entry.eq(0), writes_left.eq(writes_left - 1)]
            with m.Elif(reads_left != 0):
                offset_byte(entry)
                m.d.sync += entry.eq(entry + 1)
                with m.If(entry == REPLAY_READ_LAYOUT.size - 1):
                    m.d.sync += [entry.eq(0), reads_left.eq(reads_left - 1)]

        # -- the run ---------------------------------------------------------------
        ctrl = self.ctrl
        address = Signal(self.ctrl_addr_width)
        value = Signal(32)
        ptr = Signal(range(2 * size))          # the next buffer byte to fetch
        fetched = Signal(8 * REPLAY_WRITE_LAYOUT.size)   # an entry, byte i at bits 8i
        fetch_left = Signal(range(REPLAY_WRITE_LAYOUT.size + 1))
        item = Signal(8)                       # the current write or read
        timer = Signal(32)
        aw_done, w_done = Signal(), Signal()
        wbyte = Signal(range(REGISTER_LAYOUT.size))
        answer_ptr = Signal(range(2 * size))
        after_fetch = Signal()                 # which entry the fetch loads: 0 write, 1 read
        rerun = Signal()                       # this run is a repeat's: reads only

        reads_base = head_bytes + header.write_count * REPLAY_WRITE_LAYOUT.size
        checks = replay_checks(self.length, header.write_count, header.read_count, refused,
                               max_replay=self.max_replay)

        m.d.comb += [ctrl.awaddr.eq(address), ctrl.araddr.eq(address), ctrl.awprot.eq(PROT_DEFAULT),
                     ctrl.arprot.eq(PROT_DEFAULT), ctrl.wdata.eq(value),
                     ctrl.wstrb.eq((1 << REGISTER_LAYOUT.size) - 1)]
        # The read port is always enabled: the answer's byte unless a run fetches.
        m.d.comb += [rport.addr.eq(self.answer_index + answer_base), self.answer_byte.eq(rport.data)]

        def finish(code, nbytes=0):
            m.d.sync += [self.status.eq(code), self.answer_length.eq(nbytes)]
            m.next = "DONE"

        def write_result(code, nbytes, then="FINISH_OK"):
            m.d.comb += [wport.en.eq(1), wport.addr.eq(answer_base), wport.data.eq(code)]
            m.d.sync += self.answer_length.eq(nbytes)
            m.next = then

        def fetch(start, count, kind):
            m.d.sync += [ptr.eq(start), fetch_left.eq(count), after_fetch.eq(kind)]
            m.next = "FETCH_ADDR"

        def next_write():
            with m.If(item == header.write_count):
                m.d.sync += [address.eq(header.ctrl_offset), value.eq(header.start), aw_done.eq(0),
                             w_done.eq(0)]
                m.next = "START_AW_W"
            with m.Else():
                fetch(head_bytes + item * REPLAY_WRITE_LAYOUT.size, REPLAY_WRITE_LAYOUT.size, 0)

        def next_read():
            with m.If(item == header.read_count):
                m.next = "RESULT"
            with m.Else():
                fetch(reads_base + item * REPLAY_READ_LAYOUT.size, REPLAY_READ_LAYOUT.size, 1)

        # The timeout counts from the start write's B (reset there: after this), saturating.
        with m.If(timer != (1 << 32) - 1):
            m.d.sync += timer.eq(timer + 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [item.eq(0), rerun.eq(self.reread)]
                    for i, (failed, code) in enumerate(checks):
                        with (m.If if i == 0 else m.Elif)(failed):
                            finish(code)
                    with m.Elif(self.reread):
                        m.next = "REREAD_ADDR"
                    with m.Else():
                        m.d.sync += address.eq(header.status_offset)
                        m.next = "BUSY_AR"

            # A repeat answers as the first run did: reads again only after a DONE.
            with m.State("REREAD_ADDR"):
                m.d.comb += rport.addr.eq(answer_base)
                m.next = "REREAD_DATA"
            with m.State("REREAD_DATA"):
                with m.If(rport.data == ReplayResult.DONE):
                    next_read()
                with m.Else():
                    m.d.sync += self.answer_length.eq(REPLAY_ANSWER_LAYOUT.size)
                    m.next = "FINISH_OK"

            def read_states(name, on_data):
                """``<name>_AR`` offers the read of ``address``; ``<name>_R`` takes its R: an
                error response finishes with its status, data goes to ``on_data(rdata)``."""
                with m.State(f"{name}_AR"):
                    m.d.comb += ctrl.arvalid.eq(1)
                    with m.If(ctrl.arready):
                        m.next = f"{name}_R"
                with m.State(f"{name}_R"):
                    m.d.comb += ctrl.rready.eq(1)
                    with m.If(ctrl.rvalid):
                        with m.If(ctrl.rresp[1]):
                            finish(_axi_status(ctrl.rresp))
                        with m.Else():
                            on_data(ctrl.rdata)

            def after_busy_read(data):
                with m.If((data & header.busy_mask) != 0):
                    write_result(ReplayResult.BUSY, REPLAY_ANSWER_LAYOUT.size)
                with m.Else():
                    next_write()

            read_states("BUSY", after_busy_read)

            # Buffer bytes ptr.. into ``fetched`` (one per two cycles: the read port's latency).
            with m.State("FETCH_ADDR"):
                m.d.comb += rport.addr.eq(ptr)
                m.d.sync += ptr.eq(ptr + 1)
                m.next = "FETCH_DATA"
            with m.State("FETCH_DATA"):
                m.d.sync += [fetched.eq(Cat(fetched[8:], rport.data)), fetch_left.eq(fetch_left - 1)]
                with m.If(fetch_left == 1):
                    m.next = "FETCHED"
                with m.Else():
                    m.next = "FETCH_ADDR"
            with m.State("FETCHED"):
                # The entry's bytes sit at the top of ``fetched``.
                with m.If(after_fetch == 0):
                    m.d.sync += [address.eq(fetched[:16]), value.eq(fetched[16:48]), aw_done.eq(0),
                                 w_done.eq(0)]
                    m.next = "WRITE_AW_W"
                with m.Else():
                    m.d.sync += address.eq(fetched[-16:])
                    m.next = "READ_AR"

            def write_states(name, after):
                with m.State(f"{name}_AW_W"):
                    m.d.comb += [ctrl.awvalid.eq(~aw_done), ctrl.wvalid.eq(~w_done)]
                    aw_now, w_now = aw_done | ctrl.awready, w_done | ctrl.wready
                    m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]
                    with m.If(aw_now & w_now):
                        m.next = f"{name}_B"
                with m.State(f"{name}_B"):
                    m.d.comb += ctrl.bready.eq(1)
                    with m.If(ctrl.bvalid):
                        with m.If(ctrl.bresp[1]):
                            finish(_axi_status(ctrl.bresp))
                        with m.Else():
                            after()

            def after_write():
                m.d.sync += item.eq(item + 1)
                m.next = "NEXT_WRITE"

            def after_start():
                m.d.sync += [timer.eq(0), address.eq(header.ctrl_offset)]
                m.next = "POLL_AR"

            write_states("WRITE", after_write)
            with m.State("NEXT_WRITE"):
                next_write()
            write_states("START", after_start)

            def after_poll(data):
                with m.If((data & header.done_mask) != 0):
                    m.d.sync += item.eq(0)
                    m.next = "NEXT_READ"
                with m.Elif(timer >= header.timeout):
                    write_result(ReplayResult.TIMEOUT, REPLAY_ANSWER_LAYOUT.size)
                with m.Else():
                    m.next = "POLL_AR"

            read_states("POLL", after_poll)

            with m.State("NEXT_READ"):
                next_read()
            def after_read(data):
                m.d.sync += [value.eq(data), wbyte.eq(0),
                             answer_ptr.eq(answer_base + REPLAY_ANSWER_LAYOUT.size + item * REGISTER_LAYOUT.size)]
                m.next = "STORE"

            read_states("READ", after_read)
            with m.State("STORE"):
                m.d.comb += [wport.en.eq(1), wport.addr.eq(answer_ptr), wport.data.eq(value.word_select(wbyte, 8))]
                m.d.sync += [wbyte.eq(wbyte + 1), answer_ptr.eq(answer_ptr + 1)]
                with m.If(wbyte == REGISTER_LAYOUT.size - 1):
                    m.d.sync += item.eq(item + 1)
                    m.next = "NEXT_READ"

            with m.State("RESULT"):
                with m.If(rerun):
                    m.d.sync += self.answer_length.eq(replay_answer_length(header.read_count))
                    m.next = "FINISH_OK"
                with m.Else():
                    write_result(ReplayResult.DONE, replay_answer_length(header.read_count))
            with m.State("FINISH_OK"):
                m.d.sync += self.status.eq(Status.OK)
                m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
