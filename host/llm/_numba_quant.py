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
