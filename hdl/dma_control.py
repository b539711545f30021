"""The control side both DMA blocks share: commands in, sticky error, abort, clear, idle.

``DmaReader`` and ``DmaWriter`` have the same contract towards the controller
(``hdl/README.md``): ``cmd`` (commands, split into bursts by a ``BurstSplitter``),
``error``/``error_addr`` (sticky, the first failing burst), ``abort`` (level, but a
one-cycle pulse is enough), ``clear`` (pulse, only while idle) and ``idle``. This
module holds that contract once: the members and the stop rule.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .burst import BurstSplitter, command_layout
from .spec.config import AccelConfig

__all__ = ["control_members", "StopControl"]


def control_members(config: AccelConfig) -> dict:
    """The signature members of the shared contract (the data stream and bus are each
    block's own)."""
    return {
        "cmd": In(stream.Signature(command_layout(config))),
        "error": Out(1),
        "error_addr": Out(config.addr_width),
        "abort": In(1),
        "clear": In(1),
        "idle": Out(1),
    }


class StopControl:
    """The burst splitter of a DMA block and the rule for when it stops.

    ``stop`` is high while ``abort`` is, while ``error`` is set, and after an abort
    until ``settled`` (set by the block: nothing presented or owed on the bus), so even
    a one-cycle abort leaves no stale beat behind. While stopped the splitter drops
    its command and takes and drops every command offered. ``clear`` clears ``error``
    while the block is idle; then nothing is owed on the bus, so no response can set
    ``error`` in the same cycle. Call ``elaborate(m)`` from the block's ``elaborate``.

    ``halt`` (``abort`` or ``error``, both flip-flops) is what a block's issue decision
    needs besides ``burst.valid``: ``stop``'s third term, an abort ``draining``, never
    holds while the splitter holds a burst (``stop`` flushes it, and ``draining`` ends in
    the first cycle ``stop`` is low), so ``burst.valid & ~halt`` equals ``burst.valid &
    ~stop`` without the LUTs behind ``settled``.
    """

    def __init__(self, block: wiring.Component, config: AccelConfig):
        self.block = block
        self.splitter = BurstSplitter(config)
        self.stop = Signal()
        self.halt = Signal()
        self.settled = Signal()
        self.draining = Signal()

    def elaborate(self, m: Module) -> BurstSplitter:
        """Add the splitter and the stop logic to ``m``; returns the splitter."""
        block, draining = self.block, self.draining
        m.submodules.splitter = splitter = self.splitter
        wiring.connect(m, wiring.flipped(block.cmd), splitter.cmd)
        m.d.comb += [self.halt.eq(block.abort | block.error),
                     self.stop.eq(self.halt | (draining & ~self.settled)),
                     splitter.flush.eq(self.stop)]
        with m.If(block.abort):
            m.d.sync += draining.eq(1)
        with m.Elif(self.settled):
            m.d.sync += draining.eq(0)
        with m.If(block.clear & block.idle):
            m.d.sync += block.error.eq(0)
        return splitter
