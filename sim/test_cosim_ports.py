"""The driver over the co-simulated RTL of a build with two weight ports (``tiny``).

The driver lays each port's stream out on its own 4 KiB pages (``W_STRIDE`` = the
stream rounded up to a page); a read fault inside any port's stream ends the job with
that port in ``ERR_PORT`` and the ``DmaError`` naming its master; the engine is reusable
afterwards. Results are checked bit for bit against ``host.accel.golden``.
"""

import numpy as np
import pytest

from hdl.spec.config import preset
from hdl.spec.regmap import ErrorCode
from host.accel.driver import DmaError, Driver
from host.accel.golden import golden_matmul
from host.accel.pack import pack_weights

CONFIG = preset("tiny")
pytestmark = pytest.mark.xdist_group("cosim-tiny")


@pytest.fixture(scope="module")
def session():
    from host.platforms.sim import CosimSession
    with CosimSession(CONFIG, memory_bytes=4 << 20) as running:
        yield running


def test_streams_on_their_own_pages_and_faults_on_every_port(session):
    assert CONFIG.weight_ports == 2
    driver = Driver(session.bus, session.memory, CONFIG)
    rng = np.random.default_rng(7)
    m, n, k = 3, 5 * CONFIG.cols + 3, 100
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    packed = pack_weights(w, CONFIG.cols, CONFIG.weight_ports)
    weights = driver.load_matrix(w)
    stream = packed.stream_bytes
    assert weights.w_stride == -(-stream // 4096) * 4096 and weights.w_stride % 4096 == 0
    base = weights.buffer.offset
    for port in range(CONFIG.weight_ports):
        stored = session.memory.read(base + port * weights.w_stride, stream).view(np.int8)
        np.testing.assert_array_equal(stored, packed.streams()[port].reshape(-1))
    expected = golden_matmul(a, packed)
    np.testing.assert_array_equal(driver.matmul(a, weights), expected)
    for port in range(CONFIG.weight_ports):
        lo = weights.buffer.device_address + port * weights.w_stride + stream // 2
        session.set_memory("fault_lo", lo)
        session.set_memory("fault_hi", lo + CONFIG.bus_bytes)
        session.set_memory("fault_read", 1)
        with pytest.raises(DmaError, match=rf"on read port {port} \({CONFIG.weight_masters[port]}\)") as failed:
            driver.matmul(a, weights)
        session.set_memory("fault_read", 0)
        assert (failed.value.code, failed.value.port) == (ErrorCode.DMA_READ, port)
        assert lo - CONFIG.max_burst * CONFIG.bus_bytes < failed.value.address <= lo
        np.testing.assert_array_equal(driver.matmul(a, weights), expected)
