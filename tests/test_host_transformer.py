"""The numpy transformer against Hugging Face transformers (CPU torch) as the reference.

Small random Llama and Gemma 3 models are written by the tests into the formats the
loaders read (GGUF in llama.cpp's layout, llama2.c v0 and v2 files), loaded back
with host.llm.model and run on the float backend: prefill of several tokens, chunked
prefill, then single-token decode with the KV cache, compared with HF's logits for
the whole sequence. Gemma uses a 4-token sliding window so the window matters.
"""

import numpy as np
import pytest
import torch
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from host.llm.bf16 import from_bf16, to_bf16
from host.llm.layers import linear_specs
from host.llm.linear import FloatLinears
from host.llm.model import load_model
from host.llm.transformer import Transformer

from host_testmodels import (
    dequantize_q80,
    randomize,
    small_vocab,
    write_gemma3_gguf,
    write_llama2c,
    write_llama_gguf,
    write_tokenizer_bin,
)

SEQUENCE = 12


def make_llama(seed: int, tied: bool = False, kv_heads: int = 2, family: str = "llama",
               rope: dict | None = None):
    """A small random model of ``family``: llama, qwen2 (q/k/v biases) or qwen3 (q/k norms,
    a head size that is not dim / heads)."""
    config_class, model_class = {"llama": (LlamaConfig, LlamaForCausalLM),
                                 "qwen2": (Qwen2Config, Qwen2ForCausalLM),
                                 "qwen3": (Qwen3Config, Qwen3ForCausalLM)}[family]
    extra = {"head_dim": 24} if family == "qwen3" else {}
    config = config_class(vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=kv_heads,
                          max_position_embeddings=64, rms_norm_eps=1e-5,
                          rope_parameters=rope or {"rope_type": "default", "rope_theta": 10000.0},
                          tie_word_embeddings=tied, **extra)
    config._attn_implementation = "eager"
    model = model_class(config).eval()
    randomize(model, seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.add_(1.0)       # Llama norms multiply by w: keep them near 1
    return model


def make_gemma3(seed: int, **sizes) -> Gemma3ForCausalLM:
    """A small random Gemma 3; ``sizes`` override the config's dimensions."""
    shape = dict(vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=6,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=32,
                 sliding_window=4, max_position_embeddings=64)
    config = Gemma3TextConfig(
        **{**shape, **sizes}, rms_norm_eps=1e-6,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
        hidden_activation="gelu_pytorch_tanh", final_logit_softcapping=None,
        attn_logit_softcapping=None)
    config._attn_implementation = "eager"
    model = Gemma3ForCausalLM(config).eval()
    randomize(model, seed)
    return model


def hf_logits(model, tokens) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float().numpy()


def our_logits(model_file, tokens, prefill_chunks=(7,), kv_dtype="float32", caches=None,
               **load_options) -> np.ndarray:
    """Prefill in the given chunk sizes, then decode the rest one token at a time (the
    cache appended to ``caches`` if given)."""
    model = load_model(model_file, **load_options)
    transformer = Transformer(model.config, model.weights,
                              FloatLinears(linear_specs(model.config, model.weights)), kv_dtype=kv_dtype)
    cache = transformer.new_cache(4)           # small on purpose: growth is exercised
    if caches is not None:
        caches.append(cache)
    rows, position = [], 0
    for size in prefill_chunks:
        rows.append(transformer.forward(tokens[position:position + size], cache, all_logits=True))
        position += size
    for token in tokens[position:]:
        rows.append(transformer.forward([token], cache))
    assert cache.length == len(tokens)
    return np.vstack(rows)


def assert_logits_close(ours, reference):
    assert ours.shape == reference.shape
    scale = float(np.abs(reference).max())
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * max(1.0, scale))


def tokens_for(seed: int, vocab: int = 320) -> list[int]:
    return np.random.default_rng(seed).integers(0, vocab, SEQUENCE).tolist()


@pytest.mark.parametrize("tied,kv_heads", [(False, 2), (True, 4), (False, 1)])
def test_llama_gguf_matches_transformers(tmp_path, tied, kv_heads):
    model = make_llama(seed=1 + kv_heads, tied=tied, kv_heads=kv_heads)
    path = write_llama_gguf(tmp_path / "llama.gguf", model, tied=tied)
    tokens = tokens_for(7)
    ours = our_logits(path, tokens, prefill_chunks=(4, 3), cache_dir=tmp_path / "cache")
    assert_logits_close(ours, hf_logits(model, tokens))


def test_llama3_rope_scaling_matches_transformers(tmp_path):
    rope = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    model = make_llama(seed=4, tied=True, rope=rope)
    path = write_llama_gguf(tmp_path / "llama3.gguf", model, tied=True, bpe=True)
    loaded = load_model(path, cache_dir=tmp_path / "cache")
    divisors = loaded.weights["rope_freqs.weight"]
    # both ends of the scaling and the smooth band between them are in play
    assert divisors.min() == 1.0 and divisors.max() == 8.0 and np.any((divisors > 1) & (divisors < 8))
    tokens = tokens_for(5)
    reference = hf_logits(model, tokens)
    assert_logits_close(our_logits(path, tokens, (5,), cache_dir=tmp_path / "cache"), reference)
    plain = make_llama(seed=4, tied=True, rope={"rope_type": "default", "rope_theta": 10000.0})
    assert np.abs(hf_logits(plain, tokens)[-1] - reference[-1]).max() > 1e-3   # the scaling matters


@pytest.mark.parametrize("family,tied", [("qwen2", True), ("qwen2", False), ("qwen3", True)])
def test_qwen_gguf_matches_transformers(tmp_path, family, tied):
    model = make_llama(seed=13, tied=tied, family=family)
    path = write_llama_gguf(tmp_path / f"{family}.gguf", model, tied=tied, architecture=family, bpe=True)
    loaded = load_model(path, cache_dir=tmp_path / "cache")
    assert (loaded.config.arch, loaded.config.qkv_bias, loaded.config.qk_norm) == \
        (family, family == "qwen2", family == "qwen3")
    assert loaded.tokenizer.kind == "bpe"
    if family == "qwen3":
        assert loaded.config.head_dim == 24 and loaded.config.q_dim != loaded.config.dim
    tokens = tokens_for(9)
    assert_logits_close(our_logits(path, tokens, (4, 3), cache_dir=tmp_path / "cache"),
                        hf_logits(model, tokens))


def test_gemma3_gguf_matches_transformers_with_sliding_window(tmp_path):
    model = make_gemma3(seed=11)
    path = write_gemma3_gguf(tmp_path / "gemma3.gguf", model)
    loaded = load_model(path, cache_dir=tmp_path / "cache")
    config = loaded.config
    assert (config.arch, config.sliding_window, config.head_dim) == ("gemma3", 4, 32)
    assert [config.is_global(i) for i in range(6)] == [False] * 5 + [True]
    tokens = tokens_for(3)
    reference = hf_logits(model, tokens)
    # one 7-row prefill (window mask inside the block), then decode past the window
    assert_logits_close(our_logits(path, tokens, (7,), cache_dir=tmp_path / "cache"), reference)
    # chunks that start mid-window: the mask must account for earlier cached keys
    assert_logits_close(our_logits(path, tokens, (3, 5), cache_dir=tmp_path / "cache"), reference)
    # the window really matters: a model without it would differ
    wide = make_gemma3(seed=11)
    wide.config.sliding_window = 64
    for layer in wide.model.layers:
        layer.self_attn.sliding_window = None
    assert np.abs(hf_logits(wide, tokens)[-1] - reference[-1]).max() > 1e-2


def torch_bf16(x: np.ndarray) -> np.ndarray:
    """float32 ``x`` rounded by torch to bfloat16, as uint16 bits."""
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(torch.bfloat16).view(torch.int16).numpy() \
        .view(np.uint16)


def test_bf16_rounding_is_torchs():
    rng = np.random.default_rng(4)
    values = (rng.standard_normal(1 << 16) * rng.choice([1e-40, 1e-3, 1.0, 1e30], 1 << 16)).astype(np.float32)
    bits = rng.integers(0, 1 << 16, 4096, dtype=np.uint32) << np.uint32(16)
    ties = np.concatenate([bits | np.uint32(0x8000), bits | np.uint32(0x7FFF), bits | np.uint32(0x8001)])
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.finfo(np.float32).max, -np.finfo(np.float32).max,
                        np.finfo(np.float32).tiny, 1e-45], np.float32)
    x = np.concatenate([values, ties.view(np.float32), special])
    x = x[~np.isnan(x)]
    assert np.array_equal(to_bf16(x), torch_bf16(x))
    widened = from_bf16(to_bf16(x))
    assert np.array_equal(widened, torch.from_numpy(x).to(torch.bfloat16).float().numpy())
    nan = from_bf16(to_bf16(np.array([np.nan, -np.nan], np.float32)))
    assert np.isnan(nan).all()


def test_bfloat16_kv_cache_is_torchs_rounding_and_close_to_transformers(tmp_path):
    model = make_gemma3(seed=11)
    path = write_gemma3_gguf(tmp_path / "gemma3.gguf", model)
    tokens = tokens_for(3)
    reference = hf_logits(model, tokens)
    caches = []
    exact = our_logits(path, tokens, (3, 5), "float32", caches, cache_dir=tmp_path / "cache")
    half = our_logits(path, tokens, (3, 5), "bfloat16", caches, cache_dir=tmp_path / "cache")
    f32, bf16 = caches
    assert bf16.keys[0].dtype == np.uint16 and f32.keys[0].dtype == np.float32
    # layer 0's keys and values do not depend on attention: the same float32 values, rounded
    n = len(tokens)
    assert np.array_equal(bf16.keys[0][:, :n], torch_bf16(f32.keys[0][:, :n]))
    assert np.array_equal(bf16.values[0][:, :n], torch_bf16(f32.values[0][:, :n]))
    # bfloat16 keys and values (2^-9 relative): close to transformers, and not float32
    scale = float(np.abs(reference).max())
    np.testing.assert_allclose(half, reference, rtol=0, atol=2e-2 * scale)
    assert np.abs(half - exact).max() > 1e-5 * scale
    with pytest.raises(ValueError, match="KV cache type 'float16': expected one of bfloat16, float32"):
        our_logits(path, tokens, (3,), "float16", cache_dir=tmp_path / "cache")


def test_llama2c_v0_matches_transformers(tmp_path):
    model = make_llama(seed=5)
    pieces, scores, _ = small_vocab(320, ["<unk>", "<s>", "</s>"])
    write_tokenizer_bin(tmp_path / "tokenizer.bin", pieces, scores)
    for shared in (False, True):
        if shared:
            model.lm_head.weight = model.model.embed_tokens.weight
        path = write_llama2c(tmp_path / f"model{int(shared)}.bin", model, version=0, shared=shared)
        tokens = tokens_for(17)
        assert_logits_close(our_logits(path, tokens), hf_logits(model, tokens))


def test_llama2c_v2_int8_matches_transformers_on_dequantized_weights(tmp_path):
    model = make_llama(seed=8)
    pieces, scores, _ = small_vocab(320, ["<unk>", "<s>", "</s>"])
    write_tokenizer_bin(tmp_path / "tokenizer.bin", pieces, scores)
    path = write_llama2c(tmp_path / "model_q80.bin", model, version=2, group_size=32)
    with torch.no_grad():       # the reference holds exactly the Q8_0 values the file has
        for name, parameter in model.named_parameters():
            if parameter.ndim == 2:
                parameter.copy_(torch.from_numpy(dequantize_q80(parameter.numpy(), 32)))
    tokens = tokens_for(21)
    loaded = load_model(path)
    assert loaded.metadata["format"] == "llama2.c v2"
    assert_logits_close(our_logits(path, tokens), hf_logits(model, tokens))


def test_q8_0_gguf_tensors_are_dequantized(tmp_path):
    import gguf

    model = make_llama(seed=9)
    path = write_llama_gguf(tmp_path / "q8.gguf", model, tensor_type=gguf.GGMLQuantizationType.Q8_0)
    loaded = load_model(path, cache_dir=tmp_path / "cache")
    expected = model.model.layers[1].mlp.down_proj.weight.detach().numpy()
    got = loaded.weights["blk.1.ffn_down.weight"]
    # Q8_0 keeps 8 bits per 32-value block: error at most half a step of the block scale
    step = np.abs(expected.reshape(-1, 32)).max(axis=1) / 127
    assert np.all(np.abs(got - expected).reshape(-1, 32) <= step[:, None] * 0.5 + 1e-3)
