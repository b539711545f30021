"""The feeder: turns the packed weight stream into array input, one ``k`` step per beat."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .actbuf import ActBuffer
from .spec.config import AccelConfig
from .spec.job import field as job_field

__all__ = ["Feeder", "block_members", "tile_layout"]


def tile_layout(config: AccelConfig) -> data.StructLayout:
    """What the drain needs to write one finished tile back to C."""
    return data.StructLayout({
        "c_addr": config.addr_width,            # C address of the tile's first row
        "rows_valid": range(1, config.rows + 1),
        "cols_valid": range(1, config.cols + 1),
    })


def block_members(config: AccelConfig) -> dict:
    """The members that run one M block, shared by ``Feeder`` and ``ComputeCore``:
    ``start`` it with its ``k``, ``n``, valid rows and C address; ``abort``; and
    ``block_done`` when its last weight beat has been taken."""
    return {
        "start": In(1),
        "k": In(range(1, config.max_k + 1)),
        "n": In(job_field("n").value_bits),
        "rows_valid": In(range(1, config.rows + 1)),
        "c_addr": In(config.addr_width),
        "abort": In(1),
        "block_done": Out(1),
    }


class Feeder(wiring.Component):
    """Weight beats in, skew-ready ``(a, w, valid, first, last)`` out, one beat per cycle.

    A block starts with a ``start`` pulse; ``k``, ``n``, ``rows_valid`` and
    ``c_addr`` must then hold still until ``block_done``. The block is
    ``ceil(n / cols)`` tiles of ``k`` beats each (the packed layout of
    ``host.accel.pack``); beat ``j`` of a tile is step ``k = j``.

    - Throughput: ``weights.ready`` is high whenever a block is active, except
      before the last beat of a tile while the previous tile is still being
      drained (``tile_free`` not yet pulsed since that tile's last beat). This is
      the double-buffer rule: a tile's ``last`` overwrites each PE's ``result``,
      so tile ``t + 1``'s last beat may only enter once tile ``t`` has been read.
    - Latency: a beat accepted in cycle ``c`` leaves on ``w``/flags in cycle
      ``c + ActBuffer.LATENCY``, together with ``a = A[:, k]`` read from the
      activation buffer through ``act_k``/``act_data``.
    - ``tile`` describes the last tile whose last beat was accepted (for the
      drain); it holds until the next tile's last beat.
    - ``starving`` is high when the feeder would take a beat and none is there
      (the PERF_STALL condition). ``busy`` is high while a block is active or a
      tile awaits ``tile_free``.
    - ``abort`` (level) stops intake and kills beats in the feeder's pipeline.
    """

    def __init__(self, config: AccelConfig):
        self.config = config
        super().__init__({
            "weights": In(stream.Signature(8 * config.cols)),   # one beat of every port
            **block_members(config),
            "busy": Out(1),
            "starving": Out(1),
            "act_k": Out(range(config.max_k)),
            "act_data": In(data.ArrayLayout(signed(8), config.rows)),
            "a": Out(data.ArrayLayout(signed(8), config.rows)),
            "w": Out(data.ArrayLayout(signed(8), config.cols)),
            "valid": Out(1),
            "first": Out(1),
            "last": Out(1),
            "tile": Out(tile_layout(config)),
            "tile_free": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        active = Signal()
        outstanding = Signal()            # a finished tile not yet read by the drain
        k_index = Signal(range(cfg.max_k))      # step of the next beat: the A address
        k_left = Signal(range(cfg.max_k))       # steps after the next beat in this tile
        k_final = Signal(range(cfg.max_k))
        n_left = Signal(job_field("n").value_bits)               # channels of this tile and the ones after it
        c_tile = Signal(cfg.addr_width)
        rows_valid = Signal(range(1, cfg.rows + 1))
        # Registered "this beat is k = K-1" and "k = 0" flags keep the compare of
        # k_index off the ready path.
        final_step = Signal()
        first_step = Signal()
        take = Signal()

        m.d.comb += [
            self.weights.ready.eq(active & ~self.abort & ~(final_step & outstanding)),
            take.eq(self.weights.valid & self.weights.ready),
            self.starving.eq(self.weights.ready & ~self.weights.valid),
            self.block_done.eq(~active),
            self.busy.eq(active | outstanding),
            self.act_k.eq(k_index),
        ]

        with m.If(self.start):
            m.d.sync += [
                active.eq(1),
                k_index.eq(0),
                first_step.eq(1),
                final_step.eq(self.k == 1),
                k_left.eq(self.k - 1),
                k_final.eq(self.k - 1),
                n_left.eq(self.n),
                c_tile.eq(self.c_addr),
                rows_valid.eq(self.rows_valid),
            ]
        with m.Elif(take):
            m.d.sync += [
                k_index.eq(k_index + 1),
                k_left.eq(k_left - 1),
                first_step.eq(0),
                final_step.eq(k_left == 1),
            ]
            with m.If(final_step):
                m.d.sync += [
                    k_index.eq(0),
                    k_left.eq(k_final),
                    first_step.eq(1),
                    final_step.eq(k_final == 0),
                    outstanding.eq(1),
                    self.tile.c_addr.eq(c_tile),
                    self.tile.rows_valid.eq(rows_valid),
                    self.tile.cols_valid.eq(n_left.bit_select(0, len(self.tile.cols_valid))),
                    c_tile.eq(c_tile + 4 * cfg.cols),
                    n_left.eq(n_left - cfg.cols),
                ]
                with m.If(n_left <= cfg.cols):
                    m.d.sync += active.eq(0)
                with m.Else():
                    m.d.sync += self.tile.cols_valid.eq(cfg.cols)
        with m.If(self.tile_free):
            m.d.sync += outstanding.eq(0)
        with m.If(self.abort):
            m.d.sync += [active.eq(0), outstanding.eq(0)]

        # Weight and flags wait ActBuffer.LATENCY cycles for the activations.
        stage = Signal(data.StructLayout({
            "w": data.ArrayLayout(signed(8), cfg.cols), "valid": 1, "first": 1, "last": 1}))
        m.d.comb += [
            stage.w.eq(self.weights.payload),
            stage.valid.eq(take),
            stage.first.eq(first_step),
            stage.last.eq(final_step),
        ]
        for step in range(ActBuffer.LATENCY):
            delayed = Signal.like(stage, name=f"stage_d{step + 1}")
            m.d.sync += delayed.eq(stage)
            with m.If(self.abort):
                m.d.sync += delayed.valid.eq(0)
            stage = delayed
        m.d.comb += [
            self.a.eq(self.act_data),
            self.w.eq(stage.w),
            self.valid.eq(stage.valid),
            self.first.eq(stage.first),
            self.last.eq(stage.last),
        ]
        return m
