"""The numba-compiled one-token quantize and dequantize behind ``host.llm.kernels``.

Imported only when used; the compiled code comes from numba's on-disk cache after
the first run on a machine.
"""

from __future__ import annotations

import numba
import numpy as np

# Decode runs ~70 of each per Gemma token: the float32 arithmetic of host.llm.quant's
# numpy path, in one call instead of six.

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


# -- 4-bit weights (host.llm.quant4) ---------------------------------------------------------
# W[c, k] ~ d[c] * q[c, k] * s[c, k // 32], q in -8..7, s in 0..15. For a fixed step
# d * s the best q of every weight is its rounded, clipped quotient, so a group's error
# depends on s alone and a row's error on d alone (given each group's best s).

@numba.njit(cache=True, boundscheck=False, inline="always")
def _group_error(w, importance, k0, k1, step):
    """Weighted squared error of weights ``w[k0:k1]`` on the grid ``step * (-8..7)``."""
    err = 0.0
    for k in range(k0, k1):
        q = np.rint(w[k] / step)
        q = min(max(q, -8.0), 7.0)
        e = w[k] - q * step
        err += importance[k] * e * e
    return err


@numba.njit(cache=True, boundscheck=False)
def _best_group_scale(w, importance, k0, k1, d):
    """The scale ``s`` in 0..15 of group ``w[k0:k1]`` with the least error for row scale
    ``d``, and that error. Only the scales near ``max|w| / (7.5 d)`` can win."""
    amax = 0.0
    for k in range(k0, k1):
        amax = max(amax, abs(w[k]))
    if amax == 0.0:
        return 0, 0.0
    ideal = int(np.rint(amax / (7.5 * d)))
    best_s, best_err = 0, 0.0
    for k in range(k0, k1):
        best_err += importance[k] * w[k] * w[k]          # s = 0: every weight is 0
    for s in range(max(1, ideal - 2), min(15, ideal + 1) + 1):
        err = _group_error(w, importance, k0, k1, d * s)
        if err < best_err:
            best_s, best_err = s, err
    if ideal > 16:                                       # the group saturates: s = 15
        err = _group_error(w, importance, k0, k1, d * 15)
        if err < best_err:
            best_s, best_err = 15, err
    return best_s, best_err


@numba.njit("void(float32[:, ::1], float32[::1], float32[::1], int8[:, ::1], uint8[:, ::1], float32[::1])",
            cache=True, boundscheck=False, parallel=True)
def int4_search(w, importance, ratios, q, s, d):
    """Per row, the ``d = max|w| / ratio`` (over ``ratios``) whose best group scales give
    the least weighted error; then ``d`` refit by least squares for the chosen q * s."""
    n, k_total = w.shape
    groups = (k_total + 31) // 32
    for c in numba.prange(n):
        row = w[c].astype(np.float64)
        amax = 0.0
        for k in range(k_total):
            amax = max(amax, abs(row[k]))
        if amax == 0.0:
            q[c, :] = 0
            s[c, :] = 0
            d[c] = 1.0
            continue
        best_d, best_err = amax / ratios[0], np.inf
        for r in range(ratios.shape[0]):
            dc = amax / ratios[r]
            total = 0.0
            for g in range(groups):
                total += _best_group_scale(row, importance, 32 * g, min(k_total, 32 * g + 32), dc)[1]
                if total >= best_err:
                    break
            if total < best_err:
                best_d, best_err = dc, total
        numerator, denominator = 0.0, 0.0
        for g in range(groups):
            k0, k1 = 32 * g, min(k_total, 32 * g + 32)
            sg = _best_group_scale(row, importance, k0, k1, best_d)[0]
            s[c, g] = sg
            for k in range(k0, k1):
                qk = 0.0 if sg == 0 else min(max(np.rint(row[k] / (best_d * sg)), -8.0), 7.0)
                q[c, k] = np.int8(qk)
                v = qk * sg
                numerator += importance[k] * row[k] * v
                denominator += importance[k] * v * v
        d[c] = numerator / denominator if denominator > 0 and numerator > 0 else best_d


@numba.njit("void(float64[:, ::1], float64[::1], float64[::1], uint8[::1])",
            cache=True, boundscheck=False, parallel=True)
def int4_group_scales(w, importance, d, s):
    """The best scale of one group ``w [N, <=32]`` per row, for row scales ``d``."""
    for c in numba.prange(w.shape[0]):
        s[c] = _best_group_scale(w[c], importance, 0, w.shape[1], d[c])[0]
