"""The weight packing the accelerator streams: defined here and nowhere else.

Layout (tile-major): for each tile of ``cols`` output channels, for each ``k`` in
``0..K-1``, the ``cols`` int8 weights ``W[tile*cols + c, k]`` for ``c`` in
``0..cols-1``; channels past ``N`` in the last tile are zero. One ``k`` step of one
tile is exactly one AXI beat (``cols == bus_bytes``), so a whole matrix is a single
linear stream of ``ceil(N/cols) * K`` beats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PackedWeights", "pack_weights", "packed_size", "unpack_weights"]


def packed_size(n: int, k: int, cols: int) -> int:
    """Bytes of the packed form of an ``[n, k]`` weight matrix."""
    if n <= 0 or k <= 0 or cols <= 0:
        raise ValueError(f"packed_size needs positive n, k, cols; got n={n}, k={k}, cols={cols}")
    return -(-n // cols) * k * cols


@dataclass(frozen=True)
class PackedWeights:
    """Packed int8 weights plus the shape they came from."""

    data: np.ndarray   # int8, 1-D, packed_size(n, k, cols) bytes
    n: int
    k: int
    cols: int

    @property
    def tiles(self) -> int:
        return -(-self.n // self.cols)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def beats(self) -> np.ndarray:
        """The stream as the accelerator reads it: ``[tiles, K, cols]``, one beat per
        ``[tile, k]`` (a view; ValueError if the data has the wrong size or type)."""
        expected = packed_size(self.n, self.k, self.cols)
        if self.data.dtype != np.int8 or self.data.size != expected:
            raise ValueError(
                f"packed data must be {expected} int8 bytes for n={self.n}, k={self.k}, "
                f"cols={self.cols}; got {self.data.size} {self.data.dtype}")
        return self.data.reshape(self.tiles, self.k, self.cols)

    def as_kn(self) -> np.ndarray:
        """The int8 ``[K, N]`` matrix (``W.T``) read straight from the stream: putting K
        first is a copy whose inner runs stay ``cols`` bytes long, far cheaper than
        transposing ``[N, K]``."""
        return self.beats().transpose(1, 0, 2).reshape(self.k, self.tiles * self.cols)[:, :self.n]


def pack_weights(w: np.ndarray, cols: int) -> PackedWeights:
    """Pack an int8 ``[N, K]`` matrix (``y = W x``) into the tile-major stream."""
    w = np.asarray(w)
    if w.dtype != np.int8:
        raise TypeError(f"weights must be int8, got {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D [N, K], got shape {w.shape}")
    n, k = w.shape
    tiles = -(-n // cols)
    padded = np.zeros((tiles * cols, k), dtype=np.int8)
    padded[:n] = w
    # [tiles, cols, K] -> [tiles, K, cols]: one k step of one tile is one beat.
    data = np.ascontiguousarray(padded.reshape(tiles, cols, k).transpose(0, 2, 1)).reshape(-1)
    return PackedWeights(data, n, k, cols)


def unpack_weights(packed: PackedWeights) -> np.ndarray:
    """Invert ``pack_weights``: the int8 ``[N, K]`` matrix."""
    w = packed.beats().transpose(0, 2, 1).reshape(packed.tiles * packed.cols, packed.k)
    return np.ascontiguousarray(w[: packed.n])
