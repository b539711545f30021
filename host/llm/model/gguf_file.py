"""GGUF models (architectures ``gemma3`` and ``llama``) through the ``gguf`` package.

Every tensor is dequantized to float32 once and stored in the user's cache (see
``host.llm.model.cache``), with the config and the tokenizer, so later loads skip both
the GGUF parse (slow for a 262k-entry vocabulary) and the dequantization.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from host.llm.tokenizer import Tokenizer

from .base import Model, ModelConfig, ModelFileError, unpermute_rope_rows
from .cache import TensorCache, file_identity

__all__ = ["load_gguf", "SUPPORTED_TENSOR_TYPES"]

# Block formats this loader dequantizes (all through gguf.quants) and has exercised.
SUPPORTED_TENSOR_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                          "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
_GEMMA3_GLOBAL_EVERY = 6          # llama.cpp's fixed Gemma 3 pattern: 5 local, 1 global
_GEMMA3_LOCAL_ROPE_BASE = 10000.0  # llama.cpp's fixed Gemma 3 sliding-window RoPE base


def load_gguf(path: str | Path, *, cache_root: Path | None = None, progress: bool = True,
              max_cache_bytes: int | None = None) -> Model:
    """Load a GGUF model; dequantize into the cache on first use, memory-map afterwards.

    The cache entry is checked first (``TensorCache.verify``): a damaged one is rebuilt,
    with one line on stderr naming the file at fault. ``max_cache_bytes`` caps the
    cache (default: ``SYSTOLE_CACHE_MAX_GB``, else no cap). A full disk raises
    ``CacheError``.
    """
    path = Path(path)
    identity = file_identity(path)
    cache = TensorCache(identity, cache_root, max_bytes=max_cache_bytes)
    cache.remove_stale()
    model, problem = None, None
    if cache.directory.is_dir():
        problem = cache.verify()
        if problem is None:
            try:
                model = _model_from_entry(path, cache, identity)
            except (KeyError, TypeError, ValueError, RuntimeError) as error:  # RuntimeError: sentencepiece
                problem = (f"{cache.directory / 'manifest.json'} does not describe a usable model "
                           f"({type(error).__name__}: {error})")
    if model is None:
        if problem is not None:
            print(f"note: damaged model cache entry: {problem}; rebuilding it from {path}",
                  file=sys.stderr)
        _build_cache(path, cache, progress)
        model = _model_from_entry(path, cache, identity)
    cache.mark_used()
    return model


def _model_from_entry(path: Path, cache: TensorCache, identity: str) -> Model:
    manifest = cache.read_manifest()
    config = ModelConfig(**manifest["config"])
    weights = {name: cache.load(name) for name in manifest["tensors"] if name != "tokenizer.model"}
    tokenizer = Tokenizer(cache.load("tokenizer.model", mmap=False).tobytes(),
                          source=str(path), **manifest["tokenizer"])
    return Model(config, weights, tokenizer, path, identity, manifest["metadata"])


def _read_fields(reader) -> dict:
    fields = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        fields[key] = field.contents()
    return fields


def _build_cache(path: Path, cache: TensorCache, progress: bool) -> None:
    import gguf
    from tqdm import tqdm

    try:
        reader = gguf.GGUFReader(path)
        fields = _read_fields(reader)
    except Exception as error:  # the gguf package raises many types on corrupt input
        raise ModelFileError(path, f"cannot parse GGUF ({type(error).__name__}: {error}); "
                                   "truncated or corrupt") from None
    config = _config_from_fields(path, fields, reader)
    tokenizer = Tokenizer.from_gguf_fields(fields, str(path))
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    _check_tensors(path, config, tensors)

    file_size = path.stat().st_size
    for tensor in tensors.values():
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > file_size:
            raise ModelFileError(path, f"truncated: tensor {tensor.name} ends at byte {end}, "
                                       f"the file has {file_size}")

    def arrays() -> Iterator[tuple[str, np.ndarray]]:
        bar = tqdm(sorted(tensors), desc=f"dequantizing {path.name}", unit="tensor",
                   disable=not progress, leave=False)
        for name in bar:
            array = _dequantize(path, tensors[name])
            if config.arch == "llama" and name.endswith((".attn_q.weight", ".attn_k.weight")):
                heads = config.n_heads if name.endswith("attn_q.weight") else config.n_kv_heads
                array = unpermute_rope_rows(array, heads)   # llama.cpp stores q/k interleaved
            yield name, array
        yield "tokenizer.model", np.frombuffer(tokenizer.model_proto, np.uint8)

    # float32 data plus one .npy header per file: what the entry will take on disk
    expected_bytes = sum(4 * int(np.prod(t.shape)) + 128 for t in tensors.values())
    expected_bytes += len(tokenizer.model_proto) + 128
    manifest = {
        "source": str(path.resolve()),
        "config": config.__dict__,
        "tokenizer": {"bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id,
                      "add_bos": tokenizer.add_bos},
        "metadata": {key: value for key, value in fields.items()
                     if key.startswith("general.") and isinstance(value, (str, int, float))},
    }
    cache.write(manifest, arrays(), expected_bytes=expected_bytes)


def _dequantize(path: Path, tensor) -> np.ndarray:
    import gguf

    kind = tensor.tensor_type.name
    if kind not in SUPPORTED_TENSOR_TYPES:
        raise ModelFileError(path, f"tensor {tensor.name} has unsupported type {kind} "
                                   f"(supported: {', '.join(SUPPORTED_TENSOR_TYPES)})")
    shape = tuple(int(d) for d in reversed(tensor.shape))   # GGUF lists dims innermost first
    array = gguf.quants.dequantize(np.asarray(tensor.data), tensor.tensor_type)
    return np.ascontiguousarray(array, dtype=np.float32).reshape(shape)


def _config_from_fields(path: Path, fields: dict, reader) -> ModelConfig:
    arch = fields.get("general.architecture")
    if arch not in ("gemma3", "llama"):
        raise ModelFileError(path, f"unsupported architecture {arch!r} (supported: gemma3, llama)")

    def get(key: str, default=None):
        value = fields.get(f"{arch}.{key}", default)
        if value is None:
            raise ModelFileError(path, f"metadata {arch}.{key} is missing")
        return value

    n_heads = int(get("attention.head_count"))
    dim = int(get("embedding_length"))
    head_dim = int(get("attention.key_length", dim // n_heads))
    if int(get("attention.value_length", head_dim)) != head_dim:
        raise ModelFileError(path, "key_length != value_length is not supported")
    if arch == "llama" and int(get("rope.dimension_count", head_dim)) != head_dim:
        raise ModelFileError(path, "partial RoPE (rope.dimension_count < head size) is not supported")
    scaling = fields.get(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise ModelFileError(path, f"RoPE scaling {scaling!r} is not supported (none, linear)")
    if any(t.name == "rope_freqs.weight" for t in reader.tensors):
        raise ModelFileError(path, "per-frequency RoPE factors (rope_freqs.weight) are not supported")
    embedding = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embedding is None:
        raise ModelFileError(path, "tensor token_embd.weight is missing")
    vocab = int(embedding.shape[1])
    window = fields.get(f"{arch}.attention.sliding_window") if arch == "gemma3" else None
    pattern = fields.get(f"{arch}.attention.sliding_window_pattern", _GEMMA3_GLOBAL_EVERY)
    if isinstance(pattern, list):      # per layer, True = sliding window
        every = pattern.index(False) + 1 if False in pattern else len(pattern) + 1
        if any(is_swa != bool((i + 1) % every) for i, is_swa in enumerate(pattern)):
            raise ModelFileError(path, f"sliding-window layer pattern {pattern} is not "
                                       "'every n-th layer global'")
        pattern = every
    try:
        return ModelConfig(
            arch=arch, dim=dim, hidden_dim=int(get("feed_forward_length")),
            n_layers=int(get("block_count")), n_heads=n_heads,
            n_kv_heads=int(get("attention.head_count_kv", n_heads)), head_dim=head_dim,
            vocab_size=vocab, max_seq_len=int(get("context_length")),
            norm_eps=float(get("attention.layer_norm_rms_epsilon")),
            rope_base=float(get("rope.freq_base", 10000.0)),
            rope_base_local=float(get("rope.freq_base_swa", _GEMMA3_LOCAL_ROPE_BASE)
                                  if arch == "gemma3" else get("rope.freq_base", 10000.0)),
            sliding_window=int(window) if window else None,
            global_every=int(pattern) if arch == "gemma3" and isinstance(pattern, int) else 1,
            rope_linear_scale=float(get("rope.scaling.factor", 1.0)) if scaling == "linear" else 1.0,
            tied_classifier=not any(t.name == "output.weight" for t in reader.tensors),
            name=str(fields.get("general.name", path.stem)))
    except (ValueError, TypeError) as error:
        raise ModelFileError(path, f"inconsistent hyperparameters: {error}") from None


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a model of ``config`` must have, with its numpy shape."""
    d, h, hd = config.dim, config.hidden_dim, config.head_dim
    shapes = {"token_embd.weight": (config.vocab_size, d), "output_norm.weight": (d,)}
    if not config.tied_classifier:
        shapes["output.weight"] = (config.vocab_size, d)
    for i in range(config.n_layers):
        b = f"blk.{i}."
        shapes.update({
            b + "attn_norm.weight": (d,), b + "attn_q.weight": (config.q_dim, d),
            b + "attn_k.weight": (config.kv_dim, d), b + "attn_v.weight": (config.kv_dim, d),
            b + "attn_output.weight": (d, config.q_dim), b + "ffn_norm.weight": (d,),
            b + "ffn_gate.weight": (h, d), b + "ffn_up.weight": (h, d), b + "ffn_down.weight": (d, h)})
        if config.arch == "gemma3":
            shapes.update({
                b + "attn_q_norm.weight": (hd,), b + "attn_k_norm.weight": (hd,),
                b + "post_attention_norm.weight": (d,), b + "post_ffw_norm.weight": (d,)})
    return shapes


def _check_tensors(path: Path, config: ModelConfig, tensors: dict) -> None:
    for name, shape in expected_shapes(config).items():
        tensor = tensors.get(name)
        if tensor is None:
            raise ModelFileError(path, f"tensor {name} is missing")
        found = tuple(int(d) for d in reversed(tensor.shape))
        if found != shape:
            raise ModelFileError(path, f"tensor {name} has shape {found}, expected {shape}")
