"""The numba-compiled int8 matmul behind ``host.accel.kernels`` (imported only when used).

Importing this module imports numba (about 0.3 s) and loads the compiled code from
numba's on-disk cache, compiling it on the first run on a machine (about 2 s).
"""

from __future__ import annotations

import types

import numba
import numpy as np
from numba import prange

_SIGNATURE = "void(int8[:, ::1], int8[:, ::1], int32[:, ::1])"


def _rows(x, w, out):
    # out[m, n] = sum_k x[m, k] * w[n, k]: one int32 reduction per output, which LLVM
    # vectorises (widen, multiply, add). Blocking several rows of x per weight row
    # defeated the vectoriser and ran 2-3x slower, measured. prange is plain range in
    # the serial build; the parallel build splits the output channels across threads
    # (numba's OpenMP layer when gcc's libgomp is present; its workqueue fallback costs
    # ~0.1 ms per call, measured, which only the classifier hides).
    m_total, k_total = x.shape
    for n in prange(w.shape[0]):
        for m in range(m_total):
            acc = np.int32(0)
            for k in range(k_total):
                acc += np.int32(x[m, k]) * np.int32(w[n, k])
            out[m, n] = acc


def _renamed(function, name: str):
    """``function`` under another name. numba's disk cache is keyed by the function's
    name, so a serial and a parallel build of one function would load each other's
    code; the parallel build compiles this copy instead."""
    copy = types.FunctionType(function.__code__, function.__globals__, name)
    copy.__qualname__ = name
    return copy


serial = numba.njit(_SIGNATURE, cache=True, boundscheck=False)(_rows)
parallel = numba.njit(_SIGNATURE, cache=True, boundscheck=False,
                      parallel=True)(_renamed(_rows, "_rows_parallel"))
set_num_threads = numba.set_num_threads
max_threads = numba.config.NUMBA_NUM_THREADS
