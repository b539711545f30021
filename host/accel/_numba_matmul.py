"""The numba-compiled kernels behind ``host.kernels`` (imported only when used).

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


# One token's quantize and dequantize (decode runs ~70 of each per Gemma token): the
# float32 arithmetic of host.quant's numpy path, in one call instead of six.

@numba.njit("void(float32[:, ::1], int8[:, ::1], float32[:, ::1], float32, float32)",
            cache=True, boundscheck=False)
def quantize_row(x, q, scale, qmax_inverse, tiny):
    amax = np.float32(0.0)
    for k in range(x.shape[1]):
        a = abs(x[0, k])
        if a > amax:
            amax = a
    s = max(amax * qmax_inverse, tiny)
    inverse = np.float32(1.0) / s
    for k in range(x.shape[1]):
        q[0, k] = np.int8(np.rint(x[0, k] * inverse))
    scale[0, 0] = s


@numba.njit("void(int32[:, ::1], float32[::1], float32, float32[:, ::1])",
            cache=True, boundscheck=False)
def dequantize_row(acc, w_scale, x_scale, y):
    for n in range(acc.shape[1]):
        y[0, n] = np.float32(acc[0, n]) * (w_scale[n] * x_scale)
