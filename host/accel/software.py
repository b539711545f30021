"""The software backends: the golden int8 model and the float32 reference, on the CPU.

- ``GoldenBackend``: bit-identical to ``host.accel.golden.golden_matmul`` (checked by
  tests) and fast enough for everyday use: an int8 kernel (``host.accel.kernels``,
  numba) that streams one byte per weight (half a byte for ``Int4Weights``, through
  the int4 kernel), or float32 BLAS when numba is missing.
- ``FloatBackend``: the float32 reference, no quantization (its own contract:
  float32 in, float32 out).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from hdl.spec.config import AccelConfig

from . import kernels
from .backend import IntBackend, MutableWeights
from .blas import set_blas_threads
from hdl.spec.formats import WeightFormat

from .pack import PackedWeights, unpack_int4

__all__ = ["GoldenBackend", "GoldenWeights", "GOLDEN_KERNELS", "FloatBackend", "float_backend",
           "EXACT_CHUNK_K", "PARALLEL_MIN_WEIGHTS", "default_threads"]

# float32 holds every integer up to 2^24 exactly. With |x|, |w| <= 128 each product is
# <= 2^14, so any partial sum of at most 1024 products is <= 2^24: a float32 GEMM over
# a K chunk of <= 1024 int8 values is exact whatever order BLAS adds in.
EXACT_CHUNK_K = 1024
# Matrices with at least this many weights are split across threads. Measured on 2
# cores: a layer-sized GEMV (<= 2.6 M weights) gains nothing from a second thread with
# either kernel (Gemma decode 55-58 tok/s with the int8 kernel whether layers split at
# 2^19 or 2^24 weights); the 168 M-weight classifier runs ~1.2-1.5x faster split.
PARALLEL_MIN_WEIGHTS = 1 << 24


def default_threads() -> int:
    """Threads the software backends use: the CPUs this process may run on, at most 4."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:
        count = os.cpu_count() or 1
    return max(1, min(4, count))


class _ColumnBlocks:
    """A ``[K, N]`` float32 matrix cut into column blocks (threads) and K chunks.

    ``product(x)`` is ``x @ W`` computed block by block on a thread pool, with BLAS
    itself single-threaded: OpenBLAS's spinning threads stall badly on a shared
    machine (``host.accel.blas``), plain Python threads only block. With ``exact_int``,
    each K chunk's float32 result is converted to int32 before chunks are added.
    """

    _pools: dict[int, ThreadPoolExecutor] = {}

    def __init__(self, w_t: np.ndarray, threads: int, chunk_k: int | None,
                 split_min_weights: int = PARALLEL_MIN_WEIGHTS):
        k, n = w_t.shape
        blocks = threads if threads > 1 and k * n >= split_min_weights else 1
        edges = np.linspace(0, n, blocks + 1).astype(int)
        chunk_k = chunk_k or k
        self.k, self.n, self.threads = k, n, threads
        self.blocks = [(int(n0), int(n1), [(k0, min(k, k0 + chunk_k),
                                            np.ascontiguousarray(w_t[k0:k0 + chunk_k, n0:n1],
                                                                 dtype=np.float32))
                                           for k0 in range(0, k, chunk_k)])
                       for n0, n1 in zip(edges[:-1], edges[1:])]

    def product(self, x: np.ndarray, exact_int: bool) -> np.ndarray:
        """``x @ W`` (int32 when ``exact_int``, else float32), all blocks computed."""
        if len(self.blocks) == 1 and len(self.blocks[0][2]) == 1:     # the common case
            part = x @ self.blocks[0][2][0][2]
            return part.astype(np.int32) if exact_int else part
        out = np.empty((x.shape[0], self.n), np.int32 if exact_int else np.float32)

        def run(block) -> None:
            n0, n1, chunks = block
            if len(chunks) == 1:
                part = x @ chunks[0][2]
                out[:, n0:n1] = part.astype(np.int32) if exact_int else part
                return
            acc = None
            for k0, k1, w in chunks:
                part = x[:, k0:k1] @ w
                part = part.astype(np.int32) if exact_int else part
                acc = part if acc is None else acc + part
            out[:, n0:n1] = acc

        if len(self.blocks) == 1:
            run(self.blocks[0])
        else:
            pool = self._pools.get(self.threads)
            if pool is None:
                pool = self._pools[self.threads] = ThreadPoolExecutor(self.threads, "systole-gemm")
            for future in [pool.submit(run, block) for block in self.blocks]:
                future.result()
        return out


class _Int8Rows:
    """int8 ``[N, K]`` weights multiplied by ``host.accel.kernels.int8_matmul``."""

    def __init__(self, w: np.ndarray, threads: int, split_min_weights: int = PARALLEL_MIN_WEIGHTS):
        self.w = np.ascontiguousarray(w, dtype=np.int8)
        self.threads = threads if self.w.size >= split_min_weights else 1

    def product(self, x: np.ndarray, exact_int: bool = True) -> np.ndarray:
        return kernels.int8_matmul(x, self.w, self.threads)


class _Int4Rows:
    """4-bit weights multiplied by ``host.accel.kernels.int4_matmul``: half a byte per
    weight plus a byte per 32 for the group scales, the same exact sums as the int8
    kernel over ``q * s``."""

    def __init__(self, packed: PackedWeights, threads: int,
                 split_min_weights: int = PARALLEL_MIN_WEIGHTS):
        weights = unpack_int4(packed)
        self.blocks = kernels.int4_blocks(weights.q, weights.s)
        self.threads = threads if packed.n * packed.k >= split_min_weights else 1

    def product(self, x: np.ndarray, exact_int: bool = True) -> np.ndarray:
        return kernels.int4_matmul(x, self.blocks, self.threads)


# The golden backend's ways to compute: "int8" streams the int8 weights through the
# numba kernel; "blas" keeps float32 copies for numpy's BLAS (4x the memory traffic).
GOLDEN_KERNELS = ("auto", "int8", "blas")


@dataclass(frozen=True)
class GoldenWeights:
    """A golden-backend handle: the packed bytes and the compute copy derived from them."""

    name: str
    packed: PackedWeights
    compute: _Int8Rows | _Int4Rows | _ColumnBlocks

    @property
    def n(self) -> int:
        return self.packed.n

    @property
    def k(self) -> int:
        return self.packed.k


class GoldenBackend(IntBackend):
    """``host.accel.golden.golden_matmul`` semantics at the speed of the CPU's memory.

    ``load`` packs the weights exactly as the hardware streams them and derives its
    compute copy from the packed bytes. Two kernels (``kernel``; "auto" takes "int8"
    when numba is installed, else "blas"):

    - "int8": the int8 ``[N, K]`` matrix (``PackedWeights.effective``), multiplied by
      ``host.accel.kernels.int8_matmul`` with int32 sums. A decode step is a GEMV bound by
      DRAM bandwidth, and this streams one byte per weight. int4 weights go through
      ``host.accel.kernels.int4_matmul`` instead, from their packed nibbles and scales.
    - "blas": float32 ``[K, N]`` (``PackedWeights.as_kn``) split into K chunks of
      ``EXACT_CHUNK_K`` (and column blocks for threads); one float32 GEMM per chunk,
      exact by ``EXACT_CHUNK_K``, chunks added in int32.

    Either way the int32 sums cannot overflow for ``K <= max_k <= 65535``
    (``|C| <= 65535 * 2^14 < 2^31``). Matrices of at least ``split_min_weights``
    weights are split across ``threads``; with ``threads > 1`` numpy's BLAS is set to
    one thread (``host.accel.blas`` says why).
    """

    name = "golden"

    def __init__(self, config: AccelConfig, threads: int | None = None,
                 split_min_weights: int = PARALLEL_MIN_WEIGHTS, kernel: str = "auto"):
        super().__init__(config)
        if kernel not in GOLDEN_KERNELS:
            raise ValueError(f"unknown golden kernel {kernel!r}; choose one of {', '.join(GOLDEN_KERNELS)}")
        if kernel == "int8" and not kernels.available():
            raise RuntimeError("golden kernel 'int8' needs numba; install requirements.lock "
                               "or use kernel='blas'")
        self.kernel = kernel if kernel != "auto" else ("int8" if kernels.available() else "blas")
        self.threads = default_threads() if threads is None else threads
        self.split_min_weights = split_min_weights
        if self.threads > 1:
            set_blas_threads(1)

    def load(self, name: str, w: np.ndarray) -> GoldenWeights:
        """Pack ``w`` for ``cols`` and keep the compute copy of the packed bytes."""
        packed = self.pack(name, w)
        if self.kernel == "int8" and packed.format is WeightFormat.INT4:
            compute = _Int4Rows(packed, self.threads, self.split_min_weights)
        elif self.kernel == "int8":
            compute = _Int8Rows(packed.effective(), self.threads, self.split_min_weights)
        else:
            compute = _ColumnBlocks(packed.as_kn(), self.threads, EXACT_CHUNK_K,
                                    self.split_min_weights)
        return GoldenWeights(name, packed, compute)

    def _place_mutable(self, handle: MutableWeights) -> np.ndarray:
        """The compute copy: int8 ``[n, k]`` rows, kept equal to the packed bytes."""
        return np.zeros((handle.n, handle.k), np.int8)

    def _mutated(self, handle: MutableWeights, spans, rows=None, columns=None) -> None:
        if rows is not None:
            start, values = rows
            handle.device[start:start + values.shape[0]] = values
        if columns is not None:
            start, values = columns
            handle.device[:, start:start + values.shape[1]] = values

    def matmul_rows(self, x: np.ndarray, handle: MutableWeights, n: int) -> np.ndarray:
        """Exact ``int32 [M, n]`` with the first ``n`` rows, bit-identical to
        ``golden_matmul`` of those rows."""
        x = self._check_rows(x, handle, n)
        if self.kernel == "int8":
            return kernels.int8_matmul(x, handle.device[:n])
        # float64 BLAS is exact here: |sum| <= K * 2^14 < 2^53
        return (x.astype(np.float64) @ handle.device[:n].T.astype(np.float64)).astype(np.int32)

    def matmul(self, x: np.ndarray, handle: GoldenWeights) -> np.ndarray:
        """Exact ``int32 [M, N]``, bit-identical to ``golden_matmul(x, handle.packed)``."""
        x = self.check_activations(x, handle.k)
        if isinstance(handle.compute, (_Int8Rows, _Int4Rows)):
            return handle.compute.product(x)
        return handle.compute.product(x.astype(np.float32), exact_int=True)


class FloatBackend:
    """The float32 reference: ``matmul(x, load(name, W))`` is ``x @ W.T`` in float32.

    Threads as in ``GoldenBackend``.
    """

    name = "float"
    config = None

    def __init__(self, threads: int | None = None, split_min_weights: int = PARALLEL_MIN_WEIGHTS):
        self.threads = default_threads() if threads is None else threads
        self.split_min_weights = split_min_weights
        if self.threads > 1:
            set_blas_threads(1)

    def load(self, name: str, w: np.ndarray) -> _ColumnBlocks:
        """Keep float32 ``W.T`` in column blocks."""
        w = np.asarray(w)
        if w.ndim != 2:
            raise ValueError(f"{name}: weights must be 2-D [N, K], got shape {w.shape}")
        return _ColumnBlocks(w.T, self.threads, None, self.split_min_weights)

    def matmul(self, x: np.ndarray, handle: _ColumnBlocks) -> np.ndarray:
        """float32 ``x @ W.T``."""
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != handle.k:
            raise ValueError(f"activations must be float32 [M, {handle.k}], "
                             f"got {x.dtype} {x.shape}")
        return handle.product(x, exact_int=False)

    def last_cycles(self) -> int | None:
        return None

    def close(self) -> None:
        pass




def float_backend(config: AccelConfig | None = None, **options) -> FloatBackend:
    """The registry's factory: a ``FloatBackend`` (float32 needs no accelerator shape)."""
    return FloatBackend(**options)
