"""The quality report: perplexity and agreement against torch on a small random Gemma 3."""

import math

import numpy as np
import torch

from host.llm.layers import linear_specs
from host.llm.linear import FloatLinears
from host.llm.model import load_model
from host.llm.quality import agreement, main, score_tokens
from host.llm.transformer import Transformer

from host_testmodels import write_gemma3_gguf
from test_host_transformer import make_gemma3


def test_scores_match_torch_log_softmax(tmp_path):
    hf = make_gemma3(seed=31)
    model = load_model(write_gemma3_gguf(tmp_path / "g.gguf", hf), cache_dir=tmp_path / "c")
    tokens = np.random.default_rng(5).integers(0, 320, 30).tolist()
    transformer = Transformer(model.config, model.weights,
                              FloatLinears(linear_specs(model.config, model.weights)))
    score = score_tokens(transformer, tokens, chunk=7)         # several chunks
    with torch.no_grad():
        logits = hf(torch.tensor([tokens])).logits[0].double()
    nll = -torch.log_softmax(logits[:-1], dim=-1)[torch.arange(29), torch.tensor(tokens[1:])]
    np.testing.assert_allclose(score.nll, nll.numpy(), rtol=1e-4, atol=1e-4)
    assert math.isclose(score.perplexity, math.exp(nll.mean().item()), rel_tol=1e-4)
    np.testing.assert_array_equal(score.top1, logits[:-1].argmax(-1).numpy())
    assert agreement(score, score) == 1.0


def test_quality_cli_prints_one_row_per_text_and_scheme(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = write_gemma3_gguf(tmp_path / "g.gguf", make_gemma3(seed=32))
    (tmp_path / "a.txt").write_text("Once upon a time the cat sat on the mat.")
    (tmp_path / "b.txt").write_text("The time on the mat. Once the cat sat.")
    assert main(["--model", str(path), "--schemes", "seed", "per-channel",
                 "--text", str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [("a", "float"), ("b", "float"), ("a", "seed"),
                                            ("b", "seed"), ("a", "per-channel"), ("b", "per-channel")]
    assert rows[0][-1] == "100.0%" and rows[0][-2] == "+0.00%"
    assert main(["--model", str(tmp_path / "none.gguf")]) == 2


def test_quality_rows_for_the_bfloat16_kv_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = write_gemma3_gguf(tmp_path / "g.gguf", make_gemma3(seed=33))
    (tmp_path / "a.txt").write_text("Once upon a time the cat sat on the mat, and the dog sat by the door.")
    assert main(["--model", str(path), "--schemes", "per-channel", "--kv-cache", "float32", "bfloat16",
                 "--text", str(tmp_path / "a.txt")]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [r[1] for r in rows] == ["float", "per-channel", "per-channel+kv16"]
    exact, half = float(rows[1][3]), float(rows[2][3])
    assert half != exact and abs(half / exact - 1) < 0.02          # the cache's rounding, small
    assert main(["--model", str(path), "--kv-cache", "float16"]) == 2
