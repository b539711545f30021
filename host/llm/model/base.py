"""What every model loader produces: a config, float32 weights and a tokenizer.

Weights use llama.cpp's GGUF tensor names (``token_embd.weight``,
``blk.{i}.attn_q.weight``, ...) whatever the file format, in Hugging Face layout:

- a linear layer is ``[N, K]`` float32 (``y = W x``);
- the rows of ``attn_q``/``attn_k`` are in the half-split (NeoX, ``rotate_half``)
  order, so one RoPE serves every format (loaders undo llama.cpp's and llama2.c's
  interleaved order);
- RMSNorm weights multiply directly (``x * w``): Gemma's "+1" is already folded in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from host.errors import SystoleError

if TYPE_CHECKING:
    from host.llm.tokenizer import Tokenizer

__all__ = ["ARCHITECTURES", "ConfigError", "ModelConfig", "Model", "ModelFileError",
           "short_repr", "unpermute_rope_rows"]

ARCHITECTURES = ("gemma3", "llama", "qwen2", "qwen3")

# Sane ranges: wide enough for every published model, narrow enough that a damaged
# value (a flipped exponent bit, a NaN) is refused instead of producing garbage text.
MAX_SIZE = 1 << 24             # any dimension, head count, layer count, vocabulary or context
MAX_NORM_EPS = 0.1             # published models use 1e-6 .. 1e-5
MAX_ROPE_BASE = 1e12           # published models use 1e4 .. 1e7
MAX_ROPE_LINEAR_SCALE = 1024.0  # Gemma 3 4B and larger use 8


class ModelFileError(SystoleError, ValueError):
    """A model or tokenizer file cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def short_repr(value: object, limit: int = 60) -> str:
    """``repr`` of a value read from a file, cut to one short line for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ConfigError(ValueError):
    """A ``ModelConfig`` field outside its range: ``field`` is its name, ``rule`` the range.

    Loaders turn it into a ``ModelFileError`` naming the file's own key for ``field``.
    """

    def __init__(self, field: str, value: object, rule: str):
        self.field, self.value, self.rule = field, value, rule
        super().__init__(f"{field}={value!r} {rule}")


@dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of a decoder-only transformer (Gemma 3, Llama, Qwen 2, Qwen 3).

    What the families differ in is derived from ``arch``: ``qk_norm`` (Gemma 3, Qwen 3:
    per-head RMSNorm of q and k), ``post_norms`` and the GELU activation (Gemma 3),
    ``embed_scale`` (Gemma). ``qkv_bias`` (Qwen 2) adds biases to q, k and v.

    ``global_every``: every ``global_every``-th layer (1-based) attends to the whole
    context with ``rope_base``; the others see ``sliding_window`` tokens and use
    ``rope_base_local``. ``sliding_window=None`` makes every layer global.

    Construction validates every field (``ConfigError`` names the first bad one): this is
    the one place that holds the ranges, for every loader and for configs built in code.
    """

    arch: str
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    max_seq_len: int
    norm_eps: float
    rope_base: float
    rope_base_local: float
    sliding_window: int | None = None
    global_every: int = 1
    rope_linear_scale: float = 1.0     # global layers divide positions by this (Gemma 3 4B+)
    tied_classifier: bool = True
    qkv_bias: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError("arch", self.arch, f"must be one of {ARCHITECTURES}")
        for key in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "head_dim",
                    "vocab_size", "max_seq_len", "global_every"):
            _check_int(key, getattr(self, key), 1, MAX_SIZE)
        if self.n_heads % self.n_kv_heads:
            raise ConfigError("n_kv_heads", self.n_kv_heads, f"must divide n_heads={self.n_heads}")
        if self.head_dim % 2:
            raise ConfigError("head_dim", self.head_dim, "must be even for RoPE")
        _check_float("norm_eps", self.norm_eps, 0.0, MAX_NORM_EPS, low_open=True)
        for key in ("rope_base", "rope_base_local"):     # base <= 1: frequencies would not fall
            _check_float(key, getattr(self, key), 1.0, MAX_ROPE_BASE, low_open=True)
        _check_float("rope_linear_scale", self.rope_linear_scale, 1.0, MAX_ROPE_LINEAR_SCALE)
        if self.sliding_window is not None:
            _check_int("sliding_window", self.sliding_window, 1, self.max_seq_len,
                       f"1..max_seq_len={self.max_seq_len}")
        for key in ("tied_classifier", "qkv_bias"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(key, getattr(self, key), "must be a bool")
        if not isinstance(self.name, str):
            raise ConfigError("name", self.name, "must be a string")

    def is_global(self, layer: int) -> bool:
        """Whether ``layer`` attends to the whole context (else: the sliding window)."""
        return self.sliding_window is None or (layer + 1) % self.global_every == 0

    @property
    def qk_norm(self) -> bool:
        """Per-head RMSNorm of q and k before RoPE (Gemma 3, Qwen 3)."""
        return self.arch in ("gemma3", "qwen3")

    @property
    def post_norms(self) -> bool:
        """RMSNorm of the attention and FFN outputs before the residual (Gemma 3)."""
        return self.arch == "gemma3"

    @property
    def gelu(self) -> bool:
        """GeGLU (tanh GELU) feed-forward; the others use SwiGLU."""
        return self.arch == "gemma3"

    @property
    def interleaved_rope_rows(self) -> bool:
        """llama.cpp stores this family's q/k rows permuted for interleaved RoPE (Llama)."""
        return self.arch == "llama"

    @property
    def embed_scale(self) -> float:
        """Gemma multiplies embeddings by sqrt(dim); Llama does not."""
        return math.sqrt(self.dim) if self.arch == "gemma3" else 1.0

    @property
    def attn_scale(self) -> float:
        """Softmax temperature of attention scores: 1/sqrt(head_dim)."""
        return 1.0 / math.sqrt(self.head_dim)

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim


@dataclass
class Model:
    """A loaded model: config, float32 weights (GGUF names), tokenizer, provenance.

    ``identity`` names the file version (path, size, mtime); caches derived from the
    model (dequantized tensors, calibration statistics) are keyed by it.
    """

    config: ModelConfig
    weights: dict[str, np.ndarray]
    tokenizer: "Tokenizer"
    source: Path
    identity: str
    metadata: dict[str, object] = field(default_factory=dict)


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder q/k rows from interleaved RoPE pairs to half-split (``rotate_half``) order.

    Inverse of llama.cpp's ``LlamaModel.permute`` (also what llama2.c's exporter undoes):
    within each head, row ``2*j + t`` of the file becomes row ``t*hd/2 + j``.
    """
    rows, k = w.shape
    head_dim = rows // n_heads
    return np.ascontiguousarray(
        w.reshape(n_heads, head_dim // 2, 2, k).swapaxes(1, 2).reshape(rows, k))


def _check_int(key: str, value: object, low: int, high: int, allowed: str | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ConfigError(key, value, f"must be an integer in {allowed or f'{low}..{high}'}")


def _check_float(key: str, value: object, low: float, high: float, *, low_open: bool = False) -> None:
    """``value`` a finite real in ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    above_low = real and (low < value if low_open else low <= value)
    if not (real and math.isfinite(value) and above_low and value <= high):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ConfigError(key, value, f"must be a finite number in {interval}")
