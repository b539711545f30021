"""cocotb benchmark module (run by ``python -m gen.bench``, not collected by pytest).

Runs the matmul shapes given in ``$SYSTOLE_BENCH_SHAPES`` (JSON list of ``[M, K, N]``)
on the generated top against ``LatencyRam`` with ``$SYSTOLE_BENCH_LATENCY`` cycles of
read latency and no injected stalls. Every result is checked bit for bit against
``host.accel.golden`` (a fast design that computes the wrong thing is no design). The
counters of each job go to the JSON file ``$SYSTOLE_BENCH_OUT``.
"""

import json
import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np

from sim.systole_tb import SystoleTB


@cocotb.test()
async def bench_shapes(dut):
    """Each shape once, counters recorded."""
    latency = int(os.environ.get("SYSTOLE_BENCH_LATENCY", "32"))
    shapes = json.loads(os.environ["SYSTOLE_BENCH_SHAPES"])
    out = Path(os.environ["SYSTOLE_BENCH_OUT"])
    tb = SystoleTB(dut, memory="latency", read_latency=latency, monitor=False)
    await tb.reset()
    rng = random.Random(0)
    nprng = np.random.default_rng(0)
    records = []
    for m, k, n in shapes:
        a = nprng.integers(-128, 128, size=(m, k), dtype=np.int8)
        w = nprng.integers(-128, 128, size=(n, k), dtype=np.int8)
        started = time.monotonic()
        result = await tb.check_matmul(a, w, rng)
        records.append({"m": m, "k": k, "n": n, "perf_busy": result.perf_busy,
                        "perf_stall": result.perf_stall, "rd_beats": result.perf_rd_beats,
                        "wr_beats": result.perf_wr_beats,
                        "wall_s": round(time.monotonic() - started, 2)})
        dut._log.info(f"M={m} K={k} N={n}: PERF_BUSY={result.perf_busy} "
                      f"PERF_STALL={result.perf_stall}")
        out.write_text(json.dumps(records))
