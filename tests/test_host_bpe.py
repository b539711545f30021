"""Byte-level BPE tokenizers from GGUF metadata against transformers' own GGUF tokenizer.

The reference is transformers' conversion of the same GGUF file
(``transformers.integrations.gguf``: its GPT-2 tokenizer class, its split expressions per
``tokenizer.ggml.pre``), which shares no code with host.llm.bpe. Vocabularies: the real
SmolLM2-135M file (``smollm`` pre-tokenizer, 49,152 tokens) and small vocabularies trained
here and written to GGUF with the ``llama-bpe`` (Llama 3) and ``qwen2`` pre-tokenizers.
"""

import json

import gguf
import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from host.llm.model import ModelFileError
from host.llm.model.catalog import model_path
from host.llm.model.gguf_file import _read_fields
from host.llm.tokenizer import StreamDecoder, Tokenizer, tokenizer_from_cache, tokenizer_manifest

SAMPLES = [
    "Hello world! It's a test, isn't it? I'LL see THEY'RE here.",
    "naïve café, Straße, façade; 日本語のテキスト、中文句子。한국어 문장.",
    "Привет, мир! Ελληνικά; العربية; हिन्दी; עברית",
    "emoji 🤖👩‍👩‍👧 flags 🇫🇷 skin 👍🏽 and ✨✨✨",
    "def square(x: int) -> int:\n    return x ** 2  # 1234567 squares\n\n\tif a != b: pass\r\n",
    "   leading and trailing spaces   \n\n\n  indented\tline",
    "numbers 3.14159, 2024-12-05, 100000000 and 0x1F",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def reference_tokenizer(path):
    """transformers' tokenizer of the GGUF file at ``path`` (its own reader and converter)."""
    from transformers.integrations.gguf import convert_gguf_tokenizer, get_gguf_tokenizer

    architecture, tokenizer_dict, _ = get_gguf_tokenizer(str(path))
    backend, _ = convert_gguf_tokenizer(architecture, tokenizer_dict)
    return backend


def ours_from_file(path):
    return Tokenizer.from_gguf_fields(_read_fields(gguf.GGUFReader(path)), str(path))


def assert_same_as_reference(ours, reference, samples):
    for text in samples:
        expected = reference.encode(text, add_special_tokens=False).ids
        assert ours.encode(text, add_bos=False) == expected, text
        assert ours.decode(expected) == reference.decode(expected, skip_special_tokens=True)
        if "<|" not in text:
            assert ours.decode(expected) == text         # byte-level BPE loses nothing


@pytest.fixture(scope="module")
def smollm2():
    path = model_path("smollm2-135m", quiet=True)
    return path, ours_from_file(path)


def test_smollm2_vocabulary_matches_transformers(smollm2):
    path, ours = smollm2
    assert ours.kind == "bpe" and ours.vocab_size == 49152
    assert_same_as_reference(ours, reference_tokenizer(path), SAMPLES)
    # the smollm pre-tokenizer writes every digit as its own token (llama.cpp: "\p{N}" first)
    assert [ours.decode([t]) for t in ours.encode("2024", add_bos=False)] == list("2024")
    # control tokens: whole in chat text, no text when decoded, end of generation
    im_start, im_end = ours.token_id("<|im_start|>"), ours.token_id("<|im_end|>")
    assert ours.encode("<|im_start|>user", add_bos=False)[0] == im_start
    assert im_start not in ours.encode("<|im_start|>user", add_bos=False, special=False)
    assert ours.decode([im_start, *ours.encode("hi", add_bos=False), im_end]) == "hi"
    assert {im_end, ours.token_id("<|endoftext|>")} <= ours.stop_ids
    assert ours.chat_template and "<|im_start|>" in ours.chat_template


def test_smollm2_tokenizer_survives_the_cache_format(smollm2):
    _, ours = smollm2
    again = tokenizer_from_cache(ours.serialized, "cache", tokenizer_manifest(ours))
    assert (again.stop_ids, again.chat_template, again.add_bos) == (ours.stop_ids, ours.chat_template,
                                                                    ours.add_bos)
    for text in SAMPLES:
        assert again.encode(text) == ours.encode(text)


def test_stream_decoder_emits_whole_characters_of_byte_level_tokens(smollm2):
    _, ours = smollm2
    text = " 日本語 and 🤖👩‍👩‍👧, café"
    ids = ours.encode(text, add_bos=False)
    assert len(ids) > len(text.split())          # characters split across byte-level tokens
    decoder = StreamDecoder(ours, ours.encode("Say:", add_bos=False))
    pieces = [decoder.push(token) for token in ids] + [decoder.flush()]
    assert all("\ufffd" not in piece for piece in pieces)
    assert "".join(pieces) == text
    assert "" in pieces[:-1]                     # something was held back until complete


def train_vocabulary(size: int) -> tuple[list[str], list[str]]:
    """A byte-level BPE vocabulary (tokens in id order, merges) trained on SAMPLES."""
    trained = HFTokenizer(models.BPE())
    trained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    trained.train_from_iterator(SAMPLES * 3 + ["the cat sat on the mat"] * 5, trainer)
    spec = json.loads(trained.to_str())
    vocab = spec["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    merges = [" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]]
    return tokens, merges


def write_tokenizer_gguf(path, pre: str, tokens, merges, add_bos=None):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(2)
    if add_bos is not None:
        writer.add_add_bos_token(add_bos)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("pre", ["llama-bpe", "qwen2", "gpt-2"])
def test_trained_vocabularies_match_transformers_per_pre_tokenizer(tmp_path, pre):
    tokens, merges = train_vocabulary(700)
    path = write_tokenizer_gguf(tmp_path / f"{pre}.gguf", pre, tokens, merges)
    ours = ours_from_file(path)
    assert_same_as_reference(ours, reference_tokenizer(path), SAMPLES)
    digits = [ours.decode([t]) for t in ours.encode("1234567", add_bos=False)]
    # llama.cpp's splits: Llama 3 groups digits by three, Qwen 2 one by one, GPT-2 not at all
    expected_groups = {"llama-bpe": ["123", "456", "7"], "qwen2": list("1234567"),
                       "gpt-2": ["1234567"]}[pre]
    assert "".join(digits) == "1234567"
    assert len(digits) >= len(expected_groups)
    if pre != "gpt-2":
        groups, position = [], 0
        for group in expected_groups:       # no token crosses a split boundary
            covered = ""
            while len(covered) < len(group):
                covered += digits[position]
                position += 1
            groups.append(covered)
        assert groups == expected_groups
    # Llama 3 vocabularies start with BOS unless the file says otherwise
    assert ours.add_bos == (pre == "llama-bpe")
    assert ours.encode("hi")[:1] == ([0] if pre == "llama-bpe" else ours.encode("hi", add_bos=False)[:1])


def test_bad_bpe_metadata_is_named(tmp_path):
    tokens, merges = train_vocabulary(400)
    fields = _read_fields(gguf.GGUFReader(write_tokenizer_gguf(tmp_path / "t.gguf", "qwen2", tokens, merges)))
    with pytest.raises(ModelFileError, match="tokenizer.ggml.pre='mystery'"):
        Tokenizer.from_gguf_fields({**fields, "tokenizer.ggml.pre": "mystery"}, "t.gguf")
    with pytest.raises(ModelFileError, match=r"merges\[3\]='nospace' is not two tokens"):
        Tokenizer.from_gguf_fields({**fields, "tokenizer.ggml.merges": merges[:3] + ["nospace"]}, "t.gguf")
    with pytest.raises(ModelFileError, match="merges is missing"):
        Tokenizer.from_gguf_fields({k: v for k, v in fields.items() if k != "tokenizer.ggml.merges"}, "t")
    with pytest.raises(ModelFileError, match=r"merges\[0\]='zz qq' joins tokens that are not"):
        Tokenizer.from_gguf_fields({**fields, "tokenizer.ggml.merges": ["zz qq"]}, "t.gguf")
