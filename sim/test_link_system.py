"""cocotb: the Nexys Video system (``link_system``): bridge + accelerator, matmuls over the link.

``host.accel.driver`` runs on the real ``host.platforms.link`` code in a cocotb bridge
thread, through ``sim.link_tb``'s bit-level serial line, into the bridge; the bridge's
AXI4-Lite master drives the accelerator's registers, and both AXI4 masters share one
memory (an AxiRam each, one backing store). C must equal ``host.accel.golden`` bit for bit.
Each job runs as one REPLAY exchange; one job without it shows the frames it saves.
"""

from __future__ import annotations

import cocotb
import numpy as np
import pytest
from cocotb.task import bridge

from sim.link_tb import TB, run_link_tests


@cocotb.test()
async def matmul_through_link_and_accelerator(dut):
    """host.accel.driver over the link runs matmuls on the RTL; C equals host.accel.golden bit for bit."""
    tb = TB(dut, system=True)
    await tb.reset()
    from host.accel.driver import Driver
    from host.accel.golden import golden_matmul
    from host.platforms.link import LinkMemory, LinkRegisterBus
    from host.accel.pack import pack_weights
    rng = np.random.default_rng(11)
    config = tb.config
    shapes = [(3, 7, 20), (1, 5, config.max_k), (2 * config.rows + 1, 9, 33)]
    outcomes = []
    frames = {}

    class RequestByRequest(LinkRegisterBus):
        replay = None                                   # the driver's register accesses, one each

    @bridge
    def host():
        link = tb.link()
        link.hello()
        a, w = rng.integers(-128, 128, (3, 20), dtype=np.int8), rng.integers(-128, 128, (7, 20), dtype=np.int8)
        # The same job both ways, each driver in its own half of the memory.
        for name, bus, base in (("request by request", RequestByRequest(link), 1 << 19),
                                ("replay", LinkRegisterBus(link), 0)):
            driver = Driver(bus, LinkMemory(link, base, 1 << 19), config)
            weights = driver.load_matrix(w)
            before = link.frames
            c = driver.matmul(a, weights)
            frames[name] = link.frames - before
            outcomes.append((c, golden_matmul(a, pack_weights(w, config.cols, config.weight_ports)),
                             driver.last_stats))
        for index, (m, n, k) in enumerate(shapes):
            extremes = index == 1
            a = (rng.choice(np.array([-128, 127], np.int8), (m, k)) if extremes
                 else rng.integers(-128, 128, (m, k), dtype=np.int8))
            w = (rng.choice(np.array([-128, 127], np.int8), (n, k)) if extremes
                 else rng.integers(-128, 128, (n, k), dtype=np.int8))
            weights = driver.load_matrix(w)
            c = driver.matmul(a, weights)
            outcomes.append((c, golden_matmul(a, pack_weights(w, config.cols, config.weight_ports)), driver.last_stats))
        return link.frames

    total = await host()
    assert len(outcomes) == len(shapes) + 2
    for c, expected, stats in outcomes:
        np.testing.assert_array_equal(c, expected)
        assert stats.busy_cycles > 0 and stats.write_beats > 0
    assert tb.line.framing_errors == 0
    dut._log.info("%d link frames, %d bytes sent to the board", total, tb.transport.sent)
    dut._log.info("frames per 3x7x20 matmul: %d request by request, %d with REPLAY",
                  frames["request by request"], frames["replay"])
    print(f"frames per 3x7x20 matmul: {frames['request by request']} request by request, "
          f"{frames['replay']} with REPLAY")
    assert frames["replay"] < frames["request by request"] - 10


@pytest.mark.xdist_group("link_system")
def test_matmul_through_the_link():
    """Every cocotb test above, on the bridge wired to the accelerator."""
    run_link_tests(__name__, system=True)
