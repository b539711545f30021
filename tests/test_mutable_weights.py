"""Mutable weights (``IntBackend.load_mutable``): in-place row and column writes and
matmuls over the first n rows, on the golden backend and on the one driver.

References: numpy's integer ``@`` on a plain int8 matrix kept beside, and
``golden_matmul``; the driver runs over ``ComputingDevice``, a register file that
computes each job from device memory with its own reading of the job registers and of
the packed layout (port ``p``'s stream at ``W_ADDR + p * W_STRIDE``, tile-major).
"""

import numpy as np
import pytest

from hdl.spec.config import preset
from hdl.spec.regmap import by_name
from host.accel.bus import MemoryWindow
from host.accel.driver import Driver
from host.accel.golden import golden_matmul
from host.accel.hardware import DriverBackend
from host.accel.pack import pack_weights
from host.accel.software import GoldenBackend
from host.perf.a53 import InstantDevice

KV260 = preset("kv260")          # cols 64 over 4 ports
NEXYS = preset("nexys_video")    # cols 16 over 1 port


class ComputingDevice(InstantDevice):
    """An accelerator that computes ``C = A x W^T`` at ``ap_start`` from the memory window,
    reading the job from its registers and W as the spec lays it out."""

    def __init__(self, config, memory: MemoryWindow):
        super().__init__(config)
        self.config, self.memory = config, memory

    def _reg(self, name):
        return int(self.words[by_name(name).offset >> 2])

    def _addr(self, name):
        return (self._reg(name + "_LO") | self._reg(name + "_HI") << 32) - self.memory.device_address

    def write32(self, offset, value):
        if offset == by_name("CTRL").offset and value & by_name("CTRL").field("ap_start").mask:
            self._compute()
        super().write32(offset, value)

    def _compute(self):
        cfg, mem = self.config, self.memory
        m, n, k = self._reg("M"), self._reg("N"), self._reg("K")
        a_stride, c_stride, w_stride = self._reg("A_STRIDE"), self._reg("C_STRIDE"), self._reg("W_STRIDE")
        a = np.stack([mem.read(self._addr("A_ADDR") + r * a_stride, k).view(np.int8) for r in range(m)])
        tiles, pb = -(-n // cfg.cols), cfg.cols // cfg.weight_ports
        w = np.zeros((tiles * cfg.cols, k), np.int8)
        for port in range(cfg.weight_ports):
            stream = mem.read(self._addr("W_ADDR") + port * w_stride, tiles * k * pb).view(np.int8)
            for tile in range(tiles):
                beats = stream[tile * k * pb:(tile + 1) * k * pb].reshape(k, pb)
                w[tile * cfg.cols + port * pb: tile * cfg.cols + (port + 1) * pb] = beats.T
        c = a.astype(np.int64) @ w[:n].astype(np.int64).T
        for r in range(m):
            mem.write(self._addr("C_ADDR") + r * c_stride, c[r].astype(np.int32))


def computing_backend(config) -> DriverBackend:
    memory = MemoryWindow(bytearray(8 << 20), 0x4000_0000)
    return DriverBackend(config, Driver(ComputingDevice(config, memory), memory, config), "computing")


BACKENDS = {
    "golden-kv260": lambda: GoldenBackend(KV260, threads=1),
    "golden-blas": lambda: GoldenBackend(NEXYS, threads=1, kernel="blas"),
    "driver-kv260": lambda: computing_backend(KV260),
    "driver-nexys": lambda: computing_backend(NEXYS),
}


@pytest.mark.parametrize("which", sorted(BACKENDS))
def test_rows_and_columns_written_in_place_multiply_as_numpy(which):
    backend = BACKENDS[which]()
    rng = np.random.default_rng(7)
    capacity, k = 150, 40                            # not a multiple of cols: a partial last tile
    handle = backend.load_mutable("keys", capacity, k)
    mirror = np.zeros((capacity, k), np.int8)
    x = rng.integers(-127, 128, (3, k)).astype(np.int8)
    for step in range(12):
        if step % 3 == 2:                              # a block of columns
            start, count = int(rng.integers(0, k - 5)), 5
            cols = rng.integers(-128, 128, (capacity, count)).astype(np.int8)
            backend.write_columns(handle, start, cols)
            mirror[:, start:start + count] = cols
        else:                                          # one row, or a few
            start, count = int(rng.integers(0, capacity - 3)), 1 + step % 3
            rows = rng.integers(-128, 128, (count, k)).astype(np.int8)
            backend.write_rows(handle, start, rows)
            mirror[start:start + count] = rows
        for n in (1, 63, 64, 65, int(rng.integers(1, capacity + 1)), capacity):
            got = backend.matmul_rows(x, handle, n)
            want = x.astype(np.int64) @ mirror[:n].astype(np.int64).T
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got, golden_matmul(x, pack_weights(mirror[:n], backend.cols,
                                                                             backend.ports)))
    np.testing.assert_array_equal(backend.read_mutable(handle), mirror)
    backend.release_mutable(handle)


def test_driver_writes_touch_only_the_changed_bytes():
    backend = computing_backend(KV260)
    handle = backend.load_mutable("values", 256, 512)
    memory = backend.driver.memory
    before = memory.read(handle.device.buffer.offset, handle.device.buffer.nbytes)
    backend.write_columns(handle, 100, np.ones((256, 1), np.int8))
    after = memory.read(handle.device.buffer.offset, handle.device.buffer.nbytes)
    assert np.count_nonzero(after != before) == 256      # one byte per row, nothing else


def test_bad_mutable_arguments_are_refused():
    backend = GoldenBackend(KV260, threads=1)
    with pytest.raises(ValueError, match="outside 1.."):
        backend.load_mutable("k", 8, KV260.max_k + 1)
    with pytest.raises(ValueError, match="n=0"):
        backend.load_mutable("k", 0, 8)
    handle = backend.load_mutable("k", 8, 4)
    with pytest.raises(ValueError, match="outside 0..7"):
        backend.write_rows(handle, 7, np.zeros((2, 4), np.int8))
    with pytest.raises(ValueError, match="int8"):
        backend.write_columns(handle, 0, np.zeros((8, 1), np.float32))
    with pytest.raises(ValueError, match="capacity"):
        backend.matmul_rows(np.zeros((1, 4), np.int8), handle, 9)
