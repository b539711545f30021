"""Tokenizers: SentencePiece models rebuilt from a model file's vocabulary.

No tokenizer algorithm is written here. Both sources give a vocabulary of pieces
with scores, and ``sentencepiece`` does the encoding once it is handed a
``ModelProto`` built from them:

- GGUF metadata (``tokenizer.ggml.tokens``, ``scores``, ``token_type``): llama.cpp's
  "llama" tokenizer is a SentencePiece BPE vocabulary; its token types use
  SentencePiece's own numbering (1 normal ... 6 byte).
- llama2.c's ``tokenizer.bin``: ``int32 max_token_length``, then per token
  ``float32 score, int32 length, bytes``; spaces stand for ``▁``, BOS/EOS are written
  as ``"\\n<s>\\n"``/``"\\n</s>\\n"``, bytes as ``<0xXX>``.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Sequence

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from host.llm.model.base import ModelFileError, short_repr

__all__ = ["Tokenizer", "StreamDecoder", "build_sentencepiece_proto", "read_llama2c_tokenizer"]

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def build_sentencepiece_proto(pieces: Sequence[str], scores: Sequence[float],
                              types: Sequence[int] | None, *, unk_id: int | None,
                              add_space_prefix: bool) -> bytes:
    """A serialized SentencePiece BPE ``ModelProto`` for this vocabulary.

    Whitespace is not pre-split (llama.cpp's SPM tokenizer and llama2.c's encoder
    merge across the whole text), bytes not in the vocabulary fall back to
    ``<0xXX>`` pieces when the vocabulary has them.
    """
    if not (len(pieces) == len(scores) and (types is None or len(types) == len(pieces))):
        raise ValueError(f"vocabulary lists differ in length: {len(pieces)} pieces, "
                         f"{len(scores)} scores, {None if types is None else len(types)} types")
    types = [NORMAL if not 1 <= int(t) <= 6 else int(t) for t in (types or [NORMAL] * len(pieces))]
    if unk_id is not None and 0 <= unk_id < len(pieces):
        types[unk_id] = UNKNOWN
    elif UNKNOWN not in types:
        raise ValueError("vocabulary has no unknown-token piece")
    proto = sp_pb2.ModelProto()
    trainer = proto.trainer_spec
    trainer.model_type = sp_pb2.TrainerSpec.BPE
    trainer.vocab_size = len(pieces)
    trainer.byte_fallback = BYTE in types
    trainer.split_by_whitespace = False
    trainer.unk_id = types.index(UNKNOWN)
    trainer.bos_id = trainer.eos_id = trainer.pad_id = -1   # BOS/EOS are added by Tokenizer
    normalizer = proto.normalizer_spec
    normalizer.name = "identity"
    normalizer.add_dummy_prefix = add_space_prefix
    normalizer.remove_extra_whitespaces = False
    normalizer.escape_whitespaces = True
    for text, score, kind in zip(pieces, scores, types):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = text, float(score), kind
    return proto.SerializeToString()


class Tokenizer:
    """Text <-> token ids through a SentencePiece model; BOS added on request."""

    def __init__(self, model_proto: bytes, *, bos_id: int, eos_id: int, add_bos: bool = True,
                 source: str = "<memory>"):
        self.model_proto = bytes(model_proto)
        self.processor = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.bos_id, self.eos_id, self.add_bos = int(bos_id), int(eos_id), bool(add_bos)
        self.source = source
        size = self.processor.get_piece_size()
        for what, value in (("bos_id", self.bos_id), ("eos_id", self.eos_id)):
            if not 0 <= value < size:
                raise ValueError(f"{source}: {what}={value} outside the vocabulary 0..{size - 1}")

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        """Token ids of ``text``, with BOS first if ``add_bos`` (default: the model's rule)."""
        ids = self.processor.encode(text)
        return [self.bos_id, *ids] if (self.add_bos if add_bos is None else add_bos) else ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``; control tokens (BOS, EOS, ...) produce no text."""
        return self.processor.decode([int(i) for i in ids])

    def piece(self, token: int) -> str:
        return self.processor.id_to_piece(int(token))

    @classmethod
    def from_gguf_fields(cls, fields: dict, source: str) -> "Tokenizer":
        """From GGUF ``tokenizer.ggml.*`` metadata (only the SentencePiece "llama" model).

        Malformed metadata is a ModelFileError naming the key: lists of other lengths
        than ``tokens``, a non-finite score, a token type outside SentencePiece's 1..6,
        a BOS/EOS/unknown id outside the vocabulary, a value of the wrong type.
        """
        kind = fields.get("tokenizer.ggml.model")
        if kind != "llama":
            raise ModelFileError(source, f"tokenizer model {short_repr(kind)} is not supported "
                                         "(only SentencePiece vocabularies, 'llama')")
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores"):
            if key not in fields:
                raise ModelFileError(source, f"tokenizer metadata '{key}' is missing")
        pieces = _gguf_list(source, fields, "tokenizer.ggml.tokens", str, None)
        scores = _gguf_list(source, fields, "tokenizer.ggml.scores", (int, float), len(pieces))
        types = _gguf_list(source, fields, "tokenizer.ggml.token_type", int, len(pieces))
        for key, values, valid, allowed in (
                ("tokenizer.ggml.scores", scores, math.isfinite, "must be finite"),
                ("tokenizer.ggml.token_type", types, lambda t: NORMAL <= t <= BYTE,
                 f"outside {NORMAL}..{BYTE} (SentencePiece token types)")):
            bad = next((i for i, value in enumerate(values or ()) if not valid(value)), None)
            if bad is not None:
                raise ModelFileError(source, f"metadata {key}[{bad}]={values[bad]!r} {allowed}")
        ids = {}
        for name, default in (("bos", 1), ("eos", 2), ("unknown", None)):
            key = f"tokenizer.ggml.{name}_token_id"
            value = fields.get(key, default)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value < len(pieces)):
                raise ModelFileError(source, f"metadata {key}={short_repr(value)} is not a token id "
                                             f"0..{len(pieces) - 1}")
            ids[name] = value
        flags = {}
        for name in ("add_bos_token", "add_space_prefix"):
            value = fields.get(f"tokenizer.ggml.{name}", True)
            if not isinstance(value, bool):
                raise ModelFileError(source, f"metadata tokenizer.ggml.{name}={short_repr(value)} "
                                             "is not a bool")
            flags[name] = value
        try:
            proto = build_sentencepiece_proto(pieces, scores, types, unk_id=ids["unknown"],
                                              add_space_prefix=flags["add_space_prefix"])
            return cls(proto, bos_id=ids["bos"], eos_id=ids["eos"], add_bos=flags["add_bos_token"],
                       source=source)
        except (ValueError, RuntimeError) as error:     # sentencepiece: duplicate or empty pieces
            raise ModelFileError(source, f"bad tokenizer vocabulary: {_one_line(error)}") from None

    @classmethod
    def from_llama2c(cls, path: str | Path, vocab_size: int) -> "Tokenizer":
        """From llama2.c's ``tokenizer.bin`` holding ``vocab_size`` tokens."""
        pieces, scores = read_llama2c_tokenizer(path, vocab_size)
        types = [NORMAL] * len(pieces)
        specials = {"<unk>": UNKNOWN, "<s>": CONTROL, "</s>": CONTROL}
        for index, text in enumerate(pieces):
            bare = text.strip("\n") if text.startswith("\n") else text
            if bare in specials and (bare != text or index < 3):
                pieces[index], types[index] = bare, specials[bare]
            elif len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
                types[index] = BYTE
        pieces = [text.replace(" ", "\u2581") for text in pieces]
        bos = pieces.index("<s>") if "<s>" in pieces else 1
        eos = pieces.index("</s>") if "</s>" in pieces else 2
        try:
            proto = build_sentencepiece_proto(pieces, scores, types, unk_id=0, add_space_prefix=True)
            return cls(proto, bos_id=bos, eos_id=eos, add_bos=True, source=str(path))
        except (ValueError, RuntimeError) as error:
            raise ModelFileError(path, f"bad tokenizer vocabulary: {_one_line(error)}") from None


def _gguf_list(source: str, fields: dict, key: str, kind, length: int | None) -> list | None:
    """``fields[key]`` as a list of ``kind`` (of ``length`` items); None if the key is absent."""
    if key not in fields:
        return None
    values = fields[key]
    if not isinstance(values, list):
        raise ModelFileError(source, f"metadata {key}={short_repr(values)} is not an array")
    if length is not None and len(values) != length:
        raise ModelFileError(source, f"metadata {key} has {len(values)} entries, "
                                     f"tokenizer.ggml.tokens has {length}")
    bad = next((i for i, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, kind)), None)
    if bad is not None:
        raise ModelFileError(source, f"metadata {key}[{bad}]={short_repr(values[bad])} has the wrong type")
    return values


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def read_llama2c_tokenizer(path: str | Path, vocab_size: int) -> tuple[list[str], list[float]]:
    """Pieces and scores from a llama2.c ``tokenizer.bin``; ModelFileError if malformed."""
    data = Path(path).read_bytes()
    if len(data) < 4:
        raise ModelFileError(path, f"truncated tokenizer.bin: {len(data)} bytes, no header")
    (max_len,) = struct.unpack_from("<i", data, 0)
    if not 0 < max_len < 1 << 16:
        raise ModelFileError(path, f"not a llama2.c tokenizer.bin: max_token_length={max_len} "
                                   "outside 1..65535")
    offset, pieces, scores = 4, [], []
    for index in range(vocab_size):
        if offset + 8 > len(data):
            raise ModelFileError(path, f"truncated tokenizer.bin: token {index} of {vocab_size} "
                                       f"starts past the end ({len(data)} bytes)")
        score, length = struct.unpack_from("<fi", data, offset)
        offset += 8
        if not 0 < length <= max_len:
            raise ModelFileError(path, f"token {index}: length {length} outside 1..{max_len}")
        if offset + length > len(data):
            raise ModelFileError(path, f"truncated tokenizer.bin: token {index} of {vocab_size} "
                                       f"ends past the end ({len(data)} bytes)")
        if not math.isfinite(score):
            raise ModelFileError(path, f"token {index}: score {score} is not finite")
        try:
            pieces.append(data[offset:offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise ModelFileError(path, f"token {index}: {data[offset:offset + length]!r} is not "
                                       "UTF-8") from None
        scores.append(score)
        offset += length
    if offset != len(data):
        raise ModelFileError(path, f"{len(data) - offset} bytes after {vocab_size} tokens: the "
                                   "tokenizer does not match the model's vocab_size")
    return pieces, scores


class StreamDecoder:
    """Turns a growing token list into text increments for streaming.

    ``push`` returns only text that is final: a piece whose UTF-8 bytes are still
    incomplete (byte-fallback tokens) is held back until the character completes.
    """

    def __init__(self, tokenizer: Tokenizer, context: Sequence[int] = ()):
        self.tokenizer = tokenizer
        self.context = list(context)
        self.tokens: list[int] = []
        self._prefix = tokenizer.decode(self.context)
        self._emitted = 0

    def push(self, token: int) -> str:
        """Add ``token``; return the text that became final."""
        self.tokens.append(int(token))
        text = self.text()
        if text.endswith("\ufffd"):
            return ""
        new, self._emitted = text[self._emitted:], len(text)
        return new

    def flush(self) -> str:
        """Everything not yet returned, complete or not (end of generation)."""
        text = self.text()
        new, self._emitted = text[self._emitted:], len(text)
        return new

    def text(self) -> str:
        """Everything decoded after the context so far."""
        full = self.tokenizer.decode(self.context + self.tokens)
        return full[len(self._prefix):] if full.startswith(self._prefix) else \
            self.tokenizer.decode(self.tokens)
