"""Weight packing and the golden model against independent references."""

import numpy as np
import pytest

from host.accel.golden import golden_matmul
from host.accel.pack import Int4Weights, pack_int4, pack_weights, packed_size, unpack_int4, unpack_weights


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


# ---- 4-bit weights (hdl.spec.formats), checked byte by byte against the definition ----


def _int4_reference_stream(q, s, cols, ports, port, tile):
    """One port's beats of one tile, spelled out from the format's docstring."""
    n, k = q.shape
    pb = cols // ports
    beats = []

    def channel(j):
        return tile * cols + port * pb + j

    def scale(c, g):
        return int(s[c, g]) if c < n and g < s.shape[1] else 0

    def weight(c, step):
        return int(q[c, step]) & 0xF if c < n and step < k else 0

    for block in range(-(-k // 64)):
        beats.append([scale(channel(j), 2 * block) | scale(channel(j), 2 * block + 1) << 4
                      for j in range(pb)])
        for pair in range(min(32, -(-(k - 64 * block) // 2))):
            step = 64 * block + 2 * pair
            beats.append([weight(channel(j), step) | weight(channel(j), step + 1) << 4
                          for j in range(pb)])
    return beats


@pytest.mark.parametrize("n,k,cols,ports", [(5, 7, 4, 1), (17, 130, 8, 2), (64, 64, 16, 4),
                                            (3, 1, 4, 2), (9, 95, 8, 1), (8, 129, 8, 1)])
def test_int4_packing_matches_the_definition_byte_by_byte(n, k, cols, ports):
    rng = np.random.default_rng(n * 1000 + k)
    q = rng.integers(-8, 8, (n, k)).astype(np.int8)
    s = rng.integers(0, 16, (n, -(-k // 32))).astype(np.uint8)
    packed = pack_int4(Int4Weights(q, s), cols, ports)
    assert packed.nbytes == packed_size(n, k, cols, 1) == packed.tiles * cols * packed.tile_beats
    streams = packed.streams().view(np.uint8)
    for port in range(ports):
        for tile in range(packed.tiles):
            np.testing.assert_array_equal(streams[port, tile],
                                          np.array(_int4_reference_stream(q, s, cols, ports, port, tile)))
    back = unpack_int4(packed)
    np.testing.assert_array_equal(back.q, q)
    np.testing.assert_array_equal(back.s, s)


def test_int4_product_is_exact_with_scales_folded_in():
    rng = np.random.default_rng(3)
    n, k = 11, 100
    q = rng.integers(-8, 8, (n, k)).astype(np.int8)
    q[0] = -8
    q[1] = 7
    s = rng.integers(0, 16, (n, 4)).astype(np.uint8)
    s[0] = 15
    s[1] = 15
    a = rng.integers(-128, 128, (3, k)).astype(np.int8)
    a[0] = -128
    expected = np.zeros((3, n), np.int64)
    for c in range(n):
        for step in range(k):
            expected[:, c] += a[:, step].astype(np.int64) * int(q[c, step]) * int(s[c, step // 32])
    got = golden_matmul(a, pack_int4(Int4Weights(q, s), 8, 2))
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.int32


def test_int4_weights_refuse_out_of_range_values():
    q = np.zeros((2, 40), np.int8)
    s = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match="-8..7"):
        Int4Weights(q + 8, s)
    with pytest.raises(ValueError, match="0..15"):
        Int4Weights(q, s + 16)
    with pytest.raises(TypeError, match=r"ceil\(K/32\)"):
        Int4Weights(q, np.zeros((2, 1), np.uint8))
    packed = pack_int4(Int4Weights(q, s), 4)
    with pytest.raises(ValueError, match="effective"):
        packed.beats()
