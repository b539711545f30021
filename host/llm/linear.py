"""The linear-layer seam between the transformer and a matmul backend.

``Transformer`` calls ``linear(name, x)`` with float32 activations; the objects here
answer it:

- ``FloatLinears``: the float reference (``FloatBackend``), no quantization.
- ``QuantizedLinears``: the accelerator path. At load it quantizes each weight
  (``host.llm.quant``), splits K into groups (the scheme's activation groups, and
  ``backend.max_k``) and loads every piece once with ``backend.load``. Per call it
  quantizes activations to int8 in [-127, 127], runs ``backend.matmul`` (exact int32)
  for each piece, adds the pieces that share an activation scale in int32 and
  applies ``sx[m] * sw[n]`` in float32.

``build_linears`` prepares both from a ``Model`` and a ``QuantScheme``, including
calibration and the SmoothQuant fold. Each step reports its time to the profiler.
"""

from __future__ import annotations

import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Sequence

import numpy as np

from ..accel.backend import IntBackend
from ..accel.software import FloatBackend
from . import kernels
from .layers import LinearSpec, linear_shapes, linear_specs
from .model import Model
from .model.cache import cache_root
from .profile import Profiler
from .quant import QMAX, ActivationStats, QuantScheme, calibration_key, quantize_activations, quantize_weight, smooth
from .quant import scheme as get_scheme
from .transformer import Transformer

__all__ = ["FloatLinears", "QuantizedLinears", "build_linears", "calibrate", "CALIBRATION_TEXT"]

CALIBRATION_TEXT = Path(__file__).parent / "data" / "calibration.txt"


class FloatLinears:
    """The float32 seam: ``x @ W.T`` for every layer, timed per kind."""

    def __init__(self, specs: dict[str, LinearSpec], backend: FloatBackend | None = None,
                 profiler: Profiler | None = None, observer: ActivationStats | None = None):
        self.backend = backend or FloatBackend()
        self.profiler = profiler or Profiler()
        self.observer = observer
        self.layers = {name: (spec.kind, spec.weight.shape, self.backend.load(name, spec.weight))
                       for name, spec in specs.items()}

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        kind, (n, k), handle = self.layers[name]
        if self.observer is not None:
            self.observer.observe(name, x)
        t0 = perf_counter()
        y = self.backend.matmul(x, handle)
        self.profiler.add_matmul(kind, perf_counter() - t0, x.shape[0] * n * k, None)
        return y


@dataclass(frozen=True)
class _Layer:
    """One quantized linear layer as loaded on the backend.

    K is cut into activation groups (``group_starts``; one group unless the scheme
    groups this kind); each group is cut again into pieces of at most ``max_k``.
    ``pieces[g]`` lists ``(k0, k1, handle)``; pieces of one group share the
    activation scale, so their int32 results add exactly before scaling.
    """

    kind: str
    n: int
    group_starts: np.ndarray               # int [G]
    group_sizes: np.ndarray                # int [G]
    pieces: tuple[tuple[tuple[int, int, object], ...], ...]
    w_scale: np.ndarray                    # float32 [G, N]
    static_scale: np.ndarray | None        # float32 [G], static activation scales


class QuantizedLinears:
    """The int8 seam over an ``IntBackend`` (see the module docstring)."""

    def __init__(self, specs: dict[str, LinearSpec], backend: IntBackend, scheme: QuantScheme,
                 stats: ActivationStats | None = None, profiler: Profiler | None = None,
                 progress: bool = False):
        if scheme.activations == "static" and stats is None:
            raise ValueError(f"scheme {scheme.name!r} needs calibration statistics")
        self.backend, self.scheme = backend, scheme
        self.profiler = profiler or Profiler()
        self.layers: dict[str, _Layer] = {}
        kernels.available()    # load the compiled one-token kernels now, not in token 1's profile
        items = specs.items()
        if progress:
            from tqdm import tqdm
            items = tqdm(items, desc=f"quantizing ({scheme.name}) and loading on {backend.name}",
                         unit="layer", leave=False)
        for name, spec in items:
            self.layers[name] = self._load(name, spec, stats)

    def _load(self, name: str, spec: LinearSpec, stats: ActivationStats | None) -> _Layer:
        n, k = spec.weight.shape
        size = self.scheme.group_size(spec.kind) or k
        starts = np.arange(0, k, size)
        sizes = np.minimum(starts + size, k) - starts
        w = np.asarray(spec.weight, dtype=np.float32)
        if self.scheme.weights == "tensor":      # one scale for the whole tensor
            q_all, s_all = quantize_weight(w, "tensor")
        pieces, w_scales, static = [], [], []
        for g0, g_size in zip(starts.tolist(), sizes.tolist()):
            g1 = g0 + g_size
            if self.scheme.weights == "tensor":
                q, w_scale = q_all[:, g0:g1], s_all
            else:
                q, w_scale = quantize_weight(w[:, g0:g1], "channel")
            group_pieces = []
            for p0 in range(g0, g1, self.backend.max_k):
                p1 = min(g1, p0 + self.backend.max_k)
                handle = self.backend.load(f"{name}[{p0}:{p1}]",
                                           np.ascontiguousarray(q[:, p0 - g0:p1 - g0]))
                group_pieces.append((p0, p1, handle))
            pieces.append(tuple(group_pieces))
            w_scales.append(w_scale)
            if self.scheme.activations == "static":
                amax = float(stats.absmax[name][g0:g1].max()) * self.scheme.static_margin
                static.append(amax / QMAX if amax > 0 else 1.0)
        return _Layer(spec.kind, n, starts, sizes, tuple(pieces),
                      np.stack(w_scales).astype(np.float32),
                      np.asarray(static, np.float32) if static else None)

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        layer = self.layers[name]
        prof, backend = self.profiler, self.backend
        t0 = perf_counter()
        q, x_scale = quantize_activations(x, layer.group_starts, layer.group_sizes,
                                          layer.static_scale)
        t1 = perf_counter()
        prof.add("quantize", t1 - t0)
        if len(layer.pieces) == 1 and len(layer.pieces[0]) == 1:
            # The common case, kept short: one group, one piece, one matmul.
            acc = backend.matmul(q, layer.pieces[0][0][2])
            t2 = perf_counter()
            prof.add_matmul(layer.kind, t2 - t1, q.shape[0] * layer.n * x.shape[1],
                            backend.last_cycles())
            if q.shape[0] == 1:      # one token: fold both scales into one vector first
                y = kernels.dequantize_row(acc, layer.w_scale[0], x_scale[0, 0])
                if y is None:
                    y = np.multiply(acc, layer.w_scale[0] * x_scale[0, 0], dtype=np.float32)
            else:
                y = acc.astype(np.float32)
                y *= x_scale
                y *= layer.w_scale[0]
            prof.add("dequantize", perf_counter() - t2)
            return y
        y = None
        for g, group in enumerate(layer.pieces):
            acc = None
            for p0, p1, handle in group:
                part_q = q if len(layer.pieces) == 1 and len(group) == 1 else \
                    np.ascontiguousarray(q[:, p0:p1])
                t1 = perf_counter()
                part = backend.matmul(part_q, handle)
                prof.add_matmul(layer.kind, perf_counter() - t1, q.shape[0] * layer.n * (p1 - p0),
                                backend.last_cycles())
                acc = part if acc is None else acc + part
            t2 = perf_counter()
            if q.shape[0] == 1:      # one token: fold both scales into one vector first
                scaled = np.multiply(acc, layer.w_scale[g] * x_scale[0, g], dtype=np.float32)
            else:
                scaled = acc.astype(np.float32)
                scaled *= x_scale[:, g:g + 1]
                scaled *= layer.w_scale[g]
            y = scaled if y is None else y + scaled
            prof.add("dequantize", perf_counter() - t2)
        return y


def calibrate(model: Model, texts: Sequence[str] | None = None, *, chunk: int = 128,
              use_cache: bool = True) -> ActivationStats:
    """Max |x| per input channel of every linear layer, from float runs over ``texts``.

    Each text (default: the paragraphs of ``host/llm/data/calibration.txt``) is one
    prompt starting with BOS. Results are cached per model and text; a cached file that
    is damaged or does not fit the model is recomputed and rewritten (one line on
    stderr says so), and a cache that cannot be written (full disk) only costs the
    recomputation next time.
    """
    if texts is None:
        texts = [p.strip() for p in CALIBRATION_TEXT.read_text().split("\n\n") if p.strip()]
    path = cache_root() / "calibration" / f"{calibration_key(model.identity, list(texts))}.npz"
    if use_cache and path.is_file():
        cached = _cached_stats(path, model)
        if cached is not None:
            return cached
    stats = ActivationStats()
    linears = FloatLinears(linear_specs(model.config, model.weights), observer=stats)
    transformer = Transformer(model.config, model.weights, linears)
    for text in texts:
        tokens = model.tokenizer.encode(text)[: model.config.max_seq_len]
        cache = transformer.new_cache(len(tokens))
        for start in range(0, len(tokens), chunk):
            transformer.forward(tokens[start:start + chunk], cache, all_logits=True)
        stats.tokens += len(tokens)
    if use_cache:
        temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")     # concurrent writers
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            stats.save(temporary)
            temporary.replace(path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            print(f"note: calibration statistics not cached in {path.parent} "
                  f"({error.strerror or error})", file=sys.stderr)
    return stats


def _cached_stats(path: Path, model: Model) -> ActivationStats | None:
    """The statistics stored at ``path``; ``None``, with one line on stderr, if unusable."""
    try:
        stats = ActivationStats.load(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        problem = f"{type(error).__name__}: {error}"
    else:
        problem = _stats_problem(stats, model)
    if problem is None:
        return stats
    print(f"note: damaged calibration statistics {path} ({problem}); recomputing them", file=sys.stderr)
    return None


def _stats_problem(stats: ActivationStats, model: Model) -> str | None:
    if stats.tokens <= 0:
        return f"{stats.tokens} tokens"
    for name, _, _, k in linear_shapes(model.config):
        absmax = stats.absmax.get(name)
        if absmax is None:
            return f"layer {name} is missing"
        if absmax.shape != (k,) or not np.all(np.isfinite(absmax)) or np.any(absmax < 0):
            return f"layer {name} holds {absmax.shape} values, expected {k} finite values >= 0"
    return None


def build_linears(model: Model, backend, quant: str | QuantScheme | None = None,
                  profiler: Profiler | None = None, stats: ActivationStats | None = None,
                  progress: bool = False):
    """The seam and the norm weights for running ``model`` on ``backend``.

    Returns ``(linears, weights)``: ``weights`` is ``model.weights`` with any norm
    weights the scheme folded factors into replaced. A ``FloatBackend`` ignores
    ``quant`` and computes in float32.
    """
    specs = linear_specs(model.config, model.weights)
    if isinstance(backend, FloatBackend):
        return FloatLinears(specs, backend, profiler), model.weights
    chosen = get_scheme(quant) if quant is not None else None
    if chosen is None:
        from .quant import DEFAULT_SCHEME
        chosen = get_scheme(DEFAULT_SCHEME)
    weights = model.weights
    if chosen.needs_calibration and stats is None:
        stats = calibrate(model)
    if chosen.smooth_alpha is not None:
        norms = {name: w for name, w in model.weights.items() if name.endswith(("norm.weight", ".bias"))}
        specs, changed, stats = smooth(model.config, specs, norms, stats, chosen.smooth_alpha,
                                       chosen.smooth_kinds)
        weights = {**model.weights, **changed}
    return QuantizedLinears(specs, backend, chosen, stats, profiler, progress), weights
