"""Weight packing and the golden model against independent references."""

import numpy as np
import pytest

from host.accel.golden import golden_matmul
from host.accel.pack import pack_weights, packed_size, unpack_weights


def pack_by_loops(w: np.ndarray, cols: int) -> bytes:
    """The layout as the docs state it, one byte at a time."""
    n, k = w.shape
    out = bytearray()
    for tile in range(-(-n // cols)):
        for kk in range(k):
            for c in range(cols):
                ch = tile * cols + c
                out.append(int(w[ch, kk]) & 0xFF if ch < n else 0)
    return bytes(out)


@pytest.mark.parametrize("n,k,cols", [(1, 1, 4), (5, 3, 4), (16, 7, 16), (33, 20, 8), (7, 64, 16)])
def test_pack_matches_loop_definition_and_round_trips(n, k, cols):
    rng = np.random.default_rng(n * 1000 + k)
    w = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
    packed = pack_weights(w, cols)
    assert packed.data.tobytes() == pack_by_loops(w, cols)
    assert packed.nbytes == packed_size(n, k, cols)
    np.testing.assert_array_equal(unpack_weights(packed), w)


@pytest.mark.parametrize("m,n,k", [(1, 17, 33), (9, 8, 1), (3, 40, 640)])
def test_golden_equals_float64_reference(m, n, k):
    rng = np.random.default_rng(m + n + k)
    a = rng.integers(-128, 128, size=(m, k), dtype=np.int8)
    w = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
    # float64 sums of products < 2^14 are exact far beyond these K (NOTES.md).
    expected = (a.astype(np.float64) @ w.astype(np.float64).T).astype(np.int64)
    got = golden_matmul(a, pack_weights(w, 8))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


def test_golden_reaches_extremes_exactly():
    k = 4096
    a = np.full((2, k), -128, np.int8)
    w = np.stack([np.full(k, -128, np.int8), np.full(k, 127, np.int8)])
    got = golden_matmul(a, pack_weights(w, 16))
    assert got.tolist() == [[128 * 128 * k, -128 * 127 * k]] * 2


def test_bad_inputs_are_refused_with_clear_errors():
    with pytest.raises(TypeError, match="int8"):
        pack_weights(np.zeros((2, 2), np.int16), 4)
    with pytest.raises(ValueError, match="2-D"):
        pack_weights(np.zeros(4, np.int8), 4)
    packed = pack_weights(np.zeros((4, 8), np.int8), 4)
    with pytest.raises(ValueError, match="K=7"):
        golden_matmul(np.zeros((1, 7), np.int8), packed)
