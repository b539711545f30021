"""How a job becomes DMA commands, and a DMA command AXI4 bursts.

The controller (``hdl/controller.py``) and the burst splitter (``hdl/burst.py``)
implement this; the AXI monitor and oracles of the RTL tests, the DMA block tests
and the cycle model (``host.accel.cycles``) follow it:

- A command of ``beats`` full-width beats at ``addr`` becomes INCR bursts, each as
  long as ``max_burst``, the next 4 KiB boundary (AXI4 A3.4.1) and the beats left
  allow: the fewest bursts that obey AXI (``bursts``).
- A job runs in M blocks of up to ``T`` rows (``blocks``; ``T = rows``, or ``rows / 2``
  with int4 weights: ``formats.tokens_per_block``). Each block reads its A
  rows on port 0 (``m_axi_dma``; one command of ``ceil(K/bb)`` beats per row, row ``m``
  at ``A + m*A_STRIDE``), then the whole packed W on every weight port at once (one
  command of ``B`` beats per tile and port, ``B = formats.tile_beats``, ``K`` for
  int8; tile ``t`` of port ``p`` at ``W + p*W_STRIDE + t*B*bb``), and writes C on port 0 tile by tile, row by row (row
  ``m`` of tile ``t`` at ``C + m*C_STRIDE + t*cols*4``, ``ceil(4*nv/bb)`` beats for the
  ``nv`` valid channels of the tile, the last beat partly strobed).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import AccelConfig
from .formats import tile_beats, tokens_per_block
from .job import Job

__all__ = ["BOUNDARY_BYTES", "Command", "WriteCommand", "Block", "bursts", "blocks",
           "read_bursts", "write_bursts", "beat_counts"]

BOUNDARY_BYTES = 4096          # no AXI burst may cross a 4 KiB address boundary


@dataclass(frozen=True)
class Command:
    """``beats`` full-width beats from ``addr``."""

    addr: int
    beats: int


@dataclass(frozen=True)
class WriteCommand(Command):
    """A write command; ``nbytes`` of its beats carry data (the rest is strobed off)."""

    nbytes: int


@dataclass(frozen=True)
class Block:
    """One M block: its rows, the reads in issue order and the writes in order."""

    first_row: int
    rows: int
    a_reads: tuple[Command, ...]             # on port 0
    w_reads: tuple[tuple[Command, ...], ...]  # per weight port: one per tile
    c_writes: tuple[WriteCommand, ...]       # tile-major, then row


def bursts(config: AccelConfig, addr: int, beats: int) -> list[tuple[int, int]]:
    """The ``(address, beats)`` bursts of one command."""
    out = []
    while beats > 0:
        to_boundary = (BOUNDARY_BYTES - addr % BOUNDARY_BYTES) // config.bus_bytes
        length = min(beats, config.max_burst, to_boundary)
        out.append((addr, length))
        addr += length * config.bus_bytes
        beats -= length
    return out


def blocks(config: AccelConfig, job: Job) -> list[Block]:
    """Every M block of a legal ``job``, in the order the controller runs them."""
    bb = config.bus_bytes
    tiles = -(-job.n // config.cols)
    a_beats = -(-job.k // bb)
    w_beats = tile_beats(job.w_format, job.k)
    tokens = tokens_per_block(job.w_format, config.rows)
    out = []
    for first in range(0, job.m, tokens):
        rows = range(first, min(job.m, first + tokens))
        writes = []
        for tile in range(tiles):
            nbytes = 4 * min(config.cols, job.n - tile * config.cols)
            writes += [WriteCommand(job.c_addr + row * job.c_stride + tile * 4 * config.cols,
                                    -(-nbytes // bb), nbytes) for row in rows]
        out.append(Block(
            first, len(rows),
            tuple(Command(job.a_addr + row * job.a_stride, a_beats) for row in rows),
            tuple(tuple(Command(job.w_addr + port * job.w_stride + tile * w_beats * bb, w_beats)
                        for tile in range(tiles)) for port in range(config.weight_ports)),
            tuple(writes)))
    return out


def read_bursts(config: AccelConfig, job: Job, port: int = 0) -> list[tuple[int, int]]:
    """Every read burst of ``job`` on weight port ``port`` in issue order: ``(address, beats)``."""
    if not 0 <= port < config.weight_ports:
        raise ValueError(f"port={port} must be in 0..{config.weight_ports - 1}")
    return [burst for block in blocks(config, job)
            for command in (block.a_reads if port == 0 else ()) + block.w_reads[port]
            for burst in bursts(config, command.addr, command.beats)]


def write_bursts(config: AccelConfig, job: Job) -> list[tuple[int, int, int]]:
    """Every write burst of ``job`` in order: ``(address, beats, bytes with data)``."""
    out = []
    for block in blocks(config, job):
        for command in block.c_writes:
            end = command.addr + command.nbytes
            out += [(addr, beats, min(beats * config.bus_bytes, end - addr))
                    for addr, beats in bursts(config, command.addr, command.beats)]
    return out


def beat_counts(config: AccelConfig, job: Job) -> tuple[int, int]:
    """``(PERF_RD_BEATS, PERF_WR_BEATS)`` a legal job ends with."""
    reads = writes = 0
    for block in blocks(config, job):
        reads += sum(c.beats for c in block.a_reads) + sum(c.beats for port in block.w_reads for c in port)
        writes += sum(c.beats for c in block.c_writes)
    return reads, writes
