"""Int8 quantization schemes: how float weights and activations become int8.

Every scheme is symmetric (zero point 0) and clips activations to [-127, 127], the
range the accelerator is fed. What differs is the granularity of the scales and
whether outliers are moved first:

- ``seed``: the seed project's scheme. One scale per weight tensor, one static
  scale per activation tensor, calibrated on sample prompts (max |x| x 1.2).
- ``per-channel``: one scale per output channel (weight row) and one dynamic scale
  per token (activation row). The accelerator returns exact int32 sums, so these
  scales cost nothing: the host multiplies ``C[m, n]`` by ``sx[m] * sw[n]``.
- ``smoothquant`` (default): ``per-channel`` after SmoothQuant migration (Xiao et
  al. 2023) on every linear layer: input channel j is divided by
  ``s_j = max|x_j|^a / max|W_j|^(1-a)`` and its weight column multiplied by ``s_j``,
  which leaves the float product unchanged. The division is folded into the
  preceding RMSNorm weight (qkv, ffn gate/up, classifier) or into the rows of the
  producing projection (v rows for the attention output, up rows for ffn down), so it
  costs nothing at run time. ``a = 0.7`` was chosen on the calibration text
  (0.3 ... 0.8 measured; 0.5, the paper's default, loses more).
- ``smooth-grouped``: SmoothQuant (``a = 0.5``) plus activation scales per token
  *and* per group of 128 input channels, with per-group weight scales. Each group is
  its own matmul call (exact int32), scaled and summed on the host: the best quality,
  at ~8x the matmul calls per token.

``QuantScheme`` describes a scheme; the weight transforms here are pure functions
on float arrays; ``host.llm.linear`` runs the result through a backend.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from . import kernels
from .layers import LAYER_KINDS, LinearSpec

__all__ = ["QMAX", "QuantScheme", "SCHEMES", "DEFAULT_SCHEME", "DEFAULT_W4_SCHEME", "scheme", "ActivationStats",
           "quantize_weight", "quantize_activations", "smooth"]

QMAX = 127
_ROWS_PER_PASS = 2048
_TINY = np.float32(np.finfo(np.float32).tiny)
_QMAX_INVERSE = np.float32(1.0 / QMAX)


@dataclass(frozen=True)
class QuantScheme:
    """One way to quantize a model.

    ``weights``: ``"tensor"`` or ``"channel"`` scales; ``activations``: ``"static"``
    (calibrated per tensor, x ``static_margin``) or ``"token"`` (dynamic per row).
    ``smooth_alpha``/``smooth_kinds``: SmoothQuant strength and the layer kinds it
    applies to. ``act_group``/``group_kinds``: K group size for separate activation
    and weight scales, and the layer kinds that use it. ``int4_kinds``: the layer
    kinds whose weights are 4-bit (``int4_method``). ``shortlist``: with the classifier
    in int4, the number of each row's largest logits that the host recomputes exactly
    from int8 weights (``host.llm.linear``: the accelerator streams half the bytes; the
    likely tokens keep the int8 classifier's logits; 0: none).
    """

    name: str
    summary: str
    weights: str = "channel"
    activations: str = "token"
    static_margin: float = 1.2
    smooth_alpha: float | None = None
    smooth_kinds: tuple[str, ...] = ()
    act_group: int | None = None
    group_kinds: tuple[str, ...] = ()
    int4_kinds: tuple[str, ...] = ()
    int4_method: str = "rtn"
    gptq_damp: float = 0.01
    shortlist: int = 0

    def __post_init__(self) -> None:
        if self.weights not in ("tensor", "channel"):
            raise ValueError(f"weights={self.weights!r} must be 'tensor' or 'channel'")
        if self.activations not in ("static", "token"):
            raise ValueError(f"activations={self.activations!r} must be 'static' or 'token'")
        if self.smooth_alpha is not None and not 0.0 <= self.smooth_alpha <= 1.0:
            raise ValueError(f"smooth_alpha={self.smooth_alpha} must be in 0..1")
        if self.act_group is not None and self.act_group <= 0:
            raise ValueError(f"act_group={self.act_group} must be positive")
        for kind in (*self.smooth_kinds, *self.group_kinds, *self.int4_kinds):
            if kind not in LAYER_KINDS:
                raise ValueError(f"layer kind {kind!r} must be one of {LAYER_KINDS}")
        if self.int4_method not in INT4_METHODS:
            raise ValueError(f"int4_method={self.int4_method!r} must be one of {INT4_METHODS}")
        if set(self.int4_kinds) & set(self.group_kinds):
            raise ValueError("int4 kinds take one activation scale per token (no act_group): "
                             f"{sorted(set(self.int4_kinds) & set(self.group_kinds))}")
        if self.int4_kinds and self.weights != "channel":
            raise ValueError("int4 weights keep one float scale per channel: weights='channel'")
        if self.shortlist < 0:
            raise ValueError(f"shortlist={self.shortlist} must be >= 0")
        if self.shortlist and "classifier" not in self.int4_kinds:
            raise ValueError(f"shortlist={self.shortlist} recomputes an int4 classifier's largest "
                             "logits: put 'classifier' in int4_kinds")

    @property
    def needs_calibration(self) -> bool:
        """Whether the scheme uses activation statistics (static scales, smoothing)."""
        return self.activations == "static" or self.smooth_alpha is not None

    @property
    def needs_hessians(self) -> bool:
        """Whether the scheme's int4 quantizer uses ``X^T X`` of calibration inputs."""
        return bool(self.int4_kinds) and self.int4_method != "rtn"

    def weight_format(self, kind: str) -> str:
        """``"int4"`` or ``"int8"``: the weight format of layers of ``kind``."""
        if kind not in LAYER_KINDS:
            raise ValueError(f"layer kind {kind!r} must be one of {LAYER_KINDS}")
        return "int4" if kind in self.int4_kinds else "int8"

    def group_size(self, kind: str) -> int | None:
        """The K group size for layers of ``kind`` (None: one group)."""
        return self.act_group if kind in self.group_kinds else None

    def with_(self, **changes) -> "QuantScheme":
        return replace(self, **changes)


# How int4 layers are quantized (host.llm.quant4): "rtn" rounds with searched scales;
# "act" weights that search by E[x^2] per input channel; "gptq" adds error feedback
# through X^T X (layers of more than GPTQ_MAX_ROWS rows, the 262k-row classifier, get
# "act": GPTQ's cost grows with rows x K^2).
INT4_METHODS = ("rtn", "act", "gptq")
GPTQ_MAX_ROWS = 65536
BLOCK_KINDS = ("qkv", "attn_out", "ffn_up_gate", "ffn_down")

SCHEMES: dict[str, QuantScheme] = {s.name: s for s in (
    QuantScheme("seed", "per-tensor weights, static per-tensor activations (calibrated max x1.2)",
                weights="tensor", activations="static"),
    QuantScheme("per-channel", "per-channel weights, dynamic per-token activations"),
    QuantScheme("smoothquant", "per-channel + per-token after SmoothQuant (alpha 0.7), all layers",
                smooth_alpha=0.7, smooth_kinds=LAYER_KINDS),
    QuantScheme("smooth-grouped", "SmoothQuant (alpha 0.5) + per-token scales per 128-channel group",
                smooth_alpha=0.5, smooth_kinds=LAYER_KINDS, act_group=128,
                group_kinds=LAYER_KINDS),
    # W4A8: SmoothQuant (alpha 0.7) as the int8 default, 4-bit weights for some kinds.
    QuantScheme("w4-rtn", "smoothquant; block linears int4 (RTN, searched d and s), classifier int8",
                smooth_alpha=0.7, smooth_kinds=LAYER_KINDS, int4_kinds=BLOCK_KINDS),
    # GPTQ's damping 0.05 (not the paper's 0.01): the calibration text is ~450 tokens,
    # fewer than ffn_down's K; on Gemma 3 270M's eval text 0.05 gave +19.1% against +24.9%.
    QuantScheme("w4-gptq", "smoothquant; block linears int4 (GPTQ), classifier int8",
                smooth_alpha=0.7, smooth_kinds=LAYER_KINDS, int4_kinds=BLOCK_KINDS,
                int4_method="gptq", gptq_damp=0.05),
    QuantScheme("w4-gptq-all", "smoothquant; every linear int4 (GPTQ; classifier E[x^2]-weighted RTN)",
                smooth_alpha=0.7, smooth_kinds=LAYER_KINDS, int4_kinds=LAYER_KINDS,
                int4_method="gptq", gptq_damp=0.05),
    # The default W4A8 scheme. attn_out's GPTQ takes damping 0.1: its K = 1024 inputs see
    # ~450 calibration tokens, so X^T X is rank-deficient and 0.01 left the result
    # sensitive to float rounding (+2.5% on one machine, +4.5% on another; 0.1: +2.5%).
    # The classifier (169 M of Gemma 3 270M's 268 M weights) streams in int4 and the
    # host recomputes each token's 64 likeliest logits from its int8 rows.
    QuantScheme("w4a8", "smoothquant; attn_out int4 (GPTQ), classifier int4 with its top 64 logits "
                "recomputed in int8 on the host, the rest int8",
                smooth_alpha=0.7, smooth_kinds=LAYER_KINDS, int4_kinds=("attn_out", "classifier"),
                int4_method="gptq", gptq_damp=0.1, shortlist=64),
    QuantScheme("w4a8-c8", "w4a8 with the classifier int8 (no shortlist)",
                smooth_alpha=0.7, smooth_kinds=LAYER_KINDS, int4_kinds=("attn_out",),
                int4_method="gptq", gptq_damp=0.1),
)}
DEFAULT_SCHEME = "smoothquant"
DEFAULT_W4_SCHEME = "w4a8"          # the default scheme with 4-bit weights


def scheme(name: str | QuantScheme) -> QuantScheme:
    """The scheme called ``name``; ``ValueError`` lists the valid names."""
    if isinstance(name, QuantScheme):
        return name
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown quantization scheme {name!r}; choose one of "
                         f"{', '.join(SCHEMES)}") from None


# -- the arithmetic ---------------------------------------------------------------------

def _scales(amax: np.ndarray) -> np.ndarray:
    """``amax / 127`` as float32, with 1.0 where amax is 0 (an all-zero row stays zero)."""
    amax = np.asarray(amax, dtype=np.float32)
    return np.where(amax > 0, amax / np.float32(QMAX), np.float32(1.0)).astype(np.float32)


def quantize_weight(w: np.ndarray, granularity: str) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 ``[N, K]`` and float32 scales ``[N]`` (equal if per tensor)."""
    w = np.asarray(w)
    row_amax = np.maximum(w.max(axis=1), -w.min(axis=1)).astype(np.float32)
    amax = row_amax if granularity == "channel" else np.full(w.shape[0], row_amax.max(), np.float32)
    scale = _scales(amax)
    inverse = (1.0 / scale)[:, None]
    q = np.empty(w.shape, np.int8)
    for r0 in range(0, w.shape[0], _ROWS_PER_PASS):     # row blocks stay in cache
        block = np.multiply(w[r0:r0 + _ROWS_PER_PASS], inverse[r0:r0 + _ROWS_PER_PASS], dtype=np.float32)
        np.rint(block, out=block)
        np.clip(block, -QMAX, QMAX, out=block)
        q[r0:r0 + _ROWS_PER_PASS] = block
    return q, scale


def quantize_activations(x: np.ndarray, group_starts: np.ndarray, group_sizes: np.ndarray,
                         static_scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """int8 ``[M, K]`` in [-127, 127] and float32 scales ``[M, G]``, ``x ~ q * scale``.

    K is cut into G groups (``group_starts``/``group_sizes``). Dynamic: each token row
    and group gets ``max|x| / 127``. Static: the fixed per-group ``static_scale``;
    values beyond ``127 * scale`` clip.
    """
    m = x.shape[0]
    if m == 1 and static_scale is None and len(group_starts) == 1:
        fused = kernels.quantize_row(x, _QMAX_INVERSE, _TINY)   # the same arithmetic, one call
        if fused is not None:
            return fused
        # Decode's common case, in fewer numpy calls (each costs ~1 us on a 640-vector);
        # the same float32 arithmetic as the general path below.
        amax = max(x.max(), -x.min())
        scale = max(np.float32(amax) * _QMAX_INVERSE, _TINY)
        q = x * (np.float32(1.0) / scale)
        np.rint(q, out=q)
        return q.astype(np.int8), np.full((1, 1), scale, np.float32)
    if static_scale is not None:
        scale = np.broadcast_to(np.asarray(static_scale, np.float32), (m, len(group_starts)))
    elif len(group_starts) == 1:
        scale = np.abs(x).max(axis=1, keepdims=True) * _QMAX_INVERSE
    else:
        scale = np.maximum.reduceat(np.abs(x), group_starts, axis=1) * _QMAX_INVERSE
    scale = np.maximum(scale, _TINY)        # an all-zero row quantizes to 0 with any scale
    inverse = 1.0 / scale
    if scale.shape[1] > 1:
        inverse = np.repeat(inverse, group_sizes, axis=1)
    q = x * inverse
    np.rint(q, out=q)
    if static_scale is not None:
        # Only a static scale can be exceeded; a dynamic one maps max|x| to 127 and
        # rounding cannot leave [-127, 127].
        np.maximum(q, -QMAX, out=q)          # (np.clip costs more on small arrays)
        np.minimum(q, QMAX, out=q)
    return q.astype(np.int8), scale


# -- calibration statistics ---------------------------------------------------------------

@dataclass
class ActivationStats:
    """Per linear layer, the max |x| of every input channel over calibration tokens."""

    absmax: dict[str, np.ndarray] = field(default_factory=dict)
    tokens: int = 0

    def observe(self, name: str, x: np.ndarray) -> None:
        """Fold the input ``x [M, K]`` of layer ``name`` into the running maxima."""
        amax = np.abs(x).max(axis=0).astype(np.float32)
        if name in self.absmax:
            np.maximum(self.absmax[name], amax, out=self.absmax[name])
        else:
            self.absmax[name] = amax

    def save(self, path: Path) -> None:
        np.savez(path, tokens=self.tokens, **{f"absmax/{k}": v for k, v in self.absmax.items()})

    @classmethod
    def load(cls, path: Path) -> "ActivationStats":
        with np.load(path) as data:
            return cls({k[len("absmax/"):]: data[k] for k in data.files if k.startswith("absmax/")},
                       int(data["tokens"]))


CALIBRATION_VERSION = 1    # bump when the statistics' meaning or the forward pass changes


def calibration_key(identity: str, texts: Sequence[str]) -> str:
    """Cache key of calibration statistics for a model file version and texts."""
    parts = [f"v{CALIBRATION_VERSION}", identity, *texts]
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return digest[:20]


# -- SmoothQuant ---------------------------------------------------------------------------

def column_absmax(w: np.ndarray) -> np.ndarray:
    """``max |W[:, j]|`` per input channel, without an ``|W|`` temporary."""
    return np.maximum(w.max(axis=0), -w.min(axis=0)).astype(np.float32)


def smoothing_factors(x_absmax: np.ndarray, w_absmax: np.ndarray, alpha: float) -> np.ndarray:
    """``s_j = max|x_j|^alpha / max|W_j|^(1-alpha)``, clamped away from 0 and inf."""
    x_absmax = np.maximum(np.asarray(x_absmax, np.float64), 1e-5)
    w_absmax = np.maximum(np.asarray(w_absmax, np.float64), 1e-5)
    s = np.power(x_absmax, alpha) / np.power(w_absmax, 1.0 - alpha)
    return np.clip(s, 1e-5, 1e5).astype(np.float32)


def smooth(config, specs: dict[str, LinearSpec], norms: dict[str, np.ndarray],
           stats: ActivationStats, alpha: float, kinds: Sequence[str],
           factors: dict[str, np.ndarray] | None = None
           ) -> tuple[dict[str, LinearSpec], dict[str, np.ndarray], ActivationStats]:
    """Fold SmoothQuant factors into the weights; the float model computes the same.

    ``norms`` holds the RMSNorm weights feeding the layers and any biases (GGUF names).
    Returns new specs, the changed norm weights and biases (a v bias is divided with its
    v rows) and the activation statistics as they are after the fold (``absmax / s``).
    The inputs are not modified. ``factors``, when given, receives each smoothed layer's
    ``s`` (its inputs are divided by it).
    """
    changed_norms: dict[str, np.ndarray] = {}
    new_stats = ActivationStats(dict(stats.absmax), stats.tokens)
    weights = {name: spec.weight for name, spec in specs.items()}
    owned: set[str] = set()               # weights already copied (safe to change in place)

    def scale_rows(name: str, rows: slice, divisor: np.ndarray) -> None:
        if name not in owned:
            weights[name], _ = np.array(weights[name], dtype=np.float32), owned.add(name)
        weights[name][rows] /= divisor[:, None]

    for name, spec in specs.items():
        if spec.kind not in kinds:
            continue
        amax = stats.absmax[name]
        w_absmax = column_absmax(weights[name])
        if spec.kind in ("qkv", "ffn_up_gate", "classifier"):
            s = smoothing_factors(amax, w_absmax, alpha)
            base = changed_norms.get(spec.input_norm, norms[spec.input_norm])
            changed_norms[spec.input_norm] = (np.asarray(base, np.float32) / s).astype(np.float32)
        elif spec.kind == "attn_out":
            # attn_out input channel (head h, d) is v channel (h // group, d): one factor
            # per v channel, shared by the heads that read it.
            group, hd, kv = config.n_heads // config.n_kv_heads, config.head_dim, config.n_kv_heads
            per_v_x = amax.reshape(kv, group, hd).max(axis=1).reshape(-1)
            per_v_w = w_absmax.reshape(kv, group, hd).max(axis=1).reshape(-1)
            s_v = smoothing_factors(per_v_x, per_v_w, alpha)
            s = np.broadcast_to(s_v.reshape(kv, 1, hd), (kv, group, hd)).reshape(-1)
            v_rows = slice(config.q_dim + config.kv_dim, config.q_dim + 2 * config.kv_dim)
            scale_rows(name.replace("attn_output", "qkv"), v_rows, s_v)
            v_bias = name.replace("attn_output", "attn_v.bias")
            if v_bias in norms:       # Qwen 2: v = W_v x + b_v, so b_v scales with W_v's rows
                changed_norms[v_bias] = (np.asarray(norms[v_bias], np.float32) / s_v).astype(np.float32)
        else:  # ffn_down: GELU(gate) * up is linear in up, so dividing up rows divides the input
            s = smoothing_factors(amax, w_absmax, alpha)
            scale_rows(name.replace("ffn_down", "ffn_up_gate"), slice(config.hidden_dim, None), s)
        if name in owned:
            weights[name] *= s[None, :]
        else:       # one pass: the scaled copy is the new weight
            weights[name] = np.multiply(weights[name], s[None, :], dtype=np.float32)
            owned.add(name)
        new_stats.absmax[name] = (amax / s).astype(np.float32)
        if factors is not None:
            factors[name] = np.asarray(s, np.float32)
    new_specs = {name: LinearSpec(spec.name, spec.kind, weights[name], spec.input_norm)
                 for name, spec in specs.items()}
    return new_specs, changed_norms, new_stats
