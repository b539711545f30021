"""4-bit weights (W4A8): float weights to ``Int4Weights`` plus one float scale per row.

The accelerator multiplies the exact int8 ``q * s`` (``hdl.spec.formats``: ``q`` in
-8..7, ``s`` in 0..15 per group of 32 steps of K); the host keeps ``d`` per output
channel on top, as it keeps the int8 weight scale:

    W[c, k] ~ d[c] * q[c, k] * s[c, k // 32]

``s`` is a 4-bit integer relative to ``d``, so a row's groups share one coarse scale
ladder: a large ``d`` leaves small groups with ``s = 1`` or ``2`` (few levels), a small
``d`` clips the largest groups at ``s = 15``. Both quantizers search that trade-off:

- ``rtn_int4``: per row, ``d = max|w| / ratio`` over ``RATIOS``; per group, the best
  ``s`` for that ``d``; ``q`` rounded. The error is weighted per input channel by
  ``importance`` (``E[x_k^2]`` from calibration, or 1), then ``d`` is refit by least
  squares for the chosen ``q * s``.
- ``gptq_int4``: GPTQ (Frantar et al. 2022) on the same grid: columns are quantized in
  order and each one's error is spread over the columns not yet quantized through the
  inverse Hessian ``H = X^T X`` of the layer's calibration inputs; each group's ``s``
  is chosen when the sweep reaches it, from the weights as updated so far. ``d`` comes
  from ``rtn_int4`` (weighted by ``diag H``) and is refit at the end to minimise the
  output error ``(w - d v)^T H (w - d v)``.

``Hessians`` collects ``X^T X`` per layer from float runs over the calibration text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hdl.spec.formats import GROUP, Q_MAX, Q_MIN, S_MAX

from ..accel.pack import Int4Weights

__all__ = ["RATIOS", "rtn_int4", "gptq_int4", "dequantize_int4", "Hessians", "weight_error"]

# max|w| of a row over d: 105 = 7 * 15 puts the row's largest weight at q = 7, s = 15;
# larger ratios clip it (and give the small groups finer scales), smaller ones waste
# the top of the scale range. Measured on Gemma 3 270M's block weights, the winners
# spread over 70..240.
RATIOS = np.geomspace(60.0, 300.0, 14).astype(np.float32)


def _kernels():
    from . import _numba_quant
    return _numba_quant


def rtn_int4(w: np.ndarray, importance: np.ndarray | None = None,
             ratios: np.ndarray = RATIOS) -> tuple[Int4Weights, np.ndarray]:
    """Round-to-nearest 4-bit weights with searched ``d`` and ``s`` (module docstring).

    ``w`` float ``[N, K]``; ``importance`` float ``[K]`` >= 0 weights each input
    channel's squared error (default 1). Returns ``(Int4Weights, d float32 [N])``.
    """
    w = np.require(w, np.float32, ["C", "W"])      # memory-mapped model weights are read-only
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D [N, K], got shape {w.shape}")
    n, k = w.shape
    imp = np.ones(k, np.float32) if importance is None else \
        np.ascontiguousarray(importance, dtype=np.float32)
    if imp.shape != (k,) or not np.all(np.isfinite(imp)) or np.any(imp < 0):
        raise ValueError(f"importance must be {k} finite values >= 0, got shape {imp.shape}")
    q = np.empty((n, k), np.int8)
    s = np.empty((n, -(-k // GROUP)), np.uint8)
    d = np.empty(n, np.float32)
    _kernels().int4_search(w, imp, np.ascontiguousarray(ratios, np.float32), q, s, d)
    return Int4Weights(q, s), d


def dequantize_int4(weights: Int4Weights, d: np.ndarray) -> np.ndarray:
    """The float32 ``[N, K]`` weights ``d[c] * q * s`` stand for."""
    return (weights.effective().astype(np.float32) * np.asarray(d, np.float32)[:, None])


def weight_error(w: np.ndarray, approx: np.ndarray, hessian: np.ndarray | None = None) -> float:
    """Relative error ``||(w - approx) X^T|| / ||w X^T||`` through ``H = X^T X`` (plain
    Frobenius without ``hessian``)."""
    delta = np.asarray(w, np.float64) - np.asarray(approx, np.float64)
    w = np.asarray(w, np.float64)
    if hessian is None:
        return float(np.sqrt((delta ** 2).sum() / max((w ** 2).sum(), 1e-300)))
    h = np.asarray(hessian, np.float64)
    return float(np.sqrt(np.einsum("nk,kj,nj->", delta, h, delta) /
                         max(np.einsum("nk,kj,nj->", w, h, w), 1e-300)))


def gptq_int4(w: np.ndarray, hessian: np.ndarray, damp: float = 0.01,
              block: int = 128) -> tuple[Int4Weights, np.ndarray]:
    """GPTQ with error feedback on the 4-bit grid (module docstring).

    ``hessian`` is ``X^T X`` ``[K, K]`` of the layer's inputs; ``damp`` times its mean
    diagonal is added to the diagonal (calibration texts are short: K can exceed the
    number of tokens). Input channels never seen (zero diagonal) get weight 0.
    """
    w = np.array(w, dtype=np.float64)
    n, k = w.shape
    h = np.array(hessian, dtype=np.float64)
    if h.shape != (k, k):
        raise ValueError(f"hessian must be [{k}, {k}] for weights {w.shape}, got {h.shape}")
    if block % GROUP:
        raise ValueError(f"block={block} must be a multiple of {GROUP}")
    diag = np.diag(h).copy()
    dead = diag <= 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h[np.diag_indices(k)] += damp * float(np.mean(np.diag(h)))
    # The upper Cholesky factor of H^-1: row j holds how column j's error is spread.
    h_inv = np.linalg.cholesky(np.linalg.inv(h)).T
    _, d = rtn_int4(w, importance=np.diag(h))
    d64 = d.astype(np.float64)
    kernels = _kernels()
    q = np.zeros((n, k), np.int8)
    s = np.zeros((n, -(-k // GROUP)), np.uint8)
    original = w.copy()
    imp_all = np.diag(h).copy()
    group_scale = np.empty(n, np.uint8)
    for b0 in range(0, k, block):
        b1 = min(k, b0 + block)
        errors = np.empty((n, b1 - b0))
        for j in range(b0, b1):
            if j % GROUP == 0:
                g1 = min(k, j + GROUP)
                kernels.int4_group_scales(np.ascontiguousarray(w[:, j:g1]),
                                          np.ascontiguousarray(imp_all[j:g1]), d64, group_scale)
                s[:, j // GROUP] = group_scale
                step = d64 * group_scale
                live = step > 0
                inverse_step = np.where(live, 1.0 / np.where(live, step, 1.0), 0.0)
            column = w[:, j]
            qj = np.clip(np.rint(column * inverse_step), Q_MIN, Q_MAX)
            q[:, j] = qj
            err = (column - qj * step) / h_inv[j, j]
            w[:, j + 1:b1] -= np.outer(err, h_inv[j, j + 1:b1])
            errors[:, j - b0] = err
        w[:, b1:] -= errors @ h_inv[b0:b1, b1:]
    weights = Int4Weights(q, s)
    # Refit d: the scalar minimising (w - d v)^T H (w - d v) per row, v = q * s.
    v = weights.effective().astype(np.float64)
    vh = v @ h
    numerator = np.einsum("nk,nk->n", vh, original)
    denominator = np.einsum("nk,nk->n", vh, v)
    ok = (denominator > 0) & (numerator > 0)
    d = np.where(ok, numerator / np.where(ok, denominator, 1.0), d64).astype(np.float32)
    assert q.min() >= Q_MIN and q.max() <= Q_MAX and s.max() <= S_MAX
    return weights, d


@dataclass
class Hessians:
    """``X^T X`` (float64 ``[K, K]``) of the inputs of the named layers, from float runs."""

    names: frozenset
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def observe(self, name: str, x: np.ndarray) -> None:
        """Add the rows of layer ``name``'s input ``x [M, K]`` (other layers: ignored)."""
        if name not in self.names:
            return
        x64 = np.asarray(x, np.float64)
        product = x64.T @ x64
        if name in self.sums:
            self.sums[name] += product
        else:
            self.sums[name] = product
        self.rows[name] = self.rows.get(name, 0) + x.shape[0]

    def mean(self, name: str) -> np.ndarray:
        """``X^T X / rows``: the per-token second moment of the inputs."""
        return self.sums[name] / max(self.rows[name], 1)
