"""Tokenizers built from a model file's vocabulary, against llama2.c's own encoder."""

import pytest

from host.llm.model import ModelFileError
from host.llm.tokenizer import StreamDecoder, Tokenizer

from host_testmodels import small_vocab, write_tokenizer_bin

SAMPLES = ["Once upon a time", "The cat sat on the mat.", "  two  spaces\nand a newline",
           "naïve café, 日本語 🤖", "the the thethe", "!", "x"]


def run_c_encode(text: str, pieces: list[str], scores: list[float], space_prefix: bool) -> list[int]:
    """llama2.c run.c encode(): codepoints (or bytes +3), then best-score pair merges."""
    index = {piece.replace("\u2581", " "): i for i, piece in enumerate(pieces)}
    byte_base = pieces.index("<0x00>")
    text = (" " + text) if space_prefix and text else text
    tokens = []
    for char in text:
        if char in index:
            tokens.append(index[char])
        else:
            tokens.extend(byte_base + b for b in char.encode("utf-8"))
    while True:
        best, best_id, best_at = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            a, b = pieces[tokens[i]], pieces[tokens[i + 1]]
            merged = (a + b).replace("\u2581", " ")
            if merged in index and scores[index[merged]] > best and not a.startswith("<0x"):
                best, best_id, best_at = scores[index[merged]], index[merged], i
        if best_at < 0:
            return tokens
        tokens[best_at:best_at + 2] = [best_id]


@pytest.mark.parametrize("space_prefix", [True, False])
def test_gguf_vocabulary_tokenizer_matches_reference_encoder(space_prefix):
    specials = ["<unk>", "<s>", "</s>"]
    pieces, scores, types = small_vocab(320, specials)
    fields = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": pieces,
              "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
              "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
              "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_space_prefix": space_prefix}
    tokenizer = Tokenizer.from_gguf_fields(fields, "test.gguf")
    for text in SAMPLES:
        ids = tokenizer.encode(text)
        assert ids[0] == 1
        assert ids[1:] == run_c_encode(text, pieces, scores, space_prefix), text
        assert tokenizer.decode(ids) == text
    assert tokenizer.encode("Once upon a time", add_bos=False) == \
        [pieces.index("\u2581Once" if space_prefix else "Once"), pieces.index("\u2581upon"),
         pieces.index("\u2581a"), pieces.index("\u2581time")]


def test_llama2c_tokenizer_bin_matches_reference_encoder(tmp_path):
    pieces, scores, _ = small_vocab(320, ["<unk>", "<s>", "</s>"])
    path = write_tokenizer_bin(tmp_path / "tokenizer.bin", pieces, scores)
    tokenizer = Tokenizer.from_llama2c(path, 320)
    assert (tokenizer.bos_id, tokenizer.eos_id) == (1, 2)
    for text in SAMPLES:
        assert tokenizer.encode(text) == [1] + run_c_encode(text, pieces, scores, True)
        assert tokenizer.decode(tokenizer.encode(text)) == text
    with pytest.raises(ModelFileError, match="bytes after 300 tokens"):
        Tokenizer.from_llama2c(path, 300)


def test_unsupported_tokenizer_model_is_named():
    with pytest.raises(ModelFileError, match="tokenizer model 'rwkv' is not supported"):
        Tokenizer.from_gguf_fields({"tokenizer.ggml.model": "rwkv"}, "x.gguf")
    with pytest.raises(ModelFileError, match="tokenizer.ggml.scores"):
        Tokenizer.from_gguf_fields({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["a"]},
                                   "x.gguf")


def vocabulary_fields(**changes) -> dict:
    """GGUF tokenizer metadata of the 320-piece test vocabulary, with ``changes`` applied."""
    pieces, scores, types = small_vocab(320, ["<unk>", "<s>", "</s>"])
    fields = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": pieces,
              "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
              "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
              "tokenizer.ggml.unknown_token_id": 0}
    for name, change in changes.items():
        key = f"tokenizer.ggml.{name}"
        fields[key] = change(fields[key]) if callable(change) else change
    return fields


def replaced(index: int, value):
    return lambda values: values[:index] + [value] + values[index + 1:]


MALFORMED_VOCABULARIES = {     # name: (changes, what the message must say)
    "scores shorter": (dict(scores=lambda v: v[:-1]), "tokenizer.ggml.scores has 319 entries"),
    "types shorter": (dict(token_type=lambda v: v[:-1]), "tokenizer.ggml.token_type has 319 entries"),
    "type 9": (dict(token_type=replaced(300, 9)), "tokenizer.ggml.token_type[300]=9 outside 1..6"),
    "type 0": (dict(token_type=replaced(300, 0)), "tokenizer.ggml.token_type[300]=0 outside 1..6"),
    "NaN score": (dict(scores=replaced(7, float("nan"))), "tokenizer.ggml.scores[7]=nan"),
    "token not a string": (dict(tokens=replaced(3, 7)), "tokenizer.ggml.tokens[3]=7 has the wrong type"),
    "tokens not an array": (dict(tokens="<unk>"), "tokenizer.ggml.tokens='<unk>' is not an array"),
    "BOS past the end": (dict(bos_token_id=320), "tokenizer.ggml.bos_token_id=320 is not a token id"),
    "EOS negative": (dict(eos_token_id=-1), "tokenizer.ggml.eos_token_id=-1 is not a token id"),
    "unknown past the end": (dict(unknown_token_id=999), "tokenizer.ggml.unknown_token_id=999"),
    "BOS a float": (dict(bos_token_id=1.0), "tokenizer.ggml.bos_token_id=1.0 is not a token id"),
    "BOS an array": (dict(bos_token_id=[1]), "tokenizer.ggml.bos_token_id=[1] is not a token id"),
    "add_bos an int": (dict(add_bos_token=1), "tokenizer.ggml.add_bos_token=1 is not a bool"),
    "duplicate piece": (dict(tokens=replaced(300, "e")), "bad tokenizer vocabulary"),
}


@pytest.mark.parametrize("case", MALFORMED_VOCABULARIES)
def test_malformed_gguf_vocabulary_is_one_line_naming_the_key(case):
    changes, expected = MALFORMED_VOCABULARIES[case]
    with pytest.raises(ModelFileError) as caught:
        Tokenizer.from_gguf_fields(vocabulary_fields(**changes), "x.gguf")
    message = str(caught.value)
    assert message.startswith("x.gguf: ") and "\n" not in message and expected in message, message


@pytest.mark.parametrize("offset,value,expected", [
    (4, b"\x00\x00\xc0\x7f", "token 0: score nan is not finite"),       # first token's score
    (12, b"\xff", "token 0: b'\\xffunk>' is not UTF-8"),                   # its first byte
])
def test_malformed_tokenizer_bin_is_one_line(tmp_path, offset, value, expected):
    pieces, scores, _ = small_vocab(320, ["<unk>", "<s>", "</s>"])
    data = bytearray(write_tokenizer_bin(tmp_path / "tokenizer.bin", pieces, scores).read_bytes())
    data[offset:offset + len(value)] = value
    (tmp_path / "tokenizer.bin").write_bytes(data)
    with pytest.raises(ModelFileError) as caught:
        Tokenizer.from_llama2c(tmp_path / "tokenizer.bin", 320)
    assert "\n" not in str(caught.value) and expected in str(caught.value), str(caught.value)


def test_every_truncation_of_tokenizer_bin_is_refused(tmp_path):
    pieces, scores, _ = small_vocab(320, ["<unk>", "<s>", "</s>"])
    data = write_tokenizer_bin(tmp_path / "full.bin", pieces, scores).read_bytes()
    cut = tmp_path / "tokenizer.bin"
    for keep in range(0, len(data), 7):
        cut.write_bytes(data[:keep])
        with pytest.raises(ModelFileError, match="truncated tokenizer.bin"):
            Tokenizer.from_llama2c(cut, 320)


def test_stream_decoder_holds_back_partial_characters():
    pieces, scores, types = small_vocab(320, ["<unk>", "<s>", "</s>"])
    tokenizer = Tokenizer.from_gguf_fields(
        {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": pieces,
         "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
         "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_space_prefix": False}, "t")
    prompt = tokenizer.encode("Once")
    text = " upon 日本語 the 🤖 time"
    ids = tokenizer.encode(text, add_bos=False)
    assert sum(1 for i in ids if tokenizer.piece(i).startswith("<0x")) >= 9   # byte fallback in play
    decoder = StreamDecoder(tokenizer, prompt)
    pieces_out = [decoder.push(token) for token in ids] + [decoder.flush()]
    assert all("\ufffd" not in piece for piece in pieces_out)
    assert "".join(pieces_out) == text
    assert any(piece == "" for piece in pieces_out)        # something was held back
