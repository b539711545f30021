"""The DDR behind the DMA as ``SimMemory`` models it and the projections count it:
latency, shared bandwidth cap, refresh and bank stalls, in accelerator cycles.

``ddr_model(config, board)`` gives the ``SimMemory`` control values
(``host.platforms.sim.MEMORY_CONTROLS``) for a board's DRAM at ``config.clock_mhz``, and
``beats_per_cycle`` what they deliver to each port in the long run (the rate the cycle
model, ``host.accel.cycles``, streams at in the board projections);
``IDEAL`` is the free memory the earlier benchmarks measured against (32-cycle
latency, one beat per cycle, no stalls). Constants and their sources:

- ``READ_LATENCY = 64`` cycles per port: issue 14's floor for a Zynq US+ HP port
  (256 ns at 250 MHz; the PS DDR controller's measured idle latency is in that range).
- Bandwidth cap: ``board.dram_bytes_per_s * DDR_EFFICIENCY`` shared by all ports
  (KV260: DDR4 64-bit 2400 MT/s = 19.2 GB/s, ``hdl.spec.boards``). ``DDR_EFFICIENCY
  = 0.85``: published KV260 LLM designs reach 85-94% of the DDR peak (NOTES.md), so
  the low end. As a rate it is ``cap / (bus_bytes * clock)`` beats per cycle in
  1/2**16 steps: one token bucket that all of ``SimMemory``'s ports draw from.
- Refresh: ``T_REFI_S = 7.8e-6`` (DDR4 average refresh interval at <= 85 C) and
  ``T_RFC_S = 350e-9`` (DDR4 8 Gb die; the K26 SOM's 4 GB are four 8 Gb x16 parts),
  JEDEC JESD79-4: the memory serves nothing for tRFC once per tREFI.
- Bank stalls: ``BANK_STALL_CYCLES = 7`` (tRP + tRCD = 2 x 13.75 ns, DDR4-2400
  17-17-17, about 7 cycles at 250 MHz) at ``BANK_STALL_PER_CYCLE = 1/512``: one row
  miss per 8 KiB (a 64-bit rank's row) of a 16-byte-beat stream. This is an estimate,
  not a measurement: a controller hides most row misses behind other banks.

Only the cap comes from the board; latency, refresh and bank constants are the KV260's
DDR4 ones for every board (the Nexys Video's DDR3 4 Gb parts have tRFC = 260 ns, so
its model refreshes a little too long).
"""

from __future__ import annotations

import math

from .boards import Board
from .config import AccelConfig

__all__ = ["stream_model", "READ_LATENCY", "DDR_EFFICIENCY", "T_REFI_S", "T_RFC_S", "BANK_STALL_CYCLES",
           "BANK_STALL_PER_CYCLE", "RATE_ONE", "IDEAL", "ddr_model", "beats_per_cycle"]

READ_LATENCY = 64
DDR_EFFICIENCY = 0.85
T_REFI_S = 7.8e-6
T_RFC_S = 350e-9
BANK_STALL_CYCLES = 7
BANK_STALL_PER_CYCLE = 1 / 512
RATE_ONE = 1 << 16            # ddr_rate and bank_stall_rate are fractions of this

# The memory the benchmarks used before issue 14: no cap, no refresh, no stalls.
IDEAL = {"read_latency": 32, "ddr_rate": 0, "refresh_period": 0, "refresh_cycles": 0,
         "bank_stall_rate": 0, "bank_stall_cycles": 0}


def ddr_model(config: AccelConfig, board: Board) -> dict[str, int]:
    """``SimMemory`` control values for ``board``'s DRAM at ``config.clock_mhz``: the cap
    is the whole DRAM's, in beats of one port, shared by all of ``SimMemory``'s ports."""
    clock_hz = config.clock_mhz * 1e6
    cap_beats = board.dram_bytes_per_s * DDR_EFFICIENCY / (config.bus_bytes * clock_hz)
    return {"read_latency": READ_LATENCY,
            "ddr_rate": max(1, round(cap_beats * RATE_ONE)),
            "refresh_period": round(T_REFI_S * clock_hz),
            "refresh_cycles": math.ceil(T_RFC_S * clock_hz),
            "bank_stall_rate": round(BANK_STALL_PER_CYCLE * RATE_ONE),
            "bank_stall_cycles": BANK_STALL_CYCLES}


def beats_per_cycle(controls: dict[str, int], ports: int = 1) -> float:
    """The long-run beats per cycle ``controls`` let each of ``ports`` saturating streams
    have: the lower of the port (1) and its share of the cap, times the share left by
    refresh and bank stalls (a first-order estimate: refresh and stalls are taken as
    independent)."""
    rate = controls.get("ddr_rate", 0) / ports
    peak = 1.0 if rate == 0 else min(1.0, rate / RATE_ONE)
    period = controls.get("refresh_period", 0)
    refresh_free = 1.0 if period == 0 else 1 - min(controls["refresh_cycles"], period) / period
    p, length = controls.get("bank_stall_rate", 0) / RATE_ONE, controls.get("bank_stall_cycles", 0)
    # A stall starts on a cycle with none under way, so stall cycles are p*L/(1 + p*L).
    stall_free = 1 / (1 + p * length)
    if rate and rate < RATE_ONE:
        # The bucket keeps accruing credit through bank stalls, so a capped stream
        # loses only refresh time until stalls outgrow the cap's own idle cycles.
        return min(peak * refresh_free, refresh_free * stall_free)
    return peak * refresh_free * stall_free


def stream_model(config: AccelConfig, board: Board) -> tuple[int, float]:
    """``(read latency in cycles, beats per cycle per weight port)`` of ``board``'s DRAM
    model for ``config``'s ports: what the cycle model projects with. A memory controller
    the flow generates (the Nexys Video's MIG) caps it at its AXI port's bytes per second."""
    rate = beats_per_cycle(ddr_model(config, board), config.weight_ports)
    if board.mig is not None:
        port_beats = board.mig.axi_bytes_per_s / (config.bus_bytes * config.clock_mhz * 1e6)
        rate = min(rate, port_beats / config.weight_ports)
    return READ_LATENCY, rate
