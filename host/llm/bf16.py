"""bfloat16 for the host's KV cache, stored as ``uint16`` (numpy has no bfloat16).

A bfloat16 is the top half of a float32: 8 exponent bits and 7 mantissa bits (2^-9
relative rounding error), the format Gemma 3 and the Llama family were trained in.
The host-attention KV cache (``host.llm.transformer.KVCache``) keeps keys and values in
it by default: half the bytes of float32, and on the KV260's Cortex-A53 those reads are
the largest memory term of a decode token (``host.perf.a53``). Attention widens each
element back to float32 (a 16-bit shift, exact) and computes in float32, so only the
stored values are rounded. ``host.llm.quality --kv-cache`` measures the effect.

``to_bf16`` rounds to nearest, ties to even, as torch's ``float32 -> bfloat16`` (the
check in ``tests/test_host_transformer.py``); NaN stays NaN (quiet), infinities stay
infinite, and a finite value past the largest bfloat16 rounds to infinity. The fused
kernels' ``host.llm._numba_fused._bf16`` and ``_bf16_float`` are the same operations on
one element.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_bf16", "from_bf16", "KV_DTYPES", "kv_storage"]

# The host KV cache's element types: the name -> the numpy dtype it is stored as.
KV_DTYPES = {"bfloat16": np.dtype(np.uint16), "float32": np.dtype(np.float32)}


def kv_storage(name: str) -> np.dtype:
    """The storage dtype of KV cache type ``name``; ValueError names the choices."""
    try:
        return KV_DTYPES[name]
    except KeyError:
        raise ValueError(f"KV cache type {name!r}: expected one of {', '.join(KV_DTYPES)}") from None


def to_bf16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 ``x`` rounded to bfloat16, as ``uint16`` bits (into ``out`` if given)."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    rounded >>= np.uint32(16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = (bits[nan] >> np.uint32(16)) | np.uint32(0x0040)
    if out is None:
        return rounded.astype(np.uint16)
    out[...] = rounded
    return out


def from_bf16(bits: np.ndarray) -> np.ndarray:
    """``uint16`` bfloat16 bits widened to float32 (exact)."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)
