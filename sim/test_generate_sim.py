"""generate() with every matmul executed by the generated RTL (co-simulation).

A small llama2.c-format model, written by the test, generates through the RTL of the
``small`` preset. Its tokens and logits must equal the golden backend's exactly,
and two runs of the same prompt must give the same logits and the same accelerator
cycles per token (the simulation is deterministic).
"""

import numpy as np
import pytest

from hdl.spec.config import preset
from host.llm.generate import Runtime
from host.llm.model import load_model
from host.platforms.sim import backend as sim_backend
from tests.host_testmodels import write_tiny_llama2c

CONFIG = preset("small")
PROMPT = "Once upon a time"
pytestmark = pytest.mark.xdist_group("cosim-small")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path, tokenizer = write_tiny_llama2c(tmp_path_factory.mktemp("llama2c"))
    return load_model(path, tokenizer_path=tokenizer, progress=False)


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
