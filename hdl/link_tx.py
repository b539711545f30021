"""``LinkTx``: the link's frame sender (response header and payload in, frame bytes out)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .link_frame import CRC_INIT, RESPONSE_HEADER, crc16_step
from .spec.link_protocol import RESPONSE_LAYOUT, RESPONSE_SYNC

__all__ = ["LinkTx"]


class LinkTx(wiring.Component):
    """Sends one response frame of ``hdl.spec.link_protocol`` per ``response``.

    - ``response``: the header (``RESPONSE_LAYOUT``); its ``length`` says how many
      ``payload`` bytes follow. It is read for the whole frame and taken (``ready``)
      in the cycle the frame's last byte is taken by ``tx``: a producer knows the
      frame is on its way when its response is accepted.
    - ``payload``: the response's payload bytes, exactly ``length`` of them, passed
      to ``tx`` as they come (``payload.ready`` is ``tx.ready`` while they are due).
    - ``tx``: the frame, sync byte to CRC. The sync byte is offered the cycle after
      ``response`` becomes valid; every other byte the cycle after the previous one
      was taken, or as soon as its payload byte is offered.
    """

    response: In(stream.Signature(RESPONSE_HEADER))
    payload: In(stream.Signature(8))
    tx: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        header = self.response.payload
        header_bytes = RESPONSE_LAYOUT.size
        count = Signal(range(max(header_bytes, 1 << len(header.length))))  # byte of header or payload
        crc = Signal(16, init=CRC_INIT)
        crc_next = crc16_step(m, crc, self.tx.payload)
        tx_take = self.tx.valid & self.tx.ready
        checked = Signal()              # the byte offered now is covered by the CRC

        def send(byte):
            m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.response.valid):
                    m.d.sync += [crc.eq(CRC_INIT), count.eq(0)]
                    m.next = "SYNC"

            with m.State("SYNC"):
                send(RESPONSE_SYNC)
                with m.If(tx_take):
                    m.next = "HEADER"

            with m.State("HEADER"):
                send(header.as_value().word_select(count, 8))
                m.d.comb += checked.eq(1)
                with m.If(tx_take):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == header_bytes - 1):
                        m.d.sync += count.eq(0)
                        with m.If(header.length == 0):
                            m.next = "CRC_LOW"
                        with m.Else():
                            m.next = "PAYLOAD"

            with m.State("PAYLOAD"):
                m.d.comb += [self.tx.valid.eq(self.payload.valid), self.tx.payload.eq(self.payload.payload),
                             self.payload.ready.eq(self.tx.ready), checked.eq(1)]
                with m.If(tx_take):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == header.length - 1):
                        m.next = "CRC_LOW"

            with m.State("CRC_LOW"):
                send(crc[:8])
                with m.If(tx_take):
                    m.next = "CRC_HIGH"

            with m.State("CRC_HIGH"):
                send(crc[8:])
                with m.If(tx_take):
                    m.d.comb += self.response.ready.eq(1)
                    m.next = "IDLE"

        with m.If(tx_take & checked):
            m.d.sync += crc.eq(crc_next)
        return m
