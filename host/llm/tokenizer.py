"""Tokenizers: SentencePiece models and byte-level BPE rebuilt from a model file's vocabulary.

No tokenizer algorithm is written here. GGUF files with ``tokenizer.ggml.model = "gpt2"``
(Llama 3, SmolLM2, Qwen 2.5/3) get a byte-level BPE on Hugging Face ``tokenizers``
(``host.llm.bpe``). The SentencePiece sources give a vocabulary of pieces with scores,
and ``sentencepiece`` does the encoding once it is handed a ``ModelProto`` built from
them:

- GGUF metadata (``tokenizer.ggml.tokens``, ``scores``, ``token_type``): llama.cpp's
  "llama" tokenizer is a SentencePiece BPE vocabulary; its token types use
  SentencePiece's own numbering (1 normal ... 6 byte).
- llama2.c's ``tokenizer.bin``: ``int32 max_token_length``, then per token
  ``float32 score, int32 length, bytes``; spaces stand for ``▁``, BOS/EOS are written
  as ``"\\n<s>\\n"``/``"\\n</s>\\n"``, bytes as ``<0xXX>``.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path
from typing import Sequence

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from host.llm.model.base import ModelFileError, short_repr

__all__ = ["Tokenizer", "StreamDecoder", "build_sentencepiece_proto", "read_llama2c_tokenizer",
           "tokenizer_from_cache", "tokenizer_manifest"]

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
    """Text <-> token ids through a SentencePiece model; BOS added on request.

    ``stop_ids`` are the tokens that end a generation (EOS and the vocabulary's end-of-turn
    tokens, such as Gemma's ``<end_of_turn>``); ``chat_template`` is the file's Jinja
    template or None. Control-token texts in encoded text (``<start_of_turn>``) become
    those tokens, as chat templates need.
    """

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, *, bos_id: int, eos_id: int, add_bos: bool = True,
                 stop_ids: Sequence[int] = (), chat_template: str | None = None,
                 source: str = "<memory>"):
        self.model_proto = bytes(model_proto)
        self.processor = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.bos_id, self.eos_id, self.add_bos = int(bos_id), int(eos_id), bool(add_bos)
        self.source = source
        self.chat_template = chat_template
        size = self.processor.get_piece_size()
        for what, value in (("bos_id", self.bos_id), ("eos_id", self.eos_id)):
            if not 0 <= value < size:
                raise ValueError(f"{source}: {what}={value} outside the vocabulary 0..{size - 1}")
        self.stop_ids = frozenset({self.eos_id, *(int(t) for t in stop_ids)})
        self._control_pattern: re.Pattern | None = None

    @property
    def serialized(self) -> bytes:
        """What the model cache stores to rebuild this tokenizer."""
        return self.model_proto

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, text: str, add_bos: bool | None = None, special: bool = True) -> list[int]:
        """Token ids of ``text``, with BOS first if ``add_bos`` (default: the model's rule).

        With ``special``, the texts of control tokens (``<start_of_turn>``) become those
        tokens; without, they are encoded as plain text.
        """
        ids = self._encode_special(text) if special and "<" in text else self.processor.encode(text)
        return [self.bos_id, *ids] if (self.add_bos if add_bos is None else add_bos) else ids

    def _encode_special(self, text: str) -> list[int]:
        if self._control_pattern is None:
            controls = sorted((self.processor.id_to_piece(i) for i in range(self.vocab_size)
                               if self.processor.is_control(i)), key=len, reverse=True)
            controls = [c for c in controls if c]
            self._control_pattern = re.compile("|".join(map(re.escape, controls))) if controls else \
                re.compile(r"(?!x)x")
        ids, start = [], 0
        for match in self._control_pattern.finditer(text):
            if match.start() > start:
                ids += self.processor.encode(text[start:match.start()])
            ids.append(self.processor.piece_to_id(match.group()))
            start = match.end()
        if start < len(text):
            ids += self.processor.encode(text[start:])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``; control tokens (BOS, EOS, ...) produce no text."""
        return self.processor.decode([int(i) for i in ids])

    def piece(self, token: int) -> str:
        return self.processor.id_to_piece(int(token))

    def token_id(self, text: str) -> int | None:
        """The id of the piece spelled ``text`` (a control token's text), else None."""
        index = self.processor.piece_to_id(text)
        return None if index == self.processor.unk_id() and text != self.piece(index) else index

    @classmethod
    def from_gguf_fields(cls, fields: dict, source: str):
        """From GGUF ``tokenizer.ggml.*`` metadata: SentencePiece (``"llama"``) or, for
        ``"gpt2"``, a ``host.llm.bpe.BPETokenizer``.

        Malformed metadata is a ModelFileError naming the key: lists of other lengths
        than ``tokens``, a non-finite score, a token type outside 1..6, a special token id
        outside the vocabulary, a value of the wrong type.
        """
        kind = fields.get("tokenizer.ggml.model")
        if kind not in ("llama", "gpt2"):
            raise ModelFileError(source, f"tokenizer model {short_repr(kind)} is not supported "
                                         "(SentencePiece 'llama', byte-level BPE 'gpt2')")
        required = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores") if kind == "llama" else \
            ("tokenizer.ggml.tokens",)
        for key in required:
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
        template = fields.get("tokenizer.chat_template")
        if template is not None and not isinstance(template, str):
            raise ModelFileError(source, f"metadata tokenizer.chat_template={short_repr(template)} "
                                         "is not a string")
        ids = {}
        defaults = {"bos": 1, "eos": 2} if kind == "llama" else {}
        for name in ("bos", "eos", "unknown", "eot", "eom"):
            key = f"tokenizer.ggml.{name}_token_id"
            value = fields.get(key, defaults.get(name))
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value < len(pieces)):
                raise ModelFileError(source, f"metadata {key}={short_repr(value)} is not a token id "
                                             f"0..{len(pieces) - 1}")
            ids[name] = value
        if kind == "gpt2":
            from .bpe import bpe_from_gguf_fields

            try:
                return bpe_from_gguf_fields(fields, source, pieces, types, ids)
            except Exception as error:      # tokenizers raises its own exception types
                if isinstance(error, ModelFileError):
                    raise
                raise ModelFileError(source, f"bad BPE vocabulary: {_one_line(error)}") from None
        from .bpe import end_of_generation_ids

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
                       stop_ids=end_of_generation_ids(pieces, types, ids), chat_template=template,
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


def tokenizer_manifest(tokenizer) -> dict:
    """The fields a model cache stores beside ``tokenizer.serialized`` to rebuild it."""
    bos = tokenizer.bos_id
    return {"kind": tokenizer.kind, "bos_id": bos, "eos_id": tokenizer.eos_id,
            "add_bos": tokenizer.add_bos, "stop_ids": sorted(int(t) for t in tokenizer.stop_ids),
            "chat_template": tokenizer.chat_template}


def tokenizer_from_cache(blob: bytes, source: str, info: dict):
    """The tokenizer ``tokenizer_manifest`` described, from its serialized bytes."""
    options = {key: value for key, value in info.items() if key != "kind"}
    if info.get("kind", "sentencepiece") == "bpe":
        from .bpe import BPETokenizer

        return BPETokenizer(bytes(blob).decode("utf-8"), source=source, **options)
    return Tokenizer(bytes(blob), source=source, **options)


class StreamDecoder:
    """Turns a growing token list into text increments for streaming.

    ``push`` returns only text that is final: a piece whose UTF-8 bytes are still
    incomplete (byte-fallback or byte-level tokens) is held back until the character
    completes. Each push decodes a short window (the last emitted tokens and the pending
    ones), so its cost does not grow with the text: the window keeps the context a
    tokenizer needs (a SentencePiece word's leading space) without decoding everything.
    """

    def __init__(self, tokenizer, context: Sequence[int] = ()):
        self.tokenizer = tokenizer
        self.context = list(context)
        self.tokens: list[int] = []
        self._window = [int(t) for t in self.context[-4:]]   # decoded together with new tokens
        self._read = len(self._window)                       # window[:read] is already out
        self._prefix = tokenizer.decode(self._window)

    def push(self, token: int) -> str:
        """Add ``token``; return the text that became final."""
        self.tokens.append(int(token))
        self._window.append(int(token))
        text = self.tokenizer.decode(self._window)
        if text.endswith("\ufffd"):
            return ""
        new = text[len(self._prefix):] if text.startswith(self._prefix) else text
        self._window = self._window[self._read:]
        self._read = len(self._window)
        self._prefix = self.tokenizer.decode(self._window)
        return new

    def flush(self) -> str:
        """Everything not yet returned, complete or not (end of generation)."""
        if self._read == len(self._window):
            return ""
        text = self.tokenizer.decode(self._window)
        new = text[len(self._prefix):] if text.startswith(self._prefix) else text
        self._window = self._window[self._read:]
        self._read = len(self._window)
        self._prefix = self.tokenizer.decode(self._window)
        return new

    def text(self) -> str:
        """Everything decoded after the context so far."""
        prefix = self.tokenizer.decode(self.context)
        full = self.tokenizer.decode(self.context + self.tokens)
        return full[len(prefix):] if full.startswith(prefix) else self.tokenizer.decode(self.tokens)
