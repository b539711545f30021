"""LiteEth's raw UDP user port (``gen.liteeth``'s ``link_*``) as Amaranth layouts.

A datagram's payload travels in 32-bit words, its first byte in bits 0..7 of the first
word. Every word carries the peer's IPv4 address and the ports and the payload length
in bytes; ``last`` marks the datagram's last word, whose valid bytes are lanes
``0 .. k`` where ``last_be`` is one-hot at lane ``k``. On the receive side ``error``
on the last word says the Ethernet frame failed its FCS (LiteEth passes frames through
before their FCS is known). The flat port names are ``link_source_<field>`` (received
datagrams, out of the core) and ``link_sink_<field>`` (datagrams to send, into it).
"""

from __future__ import annotations

from amaranth.lib import data

__all__ = ["WORD_BYTES", "UDP_WORD", "RX_FIELDS", "TX_FIELDS", "PEER", "flat_port_name"]

WORD_BYTES = 4
UDP_WORD = data.StructLayout({
    "data": 8 * WORD_BYTES,
    "last": 1,
    "last_be": WORD_BYTES,
    "ip_address": 32,
    "src_port": 16,
    "dst_port": 16,
    "length": 16,
    "error": 1,
})
# The fields each direction of LiteEth's port has (the sink has no error).
RX_FIELDS = tuple(UDP_WORD.members)
TX_FIELDS = tuple(name for name in UDP_WORD.members if name != "error")
# Who a datagram came from, and so where its answer goes.
PEER = data.StructLayout({"ip_address": 32, "port": 16})


def flat_port_name(side: str, field: str) -> str:
    """LiteEth's port name of ``field`` (or ``valid``/``ready``) on ``side`` ("source"/"sink")."""
    return f"link_{side}_{field}"
