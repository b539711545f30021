"""generate(), sampling, streaming, the profile and the CLI, on a small random Gemma 3."""

import numpy as np
import pytest

from host.llm.generate import Runtime, generate, main, sample_next
from host.llm.model import load_model
from host.llm.profile import MATMUL_KINDS

from host_testmodels import write_gemma3_gguf
from test_host_transformer import make_gemma3


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return write_gemma3_gguf(tmp_path_factory.mktemp("gen") / "tiny-gemma3.gguf", make_gemma3(seed=21))


@pytest.fixture(scope="module")
def model(model_path):
    return load_model(model_path, cache_dir=model_path.parent / "cache", progress=False)


@pytest.fixture(scope="module")
def golden(model):
    return Runtime(model, "golden", "per-channel")


def test_greedy_equals_an_argmax_loop(model):
    runtime = Runtime(model, "float")
    prompt = "Once upon a time"
    result = generate(runtime, prompt, max_new_tokens=8)
    transformer, ids = runtime.transformer, model.tokenizer.encode(prompt)
    cache = transformer.new_cache()
    logits, expected = transformer.forward(ids, cache), []
    for _ in range(8):
        expected.append(int(np.argmax(logits[-1])))
        logits = transformer.forward([expected[-1]], cache)
    assert result.tokens == expected and result.finish_reason == "length"
    assert result.prompt_tokens == ids
    assert result.text == model.tokenizer.decode(ids + expected)[len(prompt):]


def test_stops_at_eos_and_streams_the_same_text(golden):
    first = generate(golden, "The cat", max_new_tokens=6)
    stop = first.tokens[2]
    stopped = generate(golden, "The cat", max_new_tokens=6, eos_token_id=stop)
    assert stopped.tokens == first.tokens[:first.tokens.index(stop) + 1]
    assert stopped.finish_reason == "eos"
    pieces = []
    streamed = golden.generate("The cat", max_new_tokens=6, streamer=pieces.append)
    assert "".join(pieces) == streamed.text == first.text
    assert "".join(golden.stream("The cat", max_new_tokens=6)) == first.text


def test_sampling_is_seeded_and_respects_top_k(golden):
    a = generate(golden, "a", max_new_tokens=10, temperature=1.5, seed=3)
    b = generate(golden, "a", max_new_tokens=10, temperature=1.5, seed=3)
    assert a.tokens == b.tokens
    runs = {tuple(generate(golden, "a", max_new_tokens=10, temperature=1.5, seed=s).tokens)
            for s in range(4)}
    assert len(runs) > 1
    greedy = generate(golden, "a", max_new_tokens=10)
    assert generate(golden, "a", max_new_tokens=10, temperature=1.0, top_k=1, seed=9).tokens == greedy.tokens


def test_sample_next_distribution_top_k_and_top_p():
    logits = np.log(np.array([0.5, 0.2, 0.15, 0.1, 0.05], np.float32))
    rng = np.random.default_rng(0)
    draws = np.array([sample_next(logits, 1.0, rng=rng) for _ in range(8000)])
    freq = np.bincount(draws, minlength=5) / draws.size
    np.testing.assert_allclose(freq, [0.5, 0.2, 0.15, 0.1, 0.05], atol=0.02)
    draws = np.array([sample_next(logits, 1.0, top_k=2, rng=rng) for _ in range(5000)])
    assert set(draws) == {0, 1} and abs(np.mean(draws == 0) - 0.5 / 0.7) < 0.03
    # top-p 0.8: keep 0.5 + 0.2 + 0.15 (reaches 0.85), drop the rest (HF semantics)
    draws = np.array([sample_next(logits, 1.0, top_p=0.8, rng=rng) for _ in range(5000)])
    assert set(draws) == {0, 1, 2}
    assert sample_next(logits, 1.0, top_p=0.3, rng=rng) == 0
    assert sample_next(logits, 0.0) == 0
    big = np.random.default_rng(1).standard_normal(262144).astype(np.float32) * 8
    # The nucleus, from a full sort: the fewest most likely tokens holding 0.9 at T=0.7.
    probs = np.exp((big - big.max()) / 0.7)
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    nucleus = set(order[:int(np.searchsorted(np.cumsum(probs[order]), 0.9)) + 1].tolist())
    assert 1 < len(nucleus) < 1000
    drawn = {sample_next(big, 0.7, top_p=0.9, rng=rng) for _ in range(300)}
    assert drawn <= nucleus and len(drawn) > 1
    top5 = set(np.argsort(-big)[:5].tolist())
    assert {sample_next(big, 1.0, top_k=5, rng=rng) for _ in range(200)} <= top5


def test_profile_counts_every_op_of_the_model_once(model):
    """The profile's seams see each op of the forward pass exactly once per token, and
    nothing is timed twice (the recorded sections never exceed the wall time). Decode
    through ``Transformer.forward`` (the fused path's profile: tests/test_fused.py)."""
    unfused = Runtime(model, "golden", "per-channel", fused=False)
    assert unfused.fused_decoder is None
    result = generate(unfused, "Once upon a time", max_new_tokens=5)
    decode, cfg = result.decode, model.config
    layers, tokens = cfg.n_layers, 4
    assert decode.tokens == tokens and decode.wall_seconds > 0
    recorded = sum(seconds for name, seconds in decode.seconds.items() if name != "other")
    assert 0 < recorded <= decode.wall_seconds
    # Gemma 3: attn_norm, q/k norm, post-attention, ffn_norm, post-ffw per layer, then output.
    expected_calls = {"norms": 5 * layers + 1, "rope": layers, "attention": layers,
                      "ffn activation": layers, "embedding": 1, "sampling": 1,
                      "quantize": 4 * layers + 1, "dequantize": 4 * layers + 1,
                      **{f"matmul {kind}": layers for kind in MATMUL_KINDS if kind != "classifier"},
                      "matmul classifier": 1}
    assert {name: decode.calls[name] for name in expected_calls} == \
        {name: count * tokens for name, count in expected_calls.items()}
    assert all(decode.seconds[name] > 0 for name in expected_calls)
    assert all(decode.macs[kind] > 0 for kind in MATMUL_KINDS)
    assert decode.macs["qkv"] == tokens * layers * (cfg.q_dim + 2 * cfg.kv_dim) * cfg.dim
    assert result.prefill.tokens == len(result.prompt_tokens)
    assert result.prefill.calls["embedding"] == 1 and result.prefill.calls["rope"] == layers


@pytest.mark.parametrize("options,match", [
    ({"max_new_tokens": -1}, "max_new_tokens"), ({"temperature": -0.5}, "temperature"),
    ({"top_k": 0}, "top_k"), ({"top_p": 1.5}, "top_p")])
def test_bad_arguments(golden, options, match):
    with pytest.raises(ValueError, match=match):
        generate(golden, "a", **options)


def test_empty_prompt_and_unknown_backend(golden, model):
    with pytest.raises(ValueError, match="prompt is empty"):
        generate(golden, "")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        Runtime(model, "tpu")
    with pytest.raises(ValueError, match="unknown quantization scheme"):
        Runtime(model, "golden", "int3")


def test_cli_prints_text_speed_and_profile(model_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(model_path.parent / "xdg"))
    assert main(["--prompt", "Once upon", "--model", str(model_path), "--max-new-tokens", "4",
                 "--quant", "per-channel"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Once upon")
    assert "tok/s" in out and "matmul classifier" in out and "host (non-matmul) time" in out
    assert main(["--prompt", "x", "--model", str(model_path), "--backend", "float",
                 "--max-new-tokens", "2", "--no-profile"]) == 0
    assert "matmul qkv" not in capsys.readouterr().out
    assert main(["--prompt", "x", "--model", str(model_path.parent / "missing.gguf")]) == 2
    assert "missing.gguf: no such file" in capsys.readouterr().err
    assert main(["--prompt", "x", "--model", str(model_path), "--top-p", "2"]) == 2
    assert "argument --top-p: '2' must be in (0, 1]" in capsys.readouterr().err
    assert main(["--prompt", "x", "--model", str(model_path), "--threads", "0"]) == 2
    assert "argument --threads: 0 must be in [1, 256]" in capsys.readouterr().err
    assert main(["--prompt", "x", "--model", str(model_path), "--threads", "1",
                 "--max-new-tokens", "1", "--no-profile"]) == 0
