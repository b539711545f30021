"""Host time per token: what the CPU spends outside the matmuls (the Amdahl part).

``measure_host_time`` runs the real transformer and the real int8 seam over a backend
whose matmul is free, so what remains of a forward pass is the host's own work:
norms, RoPE, attention, quantize/dequantize, sampling's logits, glue. ``fused=True``
times the same tokens through ``host.llm.fused.FusedDecoder`` instead of
``Transformer.forward``, so both paths can be set side by side in one run.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from ..llm.fused import FusedDecoder
from ..llm.layers import linear_specs
from ..llm.linear import QuantizedLinears
from ..llm.profile import Profiler
from ..llm.quant import scheme
from ..llm.transformer import RUNTIME_KV_DTYPE, Transformer

__all__ = ["HostTime", "measure_host_time", "random_llama_weights"]


class _InstantBackend:
    """An ``IntBackend`` stand-in whose matmul costs nothing: what remains of a forward
    pass is the host's own work (norms, RoPE, attention, quantization, glue)."""

    name = "instant"

    def __init__(self, max_k: int):
        self.max_k = max_k
        self.config = None

    def load(self, name: str, w):
        return np.zeros((1, w.shape[0]), np.int32), w.shape[0]

    def matmul(self, x, handle):
        row, n = handle
        return row if x.shape[0] == 1 else np.zeros((x.shape[0], n), np.int32)

    def last_cycles(self):
        return None

    def compiled_epoch(self):
        """None: no compiled job path (the fused decoder then calls ``matmul``)."""
        return None

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class HostTime:
    """Host (non-matmul) time per decode token, and its per-op split (ms)."""

    min_ms: float
    median_ms: float
    per_op_ms: dict[str, float]
    context: int
    repeats: int


def random_llama_weights(config, seed: int = 0) -> dict:
    """float32 weights in GGUF names for a Llama-family ``ModelConfig`` (for timing only)."""
    rng = np.random.default_rng(seed)
    q, kv = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02))

    weights = {"token_embd.weight": w(config.vocab_size, config.dim),
               "output_norm.weight": np.ones(config.dim, np.float32)}
    for i in range(config.n_layers):
        b = f"blk.{i}."
        weights.update({b + "attn_norm.weight": np.ones(config.dim, np.float32),
                        b + "ffn_norm.weight": np.ones(config.dim, np.float32),
                        b + "attn_q.weight": w(q, config.dim), b + "attn_k.weight": w(kv, config.dim),
                        b + "attn_v.weight": w(kv, config.dim), b + "attn_output.weight": w(config.dim, q),
                        b + "ffn_gate.weight": w(config.hidden_dim, config.dim),
                        b + "ffn_up.weight": w(config.hidden_dim, config.dim),
                        b + "ffn_down.weight": w(config.dim, config.hidden_dim)})
    return weights


def measure_host_time(config, weights: dict, *, max_k: int = 4096, context: int = 64,
                      tokens: int = 32, repeats: int = 21, fused: bool = False,
                      greedy: bool = False) -> HostTime:
    """Host time per decode token at ``context`` tokens of context, int8 path.

    The model runs the real transformer and the real int8 seam (per-channel weights,
    per-token activation quantization, dequantization) over a backend whose matmul
    is free. Timed with ``perf_counter`` over ``tokens`` decode steps, ``repeats``
    times; the minimum is the least disturbed run, the median the typical one.

    ``fused``: decode with ``FusedDecoder`` (prefill stays ``Transformer.forward``);
    ``ValueError`` if it does not apply. Each token ends with float32 logits, or with
    ``greedy`` with the next token: ``np.argmax`` of the logits, or for the fused path
    the argmax taken from the int32 sums.
    """
    profiler = Profiler()
    linears = QuantizedLinears(linear_specs(config, weights), _InstantBackend(max_k),
                               scheme("per-channel"), profiler=profiler)
    transformer = Transformer(config, weights, linears, profiler, kv_dtype=RUNTIME_KV_DTYPE)
    decoder = FusedDecoder(transformer, profiler) if fused else None
    if decoder is None:
        step = (lambda token, cache: int(np.argmax(transformer.forward([token], cache)[0]))) \
            if greedy else (lambda token, cache: transformer.forward([token], cache))
    else:
        step = decoder.greedy if greedy else decoder.logits
    prompt = list(range(1, context - tokens + 1))
    runs = []
    for _ in range(repeats):
        cache = transformer.new_cache(context + 1)
        transformer.forward(prompt, cache)
        profiler.reset()
        profiler.phase = "decode"
        start = time.perf_counter()
        for index in range(tokens):
            step(index % config.vocab_size, cache)
        wall = time.perf_counter() - start
        report = profiler.report("decode", tokens, wall)
        runs.append((wall / tokens * 1e3, report))
    runs.sort(key=lambda run: run[0])
    best = runs[0][1]
    per_op = {name: seconds / tokens * 1e3 for name, seconds in best.seconds.items()
              if not name.startswith("matmul ") and seconds > 0}
    return HostTime(runs[0][0], statistics.median(ms for ms, _ in runs), per_op, context, repeats)
