"""The drain: finished tiles out of the array, as DmaWriter commands and beats."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .burst import command_layout
from .spec.config import AccelConfig
from .dma_writer import write_data_layout
from .feeder import tile_layout

__all__ = ["Drain"]


def _lanes(row, beat, bus_bits: int) -> list:
    """The 32-bit results in beat ``beat`` of ``row``."""
    word = row.as_value().word_select(beat, bus_bits)
    return [word.word_select(i, 32) for i in range(bus_bits // 32)]


class Drain(wiring.Component):
    """Reads one finished tile out of the array's result registers per ``start``.

    ``start`` is the array's ``tile_done`` pulse; ``tile`` (from the feeder) and
    ``c_stride`` say where the tile goes. For each valid row ``r`` the drain
    emits one command ``{c_addr + r * c_stride, ceil(4 * cols_valid / bus_bytes)}``
    and that many beats of little-endian int32 results; the last beat of a row of
    a partial tile carries a partial strobe, so bytes past column ``N - 1`` are
    never written. Rows past ``rows_valid`` are not written at all.

    - Commands and beats are separate streams; commands run ahead, and a row's
      beats are offered only after the writer has taken that row's command. Each
      stream has its own output register, so ``valid`` never waits for ``ready``
      and nothing combinational reaches the bus.
    - Throughput: one beat per cycle while the writer accepts; a tile's first beat
      comes two cycles after ``start`` (one to copy its first row).
    - ``tile_free`` pulses in the cycle the tile's final beat is taken (its rows were
      copied out of the result registers before); from then on the array may
      overwrite them.
    - ``busy`` is high from ``start`` until the final beat has been handed over.
    - ``abort`` (level) drops the tile in progress and ignores ``start``.
    - ``pair`` (int4 jobs, held for the job): row ``r`` of C is the sum of the array's
      rows ``2r`` and ``2r + 1`` (the even and odd steps of that token), added beat by
      beat on the way out (32-bit, exact: the total is the int32 product).
    """

    def __init__(self, config: AccelConfig):
        self.config = config
        super().__init__({
            "result": In(data.ArrayLayout(data.ArrayLayout(signed(32), config.cols), config.rows)),
            "start": In(1),
            "tile": In(tile_layout(config)),
            "c_stride": In(32),
            "pair": In(1),
            "abort": In(1),
            "cmd": Out(stream.Signature(command_layout(config))),
            "data": Out(stream.Signature(write_data_layout(config))),
            "tile_free": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        bb = cfg.bus_bytes
        row_beats = cfg.c_beats_per_row          # 4: a full row of int32s

        cmd_rows_left = Signal(range(cfg.rows + 1))
        cmd_addr = Signal(cfg.addr_width)
        data_rows_left = Signal(range(cfg.rows + 1))
        data_beat = Signal(range(row_beats))
        beats = Signal(range(1, row_beats + 1))  # beats per row in this tile
        last_strb = Signal(bb)
        c_stride = Signal(32)

        # Beats and strobe of a row of `cols_valid` int32s, computed once per tile.
        row_bytes = Signal(range(4 * cfg.cols + 1))
        tile_beats = Signal(range(1, row_beats + 1))
        tail_bytes = Signal(range(1, bb + 1))
        m.d.comb += [
            row_bytes.eq(4 * self.tile.cols_valid),
            tile_beats.eq((row_bytes + bb - 1) >> exact_log2(bb)),
            tail_bytes.eq(row_bytes - ((tile_beats - 1) << exact_log2(bb))),
        ]

        with m.If(self.start & ~self.abort):
            m.d.sync += [
                cmd_rows_left.eq(self.tile.rows_valid),
                cmd_addr.eq(self.tile.c_addr),
                data_rows_left.eq(self.tile.rows_valid),
                data_beat.eq(0),
                beats.eq(tile_beats),
                last_strb.eq((Const(1, bb + 1) << tail_bytes) - 1),
                c_stride.eq(self.c_stride),
            ]

        # Command stream, registered. ``rows_cleared`` counts the rows whose command the
        # writer has taken and whose beats have not all been sent: a row's beats wait for it.
        rows_cleared = Signal(range(cfg.rows + 1))
        row_done = Signal()                      # the current row's final beat goes out
        cmd_taken = Signal()
        m.d.comb += cmd_taken.eq(self.cmd.valid & self.cmd.ready)
        m.d.sync += rows_cleared.eq(rows_cleared + cmd_taken - row_done)
        with m.If(self.cmd.ready | ~self.cmd.valid):
            m.d.sync += self.cmd.valid.eq(0)
            with m.If(cmd_rows_left != 0):
                m.d.sync += [
                    self.cmd.valid.eq(1),
                    self.cmd.payload.addr.eq(cmd_addr),
                    self.cmd.payload.beats.eq(beats),
                    self.cmd.payload.coherent.eq(1),    # C is shared with the CPU job by job
                    cmd_addr.eq(cmd_addr + c_stride),
                    cmd_rows_left.eq(cmd_rows_left - 1),
                ]

        # Data stream, registered, in two steps so no wide mux sits between two flip-flops:
        # a row of the result registers is copied to ``row_buf`` (a rows:1 mux), and each
        # beat is a word of ``row_buf`` (a row_beats:1 mux). Row 0 is fetched the cycle
        # after ``start``; row r+1 replaces row r as r's final beat goes out.
        row_buf = Signal(data.ArrayLayout(signed(32), cfg.cols))
        odd_buf = Signal(data.ArrayLayout(signed(32), cfg.cols))   # int4: the token's odd row
        buf_full = Signal()                      # row_buf holds the row being sent
        fetch = Signal()                         # fetch row 0 of a new tile this cycle
        next_row = Signal(range(cfg.rows + 1))   # the row the next load copies
        load = Signal()
        with m.If(self.start & ~self.abort):
            m.d.sync += [fetch.eq(1), next_row.eq(0), buf_full.eq(0)]
        with m.If(load):
            m.d.sync += [row_buf.eq(self.result[Mux(self.pair, next_row << 1, next_row)]),
                         next_row.eq(next_row + 1), buf_full.eq(1)]
            if cfg.int4:
                m.d.sync += odd_buf.eq(Mux(self.pair, self.result[(next_row << 1) | 1].as_value(), 0))
        with m.If(fetch):
            m.d.sync += fetch.eq(0)
            m.d.comb += load.eq(1)

        # ``final_beat`` (data_beat == beats - 1) and ``final_row`` (data_rows_left == 1)
        # are registers, kept a beat ahead, so the send decision starts from flip-flops.
        final_beat = Signal()
        final_row = Signal()
        with m.If(self.start & ~self.abort):
            m.d.sync += [final_beat.eq(tile_beats == 1), final_row.eq(self.tile.rows_valid == 1)]
        with m.If(self.data.ready | ~self.data.valid):
            m.d.sync += self.data.valid.eq(0)
            # A row's beats follow its command, never precede it.
            with m.If((data_rows_left != 0) & (rows_cleared != 0) & buf_full):
                m.d.sync += [
                    self.data.valid.eq(1),
                    self.data.payload.data.eq(Cat(
                        (even + odd)[:32] for even, odd in zip(_lanes(row_buf, data_beat, cfg.bus_bits),
                                                        _lanes(odd_buf, data_beat, cfg.bus_bits)))),
                    self.data.payload.strb.eq(Mux(final_beat, last_strb, (1 << bb) - 1)),
                    data_beat.eq(data_beat + 1),
                    final_beat.eq(data_beat + 2 == beats),
                ]
                with m.If(final_beat):
                    m.d.comb += row_done.eq(1)
                    m.d.sync += [
                        data_beat.eq(0),
                        final_beat.eq(beats == 1),
                        data_rows_left.eq(data_rows_left - 1),
                        final_row.eq(data_rows_left == 2),
                    ]
                    with m.If(final_row):
                        m.d.sync += buf_full.eq(0)
                        m.d.comb += self.tile_free.eq(1)
                    with m.Else():
                        m.d.comb += load.eq(1)

        with m.If(self.abort):
            m.d.sync += [
                cmd_rows_left.eq(0),
                data_rows_left.eq(0),
                rows_cleared.eq(0),
                fetch.eq(0),
                buf_full.eq(0),
                self.cmd.valid.eq(0),
                self.data.valid.eq(0),
            ]
        m.d.comb += self.busy.eq((cmd_rows_left != 0) | (data_rows_left != 0)
                                 | self.cmd.valid | self.data.valid)
        return m
