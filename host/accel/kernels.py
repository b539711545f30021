"""Exact int8 x int8 -> int32 matmul on the CPU, reading one byte per weight.

The golden backend's decode step is a GEMV per layer: it is bound by how many bytes
of weights it streams from DRAM, not by arithmetic. numpy's BLAS has no integer GEMM,
so the BLAS route (``host.accel.software._ColumnBlocks``) keeps float32 copies and streams
four bytes per weight. These kernels, compiled by numba, stream the int8 weights
themselves (a quarter of the traffic) and sum in int32, which is exact for any
``K <= 65535`` (``|sum| <= 65535 * 2^14 < 2^31``), so the result does not depend on the
order of additions or on the number of threads. 4-bit weights (``int4_blocks``,
``int4_matmul``) stream half a byte per weight and give the same sums.

``available()`` says whether numba is importable; without it the golden backend falls
back to the BLAS route. The compiled code is cached on disk (numba's ``cache=True``),
so only the first run on a machine pays the compile time (about 2 s).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["available", "int8_matmul", "Int4Blocks", "int4_blocks", "int4_matmul"]


@lru_cache(maxsize=1)
def _kernels():
    """The ``host.accel._numba_matmul`` module, or None when numba is missing."""
    try:
        from . import _numba_matmul
    except ImportError:
        return None
    return _numba_matmul


# numba's threading layers may not be entered by two Python threads at once.
_parallel_lock = threading.Lock()


def available() -> bool:
    """True when numba is installed and the kernels compile."""
    return _kernels() is not None


def int8_matmul(x: np.ndarray, w: np.ndarray, threads: int = 1) -> np.ndarray:
    """Exact ``int32 [M, N] = x @ w.T`` for C-contiguous int8 ``x [M, K]``, ``w [N, K]``.

    ``threads > 1`` splits the output channels across that many threads. Raises
    RuntimeError when numba is missing (check ``available()`` first).
    """
    kernels = _kernels()
    if kernels is None:
        raise RuntimeError("host.accel.kernels needs numba (pip install -r requirements.lock)")
    if x.dtype != np.int8 or w.dtype != np.int8 or x.ndim != 2 or w.ndim != 2:
        raise TypeError(f"int8_matmul takes int8 [M, K] and [N, K]; got {x.dtype} {x.shape}, "
                        f"{w.dtype} {w.shape}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"activations have K={x.shape[1]}, weights have K={w.shape[1]}")
    if w.shape[1] > 65535:
        raise ValueError(f"K={w.shape[1]} > 65535 could overflow int32")
    x = np.ascontiguousarray(x)
    w = np.ascontiguousarray(w)
    out = np.empty((x.shape[0], w.shape[0]), np.int32)
    if threads <= 1:
        kernels.serial(x, w, out)
        return out
    with _parallel_lock:
        kernels.set_num_threads(min(threads, kernels.max_threads))
        kernels.parallel(x, w, out)
    return out


@dataclass(frozen=True)
class Int4Blocks:
    """4-bit weights in the int4 kernel's layout (``host.accel._numba_matmul`` says
    why): ``data`` uint8 ``[ceil(N / 16), G, 272]``, per block of 16 output channels and
    group of 32 steps 256 bytes of nibbles ``q + 8`` then the 16 channels' scales.
    Half a byte per weight plus a byte per group, as the packed hardware format."""

    data: np.ndarray
    n: int
    k: int

    @property
    def nbytes(self) -> int:
        return self.data.nbytes


def int4_blocks(q: np.ndarray, s: np.ndarray) -> Int4Blocks:
    """The int4 kernel's copy of ``q`` int8 ``[N, K]`` in -8..7 and ``s`` uint8 ``[N, G]``
    in 0..15, ``G = ceil(K / 32)``. Channels past N have ``s = 0``; steps past K hold
    ``q = 0`` (they meet zero activations)."""
    n, k = q.shape
    groups = s.shape[1]
    if s.shape[0] != n or not 32 * groups - 32 < k <= 32 * groups:
        raise ValueError(f"scales {s.shape} do not fit q {q.shape} (one per 32 steps)")
    block = 16
    block_total = -(-n // block)
    u = np.full((block_total * block, 32 * groups), 8, np.uint8)
    u[:n, :k] = (q.astype(np.int16) + 8).astype(np.uint8)
    # [block, c, g, step // 4, step % 4] -> [block, g, step // 4, 4 c + step % 4]
    quads = u.reshape(block_total, block, groups, 8, 4).transpose(0, 2, 3, 1, 4)
    quads = quads.reshape(block_total, groups, 8, 4 * block)
    data = np.zeros((block_total, groups, 256 + block), np.uint8)
    data[:, :, :256] = (quads[:, :, :4] | (quads[:, :, 4:] << 4)).reshape(block_total, groups, 256)
    scales = np.zeros((block_total * block, groups), np.uint8)
    scales[:n] = s
    data[:, :, 256:] = scales.reshape(block_total, block, groups).transpose(0, 2, 1)
    return Int4Blocks(data, n, k)


def int4_matmul(x: np.ndarray, weights: Int4Blocks, threads: int = 1) -> np.ndarray:
    """Exact ``int32 [M, N] = x @ (q * s).T`` for ``weights = int4_blocks(q, s)``: the
    same sums as ``int8_matmul`` of the effective weights, streaming half the bytes.
    ``x`` is int8 ``[M, K]``."""
    kernels = _kernels()
    if kernels is None:
        raise RuntimeError("host.accel.kernels needs numba (pip install -r requirements.lock)")
    k, groups = weights.k, weights.data.shape[1]
    if x.dtype != np.int8 or x.ndim != 2 or x.shape[1] != k:
        raise ValueError(f"int4_matmul takes int8 [M, {k}] activations; got {x.dtype} {x.shape}")
    if k > 65535:
        raise ValueError(f"K={k} > 65535 could overflow int32")
    if k != 32 * groups:                   # the last group's steps past K meet zeros
        padded = np.zeros((x.shape[0], 32 * groups), np.int8)
        padded[:, :k] = x
        x = padded
    x = np.ascontiguousarray(x)
    out = np.empty((x.shape[0], 16 * weights.data.shape[0]), np.int32)
    if threads <= 1:
        kernels.int4_serial(x, weights.data, out)
    else:
        with _parallel_lock:
            kernels.set_num_threads(min(threads, kernels.max_threads))
            kernels.int4_parallel(x, weights.data, out)
    return out if out.shape[1] == weights.n else np.ascontiguousarray(out[:, :weights.n])
