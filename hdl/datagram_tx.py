"""``DatagramTx``: a frame's bytes in, one UDP datagram of 32-bit words out."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .udp_port import PEER, UDP_WORD, WORD_BYTES

__all__ = ["DatagramTx"]


class DatagramTx(wiring.Component):
    """Collects ``length`` bytes, then sends them to ``peer`` as one datagram.

    - ``frame``: the datagram's bytes; ``length`` (bytes, >= 1) and ``peer`` are read
      with its first byte. Taken one per cycle while collecting; not taken (ready
      low) while the collected datagram is being sent.
    - ``udp``: LiteEth's port. The whole datagram is buffered first, because LiteEth
      sends a frame's bytes to the PHY as they come and cannot wait in mid-frame.
      Its words are then offered back to back (one per cycle while taken), starting
      two cycles after the last byte came in, with ``length``, ``peer``'s address as
      the destination and ``src_port`` as the source port on every word.
    """

    def __init__(self, *, max_bytes: int, src_port: int):
        if not 1 <= src_port <= 0xFFFF:
            raise ValueError(f"src_port={src_port} must be 1..65535")
        self.max_bytes = max_bytes
        self.src_port = src_port
        super().__init__({
            "frame": In(stream.Signature(8)),
            "length": In(16),
            "peer": In(PEER),
            "udp": Out(stream.Signature(UDP_WORD)),
        })

    def elaborate(self, platform):
        m = Module()
        words = -(-self.max_bytes // WORD_BYTES)
        lane_bits = (WORD_BYTES - 1).bit_length()
        m.submodules.buffer = buffer = Memory(shape=8 * WORD_BYTES, depth=words, init=[])
        wport = buffer.write_port(granularity=8)
        rport = buffer.read_port()

        count = Signal(16)              # bytes collected
        length = Signal(16)
        peer = Signal(PEER)
        word = Signal(range(words + 1))  # the word offered
        last_byte = length - 1
        last_word = last_byte[lane_bits:]

        frame_take = self.frame.valid & self.frame.ready
        udp_take = self.udp.valid & self.udp.ready
        out = self.udp.payload
        m.d.comb += [
            out.data.eq(rport.data), out.last.eq(word == last_word),
            out.last_be.eq(Mux(out.last, 1 << last_byte[:lane_bits], 0)),
            out.ip_address.eq(peer.ip_address), out.dst_port.eq(peer.port),
            out.src_port.eq(self.src_port), out.length.eq(length),
        ]
        with m.FSM():
            with m.State("COLLECT"):
                m.d.comb += [self.frame.ready.eq(1), wport.addr.eq(count[lane_bits:]),
                             wport.data.eq(self.frame.payload.replicate(WORD_BYTES)),
                             wport.en.eq(Mux(frame_take, 1 << count[:lane_bits], 0))]
                total = Mux(count == 0, self.length, length)
                with m.If(frame_take):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == 0):
                        m.d.sync += [length.eq(self.length), peer.eq(self.peer)]
                    with m.If(count == total - 1):
                        m.next = "FETCH"
            with m.State("FETCH"):
                # The read port has one cycle of latency; afterwards the next word is
                # fetched while the current one is taken, so words follow back to back.
                m.d.comb += [rport.addr.eq(0)]
                m.d.sync += word.eq(0)
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.udp.valid.eq(1), rport.addr.eq(Mux(udp_take, word + 1, word))]
                with m.If(udp_take):
                    m.d.sync += word.eq(word + 1)
                    with m.If(out.last):
                        m.d.sync += count.eq(0)
                        m.next = "COLLECT"
        return m
