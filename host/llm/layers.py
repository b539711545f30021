"""The linear layers of a decoder-only transformer: their names, kinds and shapes.

Fused so that each is one M-row matmul per layer (``linear_specs``):

- ``blk.{i}.qkv``         ``[q_dim + 2*kv_dim, dim]``  (q, k, v rows stacked)
- ``blk.{i}.attn_output`` ``[dim, q_dim]``
- ``blk.{i}.ffn_up_gate`` ``[2*hidden, dim]``           (gate rows, then up rows)
- ``blk.{i}.ffn_down``    ``[dim, hidden]``
- ``output``              ``[vocab, dim]``              (classifier)

``LAYER_KINDS`` names the kinds once: the quantization schemes choose per kind, the
profile has a matmul row per kind, the performance report a bar per kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .model.base import ModelConfig

__all__ = ["LAYER_KINDS", "LinearSpec", "LinearLayers", "linear_specs", "linear_shapes"]

LAYER_KINDS = ("qkv", "attn_out", "ffn_up_gate", "ffn_down", "classifier")


@dataclass(frozen=True)
class LinearSpec:
    """One linear layer: its name, kind (profile row), float32 ``[N, K]`` weight and
    the RMSNorm weight that scales its input (``None`` if its input is not normed)."""

    name: str
    kind: str
    weight: np.ndarray
    input_norm: str | None


class LinearLayers(Protocol):
    """The seam: ``linear(name, x float32 [M, K]) -> float32 [M, N]``."""

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray: ...


def linear_specs(config: ModelConfig, weights: dict[str, np.ndarray]) -> dict[str, LinearSpec]:
    """Every linear layer of the model, fused as the transformer calls them."""
    specs = {}
    for i in range(config.n_layers):
        b = f"blk.{i}."
        specs[b + "qkv"] = LinearSpec(b + "qkv", "qkv", np.concatenate(
            [weights[b + "attn_q.weight"], weights[b + "attn_k.weight"],
             weights[b + "attn_v.weight"]]), b + "attn_norm.weight")
        specs[b + "attn_output"] = LinearSpec(b + "attn_output", "attn_out",
                                              np.asarray(weights[b + "attn_output.weight"]), None)
        specs[b + "ffn_up_gate"] = LinearSpec(b + "ffn_up_gate", "ffn_up_gate", np.concatenate(
            [weights[b + "ffn_gate.weight"], weights[b + "ffn_up.weight"]]), b + "ffn_norm.weight")
        specs[b + "ffn_down"] = LinearSpec(b + "ffn_down", "ffn_down",
                                           np.asarray(weights[b + "ffn_down.weight"]), None)
    classifier = weights["token_embd.weight" if config.tied_classifier else "output.weight"]
    specs["output"] = LinearSpec("output", "classifier", np.asarray(classifier), "output_norm.weight")
    return specs


def linear_shapes(config: ModelConfig) -> list[tuple[str, str, int, int]]:
    """``(name, kind, N, K)`` of every linear layer ``linear_specs`` builds, from the
    config alone (performance models need no weights)."""
    q, kv = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    shapes = []
    for i in range(config.n_layers):
        b = f"blk.{i}."
        shapes += [(b + "qkv", "qkv", q + 2 * kv, config.dim),
                   (b + "attn_output", "attn_out", config.dim, q),
                   (b + "ffn_up_gate", "ffn_up_gate", 2 * config.hidden_dim, config.dim),
                   (b + "ffn_down", "ffn_down", config.dim, config.hidden_dim)]
    shapes.append(("output", "classifier", config.vocab_size, config.dim))
    return shapes
