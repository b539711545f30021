"""Verilog for the synthesis tools: Amaranth's conversion with the one platform hook the
accelerator needs, ``ASYNC_REG`` on every synchronizer flop."""

from amaranth.back import verilog as amaranth_verilog
from amaranth.hdl import Module, Signal

__all__ = ["SynthesisHooks", "convert"]


class SynthesisHooks:
    """A platform object that only elaborates ``FFSynchronizer``s (Amaranth asks for
    ``get_ff_sync`` when the platform has it).

    Each stage flop carries ``ASYNC_REG = "TRUE"``: Vivado then keeps the chain together
    in one slice, leaves it out of retiming and SRL inference, and ``report_cdc``
    recognizes it as a synchronizer. Otherwise the flops are those of Amaranth's generic
    elaboration (same stages, init, reset and domain). Every other elaboratable sees a
    platform with no other hooks, as with none.
    """

    def get_ff_sync(self, ff_sync):
        if ff_sync._max_input_delay is not None:
            raise NotImplementedError("SynthesisHooks does not constrain FFSynchronizer input delay")
        m = Module()
        flops = [Signal(ff_sync.i.shape(), name=f"stage{index}", init=ff_sync._init,
                        reset_less=ff_sync._reset_less, attrs={"ASYNC_REG": "TRUE"})
                 for index in range(ff_sync._stages)]
        for source, flop in zip((ff_sync.i, *flops), flops):
            m.d[ff_sync._o_domain] += flop.eq(source)
        m.d.comb += ff_sync.o.eq(flops[-1])
        return m


def convert(elaboratable, name: str) -> str:
    """``elaboratable`` as Verilog module ``name``, with ``SynthesisHooks``, no source
    locations."""
    return amaranth_verilog.convert(elaboratable, name=name, platform=SynthesisHooks(), emit_src=False)
