"""The decoder-only transformer (Gemma 3, Llama, Qwen 2, Qwen 3), numpy on the CPU.

The transformer knows nothing about hardware or quantization: every linear layer
(``host.llm.layers``), the classifier included, is one call ``linear(name, x)`` to the
seam it is given (``host.llm.linear``), which returns float32 ``[M, N]`` for float32
``[M, K]``. Norms, RoPE, attention, activations and the KV cache live here, all in
float32.

Gemma 3 block: pre-norm, q/k/v, per-head RMSNorm of q and k, RoPE, attention
(sliding window on 5 of every 6 layers, two RoPE bases), output projection,
post-norm, residual; pre-norm, GeGLU (tanh GELU), post-norm, residual. Embeddings
are scaled by sqrt(dim). Llama: pre-norm attention and SwiGLU, no q/k/post norms; Llama 3
divides its RoPE frequencies by ``rope_freqs.weight``. Qwen 2: Llama with q/k/v biases.
Qwen 3: Llama with Gemma's per-head q/k norms. Biases and norms are added on the host,
after the backend's matmul.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .bf16 import from_bf16, kv_storage, to_bf16
from .layers import LinearLayers
from .model.base import ModelConfig
from .profile import Profiler
from .tanh import tanh32

__all__ = ["KVCache", "DEFAULT_KV_DTYPE", "RUNTIME_KV_DTYPE", "Transformer", "rms_norm", "apply_rope",
           "check_context_length"]

# The host KV cache's element type (host.llm.bf16). A Transformer's default is float32,
# the exact reference (the checks against transformers, calibration, the quality
# table's float row); the runtime (generate.Runtime) and the A53 counts use bfloat16:
# half the bytes attention reads, the format the models were trained in
# (``host.llm.quality --kv-cache`` measures the change).
DEFAULT_KV_DTYPE = "float32"
RUNTIME_KV_DTYPE = "bfloat16"

_GELU_C = 0.7978845608028654   # sqrt(2/pi), a Python float so float32 stays float32


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last axis, in float32."""
    if x.ndim == 2 and x.shape[0] == 1:      # one token: the scale is a scalar
        row = x[0]
        inverse = np.float32(1.0) / np.sqrt(np.float32(np.dot(row, row)) / np.float32(row.size)
                                            + np.float32(eps))
        return x * (weight * inverse)
    mean_square = np.einsum("...i,...i->...", x, x)[..., None] * (1.0 / x.shape[-1])
    return x * (weight / np.sqrt(mean_square + eps))


def check_context_length(config: ModelConfig, length: int) -> None:
    """ValueError when ``length`` positions exceed the model's context (every KV cache's rule)."""
    if length > config.max_seq_len:
        raise ValueError(f"sequence length {length} exceeds the model's context {config.max_seq_len}")


class KVCache:
    """Keys and values of every layer for positions ``0..length-1``.

    Per layer ``[n_kv_heads, capacity, head_dim]`` of ``dtype`` (``host.llm.bf16``:
    "float32", or "bfloat16" stored as uint16 bits); keys are stored after RoPE.
    Capacity doubles on demand, so a session needs no length limit up front.
    """

    def __init__(self, config: ModelConfig, capacity: int = 256, dtype: str = DEFAULT_KV_DTYPE):
        self.config = config
        self.storage = kv_storage(dtype)
        self.length = 0
        self.capacity = 0
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self._grow(capacity)

    def _grow(self, needed: int) -> None:
        capacity = max(needed, 2 * self.capacity, 16)
        shape = (self.config.n_kv_heads, capacity, self.config.head_dim)
        for store in (self.keys, self.values):
            for layer in range(self.config.n_layers):
                fresh = np.zeros(shape, self.storage)
                if layer < len(store):
                    fresh[:, : self.capacity] = store[layer][:, : self.capacity]
                    store[layer] = fresh
                else:
                    store.append(fresh)
        self.capacity = capacity

    def reserve(self, length: int) -> None:
        """Make room for ``length`` positions; ValueError beyond the model's context."""
        check_context_length(self.config, length)
        if length > self.capacity:
            self._grow(length)

    def reset(self) -> None:
        self.length = 0


class _Rope:
    """cos/sin tables for one RoPE base (and linear position scale), grown on demand.

    Stored over the whole head: ``cos`` repeated for both halves and ``sin`` with the
    first half negated, so a rotation is ``x * cos + swap_halves(x) * sin``.
    """

    def __init__(self, base: float, head_dim: int, position_scale: float,
                 divisors: np.ndarray | None = None):
        exponents = np.arange(0, head_dim, 2, dtype=np.float64) / head_dim
        self.inv_freq = 1.0 / (base ** exponents) / position_scale
        if divisors is not None:        # Llama 3 scaling: one divisor per frequency
            self.inv_freq = self.inv_freq / np.asarray(divisors, np.float64)
        self.cos = self.sin = np.zeros((0, head_dim), np.float32)

    def tables(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``cos, sin`` of positions ``start..stop-1``, each ``[M, head_dim]`` float32."""
        if stop > len(self.cos):
            size = max(stop, 2 * len(self.cos), 256)
            angles = np.arange(size, dtype=np.float64)[:, None] * self.inv_freq[None, :]
            cos, sin = np.cos(angles), np.sin(angles)
            self.cos = np.concatenate([cos, cos], axis=1).astype(np.float32)
            self.sin = np.concatenate([-sin, sin], axis=1).astype(np.float32)
        return self.cos[start:stop], self.sin[start:stop]


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate ``x [M, heads, hd]`` by position (half-split pairs ``(j, j + hd/2)``):
    ``(x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)``, with ``_Rope``'s tables."""
    half = x.shape[-1] // 2
    swapped = np.concatenate([x[..., half:], x[..., :half]], axis=-1)
    rotated = x * cos[:, None, :]
    rotated += swapped * sin[:, None, :]
    return rotated


class Transformer:
    """One forward pass over new tokens, appending to a ``KVCache``.

    ``weights`` supplies the embedding table and norm weights (float32, GGUF names);
    ``linear`` computes every projection. ``forward`` returns float32 logits for the
    last position (``all_logits=False``) or for every new position.

    The host-side work is five methods (``HOST_OPS``: embed, norm, rope, attend,
    activation) and everything else is a ``linear`` call. Given a ``profiler``, the
    constructor has it time those five methods (``Profiler.instrument``): profiling
    sits at that one seam, and the blocks below read like the paper.
    """

    # Profile section -> the method doing that work.
    HOST_OPS = {"embedding": "embed", "norms": "norm", "rope": "rope", "attention": "attend",
                "ffn activation": "activation"}

    def __init__(self, config: ModelConfig, weights: dict[str, np.ndarray],
                 linear: LinearLayers, profiler: Profiler | None = None, attention=None,
                 kv_dtype: str = DEFAULT_KV_DTYPE):
        self.config = config
        self.linear = linear
        # None: attention on the host over a KVCache of ``kv_dtype``; else an object with
        # ``new_cache(capacity)`` and ``attend(...)`` (``host.llm.attention``).
        self.attention = attention
        kv_storage(kv_dtype)                      # a bad name fails here, in one line
        self.kv_dtype = kv_dtype
        self.embedding = weights["token_embd.weight"]
        self.norms = {name: np.asarray(w, dtype=np.float32) for name, w in weights.items()
                      if name.endswith("norm.weight")}
        if config.qk_norm:            # [H + KV, hd]: q_norm for the q heads, k_norm for k
            self._qk_norm = [np.concatenate([
                np.broadcast_to(self.norms[f"blk.{i}.attn_q_norm.weight"], (config.n_heads, config.head_dim)),
                np.broadcast_to(self.norms[f"blk.{i}.attn_k_norm.weight"], (config.n_kv_heads, config.head_dim))])
                for i in range(config.n_layers)]
        self._qkv_bias = [np.concatenate([np.asarray(weights[f"blk.{i}.attn_{p}.bias"], np.float32)
                                          for p in "qkv"]) for i in range(config.n_layers)] \
            if config.qkv_bias else None
        factors = weights.get("rope_freqs.weight")
        self._rope_global = _Rope(config.rope_base, config.head_dim, config.rope_linear_scale, factors)
        self._rope_local = _Rope(config.rope_base_local, config.head_dim, 1.0)
        if profiler is not None:
            profiler.instrument(self, self.HOST_OPS)

    def new_cache(self, capacity: int = 256) -> KVCache:
        """An empty KV cache for this model (the attention's own when it has one)."""
        if self.attention is not None:
            return self.attention.new_cache(capacity)
        return KVCache(self.config, capacity, self.kv_dtype)

    def forward(self, tokens: Sequence[int], cache: KVCache, all_logits: bool = False) -> np.ndarray:
        """Run ``tokens`` at positions ``cache.length...``; logits ``[1 or M, vocab]``."""
        cfg = self.config
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if tokens.size == 0:
            raise ValueError("forward needs at least one token")
        if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
            raise ValueError(f"token ids must be in 0..{cfg.vocab_size - 1}, got "
                             f"{tokens.min()}..{tokens.max()}")
        start = cache.length
        cache.reserve(start + tokens.size)
        x = self.embed(tokens)                                                # [M, D]
        for layer in range(cfg.n_layers):
            x = self._attention_block(layer, x, start, cache)
            x = self._ffn_block(layer, x)
        cache.length = start + tokens.size
        if not all_logits:
            x = x[-1:]
        x = self.norm(x, self.norms["output_norm.weight"])
        return self.linear("output", x)                                       # [M, vocab]

    def _attention_block(self, layer: int, x: np.ndarray, start: int, cache: KVCache) -> np.ndarray:
        cfg, b = self.config, f"blk.{layer}."
        m, hd = x.shape[0], cfg.head_dim
        h = self.norm(x, self.norms[b + "attn_norm.weight"])                  # [M, D]
        qkv = self.linear(b + "qkv", h)                                       # [M, q_dim + 2 kv_dim]
        if self._qkv_bias is not None:
            qkv += self._qkv_bias[layer]
        qk = qkv[:, : cfg.q_dim + cfg.kv_dim].reshape(m, cfg.n_heads + cfg.n_kv_heads, hd)
        v = qkv[:, cfg.q_dim + cfg.kv_dim:].reshape(m, cfg.n_kv_heads, hd)     # [M, KV, hd]
        if cfg.qk_norm:               # per-head RMSNorm: q heads and k heads in one call
            qk = self.norm(qk, self._qk_norm[layer])                          # [M, H + KV, hd]
        qk = self.rope(qk, layer, start)                                      # q and k together
        q, k = qk[:, : cfg.n_heads], qk[:, cfg.n_heads:]
        attended = self.attend(layer, q, k, v, start, cache)                  # [M, H*hd]
        out = self.linear(b + "attn_output", attended)                        # [M, D]
        if cfg.post_norms:
            out = self.norm(out, self.norms[b + "post_attention_norm.weight"])
        return x + out

    def _ffn_block(self, layer: int, x: np.ndarray) -> np.ndarray:
        cfg, b = self.config, f"blk.{layer}."
        h = self.norm(x, self.norms[b + "ffn_norm.weight"])                   # [M, D]
        hidden = self.activation(self.linear(b + "ffn_up_gate", h))           # [M, 2F] -> [M, F]
        out = self.linear(b + "ffn_down", hidden)                             # [M, D]
        if cfg.post_norms:
            out = self.norm(out, self.norms[b + "post_ffw_norm.weight"])
        return x + out

    # -- the host ops (HOST_OPS) --------------------------------------------------------
    def embed(self, tokens: np.ndarray) -> np.ndarray:
        """Embedding rows of ``tokens``, float32 ``[M, D]`` (scaled by sqrt(dim) for Gemma)."""
        x = np.asarray(self.embedding[tokens], dtype=np.float32)
        return x * np.float32(self.config.embed_scale) if self.config.embed_scale != 1.0 else x

    def norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """``rms_norm`` with the model's epsilon."""
        return rms_norm(x, weight, self.config.norm_eps)

    def rope(self, qk: np.ndarray, layer: int, start: int) -> np.ndarray:
        """RoPE of ``qk [M, heads, hd]`` at positions ``start...``, with the layer's base."""
        rope = self._rope_global if self.config.is_global(layer) else self._rope_local
        cos, sin = rope.tables(start, start + qk.shape[0])
        return apply_rope(qk, cos, sin)

    def attend(self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int,
               cache: KVCache) -> np.ndarray:
        """Causal softmax attention of new queries over the cache (the sliding window on
        local layers); appends ``k`` and ``v`` to the cache. ``[M, H*hd]``."""
        if self.attention is not None:
            return self.attention.attend(layer, q, k, v, start, cache)
        cfg = self.config
        window = None if cfg.is_global(layer) else cfg.sliding_window
        m, hd = q.shape[0], cfg.head_dim
        stop = start + m
        keys, values = cache.keys[layer], cache.values[layer]
        first = 0 if window is None else max(0, start - window + 1)           # oldest key any query sees
        if keys.dtype == np.uint16:       # bfloat16: stored rounded, attended over widened
            to_bf16(k.transpose(1, 0, 2), out=keys[:, start:stop])            # [KV, M, hd]
            to_bf16(v.transpose(1, 0, 2), out=values[:, start:stop])
            keys, values = from_bf16(keys[:, first:stop]), from_bf16(values[:, first:stop])
        else:
            keys[:, start:stop] = k.transpose(1, 0, 2)                        # [KV, M, hd]
            values[:, start:stop] = v.transpose(1, 0, 2)
            keys, values = keys[:, first:stop], values[:, first:stop]         # visible: [KV, T, hd]
        kv, group = cfg.n_kv_heads, cfg.n_heads // cfg.n_kv_heads
        if m == 1:     # decode: every cached key in [first, stop) is visible, no mask
            qg = (q[0] * np.float32(cfg.attn_scale)).reshape(kv, group, hd)     # [KV, group, hd]
            scores = qg @ keys.transpose(0, 2, 1)                             # [KV, group, T]
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            return (scores @ values).reshape(1, cfg.q_dim)                    # [1, H*hd]
        # [M, H, hd] -> [KV, group*M, hd]: heads sharing a KV head form one batch
        qg = (q * np.float32(cfg.attn_scale)).reshape(m, kv, group, hd).transpose(1, 2, 0, 3)
        qg = qg.reshape(kv, group * m, hd)
        scores = qg @ keys.transpose(0, 2, 1)                                 # [KV, group*M, T]
        # several queries: causal mask, and the window on sliding layers
        query_pos = np.arange(start, stop)[:, None]                           # [M, 1]
        key_pos = np.arange(first, stop)[None, :]                             # [1, T]
        hidden = key_pos > query_pos
        if window is not None:
            hidden |= query_pos - key_pos >= window
        scores = scores.reshape(kv, group, m, -1)
        scores[:, :, hidden] = -np.inf
        scores = scores.reshape(kv, group * m, -1)
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        out = scores @ values                                                 # [KV, group*M, hd]
        return out.reshape(kv, group, m, hd).transpose(2, 0, 1, 3).reshape(m, cfg.q_dim)

    def activation(self, gate_up: np.ndarray) -> np.ndarray:
        """GeGLU (Gemma: tanh GELU) or SwiGLU (Llama) of ``[M, 2F]``: ``[M, F]``."""
        f = self.config.hidden_dim
        gate, up = gate_up[:, :f], gate_up[:, f:]
        # In place on one temporary: these run on [M, F] every layer.
        if self.config.gelu:               # GELU, tanh approximation: g/2 (1 + tanh(c (g + a g^3)))
            hidden = gate * gate
            hidden *= _GELU_C * 0.044715
            hidden += _GELU_C
            hidden *= gate
        else:                              # SiLU, written with tanh so it never overflows
            hidden = gate * 0.5
        tanh32(hidden, out=hidden)         # the host's one tanh (host.llm.tanh), as the fused kernels'
        hidden *= 0.5
        hidden += 0.5
        hidden *= gate
        hidden *= up
        return hidden
