"""The real BPE model from PyPI (SmolLM2-135M-Instruct, Q4_1) against transformers.

transformers loads the same GGUF file with its own reader, dequantizer and PyTorch forward
pass; our float backend must choose the same greedy tokens, and its logits must agree to
float32 rounding. The golden int8 backend must write coherent text (its greedy tokens
match transformers' for a while; the count per prompt is in the README).
"""

import numpy as np
import pytest

from host.llm.crosscheck import agreement, reference_model
from host.llm.generate import load
from host.llm.model import load_model
from host.llm.model.catalog import model_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    path = model_path("smollm2-135m", quiet=True)
    return path, load_model(path, progress=False), reference_model(path)


def test_float_backend_matches_transformers_greedy_and_logits(smollm2):
    import torch

    path, model, reference = smollm2
    runtime = load(model, backend="float", progress=False)
    result = agreement(runtime, reference, "The capital of France is", 24)
    assert result.matching == len(result.tokens) >= 12      # all of them (an end token may stop it)
    assert "Paris" in result.text
    ids = model.tokenizer.encode("Once upon a time, a little robot")
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits[0].numpy()
    got = runtime.transformer.forward(ids, runtime.transformer.new_cache(), all_logits=True)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def test_golden_int8_backend_writes_the_same_start_and_answers_in_chat(smollm2):
    path, model, reference = smollm2
    runtime = load(model, backend="golden", progress=False)
    assert runtime.quant.name == "smooth-grouped"          # the catalog's scheme for this model
    result = agreement(runtime, reference, "The capital of France is", 8)
    assert result.matching >= 2 and "Paris" in result.text
    reply = runtime.generate(messages=[{"role": "user", "content": "What is the capital of France?"}],
                             max_new_tokens=12)
    assert "Paris" in reply.text and reply.tokens[-1] in model.tokenizer.stop_ids
