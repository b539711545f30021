"""``EthLink``: the link protocol over UDP (LiteEth's user port), one frame per datagram.

The protocol is ``hdl.spec.link_protocol``; the blocks are ``UartBridge``'s, with a
datagram unpacker in front and a datagram packer behind::

    udp_rx ─► DatagramRx ─► gate ─► LinkRx ─header, payload─► LinkExec ─► LinkTx ─► DatagramTx ─► udp_tx
    (words)   (buffer, bytes) │       └──────── end ──► gate ──┘               (length from the header)
                              └ one datagram at a time; a frame's end waits for its datagram's end

Each datagram carries one request frame; its answer goes back to the datagram's sender
(address and port) as one datagram whose UDP length is ``RESPONSE_OVERHEAD`` plus the
answer's payload length, known from the answer's header before its first byte.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, flipped

from .axi import AXI4LiteSignature, AXI4Signature
from .datagram_rx import DatagramRx
from .datagram_tx import DatagramTx
from .link_exec import LinkExec, check_limits
from .link_rx import LinkRx, check_frame_timeout
from .link_tx import LinkTx
from .spec.config import AccelConfig
from .spec.link_protocol import REQUEST_OVERHEAD, RESPONSE_OVERHEAD
from .udp_port import PEER, UDP_WORD

__all__ = ["MAX_PAYLOAD", "FRAME_TIMEOUT", "EthLink"]

# A request frame of 1024 payload bytes is 1024 + REQUEST_OVERHEAD bytes: with the UDP,
# IPv4 and Ethernet headers it fits a 1500-byte MTU (2048 would not).
MAX_PAYLOAD = 1024
# Cycles without a byte after which a frame counts as truncated. Within a datagram the
# bytes come at the line rate or faster (LiteEth passes a frame on as it arrives), so a
# gap this long means the datagram ended before its frame: it is answered TRUNCATED
# about 2 us (at 125 MHz) after its last byte instead of the UART's 10 ms.
FRAME_TIMEOUT = 256


class EthLink(wiring.Component):
    """Executes link requests arriving as UDP datagrams; answers each with a datagram.

    - ``udp_rx``: LiteEth's received datagrams (``link_source_*``), always taken;
      ``udp_tx``: the answers (``link_sink_*``), sent from ``udp_port`` to the
      request's source address and port.
    - One datagram is one request frame. Its bytes go to ``LinkRx`` one per cycle (at
      most one bubble between datagrams besides the time a request takes to run); the
      next datagram's bytes only after the answer to this one is on its way, so a
      datagram never feeds two frames. Bytes after a frame's end are dropped.
    - A frame's ``end`` reaches ``LinkExec`` only once its whole datagram is in, so a
      datagram LiteEth flags as corrupted (Ethernet FCS), or one longer than the
      longest request frame, is not executed and not answered, even when its frame
      checks out. A datagram that ends before its frame does is answered
      ``Status.TRUNCATED`` ``frame_timeout`` cycles after its last byte; a link CRC
      error is answered ``Status.CRC``; a datagram without a sync byte is not answered.
    - Datagrams arriving while the buffer has no room for a longest frame are dropped
      (``dropped`` counts them; see ``DatagramRx``).
    - ``busy``: a request is being received, executed or answered (an LED).

    The timing of the link steps is ``LinkRx``'s, ``LinkExec``'s and ``LinkTx``'s.
    """

    def __init__(self, config: AccelConfig, *, udp_port: int, max_payload: int = MAX_PAYLOAD,
                 ctrl_addr_width: int = 8, frame_timeout: int = FRAME_TIMEOUT):
        check_limits(config, max_payload=max_payload, ctrl_addr_width=ctrl_addr_width)
        check_frame_timeout(frame_timeout)
        self.config = config
        self.udp_port = udp_port
        self.max_payload = max_payload
        self.ctrl_addr_width = ctrl_addr_width
        self.frame_timeout = frame_timeout
        super().__init__({
            "udp_rx": In(stream.Signature(UDP_WORD)),
            "udp_tx": Out(stream.Signature(UDP_WORD)),
            "ctrl": Out(AXI4LiteSignature(addr_width=ctrl_addr_width)),
            "mem": Out(AXI4Signature(config)),
            "irq": In(1),
            "busy": Out(1),
            "dropped": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.unpacker = unpacker = DatagramRx(max_bytes=REQUEST_OVERHEAD + self.max_payload)
        m.submodules.receiver = receiver = LinkRx(frame_timeout=self.frame_timeout)
        m.submodules.executor = executor = LinkExec(self.config, max_payload=self.max_payload,
                                                    ctrl_addr_width=self.ctrl_addr_width)
        m.submodules.sender = sender = LinkTx()
        m.submodules.packer = packer = DatagramTx(max_bytes=RESPONSE_OVERHEAD + self.max_payload,
                                                  src_port=self.udp_port)
        wiring.connect(m, flipped(self.udp_rx), unpacker.udp)
        m.d.comb += executor.header.eq(receiver.header)
        wiring.connect(m, receiver.payload, executor.payload)
        wiring.connect(m, executor.response, sender.response)
        wiring.connect(m, executor.response_payload, sender.payload)
        wiring.connect(m, executor.ctrl, flipped(self.ctrl))
        wiring.connect(m, executor.mem, flipped(self.mem))
        wiring.connect(m, packer.udp, flipped(self.udp_tx))

        peer = Signal(PEER)
        self._gate(m, unpacker, receiver, executor, peer)
        wiring.connect(m, sender.tx, packer.frame)
        m.d.comb += [packer.length.eq(RESPONSE_OVERHEAD + executor.response.payload.length),
                     packer.peer.eq(peer)]
        m.d.comb += [executor.irq.eq(self.irq), self.busy.eq(receiver.busy),
                     self.dropped.eq(unpacker.dropped)]
        return m

    def _gate(self, m, unpacker, receiver, executor, peer):
        """One datagram at a time into ``receiver``; its frame's end held until the
        datagram is in, and dropped when the datagram is bad."""
        incoming = unpacker.bytes
        first = Signal(init=1)          # the next byte taken starts a datagram
        bad = Signal()                  # the datagram just taken is not to be answered
        take = incoming.valid & incoming.ready
        with m.If(take):
            m.d.sync += first.eq(incoming.payload.last)
            with m.If(first):
                m.d.sync += peer.eq(incoming.payload.peer)
            with m.If(incoming.payload.last):
                m.d.sync += bad.eq(incoming.payload.error)

        with m.FSM(name="gate"):
            with m.State("FEED"):
                with m.If(receiver.rx.ready):
                    m.d.comb += [receiver.rx.valid.eq(incoming.valid),
                                 receiver.rx.payload.eq(incoming.payload.data),
                                 incoming.ready.eq(1)]
                    with m.If(take & incoming.payload.last):
                        m.next = "DONE"
                with m.Else():
                    # The frame ended (or timed out) inside the datagram: drop the rest.
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += incoming.ready.eq(1)
                with m.If(take & incoming.payload.last):
                    m.next = "DONE"
            with m.State("DONE"):
                # The datagram is in: its frame's end may go on (or is dropped), and once
                # its answer is on its way the receiver hunts again in the next datagram.
                m.d.comb += [executor.end.valid.eq(receiver.end.valid & ~bad),
                             executor.end.payload.eq(receiver.end.payload),
                             receiver.end.ready.eq(bad | executor.end.ready)]
                with m.If(~receiver.busy):
                    m.next = "FEED"
