"""The weight formats the accelerator streams: int8, and 4-bit weights with exact
group-wise scales (W4A8). Declared once; the packing (``host.accel.pack``), the RTL
(feeder, controller, job check), the driver, the C firmware and the cycle model read
these numbers.

**int8** (``WeightFormat.INT8``): one byte per weight; a tile is ``K`` beats, beat
``k`` holds ``W[c, k]`` for each of the port's channels ``c``.

**int4** (``WeightFormat.INT4``): the weight ``c, k`` is ``q[c, k] * s[c, k // GROUP]``
with ``q`` in -8..7 and the group scale ``s`` in 0..15, so the effective weight is an
int8 in -120..105 and the array's math stays exact: the product is formed before the
multiply, as llama.cpp's Q4_K folds its sub-block scales. The host keeps one float
scale per output channel on top, as for int8. Per tile, per port, the ``K`` steps go
in blocks of ``BLOCK_K``: one **scale beat**, then ``BLOCK_PAIRS`` **pair beats**
(fewer in the tile's last block: ``ceil(k_in_block / 2)``):

- scale beat, byte ``j``: ``s[j, 2b] | s[j, 2b + 1] << 4`` for block ``b`` (its two
  groups of ``GROUP`` steps);
- pair beat ``i`` of block ``b``, byte ``j``: ``q[j, k] & 0xF | q[j, k + 1] << 4`` with
  ``k = BLOCK_K * b + 2 * i``; steps past ``K`` carry ``q = 0`` (and ``s = 0``).

So a tile of an int4 job is ``ceil(K / 2) + ceil(K / BLOCK_K)`` beats instead of
``K``: 53% of the int8 bytes. In the array the two steps of a pair meet two PEs: the
token of array rows ``2t`` and ``2t + 1`` takes the even step in the even row and
the odd step in the odd row, and the drain adds the two rows. A block of an int4
job therefore holds ``rows // 2`` tokens.
"""

from __future__ import annotations

import enum

__all__ = ["WeightFormat", "GROUP", "BLOCK_K", "BLOCK_PAIRS", "Q_MIN", "Q_MAX", "S_MAX",
           "int4_tile_beats", "tile_beats", "tokens_per_block", "format_mask"]


class WeightFormat(enum.IntEnum):
    """The ``W_FORMAT`` register's values."""

    INT8 = 0
    INT4 = 1


GROUP = 32                 # steps of K per 4-bit scale
BLOCK_K = 2 * GROUP        # steps per scale beat: one byte holds two groups' scales
BLOCK_PAIRS = BLOCK_K // 2  # pair beats after each scale beat
Q_MIN, Q_MAX = -8, 7       # a 4-bit weight, two's complement
S_MAX = 15                 # a 4-bit group scale, unsigned


def int4_tile_beats(k):
    """Beats of one port per tile of an int4 job of ``K`` steps: pairs plus scale beats
    (written with shifts, so ints and Amaranth values alike)."""
    return ((k + 1) >> 1) + ((k + BLOCK_K - 1) >> BLOCK_K.bit_length() - 1)


def tile_beats(fmt: WeightFormat | int, k: int) -> int:
    """Beats of one port per tile of a ``K``-step job in format ``fmt``."""
    if WeightFormat(fmt) is WeightFormat.INT8:
        return k
    return int4_tile_beats(k)


def tokens_per_block(fmt: WeightFormat | int, rows: int) -> int:
    """Tokens one M block holds: ``rows``, or ``rows // 2`` for int4 (a pair of rows
    per token)."""
    return rows if WeightFormat(fmt) is WeightFormat.INT8 else rows // 2


def format_mask(formats) -> int:
    """The ``CAP_FORMATS`` value: bit ``f`` set when format ``f`` runs."""
    mask = 0
    for fmt in formats:
        mask |= 1 << int(WeightFormat(fmt))
    return mask
