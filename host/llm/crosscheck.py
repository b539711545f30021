"""Greedy continuations against an independent implementation: Hugging Face transformers.

``python -m host.llm.crosscheck --model smollm2-135m`` loads the same GGUF file twice:
with host.llm (our reader, dequantizer, tokenizer and numpy transformer, on the float
and the golden int8 backends) and with transformers (its own GGUF reader, dequantizer,
tokenizer conversion and PyTorch forward pass, float32). For each prompt it generates
greedily with ours and counts how many leading tokens transformers' greedy choice
agrees with, from one teacher-forced forward pass over the prompt and our tokens.

transformers, torch and accelerate are test dependencies (``pip install -e .[test]``);
the runtime never imports this module.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from ..cli import ArgumentParser, entry, int_in

__all__ = ["PROMPTS", "Agreement", "reference_model", "agreement", "main"]

PROMPTS = ("The capital of France is", "Once upon a time, a little robot",
           "def fibonacci(n):", "The three primary colors are")


@dataclass(frozen=True)
class Agreement:
    prompt: str
    backend: str
    tokens: list[int]            # our greedy continuation
    matching: int                # leading tokens transformers' greedy choice agrees with
    text: str


def reference_model(path):
    """transformers' float32 model of the GGUF file at ``path`` (its own loader)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                dtype=torch.float32).eval()


def reference_choices(reference, ids: list[int]) -> list[int]:
    """transformers' greedy next token after every prefix of ``ids`` (one forward pass)."""
    import torch

    with torch.no_grad():
        logits = reference(torch.tensor([ids])).logits[0]
    return logits.argmax(dim=-1).tolist()


def agreement(runtime, reference, prompt: str, max_new_tokens: int) -> Agreement:
    """Our greedy continuation of ``prompt`` and how many of its leading tokens transformers
    also chooses, each given the same prefix."""
    prompt_ids = runtime.tokenizer.encode(prompt)
    ours = runtime.generate(prompt_ids, max_new_tokens=max_new_tokens).tokens
    theirs = reference_choices(reference, prompt_ids + ours)[len(prompt_ids) - 1:]
    matching = 0
    for mine, chosen in zip(ours, theirs):
        if mine != chosen:
            break
        matching += 1
    return Agreement(prompt, runtime.backend.name, ours, matching, runtime.tokenizer.decode(ours))


@entry
def main(argv: list[str] | None = None) -> int:
    """The cross-check CLI: one line per prompt and backend, then the totals."""
    from .generate import load
    from .model import load_model
    from .model.catalog import model_path

    parser = ArgumentParser(prog="python -m host.llm.crosscheck", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="catalog name or GGUF path")
    parser.add_argument("--max-new-tokens", type=int_in(1, 512), default=32)
    parser.add_argument("--backends", nargs="+", default=["float", "golden"])
    args = parser.parse_args(argv)
    from pathlib import Path

    path = Path(args.model) if Path(args.model).is_file() else model_path(args.model)
    model = load_model(path, progress=False)
    t0 = time.perf_counter()
    reference = reference_model(path)
    print(f"reference: transformers {__import__('transformers').__version__} "
          f"(PyTorch {__import__('torch').__version__}, float32), loaded in "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    totals = {}
    for backend in args.backends:
        runtime = load(model, backend=backend, progress=False)
        for prompt in PROMPTS:
            result = agreement(runtime, reference, prompt, args.max_new_tokens)
            totals.setdefault(backend, []).append((result.matching, len(result.tokens)))
            print(f"{backend:<7} {result.matching:>3}/{len(result.tokens):<3} {prompt!r} -> "
                  f"{result.text!r}")
        runtime.close()
    for backend, counts in totals.items():
        matched = sum(m for m, _ in counts)
        total = sum(n for _, n in counts)
        print(f"{backend}: {matched}/{total} greedy tokens match transformers "
              f"({np.mean([m == n for m, n in counts]) * 100:.0f}% of prompts match throughout)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
