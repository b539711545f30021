"""The cycle model and the projections: matmul shapes, roofline arithmetic and model
invariants (the RTL check of the cycle model itself is sim/test_cycle_model.py)."""

import numpy as np
import pytest

from hdl.spec.boards import BOARDS
from hdl.spec.config import preset
from hdl.spec.ddr import stream_model
from host.accel.cycles import ideal_cycles, job_cycles
from host.llm.layers import linear_shapes, linear_specs
from host.llm.model.base import ModelConfig
from host.perf.projection import STORIES, llama2c_matmuls, project


def test_linear_shapes_match_the_weights_the_runtime_builds():
    config = ModelConfig(arch="gemma3", dim=64, hidden_dim=96, n_layers=2, n_heads=4, n_kv_heads=2,
                         head_dim=32, vocab_size=320, max_seq_len=64, norm_eps=1e-6,
                         rope_base=1e6, rope_base_local=1e4)
    rng = np.random.default_rng(0)
    q, kv = 4 * 32, 2 * 32
    weights = {"token_embd.weight": rng.standard_normal((320, 64), dtype=np.float32)}
    for i in range(2):
        b = f"blk.{i}."
        for name, shape in (("attn_q", (q, 64)), ("attn_k", (kv, 64)), ("attn_v", (kv, 64)),
                            ("attn_output", (64, q)), ("ffn_gate", (96, 64)),
                            ("ffn_up", (96, 64)), ("ffn_down", (64, 96))):
            weights[b + name + ".weight"] = rng.standard_normal(shape, dtype=np.float32)
    specs = linear_specs(config, weights)
    assert [(name, kind, n, k) for name, kind, n, k in linear_shapes(config)] == \
        [(s.name, s.kind, *s.weight.shape) for s in specs.values()]


def test_stories15m_weight_bytes_and_roofline():
    dims = STORIES["stories15M"]
    d, h, layers, vocab = dims["dim"], dims["hidden_dim"], dims["n_layers"], dims["vocab"]
    expected = layers * (4 * d * d + 3 * d * h) + vocab * d          # llama2.c's parameter count
    config = preset("nexys_video")
    p = project("stories15M", llama2c_matmuls(**dims), BOARDS["nexys_video"], config, host_ms=0.0)
    assert p.weight_bytes == expected
    assert p.roofline_tok_s == pytest.approx(16 * 100e6 / expected)
    assert p.jobs_per_token == 4 * layers + 1
    # The stream runs at the DDR model's long-run rate: the DDR3's 1.6 GB/s x 0.85, refresh
    # and bank stalls inside it (the port's 1.6 GB/s is above it, so the cap binds). Every
    # job pays its fixed overhead on top of that stream, never less.
    rate = 0.85
    # (the cap is held in steps of 1/65536 beat per serving cycle)
    assert stream_model(config, BOARDS["nexys_video"]) == (64, pytest.approx(rate, abs=1 / 65536))
    ideal = sum(ideal_cycles(config, 1, s.n, s.k) for s in llama2c_matmuls(**dims)) / rate
    assert ideal < p.decode_cycles < 1.05 * ideal


def test_kv260_streams_four_ports_at_the_ddr_models_rate():
    """Four 128-bit HP ports at 300 MHz (19.2 GB/s) under a 16.32 GB/s cap feed an array
    that takes 64 bytes per 250 MHz cycle (16 GB/s): each port gets 0.85 beats per port
    cycle, 1.02 per array cycle, so the array binds and streams one beat of each per
    cycle. The latency is the DDR model's 256 ns (77 port cycles, 64.2 array cycles)
    plus the crossing's 5 cycles. Gemma-shaped decode runs at that rate."""
    config, board = preset("kv260"), BOARDS["kv260"]
    assert config.weight_ports == 4 and config.port_clock_mhz == 300
    assert config.ports_bytes_per_s == 4 * 16 * 300e6 == board.dram_bytes_per_s
    assert config.bandwidth_bytes_per_s == config.array_bytes_per_s == 64 * 250e6
    assert stream_model(config, board) == (69, 1.0)
    shapes = [(1024, 640), (2048, 640), (640, 2048), (640, 1024)]
    ideal = sum(ideal_cycles(config, 1, n, k) for n, k in shapes)
    cycles = sum(job_cycles(config, 1, n, k, 69) for n, k in shapes)
    assert ideal < cycles < 1.05 * ideal


def test_kv260_ports_at_the_array_clock_would_bind():
    """The same four ports on the array's 250 MHz clock: 0.85 x 19.2 GB/s shared by four
    16-byte ports is 1.02 beats per cycle each, above the port, so each port streams one
    beat in every cycle the DRAM serves (refresh and bank stalls leave 94%)."""
    from hdl.spec.ddr import ddr_model, serving_share
    config, board = preset("kv260").replace(axi_clock_mhz=None), BOARDS["kv260"]
    assert stream_model(config, board) == (64, pytest.approx(serving_share(ddr_model(config, board))))
    assert 0.93 < stream_model(config, board)[1] < 0.95


@pytest.mark.parametrize("name", ["kv260", "nexys_video", "small"])
def test_job_cycles_bounds(name):
    config = preset(name)
    for m, n, k in [(1, 1, 1), (1, 1024, 640), (3 * config.rows + 1, 300, 100)]:
        cycles = job_cycles(config, m, n, k)
        assert cycles > ideal_cycles(config, m, n, k)
        assert job_cycles(config, m, n, k, read_latency=64) >= cycles
    with pytest.raises(ValueError, match="K=0"):
        job_cycles(config, 1, 1, 0)


def test_the_nexys_video_projection_is_capped_by_the_migs_axi_port():
    """Digilent's preset MIG has a 32-bit AXI port: projected through it, the weight stream
    gets a quarter of the 128-bit port's bytes per second, and the roofline falls with it."""
    import dataclasses
    board, config = BOARDS["nexys_video"], preset("nexys_video")
    dims = STORIES["stories15M"]
    ours = project("stories15M", llama2c_matmuls(**dims), board, config, host_ms=0.0)
    narrow_board = dataclasses.replace(board, mig=dataclasses.replace(board.mig, axi_data_bits=32))
    narrow = project("stories15M", llama2c_matmuls(**dims), narrow_board, config, host_ms=0.0)
    assert ours.port_bytes_per_s == 16 * 100e6            # 128 bits at the 100 MHz ui_clk
    assert narrow.port_bytes_per_s == 4 * 100e6
    assert narrow.roofline_tok_s == pytest.approx(ours.roofline_tok_s / 4)
    # The stream itself slows to the narrow port's 0.25 beats per cycle.
    assert stream_model(config, narrow_board)[1] == pytest.approx(0.25)
    assert narrow.decode_cycles > 3 * ours.decode_cycles


def test_int4_projection_streams_the_formats_bytes():
    """All-int4 weights: the bytes per token are the format's beats (ceil(K/2) +
    ceil(K/64) bytes per channel, counted here from llama2.c's shapes), and decode,
    bound by the weight stream, runs in proportion to them."""
    from hdl.spec.formats import WeightFormat
    dims = STORIES["stories110M"]
    d, h, layers, vocab = dims["dim"], dims["hidden_dim"], dims["n_layers"], dims["vocab"]

    def int4_bytes(n, k):
        return n * (-(-k // 2) + -(-k // 64))
    expected = (layers * (4 * int4_bytes(d, d) + 2 * int4_bytes(h, d) + int4_bytes(d, h))
                + int4_bytes(vocab, d))
    config = preset("kv260")
    matmuls = llama2c_matmuls(**dims)
    int8 = project("stories110M", matmuls, BOARDS["kv260"], config, host_ms=0.0)
    int4 = project("stories110M", matmuls, BOARDS["kv260"], config, host_ms=0.0, formats=WeightFormat.INT4)
    assert int4.weight_bytes == expected
    speedup = int4.accelerator_tok_s / int8.accelerator_tok_s
    assert 0.95 * int8.weight_bytes / int4.weight_bytes <= speedup <= int8.weight_bytes / int4.weight_bytes
    mixed = project("stories110M", matmuls, BOARDS["kv260"], config, host_ms=0.0,
                    formats={"ffn_up_gate": WeightFormat.INT4})
    assert int8.weight_bytes > mixed.weight_bytes > int4.weight_bytes
