"""Text generation: ``generate()``, streaming, the CLI and the ``make demo`` entry.

``load(...)`` builds a ``Runtime`` (model, backend, quantization scheme, transformer,
profiler). ``generate(runtime, prompt, max_new_tokens=..., temperature=..., top_k=...,
top_p=..., seed=...)`` follows Hugging Face's keywords: greedy when ``temperature``
is 0, otherwise temperature, then top-k, then top-p (nucleus) sampling; it stops at
EOS or after ``max_new_tokens``. ``runtime.stream(prompt, ...)`` yields text as it is
generated; ``generate(..., streamer=fn)`` calls ``fn(text)`` for each increment.

Sampling never sorts the 262k vocabulary: top-k uses ``argpartition``, top-p grows a
partitioned candidate set until it holds the requested mass.

CLI: ``python -m host.llm.generate --prompt "Once upon a time" [--model PATH]
[--backend golden|float|sim|device|link] [--quant SCHEME] [--max-new-tokens N] ...``
streams the text, then prints tok/s and the per-op profile (``host.llm.profile``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from ..accel.backend import BACKENDS, BackendUnavailable, make_backend
from .linear import build_linears
from .model import Model, ModelFileError, load_model
from .profile import PhaseReport, Profiler, format_table
from .quant import DEFAULT_SCHEME, SCHEMES
from .quant import scheme as get_scheme
from .tokenizer import StreamDecoder
from .transformer import Transformer

__all__ = ["Runtime", "Generation", "load", "generate", "sample_next", "main", "demo"]

DEMO_PROMPT = "Once upon a time"


@dataclass
class Generation:
    """The outcome of one ``generate`` call."""

    text: str
    tokens: list[int]                  # generated token ids (EOS included if reached)
    prompt_tokens: list[int]
    finish_reason: str                 # "eos" or "length"
    prefill: PhaseReport | None = None
    decode: PhaseReport | None = None
    extra: dict = field(default_factory=dict)


def _check_options(max_new_tokens, temperature, top_k, top_p) -> None:
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an integer >= 0")
    if not temperature >= 0.0:
        raise ValueError(f"temperature={temperature!r} must be >= 0 (0 is greedy)")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k={top_k!r} must be an integer >= 1 or None")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p!r} must be in (0, 1] or None")


def sample_next(logits: np.ndarray, temperature: float = 0.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator | None = None) -> int:
    """One token id from ``logits [vocab]``: greedy at temperature 0, else sampled.

    top-k keeps the ``top_k`` largest logits; top-p then keeps the most likely tokens
    until their probability reaches ``top_p`` (at least one). Cost is O(vocab) plus
    sorting the small kept set.
    """
    _check_options(0, temperature, top_k, top_p)
    logits = np.asarray(logits, dtype=np.float32).reshape(-1)
    if temperature == 0.0:
        return int(np.argmax(logits))
    rng = rng if rng is not None else np.random.default_rng()
    z = logits.astype(np.float64) / temperature
    candidates = np.arange(z.size)
    if top_k is not None and top_k < z.size:
        candidates = np.argpartition(-z, top_k - 1)[:top_k]
        z = z[candidates]
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    if top_p is not None and top_p < 1.0:
        keep = min(64, probs.size)
        while True:      # grow the partitioned head until it holds top_p of the mass
            head = np.argpartition(-probs, keep - 1)[:keep] if keep < probs.size else np.arange(probs.size)
            if probs[head].sum() >= top_p or keep == probs.size:
                break
            keep = min(probs.size, keep * 4)
        head = head[np.argsort(-probs[head], kind="stable")]
        cumulative = np.cumsum(probs[head])
        cut = int(np.searchsorted(cumulative, top_p)) + 1       # first index reaching top_p
        head = head[:max(1, cut)]
        candidates, probs = candidates[head], probs[head] / probs[head].sum()
    index = int(np.searchsorted(np.cumsum(probs), rng.random() * probs.sum(), side="right"))
    return int(candidates[min(index, probs.size - 1)])


class Runtime:
    """A model ready to generate on one backend with one quantization scheme."""

    def __init__(self, model: Model, backend: str | object = "golden", quant: str | None = None,
                 preset=None, progress: bool = False, threads: int | None = None):
        self.model = model
        options = {} if threads is None else {"threads": threads}
        self.backend = make_backend(backend, preset, **options) if isinstance(backend, str) else backend
        self.quant = None if self.backend.name == "float" else get_scheme(quant or DEFAULT_SCHEME)
        self.profiler = Profiler()
        linears, weights = build_linears(model, self.backend, self.quant, self.profiler,
                                         progress=progress)
        self.transformer = Transformer(model.config, weights, linears, self.profiler)

    @property
    def tokenizer(self):
        """The model's tokenizer."""
        return self.model.tokenizer

    def close(self) -> None:
        """Release the backend (a simulator process, device mappings)."""
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self) -> str:
        """One line: model, backend (and accelerator shape), scheme."""
        config = getattr(self.backend, "config", None)
        where = f" ({config.name}: {config.rows}x{config.cols}, max K {config.max_k})" if config else ""
        quant = f", {self.quant.name} int8" if self.quant else ", float32"
        return f"{self.model.config.name} on {self.backend.name}{where}{quant}"

    def steps(self, prompt: str | Sequence[int], *, max_new_tokens: int = 64, temperature: float = 0.0,
              top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
              eos_token_id: int | Sequence[int] | None = None) -> Iterator[tuple[int, str]]:
        """Yield ``(token, text increment)`` per new token; returns the ``Generation``.

        A last ``(-1, text)`` carries text held back at the end (an incomplete
        UTF-8 sequence). Prefill and decode wall times exclude the consumer's time.
        """
        _check_options(max_new_tokens, temperature, top_k, top_p)
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("prompt is empty; give at least one character or token")
            prompt_ids = self.tokenizer.encode(prompt)
        else:
            prompt_ids = [int(t) for t in prompt]
            if not prompt_ids:
                raise ValueError("prompt has no tokens")
        stops = {self.tokenizer.eos_id} if eos_token_id is None else (
            {int(eos_token_id)} if np.isscalar(eos_token_id) else {int(t) for t in eos_token_id})
        rng = np.random.default_rng(seed)
        prof = self.profiler
        prof.reset()
        decoder = StreamDecoder(self.tokenizer, prompt_ids)
        cache = self.transformer.new_cache(len(prompt_ids) + max_new_tokens)
        tokens: list[int] = []
        finish = "length"
        prefill_wall = decode_wall = 0.0

        def sample(logits: np.ndarray) -> int:
            t0 = time.perf_counter()
            token = sample_next(logits[-1], temperature, top_k, top_p, rng)
            prof.add("sampling", time.perf_counter() - t0)
            return token

        if max_new_tokens > 0:
            prof.phase = "prefill"
            t0 = time.perf_counter()
            token = sample(self.transformer.forward(prompt_ids, cache))
            prefill_wall = time.perf_counter() - t0
            prof.phase = "decode"
            while True:     # wall times exclude the consumer's time inside ``yield``
                tokens.append(token)
                stopped = token in stops
                yield token, ("" if stopped else decoder.push(token))
                if stopped:
                    finish = "eos"
                    break
                if len(tokens) >= max_new_tokens:
                    break
                t0 = time.perf_counter()
                token = sample(self.transformer.forward([token], cache))
                decode_wall += time.perf_counter() - t0
        tail = decoder.flush()
        if tail:
            yield -1, tail
        decode_steps = max(0, len(tokens) - 1)
        return Generation(
            text=decoder.text(), tokens=tokens, prompt_tokens=prompt_ids, finish_reason=finish,
            prefill=prof.report("prefill", len(prompt_ids), prefill_wall),
            decode=prof.report("decode", decode_steps, decode_wall))

    def stream(self, prompt: str | Sequence[int], **options) -> Iterator[str]:
        """Yield the generated text piece by piece (see ``generate`` for options)."""
        for _, piece in self.steps(prompt, **options):
            if piece:
                yield piece

    def generate(self, prompt: str | Sequence[int], *, streamer: Callable[[str], None] | None = None,
                 **options) -> Generation:
        """Generate a continuation of ``prompt``; ``streamer(text)`` sees each increment."""
        steps = self.steps(prompt, **options)
        while True:
            try:
                _, piece = next(steps)
            except StopIteration as done:
                return done.value
            if piece and streamer is not None:
                streamer(piece)


def load(model: str | Model | None = None, *, backend: str = "golden", quant: str | None = None,
         preset=None, tokenizer: str | None = None, progress: bool = True,
         threads: int | None = None) -> Runtime:
    """A ``Runtime`` for ``model`` (path, loaded ``Model``, or None for Gemma 3 270M)."""
    if not isinstance(model, Model):
        model = load_model(model, tokenizer_path=tokenizer, progress=progress)
    return Runtime(model, backend, quant, preset, progress, threads)


def generate(runtime: Runtime, prompt: str | Sequence[int], *, max_new_tokens: int = 64,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None, eos_token_id: int | Sequence[int] | None = None,
             streamer: Callable[[str], None] | None = None) -> Generation:
    """Continue ``prompt`` with Hugging Face-style options; see the module docstring."""
    return runtime.generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                            top_k=top_k, top_p=top_p, seed=seed, eos_token_id=eos_token_id,
                            streamer=streamer)


def print_summary(result: Generation, profile: bool = True, out=None,
                  clock_mhz: float | None = None) -> None:
    """The tok/s lines and, if ``profile``, the per-op tables. With ``clock_mhz`` and a
    hardware backend, also the accelerator's own cycles per token and what they mean
    at that clock."""
    out = out or sys.stdout
    pre, dec = result.prefill, result.decode
    print(f"\n-- {len(result.tokens)} new tokens ({result.finish_reason}); prompt "
          f"{len(result.prompt_tokens)} tokens in {pre.wall_seconds * 1e3:.0f} ms "
          f"({pre.tokens_per_second:.1f} tok/s); decode {dec.tokens} tokens at "
          f"{dec.tokens_per_second:.2f} tok/s", file=out)
    for report in (pre, dec):
        cycles = sum(report.cycles.values())
        if clock_mhz and cycles and report.tokens:
            per_token = cycles / report.tokens if report.phase == "decode" else cycles
            unit = "per token" if report.phase == "decode" else "for the prompt"
            print(f"-- accelerator ({report.phase}): {per_token:,.0f} cycles {unit} = "
                  f"{per_token / clock_mhz / 1e3:.2f} ms at {clock_mhz:g} MHz", file=out)
    if profile:
        print(format_table(pre), file=out)
        if dec.tokens:
            print(format_table(dec), file=out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m host.llm.generate",
                                     description="Generate text on a Systole backend.")
    parser.add_argument("--prompt", required=True, help="text to continue")
    parser.add_argument("--model", help="GGUF or llama2.c .bin file (default: Gemma 3 270M)")
    parser.add_argument("--tokenizer", help="tokenizer.bin for llama2.c models")
    parser.add_argument("--backend", default="golden", choices=sorted(BACKENDS),
                        help="matmul backend (default: golden, the exact int8 model)")
    parser.add_argument("--quant", default=DEFAULT_SCHEME, choices=list(SCHEMES),
                        help=f"int8 scheme (default: {DEFAULT_SCHEME})")
    parser.add_argument("--preset", default="kv260", help="accelerator preset (cols, max K)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int, help="threads of the software backends "
                        "(default: the CPUs available, at most 4)")
    parser.add_argument("--no-profile", action="store_true", help="skip the per-op tables")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns the exit status (2 for a bad model file or option)."""
    args = _parser().parse_args(argv)
    try:
        _check_options(args.max_new_tokens, args.temperature, args.top_k, args.top_p)
        print("loading model ...", file=sys.stderr, flush=True)
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads={args.threads} must be >= 1")
        if args.threads is not None and not BACKENDS[args.backend].software:
            software = ", ".join(name for name, entry in BACKENDS.items() if entry.software)
            raise ValueError(f"--threads applies to the software backends ({software}), "
                             f"not {args.backend}")
        runtime = load(args.model, backend=args.backend, quant=args.quant, preset=args.preset,
                       tokenizer=args.tokenizer, threads=args.threads)
    except (ModelFileError, BackendUnavailable, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"== {runtime.describe()}", file=sys.stderr)
    print(args.prompt, end="", flush=True)
    with runtime:
        result = runtime.generate(args.prompt, max_new_tokens=args.max_new_tokens,
                                  temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                  seed=args.seed,
                                  streamer=lambda text: print(text, end="", flush=True))
    print()
    config = getattr(runtime.backend, "config", None)
    print_summary(result, profile=not args.no_profile,
                  clock_mhz=config.clock_mhz if config is not None else None)
    return 0


def demo(config) -> int:
    """``make demo``: Gemma 3 270M on the golden int8 backend for ``config``'s shape."""
    print(f"== Gemma 3 270M through the golden model of the {config.name} accelerator "
          f"(every matmul int8 x int8 -> int32, cols={config.cols}, max K={config.max_k})")
    try:
        runtime = load(None, backend="golden", preset=config)
    except ModelFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"== {runtime.describe()}")
    print(DEMO_PROMPT, end="", flush=True)
    result = runtime.generate(DEMO_PROMPT, max_new_tokens=48,
                              streamer=lambda text: print(text, end="", flush=True))
    print()
    print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
