"""The numba-compiled kernels behind ``host.kernels`` (imported only when used).

Importing this module imports numba (about 0.3 s) and loads the compiled code from
numba's on-disk cache, compiling it on the first run on a machine (about 2 s).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

_SIGNATURE = "void(int8[:, ::1], int8[:, ::1], int32[:, ::1])"


def _rows_serial(x, w, out):
    # out[m, n] = sum_k x[m, k] * w[n, k]: one int32 reduction per output, which LLVM
    # vectorises (widen, multiply, add). Blocking several rows of x per weight row
    # defeated the vectoriser and ran 2-3x slower, measured.
    m_total, k_total = x.shape
    for n in range(w.shape[0]):
        for m in range(m_total):
            acc = np.int32(0)
            for k in range(k_total):
                acc += np.int32(x[m, k]) * np.int32(w[n, k])
            out[m, n] = acc


def _rows_parallel(x, w, out):
    # _rows_serial with the output channels split across threads. numba picks its
    # OpenMP layer when libgomp is present (gcc's runtime); its workqueue fallback
    # costs ~0.1 ms per call, measured, which only the classifier hides.
    m_total, k_total = x.shape
    for n in prange(w.shape[0]):
        for m in range(m_total):
            acc = np.int32(0)
            for k in range(k_total):
                acc += np.int32(x[m, k]) * np.int32(w[n, k])
            out[m, n] = acc


# Two functions, not one compiled twice: numba's disk cache is keyed by the function,
# so a serial and a parallel build of the same function would load each other's code.
serial = numba.njit(_SIGNATURE, cache=True, boundscheck=False)(_rows_serial)
parallel = numba.njit(_SIGNATURE, cache=True, boundscheck=False, parallel=True)(_rows_parallel)
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
