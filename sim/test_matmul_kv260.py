"""cocotb: the shapes only the kv260 build can take, on its generated top.

A Gemma-sized decode row (K=640) and K = max_k need the 32 KiB activation buffer,
and the 8x64 array streams its weights over four ports, so this module runs on the
kv260 preset alone; every test of ``sim.test_matmul`` runs on the small presets. The
capability test of ``sim.test_matmul`` runs here too (its values differ per build).
"""

import random

import cocotb
import numpy as np
import pytest

from sim.dma_traffic import pause_pairing
from sim.systole_tb import SystoleTB
# cocotb runs every test found in this module's namespace: the imported one too.
from sim.test_matmul import capabilities_match_config, operands  # noqa: F401
from sim.top_build import run_top


@cocotb.test()
async def kv260_shapes(dut):
    """Decode and a multi-block prefill on the 8x64 build, under changing pauses on
    every port."""
    tb = SystoleTB(dut)
    await tb.reset()
    cfg = tb.config
    rng = random.Random(2)
    nprng = np.random.default_rng(2)
    shapes = [(1, 3 * cfg.cols - 5, 640), (cfg.rows + 3, 2 * cfg.cols + 1, 40),
              (2, cfg.cols, cfg.max_k), (2 * cfg.rows + 3, 4 * cfg.cols + 7, 37), (1, 1, 1)]
    for index, (m, n, k) in enumerate(shapes):
        # Idle and back-pressure change independently from job to job.
        tb.set_pauses(*pause_pairing(4 * index), seed=index)
        a, w = operands(nprng, m, n, k, extremes=index == 2)
        await tb.check_matmul(a, w, rng)


@pytest.mark.xdist_group("top-kv260")
def test_matmul_kv260():
    run_top("sim.test_matmul_kv260", "kv260")
