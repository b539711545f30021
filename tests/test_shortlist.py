"""The int4 classifier's shortlist (``QuantScheme.shortlist``): the accelerator streams
the 4-bit classifier and the host recomputes each row's largest logits from int8 rows.

References: a plain Python ranking (value descending, index ascending) and the int8
classifier itself (``quantize_weight`` per channel, dequantized as ``QuantizedLinears``
does), so the recomputed logits must equal an int8 scheme's bit for bit; the compiled
greedy and sampling kernels must equal ``Shortlist.apply`` and ``np.argmax``.
"""

import numpy as np
import pytest

from host.llm import _numba_fused
from host.llm.generate import Runtime, generate
from host.llm.linear import Shortlist
from host.llm.model import load_model
from host.llm.quant import SCHEMES, QuantScheme, quantize_weight

from host_testmodels import write_gemma3_gguf
from test_host_transformer import make_gemma3


def int4_case(rng, n: int, k: int, ties: bool):
    """int32 sums of an int4 job, its scales, and an int8 classifier with activations."""
    acc = rng.integers(-6, 6, (1, n)) if ties else rng.integers(-40000, 40000, (1, n))
    w_scale = (rng.choice(np.array([0.5, 0.25, 1.0], np.float32), n) if ties
               else rng.uniform(0.001, 0.01, n).astype(np.float32))
    q8, s8 = quantize_weight(rng.standard_normal((n, k)).astype(np.float32), "channel")
    q_x = rng.integers(-127, 128, (1, k)).astype(np.int8)
    return acc.astype(np.int32), w_scale, q8, s8, q_x, np.array([0.0173], np.float32)


def reference(acc, w_scale, x_scale, q8, s8, q_x, size) -> np.ndarray:
    """The shortlisted logits by the definition: rank by (-value, index) in Python, the
    first ``size`` replaced by the int8 classifier's one-token dequantize."""
    logits = np.multiply(acc[0], w_scale * x_scale[0], dtype=np.float32)
    ranked = sorted(range(len(logits)), key=lambda i: (-logits[i], i))[:size]
    exact = np.multiply(q8.astype(np.int32) @ q_x[0].astype(np.int32), s8 * x_scale[0], dtype=np.float32)
    logits[ranked] = exact[ranked]
    return logits


@pytest.mark.parametrize("ties", [False, True])
def test_apply_and_the_kernels_equal_the_definition(ties):
    rng = np.random.default_rng(3 + ties)
    for trial in range(12):
        n = int(rng.integers(1, 3000))
        size = int(rng.choice([1, 5, 64, n, n + 3]))
        acc, w_scale, q8, s8, q_x, x_scale = int4_case(rng, n, 24, ties)
        expected = reference(acc, w_scale, x_scale, q8, s8, q_x, size)
        applied = np.multiply(acc, w_scale * x_scale[0], dtype=np.float32)
        Shortlist(q8, s8, size).apply(applied, q_x, x_scale[None, :])
        assert np.array_equal(applied[0], expected)
        logits = _numba_fused.shortlist_logits(acc, w_scale, x_scale, size, q8, s8, q_x)
        assert np.array_equal(logits[0], expected)
        scanned = np.zeros(1, np.int64)
        index, value = _numba_fused.shortlist_argmax(acc, w_scale, x_scale, _numba_fused.argmax_bounds(w_scale),
                                                     scanned, size, q8, s8, q_x)
        assert (index, value) == (int(np.argmax(expected)), expected.max()), (trial, n, size)
        assert 1 <= scanned[0] <= -(-n // _numba_fused.ARGMAX_BLOCK)


def test_greedy_skips_blocks_that_cannot_enter():
    rng = np.random.default_rng(9)
    acc, w_scale, q8, s8, q_x, x_scale = int4_case(rng, 262144 // 16, 16, ties=False)
    scanned = np.zeros(1, np.int64)
    _numba_fused.shortlist_argmax(acc, w_scale, x_scale, _numba_fused.argmax_bounds(w_scale), scanned, 64,
                                  q8, s8, q_x)
    assert scanned[0] < acc.shape[1] // _numba_fused.ARGMAX_BLOCK


def test_several_rows_dequantize_as_the_int8_layer():
    rng = np.random.default_rng(5)
    acc, w_scale, q8, s8, _, _ = int4_case(rng, 500, 32, ties=False)
    q_x = rng.integers(-127, 128, (3, 32)).astype(np.int8)
    x_scale = np.array([[0.01], [0.02], [0.5]], np.float32)
    y = np.tile(acc, (3, 1)).astype(np.float32) * x_scale * w_scale
    before = y.copy()
    Shortlist(q8, s8, 7).apply(y, q_x, x_scale)
    exact = (q_x.astype(np.int32) @ q8.T.astype(np.int32)).astype(np.float32) * x_scale * s8
    for m in range(3):
        top = np.argsort(-before[m], kind="stable")[:7]
        assert np.array_equal(y[m, top], exact[m, top])
        rest = np.setdiff1d(np.arange(500), top)
        assert np.array_equal(y[m, rest], before[m, rest])


def test_a_shortlist_needs_an_int4_classifier():
    with pytest.raises(ValueError, match="put 'classifier' in int4_kinds"):
        QuantScheme("bad", "", int4_kinds=("attn_out",), shortlist=8)
    with pytest.raises(ValueError, match="shortlist=-1 must be >= 0"):
        QuantScheme("bad", "", int4_kinds=("classifier",), shortlist=-1)
    assert SCHEMES["w4a8"].shortlist and "classifier" in SCHEMES["w4a8"].int4_kinds


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory):
    path = write_gemma3_gguf(tmp_path_factory.mktemp("shortlist") / "g.gguf", make_gemma3(seed=21))
    return load_model(path, cache_dir=path.parent / "cache", progress=False)


def test_the_likeliest_logits_are_the_int8_classifiers(tiny_gemma, monkeypatch, tmp_path):
    """w4a8 and w4a8-c8 differ only in the classifier: the shortlisted logits equal the
    int8 classifier's bit for bit, and greedy decoding gives the same tokens."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    model = tiny_gemma
    prompt = np.random.default_rng(2).integers(3, model.config.vocab_size, 7).tolist()
    short, int8 = Runtime(model, "golden", "w4a8", fused=False), Runtime(model, "golden", "w4a8-c8", fused=False)
    size = short.transformer.linear.layers["output"].shortlist.size
    y = short.transformer.forward(prompt, short.transformer.new_cache(len(prompt)), all_logits=True)
    y8 = int8.transformer.forward(prompt, int8.transformer.new_cache(len(prompt)), all_logits=True)
    int4 = Runtime(model, "golden", SCHEMES["w4a8"].with_(name="w4a8-int4", shortlist=0), fused=False)
    y4 = int4.transformer.forward(prompt, int4.transformer.new_cache(len(prompt)), all_logits=True)
    for row, row8, row4 in zip(y, y8, y4):
        top = np.argsort(-row4, kind="stable")[:size]          # the int4 job's largest
        assert np.array_equal(row[top], row8[top])
        assert not np.array_equal(row, row8)                # the tail is the int4 job's
    tokens = generate(short, prompt, max_new_tokens=12, eos_token_id=-1).tokens
    assert tokens == generate(int8, prompt, max_new_tokens=12, eos_token_id=-1).tokens
    fused = Runtime(model, "golden", "w4a8")
    assert fused.fused_decoder is not None
    assert generate(fused, prompt, max_new_tokens=12, eos_token_id=-1).tokens == tokens
