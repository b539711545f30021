"""The golden backend computes exactly host.accel.golden.golden_matmul, with either kernel."""

import numpy as np
import pytest

from hdl.spec.config import preset
from host.accel import kernels
from host.accel.backend import make_backend
from host.accel.golden import golden_matmul
from host.accel.pack import pack_weights
from host.accel.software import EXACT_CHUNK_K, FloatBackend, GoldenBackend


def integer_reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x.astype(np.int64) @ w.astype(np.int64).T


@pytest.mark.parametrize("kernel", ["int8", "blas"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("m,n,k,preset_name", [
    (1, 640, 640, "kv260"), (5, 37, 1025, "kv260"), (3, 1600, 700, "kv260"),
    (16, 2048, 2048, "kv260"), (2, 9, 100, "tiny"), (7, 33, 1024, "small")])
def test_golden_backend_is_bit_exact_on_random_data(m, n, k, preset_name, threads, kernel):
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    x = rng.integers(-128, 128, size=(m, k), dtype=np.int8)
    w = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
    # a low split threshold so threads=2 really splits these matrices across threads
    backend = GoldenBackend(preset(preset_name), threads=threads, split_min_weights=1000,
                            kernel=kernel)
    handle = backend.load("w", w)
    split = threads if n * k >= 1000 else 1
    if kernel == "blas":
        assert len(handle.compute.blocks) == split
    else:
        assert handle.compute.threads == split
    got = backend.matmul(x, handle)
    assert got.dtype == np.int32 and got.shape == (m, n)
    np.testing.assert_array_equal(got, integer_reference(x, w))
    np.testing.assert_array_equal(got, golden_matmul(x, pack_weights(w, backend.cols, backend.ports)))


def test_golden_backend_uses_the_hardware_packing():
    backend = GoldenBackend(preset("small"), threads=1)
    w = np.arange(-60, 60, dtype=np.int8).reshape(12, 10)
    handle = backend.load("w", w)
    assert handle.packed.data.tobytes() == pack_weights(w, 8).data.tobytes()


def test_auto_kernel_is_the_int8_one():
    """numba is in requirements.lock, so the everyday path is the int8 kernel."""
    assert kernels.available()
    assert GoldenBackend(preset("tiny"), threads=1).kernel == "int8"
    with pytest.raises(ValueError, match="unknown golden kernel 'gpu'"):
        GoldenBackend(preset("tiny"), kernel="gpu")


def test_int8_kernel_refuses_bad_operands():
    x = np.zeros((2, 8), np.int8)
    with pytest.raises(TypeError, match="int8"):
        kernels.int8_matmul(x.astype(np.int16), np.zeros((3, 8), np.int8))
    with pytest.raises(ValueError, match="K=8, weights have K=9"):
        kernels.int8_matmul(x, np.zeros((3, 9), np.int8))
    # non-contiguous operands are accepted (copied), results still exact
    rng = np.random.default_rng(11)
    a = rng.integers(-128, 128, (6, 40), dtype=np.int8)[::2, ::2]
    b = rng.integers(-128, 128, (40, 5), dtype=np.int8).T[:, ::2]
    np.testing.assert_array_equal(kernels.int8_matmul(a, b), integer_reference(a, b))


@pytest.mark.parametrize("kernel", ["int8", "blas"])
@pytest.mark.parametrize("k", [EXACT_CHUNK_K, EXACT_CHUNK_K + 1, 4096])
def test_golden_backend_is_exact_at_the_extremes(k, kernel):
    """|sum| reaches 128*128*K: beyond float32's 2^24 once K > 1024, so chunking must hold."""
    x = np.stack([np.full(k, -128, np.int8), np.full(k, 127, np.int8),
                  np.where(np.arange(k) % 2, 127, -128).astype(np.int8)])
    w = np.stack([np.full(k, -128, np.int8), np.full(k, 127, np.int8),
                  np.where(np.arange(k) % 3, -128, 127).astype(np.int8)])
    backend = GoldenBackend(preset("kv260"), threads=2, split_min_weights=1, kernel=kernel)
    got = backend.matmul(x, backend.load("extremes", w))
    np.testing.assert_array_equal(got, integer_reference(x, w))
    assert got[0, 0] == 128 * 128 * k
    # off-by-one sums just above 2^24 would round in one float32 GEMM
    x2 = np.full((1, k), 127, np.int8)
    w2 = np.full((1, k), 127, np.int8)
    w2[0, 0] = 126
    assert backend.matmul(x2, backend.load("odd", w2))[0, 0] == 127 * 127 * k - 127


def test_bad_arguments_are_refused_clearly():
    backend = make_backend("golden", "tiny")
    with pytest.raises(ValueError, match=r"K=129 outside 1\.\.128"):
        backend.load("too_long", np.zeros((4, 129), np.int8))
    with pytest.raises(TypeError, match="int8"):
        backend.load("float", np.zeros((4, 8), np.float32))
    handle = backend.load("ok", np.zeros((4, 8), np.int8))
    with pytest.raises(TypeError, match="int8"):
        backend.matmul(np.zeros((1, 8), np.int16), handle)
    with pytest.raises(ValueError, match="K=7"):
        backend.matmul(np.zeros((1, 7), np.int8), handle)
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        make_backend("gpu")
    with pytest.raises(KeyError, match="unknown preset"):
        make_backend("golden", "zynq9000")
    with pytest.raises(ValueError, match="float32"):
        FloatBackend(threads=1).matmul(np.zeros((1, 8), np.float64),
                                       FloatBackend(threads=1).load("w", np.zeros((3, 8))))


def test_float_backend_matches_float64_reference():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((1500, 800)).astype(np.float32)
    x = rng.standard_normal((3, 800)).astype(np.float32)
    for threads in (1, 2):
        backend = FloatBackend(threads=threads, split_min_weights=1000)
        got = backend.matmul(x, backend.load("w", w))
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, x.astype(np.float64) @ w.T.astype(np.float64), rtol=1e-4, atol=1e-3)


def test_blas_thread_control():
    from host.accel.blas import blas_threads, get_blas_threads, set_blas_threads

    before = get_blas_threads()
    assert before is not None and before >= 1        # numpy's OpenBLAS was found
    with blas_threads(1):
        assert get_blas_threads() == 1
    assert get_blas_threads() == before
    with pytest.raises(ValueError, match="thread count 0"):
        set_blas_threads(0)
