"""Gemma 3 270M with attention on the accelerator (golden backend): coherent greedy text
and teacher-forced quality next to host attention on the held-out eval text.

Measured (smoothquant, eval.txt, 432 tokens; float32 perplexity 20.37): host attention
20.59 (+1.08% vs float, top-1 92.8%), int8 KV cache offloaded 20.62 (+1.22%, 92.6%).
Bound: the offload's perplexity within 1% of host attention's, top-1 agreement with
float at least 90%.
"""

import pytest

from host.llm.generate import Runtime, choose_attention, generate
from host.llm.model import load_model
from host.llm.quality import DATA, quality_rows

pytestmark = pytest.mark.xdist_group("gemma3_270m")


@pytest.fixture(scope="module")
def gemma():
    return load_model(progress=False)


def test_gemma_offloaded_attention_writes_coherent_text(gemma):
    runtime = Runtime(gemma, "golden", attention="accelerator")
    assert runtime.fused_decoder is not None
    result = generate(runtime, "Once upon a time", max_new_tokens=16)
    assert result.text.startswith(", there was a little girl named Lily")
    assert runtime.fused_decoder.counts["accelerator jobs"] == 18 * 6 + 1


def test_gemma_offloaded_attention_quality(gemma):
    text = (DATA / "eval.txt").read_text(encoding="utf-8")
    rows = quality_rows(gemma, ["smoothquant"], {"eval": text}, attention=("host", "accelerator"),
                        log=lambda *a, **k: None)
    by_scheme = {row["scheme"]: row for row in rows}
    host, offload = by_scheme["smoothquant"], by_scheme["smoothquant+kv8"]
    assert offload["perplexity"] <= 1.01 * host["perplexity"]
    assert offload["top1_agreement"] >= 0.90


def test_auto_offloads_on_boards_only(gemma):
    class Board:
        driver = object()
    assert choose_attention("auto", gemma.config, Board()) == "accelerator"
    assert choose_attention("auto", gemma.config, object()) == "host"
    assert choose_attention("host", gemma.config, Board()) == "host"
