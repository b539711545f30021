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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PackedWeights", "pack_weights", "packed_size", "unpack_weights"]


def packed_size(n: int, k: int, cols: int) -> int:
    """Bytes of the packed form of an ``[n, k]`` weight matrix (every port's stream)."""
    if n <= 0 or k <= 0 or cols <= 0:
        raise ValueError(f"packed_size needs positive n, k, cols; got n={n}, k={k}, cols={cols}")
    return -(-n // cols) * k * cols


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

    def __post_init__(self) -> None:
        _check_ports(self.cols, self.ports)

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
        return self.tiles * self.k * self.port_bytes

    def streams(self) -> np.ndarray:
        """The streams as the ports read them: ``[ports, tiles, K, port_bytes]``, one beat
        per ``[port, tile, k]`` (a view; ValueError if the data has the wrong size or type)."""
        expected = packed_size(self.n, self.k, self.cols)
        if self.data.dtype != np.int8 or self.data.size != expected:
            raise ValueError(
                f"packed data must be {expected} int8 bytes for n={self.n}, k={self.k}, "
                f"cols={self.cols}; got {self.data.size} {self.data.dtype}")
        return self.data.reshape(self.ports, self.tiles, self.k, self.port_bytes)

    def beats(self) -> np.ndarray:
        """What the array takes per cycle: ``[tiles, K, cols]``, the ports' beats of one
        ``[tile, k]`` side by side (a view with one port, a copy with several)."""
        streams = self.streams()
        if self.ports == 1:
            return streams[0]
        return np.ascontiguousarray(streams.transpose(1, 2, 0, 3)).reshape(self.tiles, self.k, self.cols)

    def as_kn(self) -> np.ndarray:
        """The int8 ``[K, N]`` matrix (``W.T``) read straight from the streams: putting K
        first is one copy whose inner runs stay ``port_bytes`` long, far cheaper than
        transposing ``[N, K]``."""
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
    w = packed.streams().transpose(1, 0, 3, 2).reshape(packed.tiles * packed.cols, packed.k)
    return np.ascontiguousarray(w[: packed.n])
