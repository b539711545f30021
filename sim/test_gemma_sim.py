"""Gemma 3 270M through the kv260 RTL: every matmul, the 262k classifier too.

A prompt plus two generated tokens (one prefill pass and one decode pass, about
34 million simulated cycles; the W4A8 test runs the prefill pass only, its int8 classifier on
the golden backend). The logits of both passes must equal the golden
backend's bit for bit, so the tokens are identical too.
"""

import numpy as np
import pytest

from hdl.spec.config import preset
from host.llm.generate import Runtime
from host.llm.model import load_model
from host.platforms.sim import backend as sim_backend

CONFIG = preset("kv260")
pytestmark = pytest.mark.xdist_group("cosim-kv260")


def prefill_and_decode_equal(rtl: Runtime, golden: Runtime, prompt: list[int], passes: int = 2) -> list[int]:
    """One prefill pass of ``prompt`` and (``passes`` 2) one decode pass on both runtimes,
    their logits equal bit for bit; returns the prompt with the greedy tokens."""
    rtl_cache, golden_cache = rtl.transformer.new_cache(8), golden.transformer.new_cache(8)
    tokens = list(prompt)
    for step in range(passes):
        chunk = tokens if step == 0 else tokens[-1:]
        ours = rtl.transformer.forward(chunk, rtl_cache)
        theirs = golden.transformer.forward(chunk, golden_cache)
        np.testing.assert_array_equal(ours, theirs)
        tokens.append(int(np.argmax(theirs[-1])))
    return tokens


def test_gemma_logits_through_the_rtl_equal_golden():
    model = load_model(None, progress=False)
    golden = Runtime(model, "golden", preset=CONFIG)
    prompt = golden.tokenizer.encode("Once upon a time")
    with Runtime(model, sim_backend(CONFIG), preset=CONFIG) as rtl:
        tokens = prefill_and_decode_equal(rtl, golden, prompt)
        assert rtl.backend.jobs >= 2 * (18 * 4 + 1)      # qkv, out, gate/up, down per layer + classifier
    assert golden.tokenizer.decode(tokens[len(prompt):]) == ", there"


def test_gemma_w4a8_through_the_rtl_equals_golden():
    """The same with a W4A8 scheme (``w4-rtn``: every block linear in int4, so 72 int4
    jobs, the classifier in int8), for the prefill pass only (its 4 rows through every
    int4 job; one-row int4 jobs are sim/test_int4's): logits bit for bit. The int8
    classifier runs on the golden backend here, on the RTL's own last hidden state (the
    262k-row int8 job is the test above's: here it would be two thirds of the run)."""
    model = load_model(None, progress=False)
    golden = Runtime(model, "golden", "w4-rtn", preset=CONFIG)
    prompt = golden.tokenizer.encode("Once upon")     # one int4 block: rows / 2 = 4 tokens
    assert len(prompt) <= CONFIG.rows // 2
    backend = sim_backend(CONFIG)
    formats = []
    load = backend.load
    backend.load = lambda name, w: (formats.append(type(w).__name__), load(name, w))[1]
    with Runtime(model, backend, "w4-rtn", preset=CONFIG) as rtl:
        assert formats.count("Int4Weights") >= 18 * 4 and "ndarray" in formats
        linear, classifier = rtl.transformer.linear, golden.transformer.linear
        rtl.transformer.linear = lambda name, x: classifier(name, x) if name == "output" else linear(name, x)
        tokens = prefill_and_decode_equal(rtl, golden, prompt, passes=1)
        assert rtl.backend.jobs >= 18 * 4                 # every block linear went through the RTL
    assert golden.tokenizer.decode(tokens[len(prompt):]).strip()
