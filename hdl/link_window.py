"""``Window``: where the link's bytes sit in its buffer, and the burst that covers them.

``LinkExec`` buffers one ``max_payload``-aligned window of memory: ``max_payload //
bus_bytes`` beats of ``bus_bytes`` lanes. A byte at address ``a`` sits at position
``a mod max_payload``: beat ``position // bus_bytes``, lane ``position % bus_bytes``.
A range inside one window is one INCR burst over the beats it touches, with byte
strobes on the first and the last beat.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Const, Module, Signal

__all__ = ["Window", "Burst"]


@dataclass(frozen=True)
class Burst:
    """The beats of a byte range: the first beat's index in the window, the beat count
    minus one (AxLEN), and the byte strobes of the first and the last beat."""

    first_beat: object
    beats_minus_1: Signal
    first_strb: Signal
    last_strb: Signal


class Window:
    """Positions in a ``max_payload`` window of ``bus_bytes``-byte beats (both powers of two)."""

    def __init__(self, bus_bytes: int, max_payload: int):
        self.bus_bytes = bus_bytes
        self.lane_bits = (bus_bytes - 1).bit_length()
        self.bits = (max_payload - 1).bit_length()

    def position(self, addr):
        """The position of byte ``addr`` in its window."""
        return addr[:self.bits]

    def beat(self, position):
        """The buffer beat holding ``position``."""
        return position[self.lane_bits:] if self.bits > self.lane_bits else Const(0, 1)

    def lane(self, position):
        """The byte lane of ``position`` in its beat."""
        return position[:self.lane_bits] if self.lane_bits else Const(0, 1)

    def burst(self, m: Module, addr, last) -> Burst:
        """The burst over bytes ``addr..last`` (one window; combinational)."""
        bb, lane_bits = self.bus_bytes, self.lane_bits
        first_beat = self.beat(self.position(addr))
        beats_minus_1 = Signal(8)
        first_strb, last_strb = Signal(bb), Signal(bb)
        lanes = Const((1 << bb) - 1, bb)
        m.d.comb += beats_minus_1.eq(self.beat(self.position(last)) - first_beat)
        # bb - 1 - (last % bb) is ~last's lane bits, bb being a power of two.
        m.d.comb += [first_strb.eq((lanes << addr[:lane_bits])[:bb] if lane_bits else lanes),
                     last_strb.eq((lanes >> (~last[:lane_bits])[:lane_bits])[:bb] if lane_bits else lanes)]
        return Burst(first_beat, beats_minus_1, first_strb, last_strb)
