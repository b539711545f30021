"""What the link's frame receiver and sender share: header layouts and the CRC step.

The header layouts are Amaranth ``StructLayout``s made from the field layouts of
``hdl.spec.link_protocol``, in the same order and with the same widths. A
``StructLayout`` puts its first field in the lowest bits, and a little-endian field
puts its first byte in its lowest bits, so byte ``i`` of a header on the wire is
bits ``8*i .. 8*i+7`` of the header's value. ``LinkRx`` and ``LinkTx`` therefore move
header bytes with ``word_select(i, 8)`` and never name a byte position.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data

from .spec.link_protocol import REQUEST_LAYOUT, RESPONSE_LAYOUT, Layout

__all__ = ["header_layout", "REQUEST_HEADER", "RESPONSE_HEADER", "PAYLOAD_BYTE", "FRAME_END",
           "CRC_INIT", "crc16_step"]


def header_layout(layout: Layout) -> data.StructLayout:
    """The ``StructLayout`` of ``layout``: one unsigned field of ``8 * size`` bits per field."""
    return data.StructLayout({f.name: 8 * f.size for f in layout.fields})


REQUEST_HEADER = header_layout(REQUEST_LAYOUT)
RESPONSE_HEADER = header_layout(RESPONSE_LAYOUT)
# A request payload byte and its index in the payload (the length field's width).
PAYLOAD_BYTE = data.StructLayout({"data": 8, "index": 8 * REQUEST_LAYOUT["length"].size})
# The end of a request frame: Status.OK (the CRC matched), CRC or TRUNCATED.
FRAME_END = data.StructLayout({"status": 8 * RESPONSE_LAYOUT["status"].size})

CRC_INIT = 0xFFFF


def crc16_step(m: Module, crc, byte) -> Signal:
    """A signal holding CRC-16/CCITT-FALSE of ``crc`` after ``byte`` (combinational).

    One signal per bit step keeps the expression a chain; nested Muxes that each use
    the previous value twice would grow exponentially before Yosys could share them.
    """
    value = Signal(16)
    m.d.comb += value.eq(crc ^ Cat(Const(0, 8), byte))
    for step in range(8):
        shifted = Signal(16, name=f"crc_step{step}")
        m.d.comb += shifted.eq(Mux(value[15], (value << 1)[:16] ^ 0x1021, (value << 1)[:16]))
        value = shifted
    return value
