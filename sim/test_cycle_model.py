"""The cycle model (``host.accel.cycles.job_cycles``) against the RTL's own PERF_BUSY counter.

The RTL runs in co-simulation behind the real driver, and the memory answers after
32 or 64 cycles of the masters' clock (``core_latency`` counts them in the core's); then, for the decode shapes, it is the board's DDR model
(``hdl.spec.ddr``: shared cap, refresh, bank stalls), which the model counts as its
steady rate (``stream_model``). The shapes span decode (M=1, the Gemma 3 layer shapes), prefill
(M = 4*rows), ragged tiles (N not a multiple of cols), small K (drain-bound tiles),
multi-block M, and a random spread drawn with a seed the model was never fitted on;
on a build that runs int4 weights, the decode, prefill and ragged shapes again in
int4 (pair and scale beats, rows/2 tokens per block). Every prediction must be within 5%.
"""

import numpy as np
import pytest

from hdl.spec.boards import BOARDS
from hdl.spec.config import preset
from hdl.spec.ddr import IDEAL, core_latency, ddr_model, stream_model
from hdl.spec.formats import GROUP, WeightFormat
from host.accel.cycles import job_cycles
from host.accel.driver import Driver
from host.accel.pack import Int4Weights


def weights_of(rng, n: int, k: int, fmt: WeightFormat):
    if fmt is WeightFormat.INT8:
        return rng.integers(-128, 128, (n, k), dtype=np.int8)
    return Int4Weights(rng.integers(-8, 8, (n, k), dtype=np.int8),
                       rng.integers(0, 16, (n, -(-k // GROUP)), dtype=np.uint8))

TOLERANCE = 0.05


def shapes(config, seed):
    rng = np.random.default_rng(seed)
    rows = config.rows
    named = [(1, 1024, 640), (1, 2048, 640), (1, 640, 2048), (1, 640, 1024),   # decode
             (4 * rows, 1024, 640),                                            # prefill
             (1, config.cols * 7 + 3, 200), (rows + 3, 37, 96),               # ragged
             (2 * rows, 64, 8), (rows, 96, 24)]                                # small K
    drawn = [(int(rng.integers(1, 3 * rows)), int(rng.integers(1, 700)),
              int(rng.integers(1, min(config.max_k, 1500)))) for _ in range(8)]
    return [(m, n, min(k, config.max_k)) for m, n, k in named + drawn]


@pytest.mark.parametrize("name", [
    pytest.param("small", marks=pytest.mark.xdist_group("cosim-small")),
    pytest.param("kv260", marks=pytest.mark.xdist_group("cosim-kv260")),
])
def test_cycle_model_predicts_perf_busy_within_5_percent(name):
    from host.platforms.sim import CosimSession

    config = preset(name)
    worst = (0.0, None)
    with CosimSession(config, memory_bytes=64 << 20) as session:
        driver = Driver(session.bus, session.memory, config)
        rng = np.random.default_rng(1)
        int4 = WeightFormat.INT4 in config.weight_formats
        for latency in (32, 64):
            session.set_memory("read_latency", latency)
            jobs = [(shape, WeightFormat.INT8) for shape in shapes(config, seed=1000 + latency)]
            if int4 and latency == 32:       # int4's decode, prefill, ragged and small-K shapes
                jobs += [(shape, WeightFormat.INT4) for shape in shapes(config, seed=2000)[4:9]]
            for (m, n, k), fmt in jobs:
                weights = driver.load_matrix(weights_of(rng, n, k, fmt))
                driver.matmul(rng.integers(-128, 128, (m, k), dtype=np.int8), weights)
                driver.free(weights.buffer)
                measured = driver.last_stats.busy_cycles
                predicted = job_cycles(config, m, n, k, core_latency(config, latency), w_format=fmt)
                error = abs(predicted - measured) / measured
                worst = max(worst, (error, (m, n, k, fmt.name, latency, predicted, measured)))
        board = BOARDS["kv260"]                        # its DDR4, at this preset's clock
        controls = ddr_model(config, board)
        latency, rate = stream_model(config, board)
        for control, value in controls.items():
            session.set_memory(control, value)
        decode = [(shape, WeightFormat.INT8) for shape in shapes(config, seed=0)[:4]]
        if int4:
            decode += [(shape, WeightFormat.INT4) for shape in shapes(config, seed=0)[:4]]   # decode
        for (m, n, k), fmt in decode:
            weights = driver.load_matrix(weights_of(rng, n, k, fmt))
            driver.matmul(rng.integers(-128, 128, (m, k), dtype=np.int8), weights)
            driver.free(weights.buffer)
            measured = driver.last_stats.busy_cycles
            predicted = job_cycles(config, m, n, k, latency, rate=rate, w_format=fmt)
            error = abs(predicted - measured) / measured
            worst = max(worst, (error, (m, n, k, fmt.name, f"DDR model {rate:.4f}", predicted, measured)))
        for control, value in IDEAL.items():
            session.set_memory(control, value)
    assert worst[0] <= TOLERANCE, f"worst prediction error {worst[0]:.1%} at (M, N, K, format, latency, " \
                                  f"predicted, measured) = {worst[1]}"
