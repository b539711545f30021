"""cocotb: the AXI attributes of every DMA burst (``AccelConfig.coherent_io``).

In a ``coherent_io`` build (``tiny``, ``kv260``) the bursts of the data the CPU shares
job by job, A's rows and C, are I/O coherent (``hdl.axi.CACHE_COHERENT``,
``PROT_COHERENT``) and the weight streams are not; in any other build (``small``) every
burst is normal non-cacheable (``CACHE_NORMAL_NONCACHEABLE_BUFFERABLE``, ``PROT_DEFAULT``),
as before the option existed. One job with several M blocks and N tiles, checked
against the golden model, and every AR and AW burst's AxCACHE/AxPROT as the
``AxiMonitor`` of each master saw them.
"""

import random

import cocotb
import numpy as np
import pytest

from hdl.axi import cache_prot
from host.accel.pack import packed_size
from sim.systole_tb import SystoleTB
from sim.top_build import on_presets, run_top


@cocotb.test()
async def a_and_c_coherent_weights_not(dut):
    """A job with M > rows: C golden; A's ARs and every AW carry the coherent pair in a
    coherent_io build, every weight AR (all ports) the non-coherent one."""
    tb = SystoleTB(dut)
    await tb.reset()
    cfg = tb.config
    rng = random.Random(7)
    nprng = np.random.default_rng(7)
    m, n, k = 2 * cfg.rows + 1, cfg.cols + 3, 2 * cfg.bus_bytes + 1   # 3 M blocks, 2 N tiles
    a = nprng.integers(-128, 128, size=(m, k), dtype=np.int8)
    w = nprng.integers(-128, 128, size=(n, k), dtype=np.int8)
    job, before = tb.stage(a, w, rng)
    result = await tb.run_job(job)
    tb.verify(job, a, w, before, result)

    shared = cache_prot(cfg.coherent_io)        # A and C
    plain = cache_prot(False)                   # the weights
    a_range = range(job.a_addr, job.a_addr + job.m * job.a_stride)
    w_range = range(job.w_addr, job.w_addr + packed_size(job.n, job.k, cfg.cols))
    counts = {"A": 0, "W": [0] * cfg.weight_ports, "C": 0}
    for port, mon in enumerate(tb.monitors):
        for channel, addr, beats, cache, prot in mon.bursts:
            where = f"{mon.prefix} {channel} {addr:#x}+{beats}"
            if channel == "AW":
                counts["C"] += 1
                assert (cache, prot) == shared, f"{where}: C burst has {(cache, prot)}, want {shared}"
            elif port == 0 and addr in a_range:
                counts["A"] += 1
                assert (cache, prot) == shared, f"{where}: A burst has {(cache, prot)}, want {shared}"
            else:
                assert addr in w_range, f"{where}: read outside A and W"
                counts["W"][port] += 1
                assert (cache, prot) == plain, f"{where}: weight burst has {(cache, prot)}, want {plain}"
    assert counts["A"] >= m and counts["C"] >= m and all(counts["W"]), f"bursts seen: {counts}"
    dut._log.info(f"{cfg.name} (coherent_io={cfg.coherent_io}): {counts}")


@pytest.mark.parametrize("preset", on_presets("tiny", "small"))
def test_coherent(preset):
    run_top("sim.test_coherent", preset)
