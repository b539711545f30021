"""``LinkRx``: the link's frame receiver (request bytes in; header, payload, verdict out)."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .link_frame import CRC_INIT, FRAME_END, PAYLOAD_BYTE, REQUEST_HEADER, crc16_step
from .spec.link_protocol import REQUEST_LAYOUT, REQUEST_SYNC, Command, Status

__all__ = ["LinkRx", "check_frame_timeout"]


def check_frame_timeout(frame_timeout: int) -> None:
    """``ValueError`` unless ``frame_timeout`` (cycles) is long enough to be a timeout."""
    if frame_timeout < 16:
        raise ValueError(f"frame_timeout={frame_timeout} cycles is too short (>= 16)")


class LinkRx(wiring.Component):
    """Receives one request frame of ``hdl.spec.link_protocol`` at a time.

    - ``rx``: request bytes. Taken in the cycle they are offered (``rx.ready`` high)
      from the hunt for the sync byte until the frame's last CRC byte; low while
      ``end`` waits, so the next frame is hunted for only once this one is answered.
      Bytes before a sync byte are dropped.
    - ``header``: the request header (``REQUEST_LAYOUT``), byte ``i`` of the header
      into bits ``8*i..``. Cleared at the sync byte; it holds from the header's last
      byte until the next sync byte, so it is valid with every ``payload`` byte and
      with ``end``.
    - ``payload``: each payload byte of a write command (``Command.has_payload``) in
      the cycle it arrives, with its index (0..length-1). It cannot wait: the serial
      line does not. The CRC is not known yet, so a consumer must not act on the
      bytes before ``end`` says OK.
    - ``end``: one per frame, offered the cycle after its last CRC byte was taken:
      ``Status.OK`` if the CRC matched, ``Status.CRC`` if not. ``Status.TRUNCATED``
      once ``frame_timeout + 1`` cycles in a row pass without a byte after the sync
      byte, so a frame survives gaps of up to ``frame_timeout`` idle cycles
      (``header`` then holds the bytes that arrived, zeros for the rest). Held until
      taken.
    - ``busy``: high from the sync byte until ``end`` is taken.
    """

    rx: In(stream.Signature(8))
    header: Out(REQUEST_HEADER)
    payload: Out(stream.Signature(PAYLOAD_BYTE, always_ready=True))
    end: Out(stream.Signature(FRAME_END))
    busy: Out(1)

    def __init__(self, *, frame_timeout: int):
        check_frame_timeout(frame_timeout)
        self.frame_timeout = frame_timeout
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        header_bytes = REQUEST_LAYOUT.size
        rx_byte = self.rx.payload
        rx_take = self.rx.valid & self.rx.ready

        count = Signal(range(max(header_bytes, 1 << len(self.header.length))))  # byte of header or payload
        crc = Signal(16, init=CRC_INIT)
        crc_low = Signal(8)
        timer = Signal(range(self.frame_timeout + 1))
        crc_next = crc16_step(m, crc, rx_byte)

        # The header with the byte now arriving in place: the decision after the last
        # header byte needs the whole length field, not the one registered so far.
        incoming = Signal(REQUEST_HEADER)
        m.d.comb += [incoming.eq(self.header), incoming.as_value().word_select(count, 8).eq(rx_byte)]
        writes = Cat(*(incoming.cmd == c for c in Command if c.has_payload)).any()

        def take_bytes():
            """rx is always ready; a frame that stops arriving ends TRUNCATED."""
            m.d.comb += self.rx.ready.eq(1)
            with m.If(rx_take):
                m.d.sync += timer.eq(0)
            with m.Elif(timer == self.frame_timeout):
                m.d.sync += self.end.payload.status.eq(Status.TRUNCATED)
                m.next = "END"
            with m.Else():
                m.d.sync += timer.eq(timer + 1)

        with m.FSM() as fsm:
            with m.State("HUNT"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_take & (rx_byte == REQUEST_SYNC)):
                    m.d.sync += [crc.eq(CRC_INIT), count.eq(0), timer.eq(0), self.header.eq(0)]
                    m.next = "HEADER"

            with m.State("HEADER"):
                take_bytes()
                with m.If(rx_take):
                    m.d.sync += [crc.eq(crc_next), count.eq(count + 1), self.header.eq(incoming)]
                    with m.If(count == header_bytes - 1):
                        m.d.sync += count.eq(0)
                        with m.If(writes & (incoming.length != 0)):
                            m.next = "PAYLOAD"
                        with m.Else():
                            m.next = "CRC_LOW"

            with m.State("PAYLOAD"):
                take_bytes()
                m.d.comb += [self.payload.valid.eq(rx_take), self.payload.payload.data.eq(rx_byte),
                             self.payload.payload.index.eq(count)]
                with m.If(rx_take):
                    m.d.sync += [crc.eq(crc_next), count.eq(count + 1)]
                    with m.If(count == self.header.length - 1):
                        m.next = "CRC_LOW"

            with m.State("CRC_LOW"):
                take_bytes()
                with m.If(rx_take):
                    m.d.sync += crc_low.eq(rx_byte)
                    m.next = "CRC_HIGH"

            with m.State("CRC_HIGH"):
                take_bytes()
                with m.If(rx_take):
                    matched = Cat(crc_low, rx_byte) == crc
                    m.d.sync += self.end.payload.status.eq(Mux(matched, Status.OK, Status.CRC))
                    m.next = "END"

            with m.State("END"):
                m.d.comb += self.end.valid.eq(1)
                with m.If(self.end.ready):
                    m.next = "HUNT"

        m.d.comb += self.busy.eq(~fsm.ongoing("HUNT"))
        return m
