"""The feeder: turns the packed weight stream into array input, one ``k`` step per beat."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .actbuf import ActBuffer
from .spec.config import AccelConfig
from .spec.formats import BLOCK_PAIRS
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
    ``start`` it with its beats per tile, ``n``, valid rows (tokens) and C address;
    ``pair`` (int4 weights) for the whole job; ``abort``; and ``block_done`` when its
    last weight beat has been taken."""
    return {
        "start": In(1),
        "pair": In(1),
        "beats": In(range(1, config.max_k + 2)),
        "n": In(job_field("n").value_bits),
        "rows_valid": In(range(1, config.rows + 1)),
        "c_addr": In(config.addr_width),
        "abort": In(1),
        "block_done": Out(1),
    }


class Feeder(wiring.Component):
    """Weight beats in, skew-ready ``(a, w, valid, first, last)`` out, one beat per cycle.

    A block starts with a ``start`` pulse; ``beats``, ``n``, ``rows_valid`` and
    ``c_addr`` must then hold still until ``block_done``. The block is
    ``ceil(n / cols)`` tiles of ``beats`` beats each (the packed layout of
    ``host.accel.pack``). With int8 weights beat ``j`` of a tile is step ``k = j``,
    and ``w_odd`` carries the same weights as ``w``. With ``pair`` (int4,
    ``hdl.spec.formats``) a tile is, per 64 steps, a scale beat (latched, sent on as
    a bubble) and pair beats: pair ``j`` leaves as ``w = q[2j] * s`` and
    ``w_odd = q[2j + 1] * s`` (exact int8), with ``act_k = 2j``.

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
            "w_odd": Out(data.ArrayLayout(signed(8), config.cols)),
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
        k_index = Signal(range(cfg.max_k + 1))   # step of the next beat: the A address
        k_left = Signal(range(cfg.max_k + 1))    # beats after the next one in this tile
        k_final = Signal(range(cfg.max_k + 1))
        n_left = Signal(job_field("n").value_bits)               # channels of this tile and the ones after it
        c_tile = Signal(cfg.addr_width)
        rows_valid = Signal(range(1, cfg.rows + 1))
        # Registered "this beat is the tile's last" and "the tile's first pair" flags keep
        # the compare of the counters off the ready path.
        final_step = Signal()
        first_step = Signal()
        take = Signal()
        # int4: where the next beat sits in its 64-step block (0: the scale beat, then
        # pairs 1..32) and the block's scales.
        pos = Signal(range(BLOCK_PAIRS + 1))
        scale_beat = Signal()
        scales = Signal(8 * cfg.cols)
        m.d.comb += scale_beat.eq(self.pair & (pos == 0))

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
                pos.eq(0),
                first_step.eq(1),
                final_step.eq(self.beats == 1),
                k_left.eq(self.beats - 1),
                k_final.eq(self.beats - 1),
                n_left.eq(self.n),
                c_tile.eq(self.c_addr),
                rows_valid.eq(self.rows_valid),
            ]
        with m.Elif(take):
            m.d.sync += [
                k_left.eq(k_left - 1),
                final_step.eq(k_left == 1),
            ]
            with m.If(scale_beat):
                m.d.sync += [scales.eq(self.weights.payload), pos.eq(1)]
            with m.Else():
                m.d.sync += [k_index.eq(k_index + 1 + self.pair), first_step.eq(0)]
                with m.If(self.pair):
                    m.d.sync += pos.eq(Mux(pos == BLOCK_PAIRS, 0, pos + 1))
            with m.If(final_step):
                m.d.sync += [
                    k_index.eq(0),
                    pos.eq(0),
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

        # Weight and flags wait ActBuffer.LATENCY cycles for the activations. The first
        # stage keeps the raw beat and each column's scale of this pair; the second forms
        # the two int8 weights (int4: a 4 x 4-bit product per weight; int8: the byte, twice).
        raw = Signal(data.StructLayout({
            "beat": data.ArrayLayout(8, cfg.cols), "scale": data.ArrayLayout(4, cfg.cols),
            "pair": 1, "valid": 1, "first": 1, "last": 1}))
        m.d.sync += [
            raw.beat.eq(self.weights.payload),
            raw.pair.eq(self.pair),
            raw.valid.eq(take & ~scale_beat & ~self.abort),
            raw.first.eq(first_step),
            raw.last.eq(final_step),
        ]
        # Pairs 1..16 of a block are its first group (the low nibbles of the scale beat).
        group_high = pos > BLOCK_PAIRS // 2
        for c in range(cfg.cols):
            m.d.sync += raw.scale[c].eq(Mux(group_high, scales[8 * c + 4:8 * c + 8], scales[8 * c:8 * c + 4]))
        lanes = data.StructLayout({
            "w": data.ArrayLayout(signed(8), cfg.cols), "w_odd": data.ArrayLayout(signed(8), cfg.cols),
            "valid": 1, "first": 1, "last": 1})
        stage = Signal(lanes, name="stage_d2")
        for c in range(cfg.cols):
            byte = raw.beat[c]
            scale = raw.scale[c].as_unsigned()
            low = byte[0:4].as_signed() * scale
            high = byte[4:8].as_signed() * scale
            m.d.sync += [stage.w[c].eq(Mux(raw.pair, low, byte.as_signed())),
                         stage.w_odd[c].eq(Mux(raw.pair, high, byte.as_signed()))]
        m.d.sync += [stage.valid.eq(raw.valid & ~self.abort), stage.first.eq(raw.first),
                     stage.last.eq(raw.last)]
        for step in range(2, ActBuffer.LATENCY):
            delayed = Signal.like(stage, name=f"stage_d{step + 1}")
            m.d.sync += delayed.eq(stage)
            with m.If(self.abort):
                m.d.sync += delayed.valid.eq(0)
            stage = delayed
        m.d.comb += [
            self.a.eq(self.act_data),
            self.w.eq(stage.w),
            self.w_odd.eq(stage.w_odd),
            self.valid.eq(stage.valid),
            self.first.eq(stage.first),
            self.last.eq(stage.last),
        ]
        return m
