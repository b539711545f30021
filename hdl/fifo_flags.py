"""``track_ready``: a ``SyncFIFO``'s ``r_rdy``/``w_rdy`` as flip-flops, for timing."""

from amaranth.hdl import Module, Signal
from amaranth.lib.fifo import SyncFIFO

__all__ = ["track_ready"]


def track_ready(m: Module, fifo: SyncFIFO, readable: Signal, writable: Signal) -> None:
    """Drive ``readable``/``writable`` (sync) so they equal ``fifo.r_rdy``/``fifo.w_rdy``
    in every cycle.

    ``SyncFIFO`` derives its flags by comparing ``level``; decision logic that starts
    from these registers instead is one or two LUT levels shallower. The next value
    is decided by ``level`` compares made in parallel and then ``w_en``/``r_en`` in
    the last LUT. ``writable`` must reset high, ``readable`` low (the FIFO's reset
    state); both follow the FIFO's domain reset.
    """
    assert writable.init == 1 and readable.init == 0
    level, depth = fifo.level, fifo.depth
    pushed = fifo.w_en & fifo.w_rdy
    popped = fifo.r_en & fifo.r_rdy
    m.d.sync += [
        # Empty next iff nothing is pushed and the FIFO is empty, or its one entry leaves.
        readable.eq(pushed | (level >= 2) | ((level == 1) & ~fifo.r_en)),
        # Full next iff nothing is popped and the FIFO is full, or its last slot fills.
        writable.eq(popped | (level <= depth - 2) | ((level == depth - 1) & ~fifo.w_en)),
    ]
