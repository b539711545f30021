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
from ..accel.pack import Int4Weights
from ..accel.software import FloatBackend
from . import kernels
from .layers import LinearSpec, linear_shapes, linear_specs
from .model import Model
from .model.cache import cache_root
from .profile import Profiler
from hdl.spec.formats import GROUP
from .quant import GPTQ_MAX_ROWS, QMAX, ActivationStats, QuantScheme, calibration_key, quantize_activations, quantize_weight, smooth
from .quant4 import Hessians, gptq_int4, rtn_int4
from .quant import scheme as get_scheme
from .transformer import Transformer

__all__ = ["FloatLinears", "QuantizedLinears", "Shortlist", "build_linears", "calibrate", "calibration_hessians",
           "quantize_int4_layers", "CALIBRATION_TEXT"]

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
    shortlist: "Shortlist | None" = None   # an int4 classifier's int8 rows (QuantScheme.shortlist)


@dataclass(frozen=True)
class Shortlist:
    """An int4 classifier's exact int8 weights, kept on the host: per row of results, the
    ``size`` largest logits of the int4 job are recomputed as the int8 classifier
    (``quantize_weight`` per channel) gives them, the same float32 values bit for bit.
    The accelerator streams the 4-bit weights (about half the bytes); the likely tokens
    keep the int8 classifier's logits, the tail keeps the int4 job's."""

    q: np.ndarray                          # int8 [N, K]
    w_scale: np.ndarray                    # float32 [N]
    size: int

    def apply(self, y: np.ndarray, q_x: np.ndarray, x_scale: np.ndarray) -> None:
        """Recompute in place the ``size`` largest of each row of ``y [M, N]`` (the int4
        job's logits) from the int8 activations ``q_x [M, K]`` and scales ``[M, 1]``:
        ``float32(acc) * (w_scale * x_scale)`` for one row, ``float32(acc) * x_scale *
        w_scale`` for several, as ``QuantizedLinears`` dequantizes the int8 layer."""
        n = y.shape[1]
        size = min(self.size, n)
        for m in range(y.shape[0]):
            row = y[m]
            # the largest first; among equal values the smaller index (as np.argmax)
            threshold = np.partition(row, n - size)[n - size]
            above = np.flatnonzero(row > threshold)
            picked = np.concatenate([above, np.flatnonzero(row == threshold)[:size - len(above)]])
            acc = self.q[picked].astype(np.int32) @ q_x[m].astype(np.int32)
            if y.shape[0] == 1:
                row[picked] = np.multiply(acc, self.w_scale[picked] * x_scale[m, 0], dtype=np.float32)
            else:
                exact = acc.astype(np.float32)
                exact *= x_scale[m, 0]
                exact *= self.w_scale[picked]
                row[picked] = exact


class QuantizedLinears:
    """The int8 seam over an ``IntBackend`` (see the module docstring)."""

    def __init__(self, specs: dict[str, LinearSpec], backend: IntBackend, scheme: QuantScheme,
                 stats: ActivationStats | None = None, profiler: Profiler | None = None,
                 progress: bool = False,
                 int4: dict[str, tuple[Int4Weights, np.ndarray]] | None = None):
        if scheme.activations == "static" and stats is None:
            raise ValueError(f"scheme {scheme.name!r} needs calibration statistics")
        self.backend, self.scheme = backend, scheme
        # int4 layers: (Int4Weights, d) from quantize_int4_layers; plain RTN when missing
        self.int4 = int4 or {}
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
        if self.scheme.weight_format(spec.kind) == "int4":
            return self._load_int4(name, spec)
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

    def _load_int4(self, name: str, spec: LinearSpec) -> _Layer:
        """One activation group; K pieces of at most ``max_k`` cut at 4-bit group edges."""
        n, k = spec.weight.shape
        weights, d = self.int4.get(name) or rtn_int4(spec.weight)
        step = self.backend.max_k - self.backend.max_k % GROUP
        pieces = []
        for p0 in range(0, k, step):
            p1 = min(k, p0 + step)
            piece = Int4Weights(np.ascontiguousarray(weights.q[:, p0:p1]),
                                np.ascontiguousarray(weights.s[:, p0 // GROUP:-(-p1 // GROUP)]))
            pieces.append((p0, p1, self.backend.load(f"{name}[{p0}:{p1}]", piece)))
        shortlist = None
        if spec.kind == "classifier" and self.scheme.shortlist:
            shortlist = Shortlist(*quantize_weight(np.asarray(spec.weight, np.float32), "channel"),
                                  self.scheme.shortlist)
        return _Layer(spec.kind, n, np.zeros(1, np.int64), np.full(1, k), (tuple(pieces),),
                      np.asarray(d, np.float32)[None, :], None, shortlist)

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
            if layer.shortlist is not None:
                t3 = perf_counter()
                layer.shortlist.apply(y, q, x_scale)
                prof.add("shortlist", perf_counter() - t3)
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
        if layer.shortlist is not None:
            t3 = perf_counter()
            layer.shortlist.apply(y, q, x_scale)
            prof.add("shortlist", perf_counter() - t3)
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
    texts = _calibration_texts(texts)
    path = cache_root() / "calibration" / f"{calibration_key(model.identity, list(texts))}.npz"
    if use_cache and path.is_file():
        cached = _cached_stats(path, model)
        if cached is not None:
            return cached
    stats = ActivationStats()
    stats.tokens = _run_float(model, texts, stats, chunk)
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


def _calibration_texts(texts: Sequence[str] | None) -> list[str]:
    if texts is None:
        return [p.strip() for p in CALIBRATION_TEXT.read_text().split("\n\n") if p.strip()]
    return list(texts)


def _run_float(model: Model, texts: Sequence[str], observer, chunk: int = 128) -> int:
    """Run the float model over ``texts`` (each from BOS) with ``observer`` seeing every
    linear layer's input; returns the number of tokens."""
    linears = FloatLinears(linear_specs(model.config, model.weights), observer=observer)
    transformer = Transformer(model.config, model.weights, linears)
    total = 0
    for text in texts:
        tokens = model.tokenizer.encode(text)[: model.config.max_seq_len]
        cache = transformer.new_cache(len(tokens))
        for start in range(0, len(tokens), chunk):
            transformer.forward(tokens[start:start + chunk], cache, all_logits=True)
        total += len(tokens)
    return total


_HESSIANS: dict[tuple, Hessians] = {}      # one process scores several schemes: compute once


def calibration_hessians(model: Model, names: Sequence[str], texts: Sequence[str] | None = None,
                         ) -> Hessians:
    """``X^T X`` of the inputs of layers ``names`` over the calibration texts (float
    model; default text ``host/llm/data/calibration.txt``), kept for this process."""
    texts = _calibration_texts(texts)
    key = (model.identity, calibration_key(model.identity, texts))
    cached = _HESSIANS.get(key)
    if cached is not None and set(names) <= cached.names:
        return cached
    hessians = Hessians(frozenset(names) | (cached.names if cached else frozenset()))
    _run_float(model, texts, hessians)
    _HESSIANS.clear()                    # hundreds of MB for Gemma: keep one model's
    _HESSIANS[key] = hessians
    return hessians


def quantize_int4_layers(specs: dict[str, LinearSpec], scheme: QuantScheme,
                         hessians: Hessians | None = None,
                         factors: dict[str, np.ndarray] | None = None,
                         progress: bool = False) -> dict[str, tuple[Int4Weights, np.ndarray]]:
    """``(Int4Weights, d)`` for every layer the scheme runs in int4 (``host.llm.quant4``).

    ``hessians`` are of the unsmoothed inputs; ``factors`` are the SmoothQuant factors
    folded into ``specs`` (a layer's inputs divided by ``s`` have ``H / (s s^T)``).
    """
    names = [name for name, spec in specs.items() if scheme.weight_format(spec.kind) == "int4"]
    if progress:
        from tqdm import tqdm
        names = tqdm(names, desc=f"4-bit weights ({scheme.int4_method})", unit="layer", leave=False)
    result = {}
    for name in names:
        spec = specs[name]
        if scheme.int4_method == "rtn":
            result[name] = rtn_int4(spec.weight)
            continue
        h = hessians.mean(name)
        s = (factors or {}).get(name)
        if s is not None:
            inverse = 1.0 / s.astype(np.float64)
            h = h * inverse[:, None] * inverse[None, :]
        if scheme.int4_method == "gptq" and spec.weight.shape[0] <= GPTQ_MAX_ROWS:
            result[name] = gptq_int4(spec.weight, h, damp=scheme.gptq_damp)
        else:
            result[name] = rtn_int4(spec.weight, importance=np.diag(h))
    return result


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
    factors: dict[str, np.ndarray] = {}
    if chosen.smooth_alpha is not None:
        norms = {name: w for name, w in model.weights.items() if name.endswith(("norm.weight", ".bias"))}
        specs, changed, stats = smooth(model.config, specs, norms, stats, chosen.smooth_alpha,
                                       chosen.smooth_kinds, factors)
        weights = {**model.weights, **changed}
    int4 = None
    if chosen.int4_kinds:
        hessians = None
        if chosen.needs_hessians:
            hessians = calibration_hessians(model, [name for name, spec in specs.items()
                                                    if spec.kind in chosen.int4_kinds])
        int4 = quantize_int4_layers(specs, chosen, hessians, factors, progress)
    return QuantizedLinears(specs, backend, chosen, stats, profiler, progress, int4), weights
