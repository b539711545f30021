"""One decode token (M=1) with exactly one compiled call between two accelerator jobs.

On the KV260 the host is a 1.33 GHz Cortex-A53 and each Python -> compiled transition
costs microseconds, so ``Transformer.forward``'s ~10 numpy and numba calls per linear
layer add up. ``FusedDecoder`` runs the same arithmetic as a chain of numba kernels
(``host.llm._numba_fused``), one per gap between the backend's jobs. For a layer:

    [residual + attn RMSNorm + int8 quantize]           (the previous layer's last call)
      -> qkv job ->
    [dequantize (+ bias) + q/k head norms + RoPE + KV-cache append + attention over the
     cache (sliding window on local layers) + quantize]                 ``attention``
      -> attn_out job ->
    [dequantize + post-norm + residual + ffn norm + quantize]    ``residual_norm_quantize``
      -> ffn_up_gate job ->
    [dequantize + GeGLU (tanh GELU) or SwiGLU + quantize]               ``gated_quantize``
      -> ffn_down job ->
    [dequantize + post-norm + residual + the next layer's attn norm (or the output
     norm) + quantize]                                           ``residual_norm_quantize``

The token starts with ``embed_norm_quantize`` and ends after the classifier job with
``argmax_logit`` (greedy: the first maximum of ``acc * (w_scale * x_scale)`` from the
int32 sums and the scales, no vocabulary-sized float array) or ``dequantize_logits``
(sampling: float32 logits in one call).

**Per token, with L layers: 4 L + 1 accelerator jobs and 4 L + 2 compiled calls**
(jobs + 1: one before the first job, one in each gap, one after the last), and no
Python-level numpy call except when the KV cache, a RoPE table or the score buffer
grows (counted when it happens). Gemma 3 270M: 73 jobs, 74 compiled calls.
``FusedDecoder.counts`` holds the last token's figures.

**Attention on the accelerator** (``Runtime(attention="accelerator")``,
``host.llm.attention``): the attention gap becomes, per KV head, two more jobs and two
more gaps, each still one compiled call::

    [dequantize + norms + RoPE + quantize q rows, k, v]   ``attention_prepare``
      (the new key's row and the staged value go to the DeviceKVCache: driver writes)
      -> q.K^T job -> [softmax + p * sv + quantize]        ``attention_softmax``
      -> p.V job -> [dequantize (+ the staged values' exact terms), quantize after
         the last KV head]                                 ``attention_finish``
      -> attn_out job

so jobs = (4 + 2 KV) L + 1 and calls = jobs + 1 (Gemma 3 270M: 109 jobs, 110 calls;
V^T beyond ``max_k`` positions adds a job per extra piece).

Where jobs are submitted from compiled code (below) the whole offloaded token is one
call too, ``offloaded_token_jobs`` (``_attention_bound``): the kernel writes each new
key row and value column itself into the packed layout of the matrices' host copy and
of the weight memory's ``direct_view`` (the KV260: a write-combining mapping, so no
sync; ``DriverBackend.mutable_places``) and submits the q.K^T job (planned for each
tile count of visible keys when the cache is bound; the kernel picks the token's) and
the p.V job of each KV head. It applies while every V^T is one piece (at most
``max_k`` slots); else ``offload_unavailable`` says why and the Python path runs.

**Jobs submitted by the kernels** (the KV260, and the Nexys Video over UDP: the
backend's ``compiled_job`` gives a ``host.accel.driver.CompiledJob``, firmware/replay.c's
``systole_job`` or firmware/udp_bulk.c's ``systole_udp_job`` with the driver's plan): each gap's kernel also submits the job after it (``*_job`` in
``host.llm._numba_fused``), so a token is still jobs + 1 compiled calls but with no
ctypes call and no driver Python per job; the driver's register sequence is unchanged
(the plan ``matmul`` replays). A status other than done goes to the backend's
``compiled_job_failed`` (the driver's soft reset and one-line error); the jobs' busy
cycles are summed by the kernels and given to the backend once per token
(``compiled_jobs_ran``). The jobs are bound to this decoder's arrays once and rebound
when the backend's ``compiled_epoch()`` changes (its scratch buffers moved); with
attention offloaded, or a backend without the path, the decoder calls ``matmul``.
With a profiler, each call's time (the gap and the job it submits: one call holds
both) goes to that job's matmul section, and "host step" records the calls with none.

**The whole token in one call** (``one_call``, on by default where jobs are submitted):
``token_jobs`` runs the gap kernels and their jobs above, in the same order, inside one
compiled call, and the greedy argmax after the classifier job: per token 1 compiled call
(greedy), 2 with ``dequantize_logits`` (sampling). Its per-layer inputs are stacked
``[L, ...]`` once, the jobs' words ``[4 L + 1, 15]`` bound per epoch as above, and the
KV cache's per-layer arrays passed by address (remade when the cache grows). A failing
job ends the call with its status and index and goes to ``compiled_job_failed`` as
above; no job after it was submitted. With a profiler the call's whole time, jobs
included, is one "host step" record; the matmul sections get their calls, MACs and busy
cycles but no seconds. ``one_call = False`` keeps one call per gap.

It applies (``FusedDecoder.build``, else None and the caller keeps
``Transformer.forward``) when the seam is ``QuantizedLinears`` with dynamic per-token
activations and every layer, int8 or int4, is one activation group in one K piece.
SmoothQuant needs nothing here: ``build_linears`` folds its factors into the weights,
the norm weights and the Qwen 2 v bias that the ``Transformer`` was built with, and
this decoder reads them from it. The KV cache, the RoPE tables, the q/k norms and the
biases are the ``Transformer``'s own, so prefill (``Transformer.forward``) and fused
decode share one ``KVCache``, bfloat16 by default (``host.llm.bf16``; the kernels take a
float32 one too, with one call per gap). Results equal the numpy path's up to float32 rounding of
sums (tests compare tokens and logits).
"""

from __future__ import annotations

from functools import lru_cache
from time import perf_counter

import numpy as np

from .attention import STAGED, DeviceKVCache, OffloadedAttention
from .linear import QuantizedLinears
from .profile import Profiler
from .quant import QMAX
from .transformer import KVCache, Transformer

__all__ = ["FusedDecoder", "fused_unavailable"]

_TINY = np.float32(np.finfo(np.float32).tiny)
_QMAX_INVERSE = np.float32(1.0 / QMAX)
_EMPTY_1D = np.zeros(0, np.float32)
_EMPTY_2D = np.zeros((0, 0), np.float32)
_KINDS = ("qkv", "attn_out", "ffn_up_gate", "ffn_down")
_NO_SLOTS = np.zeros(0, np.int64)


@lru_cache(maxsize=1)
def _kernels():
    """The ``host.llm._numba_fused`` module, or None when numba is missing."""
    try:
        from . import _numba_fused
    except ImportError:
        return None
    return _numba_fused


def fused_unavailable(transformer: Transformer) -> str | None:
    """Why ``FusedDecoder`` cannot run ``transformer`` (None: it can)."""
    linears = transformer.linear
    if _kernels() is None:
        return "numba is not installed"
    if not isinstance(linears, QuantizedLinears):
        return f"the seam is {type(linears).__name__}, not QuantizedLinears"
    if linears.scheme.activations != "token":
        return f"scheme {linears.scheme.name!r} has static activation scales"
    for name, layer in linears.layers.items():
        if len(layer.pieces) != 1 or len(layer.pieces[0]) != 1:
            groups = len(layer.pieces)
            return (f"layer {name} is {groups} activation group(s) in "
                    f"{sum(len(group) for group in layer.pieces)} K piece(s)")
    attention = getattr(transformer, "attention", None)
    if attention is not None and not isinstance(attention, OffloadedAttention):
        return f"the transformer's attention is {type(attention).__name__}"
    if not (transformer.embedding.dtype == np.float32 and transformer.embedding.ndim == 2):
        return f"the embedding table is {transformer.embedding.dtype}, not float32"
    return None


def _vector(array) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


class FusedDecoder:
    """One decode token of ``transformer`` per call, the compiled calls fused (module
    docstring). Build with ``FusedDecoder.build``; ``greedy`` and ``logits`` run a token
    at ``cache.length`` and append it to ``cache``, as ``Transformer.forward`` does."""

    def __init__(self, transformer: Transformer, profiler: Profiler | None = None):
        problem = fused_unavailable(transformer)
        if problem is not None:
            raise ValueError(f"the fused decoder does not apply: {problem}")
        cfg = self.config = transformer.config
        self.transformer = transformer
        self.profiler = profiler
        self.kernels = _kernels()
        linears: QuantizedLinears = transformer.linear
        self.backend = linears.backend
        norms = transformer.norms
        self._eps = np.float32(cfg.norm_eps)
        self._embed_scale = np.float32(cfg.embed_scale)
        self._scaled = cfg.embed_scale != 1.0
        self._attn_scale = np.float32(cfg.attn_scale)
        self._inv_head_dim = np.float32(1.0 / cfg.head_dim)

        def job(name):
            layer = linears.layers[name]
            return layer.pieces[0][0][2], _vector(layer.w_scale[0])

        self._layers = []
        for i in range(cfg.n_layers):
            b = f"blk.{i}."
            next_norm = norms[f"blk.{i + 1}.attn_norm.weight" if i + 1 < cfg.n_layers
                              else "output_norm.weight"]
            self._layers.append((
                *job(b + "qkv"), *job(b + "attn_output"), *job(b + "ffn_up_gate"), *job(b + "ffn_down"),
                _vector(transformer._qkv_bias[i]) if transformer._qkv_bias is not None else _EMPTY_1D,
                _vector(transformer._qk_norm[i]) if cfg.qk_norm else _EMPTY_2D,
                _vector(norms[b + "post_attention_norm.weight"]) if cfg.post_norms else _EMPTY_1D,
                _vector(norms[b + "ffn_norm.weight"]),
                _vector(norms[b + "post_ffw_norm.weight"]) if cfg.post_norms else _EMPTY_1D,
                _vector(next_norm), cfg.is_global(i)))
        self._first_norm = _vector(norms["blk.0.attn_norm.weight"])
        self._classifier = job("output")
        # an int4 classifier's shortlist (QuantScheme.shortlist): its int8 rows on the host
        self._shortlist = linears.layers["output"].shortlist
        self._classifier_block = self.kernels.argmax_bounds(self._classifier[1])
        self.argmax_blocks = np.zeros(1, np.int64)     # blocks whose logits argmax_logit computed
        n_qkv = cfg.q_dim + 2 * cfg.kv_dim
        self._macs = {"qkv": cfg.n_layers * n_qkv * cfg.dim,
                      "attn_out": cfg.n_layers * cfg.dim * cfg.q_dim,
                      "ffn_up_gate": cfg.n_layers * 2 * cfg.hidden_dim * cfg.dim,
                      "ffn_down": cfg.n_layers * cfg.dim * cfg.hidden_dim,
                      "classifier": cfg.vocab_size * cfg.dim}
        # Working state: the residual stream, float scratch, the jobs' int8 inputs
        # ([1, K] each) and one activation scale, written by each quantize after the
        # dequantize before it has read it.
        self._x = np.zeros(cfg.dim, np.float32)
        self._h = np.zeros(cfg.dim, np.float32)
        self._out = np.zeros(cfg.dim, np.float32)
        self._qkv = np.zeros(n_qkv, np.float32)
        self._attended = np.zeros(cfg.q_dim, np.float32)
        self._gate_up = np.zeros(2 * cfg.hidden_dim, np.float32)
        self._scores = np.zeros(0, np.float32)
        self._q_dim = np.zeros((1, cfg.dim), np.int8)
        self._q_heads = np.zeros((1, cfg.q_dim), np.int8)
        self._q_hidden = np.zeros((1, cfg.hidden_dim), np.int8)
        self._scale = np.ones(1, np.float32)
        self._numpy_extra = 0
        self._jobs = 4 * cfg.n_layers + 1
        self._attention_cycles = 0
        self.counts = {"compiled calls": 0, "accelerator jobs": 0, "numpy calls": 0}
        # Attention on the accelerator: the query rows, the new keys and values (int8 per
        # row, keys first) and their scales; p * sv per slot count.
        self.offload = transformer.attention is not None
        group = cfg.n_heads // cfg.n_kv_heads
        self._q_rows = np.zeros((cfg.n_heads, cfg.head_dim), np.int8)
        self._q_row_scale = np.zeros(cfg.n_heads, np.float32)
        self._kv_rows = np.zeros((2 * cfg.n_kv_heads, cfg.head_dim), np.int8)
        self._kv_scale = np.zeros(2 * cfg.n_kv_heads, np.float32)
        self._group_rows = [self._q_rows[kv * group:(kv + 1) * group] for kv in range(cfg.n_kv_heads)]
        self._group_scales = [self._q_row_scale[kv * group:(kv + 1) * group]
                              for kv in range(cfg.n_kv_heads)]
        self._new_kv = [(self._kv_rows[kv:kv + 1], self._kv_scale[kv:kv + 1],
                         self._kv_rows[cfg.n_kv_heads + kv:cfg.n_kv_heads + kv + 1],
                         self._kv_scale[cfg.n_kv_heads + kv:cfg.n_kv_heads + kv + 1])
                        for kv in range(cfg.n_kv_heads)]
        self._weighted: dict[int, np.ndarray] = {}
        self._a_scale = np.zeros(group, np.float32)
        self._a_staged = np.zeros((group, STAGED), np.int8)
        self._no_staged = np.zeros((group, 0), np.int8)           # (the one call stages nothing)
        self._no_staged_values = np.zeros((0, cfg.head_dim), np.int8)
        self._attention_counter = np.zeros(1, np.uint64)
        # Jobs submitted by the kernels (module doc): bound on the first token; each
        # kind's busy cycles summed in one slot of ``_cycles`` (qkv, attn_out,
        # ffn_up_gate, ffn_down, classifier).
        self.submits_jobs = False                   # the last token's jobs were submitted so
        self._no_submission = False
        self._bound = None
        self._cycles = np.zeros(5, np.uint64)
        self._cycle_slots = [self._cycles[i:i + 1] for i in range(5)]
        # The whole token in one call (module doc) when jobs are submitted; False keeps
        # one call per gap. ``one_call_ran``: the last token ran so.
        self.one_call = True
        self.one_call_ran = False
        self._argmax = None
        self._stacked = None                        # the per-layer inputs, [L, ...]
        self._kv = None                             # ``_kv_addresses`` of the last cache
        # Offloaded attention in the one call (``_attention_bound``): its state, or why
        # it does not apply (then the Python path runs it, one call per gap).
        self._attention = None
        self.offload_unavailable: str | None = None

    @classmethod
    def build(cls, transformer: Transformer, profiler: Profiler | None = None) -> "FusedDecoder | None":
        """A decoder for ``transformer``, or None when it does not apply (see
        ``fused_unavailable``)."""
        if fused_unavailable(transformer) is not None:
            return None
        return cls(transformer, profiler)

    def greedy(self, token: int, cache: KVCache) -> tuple[int, float]:
        """Run ``token``; ``(argmax, its logit)`` of the next-token logits, the first
        maximum as ``np.argmax`` (the first NaN if there is one)."""
        shortlist = self._shortlist
        acc, numpy_calls, calls, start = self._layers_step(token, cache, greedy=shortlist is None)
        t0 = perf_counter()
        if shortlist is not None:              # the int4 sums' top entries, then int8 rows
            best, value = self.kernels.shortlist_argmax(acc, self._classifier[1], self._scale,
                                                        self._classifier_block, self.argmax_blocks,
                                                        shortlist.size, shortlist.q, shortlist.w_scale,
                                                        self._q_dim)
            calls += 1
        elif self._argmax is None:
            best, value = self.kernels.argmax_logit(acc, self._classifier[1], self._scale,
                                                    self._classifier_block, self.argmax_blocks)
            calls += 1
        else:                                  # the token's one call took it
            best, value = self._argmax
        self._finish(numpy_calls, calls, start, "sampling", perf_counter() - t0)
        return int(best), float(value)

    def logits(self, token: int, cache: KVCache) -> np.ndarray:
        """Run ``token``; float32 logits ``[1, vocab]`` (a new array) for sampling."""
        acc, numpy_calls, calls, start = self._layers_step(token, cache, greedy=False)
        t0 = perf_counter()
        shortlist = self._shortlist
        if shortlist is None:
            logits = self.kernels.dequantize_logits(acc, self._classifier[1], self._scale)
        else:
            logits = self.kernels.shortlist_logits(acc, self._classifier[1], self._scale, shortlist.size,
                                                   shortlist.q, shortlist.w_scale, self._q_dim)
        self._finish(numpy_calls, calls + 1, start, "host step", perf_counter() - t0)
        return logits

    def _prepare(self, position: int, cache: KVCache) -> int:
        """Grow the cache, the RoPE tables and the score buffer for ``position``;
        the number of numpy calls that took (0 almost always)."""
        numpy_calls = 0
        if position + 1 > cache.capacity:
            numpy_calls += 1
        cache.reserve(position + 1)
        transformer = self.transformer
        for rope in (transformer._rope_global, transformer._rope_local):
            if position >= len(rope.cos):
                rope.tables(position, position + 1)
                numpy_calls += 1
        group = self.config.n_heads // self.config.n_kv_heads
        if len(self._scores) < group * cache.capacity:         # [group, T] per KV head
            self._scores = np.zeros(group * cache.capacity, np.float32)
            numpy_calls += 1
        return numpy_calls

    def _layers_step(self, token: int, cache: KVCache, greedy: bool):
        """Every layer and the classifier job for ``token``: the classifier's int32
        sums, the numpy and compiled calls made, and the start time; ``_argmax`` is the
        greedy ``(argmax, logit)`` when the one call took it (``greedy``), else None."""
        start = perf_counter()
        cfg, kernels, transformer = self.config, self.kernels, self.transformer
        if not 0 <= token < cfg.vocab_size:
            raise ValueError(f"token id {token} must be in 0..{cfg.vocab_size - 1}")
        position = cache.length
        if self.offload != isinstance(cache, DeviceKVCache):
            wanted = "DeviceKVCache" if self.offload else "KVCache"
            raise TypeError(f"this decoder's attention needs a {wanted}, got {type(cache).__name__}")
        self._cache = cache
        numpy_calls = self._prepare(position, cache)
        bound = None if self._no_submission else self._submission()
        self._argmax = None
        if self.offload:               # the one call, or the Python path with a call per gap
            attention = None
            if bound is not None and self.one_call and self.offload_unavailable is None:
                attention = self._attention_bound(cache, bound[0])
                if attention is not None and attention["epoch"] != bound[0]:   # (binding moved the scratch)
                    bound = self._submission()
            self.submits_jobs = self.one_call_ran = attention is not None
            if attention is not None:
                return self._offloaded_token_step(token, position, cache, numpy_calls, bound, attention, start,
                                                  greedy)
            bound = None
        self.submits_jobs = bound is not None
        # token_jobs takes a bfloat16 cache (the default); a float32 one keeps a call per gap
        self.one_call_ran = bound is not None and self.one_call and cache.keys[0].dtype == np.uint16
        if self.one_call_ran:
            return self._token_step(token, position, cache, numpy_calls, bound, start, greedy)
        if bound is not None:
            return self._submitted_step(token, position, cache, numpy_calls, bound, start)
        first_local, (cos_global, sin_global), (cos_local, sin_local) = self._rope(position)
        eps, qmax_inverse, tiny = self._eps, _QMAX_INVERSE, _TINY
        x, h, out, scale = self._x, self._h, self._out, self._scale
        qkv, scores, attended, gate_up = self._qkv, self._scores, self._attended, self._gate_up
        q_dim, q_heads, q_hidden = self._q_dim, self._q_heads, self._q_hidden
        attention, residual = kernels.attention, kernels.residual_norm_quantize
        gated = kernels.gated_quantize
        matmul, last_cycles = self.backend.matmul, self.backend.last_cycles
        has_bias, has_qk_norm, has_post, gelu = (
            transformer._qkv_bias is not None, cfg.qk_norm, cfg.post_norms, cfg.gelu)
        n_heads, attn_scale, inv_head_dim = cfg.n_heads, self._attn_scale, self._inv_head_dim
        clock = perf_counter
        job_seconds = [0.0, 0.0, 0.0, 0.0, 0.0]
        cycles = [0, 0, 0, 0, 0]
        host = 0.0
        offload, extra_jobs = self.offload, 0
        self._attention_cycles = 0

        kernels.embed_norm_quantize(transformer.embedding, token, self._embed_scale, self._scaled,
                                    x, self._first_norm, eps, h, q_dim, scale, qmax_inverse, tiny)
        t = clock()
        host += t - start
        for layer, (qkv_w, qkv_s, out_w, out_s, up_w, up_s, down_w, down_s, bias, qk_norm,
                    post_attn, ffn_norm, post_ffw, next_norm, is_global) in enumerate(self._layers):
            acc = matmul(q_dim, qkv_w)                                    # [1, q + 2 kv]
            t1 = clock()
            job_seconds[0] += t1 - t
            c = last_cycles()
            if c is not None:
                cycles[0] += c
            if is_global:
                cos, sin, first = cos_global, sin_global, 0
            else:
                cos, sin, first = cos_local, sin_local, first_local
            if offload:
                t, host_part, attention_jobs = self._offloaded_attention(
                    layer, acc, qkv_s, bias, qk_norm, cos, sin, position, cache, t1, job_seconds)
                host += host_part
                extra_jobs += attention_jobs
            else:
                attention(acc, qkv_s, scale, bias, has_bias, qk_norm, has_qk_norm, eps, inv_head_dim,
                          cos, sin, position, cache.keys[layer], cache.values[layer], first, attn_scale,
                          n_heads, qkv, scores, attended, q_heads, scale, qmax_inverse, tiny)
                t = clock()
                host += t - t1
            acc = matmul(q_heads, out_w)                                  # [1, D]
            t1 = clock()
            job_seconds[1] += t1 - t
            c = last_cycles()
            if c is not None:
                cycles[1] += c
            residual(acc, out_s, scale, post_attn, has_post, x, ffn_norm, eps, out, h, q_dim, scale,
                     qmax_inverse, tiny)
            t = clock()
            host += t - t1
            acc = matmul(q_dim, up_w)                                     # [1, 2F]
            t1 = clock()
            job_seconds[2] += t1 - t
            c = last_cycles()
            if c is not None:
                cycles[2] += c
            gated(acc, up_s, scale, gelu, gate_up, q_hidden, scale, qmax_inverse, tiny)
            t = clock()
            host += t - t1
            acc = matmul(q_hidden, down_w)                                # [1, D]
            t1 = clock()
            job_seconds[3] += t1 - t
            c = last_cycles()
            if c is not None:
                cycles[3] += c
            residual(acc, down_s, scale, post_ffw, has_post, x, next_norm, eps, out, h, q_dim, scale,
                     qmax_inverse, tiny)
            t = clock()
            host += t - t1
        acc = matmul(q_dim, self._classifier[0])                          # [1, vocab]
        t1 = clock()
        c = last_cycles()
        cache.length = position + 1
        self._pending = (job_seconds, t1 - t, cycles, c, host)
        self._jobs = 4 * cfg.n_layers + 1 + extra_jobs
        numpy_calls += self._numpy_extra
        self._numpy_extra = 0
        return acc, numpy_calls, self._jobs, start

    def _submission(self):
        """``(epoch, the first job, per layer (attn_out, ffn_up_gate, ffn_down, next qkv or
        classifier) jobs, the results' arrays)`` with each job as ``(words, CompiledJob)``,
        or None: no compiled job path (then never asked again)."""
        backend = self.backend
        epoch = backend.compiled_epoch()
        bound = self._bound
        if bound is not None and bound[0] == epoch:
            return bound
        self._bound = None
        if epoch is None:
            self._no_submission = True
            return None
        cfg = self.config
        acc_qkv = np.zeros((1, cfg.q_dim + 2 * cfg.kv_dim), np.int32)
        acc_dim = np.zeros((1, cfg.dim), np.int32)
        acc_up = np.zeros((1, 2 * cfg.hidden_dim), np.int32)
        acc_vocab = np.zeros((1, cfg.vocab_size), np.int32)

        def bind(weights, a, c):
            job = backend.compiled_job(weights, a, c)
            return None if job is None else (job.words, job)

        qkv = [bind(layer[0], self._q_dim, acc_qkv) for layer in self._layers]
        classifier = bind(self._classifier[0], self._q_dim, acc_vocab)
        layers = [(bind(layer[2], self._q_heads, acc_dim), bind(layer[4], self._q_dim, acc_up),
                   bind(layer[6], self._q_hidden, acc_dim), nxt)
                  for layer, nxt in zip(self._layers, qkv[1:] + [classifier])]
        if classifier is None or any(job is None for jobs in layers for job in jobs) or qkv[0] is None:
            self._no_submission = True
            return None
        ordered = [qkv[0]] + [job for jobs in layers for job in jobs]       # submission order
        words = np.stack([job_words for job_words, _ in ordered])            # [4 L + 1, 15]
        self._bound = (epoch, qkv[0], layers, (acc_qkv, acc_dim, acc_up, acc_vocab),
                       (words, [job for _, job in ordered]))
        return self._bound

    def _stacked_inputs(self) -> tuple:
        """The per-layer inputs of ``token_jobs`` stacked ``[L, ...]`` (made once):
        qkv, attn_out, ffn_up_gate and ffn_down scales, qkv biases, q/k norms, post-attention,
        ffn, post-ffw and next norms, is_global; then the model's flags: has a qkv bias,
        q/k norms, post norms, GeGLU."""
        cfg = self.config
        columns = list(zip(*self._layers))
        self._stacked = (*(np.ascontiguousarray(np.stack(columns[index]))
                           for index in (1, 3, 5, 7, 8, 9, 10, 11, 12, 13)),
                         np.array(columns[14], np.bool_),
                         self.transformer._qkv_bias is not None, cfg.qk_norm, cfg.post_norms, cfg.gelu)
        return self._stacked

    @staticmethod
    def _kv_addresses(cache: KVCache) -> tuple:
        """``(cache, its first key array, addresses [2, L], shape, the arrays)`` for
        ``token_jobs``: the per-layer arrays' addresses, keys then values; the tuple holds
        the arrays, so the addresses stay valid while it is kept."""
        arrays = (*cache.keys, *cache.values)
        for array in arrays:
            if not (array.dtype == np.uint16 and array.flags.c_contiguous and array.shape == arrays[0].shape):
                raise TypeError(f"KV cache arrays must be C-contiguous bfloat16 (uint16) {arrays[0].shape}, "
                                f"got {array.dtype} {array.shape}")
        addresses = np.array([array.ctypes.data for array in arrays], np.uint64).reshape(2, len(cache.keys))
        return cache, cache.keys[0], addresses, tuple(int(n) for n in arrays[0].shape), arrays

    def _token_step(self, token: int, position: int, cache: KVCache, numpy_calls: int, bound, start: float,
                    greedy: bool):
        """``_layers_step`` as one call of ``token_jobs`` (module doc): the gaps and jobs
        of ``_submitted_step`` in the same order, then the argmax if ``greedy``."""
        cfg, transformer = self.config, self.transformer
        _, _, _, (acc_qkv, acc_dim, acc_up, acc_vocab), (words, jobs) = bound
        (qkv_scales, out_scales, up_scales, down_scales, biases, qk_norms, post_attn, ffn_norms, post_ffw,
         next_norms, is_global, has_bias, has_qk_norm, has_post, gelu) = self._stacked or self._stacked_inputs()
        kv = self._kv                    # the cache's arrays by address, remade when they change
        if kv is None or kv[0] is not cache or kv[1] is not cache.keys[0]:
            kv = self._kv = self._kv_addresses(cache)
        _, _, kv_addresses, kv_shape, _ = kv
        first_local, (cos_global, sin_global), (cos_local, sin_local) = self._rope(position)
        cycles = self._cycles
        cycles[:] = 0
        status, index, best, value = self.kernels.token_jobs(
            words, cycles, transformer.embedding, token, self._embed_scale, self._scaled, self._first_norm,
            qkv_scales, biases, has_bias, qk_norms, has_qk_norm, is_global,
            cos_global, sin_global, cos_local, sin_local, position, first_local,
            kv_addresses, kv_shape, self._attn_scale, cfg.n_heads, self._inv_head_dim, out_scales, post_attn, has_post,
            ffn_norms, up_scales, gelu, down_scales, post_ffw, next_norms, self._eps, self._x, self._h,
            self._out, self._qkv, self._scores, self._attended, self._gate_up, self._q_dim, self._q_heads,
            self._q_hidden, self._scale, acc_qkv, acc_dim, acc_up, acc_vocab, self._classifier[1],
            self._classifier_block, self.argmax_blocks, greedy, _QMAX_INVERSE, _TINY)
        return self._one_call_ran(status, lambda: jobs[index], best, value, greedy, cache, position,
                                  4 * cfg.n_layers + 1, int(cycles.sum()), jobs[-1], start, numpy_calls, acc_vocab)

    def _one_call_ran(self, status: int, failed, best, value, greedy: bool, cache, position: int, jobs: int,
                      busy: int, last, start: float, numpy_calls: int, acc_vocab):
        """After a one-call token (``token_jobs`` or ``offloaded_token_jobs``): a failed job
        (``failed()`` gives its ``CompiledJob``) to the driver's error path; else the argmax,
        the cache's length, the ``jobs`` and their ``busy`` cycles (``last`` the last job)
        for the backend, and the profile's record; ``_layers_step``'s result."""
        if status != 1:
            self.backend.compiled_job_failed(failed(), status)
        if greedy:
            self._argmax = best, value
        cache.length = position + 1
        self._jobs = jobs
        self.backend.compiled_jobs_ran(jobs, busy, last)
        if self.profiler is not None:       # one call: no section of it can be timed apart
            self._pending = ([0.0] * 5, 0.0, self._cycles, None, perf_counter() - start)
        numpy_calls += self._numpy_extra
        self._numpy_extra = 0
        return acc_vocab, numpy_calls, 1, start

    def _attention_bound(self, cache: DeviceKVCache, epoch) -> dict | None:
        """What ``offloaded_token_jobs`` needs beyond ``_submission``'s jobs, or None
        (``offload_unavailable`` says why; the Python path runs then): ``places [L, KV,
        PLACE_WORDS]``, ``words [L, KV, 1 + T, 15]`` (per layer and KV head the p.V job,
        then the q.K^T job over 1..T tiles of keys: the kernel picks the one for the
        token's visible keys), the C arrays and the ``CompiledJob``s behind the words.
        Bound once per cache, re-packing and epoch (``epoch``: the backend's now)."""
        state = self._attention
        if (state is None or state["epoch"] != epoch or state["cache"] is not cache
                or state["grown"] != cache.grown):
            state = self._attention = self._bind_attention(cache, epoch)
            if state is None:
                return None
        if cache.staged:               # the Python path left values on the host: the device first
            cache.flush()
        return state

    def _bind_attention(self, cache: DeviceKVCache, epoch) -> dict | None:
        """``_attention_bound``'s state for ``cache``: every job it may submit, made now."""
        backend, cfg = self.backend, self.config
        if epoch is None:
            self.offload_unavailable = "the backend has no compiled job path"
            return None
        group, cols = cfg.n_heads // cfg.n_kv_heads, backend.cols
        slots = max(head.slots for heads in cache.heads for head in heads)
        tiles = -(-slots // cols)
        places = np.zeros((cfg.n_layers, cfg.n_kv_heads, self.kernels.PLACE_WORDS), np.uint64)
        inputs: dict[int, np.ndarray] = {}            # the p.V input [group, slots] per slot count
        pv_acc = np.zeros((group, cfg.head_dim), np.int32)
        qk_acc = np.zeros(group * tiles * cols, np.int32)
        jobs = [[{} for _ in range(cfg.n_kv_heads)] for _ in range(cfg.n_layers)]
        for layer, heads in enumerate(cache.heads):
            for kv, head in enumerate(heads):
                if len(head.values) != 1:
                    self.offload_unavailable = (f"layer {layer}'s V^T holds {head.slots} positions, more than "
                                                f"one job's K ({backend.max_k})")
                    return None
                keys, values = backend.mutable_places(head.keys), backend.mutable_places(head.values[0])
                if keys is None or values is None:
                    self.offload_unavailable = "the backend's memory has no direct view for the KV cache"
                    return None
                a = inputs.get(head.slots)
                if a is None:
                    a = inputs[head.slots] = np.zeros((group, head.slots), np.int8)
                places[layer, kv] = (*keys, *values, head.key_scale.ctypes.data, head.value_scale.ctypes.data,
                                     head.slots, cache.rings[layer] or 0, a.ctypes.data)
                made = jobs[layer][kv]
                made[0] = backend.compiled_job(head.values[0].device, a, pv_acc)
                for t in range(1, -(-head.slots // cols) + 1):
                    view = backend.rows_view(head.keys, t * cols)
                    made[t] = backend.compiled_job(view, self._group_rows[kv],
                                                   qk_acc[:group * view.n].reshape(group, view.n))
        width = jobs[0][0][0].words.size               # the words of one job (the driver's COMPILED_JOB_WORDS)
        words = np.zeros((cfg.n_layers, cfg.n_kv_heads, 1 + tiles, width), np.uint64)
        for layer, heads in enumerate(jobs):
            for kv, made in enumerate(heads):
                for t, job in made.items():
                    words[layer, kv, t] = job.words
        self._numpy_extra += 1
        now = backend.compiled_epoch()
        if now != epoch:                     # a job planned here moved the scratch: plan them all again
            return self._bind_attention(cache, now)
        return {"epoch": epoch, "cache": cache, "grown": cache.grown, "places": places, "words": words,
                "jobs": jobs, "inputs": inputs, "pv_acc": pv_acc, "qk_acc": qk_acc}

    def _offloaded_token_step(self, token: int, position: int, cache: DeviceKVCache, numpy_calls: int, bound,
                              attention: dict, start: float, greedy: bool):
        """``_layers_step`` with attention on the accelerator as one call of
        ``offloaded_token_jobs``: ``_token_step``'s jobs plus two per layer and KV head."""
        cfg, transformer, backend = self.config, self.transformer, self.backend
        _, _, _, (acc_qkv, acc_dim, acc_up, acc_vocab), (words, jobs) = bound
        (qkv_scales, out_scales, up_scales, down_scales, biases, qk_norms, post_attn, ffn_norms, post_ffw,
         next_norms, is_global, has_bias, has_qk_norm, has_post, gelu) = self._stacked or self._stacked_inputs()
        _, (cos_global, sin_global), (cos_local, sin_local) = self._rope(position)
        cycles, attention_cycles = self._cycles, self._attention_counter
        cycles[:] = 0
        attention_cycles[:] = 0
        status, index, best, value = self.kernels.offloaded_token_jobs(
            words, cycles, attention["words"], attention_cycles, attention["places"], backend.cols,
            backend.cols // backend.ports, transformer.embedding, token, self._embed_scale, self._scaled,
            self._first_norm, qkv_scales, biases, has_bias, qk_norms, has_qk_norm, is_global, cos_global,
            sin_global, cos_local, sin_local, position, self._attn_scale, cfg.n_heads, self._inv_head_dim,
            out_scales, post_attn, has_post, ffn_norms, up_scales, gelu, down_scales, post_ffw, next_norms,
            self._eps, self._x, self._h, self._out, self._qkv, self._q_rows, self._q_row_scale, self._kv_rows,
            self._kv_scale, attention["qk_acc"], attention["pv_acc"], self._scores, self._a_scale,
            _NO_SLOTS, self._no_staged, self._no_staged_values, self._attended, self._gate_up, self._q_dim,
            self._q_heads, self._q_hidden, self._scale, acc_qkv, acc_dim, acc_up, acc_vocab,
            self._classifier[1], self._classifier_block, self.argmax_blocks, greedy, _QMAX_INVERSE, _TINY)

        def failed():
            if index < len(jobs):
                return jobs[index]
            head, which = divmod(int(index) - len(jobs), attention["words"].shape[2])
            return attention["jobs"][head // cfg.n_kv_heads][head % cfg.n_kv_heads][which]

        self._attention_cycles = int(attention_cycles[0])
        return self._one_call_ran(status, failed, best, value, greedy, cache, position,
                                  (4 + 2 * cfg.n_kv_heads) * cfg.n_layers + 1,
                                  int(cycles.sum()) + self._attention_cycles, jobs[-1], start, numpy_calls,
                                  acc_vocab)

    def _rope(self, position: int) -> tuple:
        """The first cached position a local (sliding-window) layer attends to from
        ``position``, and the (cos, sin) tables of the global and the local layers."""
        window, transformer = self.config.sliding_window, self.transformer
        first_local = 0 if window is None else max(0, position - window + 1)
        return (first_local, (transformer._rope_global.cos, transformer._rope_global.sin),
                (transformer._rope_local.cos, transformer._rope_local.sin))

    def _submitted_step(self, token: int, position: int, cache: KVCache, numpy_calls: int, bound, start: float):
        """``_layers_step`` with every job submitted by the kernel before it (module doc)."""
        cfg, kernels, transformer, backend = self.config, self.kernels, self.transformer, self.backend
        _, (first_words, first_job), jobs, (acc_qkv, acc_dim, acc_up, acc_vocab), _ = bound
        first_local, (cos_global, sin_global), (cos_local, sin_local) = self._rope(position)
        eps, qmax_inverse, tiny = self._eps, _QMAX_INVERSE, _TINY
        x, h, out, scale = self._x, self._h, self._out, self._scale
        qkv, scores, attended, gate_up = self._qkv, self._scores, self._attended, self._gate_up
        q_dim, q_heads, q_hidden = self._q_dim, self._q_heads, self._q_hidden
        attention, residual = kernels.attention_job, kernels.residual_norm_quantize_job
        gated, failed = kernels.gated_quantize_job, backend.compiled_job_failed
        has_bias, has_qk_norm, has_post, gelu = (
            transformer._qkv_bias is not None, cfg.qk_norm, cfg.post_norms, cfg.gelu)
        n_heads, attn_scale, inv_head_dim = cfg.n_heads, self._attn_scale, self._inv_head_dim
        cycles = self._cycles
        cycles[:] = 0
        at_qkv, at_out, at_up, at_down, at_classifier = self._cycle_slots
        timed = self.profiler is not None
        clock = perf_counter
        seconds = [0.0, 0.0, 0.0, 0.0, 0.0]

        status = kernels.embed_norm_quantize_job(first_words, at_qkv, transformer.embedding, token,
                                                 self._embed_scale, self._scaled, x, self._first_norm, eps,
                                                 h, q_dim, scale, qmax_inverse, tiny)
        if status != 1:
            failed(first_job, status)
        if timed:
            t = clock()
            seconds[0] += t - start
        last = len(jobs) - 1
        for layer, ((_, qkv_s, _, out_s, _, up_s, _, down_s, bias, qk_norm, post_attn, ffn_norm, post_ffw,
                     next_norm, is_global), ((out_words, out_job), (up_words, up_job), (down_words, down_job),
                                             (next_words, next_job))) in enumerate(zip(self._layers, jobs)):
            if is_global:
                cos, sin, first = cos_global, sin_global, 0
            else:
                cos, sin, first = cos_local, sin_local, first_local
            status = attention(out_words, at_out, acc_qkv, qkv_s, scale, bias, has_bias, qk_norm, has_qk_norm,
                               eps, inv_head_dim, cos, sin, position, cache.keys[layer], cache.values[layer],
                               first, attn_scale, n_heads, qkv, scores, attended, q_heads, scale,
                               qmax_inverse, tiny)
            if status != 1:
                failed(out_job, status)
            if timed:
                t1 = clock()
                seconds[1] += t1 - t
            status = residual(up_words, at_up, acc_dim, out_s, scale, post_attn, has_post, x, ffn_norm, eps,
                              out, h, q_dim, scale, qmax_inverse, tiny)
            if status != 1:
                failed(up_job, status)
            if timed:
                t = clock()
                seconds[2] += t - t1
            status = gated(down_words, at_down, acc_up, up_s, scale, gelu, gate_up, q_hidden, scale,
                           qmax_inverse, tiny)
            if status != 1:
                failed(down_job, status)
            if timed:
                t1 = clock()
                seconds[3] += t1 - t
            status = residual(next_words, at_classifier if layer == last else at_qkv, acc_dim, down_s,
                              scale, post_ffw, has_post, x, next_norm, eps, out, h, q_dim, scale,
                              qmax_inverse, tiny)
            if status != 1:
                failed(next_job, status)
            if timed:
                t = clock()
                seconds[4 if layer == last else 0] += t - t1
        cache.length = position + 1
        self._jobs = 4 * cfg.n_layers + 1
        backend.compiled_jobs_ran(self._jobs, int(cycles.sum()), jobs[-1][3][1])
        classifier_seconds = seconds.pop()
        self._pending = (seconds, classifier_seconds, cycles, None, 0.0)
        numpy_calls += self._numpy_extra
        self._numpy_extra = 0
        return acc_vocab, numpy_calls, self._jobs, start

    def _offloaded_attention(self, layer: int, acc, qkv_s, bias, qk_norm, cos, sin, position: int,
                             cache: DeviceKVCache, t0: float, job_seconds: list):
        """The attention gap with both products on the accelerator (``host.llm.attention``):
        [dequantize + norms + RoPE + quantize q, k, v] -> append k, v to the device cache ->
        per KV head: q.K^T job -> [softmax + p * sv + quantize] -> p.V job(s) ->
        [dequantize (+ quantize the attended heads after the last)]. One compiled call per
        gap between jobs. Returns the time after it, its host seconds and its jobs."""
        cfg, kernels, backend = self.config, self.kernels, self.backend
        clock = perf_counter
        kernels.attention_prepare(acc, qkv_s, self._scale, bias, self.transformer._qkv_bias is not None,
                                  qk_norm, cfg.qk_norm, self._eps, self._inv_head_dim, cos, sin, position,
                                  cfg.n_heads, cfg.n_kv_heads, self._qkv, self._q_rows, self._q_row_scale,
                                  self._attn_scale, self._kv_rows, self._kv_scale, _QMAX_INVERSE, _TINY)
        ring = cache.rings[layer]
        slot = position if ring is None else position % ring
        rows = position + 1 if ring is None else min(position + 1, ring)
        heads = cache.heads[layer]
        for kv, head in enumerate(heads):
            head.write(slot, *self._new_kv[kv])
        t = clock()
        host, jobs, group = t - t0, 0, cfg.n_heads // cfg.n_kv_heads
        matmul_rows, last_cycles = backend.matmul_rows, backend.last_cycles
        for kv, head in enumerate(heads):
            scores = matmul_rows(self._group_rows[kv], head.keys, rows)          # [group, rows]
            t1 = clock()
            job_seconds[4] += t1 - t
            c = last_cycles()
            self._attention_cycles += c or 0
            weighted = self._weighted.get(head.slots)
            if weighted is None:
                weighted = self._weighted[head.slots] = np.zeros((group, head.slots), np.int8)
                self._numpy_extra += 1
            kernels.attention_softmax(scores, rows, self._group_scales[kv], head.key_scale, head.value_scale,
                                      self._scores, weighted, self._a_scale, head.staged_slots,
                                      head.staged_count, self._a_staged, _QMAX_INVERSE, _TINY)
            t = clock()
            host += t - t1
            values = None
            for start, piece in zip(head.value_starts, head.values):
                part = matmul_rows(weighted if len(head.values) == 1 else
                                   np.ascontiguousarray(weighted[:, start:start + piece.k]),
                                   piece, cfg.head_dim)                          # [group, hd]
                values = part if values is None else values + part
                c = last_cycles()
                self._attention_cycles += c or 0
                jobs += 1
            t1 = clock()
            job_seconds[4] += t1 - t
            kernels.attention_finish(values, self._a_staged, head.staged_values, head.staged_count,
                                     self._a_scale, self._attended, kv * group,
                                     kv == len(heads) - 1, self._q_heads, self._scale, _QMAX_INVERSE,
                                     _TINY)
            t = clock()
            host += t - t1
            jobs += 1
        return t, host, jobs

    def _finish(self, numpy_calls: int, calls: int, start: float, last_section: str,
                last_seconds: float) -> None:
        """Record the token's counts and, with a profiler, its sections."""
        n_layers = self.config.n_layers
        self.counts = {"compiled calls": calls, "accelerator jobs": self._jobs,
                       "numpy calls": numpy_calls}
        prof = self.profiler
        if prof is None:
            return
        job_seconds, classifier_seconds, cycles, classifier_cycles, host = self._pending
        if self.submits_jobs:                  # the kernels' sums (module doc)
            cycles, classifier_cycles = cycles[:4].tolist(), int(cycles[4])
        if self.one_call_ran:                  # the one call is the host step, jobs included
            prof.add("host step", host)
            if self.offload:
                prof.add("attention", 0.0, calls=self._jobs - 4 * n_layers - 1)
            for index, kind in enumerate(_KINDS):
                prof.add_matmul(kind, 0.0, self._macs[kind], cycles[index], calls=n_layers)
            prof.add_matmul("classifier", 0.0, self._macs["classifier"], classifier_cycles)
            prof.add(last_section, last_seconds)
            return
        if self.offload:       # the attention jobs (the profile's matmul kinds are the linears')
            prof.add("attention", job_seconds[4], calls=self._jobs - 4 * n_layers - 1)
        for index, kind in enumerate(_KINDS):
            prof.add_matmul(kind, job_seconds[index], self._macs[kind], cycles[index] or None,
                            calls=n_layers)
        prof.add_matmul("classifier", classifier_seconds, self._macs["classifier"], classifier_cycles)
        prof.add("host step", host, calls=calls - 1)
        prof.add(last_section, last_seconds)
