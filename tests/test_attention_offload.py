"""Attention products on the accelerator (host.llm.attention) against numpy.

References, both written here: float32 softmax attention over the full float history
(the window applied by position), which the int8 path must approach within int8
tolerance; and an integer emulation of the stated algorithm (q, K, V and p * sv
quantized per row, ``numpy`` integer products), which it must equal up to float32
rounding. Small random configurations: GQA groups, a sliding window that wraps its
ring, cache growth past the first capacity, prefill blocks that cross the wrap, and a
``max_k`` small enough that V^T splits into several matrices.
"""

from dataclasses import replace

import numpy as np
import pytest

from hdl.spec.config import preset
from host.accel.software import GoldenBackend
from host.llm.attention import DeviceKVCache, OffloadedAttention
from host.llm.model.base import ModelConfig

from test_mutable_weights import computing_backend

KV260 = preset("kv260")


def config(n_heads=4, n_kv_heads=2, head_dim=32, window=8, layers=2):
    return ModelConfig(arch="gemma3", dim=64, hidden_dim=128, n_layers=layers, n_heads=n_heads,
                       n_kv_heads=n_kv_heads, head_dim=head_dim, vocab_size=100, max_seq_len=256,
                       norm_eps=1e-6, rope_base=1e4, rope_base_local=1e4, sliding_window=window,
                       global_every=2)


def float_attention(q, keys, values, position, window, scale):
    """One query ``q [H, hd]`` at ``position`` over float ``keys/values [P, KV, hd]``."""
    n_heads, n_kv = q.shape[0], keys.shape[1]
    first = 0 if window is None else max(0, position - window + 1)
    out = np.zeros_like(q, dtype=np.float64)
    for h in range(n_heads):
        kv = h // (n_heads // n_kv)
        s = keys[first:position + 1, kv].astype(np.float64) @ q[h].astype(np.float64) * scale
        p = np.exp(s - s.max())
        p /= p.sum()
        out[h] = p @ values[first:position + 1, kv]
    return out


def int8_rows(x):
    x = np.asarray(x, np.float64)
    scale = np.maximum(np.abs(x).max(axis=-1) / 127.0, np.finfo(np.float32).tiny)
    return np.clip(np.rint(x / scale[..., None]), -127, 127).astype(np.int64), scale


def int8_attention(q, keys, values, position, window, scale):
    """The offload's arithmetic, emulated: int8 per row everywhere, exact integer sums."""
    n_heads, n_kv = q.shape[0], keys.shape[1]
    first = 0 if window is None else max(0, position - window + 1)
    out = np.zeros_like(q, dtype=np.float64)
    for h in range(n_heads):
        kv = h // (n_heads // n_kv)
        kq, ks = int8_rows(keys[first:position + 1, kv])
        vq, vs = int8_rows(values[first:position + 1, kv])
        qq, qs = int8_rows(q[h][None])
        s = (kq @ qq[0]) * ks * qs[0] * scale
        p = np.exp(s - s.max())
        p /= p.sum()
        aq, a_scale = int8_rows((p * vs)[None])
        out[h] = (aq[0] @ vq) * a_scale[0]
    return out


BACKENDS = {"golden": lambda cfg: GoldenBackend(cfg, threads=1),
            "driver": computing_backend}


@pytest.mark.parametrize("which", sorted(BACKENDS))
@pytest.mark.parametrize("shape", [dict(n_heads=4, n_kv_heads=1), dict(n_heads=4, n_kv_heads=2, head_dim=16),
                                   dict(n_heads=2, n_kv_heads=2, head_dim=80)])
def test_offloaded_attention_follows_float_attention(which, shape):
    cfg = config(**shape)
    # max_k = head_dim: with head_dim 16 the global layer's V^T (32 slots) is two pieces
    accel = replace(KV260, act_buffer_bytes=KV260.rows * cfg.head_dim)
    backend = BACKENDS[which](accel)
    attention = OffloadedAttention(cfg, backend)
    cache = attention.new_cache(4)                      # 16 slots at first, then 32
    assert isinstance(cache, DeviceKVCache)
    rng = np.random.default_rng(3)
    total = 30
    q = rng.standard_normal((total, cfg.n_heads, cfg.head_dim)).astype(np.float32)
    k = rng.standard_normal((total, cfg.n_kv_heads, cfg.head_dim)).astype(np.float32) * 2
    v = rng.standard_normal((total, cfg.n_kv_heads, cfg.head_dim)).astype(np.float32)
    # prefill 5, decode 1 at a time, a block of 9 across the local ring's wrap, decode on
    blocks = [5, 1, 1, 9, *[1] * 14]
    assert sum(blocks) == total
    start, worst, worst_rel = 0, 0.0, 0.0
    for size in blocks:
        stop = start + size
        cache.reserve(stop)
        for layer in range(cfg.n_layers):
            window = None if cfg.is_global(layer) else cfg.sliding_window
            got = attention.attend(layer, q[start:stop], k[start:stop], v[start:stop], start, cache)
            got = got.reshape(size, cfg.n_heads, cfg.head_dim)
            for i, position in enumerate(range(start, stop)):
                exact = float_attention(q[position], k, v, position, window, cfg.attn_scale)
                emulated = int8_attention(q[position], k, v, position, window, cfg.attn_scale)
                np.testing.assert_allclose(got[i], emulated, rtol=1e-4, atol=1e-5)
                error = np.abs(got[i] - exact).max()
                worst = max(worst, error)
                worst_rel = max(worst_rel, error / np.abs(exact).max())
        cache.length = stop
        start = stop
    assert cache.grown == 1 and cache.slots(0) == cfg.sliding_window and cache.slots(1) >= total
    assert worst < 0.08, worst          # v ~ N(0, 1), |v| up to ~3.5: int8 per row, ~2% of it
    assert worst_rel < 0.05, worst_rel


def test_a_wrapped_ring_cannot_be_shortened():
    cfg = config()
    attention = OffloadedAttention(cfg, GoldenBackend(KV260, threads=1))
    cache = attention.new_cache(16)
    cache.length = 5
    cache.length = 3                       # no slot reused yet: fine
    cache.length = 12
    with pytest.raises(ValueError, match="ring"):
        cache.length = 11
    cache.reset()
    assert cache.length == 0


def test_attention_needs_mutable_weights():
    from host.accel.software import FloatBackend
    with pytest.raises(ValueError, match="mutable weights"):
        OffloadedAttention(config(), FloatBackend(threads=1))


def test_a_dropped_cache_frees_its_device_memory():
    import gc
    backend = computing_backend(KV260)
    free_before = list(backend.driver._allocator.free)
    attention = OffloadedAttention(config(), backend)
    cache = attention.new_cache(40)
    assert backend.driver._allocator.free != free_before
    cache.reserve(100)                                  # grows: the old matrices are freed
    del cache
    gc.collect()
    assert backend.driver._allocator.free == free_before
    attention.new_cache(8).release()
    assert backend.driver._allocator.free == free_before


def test_shortening_a_wrapped_cache_is_refused_but_zero_is_a_restart():
    cfg = config()
    cache = OffloadedAttention(cfg, GoldenBackend(KV260, threads=1)).new_cache(16)
    cache.length = 12
    assert not cache.can_shorten(11) and cache.can_shorten(0) and cache.can_shorten(12)
    cache.length = 0
    assert cache.written == 0
