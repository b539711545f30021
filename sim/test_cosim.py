"""The driver over the co-simulated RTL: jobs, every error path, recovery, determinism.

These run the real register-level driver (``host.accel.driver``) against the generated
Verilog in Verilator (``host.platforms.sim``). Results are checked bit for bit
against ``host.accel.golden``.
"""

import numpy as np
import pytest

from hdl.spec.config import preset
from hdl.spec.regmap import ErrorCode
from host.accel.driver import AcceleratorTimeout, ConfigMismatch, DmaError, Driver, JobRefused
from host.accel.golden import golden_matmul
from host.accel.pack import pack_weights
from hdl.spec.ddr import IDEAL, RATE_ONE

CONFIG = preset("small")
pytestmark = pytest.mark.xdist_group("cosim-small")


@pytest.fixture(scope="module")
def session():
    from host.platforms.sim import CosimSession
    with CosimSession(CONFIG, memory_bytes=16 << 20) as running:
        yield running


@pytest.fixture
def driver(session):
    for control, value in IDEAL.items():
        session.set_memory(control, value)
    for control in ("fault_read", "fault_write", "hang"):
        session.set_memory(control, 0)
    return Driver(session.bus, session.memory, CONFIG)


def random_job(rng, m, n, k):
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    return a, w


def assert_good_job(driver, rng, m=5, n=19, k=40):
    a, w = random_job(rng, m, n, k)
    got = driver.matmul(a, driver.load_matrix(w))
    np.testing.assert_array_equal(got, golden_matmul(a, pack_weights(w, CONFIG.cols, CONFIG.weight_ports)))


def test_matmuls_match_golden_with_counters(driver):
    rng = np.random.default_rng(0)
    for m, n, k in [(1, 1, 1), (1, 64, 256), (4, 9, 17), (9, 33, CONFIG.max_k)]:
        a, w = random_job(rng, m, n, k)
        weights = driver.load_matrix(w)
        got = driver.matmul(a, weights)
        np.testing.assert_array_equal(got, golden_matmul(a, pack_weights(w, CONFIG.cols, CONFIG.weight_ports)))
        stats = driver.last_stats
        tiles, blocks = -(-n // CONFIG.cols), -(-m // CONFIG.rows)
        a_beats = m * -(-k // CONFIG.bus_bytes)
        assert stats.read_beats == blocks * tiles * k + a_beats
        assert stats.write_beats == m * sum(-(-4 * min(CONFIG.cols, n - t * CONFIG.cols)
                                              // CONFIG.bus_bytes) for t in range(tiles))
        assert stats.busy_cycles >= blocks * tiles * k


def test_matmuls_bit_exact_under_a_harsh_ddr_model(driver, session):
    """Bandwidth cap, refresh and bank stalls on reads and writes (far harsher than any
    board's) slow jobs down and never change a bit of C."""
    rng = np.random.default_rng(7)
    shapes = [(1, 64, 256), (5, 19, 40), (9, 33, CONFIG.max_k)]
    ideal_busy = []
    for m, n, k in shapes:
        a, w = random_job(rng, m, n, k)
        driver.matmul(a, driver.load_matrix(w))
        ideal_busy.append(driver.last_stats.busy_cycles)
    harsh = {"read_latency": 64, "ddr_rate": round(0.4 * RATE_ONE), "refresh_period": 300,
             "refresh_cycles": 40, "bank_stall_rate": RATE_ONE // 16, "bank_stall_cycles": 5}
    for control, value in harsh.items():
        session.set_memory(control, value)
    rng = np.random.default_rng(7)
    for (m, n, k), before in zip(shapes, ideal_busy):
        a, w = random_job(rng, m, n, k)
        got = driver.matmul(a, driver.load_matrix(w))
        np.testing.assert_array_equal(got, golden_matmul(a, pack_weights(w, CONFIG.cols, CONFIG.weight_ports)))
        assert driver.last_stats.busy_cycles > before, (m, n, k, before)


def test_refused_jobs_raise_and_leave_it_usable(driver, session):
    """Each bad job: the hardware refuses it with its code (no DMA beat), and the driver's
    pre-check refuses it the same way without a single bus access."""
    rng = np.random.default_rng(1)
    base = session.memory.device_address
    good = dict(a_addr=base, w_addr=base + 0x10000, c_addr=base + 0x20000, m=1, n=8, k=8,
                a_stride=CONFIG.bus_bytes, c_stride=32)
    cases = [
        (dict(m=0), ErrorCode.M_RANGE),
        (dict(m=0x1000001), ErrorCode.M_RANGE),          # would run as M=1 if truncated
        (dict(n=0), ErrorCode.N_RANGE),
        (dict(k=0), ErrorCode.K_RANGE),
        (dict(k=0x10010, a_stride=0x10010), ErrorCode.K_RANGE),   # would run as K=16
        (dict(k=CONFIG.max_k + 1, a_stride=CONFIG.max_k + CONFIG.bus_bytes), ErrorCode.A_OVERFLOW),
        (dict(a_addr=base + 4), ErrorCode.ALIGN),
        (dict(a_stride=4, k=8), ErrorCode.ALIGN),
        (dict(c_stride=16, n=8), ErrorCode.STRIDE),
        (dict(c_addr=(1 << CONFIG.addr_width) - 16), ErrorCode.ADDR_RANGE),
    ]
    for change, code in cases:
        job = {**good, **change}
        with pytest.raises(JobRefused) as by_hardware:
            driver.run_job(**job, precheck=False)
        assert by_hardware.value.code == code, (change, by_hardware.value)
        assert driver.last_stats.read_beats == 0 and driver.last_stats.write_beats == 0
        requests = session.requests
        with pytest.raises(JobRefused, match="the driver") as by_driver:
            driver.run_job(**job)
        assert (by_driver.value.code, by_driver.value.address) == \
            (by_hardware.value.code, by_hardware.value.address), change
        assert session.requests == requests, "the pre-check touched the bus"
        assert_good_job(driver, rng)


@pytest.mark.parametrize("direction", ["read", "write"])
def test_dma_errors_raise_with_the_address_and_recover(driver, session, direction):
    rng = np.random.default_rng(2)
    a, w = random_job(rng, 2, 40, 64)
    weights = driver.load_matrix(w)
    if direction == "read":
        lo = weights.buffer.device_address + 1024
    else:
        driver.matmul(a, weights)                    # allocates the result buffer
        lo = driver._planned(weights, *a.shape)[3].device_address      # the plan's C buffer
    session.set_memory("fault_lo", lo)
    session.set_memory("fault_hi", lo + 64)
    session.set_memory(f"fault_{direction}", 1)
    with pytest.raises(DmaError) as failed:
        driver.matmul(a, weights)
    expected = ErrorCode.DMA_READ if direction == "read" else ErrorCode.DMA_WRITE
    assert failed.value.code == expected
    assert lo - CONFIG.max_burst * CONFIG.bus_bytes < failed.value.address < lo + 64
    session.set_memory(f"fault_{direction}", 0)
    np.testing.assert_array_equal(driver.matmul(a, weights),
                                  golden_matmul(a, pack_weights(w, CONFIG.cols, CONFIG.weight_ports)))


def test_timeout_soft_resets_and_recovers(driver, session):
    rng = np.random.default_rng(3)
    a, w = random_job(rng, 1, 16, 32)
    weights = driver.load_matrix(w)
    session.set_memory("read_latency", 20000)       # far beyond the job's timeout
    with pytest.raises(AcceleratorTimeout, match="soft-reset"):
        driver.run_job(a_addr=weights.buffer.device_address, w_addr=weights.buffer.device_address,
                       c_addr=weights.buffer.device_address + 4096, m=1, n=16, k=32,
                       a_stride=32, c_stride=64, timeout_s=2e-6)
    session.set_memory("read_latency", 32)
    assert_good_job(driver, rng)


def test_capability_mismatch_is_refused(session):
    for wrong in (preset("tiny"), CONFIG.replace(act_buffer_bytes=2 * CONFIG.act_buffer_bytes)):
        with pytest.raises(ConfigMismatch, match="CAP_"):
            Driver(session.bus, session.memory, wrong)
    assert_good_job(Driver(session.bus, session.memory, CONFIG), np.random.default_rng(4))
