"""The host-step counts behind the A53 estimate (host.perf.a53), each against the real
code it describes: exp/tanh counted where numpy evaluates them, KV bytes from the
cache the transformer reads, jobs from the device's ap_start count, syscalls from
strace of the KV260 platform classes."""

from dataclasses import replace

import numpy as np
import pytest

import host.llm.transformer as transformer_module
from hdl.spec.config import preset
from host.llm.generate import sample_next
from host.llm.layers import linear_specs
from host.llm.linear import QuantizedLinears
from host.llm.model.base import ModelConfig
from host.llm.quant import scheme
from host.llm.transformer import RUNTIME_KV_DTYPE, KVCache, Transformer
from host.perf.a53 import (A53, CpuModel, StepCounts, count_python_calls, estimate, host_ops,
                           instant_backend, jobs_per_token, strace_counts, syscalls_per_job)
from host.perf.host_time import random_llama_weights

# Gemma-like: sliding window 8 on local layers, every 2nd layer global, q/k and post norms.
GEMMA_LIKE = ModelConfig(arch="gemma3", dim=64, hidden_dim=96, n_layers=4, n_heads=4, n_kv_heads=2,
                         head_dim=32, vocab_size=320, max_seq_len=64, norm_eps=1e-6, rope_base=1e6,
                         rope_base_local=1e4, sliding_window=8, global_every=2)


def gemma_like_weights(config, seed=0):
    rng = np.random.default_rng(seed)
    weights = random_llama_weights(replace(config, arch="llama", sliding_window=None), seed)
    for i in range(config.n_layers):
        b = f"blk.{i}."
        for norm in ("attn_q_norm", "attn_k_norm"):
            weights[b + norm + ".weight"] = np.ones(config.head_dim, np.float32)
        for norm in ("post_attention_norm", "post_ffw_norm"):
            weights[b + norm + ".weight"] = rng.uniform(0.5, 1.5, config.dim).astype(np.float32)
    return weights


class _Counting:
    """numpy, with the elements of every exp and tanh counted."""

    def __init__(self):
        self.elements = 0

    def __getattr__(self, name):
        real = getattr(np, name)
        if name not in ("exp", "tanh"):
            return real

        def counted(x, *args, **kwargs):
            self.elements += np.size(x)
            return real(x, *args, **kwargs)
        return counted


@pytest.fixture
def gemma_like():
    accel = preset("kv260")
    backend = instant_backend(accel, 16 << 20)
    config = GEMMA_LIKE
    weights = gemma_like_weights(config)
    linears = QuantizedLinears(linear_specs(config, weights), backend, scheme("per-channel"))
    yield accel, config, Transformer(config, weights, linears, kv_dtype=RUNTIME_KV_DTYPE)
    backend.close()


@pytest.mark.parametrize("context", [5, 8, 20])
def test_exp_and_tanh_counts_are_the_ones_numpy_evaluates(gemma_like, monkeypatch, context):
    accel, config, transformer = gemma_like
    cache = transformer.new_cache(context)
    transformer.forward(list(range(1, context)), cache)          # positions 0..context-2
    counting = _Counting()
    monkeypatch.setattr(transformer_module, "np", counting)
    transformer.forward([7], cache)                              # the token at context-1
    ops = host_ops(config, context, exp_flops=None)          # the numpy path's exp is np.exp
    assert sum(op.transcendentals for op in ops) == counting.elements


@pytest.mark.parametrize("context", [3, 8, 9, 30])
def test_kv_bytes_are_the_cache_rows_attention_reads(context):
    config = GEMMA_LIKE
    # The rows a decode query reads, taken as Transformer.attend slices them.
    rows = 0
    for layer in range(config.n_layers):
        window = None if config.is_global(layer) else config.sliding_window
        start = context - 1
        first = 0 if window is None else max(0, start - window + 1)
        rows += context - first
    elements = 2 * rows * config.n_kv_heads * config.head_dim                          # K and V
    float32 = next(op for op in host_ops(config, context, kv_bytes=4) if op.name == "attention")
    assert float32.bytes == 4 * elements
    int8 = next(op for op in host_ops(config, context, kv_bytes=1) if op.name == "attention")
    assert int8.bytes == elements
    # the default is the runtime's bfloat16 cache: half the bytes, one flop per element to widen
    bf16 = next(op for op in host_ops(config, context) if op.name == "attention")
    cache = KVCache(config, context, RUNTIME_KV_DTYPE)
    assert bf16.bytes == cache.keys[0].itemsize * elements == 2 * elements
    assert bf16.flops == float32.flops + elements


def test_jobs_and_python_calls_come_from_a_real_decode_token(gemma_like):
    accel, config, transformer = gemma_like
    cache = transformer.new_cache(16)
    transformer.forward([1, 2, 3], cache)
    calls, driver_calls, jobs = count_python_calls(transformer, cache, tokens=2)
    assert jobs == jobs_per_token(config, accel) == 4 * config.n_layers + 1
    assert 0 < driver_calls < calls
    # The instant device answered every job: greedy decoding still runs and gives a token.
    assert 0 <= sample_next(transformer.forward([4], cache)[-1]) < config.vocab_size


def test_the_estimate_is_the_sum_of_counts_times_constants():
    counts = StepCounts("m", 64, jobs=3, flops=2_000, transcendentals=30, bytes=5_000,
                        python_calls=70, syscalls=11, compiled_calls=4)
    unit = CpuModel("unit", flops_per_s=1e3, transcendental_s=1e-3, bytes_per_s=1e3,
                    python_call_s=1e-3, compiled_call_s=1e-3, syscall_s=1e-3)
    ms = estimate(counts, unit)
    assert ms == {"flops": 2000.0, "exp/tanh": 30.0, "memory": 5000.0, "python calls": 70.0,
                  "compiled calls": 4.0, "syscalls": 11.0, "total": 7115.0}
    assert estimate(counts, A53)["total"] > 0


def test_strace_summary_parsing():
    text = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 30.38    0.040650          44       911           write
 15.47    0.020695          17      1161        75 openat
------ ----------- ----------- --------- --------- ----------------
100.00    0.133821          13      2072        75 total
"""
    assert strace_counts(text) == {"write": 911, "openat": 1161, "total": 2072}


@pytest.mark.parametrize("irq", [False, True])
def test_syscalls_per_job_of_the_kv260_coherent_path(irq):
    """The kv260 preset (coherent_io): each job's A and C in the coherent udmabuf1, no
    cache maintenance; polling makes no syscall a job, the interrupt its three."""
    per_job = syscalls_per_job(preset("kv260"), irq, tokens=1)
    assert "pwrite64" not in per_job
    assert per_job.get("pselect6", 0) == per_job.get("read", 0) == per_job.get("write", 0) == irq
    assert per_job["total"] == pytest.approx(3 * irq, abs=0.25)


@pytest.mark.parametrize("irq", [False, True])
def test_syscalls_per_job_of_the_kv260_synced_path(irq):
    per_job = syscalls_per_job(preset("kv260").replace(coherent_io=False), irq, tokens=1)
    # u-dma-buf cache maintenance over Gemma 3 270M's decode token (73 jobs), one pwrite
    # per write to a sysfs file kept open, an attribute written only when it changes
    # (the direction, BIDIRECTIONAL, never after the first job). The 72 layer jobs
    # (A + C <= 32 KiB) sync one range from the scratch's start: its size changes
    # from job to job (1 write) and the two triggers follow, 3 writes; the first layer
    # job also rewrites the offset the classifier moved (+1). The classifier syncs A
    # (size) and then its 1 MiB C (offset, size), 5 writes: (72 * 3 + 1 + 5) / 73.
    # The UIO interrupt adds select, the count read and the unmask write. The
    # registers are a mapped page: no calls.
    assert per_job["pwrite64"] == pytest.approx((72 * 3 + 1 + 5) / 73)
    assert per_job.get("pselect6", 0) == per_job.get("read", 0) == per_job.get("write", 0) == irq
    # (allocator calls, brk and mmap, come and go: a fraction of a call per job)
    assert per_job["total"] == pytest.approx((72 * 3 + 1 + 5) / 73 + 3 * irq, abs=0.25)
