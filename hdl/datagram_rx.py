"""``DatagramRx``: UDP datagrams in (32-bit words), their bytes out, one datagram after another."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .udp_port import PEER, UDP_WORD, WORD_BYTES

__all__ = ["DATAGRAM_BYTE", "DatagramRx"]

# A byte of a datagram: ``last`` on its last byte, with ``error`` when the datagram is
# not to be trusted (an Ethernet FCS error, or longer than the longest frame); ``peer``
# is its sender, the same on every byte of it.
DATAGRAM_BYTE = data.StructLayout({"data": 8, "last": 1, "error": 1, "peer": PEER})
# A buffered word: its valid bytes minus one, whether it ends its datagram and how.
_ENTRY = data.StructLayout({"data": 8 * WORD_BYTES, "top_lane": 2, "last": 1, "error": 1})


class DatagramRx(wiring.Component):
    """Buffers datagrams from LiteEth's UDP user port and passes on their bytes in order.

    - ``udp``: always ready (LiteEth's receive path cannot wait long). A datagram is
      kept if, at its first word, the buffer has room for ``max_bytes`` more and the
      peer queue a place; otherwise it is dropped whole and ``dropped`` counts it. At
      most ``max_bytes`` of a datagram are kept: a longer one is cut there and its
      last kept byte marked ``error`` (it cannot be one request frame).
    - ``bytes``: cut-through: a byte is offered from the cycle after its word is
      stored, one per cycle while taken; ``last`` on a datagram's last byte, with
      ``error`` set if LiteEth flagged any of its words. ``peer`` holds the sender.
    - ``buffer_words`` 32-bit words (36 bits with the flags: one 7-series BRAM36 at
      1024) hold a datagram being passed on plus the next ones: at the line rate of
      one byte per cycle a consumer that stops for a frame's execution does not make
      the buffer drop the next datagram while it has room for a whole one.
    """

    def __init__(self, *, max_bytes: int, buffer_words: int = 1024, peer_slots: int = 16):
        self.max_words = -(-max_bytes // WORD_BYTES)
        if buffer_words < 2 * self.max_words:
            raise ValueError(f"buffer_words={buffer_words} must hold two datagrams of {max_bytes} bytes "
                             f"(>= {2 * self.max_words})")
        self.max_bytes = max_bytes
        self.buffer_words = buffer_words
        self.peer_slots = peer_slots
        super().__init__({
            "udp": In(stream.Signature(UDP_WORD)),
            "bytes": Out(stream.Signature(DATAGRAM_BYTE)),
            "dropped": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.words = words = SyncFIFOBuffered(width=_ENTRY.size, depth=self.buffer_words)
        m.submodules.peers = peers = SyncFIFOBuffered(width=PEER.size, depth=self.peer_slots)
        self._store(m, words, peers)
        self._unpack(m, words, peers)
        return m

    def _store(self, m, words, peers):
        """Admit or drop each datagram at its first word; store kept words."""
        beat = self.udp.payload
        receiving = Signal()            # inside a datagram (its first word has passed)
        keep = Signal()                 # the datagram being received is stored
        stored = Signal(range(self.max_words + 1))
        tainted = Signal()              # an earlier word of it had LiteEth's error flag
        room = (words.level <= self.buffer_words - self.max_words) & peers.w_rdy
        keeping = Mux(receiving, keep, room)
        index = Mux(receiving, stored, 0)
        cut = index == self.max_words - 1          # the last word that fits
        entry = Signal(_ENTRY)
        top_lane = Signal(2)
        with m.Switch(beat.last_be):
            for lane in range(WORD_BYTES):
                with m.Case(1 << lane):
                    m.d.comb += top_lane.eq(lane)
            with m.Default():
                m.d.comb += top_lane.eq(WORD_BYTES - 1)
        m.d.comb += [
            self.udp.ready.eq(1),
            entry.data.eq(beat.data),
            entry.top_lane.eq(Mux(beat.last, top_lane, WORD_BYTES - 1)),
            entry.last.eq(beat.last | cut),
            entry.error.eq(Mux(receiving, tainted, 0) | beat.error | (cut & ~beat.last)),
            words.w_data.eq(entry),
            peers.w_data.eq(Mux(receiving, 0, beat.ip_address | (beat.src_port << 32))),
        ]
        with m.If(self.udp.valid):
            m.d.sync += [receiving.eq(~beat.last), keep.eq(keeping),
                         tainted.eq(Mux(receiving, tainted, 0) | beat.error)]
            with m.If(keeping & (index < self.max_words)):
                m.d.comb += words.w_en.eq(1)
                m.d.sync += stored.eq(index + 1)
            with m.Else():
                m.d.sync += stored.eq(self.max_words)    # nothing more of it is stored
            with m.If(~receiving):
                with m.If(room):
                    m.d.comb += peers.w_en.eq(1)
                with m.Else():
                    m.d.sync += self.dropped.eq(self.dropped + 1)

    def _unpack(self, m, words, peers):
        """Offer the stored words' bytes one per cycle, lane 0 first."""
        entry = data.View(_ENTRY, words.r_data)
        lane = Signal(2)
        top = lane == entry.top_lane
        out = self.bytes.payload
        m.d.comb += [
            self.bytes.valid.eq(words.r_rdy & peers.r_rdy),
            out.data.eq(entry.data.word_select(lane, 8)),
            out.last.eq(entry.last & top),
            out.error.eq(entry.error),
            out.peer.eq(peers.r_data),
        ]
        with m.If(self.bytes.valid & self.bytes.ready):
            m.d.sync += lane.eq(Mux(top, 0, lane + 1))
            with m.If(top):
                m.d.comb += words.r_en.eq(1)
                with m.If(entry.last):
                    m.d.comb += peers.r_en.eq(1)
