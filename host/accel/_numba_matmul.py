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


# 4-bit weights (host.accel.kernels.int4_rows): per row, per group of 32 steps, two
# uint64 words (16 bytes) of unsigned nibbles u = q + 8; byte j of the group holds step
# j in its low nibble and step 16 + j in its high one. A row is unpacked into a K-byte
# scratch row of u * s by eight-lane integer arithmetic on whole words (u * s <= 225
# fits a byte lane, so one multiply scales eight lanes without carries), then
# multiplied as in _rows, and sum x * q * s = sum x * (u * s) - 8 * sum_g s_g * xsum_g
# with xsum[m, g] the activations' group sums. Every sum is exact in int32, so the result
# equals the int8 product of the effective weights, bit for bit, while reading half the
# bytes. Unpacking byte by byte did not vectorise and ran 5-8x slower, measured.
_INT4_SIGNATURE = "void(int8[:, ::1], int32[:, ::1], uint64[:, ::1], uint8[:, ::1], int32[:, ::1])"
_INT4_ROWS_PER_TASK = 32       # rows unpacked at once (32 x K bytes stay in L1/L2)
_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)


def _int4_rows(x, xsum, w, s, out):
    m_total, k_total = x.shape
    n_total, groups = s.shape
    for task in prange((n_total + _INT4_ROWS_PER_TASK - 1) // _INT4_ROWS_PER_TASK):
        n0 = task * _INT4_ROWS_PER_TASK
        n1 = min(n_total, n0 + _INT4_ROWS_PER_TASK)
        # Unpack the task's rows first, then multiply: a row read right after its words
        # were written would stall on store forwarding (wide loads over narrow stores).
        words = np.empty((n1 - n0, 4 * groups), np.uint64)
        rows = words.view(np.uint8)
        for n in range(n0, n1):
            for g in range(groups):
                scale = np.uint64(s[n, g])
                a = w[n, 2 * g]
                b = w[n, 2 * g + 1]
                words[n - n0, 4 * g] = (a & _NIBBLES) * scale
                words[n - n0, 4 * g + 1] = (b & _NIBBLES) * scale
                words[n - n0, 4 * g + 2] = ((a >> np.uint64(4)) & _NIBBLES) * scale
                words[n - n0, 4 * g + 3] = ((b >> np.uint64(4)) & _NIBBLES) * scale
        for n in range(n0, n1):
            for m in range(m_total):
                acc = np.int32(0)
                for k in range(k_total):
                    acc += np.int32(x[m, k]) * np.int32(rows[n - n0, k])
                offset = np.int32(0)
                for g in range(groups):
                    offset += np.int32(s[n, g]) * xsum[m, g]
                out[m, n] = acc - np.int32(8) * offset


int4_serial = numba.njit(_INT4_SIGNATURE, cache=True, boundscheck=False)(_renamed(_int4_rows, "_int4_rows"))
int4_parallel = numba.njit(_INT4_SIGNATURE, cache=True, boundscheck=False,
                           parallel=True)(_renamed(_int4_rows, "_int4_rows_parallel"))
set_num_threads = numba.set_num_threads
max_threads = numba.config.NUMBA_NUM_THREADS
