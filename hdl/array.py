"""The ``rows x cols`` output-stationary systolic array: PEs and their wiring."""

from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .pe import PE

__all__ = ["SystolicArray"]


class SystolicArray(wiring.Component):
    """``rows x cols`` PEs; ``a`` flows right, ``w``, ``w_odd`` and the flags flow down.

    Structure only. PE ``(r, c)`` takes ``a`` from its left neighbour (row ``r``
    of the ``a`` input at the left edge) and ``w``/``valid``/``first``/``last``
    from the PE above (column ``c`` of those inputs at the top edge), each one
    cycle later per hop. With the inputs skewed (row ``r`` by ``r``, column ``c``
    by ``c`` cycles; see ``Skew``) the operands of one ``k`` step meet in every
    PE, and PE ``(r, c)`` accumulates ``sum_k a[r, k] * w[c, k]`` over a tile
    (``first`` .. ``last``); the PEs of odd rows take ``w_odd`` instead of ``w``
    (``PE``), so with ``w_odd = w`` every row sees the same weights.

    ``result[r][c]`` is PE ``(r, c)``'s double-buffered result. ``tile_done``
    pulses in the first cycle in which every PE holds the tile whose ``last`` was
    fed to column ``cols - 1`` ``rows - 1 + PE.RESULT_LATENCY`` cycles earlier:
    the bottom-right PE is the last one to finish. The results stay put until the
    next ``last`` reaches each PE; keeping them long enough is the feeder's job.
    """

    def __init__(self, rows: int, cols: int):
        if rows < 1 or cols < 1:
            raise ValueError(f"array shape {rows}x{cols} must be at least 1x1")
        self.rows = rows
        self.cols = cols
        super().__init__({
            "a": In(data.ArrayLayout(signed(8), rows)),
            "w": In(data.ArrayLayout(signed(8), cols)),
            "w_odd": In(data.ArrayLayout(signed(8), cols)),
            "valid": In(cols),
            "first": In(cols),
            "last": In(cols),
            "result": Out(data.ArrayLayout(data.ArrayLayout(signed(32), cols), rows)),
            "tile_done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        pes = [[PE(odd=r % 2 == 1) for _ in range(self.cols)] for r in range(self.rows)]
        for r, row in enumerate(pes):
            for c, pe in enumerate(row):
                m.submodules[f"pe_{r}_{c}"] = pe
                if c == 0:
                    m.d.comb += pe.a.eq(self.a[r])
                else:
                    m.d.comb += pe.a.eq(row[c - 1].a_out)
                if r == 0:
                    m.d.comb += [
                        pe.w.eq(self.w[c]),
                        pe.w_odd.eq(self.w_odd[c]),
                        pe.valid.eq(self.valid[c]),
                        pe.first.eq(self.first[c]),
                        pe.last.eq(self.last[c]),
                    ]
                else:
                    above = pes[r - 1][c]
                    m.d.comb += [
                        pe.w.eq(above.w_out),
                        pe.w_odd.eq(above.w_odd_out),
                        pe.valid.eq(above.valid_out),
                        pe.first.eq(above.first_out),
                        pe.last.eq(above.last_out),
                    ]
                m.d.comb += self.result[r][c].eq(pe.result)
        m.d.comb += self.tile_done.eq(pes[-1][-1].result_valid)
        return m
