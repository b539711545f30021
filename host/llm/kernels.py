"""One token's dynamic quantize and dequantize, each one compiled call (numba).

Decode quantizes and dequantizes ~70 activation rows per Gemma token; as numpy calls
each took ~0.6 ms per token. These kernels do exactly ``host.llm.quant``'s float32
arithmetic (tests check them bit for bit, rounding ties included). Each returns None
when it cannot take its operands (numba missing, another dtype or shape), and the
caller keeps its numpy path.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["available", "quantize_row", "dequantize_row"]


@lru_cache(maxsize=1)
def _kernels():
    """The ``host.llm._numba_quant`` module, or None when numba is missing."""
    try:
        from . import _numba_quant
    except ImportError:
        return None
    return _numba_quant


def available() -> bool:
    """True when numba is installed and the kernels compile."""
    return _kernels() is not None


def quantize_row(x: np.ndarray, qmax_inverse: np.float32,
                 floor: np.float32) -> tuple[np.ndarray, np.ndarray] | None:
    """One token's dynamic int8 quantization: ``(q [1, K] int8, scale [1, 1] float32)``.

    Exactly ``host.llm.quant.quantize_activations``'s float32 arithmetic (scale =
    ``max(max|x| * qmax_inverse, floor)``, ``q = rint(x * (1 / scale))``), in one
    compiled call. None when the kernel cannot take ``x`` (numba missing, not a
    C-contiguous float32 ``[1, K]``).
    """
    kernels = _kernels()
    if (kernels is None or x.dtype != np.float32 or x.ndim != 2 or x.shape[0] != 1
            or not x.flags.c_contiguous):
        return None
    q = np.empty(x.shape, np.int8)
    scale = np.empty((1, 1), np.float32)
    kernels.quantize_row(x, q, scale, qmax_inverse, floor)
    return q, scale


def dequantize_row(acc: np.ndarray, w_scale: np.ndarray, x_scale: np.float32) -> np.ndarray | None:
    """``acc * (w_scale * x_scale)`` in float32 for one token's int32 ``[1, N]``; None
    when the kernel cannot take the operands."""
    kernels = _kernels()
    if (kernels is None or acc.dtype != np.int32 or acc.ndim != 2 or acc.shape[0] != 1
            or not acc.flags.c_contiguous or w_scale.dtype != np.float32
            or not w_scale.flags.c_contiguous or w_scale.shape != (acc.shape[1],)):
        return None
    y = np.empty(acc.shape, np.float32)
    kernels.dequantize_row(acc, w_scale, np.float32(x_scale), y)
    return y
