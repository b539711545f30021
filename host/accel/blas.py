"""Thread count of numpy's BLAS (OpenBLAS), changeable at run time.

OpenBLAS threads spin while they wait for work. When the cores are shared with
other busy processes (a test run with pytest-xdist workers, a simulator), a
two-thread GEMV can take milliseconds instead of microseconds because one half waits
for a descheduled thread. ``blas_threads(1)`` avoids that; ``None`` keeps OpenBLAS's
own choice. Found through the loaded library's symbols, like threadpoolctl does;
if no OpenBLAS is loaded the functions do nothing and report ``None``.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
from functools import lru_cache

import numpy as np  # noqa: F401  (loads the BLAS library this module controls)

__all__ = ["get_blas_threads", "set_blas_threads", "blas_threads"]

_PREFIXES = ("scipy_openblas_", "openblas_")
_SUFFIXES = ("64_", "")


@lru_cache(maxsize=1)
def _functions():
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps
                            if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                setter = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    return setter, getter
    return None


def get_blas_threads() -> int | None:
    """OpenBLAS's current thread count, or None if OpenBLAS is not found."""
    functions = _functions()
    return None if functions is None else int(functions[1]())


def set_blas_threads(count: int) -> int | None:
    """Set OpenBLAS's thread count; returns the previous count (None if not found)."""
    if count < 1:
        raise ValueError(f"BLAS thread count {count} must be >= 1")
    functions = _functions()
    if functions is None:
        return None
    previous = int(functions[1]())
    functions[0](int(count))
    return previous


@contextmanager
def blas_threads(count: int | None):
    """Run the block with ``count`` BLAS threads (None: leave the setting alone)."""
    previous = set_blas_threads(count) if count is not None else None
    try:
        yield
    finally:
        if previous is not None:
            set_blas_threads(previous)
