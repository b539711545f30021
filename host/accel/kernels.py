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

__all__ = ["available", "int8_matmul"]


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
