"""Performance model: accelerator cycles per job, per token, per board.

``job_cycles(config, m, n, k, read_latency)`` predicts the ``PERF_BUSY`` counter of
one job, start to done. It replays the job as the RTL runs it, one AXI read burst at
a time:

- the controller's commands: the block's A rows, then one command per weight tile,
  split into bursts of at most ``max_burst`` beats that never cross 4 KiB;
- the DMA reader's limits: at most ``max_outstanding`` bursts in flight, and a burst
  is issued only when the read FIFO has room for all of it (credit returns as the
  consumer takes beats); data comes back ``read_latency`` cycles after the AR, at
  one beat per cycle;
- the consumer: A beats into the activation buffer, then weight beats into the
  array at one per cycle. The last beat of a tile waits until the drain has read
  the previous tile out (``pipeline + rows_valid * beats_per_row`` cycles after that
  tile's last beat). The next M block's commands go out only once the block's
  last weight beat has been taken.

The structure comes from the RTL (``hdl/controller.py``, ``feeder.py``,
``drain.py``, ``dma_reader.py``). The few cycle constants in ``RtlTiming`` were
fitted to the RTL's counters, and ``sim/test_cycle_model.py`` checks the model
against the co-simulated RTL on shapes it was not fitted on.

``project(...)`` turns a model's matmul shapes into accelerator time per token
(decode) and per prompt (prefill) on a board preset at its clock. It adds the host's
measured non-matmul time and sets the result next to the bandwidth roofline.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from hdl.config import AccelConfig

__all__ = ["RtlTiming", "TIMING", "job_cycles", "ideal_cycles", "Board", "BOARDS", "HostTime",
           "measure_host_time", "random_llama_weights",
           "MatmulShape", "model_matmuls", "llama2c_matmuls", "STORIES", "Projection", "project"]


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
        buffer (3) + row and column skew + PE (2) + registers."""
        return 3 + config.rows + config.cols + 2 + self.pipeline_extra


TIMING = RtlTiming()


def _bursts(offset: int, beats: int, config: AccelConfig) -> list[int]:
    """Burst lengths of one command at ``offset`` bytes from a 4 KiB-aligned base."""
    out = []
    while beats:
        to_page = (4096 - offset % 4096) // config.bus_bytes
        length = min(beats, config.max_burst, to_page)
        out.append(length)
        offset += length * config.bus_bytes
        beats -= length
    return out


def job_cycles(config: AccelConfig, m: int, n: int, k: int, read_latency: int = 32,
               timing: RtlTiming = TIMING) -> int:
    """Predicted PERF_BUSY of ``C[m, n] = A[m, k] x W[n, k]^T`` (buffers page-aligned)."""
    if min(m, n, k) < 1 or k > config.max_k:
        raise ValueError(f"job M={m} N={n} K={k} is outside 1..max_mn, 1..max_mn, 1..{config.max_k}")
    bb = config.bus_bytes
    tiles = -(-n // config.cols)
    a_row = -(-k // bb)
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
        last_arrival = start + length
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

    for block in range(-(-m // config.rows)):
        rows_valid = min(config.rows, m - block * config.rows)
        first = True
        for row in range(rows_valid):
            for length in _bursts((block * config.rows + row) * a_row * bb, a_row, config):
                consume(length, *read(length, first))
                first = False
        for tile in range(tiles):
            lengths = _bursts(tile * k * bb, k, config)
            for i, length in enumerate(lengths):
                start, end = read(length, False)
                if i < len(lengths) - 1:
                    consume(length, start, end)
                    continue
                # The tile's last beat waits for the previous tile to be drained.
                done = consume(length, start, end, tile_free + 1)
                valid_cols = min(config.cols, n - tile * config.cols)
                drain = rows_valid * -(-4 * valid_cols // bb)
                tile_free = done + pipeline + drain
        gate = last_consumed + timing.block_gate
    return round(tile_free + timing.tail)


def ideal_cycles(config: AccelConfig, m: int, n: int, k: int) -> int:
    """The weight-stream bound: ``ceil(M/rows) * ceil(N/cols) * K`` beats."""
    return -(-m // config.rows) * -(-n // config.cols) * k


# -- boards and models ------------------------------------------------------------------

@dataclass(frozen=True)
class Board:
    """A board: its accelerator preset and the memory system around it."""

    name: str
    preset: str
    dram_bytes_per_s: float          # peak of the DDR interface
    dram: str                        # what the DDR is
    read_latency: int = 32           # accelerator cycles from AR to data (assumed)
    note: str = ""


BOARDS: dict[str, Board] = {
    "kv260": Board("KV260", "kv260", 19.2e9, "DDR4 64-bit 2400 MT/s",
                   note="one 128-bit HP port (S_AXI_HP0_FPD) at the PL clock"),
    "nexys_video": Board("Nexys Video", "nexys_video", 1.6e9, "DDR3 16-bit 800 MT/s",
                         note="MIG's 128-bit AXI port at ui_clk"),
}


@dataclass(frozen=True)
class MatmulShape:
    """One linear layer per token: ``y[N] = W[N, K] x[K]``."""

    name: str
    kind: str
    n: int
    k: int


def model_matmuls(config) -> list[MatmulShape]:
    """The matmuls of one token of a ``host.model.ModelConfig``, fused as the runtime
    calls them (``host.transformer.linear_shapes``)."""
    from .transformer import linear_shapes
    return [MatmulShape(name, kind, n, k) for name, kind, n, k in linear_shapes(config)]


def llama2c_matmuls(dim: int, n_layers: int, n_heads: int, hidden_dim: int, vocab: int,
                    n_kv_heads: int | None = None) -> list[MatmulShape]:
    """The matmuls of a llama2.c-shaped model given by its dimensions."""
    from .model.base import ModelConfig
    config = ModelConfig(arch="llama", dim=dim, hidden_dim=hidden_dim, n_layers=n_layers,
                         n_heads=n_heads, n_kv_heads=n_kv_heads or n_heads,
                         head_dim=dim // n_heads, vocab_size=vocab, max_seq_len=256,
                         norm_eps=1e-5, rope_base=1e4, rope_base_local=1e4, tied_classifier=True)
    return model_matmuls(config)


# llama2.c's TinyStories checkpoints, by their published dimensions.
STORIES = {
    "stories15M": dict(dim=288, n_layers=6, n_heads=6, hidden_dim=768, vocab=32000),
    "stories110M": dict(dim=768, n_layers=12, n_heads=12, hidden_dim=2048, vocab=32000),
}


@dataclass
class Projection:
    """Accelerator and host time of one model on one board preset."""

    model: str
    board: Board
    config: AccelConfig
    decode_cycles: int                       # per token, all matmuls at M=1
    prefill_cycles: int                      # for the whole prompt
    prompt_tokens: int
    weight_bytes: int                        # int8 weights streamed per token
    host_ms: float                           # measured non-matmul host time per token
    per_kind: dict[str, int] = field(default_factory=dict)   # decode cycles per layer kind
    jobs_per_token: int = 0

    @property
    def clock_hz(self) -> float:
        return self.config.clock_mhz * 1e6

    @property
    def accelerator_ms(self) -> float:
        return self.decode_cycles / self.clock_hz * 1e3

    @property
    def decode_tok_s(self) -> float:
        """Tokens per second with the host's time counted (batch 1, no overlap)."""
        return 1e3 / (self.accelerator_ms + self.host_ms)

    @property
    def accelerator_tok_s(self) -> float:
        return 1e3 / self.accelerator_ms

    @property
    def port_bytes_per_s(self) -> float:
        return self.config.bandwidth_bytes_per_s

    @property
    def roofline_tok_s(self) -> float:
        """Weight bytes per token over the narrower of the DMA port and the DDR."""
        return min(self.port_bytes_per_s, self.board.dram_bytes_per_s) / self.weight_bytes

    @property
    def prefill_ms(self) -> float:
        return self.prefill_cycles / self.clock_hz * 1e3


def project(name: str, matmuls: list[MatmulShape], board: Board, config: AccelConfig,
            host_ms: float, prompt_tokens: int = 64) -> Projection:
    """Accelerator time per token and per prompt of ``matmuls`` on ``config``."""
    per_kind: dict[str, int] = {}
    decode = prefill = jobs = 0
    for shape in matmuls:
        for k0 in range(0, shape.k, config.max_k):           # the runtime splits K > max_k
            k = min(config.max_k, shape.k - k0)
            cycles = job_cycles(config, 1, shape.n, k, board.read_latency)
            decode += cycles
            prefill += job_cycles(config, prompt_tokens, shape.n, k, board.read_latency)
            per_kind[shape.kind] = per_kind.get(shape.kind, 0) + cycles
            jobs += 1
    weight_bytes = sum(shape.n * shape.k for shape in matmuls)
    return Projection(name, board, config, decode, prefill, prompt_tokens, weight_bytes, host_ms,
                      per_kind, jobs)


# -- host time ---------------------------------------------------------------------------

class _InstantBackend:
    """An ``IntBackend`` stand-in whose matmul costs nothing: what remains of a forward
    pass is the host's own work (norms, RoPE, attention, quantization, glue)."""

    name = "instant"

    def __init__(self, max_k: int):
        self.max_k = max_k
        self.config = None

    def load(self, name: str, w):
        import numpy as np
        return np.zeros((1, w.shape[0]), np.int32), w.shape[0]

    def matmul(self, x, handle):
        import numpy as np
        row, n = handle
        return row if x.shape[0] == 1 else np.zeros((x.shape[0], n), np.int32)

    def last_cycles(self):
        return None

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class HostTime:
    """Host (non-matmul) time per decode token, and its per-op split (ms)."""

    min_ms: float
    median_ms: float
    per_op_ms: dict[str, float]
    context: int
    repeats: int


def random_llama_weights(config, seed: int = 0) -> dict:
    """float32 weights in GGUF names for a Llama-family ``ModelConfig`` (for timing only)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    q, kv = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02))

    weights = {"token_embd.weight": w(config.vocab_size, config.dim),
               "output_norm.weight": np.ones(config.dim, np.float32)}
    for i in range(config.n_layers):
        b = f"blk.{i}."
        weights.update({b + "attn_norm.weight": np.ones(config.dim, np.float32),
                        b + "ffn_norm.weight": np.ones(config.dim, np.float32),
                        b + "attn_q.weight": w(q, config.dim), b + "attn_k.weight": w(kv, config.dim),
                        b + "attn_v.weight": w(kv, config.dim), b + "attn_output.weight": w(config.dim, q),
                        b + "ffn_gate.weight": w(config.hidden_dim, config.dim),
                        b + "ffn_up.weight": w(config.hidden_dim, config.dim),
                        b + "ffn_down.weight": w(config.dim, config.hidden_dim)})
    return weights


def measure_host_time(config, weights: dict, *, max_k: int = 4096, context: int = 64,
                      tokens: int = 32, repeats: int = 21) -> HostTime:
    """Host time per decode token at ``context`` tokens of context, int8 path.

    The model runs the real transformer and the real int8 seam (per-channel weights,
    per-token activation quantization, dequantization) over a backend whose matmul
    is free. Timed with ``perf_counter`` over ``tokens`` decode steps, ``repeats``
    times; the minimum is the least disturbed run, the median the typical one.
    """
    import statistics
    import time

    from .linear import QuantizedLinears
    from .profile import Profiler
    from .quant import scheme
    from .transformer import Transformer, linear_specs

    profiler = Profiler()
    linears = QuantizedLinears(linear_specs(config, weights), _InstantBackend(max_k),
                               scheme("per-channel"), profiler=profiler)
    transformer = Transformer(config, weights, linears, profiler)
    prompt = list(range(1, context - tokens + 1))
    runs = []
    for _ in range(repeats):
        cache = transformer.new_cache(context + 1)
        transformer.forward(prompt, cache)
        profiler.reset()
        profiler.phase = "decode"
        start = time.perf_counter()
        for step in range(tokens):
            transformer.forward([step % config.vocab_size], cache)
        wall = time.perf_counter() - start
        report = profiler.report("decode", tokens, wall)
        runs.append((wall / tokens * 1e3, report))
    runs.sort(key=lambda run: run[0])
    best = runs[0][1]
    per_op = {name: seconds / tokens * 1e3 for name, seconds in best.seconds.items()
              if not name.startswith("matmul ") and seconds > 0}
    return HostTime(runs[0][0], statistics.median(ms for ms, _ in runs), per_op, context, repeats)
