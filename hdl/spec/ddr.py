"""The DDR behind the DMA as ``SimMemory`` models it and the projections count it:
latency, shared bandwidth cap, refresh and bank stalls, in cycles of the masters' clock.

``ddr_model(config, board)`` gives the ``SimMemory`` control values
(``host.platforms.sim.MEMORY_CONTROLS``) for a board's DRAM at the masters' clock
(``config.port_clock_mhz``), and ``beats_per_cycle`` what they deliver to each port in
the long run; ``stream_model`` turns that into the latency and rate, in cycles of the
core's clock, that the cycle model (``host.accel.cycles``) streams at in the board
projections. ``IDEAL`` is the free memory the earlier benchmarks measured against
(32-cycle latency, one beat per cycle, no stalls). Constants and their sources:

- ``READ_LATENCY = 64`` cycles per port, and at least ``READ_LATENCY_NS = 256`` ns:
  issue 14's floor for a Zynq US+ HP port (64 cycles at 250 MHz; the PS DDR
  controller's measured idle latency is in that range). 77 cycles at 300 MHz.
- Bandwidth cap: ``board.dram_bytes_per_s * DDR_EFFICIENCY`` shared by all ports
  (KV260: DDR4 64-bit 2400 MT/s = 19.2 GB/s, ``hdl.spec.boards``). ``DDR_EFFICIENCY
  = 0.85``: published KV260 LLM designs reach 85-94% of the DDR peak (NOTES.md), so
  the low end. Those figures are sustained rates, measured with refresh and row
  misses in them: the cap is the long-run average *including* the refresh and bank
  stalls below, not a rate they are taken from again. So the DRAM serves at
  ``cap / (share left by refresh and stalls)`` while it is not stalled (KV260: 17.3
  GB/s, under its 19.2 GB/s peak, which ``ddr_model`` checks) and at nothing while it
  is: the stalls shape *when* data comes (a port must ride through them on its
  buffers and catch up after), the cap *how much*. As a rate it is beats per cycle in
  1/2**16 steps: one token bucket that all of ``SimMemory``'s ports draw from, filled
  only while the DRAM serves.
- Refresh: ``T_REFI_S = 7.8e-6`` (DDR4 average refresh interval at <= 85 C) and
  ``T_RFC_S = 350e-9`` (DDR4 8 Gb die; the K26 SOM's 4 GB are four 8 Gb x16 parts),
  JEDEC JESD79-4: the memory serves nothing for tRFC once per tREFI (4.5%).
- Bank stalls: ``BANK_STALL_NS = 27.5`` (tRP + tRCD = 2 x 13.75 ns, DDR4-2400
  17-17-17) at ``BANK_STALL_PER_BEAT_TIME = 1/512``: one row miss per 8 KiB (a 64-bit
  rank's row) of a 16-byte-beat stream at 250 MHz. This is an estimate, not a
  measurement: a controller hides most row misses behind other banks.

Only the cap comes from the board; latency, refresh and bank constants are the KV260's
DDR4 ones for every board (the Nexys Video's DDR3 4 Gb parts have tRFC = 260 ns, so
its model refreshes a little too long).
"""

from __future__ import annotations

import math

from .boards import Board
from .config import AccelConfig

__all__ = ["stream_model", "READ_LATENCY", "READ_LATENCY_NS", "DDR_EFFICIENCY", "T_REFI_S", "T_RFC_S",
           "BANK_STALL_NS", "BANK_STALL_PER_S", "RATE_ONE", "IDEAL", "CROSSING_CYCLES", "ddr_model",
           "beats_per_cycle", "serving_share", "core_latency", "cap_bytes_per_s"]

READ_LATENCY = 64
READ_LATENCY_NS = 256
DDR_EFFICIENCY = 0.85
T_REFI_S = 7.8e-6
T_RFC_S = 350e-9
BANK_STALL_NS = 27.5
BANK_STALL_PER_S = 250e6 / 512   # one row miss per 512 beats of a 250 MHz stream
RATE_ONE = 1 << 16            # ddr_rate and bank_stall_rate are fractions of this
# Core cycles a beat spends crossing from m_axi_aclk to aclk (``hdl.dma_crossing``: the
# write pointer's synchronizer, the FIFO's output register, the read), on top of the
# memory's latency; fitted with the rest of ``host.accel.cycles.RtlTiming``.
CROSSING_CYCLES = 5

# The memory the benchmarks used before issue 14: no cap, no refresh, no stalls.
IDEAL = {"read_latency": 32, "ddr_rate": 0, "refresh_period": 0, "refresh_cycles": 0,
         "bank_stall_rate": 0, "bank_stall_cycles": 0}


def serving_share(controls: dict[str, int]) -> float:
    """The share of cycles in which ``controls``' DRAM serves: neither refreshing nor in
    a bank stall (a first-order estimate: the two are taken as independent)."""
    period = controls.get("refresh_period", 0)
    refresh_free = 1.0 if period == 0 else 1 - min(controls["refresh_cycles"], period) / period
    p, length = controls.get("bank_stall_rate", 0) / RATE_ONE, controls.get("bank_stall_cycles", 0)
    # A stall starts on a cycle with none under way, so stall cycles are p*L/(1 + p*L).
    return refresh_free / (1 + p * length)


def ddr_model(config: AccelConfig, board: Board, efficiency: float = DDR_EFFICIENCY) -> dict[str, int]:
    """``SimMemory`` control values for ``board``'s DRAM at the masters' clock: the cap,
    ``efficiency`` times the DRAM's peak, is its long-run rate, in beats of one port, shared
    by all of ``SimMemory``'s ports and drawn only while the DRAM serves. ``ValueError`` if
    the stalls leave the DRAM's peak too little time to deliver the cap."""
    if not 0 < efficiency <= 1:
        raise ValueError(f"efficiency={efficiency} must be in (0, 1]: a share of the DRAM's peak")
    clock_hz = config.port_clock_mhz * 1e6

    def cycles_of(seconds: float) -> int:        # whole cycles, rounded up (not past float noise)
        return math.ceil(round(seconds * clock_hz, 6))

    controls = {"read_latency": max(READ_LATENCY, cycles_of(READ_LATENCY_NS * 1e-9)),
                "refresh_period": round(T_REFI_S * clock_hz),
                "refresh_cycles": cycles_of(T_RFC_S),
                "bank_stall_rate": round(BANK_STALL_PER_S / clock_hz * RATE_ONE),
                "bank_stall_cycles": cycles_of(BANK_STALL_NS * 1e-9)}
    beat_bytes_per_s = config.bus_bytes * clock_hz
    cap_beats = board.dram_bytes_per_s * efficiency / beat_bytes_per_s
    serving_beats = cap_beats / serving_share(controls)
    peak_beats = board.dram_bytes_per_s / beat_bytes_per_s
    if serving_beats > peak_beats:
        raise ValueError(f"{board.name}: the cap ({efficiency:.0%} of the peak) needs "
                         f"{serving_beats / peak_beats:.1%} of the peak between refreshes and stalls")
    controls["ddr_rate"] = max(1, round(serving_beats * RATE_ONE))
    return controls


def beats_per_cycle(controls: dict[str, int], ports: int = 1) -> float:
    """The long-run beats per cycle ``controls`` let each of ``ports`` saturating streams
    have: in the cycles the DRAM serves, the lower of the port (1) and its share of
    ``ddr_rate``."""
    rate = controls.get("ddr_rate", 0) / ports
    per_serving_cycle = 1.0 if rate == 0 else min(1.0, rate / RATE_ONE)
    return per_serving_cycle * serving_share(controls)


def core_latency(config: AccelConfig, read_latency: int) -> int:
    """A memory's ``read_latency`` (cycles of the masters' clock) in cycles of the core's
    clock, with the crossing's own cycles when the masters have a clock of their own."""
    latency = read_latency * config.clock_mhz / config.port_clock_mhz
    return round(latency + (CROSSING_CYCLES if config.split_clocks else 0))


def cap_bytes_per_s(config: AccelConfig, controls: dict[str, int]) -> float | None:
    """The long-run bytes per second ``controls``' cap lets all ports have together
    (``None``: no cap)."""
    rate = controls.get("ddr_rate", 0)
    if rate == 0:
        return None
    return rate / RATE_ONE * serving_share(controls) * config.bus_bytes * config.port_clock_mhz * 1e6


def stream_model(config: AccelConfig, board: Board, efficiency: float = DDR_EFFICIENCY) -> tuple[int, float]:
    """``(read latency, beats per weight port)`` of ``board``'s DRAM model for ``config``, in
    cycles of the core's clock: what the cycle model projects with. The rate is at most 1
    (the array takes one beat of every port per cycle). A memory controller the flow
    generates (the Nexys Video's MIG) caps it at its AXI port's bytes per second."""
    controls = ddr_model(config, board, efficiency)
    ratio = config.clock_mhz / config.port_clock_mhz           # core cycles per port cycle
    rate = beats_per_cycle(controls, config.weight_ports) / ratio
    if board.mig is not None:
        port_beats = board.mig.axi_bytes_per_s / (config.bus_bytes * config.clock_mhz * 1e6)
        rate = min(rate, port_beats / config.weight_ports)
    return core_latency(config, controls["read_latency"]), min(1.0, rate)
