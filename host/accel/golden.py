"""The golden model: what the accelerator computes, bit for bit.

``C[M, N] (int32) = A[M, K] (int8) x W[N, K]^T (int8)``, with W given in the packed
layout of ``host.accel.pack``. The sums are exact; nothing is rounded or truncated. The RTL
is checked against this function, and the fast golden backend is checked against it.
"""

from __future__ import annotations

import numpy as np

from .pack import PackedWeights

__all__ = ["golden_matmul", "INT32_MIN", "INT32_MAX"]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def golden_matmul(a: np.ndarray, packed: PackedWeights) -> np.ndarray:
    """Exact ``int32[M, N]`` product of int8 activations and packed weights (int8, or
    int4 with its group scales folded in: ``hdl.spec.formats``)."""
    a = np.asarray(a)
    if a.dtype != np.int8 or a.ndim != 2:
        raise TypeError(f"activations must be int8 [M, K], got {a.dtype} {a.shape}")
    if a.shape[1] != packed.k:
        raise ValueError(f"activations have K={a.shape[1]}, weights have K={packed.k}")
    w = packed.effective()          # int8 as it is, or int4's q * s: int8 either way
    # int64 accumulation cannot overflow for any K below 2^49; the result must fit int32.
    c = a.astype(np.int64) @ w.astype(np.int64).T
    if c.size and (c.min() < INT32_MIN or c.max() > INT32_MAX):
        raise OverflowError("product exceeds int32; K is beyond what the hardware supports")
    return c.astype(np.int32)
