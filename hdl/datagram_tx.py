"""``DatagramTx``: a frame's bytes in, one UDP datagram of 32-bit words out."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .udp_port import PEER, UDP_WORD, WORD_BYTES

__all__ = ["DatagramTx"]


class DatagramTx(wiring.Component):
    """Collects ``length`` bytes, then sends them to ``peer`` as one datagram.

    - ``frame``: the datagram's bytes; ``length`` (bytes, >= 1) and ``peer`` are read
      with its first byte. Taken one per cycle while one of the two datagram buffers
      is free; not taken (ready low) while both hold a datagram not yet sent.
    - ``udp``: LiteEth's port. A whole datagram is buffered first, because LiteEth
      sends a frame's bytes to the PHY as they come and cannot wait in mid-frame.
      Its words are then offered back to back (one per cycle while taken), starting
      two cycles after its last byte came in or after the previous datagram's last
      word was taken, whichever is later, with its ``length``, its ``peer``'s address
      as the destination and ``src_port`` as the source port on every word. With two
      buffers the next datagram is collected while one is sent, so a stream of
      datagrams goes at the slower of one byte per cycle in and LiteEth's rate out.
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
        word_bits = max((words - 1).bit_length(), 1)
        lane_bits = (WORD_BYTES - 1).bit_length()
        # Two buffers of ``words`` words: the buffer is the top address bit.
        m.submodules.buffer = buffer = Memory(shape=8 * WORD_BYTES, depth=2 << word_bits, init=[])
        wport = buffer.write_port(granularity=8)
        rport = buffer.read_port()

        full = Array(Signal(name=f"full{i}") for i in range(2))      # holds a datagram to send
        lengths = Array(Signal(16, name=f"length{i}") for i in range(2))
        peers = Array(Signal(PEER, name=f"peer{i}") for i in range(2))
        collecting = Signal()           # the buffer bytes go into
        sending = Signal()              # the buffer words come from
        count = Signal(16)              # bytes collected
        word = Signal(word_bits + 1)    # the word offered

        # Collect into a free buffer.
        frame_take = self.frame.valid & self.frame.ready
        total = Mux(count == 0, self.length, lengths[collecting])
        m.d.comb += [self.frame.ready.eq(~full[collecting]),
                     wport.addr.eq(Cat(count[lane_bits:][:word_bits], collecting)),
                     wport.data.eq(self.frame.payload.replicate(WORD_BYTES)),
                     wport.en.eq(Mux(frame_take, 1 << count[:lane_bits], 0))]
        with m.If(frame_take):
            m.d.sync += count.eq(count + 1)
            with m.If(count == 0):
                m.d.sync += [lengths[collecting].eq(self.length), peers[collecting].eq(self.peer)]
            with m.If(count == total - 1):
                m.d.sync += [count.eq(0), full[collecting].eq(1), collecting.eq(~collecting)]

        # Send a full buffer.
        length = lengths[sending]
        last_byte = length - 1
        last_word = last_byte[lane_bits:]
        peer = peers[sending]
        udp_take = self.udp.valid & self.udp.ready
        out = self.udp.payload
        m.d.comb += [
            out.data.eq(rport.data), out.last.eq(word == last_word),
            out.last_be.eq(Mux(out.last, 1 << last_byte[:lane_bits], 0)),
            out.ip_address.eq(peer.ip_address), out.dst_port.eq(peer.port),
            out.src_port.eq(self.src_port), out.length.eq(length),
        ]
        with m.FSM():
            with m.State("WAIT"):
                # The read port has one cycle of latency: the first word is fetched
                # while waiting; afterwards the next word is fetched while the current
                # one is taken, so words follow back to back.
                m.d.comb += rport.addr.eq(sending << word_bits)
                m.d.sync += word.eq(0)
                with m.If(full[sending]):
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.udp.valid.eq(1),
                             rport.addr.eq(Cat(Mux(udp_take, word + 1, word)[:word_bits], sending))]
                with m.If(udp_take):
                    m.d.sync += word.eq(word + 1)
                    with m.If(out.last):
                        m.d.sync += [full[sending].eq(0), sending.eq(~sending)]
                        m.next = "WAIT"
        return m
