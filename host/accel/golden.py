"""The golden model: what the accelerator computes, bit for bit.

``C[M, N] (int32) = A[M, K] (int8) x W[N, K]^T (int8)``, with W given in the packed
layout of ``host.accel.pack``. The sums are exact; nothing is rounded or truncated. The RTL
is checked against this function, and the fast golden backend is checked against it.
"""

from __future__ import annotations

import numpy as np

from .pack import PackedWeights

__all__ = ["golden_matmul", "golden_job", "INT32_MIN", "INT32_MAX"]

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


def golden_job(config, job, memory: np.ndarray, base: int, more: tuple = ()) -> tuple[int, int]:
    """What the accelerator does with ``job`` (``hdl.spec.job.Job``) on ``memory`` (uint8,
    byte 0 at device address ``base``; ``more``: further ``(memory, base)`` windows, such
    as the KV260's coherent buffer for A and C): the rules' ``(code, address)``, and when
    they pass, C written at ``C_ADDR`` row by row, A read from ``A_ADDR`` and each weight
    port's stream from ``W_ADDR + p * W_STRIDE`` in the job's format. For register-level
    models of the device (the firmware tests, the KV260 platform tests)."""
    from hdl.spec.formats import WeightFormat
    from hdl.spec.job import check
    from hdl.spec.regmap import ErrorCode

    from .pack import packed_size

    code, address = check(config, job)
    if code != ErrorCode.OK:
        return int(code), address

    def window(addr: int, nbytes: int) -> np.ndarray:
        for held, start in ((memory, base), *more):
            offset = addr - start
            if 0 <= offset and offset + nbytes <= held.size:
                return held[offset:offset + nbytes]
        raise ValueError(f"DMA outside the memory at {addr:#x}")

    a = np.stack([window(job.a_addr + row * job.a_stride, job.k) for row in range(job.m)])
    fmt, ports = WeightFormat(job.w_format), config.weight_ports
    stream = packed_size(job.n, job.k, config.cols, fmt) // ports        # one port's, from W_STRIDE
    data = np.concatenate([window(job.w_addr + p * job.w_stride, stream) for p in range(ports)])
    packed = PackedWeights(data.view(np.int8), job.n, job.k, config.cols, ports, fmt)
    c = golden_matmul(a.view(np.int8), packed)
    for row in range(job.m):
        window(job.c_addr + row * job.c_stride, 4 * job.n)[:] = c[row].view(np.uint8)
    return int(code), address
