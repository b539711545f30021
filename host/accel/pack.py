"""The weight packing the accelerator streams: defined here and nowhere else.

Layout (tile-major, one stream per weight port): the ``N`` output channels go in
tiles of ``cols``; port ``p`` of ``P`` (``cols = P * port_bytes``) carries channels
``p*port_bytes .. (p+1)*port_bytes - 1`` of every tile. Its stream is, for each tile,
for each ``k`` in ``0..K-1``, the ``port_bytes`` int8 weights
``W[tile*cols + p*port_bytes + j, k]``; channels past ``N`` in the last tile are zero.
One ``k`` step of one tile on one port is exactly one AXI beat (``port_bytes ==
bus_bytes``), so each port reads a single linear stream of ``ceil(N/cols) * K``
beats. The ``P`` streams lie back to back, ``stream_bytes`` apart: the job's
``W_STRIDE``. With one port this is the single stream of ``ceil(N/cols) * K`` beats
of ``cols`` bytes.

4-bit weights (``Int4Weights``: ``q`` in -8..7 and a 4-bit scale per group of 32
steps, ``hdl.spec.formats``) use the same tiles and ports; within a tile a port's
``K`` steps become, per block of 64, one scale beat and up to 32 pair beats
(``pack_int4``). The effective weight ``q * s`` is an int8, so the product is the
int8 product of ``Int4Weights.effective()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdl.spec.formats import BLOCK_K, GROUP, Q_MAX, Q_MIN, S_MAX, WeightFormat, tile_beats

__all__ = ["Int4Weights", "PackedWeights", "pack_int4", "pack_weights", "packed_size",
           "unpack_int4", "unpack_weights", "write_columns", "write_rows"]


def packed_size(n: int, k: int, cols: int, fmt: WeightFormat | int = WeightFormat.INT8) -> int:
    """Bytes of the packed form of an ``[n, k]`` weight matrix (every port's stream)."""
    if n <= 0 or k <= 0 or cols <= 0:
        raise ValueError(f"packed_size needs positive n, k, cols; got n={n}, k={k}, cols={cols}")
    return -(-n // cols) * tile_beats(fmt, k) * cols


@dataclass(frozen=True)
class Int4Weights:
    """4-bit weights with exact group scales: ``W[c, k] = q[c, k] * s[c, k // 32]``.

    ``q`` is int8 ``[N, K]`` in -8..7, ``s`` uint8 ``[N, ceil(K / 32)]`` in 0..15.
    """

    q: np.ndarray
    s: np.ndarray

    def __post_init__(self) -> None:
        q, s = self.q, self.s
        if q.dtype != np.int8 or q.ndim != 2:
            raise TypeError(f"int4 weights q must be int8 [N, K], got {q.dtype} {q.shape}")
        groups = -(-q.shape[1] // GROUP)
        if s.dtype != np.uint8 or s.shape != (q.shape[0], groups):
            raise TypeError(f"int4 scales s must be uint8 [N, ceil(K/{GROUP})] = "
                            f"{[q.shape[0], groups]}, got {s.dtype} {list(s.shape)}")
        if q.size and (q.min() < Q_MIN or q.max() > Q_MAX):
            raise ValueError(f"int4 weights must lie in {Q_MIN}..{Q_MAX}, got {q.min()}..{q.max()}")
        if s.size and s.max() > S_MAX:
            raise ValueError(f"int4 group scales must lie in 0..{S_MAX}, got up to {s.max()}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape

    def effective(self) -> np.ndarray:
        """The int8 ``[N, K]`` weights the array multiplies: ``q * s`` per group."""
        scale = np.repeat(self.s, GROUP, axis=1)[:, : self.q.shape[1]]
        return (self.q.astype(np.int16) * scale).astype(np.int8)


def _check_ports(cols: int, ports: int) -> None:
    if not (isinstance(ports, int) and ports >= 1 and cols % ports == 0):
        raise ValueError(f"ports={ports!r} must be a positive divisor of cols={cols}")


@dataclass(frozen=True)
class PackedWeights:
    """Packed int8 weights plus the shape they came from."""

    data: np.ndarray   # int8, 1-D, packed_size(n, k, cols) bytes: the port streams back to back
    n: int
    k: int
    cols: int
    ports: int = 1
    format: WeightFormat = WeightFormat.INT8

    def __post_init__(self) -> None:
        _check_ports(self.cols, self.ports)
        object.__setattr__(self, "format", WeightFormat(self.format))

    @property
    def tile_beats(self) -> int:
        """Beats of one port per tile: ``K`` for int8 (``formats.tile_beats``)."""
        return tile_beats(self.format, self.k)

    @property
    def tiles(self) -> int:
        return -(-self.n // self.cols)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    @property
    def port_bytes(self) -> int:
        """Bytes of one beat of one port: the channels each port carries per tile."""
        return self.cols // self.ports

    @property
    def stream_bytes(self) -> int:
        """Bytes of one port's stream, and the distance between streams (``W_STRIDE``)."""
        return self.tiles * self.tile_beats * self.port_bytes

    def streams(self) -> np.ndarray:
        """The streams as the ports read them: ``[ports, tiles, beats, port_bytes]``, one
        beat per ``[port, tile, beat]`` (for int8 beat ``k`` is step ``k``; a view;
        ValueError if the data has the wrong size or type)."""
        expected = packed_size(self.n, self.k, self.cols, self.format)
        if self.data.dtype != np.int8 or self.data.size != expected:
            raise ValueError(
                f"packed {self.format.name.lower()} data must be {expected} int8 bytes for "
                f"n={self.n}, k={self.k}, cols={self.cols}; got {self.data.size} {self.data.dtype}")
        return self.data.reshape(self.ports, self.tiles, self.tile_beats, self.port_bytes)

    def _int8(self) -> None:
        if self.format is not WeightFormat.INT8:
            raise ValueError(f"{self.format.name.lower()} weights have no int8 beat view; "
                             "use effective()")

    def effective(self) -> np.ndarray:
        """The int8 ``[N, K]`` weights the array multiplies, whatever the format."""
        if self.format is WeightFormat.INT8:
            return unpack_weights(self)
        return unpack_int4(self).effective()

    def beats(self) -> np.ndarray:
        """What the array takes per cycle: ``[tiles, K, cols]``, the ports' beats of one
        ``[tile, k]`` side by side (a view with one port, a copy with several). int8 only."""
        self._int8()
        streams = self.streams()
        if self.ports == 1:
            return streams[0]
        return np.ascontiguousarray(streams.transpose(1, 2, 0, 3)).reshape(self.tiles, self.k, self.cols)

    def as_kn(self) -> np.ndarray:
        """The int8 ``[K, N]`` matrix (``W.T``) read straight from the streams: putting K
        first is one copy whose inner runs stay ``port_bytes`` long, far cheaper than
        transposing ``[N, K]``. For int4, the effective weights' ``[K, N]``."""
        if self.format is not WeightFormat.INT8:
            return np.ascontiguousarray(self.effective().T)
        kn = self.streams().transpose(2, 1, 0, 3).reshape(self.k, self.tiles * self.cols)
        return kn[:, :self.n]


def pack_weights(w: np.ndarray, cols: int, ports: int = 1) -> PackedWeights:
    """Pack an int8 ``[N, K]`` matrix (``y = W x``) into ``ports`` tile-major streams."""
    w = np.asarray(w)
    if w.dtype != np.int8:
        raise TypeError(f"weights must be int8, got {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D [N, K], got shape {w.shape}")
    _check_ports(cols, ports)
    n, k = w.shape
    tiles = -(-n // cols)
    padded = np.zeros((tiles * cols, k), dtype=np.int8)
    padded[:n] = w
    # [tiles, ports, port_bytes, K] -> [ports, tiles, K, port_bytes]: one k step of one
    # tile on one port is one beat.
    quads = padded.reshape(tiles, ports, cols // ports, k)
    data = np.ascontiguousarray(quads.transpose(1, 0, 3, 2)).reshape(-1)
    return PackedWeights(data, n, k, cols, ports)


def unpack_weights(packed: PackedWeights) -> np.ndarray:
    """Invert ``pack_weights``: the int8 ``[N, K]`` matrix."""
    packed._int8()
    w = packed.streams().transpose(1, 0, 3, 2).reshape(packed.tiles * packed.cols, packed.k)
    return np.ascontiguousarray(w[: packed.n])


def _tiled(values: np.ndarray, cols: int, ports: int, width: int) -> np.ndarray:
    """``[N, width]`` zero-padded to whole tiles, as ``[ports, tiles, width, port_bytes]``."""
    n = values.shape[0]
    tiles = -(-n // cols)
    padded = np.zeros((tiles * cols, width), dtype=values.dtype)
    padded[:n, : values.shape[1]] = values
    return padded.reshape(tiles, ports, cols // ports, width).transpose(1, 0, 3, 2)


def pack_int4(weights: Int4Weights, cols: int, ports: int = 1) -> PackedWeights:
    """Pack 4-bit weights into ``ports`` tile-major streams (``hdl.spec.formats``): per
    tile and block of 64 steps, a scale beat, then one pair beat per two steps."""
    if not isinstance(weights, Int4Weights):
        raise TypeError(f"pack_int4 takes Int4Weights, got {type(weights).__name__}")
    _check_ports(cols, ports)
    n, k = weights.shape
    blocks = -(-k // BLOCK_K)
    # Steps past K carry q = 0 and groups past ceil(K/32) s = 0.
    q = _tiled(weights.q, cols, ports, blocks * BLOCK_K).astype(np.uint8) & 0xF
    s = _tiled(weights.s, cols, ports, 2 * blocks)
    pairs = q[:, :, 0::2] | (q[:, :, 1::2] << 4)            # [ports, tiles, blocks*32, pb]
    scales = s[:, :, 0::2] | (s[:, :, 1::2] << 4)           # [ports, tiles, blocks, pb]
    pairs = pairs.reshape(ports, pairs.shape[1], blocks, BLOCK_K // 2, -1)
    beats = np.concatenate([scales[:, :, :, None], pairs], axis=3)   # scale beat first
    beats = beats.reshape(ports, pairs.shape[1], blocks * (1 + BLOCK_K // 2), -1)
    # The tile's last block holds only ceil(k_in_block / 2) pair beats.
    beats = beats[:, :, : tile_beats(WeightFormat.INT4, k)]
    data = np.ascontiguousarray(beats).view(np.int8).reshape(-1)
    return PackedWeights(data, n, k, cols, ports, WeightFormat.INT4)


def unpack_int4(packed: PackedWeights) -> Int4Weights:
    """Invert ``pack_int4``."""
    if packed.format is not WeightFormat.INT4:
        raise ValueError(f"unpack_int4 needs int4 weights, got {packed.format.name.lower()}")
    k, blocks = packed.k, -(-packed.k // BLOCK_K)
    full = blocks * (1 + BLOCK_K // 2)
    raw = np.zeros((packed.ports, packed.tiles, full, packed.port_bytes), np.uint8)
    raw[:, :, : packed.tile_beats] = packed.streams().view(np.uint8)
    raw = raw.reshape(packed.ports, packed.tiles, blocks, 1 + BLOCK_K // 2, packed.port_bytes)
    scales, pairs = raw[:, :, :, 0], raw[:, :, :, 1:]
    nibbles = np.stack([pairs & 0xF, pairs >> 4], axis=4)        # [..., blocks, 32, 2, pb]
    nibbles = nibbles.reshape(packed.ports, packed.tiles, -1, packed.port_bytes)
    q = ((nibbles.astype(np.int8) ^ 8) - 8).astype(np.int8)       # sign-extend 4 bits
    s = np.stack([scales & 0xF, scales >> 4], axis=3).reshape(packed.ports, packed.tiles, -1, packed.port_bytes)

    def untile(values: np.ndarray, width: int) -> np.ndarray:
        flat = values.transpose(1, 0, 3, 2).reshape(packed.tiles * packed.cols, -1)
        return np.ascontiguousarray(flat[: packed.n, :width])

    return Int4Weights(untile(q, k), untile(s, -(-k // GROUP)).astype(np.uint8))


def write_rows(packed: PackedWeights, start: int, rows: np.ndarray) -> list[tuple[int, int, int]]:
    """Overwrite rows ``start..start+R-1`` (output channels) of int8 ``packed`` in place
    with int8 ``rows [R, K]``; returns the touched byte spans ``(port, offset in that
    port's stream, nbytes)``, one per port and tile touched.

    A row is one byte of every beat of its tile on one port: ``K`` bytes ``port_bytes``
    apart, so its span is ``(K - 1) * port_bytes + 1`` bytes of that stream.
    """
    packed._int8()
    rows = np.asarray(rows)
    if rows.dtype != np.int8 or rows.ndim != 2 or rows.shape[1] != packed.k:
        raise ValueError(f"rows must be int8 [R, {packed.k}], got {rows.dtype} {rows.shape}")
    if not 0 <= start <= start + rows.shape[0] <= packed.n:
        raise ValueError(f"rows {start}..{start + rows.shape[0] - 1} outside 0..{packed.n - 1}")
    streams = packed.streams()
    pb, tile_bytes = packed.port_bytes, packed.k * packed.port_bytes
    spans: dict[tuple[int, int], list[int]] = {}
    for index, row in enumerate(rows):
        channel = start + index
        tile, within = divmod(channel, packed.cols)
        port, byte = divmod(within, pb)
        streams[port, tile, :, byte] = row
        lo, hi = tile * tile_bytes + byte, tile * tile_bytes + (packed.k - 1) * pb + byte + 1
        span = spans.setdefault((port, tile), [lo, hi])
        span[0], span[1] = min(span[0], lo), max(span[1], hi)
    return [(port, lo, hi - lo) for (port, _), (lo, hi) in sorted(spans.items())]


def write_columns(packed: PackedWeights, start: int, columns: np.ndarray) -> list[tuple[int, int, int]]:
    """Overwrite columns (steps) ``start..start+C-1`` of every row of int8 ``packed`` in
    place with int8 ``columns [N, C]``; returns the touched byte spans ``(port, offset
    in that port's stream, nbytes)``, one per port and tile: step ``k`` of a tile is one
    beat, so ``C`` steps are ``C * port_bytes`` contiguous bytes of each tile."""
    packed._int8()
    columns = np.asarray(columns)
    if columns.dtype != np.int8 or columns.ndim != 2 or columns.shape[0] != packed.n:
        raise ValueError(f"columns must be int8 [{packed.n}, C], got {columns.dtype} {columns.shape}")
    count = columns.shape[1]
    if not 0 <= start <= start + count <= packed.k:
        raise ValueError(f"columns {start}..{start + count - 1} outside 0..{packed.k - 1}")
    padded = np.zeros((packed.tiles * packed.cols, count), np.int8)
    padded[:packed.n] = columns
    # [tiles, ports, port_bytes, C] -> [ports, tiles, C, port_bytes], as pack_weights
    beats = padded.reshape(packed.tiles, packed.ports, packed.port_bytes, count).transpose(1, 0, 3, 2)
    packed.streams()[:, :, start:start + count, :] = beats
    pb, tile_bytes = packed.port_bytes, packed.k * packed.port_bytes
    return [(port, tile * tile_bytes + start * pb, count * pb)
            for port in range(packed.ports) for tile in range(packed.tiles)]
