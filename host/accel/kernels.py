"""Exact int8 x int8 -> int32 matmul on the CPU, reading one byte per weight.

The golden backend's decode step is a GEMV per layer: it is bound by how many bytes
of weights it streams from DRAM, not by arithmetic. numpy's BLAS has no integer GEMM,
so the BLAS route (``host.accel.software._ColumnBlocks``) keeps float32 copies and streams
four bytes per weight. These kernels, compiled by numba, stream the int8 weights
themselves (a quarter of the traffic) and sum in int32, which is exact for any
``K <= 65535`` (``|sum| <= 65535 * 2^14 < 2^31``), so the result does not depend on the
order of additions or on the number of threads.

``available()`` says whether numba is importable; without it the golden backend falls
back to the BLAS route. The compiled code is cached on disk (numba's ``cache=True``),
so only the first run on a machine pays the compile time (about 2 s).
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

__all__ = ["available", "int8_matmul", "int4_rows", "int4_matmul"]


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


def int4_rows(q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The int4 kernel's weight words: uint64 ``[N, 2 * G]`` for ``q`` int8 ``[N, K]`` in
    -8..7 and ``G = s.shape[1] = ceil(K / 32)``: per group ``g``, 16 bytes whose byte
    ``j`` is ``u[32g + j] | u[32g + 16 + j] << 4`` with ``u = q + 8`` (steps past K
    hold ``u = 8``, ``q = 0``). Half a byte per weight."""
    n, k = q.shape
    groups = s.shape[1]
    padded = np.full((n, 32 * groups), 8, np.uint8)
    padded[:, :k] = (q.astype(np.int16) + 8).astype(np.uint8)
    halves = padded.reshape(n, groups, 2, 16)
    data = (halves[:, :, 0] | (halves[:, :, 1] << 4)).reshape(n, 16 * groups)
    return np.ascontiguousarray(data).view(np.uint64)


def int4_matmul(x: np.ndarray, w_words: np.ndarray, s: np.ndarray, k: int,
                threads: int = 1) -> np.ndarray:
    """Exact ``int32 [M, N] = x @ (q * s).T`` from ``int4_rows(q, s)`` and the uint8
    scales ``s [N, G]``: the same sums as ``int8_matmul`` of the effective weights,
    streaming half the bytes. ``x`` is int8 ``[M, k]``."""
    kernels = _kernels()
    if kernels is None:
        raise RuntimeError("host.accel.kernels needs numba (pip install -r requirements.lock)")
    groups = s.shape[1]
    if x.dtype != np.int8 or x.ndim != 2 or x.shape[1] != k or not 32 * groups - 32 < k <= 32 * groups:
        raise ValueError(f"int4_matmul takes int8 [M, {k}] activations for {groups} groups; "
                         f"got {x.dtype} {x.shape}")
    if k > 65535:
        raise ValueError(f"K={k} > 65535 could overflow int32")
    if x.shape[1] != 32 * groups:          # the last group's steps past K meet zeros
        padded = np.zeros((x.shape[0], 32 * groups), np.int8)
        padded[:, :k] = x
        x = padded
    x = np.ascontiguousarray(x)
    xsum = x.reshape(x.shape[0], groups, 32).sum(axis=2, dtype=np.int32)
    out = np.empty((x.shape[0], w_words.shape[0]), np.int32)
    if threads <= 1:
        kernels.int4_serial(x, xsum, w_words, s, out)
        return out
    with _parallel_lock:
        kernels.set_num_threads(min(threads, kernels.max_threads))
        kernels.int4_parallel(x, xsum, w_words, s, out)
    return out
