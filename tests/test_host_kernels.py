"""host.llm.kernels' one-token quantize/dequantize equal host.llm.quant's numpy arithmetic bit
for bit, so the golden backend's results do not depend on whether numba is present."""

import numpy as np
import pytest

from host.llm import kernels
from host.llm.quant import QMAX, quantize_activations

QMAX_INVERSE = np.float32(1.0 / QMAX)
TINY = np.float32(np.finfo(np.float32).tiny)


def numpy_quantize(x: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """The numpy path's float32 arithmetic, written out independently."""
    amax = np.float32(np.abs(x).max())
    scale = max(amax * np.float32(1.0 / QMAX), np.float32(np.finfo(np.float32).tiny))
    return np.rint(x * (np.float32(1.0) / scale)).astype(np.int8), scale


@pytest.mark.parametrize("case", ["normal", "outlier", "zeros", "ties", "negative-max"])
def test_quantize_row_matches_numpy(case):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 640)).astype(np.float32)
    if case == "outlier":
        x[0, 17] = 300.0
    elif case == "zeros":
        x[:] = 0.0
    elif case == "ties":      # scale ~1: x.5 values sit on rounding ties (rint: to even)
        x = np.concatenate([[127.0], np.arange(-126.5, 126.0, 1.0)]).astype(np.float32)[None, :]
    elif case == "negative-max":
        x[0, 3] = -50.0
    fused = kernels.quantize_row(np.ascontiguousarray(x), QMAX_INVERSE, TINY)
    assert fused is not None
    q, scale = fused
    want_q, want_scale = numpy_quantize(x)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (1, 1)
    assert scale[0, 0] == want_scale
    np.testing.assert_array_equal(q, want_q)
    assert np.abs(q.astype(np.int32)).max() <= QMAX
    # the public entry point takes this path and agrees with the general (M > 1) one
    q1, s1 = quantize_activations(x, np.array([0]), np.array([x.shape[1]]))
    q2, s2 = quantize_activations(np.vstack([x, x]), np.array([0]), np.array([x.shape[1]]))
    np.testing.assert_array_equal(q1, q2[:1])
    np.testing.assert_array_equal(s1, s2[:1])


def test_dequantize_row_matches_numpy():
    rng = np.random.default_rng(6)
    acc = rng.integers(-(1 << 24), 1 << 24, (1, 4099), dtype=np.int32)
    w_scale = rng.random(4099, dtype=np.float32) * np.float32(0.01)
    x_scale = np.float32(0.037)
    got = kernels.dequantize_row(acc, w_scale, x_scale)
    np.testing.assert_array_equal(got, np.multiply(acc, w_scale * x_scale, dtype=np.float32))


def test_kernels_decline_what_they_cannot_take():
    x = np.zeros((2, 8), np.float32)
    assert kernels.quantize_row(x, QMAX_INVERSE, TINY) is None    # two tokens
    assert kernels.quantize_row(x[:1].astype(np.float64), QMAX_INVERSE, TINY) is None
    assert kernels.quantize_row(np.zeros((1, 16), np.float32)[:, ::2], QMAX_INVERSE, TINY) is None
    acc = np.zeros((1, 4), np.int32)
    assert kernels.dequantize_row(acc, np.ones(5, np.float32), np.float32(1)) is None
    assert kernels.dequantize_row(acc.astype(np.int64), np.ones(4, np.float32), np.float32(1)) is None
