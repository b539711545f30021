"""Attention on the accelerator through the runtime (``--attention accelerator``).

Small random Gemma 3 (GQA: 4 query heads on 2 KV heads, a 4-token sliding window that
wraps its ring, the KV cache growing past its first capacity) written as GGUF by the
tests: the fused decoder's offloaded attention against the numpy one
(``Transformer.forward`` with ``host.llm.attention``) and both against float32 host
attention; the compiled kernels against numpy; the kv260 RTL against golden.
"""

import numpy as np
import pytest

from hdl.spec.config import preset
from host.llm import _numba_fused as kernels
from host.llm.attention import DeviceKVCache, quantize_rows
from host.llm.generate import Runtime, generate, main, sample_next

from test_fused import reference_greedy, tiny_models  # noqa: F401  (a fixture)

NEW_TOKENS = 24          # prompt + 24 > 16: the cache grows; > 4: the window's ring wraps
_TINY = np.float32(np.finfo(np.float32).tiny)
_QMAX_INVERSE = np.float32(1.0 / 127)


def test_fused_offloaded_decode_matches_the_numpy_path(tiny_models):
    model = tiny_models("gemma3")
    runtime = Runtime(model, "golden", "per-channel", attention="accelerator")
    assert runtime.attention_mode == "accelerator" and runtime.fused_decoder is not None
    assert "int8 KV cache" in runtime.describe()
    prompt = model.tokenizer.encode("Once upon a time")
    fused = generate(runtime, prompt, max_new_tokens=NEW_TOKENS)
    assert fused.tokens == reference_greedy(runtime, prompt, NEW_TOKENS)
    cfg = model.config
    jobs = (4 + 2 * cfg.n_kv_heads) * cfg.n_layers + 1
    assert runtime.fused_decoder.counts == {"compiled calls": jobs + 1, "accelerator jobs": jobs,
                                            "numpy calls": 0}


def test_offloaded_logits_stay_near_host_attention(tiny_models):
    """The int8 KV cache moves the logits by a little next to float32 host attention on
    the same int8 linears; the ring has wrapped and the cache grown by then."""
    model = tiny_models("gemma3")
    host = Runtime(model, "golden", "per-channel")
    offload = Runtime(model, "golden", "per-channel", attention="accelerator")
    tokens = list(range(3, 3 + 30))
    ours, theirs = offload.transformer.new_cache(4), host.transformer.new_cache(4)
    assert isinstance(ours, DeviceKVCache)
    offload.transformer.forward(tokens[:6], ours)
    host.transformer.forward(tokens[:6], theirs)
    worst = 0.0
    for token in tokens[6:]:
        a = offload.fused_decoder.logits(token, ours)
        b = host.transformer.forward([token], theirs)
        worst = max(worst, float(np.abs(a - b).max() / np.abs(b).max()))
    assert ours.grown >= 1 and ours.length == 30
    assert worst < 0.05, worst


def test_attention_kernels_follow_numpy():
    rng = np.random.default_rng(5)
    group, rows, slots, hd = 4, 11, 16, 32
    for _ in range(200):
        acc = rng.integers(-40000, 40000, (group, slots)).astype(np.int32)   # whole tiles: past rows unread
        q_scale = rng.random(group).astype(np.float32) * 1e-3
        key_scale, value_scale = (rng.random((2, slots)).astype(np.float32) * 1e-2)
        probabilities = np.zeros(group * slots, np.float32)
        a_q = np.full((group, slots), 9, np.int8)
        a_scale = np.zeros(group, np.float32)
        staged_slots = np.array([rows - 1, rows - 3, 0, 0], np.int64)     # two staged values
        a_staged = np.zeros((group, 4), np.int8)
        kernels.attention_softmax(acc, rows, q_scale, key_scale, value_scale, probabilities, a_q, a_scale,
                                  staged_slots, 2, a_staged, _QMAX_INVERSE, _TINY)
        scores = acc[:, :rows].astype(np.float32) * q_scale[:, None] * key_scale[None, :rows]
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
        weighted = np.zeros((group, slots), np.float32)
        weighted[:, :rows] = scores * value_scale[:rows]
        want_q, want_scale = quantize_rows(weighted)
        # the softmax sums add in another order (an ulp), so a rint may land one off
        assert np.abs(a_staged[:, :2].astype(int) - want_q[:, [rows - 1, rows - 3]]).max() <= 1
        want_q[:, [rows - 1, rows - 3]] = 0                 # the staged slots leave the job's input
        assert np.abs(a_q.astype(int) - want_q).max() <= 1
        np.testing.assert_allclose(a_scale, want_scale, rtol=1e-6)
        values = rng.integers(-2**20, 2**20, (group, hd)).astype(np.int32)
        attended = np.zeros(2 * group * hd, np.float32)
        q = np.zeros((1, attended.size), np.int8)
        scale = np.zeros(1, np.float32)
        staged_values = rng.integers(-127, 128, (4, hd)).astype(np.int8)
        kernels.attention_finish(values, a_staged, staged_values, 2, a_scale, attended, group,
                                 True, q, scale, _QMAX_INVERSE, _TINY)
        exact = values.astype(np.int64) + a_staged[:, :2].astype(np.int64) @ staged_values[:2].astype(np.int64)
        np.testing.assert_array_equal(attended[group * hd:].reshape(group, hd),
                                      exact.astype(np.float32) * a_scale[:, None])
        want_q, want_scale = quantize_rows(attended[None])
        np.testing.assert_array_equal(q, want_q)
        assert scale[0] == want_scale[0]


def test_cli_attention_flag(tiny_models, tmp_path, capsys, monkeypatch):
    model = tiny_models("gemma3")
    monkeypatch.setattr("host.llm.generate.load_model", lambda *a, **k: model)
    assert main(["--prompt", "Once upon", "--max-new-tokens", "6", "--attention", "accelerator",
                 "--no-profile"]) == 0
    assert "int8 KV cache" in capsys.readouterr().err
    assert main(["--prompt", "x", "--attention", "gpu"]) == 2
    assert "invalid choice: 'gpu'" in capsys.readouterr().err


def test_float_backend_refuses_offloaded_attention(tiny_models):
    from host.errors import UsageError
    with pytest.raises(UsageError, match="int8 backend"):
        Runtime(tiny_models("gemma3"), "float", attention="accelerator")


@pytest.mark.xdist_group("cosim-kv260")
def test_small_gemma_offloaded_through_the_rtl_equals_golden(tiny_models):
    """Greedy tokens of the small model with attention offloaded, through the kv260 RTL
    (mutable weights written into the simulator's memory, jobs over a prefix of the
    keys with the capacity's W_STRIDE) equal the golden backend's."""
    from host.platforms.sim import backend as sim_backend

    config = preset("kv260")
    model = tiny_models("gemma3")
    prompt = model.tokenizer.encode("Once upon a time")
    golden = Runtime(model, "golden", "per-channel", preset=config, attention="accelerator")
    assert len(prompt) + 6 > 2 * model.config.sliding_window      # the ring wraps
    want = generate(golden, prompt, max_new_tokens=6).tokens
    with Runtime(model, sim_backend(config), "per-channel", preset=config,
                 attention="accelerator") as rtl:
        got = generate(rtl, prompt, max_new_tokens=6).tokens
        assert rtl.backend.jobs > 6 * 2 * model.config.n_layers
    assert got == want


def test_reusing_a_cache_whose_ring_wrapped_runs_the_prompt_again(tiny_models):
    model = tiny_models("gemma3")                       # a 4-token window
    runtime = Runtime(model, "golden", "per-channel", attention="accelerator")
    first = model.tokenizer.encode("Once upon a time")
    cache = runtime.transformer.new_cache()
    steps = runtime.steps(first, max_new_tokens=6, cache=cache)
    tokens = [token for token, _ in steps]
    follow = first + tokens[:-1]                         # the cache holds these now
    assert cache.length == len(follow) and not cache.can_shorten(len(follow) - 2)
    prompt = follow[:-2] + [7, 8]                        # shares all but the last two tokens
    again = list(runtime.steps(prompt, max_new_tokens=5, cache=cache, reuse=len(follow) - 2))
    fresh = list(runtime.steps(prompt, max_new_tokens=5))
    assert [t for t, _ in again] == [t for t, _ in fresh]
