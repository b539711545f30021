"""4-bit weights: the quantizers against plain numpy, the golden int4 kernel against
golden_matmul bit for bit, per-kind formats in the seam, generation with W4A8."""

import numpy as np
import pytest

from hdl.spec.config import preset
from host.accel import kernels
from host.accel.golden import golden_matmul
from host.accel.pack import Int4Weights, pack_int4
from host.accel.software import GoldenBackend
from host.llm.generate import Runtime, generate
from host.llm.layers import LAYER_KINDS
from host.llm.linear import build_linears
from host.llm.quant import SCHEMES, QuantScheme, scheme
from host.llm.quant4 import dequantize_int4, gptq_int4, rtn_int4, weight_error

from test_host_quant import tiny_gemma  # noqa: F401  (the module-scoped fixture)

INT4_SCHEMES = [name for name, s in SCHEMES.items() if s.int4_kinds]


def _layer(rng, n=96, k=200):
    """A weight matrix with uneven columns and rows, and inputs with correlated,
    uneven channels (as a transformer's are)."""
    w = rng.standard_normal((n, k)) * rng.uniform(0.1, 3, (1, k)) * rng.uniform(0.5, 2, (n, 1))
    w[5] = 0.0                                            # a dead row
    x = rng.standard_normal((600, k)) @ (np.eye(k) + 0.4 * rng.standard_normal((k, k)))
    x *= rng.uniform(0.05, 4, k)
    return w.astype(np.float32), x


def _naive_int4(w):
    """Plain numpy RTN: d = max|row| / 105, s = ceil(max|group| / (7 d)), q rounded."""
    n, k = w.shape
    g = -(-k // 32)
    padded = np.zeros((n, 32 * g), np.float64)
    padded[:, :k] = w
    d = np.maximum(np.abs(w).max(axis=1), 1e-30) / 105
    s = np.clip(np.ceil(np.abs(padded.reshape(n, g, 32)).max(axis=2) / (7 * d[:, None])), 0, 15)
    step = np.repeat(d[:, None] * s, 32, axis=1)[:, :k]
    q = np.clip(np.rint(np.divide(w, step, out=np.zeros_like(step), where=step > 0)), -8, 7)
    return q * step


def test_rtn_int4_ranges_reconstruction_and_search():
    rng = np.random.default_rng(0)
    w, _ = _layer(rng, k=203)                             # K not a multiple of 32
    weights, d = rtn_int4(w)
    assert weights.q.dtype == np.int8 and weights.q.shape == w.shape
    assert weights.q.min() >= -8 and weights.q.max() <= 7
    assert weights.s.dtype == np.uint8 and weights.s.shape == (96, 7) and weights.s.max() <= 15
    assert weights.q.min() == -8 or weights.q.max() == 7
    assert np.all(weights.q[5] == 0) and np.all(weights.s[5] == 0)
    # d * q * s in plain numpy is what dequantize_int4 returns
    scale = np.repeat(weights.s.astype(np.float64), 32, axis=1)[:, :203]
    np.testing.assert_allclose(dequantize_int4(weights, d), d[:, None] * weights.q * scale, rtol=1e-6)
    # the searched d and s beat the obvious choice, row by row
    ours = np.square(w - dequantize_int4(weights, d)).sum(axis=1)
    naive = np.square(w - _naive_int4(w)).sum(axis=1)
    assert np.all(ours <= naive * (1 + 1e-6)) and ours.sum() < 0.9 * naive.sum()
    assert weight_error(w, dequantize_int4(weights, d)) < 0.15


def test_gptq_beats_rtn_on_correlated_inputs():
    rng = np.random.default_rng(1)
    w, x = _layer(rng)
    h = x.T @ x / len(x)
    plain = dequantize_int4(*rtn_int4(w))
    weighted = dequantize_int4(*rtn_int4(w, importance=np.diag(h)))
    weights, d = gptq_int4(w, h)
    assert weights.q.min() >= -8 and weights.q.max() <= 7 and weights.s.max() <= 15
    gptq = dequantize_int4(weights, d)
    # the output error ||(W - W') X^T|| on the calibration inputs
    errors = [np.linalg.norm((w - a) @ x.T) / np.linalg.norm(w @ x.T) for a in (plain, weighted, gptq)]
    assert errors[2] < 0.8 * errors[0] and errors[2] < errors[1]
    assert np.isclose(errors[2], weight_error(w, gptq, h), rtol=1e-6)


def test_scheme_states_its_formats_per_kind():
    mixed = QuantScheme("m", "", int4_kinds=("qkv", "ffn_down"), int4_method="gptq")
    assert [mixed.weight_format(kind) for kind in LAYER_KINDS] == \
        ["int4", "int8", "int8", "int4", "int8"]
    assert mixed.needs_hessians and not QuantScheme("r", "", int4_kinds=("qkv",)).needs_hessians
    with pytest.raises(ValueError, match="int4_method='awq'"):
        QuantScheme("x", "", int4_kinds=("qkv",), int4_method="awq")
    with pytest.raises(ValueError, match="no act_group"):
        QuantScheme("x", "", int4_kinds=("qkv",), act_group=128, group_kinds=("qkv",))
    # an int4 classifier is the whole-model scheme's, or shortlisted (host.llm.linear.Shortlist)
    assert INT4_SCHEMES and all(scheme(n).weight_format("classifier") == "int8" or scheme(n).shortlist
                                for n in INT4_SCHEMES if n != "w4-gptq-all")


@pytest.mark.parametrize("name", INT4_SCHEMES)
def test_int4_schemes_load_int4_where_they_say(tiny_gemma, name):  # noqa: F811
    chosen = scheme(name)
    linears, _ = build_linears(tiny_gemma, GoldenBackend(preset("tiny"), threads=1), chosen)
    for layer_name, layer in linears.layers.items():
        fmt = layer.pieces[0][0][2].packed.format.name.lower()
        assert fmt == chosen.weight_format(layer.kind), layer_name
        if fmt == "int4":      # K cut at 4-bit group edges when it exceeds max_k (128)
            assert all(p0 % 32 == 0 for p0, _, _ in layer.pieces[0])


def test_generate_with_the_default_w4a8_scheme_on_golden(tiny_gemma):  # noqa: F811
    from host.llm.quant import DEFAULT_W4_SCHEME
    runtime = Runtime(tiny_gemma, "golden", DEFAULT_W4_SCHEME, preset="kv260", threads=1)
    result = generate(runtime, "Once upon a time", max_new_tokens=6)
    assert 1 <= len(result.tokens) <= 6 and all(0 <= t < tiny_gemma.config.vocab_size for t in result.tokens)
    again = generate(Runtime(tiny_gemma, "golden", DEFAULT_W4_SCHEME, preset="kv260", threads=2),
                     "Once upon a time", max_new_tokens=6)
    assert again.tokens == result.tokens


SHAPES = [(1, 1, 1), (3, 7, 31), (2, 5, 32), (4, 9, 33), (1, 64, 64), (5, 70, 100), (2, 130, 640),
          (1, 3, 2048)]


@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("fill", ["random", "extremes"])
def test_golden_int4_kernel_is_bit_exact(m, n, k, fill):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    groups = -(-k // 32)
    if fill == "random":
        q = rng.integers(-8, 8, (n, k), dtype=np.int8)
        s = rng.integers(0, 16, (n, groups), dtype=np.uint8)
        x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    else:   # the largest products of both signs: q -8 / 7, s 15 / 0, x -128 / 127
        q = rng.choice(np.array([-8, 7], np.int8), (n, k))
        s = rng.choice(np.array([15, 15, 0], np.uint8), (n, groups))
        x = rng.choice(np.array([-128, 127], np.int8), (m, k))
    weights = Int4Weights(q, s)
    expected = golden_matmul(x, pack_int4(weights, 8))
    for threads in (1, 2):
        backend = GoldenBackend(preset("kv260"), threads=threads, split_min_weights=1)
        handle = backend.load("w", weights)
        assert type(handle.compute).__name__ == "_Int4Rows"
        np.testing.assert_array_equal(backend.matmul(x, handle), expected)
    blocks = kernels.int4_blocks(q, s)
    assert blocks.nbytes == -(-n // 16) * groups * (256 + 16)   # half a byte per weight
    np.testing.assert_array_equal(kernels.int4_matmul(x, blocks), expected)


def test_int4_kernel_rejects_mismatched_activations():
    q, s = np.zeros((2, 40), np.int8), np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match=r"int8 \[M, 40\]"):
        kernels.int4_matmul(np.zeros((1, 39), np.int8), kernels.int4_blocks(q, s))
