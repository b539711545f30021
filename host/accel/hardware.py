"""``DriverBackend``: the accelerator contract over the one register-level driver.

Every hardware backend is this class (``host.accel.driver.Driver`` behind the
``IntBackend`` contract) on a different platform, each built by its platform's
``backend(config)`` (``host.platforms``):

- ``sim``: the generated RTL in Verilator (``host.platforms.sim``);
- ``device``: a KV260 under Linux, with UIO registers and u-dma-buf memory
  (``host.platforms.kv260``);
- ``link``: a Nexys Video over its link bridge (``host.platforms.nexys_video``).

``load`` packs the weights with the accelerator's ``cols`` and places them in
device memory once. ``matmul`` moves only activations and results. The hardware's
performance counters give ``last_cycles()``, which the profile reports per token.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hdl.spec.config import AccelConfig

from .backend import IntBackend, MutableWeights
from .driver import CompiledJob, Driver, JobStats, WeightBuffer

__all__ = ["DriverBackend"]


class DriverBackend(IntBackend):
    """``IntBackend`` over a ``Driver``; ``close`` also stops the platform.

    ``platform`` is the object behind the driver's bus (a simulator session, a link),
    for callers that want its own figures; ``jobs`` and ``total_cycles`` count the
    matmuls run and their accelerator cycles (``PERF_BUSY``).
    """

    def __init__(self, config: AccelConfig, driver: Driver, name: str, closer=None,
                 platform=None):
        super().__init__(config)
        self.driver = driver
        self.name = name
        self.platform = platform
        self._closer = closer
        self.jobs = 0
        self.total_cycles = 0

    def load(self, name: str, w) -> WeightBuffer:
        return self.driver.load_matrix(self.check_weights(name, w))

    def matmul(self, x: np.ndarray, handle: WeightBuffer) -> np.ndarray:
        result = self.driver.matmul(self.check_activations(x, handle.k), handle)
        self.jobs += 1
        self.total_cycles += self.driver.last_stats.busy_cycles
        return result

    def _place_mutable(self, handle: MutableWeights) -> WeightBuffer:
        """The all-zero packed matrix in device memory, laid out as any loaded weights."""
        return self.driver.load_weights(handle.packed)

    def _mutated(self, handle: MutableWeights, spans, rows=None, columns=None) -> None:
        """Copy the touched bytes of the host's packed copy to device memory (port ``p``'s
        stream sits ``W_STRIDE`` bytes on): through the memory's ``direct_view`` where it
        has one (no sync: the mutable weights are written only there, by this and by the
        fused decoder's kernels, ``mutable_places``), else written and synced for the
        device span by span."""
        weights: WeightBuffer = handle.device
        streams = handle.packed.data.reshape(handle.packed.ports, -1)
        memory = self.driver.memory
        direct = self._direct_view()
        for port, offset, nbytes in spans:
            at = weights.buffer.offset + port * weights.w_stride + offset
            if direct is not None:
                direct[at:at + nbytes] = streams[port, offset:offset + nbytes]
            else:
                memory.write(at, streams[port, offset:offset + nbytes])
                memory.sync_for_device(at, nbytes)

    def _direct_view(self) -> np.ndarray | None:
        """The weights memory's ``direct_view`` (made once), or None."""
        view = self.__dict__.get("_direct")
        if view is None and "_direct" not in self.__dict__:
            method = getattr(self.driver.memory, "direct_view", None)
            view = self._direct = None if method is None else method()
        return view

    def mapped_memory(self) -> bool:
        """Whether the weights memory has a ``direct_view`` (the KV260's mapped window)."""
        return self._direct_view() is not None

    def mutable_places(self, handle: MutableWeights) -> tuple[int, int, int, int] | None:
        """Where compiled code writes ``handle`` in place, both copies in the packed
        layout: ``(host copy address, its port stride, device view address, its port
        stride)``; the device address is in the memory's ``direct_view``. None when the
        memory has no direct view."""
        direct = self._direct_view()
        if direct is None:
            return None
        weights: WeightBuffer = handle.device
        packed = handle.packed
        return (packed.data.ctypes.data, packed.stream_bytes,
                direct.ctypes.data + weights.buffer.offset, weights.w_stride or packed.stream_bytes)

    def release_mutable(self, handle: MutableWeights) -> None:
        self.driver.free(handle.device.buffer)
        handle.views.clear()

    def matmul_rows(self, x: np.ndarray, handle: MutableWeights, n: int) -> np.ndarray:
        """A job over the first ``n`` rows rounded up to whole tiles (``rows_view``), its
        extra rows dropped."""
        x = self._check_rows(x, handle, n)
        view = self.rows_view(handle, n)
        result = self.driver.matmul(x, view)
        self.jobs += 1
        self.total_cycles += self.driver.last_stats.busy_cycles
        return result if view.n == n else np.ascontiguousarray(result[:, :n])

    def rows_view(self, handle: MutableWeights, n: int) -> WeightBuffer:
        """The weights of ``handle``'s first ``n`` rows rounded up to whole tiles (the same
        cycles: a tile is the unit the array streams). One ``WeightBuffer`` per tile
        count shares the capacity's buffer and ``W_STRIDE``, so the driver plans each job
        once."""
        rows = min(handle.n, -(-n // self.cols) * self.cols)
        view = handle.views.get(rows)
        if view is None:
            view = handle.views[rows] = dataclasses.replace(handle.device, n=rows)
        return view

    def compiled_job(self, handle: WeightBuffer, a: np.ndarray, c: np.ndarray) -> CompiledJob | None:
        """``Driver.compiled_job``: the job for compiled code to submit (None: no such
        path on this platform). Its caller checks ``compiled_epoch()`` before using it,
        reports failures to ``compiled_job_failed`` and runs to ``compiled_jobs_ran``."""
        return self.driver.compiled_job(handle, a, c)

    def compiled_epoch(self) -> tuple | None:
        """``Driver.compiled_epoch``: a ``CompiledJob`` made in another epoch is stale."""
        return self.driver.compiled_epoch()

    def compiled_job_failed(self, job: CompiledJob, status: int) -> None:
        """``Driver.compiled_job_failed``: raise the driver's error for ``status``."""
        self.driver.compiled_job_failed(job, status)

    def compiled_jobs_ran(self, jobs: int, cycles: int, last: CompiledJob) -> None:
        """Count ``jobs`` compiled submissions of ``cycles`` busy cycles in all, ``last``
        the last (its counters become ``last_stats``), as ``matmul`` counts its own."""
        self.jobs += jobs
        self.total_cycles += cycles
        self.driver.compiled_jobs_ran(last)

    def last_cycles(self) -> int | None:
        stats = self.driver.last_stats
        return None if stats is None else stats.busy_cycles

    def last_stats(self) -> JobStats | None:
        return self.driver.last_stats

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer = None
