"""generate() with every matmul executed by the generated RTL (co-simulation).

A small llama2.c-format model, written by the test, generates through the RTL of the
``small`` preset. Its tokens and logits must equal the golden backend's exactly,
and two runs of the same prompt must give the same logits and the same accelerator
cycles per token (the simulation is deterministic).
"""

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from hdl.spec.config import preset
from host.llm.generate import Runtime
from host.llm.model import load_model
from host.platforms.sim import backend as sim_backend
from tests.host_testmodels import randomize, small_vocab, write_llama2c, write_tokenizer_bin

CONFIG = preset("small")
PROMPT = "Once upon a time"
pytestmark = pytest.mark.xdist_group("cosim-small")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama2c")
    config = LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         rms_norm_eps=1e-5, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    hf = LlamaForCausalLM(config).eval()
    randomize(hf, seed=5)
    with torch.no_grad():
        for name, parameter in hf.named_parameters():
            if "norm" in name:
                parameter.add_(1.0)
    pieces, scores, _ = small_vocab(config.vocab_size, ["<unk>", "<s>", "</s>"])
    write_tokenizer_bin(folder / "tokenizer.bin", pieces, scores)
    path = write_llama2c(folder / "model.bin", hf, version=0)
    return load_model(path, tokenizer_path=folder / "tokenizer.bin", progress=False)


@pytest.fixture(scope="module")
def rtl(model):
    backend = sim_backend(CONFIG, memory_bytes=64 << 20)
    with Runtime(model, backend, "per-channel") as runtime:
        yield runtime


def run_tokens(runtime, tokens):
    """Logits of a prefill of all but the last token, then one decode step, plus the
    accelerator cycles each forward pass took (None for software backends)."""
    backend = runtime.backend
    cache = runtime.transformer.new_cache(len(tokens))
    logits, cycles = [], []
    for chunk in (tokens[:-1], tokens[-1:]):
        before = getattr(backend, "total_cycles", None)
        logits.append(runtime.transformer.forward(chunk, cache))
        cycles.append(None if before is None else backend.total_cycles - before)
    return logits, cycles


def test_generation_through_the_rtl_equals_golden(model, rtl):
    golden = Runtime(model, "golden", "per-channel", preset=CONFIG)
    want = golden.generate(PROMPT, max_new_tokens=8)
    got = rtl.generate(PROMPT, max_new_tokens=8)
    assert got.tokens == want.tokens and got.text == want.text
    assert rtl.backend.jobs > 0
    tokens = want.prompt_tokens + want.tokens
    for ours, theirs in zip(run_tokens(rtl, tokens)[0], run_tokens(golden, tokens)[0]):
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs)


def test_same_prompt_twice_is_bit_identical_with_the_same_cycles(model, rtl):
    tokens = rtl.tokenizer.encode(PROMPT) + [17, 99, 5]
    first_logits, first_cycles = run_tokens(rtl, tokens)
    second_logits, second_cycles = run_tokens(rtl, tokens)
    for a, b in zip(first_logits, second_logits):
        np.testing.assert_array_equal(a, b)
    assert first_cycles == second_cycles and all(c > 0 for c in first_cycles)
