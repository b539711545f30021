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
    with pytest.raises(ModelFileError, match="tokenizer model 'gpt2' is not supported"):
        Tokenizer.from_gguf_fields({"tokenizer.ggml.model": "gpt2"}, "x.gguf")
    with pytest.raises(ModelFileError, match="tokenizer.ggml.scores"):
        Tokenizer.from_gguf_fields({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["a"]},
                                   "x.gguf")


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
