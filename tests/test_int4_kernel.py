"""The golden backend's int4 kernel (host.accel.kernels.int4_matmul) against
golden_matmul bit for bit: K not a multiple of 32, N not a multiple of the 16-channel
block, M 1..5, the extremes of q, s and x, one and two threads, and the plain-numba
kernel (the one CPUs without AVX-512 VNNI run) on the same layout."""

import numpy as np
import pytest

from host.accel import kernels
from host.accel.golden import golden_matmul
from host.accel.pack import Int4Weights, pack_int4

pytestmark = pytest.mark.skipif(not kernels.available(), reason="needs numba")

SHAPES = [(1, 1, 1), (1, 16, 32), (2, 17, 33), (3, 15, 63), (4, 31, 95), (5, 48, 640),
          (1, 100, 1000), (2, 33, 2048), (1, 257, 65)]


def _case(rng, m, n, k, fill):
    groups = -(-k // 32)
    if fill == "random":
        q = rng.integers(-8, 8, (n, k), dtype=np.int8)
        s = rng.integers(0, 16, (n, groups), dtype=np.uint8)
        x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    elif fill == "extremes":   # the largest products of both signs
        q = rng.choice(np.array([-8, 7], np.int8), (n, k))
        s = rng.choice(np.array([15, 15, 0], np.uint8), (n, groups))
        x = rng.choice(np.array([-128, 127], np.int8), (m, k))
    else:                      # every group at the int32 bound of one sign: x -128, q -8, s 15
        q = np.full((n, k), -8, np.int8)
        s = np.full((n, groups), 15, np.uint8)
        x = np.full((m, k), -128 if fill == "largest" else 127, np.int8)
    return x, Int4Weights(q, s)


def _portable(x, blocks):
    """int4_matmul through the plain-numba kernel."""
    from host.accel import _numba_matmul
    groups = blocks.data.shape[1]
    padded = np.zeros((x.shape[0], 32 * groups), np.int8)
    padded[:, :x.shape[1]] = x
    out = np.empty((x.shape[0], 16 * blocks.data.shape[0]), np.int32)
    _numba_matmul.int4_portable(padded, blocks.data, out)
    return out[:, :blocks.n]


@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("fill", ["random", "extremes", "largest", "smallest"])
def test_int4_kernel_matches_golden(m, n, k, fill):
    rng = np.random.default_rng(m * 100003 + n * 101 + k)
    x, weights = _case(rng, m, n, k, fill)
    expected = golden_matmul(x, pack_int4(weights, 8))
    blocks = kernels.int4_blocks(weights.q, weights.s)
    for threads in (1, 2):
        got = kernels.int4_matmul(x, blocks, threads)
        assert got.dtype == np.int32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(_portable(x, blocks), expected)


def test_int4_blocks_layout_and_size():
    rng = np.random.default_rng(7)
    q = rng.integers(-8, 8, (20, 40), dtype=np.int8)
    s = rng.integers(0, 16, (20, 2), dtype=np.uint8)
    blocks = kernels.int4_blocks(q, s)
    assert blocks.data.shape == (2, 2, 272) and blocks.nbytes == 2 * 2 * 272
    # block 1, group 0: channel 3 (row 19), step 5 is in chunk 1, byte 4 * 3 + 1, low nibble
    assert blocks.data[1, 0, 64 + 13] & 15 == q[19, 5] + 8
    assert blocks.data[1, 0, 64 + 13] >> 4 == q[19, 21] + 8
    assert blocks.data[1, 0, 256 + 3] == s[19, 0]
    assert np.all(blocks.data[1, :, 256 + 4:] == 0)             # channels past N: s = 0
    with pytest.raises(ValueError, match="one per 32 steps"):
        kernels.int4_blocks(q, s[:, :1])
