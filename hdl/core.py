"""The compute core: activation buffer, feeder, skew, array and drain, wired together."""

from amaranth.hdl import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .actbuf import ActBuffer
from .array import SystolicArray
from .burst import command_layout
from .dma_writer import write_data_layout
from .drain import Drain
from .feeder import Feeder, block_members
from .pe import PE
from .skew import Skew
from .spec.config import AccelConfig

__all__ = ["ComputeCore"]


class ComputeCore(wiring.Component):
    """One M block at a time: A rows in, weight stream in, C rows out.

    The controller fills the activation buffer through ``act_*`` (see
    ``ActBuffer``), then pulses ``start`` with the block's beats per tile, ``n``,
    ``rows_valid`` and ``c_addr`` (held until ``block_done``) and streams the
    block's ``ceil(n / cols) * beats`` packed weight beats into ``weights``, which
    are taken at one beat per cycle (see ``Feeder`` for the only exception).
    ``pair`` (held for the job) runs int4 weights: a token per pair of array rows,
    the two rows' sums added by the drain.
    Finished tiles leave on ``write_cmd``/``write_data`` (see ``Drain``) while
    the next tile computes. ``idle`` is high when every tile fed so far has been
    handed to the writer. ``abort`` (level) stops everything; after
    ``FLUSH_CYCLES`` cycles of ``abort`` nothing of the old job is left in flight.
    """

    def __init__(self, config: AccelConfig):
        self.config = config
        self.flush_cycles = ActBuffer.LATENCY + config.rows + config.cols + PE.RESULT_LATENCY + 2
        super().__init__({
            "act_write_en": In(1),
            "act_write_row": In(range(config.rows)),
            "act_write_word": In(range(config.max_k // config.bus_bytes)),
            "act_write_data": In(config.bus_bits),
            "weights": In(stream.Signature(8 * config.cols)),   # one beat of every port
            **block_members(config),
            "c_stride": In(32),
            "starving": Out(1),
            "idle": Out(1),
            "write_cmd": Out(stream.Signature(command_layout(config))),
            "write_data": Out(stream.Signature(write_data_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.actbuf = actbuf = ActBuffer(cfg)
        m.submodules.feeder = feeder = Feeder(cfg)
        m.submodules.row_skew = row_skew = Skew(cfg.rows, signed(8))
        column = data.StructLayout({"w": signed(8), "w_odd": signed(8), "valid": 1, "first": 1, "last": 1})
        m.submodules.col_skew = col_skew = Skew(cfg.cols, column)
        m.submodules.array = array = SystolicArray(cfg.rows, cfg.cols)
        m.submodules.drain = drain = Drain(cfg)

        m.d.comb += [
            actbuf.pair.eq(self.pair),
            actbuf.write_en.eq(self.act_write_en),
            actbuf.write_row.eq(self.act_write_row),
            actbuf.write_word.eq(self.act_write_word),
            actbuf.write_data.eq(self.act_write_data),
            actbuf.read_k.eq(feeder.act_k),
            feeder.act_data.eq(actbuf.read_data),

            feeder.start.eq(self.start),
            feeder.pair.eq(self.pair),
            feeder.beats.eq(self.beats),
            feeder.n.eq(self.n),
            feeder.rows_valid.eq(self.rows_valid),
            feeder.c_addr.eq(self.c_addr),
            feeder.abort.eq(self.abort),
            self.block_done.eq(feeder.block_done),
            self.starving.eq(feeder.starving),

            row_skew.i.eq(feeder.a),
            array.a.eq(row_skew.o),
        ]
        wiring.connect(m, wiring.flipped(self.weights), feeder.weights)
        for c in range(cfg.cols):
            m.d.comb += [
                col_skew.i[c].w.eq(feeder.w[c]),
                col_skew.i[c].w_odd.eq(feeder.w_odd[c]),
                col_skew.i[c].valid.eq(feeder.valid),
                col_skew.i[c].first.eq(feeder.first),
                col_skew.i[c].last.eq(feeder.last),
                array.w[c].eq(col_skew.o[c].w),
                array.w_odd[c].eq(col_skew.o[c].w_odd),
                array.valid[c].eq(col_skew.o[c].valid),
                array.first[c].eq(col_skew.o[c].first),
                array.last[c].eq(col_skew.o[c].last),
            ]

        m.d.comb += [
            drain.result.eq(array.result),
            drain.start.eq(array.tile_done),
            drain.tile.eq(feeder.tile),
            drain.c_stride.eq(self.c_stride),
            drain.pair.eq(self.pair),
            drain.abort.eq(self.abort),
            feeder.tile_free.eq(drain.tile_free),
            self.idle.eq(~feeder.busy & ~drain.busy),
        ]
        wiring.connect(m, drain.cmd, wiring.flipped(self.write_cmd))
        wiring.connect(m, drain.data, wiring.flipped(self.write_data))
        return m
