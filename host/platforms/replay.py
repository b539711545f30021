"""A planned job replayed by compiled code on mapped registers (``firmware/replay.c``).

``host.accel.driver.Driver`` plans each matmul job once: its register writes in order,
the rules' verdict, the timeout. A bus whose registers are a mapped page (the KV260's
UIO mapping, ``UioRegisters``) offers ``replay``: the busy check, the writes, ap_start,
polling ap_done and the reads after it, all in one call of ``firmware/replay.c``
through ``ctypes``. The sequence is the driver's plan, so it is the one the Python path
and the simulator run; only who performs the accesses changes.

``Replayer.job_address`` is ``systole_job``'s address, for compiled callers that
submit a job themselves (``host.accel.driver.Driver.compiled_job``: the fused decoder's
numba kernels call it through the address, no ctypes call per job).

The library is compiled on first use with the C compiler (``$CC``, else ``cc``) into
``build/replay/<source digest>/`` and reused afterwards (``host.platforms.cbuild``);
``library()`` returns None, with the reason in ``library_problem()``, where no compiler
works (the driver then keeps its Python accesses).
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

from .cbuild import FIRMWARE, shared_library

__all__ = ["SOURCE", "library", "library_problem", "Replayer", "JobIo"]

SOURCE = FIRMWARE / "replay.c"


class JobIo(ctypes.Structure):
    """``struct systole_job_io`` of ``firmware/replay.c``: one job's memory traffic."""

    _fields_ = [("a", ctypes.c_void_p), ("a_buf", ctypes.c_void_p), ("c_buf", ctypes.c_void_p),
                ("c", ctypes.c_void_p), ("sync_device", ctypes.c_uint64 * 3),
                ("sync_cpu", ctypes.c_uint64 * 3), ("sync_state", ctypes.c_void_p),
                ("m", ctypes.c_uint32), ("k", ctypes.c_uint32), ("a_stride", ctypes.c_uint32),
                ("c_row_bytes", ctypes.c_uint32), ("c_stride", ctypes.c_uint32),
                ("fds", ctypes.c_int32 * 5), ("readback", ctypes.c_uint32)]

    def bound(self, a: int, c: int) -> "JobIo":
        """A copy reading A at ``a`` and writing C at ``c`` (``Driver.compiled_job``)."""
        copy = type(self).from_buffer_copy(self)
        copy.a, copy.c = a, c
        return copy


@lru_cache(maxsize=1)
def _build() -> tuple[ctypes.CDLL | None, str | None]:
    lib, problem = shared_library(SOURCE, "replay")
    if lib is None:
        return None, problem
    lib.systole_replay.restype = ctypes.c_int
    pointer = ctypes.c_void_p                # addresses: no ctypes objects per call
    replay_args = [pointer, ctypes.c_uint32, ctypes.c_uint32, pointer, pointer, ctypes.c_uint32,
                   ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint64, pointer,
                   ctypes.c_uint32, pointer]
    lib.systole_replay.argtypes = replay_args
    lib.systole_job.restype = ctypes.c_int
    lib.systole_job.argtypes = [*replay_args, ctypes.POINTER(JobIo)]
    return lib, None


def library() -> ctypes.CDLL | None:
    """The compiled ``firmware/replay.c``, or None (see ``library_problem``)."""
    return _build()[0]


def library_problem() -> str | None:
    """Why ``library()`` is None (None when it is not)."""
    return _build()[1]


class Replayer:
    """``firmware/replay.c``'s ``systole_replay`` for register pages of ``words`` uint32
    (the page is passed per call, so the replayer holds no mapping open)."""

    def __init__(self, lib: ctypes.CDLL, words: int = 1024):
        from hdl.spec.regmap import REGISTERS

        top = max(reg.offset for reg in REGISTERS)
        if top >= 4 * words:                  # every offset a plan can hold lies in the page
            raise ValueError(f"the register map reaches {top:#x}, past the {4 * words:#x}-byte page")
        self.words = words
        self._call = lib.systole_replay
        self._job = lib.systole_job
        self.job_address = ctypes.cast(lib.systole_job, ctypes.c_void_p).value

    def __call__(self, page: int, status_offset: int, busy_mask: int, offsets: int, values: int,
                 count: int, ctrl_offset: int, start: int, done_mask: int, timeout_s: float,
                 read_offsets: int, read_count: int, read_values: int) -> int:
        """1: done (``read_values`` filled); 0: timeout; -1: busy before the first write.

        ``page`` is the address of the mapped registers (``words`` uint32); ``offsets``
        and ``values`` (``count`` each), ``read_offsets`` and ``read_values``
        (``read_count`` each) are addresses of uint32 arrays the caller keeps alive.
        The offsets are the register map's, checked against the page at construction."""
        return self._call(page, status_offset, busy_mask, offsets, values, count, ctrl_offset, start,
                          done_mask, int(timeout_s * 1e9), read_offsets, read_count, read_values)

    def job(self, page: int, status_offset: int, busy_mask: int, offsets: int, values: int, count: int,
            ctrl_offset: int, start: int, done_mask: int, timeout_s: float, read_offsets: int,
            read_count: int, read_values: int, io: JobIo) -> int:
        """``__call__`` with the job's memory traffic around it (``systole_job``): -2 when a
        cache-maintenance write failed."""
        return self._job(page, status_offset, busy_mask, offsets, values, count, ctrl_offset, start,
                         done_mask, int(timeout_s * 1e9), read_offsets, read_count, read_values, io)
