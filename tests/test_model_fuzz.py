"""Damaged model files: refused with one ModelFileError line, or loaded unchanged.

The fuzz damages small generated files (a Gemma 3 and a Llama GGUF, llama2.c v0, v1
and v2 checkpoints) with seeded single-byte flips and truncations:

- GGUF flips land in everything before the tensor data, a third each in the
  hyperparameter key-values (the file header and every key but the three vocabulary
  arrays), the tensor infos, and anywhere in that region (mostly the vocabulary);
- llama2.c flips land in the header (for v1/v2 mostly its 41 used bytes, some in the
  zero padding);
- truncations cut anywhere in the file, half of them inside the GGUF metadata.

Each case must end one of two ways; any other exception fails the test:

- refused: ``ModelFileError``, a single line that names the file;
- loaded: the weights are bit-identical to the undamaged file's, the config passes
  ``ModelConfig`` validation again and its structure (architecture, dimensions, head
  and layer counts, vocabulary size, tied classifier, which layers are global) is the
  original's, the tokenizer has the original's size, and a short forward pass on the
  float backend gives finite logits.

Neither format has a checksum, so some damage gives a different but valid file that
no reader can detect: a flip inside a token's text or score, a low mantissa bit of
the epsilon or a RoPE base that stays in range, a context length or sliding window
that stays in range (llama2.c v1/v2 store ``seq_len`` without anything that depends
on it), a bool flag flipped between 0 and 1, a token type or BOS/EOS id moved to
another valid value, the model's name, the header padding of llama2.c v1/v2. For
these the "loaded" rules above are the whole assertion: the numerics may differ
(finite), the tokenizer's pieces may differ, the weights and the shape may not.

The targeted tests below make one damage each that earlier loaders accepted (or
refused without naming the key) and check it is refused with one line naming the
file, the key and the value.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import replace
from pathlib import Path

import gguf
import numpy as np
import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from host.llm.layers import linear_specs
from host.llm.linear import FloatLinears
from host.llm.model import ModelConfig, ModelFileError, load_model
from host.llm.transformer import Transformer

from host_testmodels import (
    randomize,
    small_vocab,
    write_gemma3_gguf,
    write_llama2c,
    write_llama_gguf,
    write_tokenizer_bin,
)
from test_host_transformer import make_gemma3

SEED = 20261201
# What a damaged file may not change while still loading (see the module docstring).
STRUCTURE = ("arch", "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "head_dim",
             "vocab_size", "tied_classifier", "global_every")
TOKENS = [2, 17, 300, 45, 9, 120, 33, 250, 4, 61]       # longer than Gemma's 4-token window
VOCABULARY_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")


def tiny_gemma3():
    return make_gemma3(seed=1, hidden_size=32, intermediate_size=48, num_attention_heads=2,
                       num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
                       max_position_embeddings=32)


def tiny_llama() -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=320, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                         rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 1e4},
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    randomize(model, seed=2)
    return model


class Originals:
    """The undamaged files, their loaded models, and where things sit in the GGUFs."""

    def __init__(self, root: Path):
        self.root = root
        self.cache = root / "cache"
        llama = tiny_llama()
        pieces, scores, _ = small_vocab(320, ["<unk>", "<s>", "</s>"])
        self.tokenizer_bin = write_tokenizer_bin(root / "tokenizer.bin", pieces, scores)
        self.files = {
            "gemma3.gguf": write_gemma3_gguf(root / "gemma3.gguf", tiny_gemma3()),
            "llama.gguf": write_llama_gguf(root / "llama.gguf", llama),
            "llama2c-v0.bin": write_llama2c(root / "llama2c-v0.bin", llama, version=0),
            "llama2c-v1.bin": write_llama2c(root / "llama2c-v1.bin", llama, version=1),
            "llama2c-v2.bin": write_llama2c(root / "llama2c-v2.bin", llama, version=2, group_size=32),
        }
        self.models = {kind: self.load(path) for kind, path in self.files.items()}
        self.readers = {kind: gguf.GGUFReader(path) for kind, path in self.files.items()
                        if kind.endswith(".gguf")}

    def load(self, path: Path):
        return load_model(path, tokenizer_path=self.tokenizer_bin, cache_dir=self.cache,
                          progress=False)

    def bytes(self, kind: str) -> bytes:
        return self.files[kind].read_bytes()


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> Originals:
    return Originals(tmp_path_factory.mktemp("fuzz"))


# -- where to damage --------------------------------------------------------------------

def field_span(field) -> tuple[int, int]:
    return field.offset, field.offset + sum(int(part.nbytes) for part in field.parts)


def value_offset(reader, key: str) -> int:
    """Byte offset of a scalar key-value's value (after key length, key, type)."""
    field = reader.fields[key]
    return field.offset + sum(int(part.nbytes) for part in field.parts[:3])


def type_offset(reader, key: str) -> int:
    field = reader.fields[key]
    return field.offset + sum(int(part.nbytes) for part in field.parts[:2])


def tensor_info_offset(reader, name: str, part: str) -> int:
    """Byte offset of a tensor info's ``type`` or ``offset`` field."""
    field = next(t.field for t in reader.tensors if t.name == name)
    index = {"type": 4, "offset": 5}[part]
    return field.offset + sum(int(p.nbytes) for p in field.parts[:index])


def gguf_flip_regions(reader) -> list[list[tuple[int, int]]]:
    """[hyperparameter key-values, tensor infos, everything before the tensor data]."""
    hyper = [field_span(field) for key, field in reader.fields.items() if key not in VOCABULARY_ARRAYS]
    infos = [field_span(tensor.field) for tensor in reader.tensors]
    return [hyper, [(infos[0][0], infos[-1][1])], [(0, int(reader.data_offset))]]


def pick(rng: np.random.Generator, spans: list[tuple[int, int]]) -> int:
    """A uniformly random byte position within ``spans``."""
    sizes = np.array([end - start for start, end in spans])
    index = rng.choice(len(spans), p=sizes / sizes.sum())
    return int(rng.integers(*spans[index]))


def flip(data: bytes, position: int, rng: np.random.Generator) -> bytes:
    """One byte changed: half the time one bit, else XOR with a random non-zero byte."""
    mask = 1 << int(rng.integers(8)) if rng.random() < 0.5 else int(rng.integers(1, 256))
    damaged = bytearray(data)
    damaged[position] ^= mask
    return bytes(damaged)


def patched(data: bytes, position: int, fmt: str, *values) -> bytes:
    damaged = bytearray(data)
    struct.pack_into(fmt, damaged, position, *values)
    return bytes(damaged)


def cases(originals: Originals, kind: str, flips: int, truncations: int, rng):
    """(description, damaged bytes) for one original file."""
    data = originals.bytes(kind)
    if kind.endswith(".gguf"):
        regions = gguf_flip_regions(originals.readers[kind])
        header_end = regions[2][0][1]
    else:
        used = 28 if kind.endswith("v0.bin") else 41
        regions = [[(0, used)]] * 4 + ([[(used, 256)]] if used == 41 else [])
        header_end = used
    for i in range(flips):
        position = pick(rng, regions[i % len(regions)])
        yield f"flip at byte {position}", flip(data, position, rng)
    for i in range(truncations):
        keep = int(rng.integers(0, header_end if i % 2 and kind.endswith(".gguf") else len(data)))
        yield f"truncated to {keep} bytes", data[:keep]


# -- the checks --------------------------------------------------------------------------

def finite_logits(model) -> np.ndarray:
    transformer = Transformer(model.config, model.weights,
                              FloatLinears(linear_specs(model.config, model.weights)))
    return transformer.forward(TOKENS, transformer.new_cache(16), all_logits=True)


def assert_loaded_unchanged(model, original) -> str:
    """The 'loaded' outcome's rules; returns 'identical' or 'valid, different'."""
    assert model.weights.keys() == original.weights.keys()
    for name, weight in original.weights.items():
        got = np.asarray(model.weights[name])
        assert got.dtype == weight.dtype and got.shape == weight.shape, name
        assert got.tobytes() == np.asarray(weight).tobytes(), f"{name} differs"
    config = model.config
    assert ModelConfig(**config.__dict__) == config
    for key in STRUCTURE:
        assert getattr(config, key) == getattr(original.config, key), key
    assert model.tokenizer.vocab_size == original.tokenizer.vocab_size
    assert np.isfinite(finite_logits(model)).all()
    # llama2.c models are named after their file, and every case has its own file
    name = model.source.stem if original.config.name == original.source.stem else original.config.name
    same = (config == replace(original.config, name=name)
            and model.tokenizer.model_proto == original.tokenizer.model_proto
            and (model.tokenizer.bos_id, model.tokenizer.eos_id, model.tokenizer.add_bos)
            == (original.tokenizer.bos_id, original.tokenizer.eos_id, original.tokenizer.add_bos))
    return "identical" if same else "valid, different"


def assert_refusal(error: ModelFileError, path: Path) -> None:
    message = str(error)
    assert "\n" not in message and str(path) in message, message


FUZZ = [  # (file, flips, truncations)
    ("gemma3.gguf", 240, 60),
    ("llama.gguf", 120, 30),
    ("llama2c-v0.bin", 80, 20),
    ("llama2c-v1.bin", 80, 20),
    ("llama2c-v2.bin", 80, 20),
]


@pytest.mark.parametrize("kind,flips,truncations", FUZZ, ids=[kind for kind, *_ in FUZZ])
def test_damaged_file_is_refused_or_loads_unchanged(originals, kind, flips, truncations,
                                                    tmp_path, record_property):
    rng = np.random.default_rng([SEED, FUZZ.index((kind, flips, truncations))])
    outcomes = Counter()
    for number, (what, data) in enumerate(cases(originals, kind, flips, truncations, rng)):
        path = tmp_path / f"case{number}-{kind}"     # a new path: never a stale cache entry
        path.write_bytes(data)
        try:
            model = originals.load(path)
        except ModelFileError as error:
            assert_refusal(error, path)
            outcomes["refused"] += 1
        except Exception as error:       # noqa: BLE001 - the point: nothing else may escape
            raise AssertionError(f"{kind}, {what}: {type(error).__name__}: {error}") from error
        else:
            try:
                outcomes[assert_loaded_unchanged(model, originals.models[kind])] += 1
            except AssertionError as error:
                raise AssertionError(f"{kind}, {what}: loaded but changed: {error}") from error
        path.unlink()
    record_property("outcomes", dict(outcomes))
    print(f"{kind}: {flips} flips + {truncations} truncations -> {dict(outcomes)}")
    assert sum(outcomes.values()) == flips + truncations
    assert outcomes["refused"] >= truncations          # no truncation of these files is valid


def test_llama2c_versions_load_the_same_weights(originals):
    """v0 and v1 hold the same float32 values; v2 their Q8_0 rounding (the fuzz's baselines)."""
    v0, v1, v2 = (originals.models[f"llama2c-v{v}.bin"] for v in range(3))
    assert replace(v0.config, name="") == replace(v1.config, name="") == replace(v2.config, name="")
    for name, weight in v0.weights.items():
        np.testing.assert_array_equal(v1.weights[name], weight)
        np.testing.assert_allclose(v2.weights[name], weight, atol=0.02)


# -- targeted damage ---------------------------------------------------------------------

def refused(originals: Originals, tmp_path: Path, data: bytes, *expected: str) -> str:
    path = tmp_path / "damaged"          # the format is told by the first bytes
    path.write_bytes(data)
    with pytest.raises(ModelFileError) as caught:
        originals.load(path)
    message = str(caught.value)
    assert_refusal(caught.value, path)
    for text in expected:
        assert text in message, message
    return message


@pytest.mark.parametrize("layers", [1, 3])
def test_gguf_block_count_that_is_not_the_blocks_present(originals, tmp_path, layers):
    reader = originals.readers["llama.gguf"]
    data = patched(originals.bytes("llama.gguf"), value_offset(reader, "llama.block_count"),
                   "<I", layers)
    refused(originals, tmp_path, data, f"llama.block_count={layers}", "blocks 0..1")


@pytest.mark.parametrize("epsilon", [math.nan, math.inf, -1e-5, 0.0, 0.5])
def test_gguf_epsilon_not_finite_positive_and_small(originals, tmp_path, epsilon):
    key = "llama.attention.layer_norm_rms_epsilon"
    data = patched(originals.bytes("llama.gguf"), value_offset(originals.readers["llama.gguf"], key),
                   "<f", epsilon)
    stored = struct.unpack("<f", struct.pack("<f", epsilon))[0]          # as float32 holds it
    refused(originals, tmp_path, data, f"{key}={stored!r}")


@pytest.mark.parametrize("kind,key", [("llama.gguf", "llama.rope.freq_base"),
                                      ("gemma3.gguf", "gemma3.rope.freq_base")])
def test_gguf_rope_base_nan(originals, tmp_path, kind, key):
    data = patched(originals.bytes(kind), value_offset(originals.readers[kind], key), "<f", math.nan)
    refused(originals, tmp_path, data, f"{key}=nan")


def test_gguf_zero_context(originals, tmp_path):
    key = "llama.context_length"
    data = patched(originals.bytes("llama.gguf"), value_offset(originals.readers["llama.gguf"], key),
                   "<I", 0)
    refused(originals, tmp_path, data, f"{key}=0")


@pytest.mark.parametrize("key,value,names", [
    ("llama.attention.head_count", 3, "llama.embedding_length=32"),       # 32 / 3
    ("llama.attention.head_count_kv", 3, "n_heads=4"),                    # 4 / 3
])
def test_gguf_head_count_that_does_not_divide(originals, tmp_path, key, value, names):
    data = patched(originals.bytes("llama.gguf"), value_offset(originals.readers["llama.gguf"], key),
                   "<I", value)
    refused(originals, tmp_path, data, f"{key}={value}", names)


def test_gguf_overlapping_tensor_offsets(originals, tmp_path):
    reader = originals.readers["llama.gguf"]
    first, second = reader.tensors[0], reader.tensors[1]
    data = patched(originals.bytes("llama.gguf"), tensor_info_offset(reader, second.name, "offset"),
                   "<Q", int(first.data_offset - reader.data_offset))
    refused(originals, tmp_path, data, f"tensor {second.name} has data offset 0", "overlaps",
            first.name)


def test_gguf_tensor_type_that_changes_its_size(originals, tmp_path):
    """F32 -> F16 keeps the shape; the tensor then ends half-way: a hole before the next."""
    reader = originals.readers["llama.gguf"]
    name = reader.tensors[0].name
    data = patched(originals.bytes("llama.gguf"), tensor_info_offset(reader, name, "type"), "<I",
                   int(gguf.GGMLQuantizationType.F16))
    refused(originals, tmp_path, data, reader.tensors[1].name, "leaves a gap", name)


def test_gguf_sliding_window_zero(originals, tmp_path):
    key = "gemma3.attention.sliding_window"
    data = patched(originals.bytes("gemma3.gguf"), value_offset(originals.readers["gemma3.gguf"], key),
                   "<I", 0)
    refused(originals, tmp_path, data, f"{key}=0")


@pytest.mark.parametrize("key", ["gemma3.rope.freq_base", "gemma3.attention.sliding_window",
                                 "tokenizer.ggml.add_space_prefix"])
def test_gguf_damaged_key_name(originals, tmp_path, key):
    """Without the key the loader would use its default (1e4, no window, a space prefix)."""
    reader = originals.readers["gemma3.gguf"]
    position = reader.fields[key].offset + 8 + len(key) - 1          # the key's last character
    data = patched(originals.bytes("gemma3.gguf"), position, "<B", ord(key[-1]) ^ 1)
    refused(originals, tmp_path, data, key[:-1] + chr(ord(key[-1]) ^ 1), "a damaged key name")


def test_gguf_integer_key_stored_as_float(originals, tmp_path):
    """uint32 -> float32 keeps the size; the bits of 2 read as a float are 2.8e-45."""
    key = "tokenizer.ggml.bos_token_id"
    reader = originals.readers["gemma3.gguf"]
    data = patched(originals.bytes("gemma3.gguf"), type_offset(reader, key), "<I",
                   int(gguf.GGUFValueType.FLOAT32))
    refused(originals, tmp_path, data, key, "is not a token id")


def test_gguf_bool_byte_other_than_0_or_1(originals, tmp_path):
    key = "tokenizer.ggml.add_bos_token"
    data = patched(originals.bytes("gemma3.gguf"), value_offset(originals.readers["gemma3.gguf"], key),
                   "<B", 3)
    refused(originals, tmp_path, data, key, "byte 3")


def test_gguf_damaged_classifier_name(originals, tmp_path):
    """Without ``output.weight`` the model would silently share the embedding instead."""
    reader = originals.readers["llama.gguf"]
    field = next(t.field for t in reader.tensors if t.name == "output.weight")
    data = patched(originals.bytes("llama.gguf"), field.offset + 8 + len("output.weigh"), "<B", ord("u"))
    refused(originals, tmp_path, data, "tensor 'output.weighu' is not part of a llama model")


def test_llama2c_shared_classifier_byte_other_than_0_or_1(originals, tmp_path):
    data = patched(originals.bytes("llama2c-v1.bin"), 36, "<B", 3)
    refused(originals, tmp_path, data, "shared_classifier=3")


def test_llama2c_header_names_the_field(originals, tmp_path):
    data = patched(originals.bytes("llama2c-v2.bin"), 8 + 4 * 6, "<i", 0)      # seq_len
    refused(originals, tmp_path, data, "seq_len=0")
    data = patched(originals.bytes("llama2c-v2.bin"), 37, "<i", 24)             # group_size
    refused(originals, tmp_path, data, "group_size=24", "dim=32")


def test_gguf_vocabulary_longer_than_the_embedding(originals, tmp_path):
    path = write_llama_gguf(tmp_path / "long-vocab.gguf", tiny_llama(), n_tokens=330)
    with pytest.raises(ModelFileError) as caught:
        originals.load(path)
    assert_refusal(caught.value, path)
    assert "tokenizer.ggml.tokens has 330 tokens, but token_embd.weight has 320 rows" in str(caught.value)
