"""Board projections: a model's matmuls through the cycle model, on a board's memory.

``project(...)`` turns a model's matmul shapes into accelerator time per token
(decode) and per prompt (prefill) on an accelerator configuration at its clock, with
the board's DRAM: the cycle model streams at the rate and latency of the board's DDR
model (``hdl.spec.ddr.stream_model``: the shared cap, refresh, bank stalls). It adds
the host's measured non-matmul time and sets the result next to the bandwidth roofline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hdl.spec.boards import Board
from hdl.spec.config import AccelConfig
from hdl.spec.ddr import stream_model
from hdl.spec.formats import WeightFormat, tile_beats

from ..accel.cycles import job_cycles
from ..llm.layers import linear_shapes
from ..llm.model.base import ModelConfig

__all__ = ["MatmulShape", "model_matmuls", "llama2c_matmuls", "llama2c_config", "STORIES",
           "Projection", "project"]


@dataclass(frozen=True)
class MatmulShape:
    """One linear layer per token: ``y[N] = W[N, K] x[K]``."""

    name: str
    kind: str
    n: int
    k: int


def model_matmuls(config: ModelConfig) -> list[MatmulShape]:
    """The matmuls of one token of a model, fused as the runtime calls them
    (``host.llm.layers.linear_shapes``)."""
    return [MatmulShape(name, kind, n, k) for name, kind, n, k in linear_shapes(config)]


def llama2c_matmuls(dim: int, n_layers: int, n_heads: int, hidden_dim: int, vocab: int,
                    n_kv_heads: int | None = None) -> list[MatmulShape]:
    """The matmuls of a llama2.c-shaped model given by its dimensions."""
    return model_matmuls(llama2c_config(dim, n_layers, n_heads, hidden_dim, vocab, n_kv_heads))


def llama2c_config(dim: int, n_layers: int, n_heads: int, hidden_dim: int, vocab: int,
                   n_kv_heads: int | None = None) -> ModelConfig:
    """A llama2.c-shaped ``ModelConfig`` from its published dimensions."""
    return ModelConfig(arch="llama", dim=dim, hidden_dim=hidden_dim, n_layers=n_layers,
                         n_heads=n_heads, n_kv_heads=n_kv_heads or n_heads,
                         head_dim=dim // n_heads, vocab_size=vocab, max_seq_len=256,
                         norm_eps=1e-5, rope_base=1e4, rope_base_local=1e4, tied_classifier=True)


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
    weight_bytes: int                        # weight bytes streamed per token (int8: N*K)
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
        """The DMA port's peak, capped by the memory controller's AXI port where the
        board has one the flow generates (the Nexys Video's MIG: 128 bits at ``ui_clk``)."""
        port = self.config.bandwidth_bytes_per_s
        mig = getattr(self.board, "mig", None)
        return min(port, mig.axi_bytes_per_s) if mig is not None else port

    @property
    def roofline_tok_s(self) -> float:
        """Weight bytes per token over the narrower of the DMA port and the DDR."""
        return min(self.port_bytes_per_s, self.board.dram_bytes_per_s) / self.weight_bytes

    @property
    def prefill_ms(self) -> float:
        return self.prefill_cycles / self.clock_hz * 1e3


def project(name: str, matmuls: list[MatmulShape], board: Board, config: AccelConfig,
            host_ms: float, prompt_tokens: int = 64,
            formats: WeightFormat | dict[str, WeightFormat] = WeightFormat.INT8) -> Projection:
    """Accelerator time per token and per prompt of ``matmuls`` on ``config``, with the
    weights of each layer kind in ``formats`` (one format, or ``{kind: format}`` with
    int8 for a kind it does not name)."""
    per_kind: dict[str, int] = {}
    decode = prefill = jobs = 0
    latency, rate = stream_model(config, board)
    weight_bytes = 0
    for shape in matmuls:
        fmt = formats.get(shape.kind, WeightFormat.INT8) if isinstance(formats, dict) else formats
        for k0 in range(0, shape.k, config.max_k):           # the runtime splits K > max_k
            k = min(config.max_k, shape.k - k0)
            cycles = job_cycles(config, 1, shape.n, k, latency, rate=rate, w_format=fmt)
            decode += cycles
            prefill += job_cycles(config, prompt_tokens, shape.n, k, latency, rate=rate, w_format=fmt)
            per_kind[shape.kind] = per_kind.get(shape.kind, 0) + cycles
            weight_bytes += shape.n * tile_beats(fmt, k)      # bytes per channel: its beats
            jobs += 1
    return Projection(name, board, config, decode, prefill, prompt_tokens, weight_bytes, host_ms,
                      per_kind, jobs)


