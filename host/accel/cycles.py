"""The cycle model: accelerator cycles per job.

``job_cycles(config, m, n, k, read_latency)`` predicts the ``PERF_BUSY`` counter of
one job, start to done. It replays the job as the RTL runs it, one AXI read burst at
a time:

- the controller's commands and their bursts, from ``hdl.spec.dma`` (the block's A
  rows, then one command per weight tile; at most ``max_burst`` beats per burst,
  none crossing 4 KiB);
- the DMA reader's limits: at most ``max_outstanding`` bursts in flight, and a burst
  is issued only when the read FIFO has room for all of it (credit returns as the
  consumer takes beats); data comes back ``read_latency`` cycles after the AR, at
  ``rate`` beats per cycle (1 for an ideal memory; ``hdl.spec.ddr.beats_per_cycle``
  for a board's DRAM, its refresh and bank stalls taken as a steady rate). Every
  weight port streams the same shape of commands in step, so port 0 stands for all;
- the consumer: A beats into the activation buffer, then weight beats into the
  array at one per cycle. The last beat of a tile waits until the drain has read
  the previous tile out (``pipeline + rows_valid * beats_per_row`` cycles after that
  tile's last beat). The next M block's commands go out only once the block's
  last weight beat has been taken.

The structure comes from the RTL (``hdl/controller.py``, ``feeder.py``,
``drain.py``, ``dma_reader.py``) and its latencies from ``hdl.spec.timing``. The few
control-path constants in ``RtlTiming`` were fitted to the RTL's counters, and
``sim/test_cycle_model.py`` checks the model against the co-simulated RTL on shapes
it was not fitted on. ``host.perf.projection`` turns it into tok/s per board.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from hdl.spec import timing as rtl_latency
from hdl.spec.config import AccelConfig
from hdl.spec.dma import blocks, bursts
from hdl.spec.formats import WeightFormat, tile_beats, tokens_per_block
from hdl.spec.job import Job, row_strides

__all__ = ["RtlTiming", "TIMING", "job_cycles", "ideal_cycles"]


@dataclass(frozen=True)
class RtlTiming:
    """Fixed cycle counts of the RTL's control path (fitted to PERF_BUSY; see module doc)."""

    start: int = 17            # start accepted -> first read command (job checks, block setup)
    read_extra: int = 2        # AR handshake -> data, on top of the memory's own latency
    consume: int = 4           # beat arrives at the reader -> taken by the controller
    block_gate: int = 10       # last weight beat of a block -> next block's first command
    tail: int = 26             # last tile drained -> done (write responses, FINISH, DONE)
    pipeline_extra: int = 2    # last beat taken -> drain starts, beyond the array's own depth

    def pipeline(self, config: AccelConfig) -> int:
        """Cycles from a tile's last beat to its results in the drain: activation
        buffer read, row and column skew, PE, registers."""
        return (rtl_latency.ACT_BUFFER_READ + config.rows + config.cols + rtl_latency.PE_RESULT
                + self.pipeline_extra)


TIMING = RtlTiming()


def job_cycles(config: AccelConfig, m: int, n: int, k: int, read_latency: int = 32,
               timing: RtlTiming = TIMING, rate: float = 1.0,
               w_format: WeightFormat = WeightFormat.INT8) -> int:
    """Predicted PERF_BUSY of ``C[m, n] = A[m, k] x W[n, k]^T`` (buffers page-aligned)
    with a memory that delivers ``rate`` beats per cycle to each port, for weights in
    ``w_format`` (int4: tiles of pair and scale beats, ``rows / 2`` tokens per block)."""
    if min(m, n, k) < 1 or k > config.max_k:
        raise ValueError(f"job M={m} N={n} K={k} is outside 1..max_mn, 1..max_mn, 1..{config.max_k}")
    if not 0 < rate <= 1:
        raise ValueError(f"rate={rate} must be in (0, 1] beats per cycle")
    pipeline = timing.pipeline(config)
    latency = read_latency + timing.read_extra
    arrived_end: list[float] = []      # per burst: cycle its last beat arrives
    consumed_total: list[int] = []     # per burst: beats consumed once it is done
    consumed_end: list[float] = []     # per burst: cycle its last beat is consumed
    issued = 0
    last_issue = timing.start - 1.0
    last_arrival = last_consumed = float(timing.start)
    tile_free = float("-inf")          # cycle the previous tile left the result registers
    gate = float(timing.start)

    def credit_at(beats_needed: int) -> float:
        """When the consumer has taken ``beats_needed`` beats (FIFO credit)."""
        if beats_needed <= 0:
            return float("-inf")
        j = bisect.bisect_left(consumed_total, beats_needed)
        return consumed_end[j] - (consumed_total[j] - beats_needed)

    def read(length: int, first_of_block: bool) -> tuple[float, float]:
        nonlocal issued, last_issue, last_arrival
        index = len(arrived_end)
        at = last_issue + 1
        if first_of_block:
            at = max(at, gate)
        if index >= config.max_outstanding:
            at = max(at, arrived_end[index - config.max_outstanding])
        at = max(at, credit_at(issued + length - config.read_fifo_beats))
        last_issue = at
        start = max(at + latency, last_arrival)
        last_arrival = start + length / rate
        issued += length
        arrived_end.append(last_arrival)
        return start, last_arrival

    def consume(length: int, start: float, end: float, not_before: float = float("-inf")) -> float:
        nonlocal last_consumed
        begin = max(start + timing.consume, last_consumed)
        done = max(begin + length, end + timing.consume, not_before)
        last_consumed = done
        consumed_total.append((consumed_total[-1] if consumed_total else 0) + length)
        consumed_end.append(done)
        return done

    a_stride, c_stride = row_strides(config, k, n)
    job = Job(a_addr=0, w_addr=0, c_addr=0, m=m, n=n, k=k, a_stride=a_stride, c_stride=c_stride,
              w_format=int(w_format))
    for block in blocks(config, job):
        first = True
        for command in block.a_reads:
            for _, length in bursts(config, command.addr, command.beats):
                consume(length, *read(length, first))
                first = False
        for tile, command in enumerate(block.w_reads[0]):
            lengths = [length for _, length in bursts(config, command.addr, command.beats)]
            for i, length in enumerate(lengths):
                start, end = read(length, False)
                if i < len(lengths) - 1:
                    consume(length, start, end)
                    continue
                # The tile's last beat waits for the previous tile to be drained.
                done = consume(length, start, end, tile_free + 1)
                writes = block.c_writes[tile * block.rows:(tile + 1) * block.rows]
                tile_free = done + pipeline + sum(write.beats for write in writes)
        gate = last_consumed + timing.block_gate
    return round(tile_free + timing.tail)


def ideal_cycles(config: AccelConfig, m: int, n: int, k: int,
                 w_format: WeightFormat = WeightFormat.INT8) -> int:
    """The weight-stream bound: ``ceil(M/T) * ceil(N/cols) * B`` beats, ``T`` tokens per
    block and ``B`` beats per tile of the format (``rows`` and ``K`` for int8)."""
    return (-(-m // tokens_per_block(w_format, config.rows)) * -(-n // config.cols)
            * tile_beats(w_format, k))


