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

if TYPE_CHECKING:
    from host.llm.tokenizer import Tokenizer

__all__ = ["ARCHITECTURES", "ModelConfig", "Model", "ModelFileError", "unpermute_rope_rows"]

ARCHITECTURES = ("gemma3", "llama")


class ModelFileError(ValueError):
    """A model or tokenizer file cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of a decoder-only transformer (Gemma 3 or Llama family).

    ``global_every``: every ``global_every``-th layer (1-based) attends to the whole
    context with ``rope_base``; the others see ``sliding_window`` tokens and use
    ``rope_base_local``. ``sliding_window=None`` makes every layer global.
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
    name: str = ""

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch={self.arch!r} must be one of {ARCHITECTURES}")
        for key in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "head_dim",
                    "vocab_size", "max_seq_len", "global_every"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key}={getattr(self, key)} must be positive")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ValueError(f"sliding_window={self.sliding_window} must be positive or None")

    def is_global(self, layer: int) -> bool:
        """Whether ``layer`` attends to the whole context (else: the sliding window)."""
        return self.sliding_window is None or (layer + 1) % self.global_every == 0

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
