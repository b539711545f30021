"""What drives a DMA test: when each side stalls, and which commands it sends.

- ``Stalls``: a per-cycle stall pattern, for a memory channel (``sim.axi_mem``) or a
  producer/consumer of a DMA block's streams; ``PAUSES``, ``pause_generator`` and
  ``pause_pairing`` turn it into the pause generators of a cocotbext-axi channel;
- ``edge_offsets`` and ``edge_commands``: commands starting at every bus-width offset
  from a full burst below a 4 KiB edge to one beat past it, so a test meets every way
  a burst can be split at the edge;
- ``random_commands``: random commands, half of them just below an edge;
- ``planned_bursts``: the AXI bursts commands must become (``hdl.spec.dma.bursts``).

Only the standard library and ``hdl.spec`` are imported, so cocotb testbenches use it
as well as the Amaranth-simulator ones.
"""

from __future__ import annotations

import random

from hdl.spec.config import AccelConfig
from hdl.spec.dma import BOUNDARY_BYTES, bursts

__all__ = ["Stalls", "PAUSES", "pause_generator", "pause_pairing", "edge_offsets", "edge_commands",
           "random_commands", "planned_bursts"]

# What a cocotbext-axi channel does between beats: never pause, a fixed pattern, random.
PAUSES = (None, "periodic", "random")


class Stalls:
    """When a channel stalls: a pattern evaluated once per cycle.

    ``kind`` is ``none``, ``periodic`` (stall 1 cycle in every ``period``),
    ``sparse`` (go 1 cycle in every ``period``), ``random`` (stall with
    probability ``p``) or ``lazy`` (READY only in the cycle after VALID was
    seen, and then randomly; for VALID-driving channels it behaves like
    ``random``).
    """

    KINDS = ("none", "periodic", "sparse", "random", "lazy")

    def __init__(self, kind: str = "none", *, p: float = 0.3, period: int = 3, seed: int = 0):
        if kind not in self.KINDS:
            raise ValueError(f"stall kind {kind!r} must be one of {self.KINDS}")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"stall probability p={p} must be in [0, 1)")
        self.kind, self.p, self.period = kind, p, period
        self._rng = random.Random(seed)
        self._cycle = 0

    def stall(self, valid_seen: bool = True) -> bool:
        """True if the channel should stall this cycle."""
        self._cycle += 1
        if self.kind == "none":
            return False
        if self.kind == "periodic":
            return self._cycle % self.period == 0
        if self.kind == "sparse":
            return self._cycle % self.period != 0
        if self.kind == "lazy" and not valid_seen:
            return True
        return self._rng.random() < self.p


def pause_generator(kind: str, channel: int, seed: int = 0):
    """An endless cocotbext-axi pause generator (True: pause this cycle) for the
    ``channel``-th channel: ``periodic`` pauses 1 cycle in 3-5 (by channel), ``random``
    30% of cycles (seeded by ``seed`` and ``channel``)."""
    if kind not in PAUSES[1:]:
        raise ValueError(f"pause kind {kind!r} must be one of {PAUSES[1:]}")
    return iter(Stalls(kind, period=3 + channel % 3, seed=8 * seed + channel).stall, None)


def pause_pairing(index: int) -> tuple[str | None, str | None]:
    """The ``index``-th (idle, back-pressure) pairing of ``PAUSES`` x ``PAUSES``
    (modulo 9): a test varying them job by job reaches every pairing."""
    return PAUSES[index % len(PAUSES)], PAUSES[index // len(PAUSES) % len(PAUSES)]


def edge_offsets(config: AccelConfig) -> range:
    """Beat offsets from a 4 KiB edge, from a full burst below it (``-max_burst``) to
    one beat past it: every way a burst can meet the edge."""
    return range(-config.max_burst, 2)


def edge_commands(config: AccelConfig, base: int,
                  lengths: tuple[int, ...] | None = None) -> list[tuple[int, int]]:
    """``(addr, beats)`` commands starting at every ``edge_offsets`` offset of an edge,
    one of each length per offset (default: 2 beats and a burst plus one), each at
    its own edge above ``base`` so that none overlaps another."""
    bb = config.bus_bytes
    lengths = lengths or (2, config.max_burst + 1)
    offsets = edge_offsets(config)
    # Room below an edge for the lowest start, above it for the longest command.
    reach = (max(offsets) + max(lengths) - min(offsets)) * bb
    spacing = -(-reach // BOUNDARY_BYTES) * BOUNDARY_BYTES
    edge = -(-(base - min(offsets) * bb) // BOUNDARY_BYTES) * BOUNDARY_BYTES
    commands = []
    for offset in offsets:
        for beats in lengths:
            commands.append((edge + offset * bb, beats))
            edge += spacing
    return commands


def random_commands(config: AccelConfig, rng: random.Random, base: int, size: int,
                    count: int, max_beats: int) -> list[tuple[int, int]]:
    """``count`` random (addr, beats) commands inside [base, base+size).

    Half of them start a few beats below a 4 KiB boundary so that splitting
    at the boundary is exercised with every burst length.
    """
    bus_bytes = config.bus_bytes
    commands = []
    for _ in range(count):
        beats = rng.randint(1, max_beats)
        span = beats * bus_bytes
        if size < span:
            raise ValueError(f"memory of {size} bytes cannot hold a {beats}-beat command")
        if rng.random() < 0.5 and size >= BOUNDARY_BYTES + span:
            page = rng.randrange(1, size // BOUNDARY_BYTES)
            addr = base + page * BOUNDARY_BYTES - rng.randint(1, 4) * bus_bytes
            if addr + span > base + size:
                addr = base + size - span
        else:
            addr = base + rng.randrange(0, (size - span) // bus_bytes + 1) * bus_bytes
        commands.append((addr, beats))
    return commands


def planned_bursts(config: AccelConfig, commands) -> list[tuple[int, int]]:
    """The ``(address, beats)`` bursts of ``commands`` in order (``hdl.spec.dma.bursts``)."""
    return [burst for addr, beats in commands for burst in bursts(config, addr, beats)]
