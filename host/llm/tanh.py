"""The host's one tanh: a float32 rational approximation without libm.

Both host paths use it, so they round alike: ``Transformer.activation`` (numpy,
``tanh32``) and the fused decoder's kernels (``host.llm._numba_fused._tanh``, the same
operations on the same constants, one element at a time). It vectorizes where libm's
``tanhf`` does not, and on the KV260's Cortex-A53 it replaces ~30 ns a call (the
``host.perf.a53`` constant) by ``TANH_FLOPS`` flops.

Eigen's ``generic_fast_tanh_float`` (also TensorFlow's): tanh(x) = x P(x^2) / Q(x^2) on x
clamped to +-7.9053 (where the rational reaches the float32 below 1), x itself for
|x| < 0.0004 (tanh(x) rounds to x there). Against float64 tanh over every 7th float32 in
[-12, 12]: at most ``TANH_MAX_ULP`` ulp, ``TANH_MAX_ERROR`` absolute (the clamp costs up
to 5 ulp in [7.9, 9.01], where tanh rounds to 1); ``tests/test_fused.py`` checks both
implementations against that bound and against each other, bit for bit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TANH_CLAMP", "TANH_TINY", "TANH_P", "TANH_Q", "TANH_FLOPS", "TANH_MAX_ULP", "TANH_MAX_ERROR",
           "tanh32"]

TANH_CLAMP = np.float32(7.90531110763549805)
TANH_TINY = np.float32(0.0004)
TANH_P = tuple(np.float32(c) for c in (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
                                       5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
                                       4.89352455891786e-03))        # x^13 .. x^1
TANH_Q = tuple(np.float32(c) for c in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
                                       4.89352518554385e-03))        # x^6 .. x^0
# min, max, x^2, 12 for P (Horner), 1 for x P, 6 for Q, the division, 2 compares.
TANH_FLOPS = 25
TANH_MAX_ULP, TANH_MAX_ERROR = 6, 4e-7


def tanh32(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 ``tanh(x)`` into ``out`` (may be ``x``; default a new array): NaN in, NaN
    out; +-inf give +-1. Each step is one float32 operation, in ``_tanh``'s order."""
    x = np.asarray(x, np.float32)
    c = np.clip(x, -TANH_CLAMP, TANH_CLAMP)
    x2 = c * c
    p13, p11, p9, p7, p5, p3, p1 = TANH_P
    q6, q4, q2, q0 = TANH_Q
    p = x2 * p13
    for coefficient in (p11, p9, p7, p5, p3):
        p += coefficient
        p *= x2
    p += p1
    q = x2 * q6
    for coefficient in (q4, q2):
        q += coefficient
        q *= x2
    q += q0
    p *= c
    p /= q
    np.copyto(p, x, where=(np.abs(x) < TANH_TINY) | np.isnan(x))    # before ``out`` (maybe x) is written
    if out is None:
        return p
    out[...] = p
    return out
