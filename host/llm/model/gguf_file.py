"""GGUF models (architectures ``gemma3``, ``llama``, ``qwen2``, ``qwen3``) through the ``gguf`` package.

Llama 3's RoPE scaling arrives as llama.cpp writes it: a ``rope_freqs.weight`` tensor of
per-frequency divisors, kept as a weight and applied by the transformer.

Every tensor is dequantized to float32 once and stored in the user's cache (see
``host.llm.model.cache``), with the config and the tokenizer, so later loads skip both
the GGUF parse (slow for a 262k-entry vocabulary) and the dequantization.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from host.llm.tokenizer import Tokenizer, tokenizer_from_cache, tokenizer_manifest

from .base import ARCHITECTURES, ConfigError, Model, ModelConfig, ModelFileError, short_repr, unpermute_rope_rows
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
    tokenizer = tokenizer_from_cache(cache.load("tokenizer.model", mmap=False).tobytes(),
                                     str(path), manifest["tokenizer"])
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
            if config.interleaved_rope_rows and name.endswith((".attn_q.weight", ".attn_k.weight")):
                heads = config.n_heads if name.endswith("attn_q.weight") else config.n_kv_heads
                array = unpermute_rope_rows(array, heads)   # llama.cpp stores q/k interleaved
            yield name, array
        yield "tokenizer.model", np.frombuffer(tokenizer.serialized, np.uint8)

    # float32 data plus one .npy header per file: what the entry will take on disk
    expected_bytes = sum(4 * int(np.prod(t.shape)) + 128 for t in tensors.values())
    expected_bytes += len(tokenizer.serialized) + 128
    manifest = {
        "source": str(path.resolve()),
        "config": config.__dict__,
        "tokenizer": tokenizer_manifest(tokenizer),
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


# Every key this loader reads ("{arch}" is the architecture). A key one character away
# from one of these, where the real one is absent, is a damaged name (_check_key_names).
_READ_KEYS = (
    "general.architecture", "general.alignment", "general.name",
    "{arch}.context_length", "{arch}.embedding_length", "{arch}.block_count",
    "{arch}.feed_forward_length", "{arch}.vocab_size", "{arch}.attention.head_count",
    "{arch}.attention.head_count_kv", "{arch}.attention.key_length",
    "{arch}.attention.value_length", "{arch}.attention.layer_norm_rms_epsilon",
    "{arch}.attention.sliding_window", "{arch}.attention.sliding_window_pattern",
    "{arch}.rope.freq_base", "{arch}.rope.freq_base_swa", "{arch}.rope.dimension_count",
    "{arch}.rope.scaling.type", "{arch}.rope.scaling.factor",
    "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_space_prefix")

# The metadata key (after "{arch}.") each ModelConfig field comes from, for error messages.
_CONFIG_KEYS = {
    "dim": "embedding_length", "hidden_dim": "feed_forward_length", "n_layers": "block_count",
    "n_heads": "attention.head_count", "n_kv_heads": "attention.head_count_kv",
    "head_dim": "attention.key_length", "max_seq_len": "context_length",
    "norm_eps": "attention.layer_norm_rms_epsilon", "rope_base": "rope.freq_base",
    "rope_base_local": "rope.freq_base_swa", "sliding_window": "attention.sliding_window",
    "global_every": "attention.sliding_window_pattern", "rope_linear_scale": "rope.scaling.factor"}

_REQUIRED = object()


def _config_from_fields(path: Path, fields: dict, reader) -> ModelConfig:
    """The validated config of a parsed GGUF file, or ModelFileError naming the key at fault.

    Beyond ``ModelConfig``'s own ranges it holds the metadata against the rest of the
    file: every value has its key's type, the tensor data is laid out as llama.cpp
    requires (``_check_layout``), no key name is damaged (``_check_key_names``), head
    counts divide the dimensions and the vocabulary has one token per embedding row.
    The tensors themselves are checked against the config by ``_check_tensors``.
    """
    arch = fields.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise ModelFileError(path, f"unsupported architecture {short_repr(arch)} "
                                   f"(supported: {', '.join(ARCHITECTURES)})")
    _check_layout(path, reader)
    _check_key_names(path, fields, arch)
    _check_bools(path, reader)
    meta = _Metadata(path, fields, arch)

    n_heads = meta.get("attention.head_count", int)
    dim = meta.get("embedding_length", int)
    if meta.has("attention.key_length"):
        head_dim = meta.get("attention.key_length", int)
    elif n_heads >= 1 and dim % n_heads == 0:
        head_dim = dim // n_heads
    else:
        raise ModelFileError(path, f"metadata {arch}.attention.head_count={n_heads} does not divide "
                                   f"{arch}.embedding_length={dim}")
    if meta.get("attention.value_length", int, head_dim) != head_dim:
        raise ModelFileError(path, f"metadata {arch}.attention.value_length="
                                   f"{fields[arch + '.attention.value_length']} differs from the key "
                                   f"length {head_dim}: not supported")
    if meta.get("rope.dimension_count", int, head_dim) != head_dim:
        raise ModelFileError(path, f"metadata {arch}.rope.dimension_count="
                                   f"{fields[arch + '.rope.dimension_count']} is not the head size "
                                   f"{head_dim}: partial RoPE is not supported")
    scaling = meta.get("rope.scaling.type", str, "none")
    if scaling not in ("none", "linear"):
        raise ModelFileError(path, f"RoPE scaling {short_repr(scaling)} is not supported (none, linear)")
    vocab = _vocab_size(path, fields, reader, meta)
    n_layers = meta.get("block_count", int)
    window = meta.get("attention.sliding_window", int, None) if arch == "gemma3" else None
    every = 1
    if arch == "gemma3":
        every = meta.get("attention.sliding_window_pattern", (int, list), _GEMMA3_GLOBAL_EVERY)
        if isinstance(every, list):
            every = _global_every(path, arch, every, n_layers)
    values = dict(
        arch=arch, dim=dim, hidden_dim=meta.get("feed_forward_length", int), n_layers=n_layers,
        n_heads=n_heads, n_kv_heads=meta.get("attention.head_count_kv", int, n_heads),
        head_dim=head_dim, vocab_size=vocab, max_seq_len=meta.get("context_length", int),
        norm_eps=meta.get("attention.layer_norm_rms_epsilon", float),
        rope_base=meta.get("rope.freq_base", float, 10000.0),
        rope_base_local=(meta.get("rope.freq_base_swa", float, _GEMMA3_LOCAL_ROPE_BASE)
                         if arch == "gemma3" else meta.get("rope.freq_base", float, 10000.0)),
        sliding_window=window, global_every=every,
        rope_linear_scale=meta.get("rope.scaling.factor", float, 1.0) if scaling == "linear" else 1.0,
        tied_classifier=not any(t.name == "output.weight" for t in reader.tensors),
        qkv_bias=any(t.name == "blk.0.attn_q.bias" for t in reader.tensors),
        name=str(fields.get("general.name", path.stem)))
    try:
        return ModelConfig(**values)
    except ConfigError as error:
        raise ModelFileError(path, f"{_config_source(arch, error.field, meta)}={error.value!r} "
                                   f"{error.rule}") from None


class _Metadata:
    """Typed reads of ``{arch}.*`` metadata: a missing required key or a value of the wrong
    type (a float where llama.cpp reads an integer, ...) is a ModelFileError naming the key."""

    _KINDS = {int: "an integer", float: "a float", str: "a string", list: "an array"}

    def __init__(self, path: Path, fields: dict, arch: str):
        self.path, self.fields, self.arch = path, fields, arch

    def has(self, name: str) -> bool:
        return f"{self.arch}.{name}" in self.fields

    def get(self, name: str, kind, default=_REQUIRED):
        key = f"{self.arch}.{name}"
        if key not in self.fields:
            if default is _REQUIRED:
                raise ModelFileError(self.path, f"metadata {key} is missing")
            return default
        value = self.fields[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) or not isinstance(value, kinds):
            wanted = " or ".join(self._KINDS[k] for k in kinds)
            raise ModelFileError(self.path, f"metadata {key}={short_repr(value)} is not {wanted}")
        return value


def _config_source(arch: str, field: str, meta: _Metadata) -> str:
    """Where ``ModelConfig.field`` came from, for an error message."""
    if field == "vocab_size":
        return "vocabulary size (rows of token_embd.weight)"
    if field == "head_dim" and not meta.has("attention.key_length"):
        return f"head size ({arch}.embedding_length / {arch}.attention.head_count)"
    if field == "rope_base_local" and arch != "gemma3":
        field = "rope_base"
    return f"metadata {arch}.{_CONFIG_KEYS.get(field, field)}"


def _vocab_size(path: Path, fields: dict, reader, meta: _Metadata) -> int:
    """Rows of ``token_embd.weight``, which the token list and ``{arch}.vocab_size`` must match."""
    embedding = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embedding is None:
        raise ModelFileError(path, "tensor token_embd.weight is missing")
    if len(embedding.shape) != 2:
        raise ModelFileError(path, f"tensor token_embd.weight has {len(embedding.shape)} dimensions, "
                                   "expected 2")
    vocab = int(embedding.shape[1])
    tokens = fields.get("tokenizer.ggml.tokens")
    if isinstance(tokens, list) and len(tokens) != vocab:
        raise ModelFileError(path, f"metadata tokenizer.ggml.tokens has {len(tokens)} tokens, but "
                                   f"token_embd.weight has {vocab} rows")
    declared = meta.get("vocab_size", int, vocab)
    if declared != vocab:
        raise ModelFileError(path, f"metadata {meta.arch}.vocab_size={declared}, but "
                                   f"token_embd.weight has {vocab} rows")
    return vocab


def _global_every(path: Path, arch: str, pattern: list, n_layers: int) -> int:
    """A per-layer sliding-window pattern (True = sliding) as 'every n-th layer global'."""
    key = f"{arch}.attention.sliding_window_pattern"
    if len(pattern) != n_layers or not all(isinstance(is_swa, bool) for is_swa in pattern):
        raise ModelFileError(path, f"metadata {key} must be {n_layers} booleans "
                                   f"({arch}.block_count), got {short_repr(pattern)}")
    every = pattern.index(False) + 1 if False in pattern else n_layers + 1
    if any(is_swa != bool((i + 1) % every) for i, is_swa in enumerate(pattern)):
        raise ModelFileError(path, f"metadata {key}={pattern} is not 'every n-th layer global'")
    return every


def _check_layout(path: Path, reader) -> None:
    """Tensor data as llama.cpp's ``gguf.cpp`` requires it, so no two tensors share bytes.

    In the order of the tensor infos, each tensor starts where the previous one ends,
    padded to ``general.alignment`` (default 32); the data section starts aligned
    (the reader places it so); every tensor ends inside the file and the file ends
    within the last tensor's padding. A tensor whose type, shape or offset was damaged
    breaks one of these.
    """
    import gguf

    alignment, start, size = int(reader.alignment), int(reader.data_offset), int(reader.data.size)
    expected = 0            # relative to the data section
    previous = None
    for tensor in reader.tensors:
        block, _ = gguf.GGML_QUANT_SIZES[tensor.tensor_type]
        row = int(tensor.shape[0]) if len(tensor.shape) else 1
        if row % block:
            raise ModelFileError(path, f"tensor {tensor.name} has rows of {row} values, "
                                       f"not a multiple of its type {tensor.tensor_type.name}'s "
                                       f"block of {block}")
        offset = int(tensor.data_offset) - start
        if offset != expected:
            if previous is None:
                how = "the first tensor must start the data section"
            else:
                how = (f"{'overlaps' if offset < expected else 'leaves a gap after'} the "
                       f"previous tensor {previous}")
            raise ModelFileError(path, f"tensor {tensor.name} has data offset {offset}, expected "
                                       f"{expected} (alignment {alignment}): {how}")
        end = start + offset + int(tensor.n_bytes)
        if end > size:
            raise ModelFileError(path, f"truncated: tensor {tensor.name} ends at byte {end}, "
                                       f"the file has {size}")
        expected = -(-(offset + int(tensor.n_bytes)) // alignment) * alignment
        previous = tensor.name
    if reader.tensors and size > start + expected:
        raise ModelFileError(path, f"{size - start - expected} unexpected bytes after the last "
                                   f"tensor {previous} (the tensor infos account for {start + expected})")


def _check_key_names(path: Path, fields: dict, arch: str) -> None:
    """Refuse a key one character away from a key this loader reads that is absent.

    Such a key is a damaged name: the loader would otherwise use the absent key's
    default (RoPE base 10000, no sliding window, BOS 1...) and produce wrong text. Keys
    llama.cpp defines are never suspects (``eot_token_id`` is not a damaged
    ``eos_token_id``).
    """
    wanted = {key.replace("{arch}", arch) for key in _READ_KEYS}
    legitimate = wanted | {key.replace("{arch}", arch) for key in _llama_cpp_keys()}
    absent = wanted - fields.keys()
    for key in fields:
        if key in legitimate:
            continue
        for target in absent:
            if len(key) == len(target) and sum(a != b for a, b in zip(key, target)) == 1:
                raise ModelFileError(path, f"metadata key {short_repr(key)} is one character away from "
                                           f"{target!r}, which is absent: a damaged key name")


@functools.cache
def _llama_cpp_keys() -> frozenset[str]:
    """Every metadata key name the ``gguf`` package defines ("{arch}" not filled in)."""
    from gguf.constants import Keys

    return frozenset(value for group in vars(Keys).values() if isinstance(group, type)
                     for value in vars(group).values() if isinstance(value, str))


def _check_bools(path: Path, reader) -> None:
    """Every GGUF bool is the byte 0 or 1 (the reader would take any non-zero byte as True)."""
    import gguf

    for key, field in reader.fields.items():
        if field.types and field.types[-1] == gguf.GGUFValueType.BOOL:
            for index in field.data:
                byte = int(np.asarray(field.parts[index]).view(np.uint8)[0])
                if byte > 1:
                    raise ModelFileError(path, f"metadata {key} holds the byte {byte}, "
                                               "not a bool (0 or 1)")


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
        if config.qk_norm:
            shapes.update({b + "attn_q_norm.weight": (hd,), b + "attn_k_norm.weight": (hd,)})
        if config.post_norms:
            shapes.update({b + "post_attention_norm.weight": (d,), b + "post_ffw_norm.weight": (d,)})
        if config.qkv_bias:
            shapes.update({b + "attn_q.bias": (config.q_dim,), b + "attn_k.bias": (config.kv_dim,),
                           b + "attn_v.bias": (config.kv_dim,)})
    return shapes


def _optional_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Tensors a model of ``config`` may have: Llama 3's per-frequency RoPE divisors."""
    return {"rope_freqs.weight": (config.head_dim // 2,)}


def _check_tensors(path: Path, config: ModelConfig, tensors: dict) -> None:
    """The file holds exactly the tensors of ``expected_shapes(config)``, with those shapes.

    Blocks come first: the ``blk.N.*`` tensors present must be blocks ``0..n_layers-1``,
    so a damaged layer count (larger or smaller) is named as such, before anything is
    built per layer.
    """
    blocks = sorted({int(match.group(1)) for name in tensors
                     if (match := re.match(r"blk\.(\d+)\.", name))})
    if len(blocks) != config.n_layers or (blocks and blocks[-1] != config.n_layers - 1):
        raise ModelFileError(path, f"metadata {config.arch}.block_count={config.n_layers}, but the "
                                   f"file has tensors of blocks {_ranges(blocks) or 'none'}")
    expected = expected_shapes(config)
    for name, shape in expected.items():
        tensor = tensors.get(name)
        if tensor is None:
            raise ModelFileError(path, f"tensor {name} is missing")
        found = tuple(int(d) for d in reversed(tensor.shape))
        if found != shape:
            raise ModelFileError(path, f"tensor {name} has shape {found}, expected {shape}")
    for name, shape in _optional_shapes(config).items():
        if name in tensors:
            found = tuple(int(d) for d in reversed(tensors[name].shape))
            if found != shape:
                raise ModelFileError(path, f"tensor {name} has shape {found}, expected {shape}")
            expected[name] = shape
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise ModelFileError(path, f"tensor {short_repr(unexpected[0])} is not part of a {config.arch} "
                                   f"model ({len(unexpected)} unexpected tensor(s))")


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``"0..2, 5"``."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)
