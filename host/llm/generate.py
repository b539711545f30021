"""Text generation: ``generate()``, streaming, the CLI and the ``make demo`` entry.

``load(...)`` builds a ``Runtime`` (model, backend, quantization scheme, transformer,
profiler). ``generate(runtime, prompt, max_new_tokens=..., temperature=..., top_k=...,
top_p=..., seed=...)`` follows Hugging Face's keywords: greedy when ``temperature``
is 0, otherwise temperature, then top-k, then top-p (nucleus) sampling; it stops at
EOS or after ``max_new_tokens``. ``runtime.stream(prompt, ...)`` yields text as it is
generated; ``generate(..., streamer=fn)`` calls ``fn(text)`` for each increment.

Sampling never sorts the 262k vocabulary: top-k uses ``argpartition``, top-p grows a
partitioned candidate set until it holds the requested mass.

CLI: ``python -m host.generate --chat --model smollm2-135m`` is an interactive chat (the
model's chat template, the KV cache kept between turns);
``python -m host.llm.generate --prompt "Once upon a time" [--model PATH]
[--backend golden|float|sim|device|link] [--quant SCHEME] [--max-new-tokens N] ...``
streams the text, then prints tok/s and the per-op profile (``host.llm.profile``).

Decode steps run through ``host.llm.fused.FusedDecoder`` (one compiled call between two
accelerator jobs) whenever it applies to the runtime's seam; ``Runtime(..., fused=False)``
or ``--no-fused`` keeps every step on ``Transformer.forward``. Prefill always runs
``Transformer.forward``; both share the KV cache.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from hdl.spec.config import PRESETS

from ..accel.backend import BACKENDS, make_backend
from ..cli import ArgumentParser, entry, int_in, nonnegative_float, unit_fraction
from ..errors import SystoleError, UsageError
from .attention import OffloadedAttention, attention_unavailable
from .bf16 import KV_DTYPES
from .fused import FusedDecoder
from .linear import build_linears
from .model import Model, load_model
from .profile import PhaseReport, Profiler, format_table
from .quant import DEFAULT_SCHEME, SCHEMES
from .quant import scheme as get_scheme
from .tokenizer import StreamDecoder
from .transformer import RUNTIME_KV_DTYPE, Transformer

__all__ = ["ATTENTION_CHOICES", "choose_attention", "Runtime", "Generation", "NonFiniteLogits", "load",
           "generate", "sample_next", "check_prompt_text",
           "check_context", "main", "demo"]

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


class NonFiniteLogits(SystoleError, ArithmeticError):
    """The model produced NaN or infinite logits: its weights or metadata are damaged."""


def _check_options(max_new_tokens, temperature, top_k, top_p, seed=None) -> None:
    """Refuse options that cannot work, before any model work (``UsageError``)."""
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise UsageError(f"max_new_tokens={max_new_tokens!r} must be an integer >= 0")
    if not (isinstance(temperature, (int, float, np.floating)) and math.isfinite(temperature)
            and temperature >= 0.0):
        raise UsageError(f"temperature={temperature!r} must be a finite number >= 0 (0 is greedy)")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise UsageError(f"top_k={top_k!r} must be an integer >= 1 or None")
    if top_p is not None and not (isinstance(top_p, (int, float, np.floating)) and 0.0 < top_p <= 1.0):
        raise UsageError(f"top_p={top_p!r} must be in (0, 1] or None")
    if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
        raise UsageError(f"seed={seed!r} must be an integer >= 0 or None")


def check_prompt_text(prompt: str, what: str = "prompt") -> None:
    """Refuse an empty prompt or one that is not valid Unicode text (``UsageError``)."""
    if not prompt:
        raise UsageError(f"the {what} is empty; give at least one character")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as error:   # argv bytes that were not UTF-8 (surrogateescape)
        bad = prompt[error.start]
        raw = f"byte {ord(bad) - 0xDC00:#04x}" if 0xDC80 <= ord(bad) <= 0xDCFF else f"{bad!r}"
        raise UsageError(f"the {what} is not valid UTF-8 text ({raw} at character {error.start})") from None


def check_context(config, prompt_tokens: int, max_new_tokens: int) -> None:
    """Refuse a prompt that, with ``max_new_tokens``, would not fit the model's context."""
    context = config.max_seq_len
    if prompt_tokens > context:
        raise UsageError(f"the prompt is {prompt_tokens} tokens; {config.name or 'the model'}'s "
                         f"context holds {context}")
    if prompt_tokens + max_new_tokens > context:
        raise UsageError(f"the prompt ({prompt_tokens} tokens) plus max_new_tokens={max_new_tokens} "
                         f"exceeds the context of {context} tokens; use max_new_tokens <= "
                         f"{context - prompt_tokens}")


def sample_next(logits: np.ndarray, temperature: float = 0.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator | None = None) -> int:
    """One token id from ``logits [vocab]``: greedy at temperature 0, else sampled.

    top-k keeps the ``top_k`` largest logits; top-p then keeps the most likely tokens
    until their probability reaches ``top_p`` (at least one). Cost is O(vocab) plus
    sorting the small kept set.
    """
    _check_options(0, temperature, top_k, top_p)
    logits = np.asarray(logits, dtype=np.float32).reshape(-1)
    best = int(np.argmax(logits))         # the first NaN, if there is one
    if not np.isfinite(logits[best]):
        raise NonFiniteLogits(f"the model produced a non-finite logit ({logits[best]}, token {best}); "
                              "its weights or metadata are damaged")
    if temperature == 0.0:
        return best
    rng = rng if rng is not None else np.random.default_rng()
    # Shift before dividing: a tiny temperature sends the best logit to 0, the rest to -inf.
    z = (logits.astype(np.float64) - float(logits[best])) / temperature
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


ATTENTION_CHOICES = ("host", "accelerator", "auto")


# "auto" offloads attention where host.perf.attention's A53 estimate says it pays: where
# the backend submits jobs from compiled code (the KV260: the whole token, attention jobs
# and KV cache writes included, is one call), for every model. A53 ms per token, host ->
# offloaded + the accelerator time its jobs add (2026-12-06): Gemma 3 270M (1 KV head)
# context 64 5.06 -> 2.92 + 0.09, 512 23.29 -> 4.11 + 0.34; stories15M (6 KV heads) 64
# 0.85 -> 0.54 + 0.07, 240 2.22 -> 0.78 + 0.14; stories110M (12) 64 3.73 -> 1.95 + 0.28,
# 512 21.63 -> 4.47 + 0.94. Quality of the int8 KV cache (host.llm.quality, eval.txt,
# smoothquant): Gemma 3 270M +1.22% against +1.08% on the host, SmolLM2-135M (3 KV heads)
# +0.69% against +2.13%. Over a link (the Nexys Video's Ethernet submits compiled jobs
# too) or on the simulator every job is a round trip, so attention stays on the host there.


def choose_attention(choice: str, config, backend) -> str:
    """``"host"`` or ``"accelerator"`` for ``choice``. "auto": the accelerator when
    ``backend`` submits jobs from compiled code (its ``compiled_epoch()`` is not None)
    into memory it reaches directly (``mapped_memory()``), else the host."""
    if choice != "auto":
        return choice
    epoch, mapped = getattr(backend, "compiled_epoch", None), getattr(backend, "mapped_memory", None)
    return "accelerator" if epoch is not None and epoch() is not None and mapped is not None and mapped() \
        else "host"


class Runtime:
    """A model ready to generate on one backend with one quantization scheme.

    ``fused``: decode through ``FusedDecoder`` when it applies (``fused_decoder`` is None
    when it does not, or with ``fused=False``).

    ``attention``: where the attention products run (``host.llm.attention``): "host"
    (on the CPU), "accelerator" (q.K^T and p.V as jobs over an int8 KV cache in device
    memory) or "auto", the default (``choose_attention``'s rule: the accelerator on the
    KV260, else the host); ``attention_mode`` is the one chosen.

    ``kv_cache``: the host attention's KV cache type (``host.llm.bf16``): "bfloat16"
    (``RUNTIME_KV_DTYPE``) or "float32"; by default bfloat16, except on the float
    backend, the float32 reference, where it is float32.
    """

    def __init__(self, model: Model, backend: str | object = "golden", quant: str | None = None,
                 preset=None, progress: bool = False, threads: int | None = None,
                 fused: bool = True, attention: str = "auto", kv_cache: str | None = None):
        if kv_cache is not None and kv_cache not in KV_DTYPES:
            raise UsageError(f"kv_cache={kv_cache!r}; choose one of {', '.join(KV_DTYPES)}")
        if attention not in ATTENTION_CHOICES:
            raise UsageError(f"attention={attention!r}; choose one of {', '.join(ATTENTION_CHOICES)}")
        self.model = model
        options = {} if threads is None else {"threads": threads}
        self.backend = make_backend(backend, preset, **options) if isinstance(backend, str) else backend
        if quant is None:
            from .model.catalog import recommended_scheme

            quant = recommended_scheme(model.source) or DEFAULT_SCHEME
        self.quant = None if self.backend.name == "float" else get_scheme(quant)
        self.profiler = Profiler()
        linears, weights = build_linears(model, self.backend, self.quant, self.profiler,
                                         progress=progress)
        self.attention_mode = choose_attention(attention, model.config, self.backend)
        offload = None
        if self.attention_mode == "accelerator":
            problem = attention_unavailable(self.backend) if self.quant is not None else \
                "the float backend runs no int8 jobs"
            if problem is not None:
                raise UsageError(f"attention on the accelerator needs an int8 backend: {problem}")
            offload = OffloadedAttention(model.config, self.backend)
        if kv_cache is None:
            kv_cache = "float32" if self.quant is None else RUNTIME_KV_DTYPE
        self.transformer = Transformer(model.config, weights, linears, self.profiler, offload, kv_cache)
        self.fused_decoder = FusedDecoder.build(self.transformer, self.profiler) if fused else None

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
        attention = ", attention on the accelerator (int8 KV cache)" \
            if self.attention_mode == "accelerator" else ""
        return f"{self.model.config.name} on {self.backend.name}{where}{quant}{attention}"

    def steps(self, prompt: str | Sequence[int] | None = None, *, messages: Sequence[dict] | None = None,
              max_new_tokens: int = 64, temperature: float = 0.0, top_k: int | None = None,
              top_p: float | None = None, seed: int | None = None,
              eos_token_id: int | Sequence[int] | None = None, stop: Sequence[str] | str | None = None,
              cache=None, reuse: int = 0) -> Iterator[tuple[int, str]]:
        """Yield ``(token, text increment)`` per new token; returns the ``Generation``.

        ``messages`` (instead of ``prompt``) are rendered with the model's chat template.
        Generation ends at an end-of-generation token of the vocabulary (or
        ``eos_token_id``), after ``max_new_tokens``, or when the text contains one of the
        ``stop`` strings (the text ends before it; finish reason "stop"). Text that may
        be the start of a stop string is held back until it is known not to be.

        ``cache`` with ``reuse``: the cache already holds the first ``reuse`` prompt
        tokens (a chat session's earlier turns); only the rest are run.

        A last ``(-1, text)`` carries text held back at the end (an incomplete
        UTF-8 sequence). Prefill and decode wall times exclude the consumer's time.
        """
        _check_options(max_new_tokens, temperature, top_k, top_p, seed)
        stops_text = _check_stop(stop)
        if messages is not None:
            if prompt is not None:
                raise UsageError("give either a prompt or messages, not both")
            from .chat import chat_prompt_ids

            prompt = chat_prompt_ids(self.tokenizer, messages)
        if prompt is None:
            raise UsageError("give a prompt or messages")
        if isinstance(prompt, str):
            check_prompt_text(prompt)
            prompt_ids = self.tokenizer.encode(prompt)
        else:
            prompt_ids = [int(t) for t in prompt]
            if not prompt_ids:
                raise UsageError("the prompt has no tokens")
            vocab = self.model.config.vocab_size
            if not all(0 <= t < vocab for t in prompt_ids):
                raise UsageError(f"the prompt has token ids outside the vocabulary [0, {vocab})")
        check_context(self.model.config, len(prompt_ids), max_new_tokens)
        stops = set(self.tokenizer.stop_ids) if eos_token_id is None else (
            {int(eos_token_id)} if np.isscalar(eos_token_id) else {int(t) for t in eos_token_id})
        rng = np.random.default_rng(seed)
        prof = self.profiler
        prof.reset()
        decoder = StreamDecoder(self.tokenizer, prompt_ids)
        if cache is None:
            cache, reuse = self.transformer.new_cache(len(prompt_ids) + max_new_tokens), 0
        reuse = max(0, min(int(reuse), len(prompt_ids) - 1, cache.length))
        if not getattr(cache, "can_shorten", lambda length: True)(reuse):
            reuse = 0             # a sliding window's ring has moved past it: run the prompt again
        cache.length = reuse
        cache.reserve(len(prompt_ids) + max_new_tokens)
        tokens: list[int] = []
        finish = "length"
        prefill_wall = decode_wall = 0.0
        text, emitted = "", 0            # the reply so far, and how much of it went out

        def sample(logits: np.ndarray) -> int:
            t0 = time.perf_counter()
            token = sample_next(logits[-1], temperature, top_k, top_p, rng)
            prof.add("sampling", time.perf_counter() - t0)
            return token

        fused = self.fused_decoder

        def decode_step(token: int) -> int:
            if fused is None:
                return sample(self.transformer.forward([token], cache))
            if temperature > 0.0:
                return sample(fused.logits(token, cache))
            best, logit = fused.greedy(token, cache)     # sample_next's argmax, and its check
            if not math.isfinite(logit):
                raise NonFiniteLogits(f"the model produced a non-finite logit ({logit}, token {best}); "
                                      "its weights or metadata are damaged")
            return best

        if max_new_tokens > 0:
            prof.phase = "prefill"
            t0 = time.perf_counter()
            token = sample(self.transformer.forward(prompt_ids[reuse:], cache))
            prefill_wall = time.perf_counter() - t0
            prof.phase = "decode"
            while True:     # wall times exclude the consumer's time inside ``yield``
                tokens.append(token)
                stopped = token in stops
                piece = "" if stopped else decoder.push(token)
                if stops_text:
                    text += piece
                    cut = _find_stop(text, stops_text, emitted)
                    if cut is not None:
                        text = text[:cut]
                        yield token, text[emitted:]
                        emitted = len(text)
                        finish = "stop"
                        break
                    safe = len(text) - _held_back(text, stops_text)
                    piece, emitted = text[emitted:safe], max(emitted, safe)
                yield token, piece
                if stopped:
                    finish = "eos"
                    break
                if len(tokens) >= max_new_tokens:
                    break
                t0 = time.perf_counter()
                token = decode_step(token)
                decode_wall += time.perf_counter() - t0
        if finish != "stop":
            tail = decoder.flush()
            if stops_text:
                text += tail
                cut = _find_stop(text, stops_text, emitted)
                if cut is not None:
                    text, finish = text[:cut], "stop"
                tail = text[emitted:]
            if tail:
                yield -1, tail
        decode_steps = max(0, len(tokens) - 1)
        return Generation(
            text=text if stops_text else decoder.text(), tokens=tokens, prompt_tokens=prompt_ids,
            finish_reason=finish,
            prefill=prof.report("prefill", len(prompt_ids) - reuse, prefill_wall),
            decode=prof.report("decode", decode_steps, decode_wall), extra={"reused_tokens": reuse})

    def stream(self, prompt: str | Sequence[int] | None = None, **options) -> Iterator[str]:
        """Yield the generated text piece by piece (see ``generate`` for options)."""
        for _, piece in self.steps(prompt, **options):
            if piece:
                yield piece

    def generate(self, prompt: str | Sequence[int] | None = None, *, streamer: Callable[[str], None] | None = None,
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


def _check_stop(stop) -> list[str]:
    """``stop`` as a list of non-empty strings (at most 16); ``UsageError`` otherwise."""
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, (list, tuple)) or len(stops) > 16 or \
            not all(isinstance(s, str) and s for s in stops):
        raise UsageError(f"stop={stop!r} must be a non-empty string or a list of at most 16 of them")
    return list(stops)


def _find_stop(text: str, stops: list[str], emitted: int) -> int | None:
    """Where the first stop string in ``text`` starts (searching from where one could
    begin that was not yet found), else None."""
    start = max(0, emitted - max(len(s) for s in stops))
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(found) if found else None


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest end of ``text`` that a stop string starts with."""
    for size in range(min(len(text), max(len(s) for s in stops) - 1), 0, -1):
        if any(s.startswith(text[-size:]) for s in stops):
            return size
    return 0


def load(model: str | Model | None = None, *, backend: str = "golden", quant: str | None = None,
         preset=None, tokenizer: str | None = None, progress: bool = True,
         threads: int | None = None, fused: bool = True, attention: str = "auto",
         kv_cache: str | None = None) -> Runtime:
    """A ``Runtime`` for ``model`` (path, loaded ``Model``, or None for Gemma 3 270M)."""
    if not isinstance(model, Model):
        model = load_model(model, tokenizer_path=tokenizer, progress=progress)
    return Runtime(model, backend, quant, preset, progress, threads, fused, attention, kv_cache)


def generate(runtime: Runtime, prompt: str | Sequence[int] | None = None, *,
             messages: Sequence[dict] | None = None, max_new_tokens: int = 64,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None, eos_token_id: int | Sequence[int] | None = None,
             stop: Sequence[str] | str | None = None,
             streamer: Callable[[str], None] | None = None) -> Generation:
    """Continue ``prompt``, or answer chat ``messages`` (``[{"role": "user", "content": ...}]``,
    rendered with the model's chat template), with Hugging Face-style options; see the
    module docstring. ``stop`` strings end the text before them."""
    return runtime.generate(prompt, messages=messages, max_new_tokens=max_new_tokens,
                            temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                            eos_token_id=eos_token_id, stop=stop, streamer=streamer)


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


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m host.llm.generate",
                            description="Generate text on a Systole backend.")
    parser.add_argument("--prompt", help="text to continue (UTF-8, not empty); with --chat, "
                        "the first message")
    parser.add_argument("--chat", action="store_true", help="an interactive chat with the model's "
                        "template; the KV cache carries over between turns (/reset, /exit)")
    parser.add_argument("--system", help="with --chat: a system message")
    parser.add_argument("--stop", action="append", help="end the text before this string (repeatable)")
    parser.add_argument("--model", help="GGUF or llama2.c .bin file, or a catalog name "
                        "(gemma3-270m, smollm2-135m; default: Gemma 3 270M)")
    parser.add_argument("--tokenizer", help="tokenizer.bin for llama2.c models")
    parser.add_argument("--backend", default="golden", choices=sorted(BACKENDS),
                        help="matmul backend (default: golden, the exact int8 model)")
    parser.add_argument("--quant", choices=list(SCHEMES),
                        help=f"quantization scheme: int8, or 4-bit weights for some layer kinds (w4-*, "
                             f"w4a8) (default: {DEFAULT_SCHEME}, or a catalog model's own)")
    parser.add_argument("--preset", default="kv260", choices=sorted(PRESETS),
                        help="accelerator preset (cols, max K)")
    parser.add_argument("--max-new-tokens", type=int_in(0), default=64,
                        help="at most this many new tokens; prompt plus these must fit the context")
    parser.add_argument("--temperature", type=nonnegative_float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int_in(1))
    parser.add_argument("--top-p", type=unit_fraction)
    parser.add_argument("--seed", type=int_in(0), help="random seed of the sampler (>= 0)")
    parser.add_argument("--threads", type=int_in(1, 256), help="threads of the software backends "
                        "(default: the CPUs available, at most 4)")
    parser.add_argument("--no-profile", action="store_true", help="skip the per-op tables")
    parser.add_argument("--no-fused", action="store_true", help="decode every token through "
                        "Transformer.forward instead of the fused one-token path (host.llm.fused)")
    parser.add_argument("--attention", default="auto", choices=ATTENTION_CHOICES,
                        help="where attention's q.K^T and p.V run: host (on the CPU), accelerator "
                             "(jobs over an int8 KV cache in device memory), auto (the default: the "
                             "accelerator where jobs are submitted from compiled code, the KV260; "
                             "else the host)")
    parser.add_argument("--kv-cache", choices=list(KV_DTYPES),
                        help=f"the host attention's KV cache (default {RUNTIME_KV_DTYPE}, half the "
                             "bytes of float32, float32 on the float backend; host.llm.quality "
                             "--kv-cache measures it)")
    return parser


@entry
def main(argv: list[str] | None = None) -> int:
    """The CLI; see ``host.cli`` for how it ends (2: a bad option, model file or device)."""
    args = _parser().parse_args(argv)
    # Everything that can be checked without the model is checked before it loads.
    if args.prompt is None and not args.chat:
        raise UsageError("give --prompt TEXT, or --chat for a conversation")
    if args.system is not None and not args.chat:
        raise UsageError("--system applies to --chat")
    if args.prompt is not None:
        check_prompt_text(args.prompt, "--prompt")
    _check_stop(args.stop)
    _check_options(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)
    if args.threads is not None and not BACKENDS[args.backend].software:
        software = ", ".join(name for name, entry in BACKENDS.items() if entry.software)
        raise UsageError(f"--threads applies to the software backends ({software}), not {args.backend}")
    print("loading model ...", file=sys.stderr, flush=True)
    model = load_model(args.model, tokenizer_path=args.tokenizer)
    if args.chat and not getattr(model.tokenizer, "chat_template", None):
        raise UsageError(f"{model.source.name} has no chat template; use --prompt without --chat")
    if not args.chat:
        check_context(model.config, len(model.tokenizer.encode(args.prompt)), args.max_new_tokens)
    runtime = load(model, backend=args.backend, quant=args.quant, preset=args.preset,
                   threads=args.threads, fused=not args.no_fused, attention=args.attention,
                   kv_cache=args.kv_cache)
    print(f"== {runtime.describe()}", file=sys.stderr)
    if args.chat:
        with runtime:
            return chat_loop(runtime, args)
    print(args.prompt, end="", flush=True)
    produced = 0
    with runtime:
        steps = runtime.steps(args.prompt, max_new_tokens=args.max_new_tokens,
                              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              seed=args.seed, stop=args.stop)
        try:
            while True:
                try:
                    token, piece = next(steps)
                except StopIteration as done:
                    result = done.value
                    break
                produced += token >= 0
                print(piece, end="", flush=True)
        except KeyboardInterrupt:
            print(flush=True)
            print(f"-- interrupted after {produced} new tokens (the text above); "
                  f"{args.max_new_tokens - produced} were not generated", file=sys.stderr)
            return 130
    print()
    config = getattr(runtime.backend, "config", None)
    print_summary(result, profile=not args.no_profile,
                  clock_mhz=config.clock_mhz if config is not None else None)
    return 0


def chat_loop(runtime: Runtime, args, read=None, out=None) -> int:
    """``--chat``: read a message per line, stream the reply; the KV cache carries over.

    ``/reset`` starts a new conversation, ``/exit`` (or end of input) ends it. A reply cut
    by Ctrl-C stays in the history as far as it got.
    """
    from .chat import ChatSession

    out, read = out or sys.stdout, read or input
    session = ChatSession(runtime, system=args.system)
    options = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                   top_k=args.top_k, top_p=args.top_p, seed=args.seed, stop=args.stop)
    print("-- chat with the model: one message per line; /reset starts over, /exit ends",
          file=sys.stderr)
    first = args.prompt
    while True:
        if first is not None:
            text, first = first, None
            print(f"> {text}", file=out)
        else:
            try:
                text = read("> ")
            except EOFError:
                print(file=out)
                return 0
        command = text.strip()
        if command in ("/exit", "/quit"):
            return 0
        if command == "/reset":
            session.reset()
            print("-- new conversation", file=sys.stderr)
            continue
        if not command:
            continue
        try:
            for piece in session.send(text, **options):
                print(piece, end="", flush=True, file=out)
        except KeyboardInterrupt:
            print("\n-- interrupted", file=sys.stderr)
            continue
        except UsageError as error:          # a conversation longer than the context
            print(f"\n-- {error}", file=sys.stderr)
            session.reset()
            print("-- new conversation", file=sys.stderr)
            continue
        print(file=out)
        result = session.last
        print(f"-- {len(result.tokens)} tokens at {result.decode.tokens_per_second:.1f} tok/s; "
              f"{session.reused_tokens} of {len(result.prompt_tokens)} prompt tokens reused from "
              "the cache", file=sys.stderr)


def demo(config) -> int:
    """``make demo``: Gemma 3 270M on the golden int8 backend for ``config``'s shape."""
    print(f"== Gemma 3 270M through the golden model of the {config.name} accelerator "
          f"(every matmul int8 x int8 -> int32, cols={config.cols}, max K={config.max_k})")
    runtime = load(None, backend="golden", preset=config)
    print(f"== {runtime.describe()}")
    print(DEMO_PROMPT, end="", flush=True)
    result = runtime.generate(DEMO_PROMPT, max_new_tokens=48,
                              streamer=lambda text: print(text, end="", flush=True))
    print()
    print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
