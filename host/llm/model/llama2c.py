"""llama2.c checkpoints: legacy float "v0", float "v1" and int8 "v2" (``ak42`` magic).

Formats, as written by llama2.c's ``export.py`` and read by ``run.c``/``runq.c``:

- v0: ``int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len``
  (negative ``vocab_size``: the classifier is stored, not shared), then float32:
  token embedding, attention norms, wq, wk, wv, wo, ffn norms, w1, w2, w3 (each for
  all layers), final norm, two RoPE tables (``seq_len * head_size/2`` each, unused),
  classifier if unshared.
- v1/v2: a 256-byte header (``uint32 0x616b3432``, ``int32 version``, the same 7 ints,
  ``uint8 shared_classifier``, v2: ``int32 group_size``). v1: float32 norms, then
  embedding and weights. v2: float32 norms, then each weight tensor as int8 values
  followed by one float32 scale per ``group_size`` values (symmetric, Q8_0 style).

q/k rows are in llama2.c's interleaved RoPE order; they are reordered to half-split.
llama2.c uses RMSNorm eps 1e-5 and RoPE base 10000. The tokenizer comes from
``tokenizer.bin`` (default: next to the model file).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from host.llm.tokenizer import Tokenizer

from .base import ConfigError, Model, ModelConfig, ModelFileError, unpermute_rope_rows
from .cache import file_identity

__all__ = ["AK42_MAGIC", "load_llama2c", "looks_like_llama2c_v0"]

AK42_MAGIC = 0x616B3432
_HEADER_V0 = 28
_HEADER_V12 = 256
_LLAMA2C_NORM_EPS = 1e-5
_LLAMA2C_ROPE_BASE = 10000.0


_HEADER_FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")


def _config_from_header(path: Path, values: tuple[int, ...], shared: bool) -> ModelConfig:
    """The validated config of the 7 header ints (``ModelConfig`` holds the ranges)."""
    header = dict(zip(_HEADER_FIELDS, values))
    dim, heads = header["dim"], header["n_heads"]
    if heads < 1 or dim % heads:
        raise ModelFileError(path, f"bad llama2.c header: n_heads={heads} does not divide dim={dim}")
    try:
        return ModelConfig(arch="llama", dim=dim, hidden_dim=header["hidden_dim"],
                           n_layers=header["n_layers"], n_heads=heads, n_kv_heads=header["n_kv_heads"],
                           head_dim=dim // heads, vocab_size=abs(header["vocab_size"]),
                           max_seq_len=header["seq_len"], norm_eps=_LLAMA2C_NORM_EPS,
                           rope_base=_LLAMA2C_ROPE_BASE, rope_base_local=_LLAMA2C_ROPE_BASE,
                           tied_classifier=shared, name=path.stem)
    except ConfigError as error:
        field = {"max_seq_len": "seq_len", "head_dim": "head size (dim / n_heads)"}.get(
            error.field, error.field)
        raise ModelFileError(path, f"bad llama2.c header: {field}={error.value!r} {error.rule}") from None


def _file_size(config: ModelConfig, version: int, group: int) -> int:
    """The exact size in bytes of a checkpoint with this header (module docstring layouts)."""
    d, L, V = config.dim, config.n_layers, config.vocab_size
    norms = 2 * L * d + d                                        # attention, ffn, final
    # Per layer, as _tensor_layout lists them (counted, not listed: a damaged header may
    # claim 2^24 layers).
    per_layer = 2 * config.q_dim * d + 2 * config.kv_dim * d + 3 * config.hidden_dim * d
    values = V * d * (1 if config.tied_classifier else 2) + L * per_layer
    if version == 0:                                             # + the two RoPE tables
        return _HEADER_V0 + 4 * (norms + values + config.max_seq_len * config.head_dim)
    if version == 1:
        return _HEADER_V12 + 4 * (norms + values)
    return _HEADER_V12 + 4 * norms + values + 4 * (values // group)   # group divides every tensor


def looks_like_llama2c_v0(head: bytes) -> bool:
    """Whether the first 28 bytes read as a plausible legacy llama2.c header."""
    if len(head) < _HEADER_V0:
        return False
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", head)
    return (all(0 < v < 1 << 24 for v in (dim, hidden, layers, heads, kv_heads, abs(vocab), seq_len))
            and dim % heads == 0 and heads % kv_heads == 0)


def _tensor_layout(config: ModelConfig) -> list[tuple[str, tuple[int, ...]]]:
    """The weight matrices in llama2.c order, per layer, as (GGUF name, shape)."""
    d, h, L = config.dim, config.hidden_dim, config.n_layers
    order = [("attn_q", (config.q_dim, d)), ("attn_k", (config.kv_dim, d)),
             ("attn_v", (config.kv_dim, d)), ("attn_output", (d, config.q_dim)),
             ("ffn_gate", (h, d)), ("ffn_down", (d, h)), ("ffn_up", (h, d))]
    return [(f"blk.{i}.{name}.weight", shape) for name, shape in order for i in range(L)]


def load_llama2c(path: str | Path, tokenizer_path: str | Path | None = None) -> Model:
    """Load a llama2.c ``.bin`` checkpoint (v0, v1 or v2) and its ``tokenizer.bin``.

    The header is validated before any weight is read: sane values (``ModelConfig``),
    a ``shared_classifier`` byte of 0 or 1, a v2 ``group_size`` dividing ``dim``, and a
    file of exactly the size the header implies.
    """
    path = Path(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    size = data.size
    group = 0
    if size >= 8 and struct.unpack_from("<I", data, 0)[0] == AK42_MAGIC:
        version = struct.unpack_from("<i", data, 4)[0]
        if version not in (1, 2):
            raise ModelFileError(path, f"llama2.c version {version} is not supported (0, 1, 2)")
        if size < _HEADER_V12:
            raise ModelFileError(path, f"truncated: {size} bytes, the header needs {_HEADER_V12}")
        if data[36] > 1:
            raise ModelFileError(path, f"bad llama2.c header: shared_classifier={data[36]} is not 0 or 1")
        config = _config_from_header(path, struct.unpack_from("<7i", data, 8), bool(data[36]))
        if version == 2:
            group = struct.unpack_from("<i", data, 37)[0]
            if not 0 < group <= config.dim or config.dim % group:
                raise ModelFileError(path, f"bad llama2.c header: group_size={group} does not "
                                           f"divide dim={config.dim}")
        offset = _HEADER_V12
    else:
        version = 0
        if size < _HEADER_V0:
            raise ModelFileError(path, f"truncated: {size} bytes, the header needs {_HEADER_V0}")
        raw = struct.unpack_from("<7i", data, 0)
        config = _config_from_header(path, raw, shared=raw[5] > 0)
        offset = _HEADER_V0
    expected = _file_size(config, version, group)
    if size != expected:
        header = (f"llama2.c v{version} header (dim={config.dim}, hidden_dim={config.hidden_dim}, "
                  f"n_layers={config.n_layers}, n_heads={config.n_heads}, "
                  f"n_kv_heads={config.n_kv_heads}, vocab_size={config.vocab_size}, "
                  f"seq_len={config.max_seq_len}, shared_classifier={int(config.tied_classifier)}"
                  + (f", group_size={group})" if version == 2 else ")"))
        if size < expected:
            raise ModelFileError(path, f"truncated: {size} bytes, the {header} implies {expected}")
        raise ModelFileError(path, f"{size - expected} unexpected bytes after the last tensor "
                                   f"(the {header} implies {expected})")
    reader = _Reader(path, data, offset)
    d, L, V = config.dim, config.n_layers, config.vocab_size
    weights: dict[str, np.ndarray] = {}

    def norms(name: str) -> None:
        block = reader.floats(L * d).reshape(L, d)
        for i in range(L):
            weights[f"blk.{i}.{name}.weight"] = block[i]

    if version == 0:
        weights["token_embd.weight"] = reader.floats(V * d).reshape(V, d)
        norms("attn_norm")
        layout = _tensor_layout(config)
        for name, shape in layout[: 4 * L]:
            weights[name] = reader.floats(int(np.prod(shape))).reshape(shape)
        norms("ffn_norm")
        for name, shape in layout[4 * L:]:
            weights[name] = reader.floats(int(np.prod(shape))).reshape(shape)
        weights["output_norm.weight"] = reader.floats(d)
        reader.floats(config.max_seq_len * config.head_dim)   # the two unused RoPE tables
    else:
        norms("attn_norm")
        norms("ffn_norm")
        weights["output_norm.weight"] = reader.floats(d)
        tensors = [("token_embd.weight", (V, d)), *_tensor_layout(config)]
        for name, shape in tensors:
            count = int(np.prod(shape))
            weights[name] = (reader.floats(count) if version == 1
                             else reader.q80(count, group)).reshape(shape)
    if not config.tied_classifier:
        count = V * d
        weights["output.weight"] = (reader.floats(count) if version < 2
                                    else reader.q80(count, group)).reshape(V, d)
    assert reader.offset == size, "_file_size disagrees with the reads above"
    for i in range(L):
        for name, heads in (("attn_q", config.n_heads), ("attn_k", config.n_kv_heads)):
            key = f"blk.{i}.{name}.weight"
            weights[key] = unpermute_rope_rows(weights[key], heads)

    tokenizer_path = Path(tokenizer_path) if tokenizer_path else path.with_name("tokenizer.bin")
    if not tokenizer_path.is_file():
        raise ModelFileError(tokenizer_path, "tokenizer.bin not found (pass tokenizer_path)")
    tokenizer = Tokenizer.from_llama2c(tokenizer_path, V)
    return Model(config, weights, tokenizer, path, file_identity(path),
                 {"format": f"llama2.c v{version}"})


class _Reader:
    """Sequential little-endian reads from the mapped file, with truncation checks."""

    def __init__(self, path: Path, data: np.ndarray, offset: int):
        self.path, self.data, self.offset = path, data, offset

    def _take(self, nbytes: int) -> np.ndarray:
        end = self.offset + nbytes
        if end > self.data.size:
            raise ModelFileError(self.path, f"truncated: needs at least {end} bytes, "
                                            f"has {self.data.size}")
        chunk = self.data[self.offset:end]
        self.offset = end
        return chunk

    def floats(self, count: int) -> np.ndarray:
        return np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)

    def q80(self, count: int, group: int) -> np.ndarray:
        if group <= 0 or count % group:
            raise ModelFileError(self.path, f"group_size={group} does not divide a tensor of "
                                            f"{count} values")
        values = np.frombuffer(self._take(count), dtype=np.int8)
        scales = np.frombuffer(self._take(4 * (count // group)), dtype="<f4")
        return (values.reshape(-1, group).astype(np.float32) * scales[:, None]).reshape(-1)
