"""The on-chip activation buffer: one M block of A, reused by every N tile."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .spec import timing
from .spec.config import AccelConfig

__all__ = ["ActBuffer"]


class ActBuffer(wiring.Component):
    """``rows`` memories of ``max_k`` int8 activations, one per token row.

    Write side: one bus beat per cycle, straight from the A stream. When
    ``write_en`` is high, bytes ``write_word * bus_bytes ..`` of row ``write_row``
    take ``write_data`` (little-endian: byte 0 is ``k = write_word * bus_bytes``)
    at the next clock edge. A read issued in any later cycle sees it.

    Read side: ``read_k`` is presented every cycle; ``read_data[r]`` is
    ``A[r, read_k]`` exactly ``LATENCY`` cycles later, for all rows at once (one
    ``k`` step of the whole block). The memories are ``bus_bits`` wide, so
    synthesis uses block RAM with its output register; the byte select after it
    is registered too.

    ``pair`` (int4 jobs, held for the whole job): a token takes a pair of rows
    (``hdl.spec.formats``). ``write_row = t`` then writes rows ``2t`` and ``2t + 1``,
    and with ``read_k = 2j`` the even rows read step ``2j``, the odd rows ``2j + 1``.
    """

    LATENCY = timing.ACT_BUFFER_READ

    def __init__(self, config: AccelConfig):
        self.config = config
        self.words = config.max_k // config.bus_bytes
        super().__init__({
            "pair": In(1),
            "write_en": In(1),
            "write_row": In(range(config.rows)),
            "write_word": In(range(self.words)),
            "write_data": In(config.bus_bits),
            "read_k": In(range(config.max_k)),
            "read_data": Out(data.ArrayLayout(signed(8), config.rows)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        lane_bits = exact_log2(cfg.bus_bytes)
        lane_d1 = Signal(range(cfg.bus_bytes))
        lane_d2 = Signal(range(cfg.bus_bytes))
        m.d.sync += [lane_d1.eq(self.read_k[:lane_bits]), lane_d2.eq(lane_d1)]

        for row in range(cfg.rows):
            mem = Memory(shape=cfg.bus_bits, depth=self.words, init=[])
            m.submodules[f"row{row}"] = mem
            wr = mem.write_port()
            rd = mem.read_port()
            m.d.comb += [
                wr.en.eq(self.write_en & Mux(self.pair, self.write_row == row // 2,
                                             self.write_row == row)),
                wr.addr.eq(self.write_word),
                wr.data.eq(self.write_data),
                rd.addr.eq(self.read_k[lane_bits:]),
            ]
            word = Signal(cfg.bus_bits, name=f"word{row}")
            m.d.sync += word.eq(rd.data)       # absorbed as the BRAM output register
            lane = lane_d2 | self.pair if row % 2 else lane_d2    # read_k is even when paired
            m.d.sync += self.read_data[row].eq(word.word_select(lane, 8))
        return m
