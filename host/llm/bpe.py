"""Byte-level BPE tokenizers (GGUF ``tokenizer.ggml.model = "gpt2"``) on Hugging Face ``tokenizers``.

No BPE is written here: the vocabulary and merges of the GGUF metadata are handed to
``tokenizers.models.BPE``, and the text is split first the way llama.cpp splits it for the
``tokenizer.ggml.pre`` the file names (``PRE_TOKENIZER_SPLITS``: the regular expressions of
llama.cpp's ``llama-vocab.cpp``, applied one after the other), then mapped to the byte
alphabet (``ByteLevel``). Control tokens (type 3: ``<|im_start|>``, ``<|eot_id|>``...) are
special tokens, matched whole in the text and dropped from decoded text; user-defined
tokens (type 4) are matched whole and decoded.
"""

from __future__ import annotations

import functools
import json
from typing import Sequence

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from host.llm.model.base import ModelFileError, short_repr

__all__ = ["BPETokenizer", "PRE_TOKENIZER_SPLITS", "bpe_from_gguf_fields", "byte_alphabet"]

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
           r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
          r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# tokenizer.ggml.pre -> the splits llama.cpp applies in turn (llama-vocab.cpp, regex_exprs).
PRE_TOKENIZER_SPLITS: dict[str, tuple[str, ...]] = {
    "default": (_GPT2,), "gpt-2": (_GPT2,), "gpt2": (_GPT2,),
    "llama3": (_LLAMA3,), "llama-v3": (_LLAMA3,), "llama-bpe": (_LLAMA3,), "smaug-bpe": (_LLAMA3,),
    "qwen2": (_QWEN2,), "deepseek-r1-qwen": (_QWEN2,),
    "smollm": (r"\p{N}", _GPT2), "starcoder": (r"\p{N}", _GPT2), "refact": (r"\p{N}", _GPT2),
}
# Pre-tokenizers whose word is looked up whole before any merge (llama.cpp's ignore_merges).
_IGNORE_MERGES = {"llama3", "llama-v3", "llama-bpe", "smaug-bpe"}
# Pre-tokenizers whose vocabularies llama.cpp starts with BOS when the file does not say.
_ADD_BOS_DEFAULT = {"llama3", "llama-v3", "llama-bpe", "smaug-bpe"}

# Texts llama.cpp treats as end of generation when a control/user-defined token spells them.
END_OF_GENERATION_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                           "<|end_of_text|>", "<EOT>", "<|eom_id|>", "<end_of_utterance>", "</s>",
                           "<|return|>", "<|call|>")


@functools.cache
def byte_alphabet() -> dict[int, str]:
    """GPT-2's printable spelling of each byte (``bytes_to_unicode``): what byte-level
    vocabularies are written in."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            codes[byte] = chr(byte)
        else:
            codes[byte] = chr(256 + extra)
            extra += 1
    return codes


class BPETokenizer:
    """Text <-> token ids through a ``tokenizers`` byte-level BPE built from GGUF metadata.

    ``stop_ids`` are the tokens that end a generation (EOS, EOT and the end-of-turn tokens
    of the vocabulary); ``chat_template`` is the file's Jinja template or None.
    """

    kind = "bpe"

    def __init__(self, spec: str, *, bos_id: int | None, eos_id: int, add_bos: bool = False,
                 stop_ids: Sequence[int] = (), chat_template: str | None = None,
                 source: str = "<memory>"):
        self.spec = spec
        self.backend = HFTokenizer.from_str(spec)
        self.bos_id = None if bos_id is None else int(bos_id)
        self.eos_id, self.add_bos, self.source = int(eos_id), bool(add_bos), source
        self.stop_ids = frozenset({self.eos_id, *(int(t) for t in stop_ids)})
        self.chat_template = chat_template
        self._plain: HFTokenizer | None = None

    @property
    def serialized(self) -> bytes:
        """What the model cache stores to rebuild this tokenizer."""
        return self.spec.encode("utf-8")

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_bos: bool | None = None, special: bool = True) -> list[int]:
        """Token ids of ``text``. Control-token texts (``<|im_start|>``) in ``text`` become
        those tokens if ``special`` (chat templates rely on it), else plain text."""
        if special:
            ids = self.backend.encode(text, add_special_tokens=False).ids
        else:
            ids = self._encode_plain(text)
        add = self.add_bos if add_bos is None else add_bos
        return [self.bos_id, *ids] if add and self.bos_id is not None else list(ids)

    def _encode_plain(self, text: str) -> list[int]:
        if self._plain is None:        # a second backend that reads special texts as text
            self._plain = HFTokenizer.from_str(self.spec)
            self._plain.encode_special_tokens = True
        return self._plain.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``; control tokens produce no text."""
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=True)

    def piece(self, token: int) -> str:
        return self.backend.id_to_token(int(token))

    def token_id(self, text: str) -> int | None:
        """The id of the token spelled ``text`` (a special token's text), else None."""
        return self.backend.token_to_id(text)


def bpe_from_gguf_fields(fields: dict, source: str, tokens: list[str], types: list[int] | None,
                         ids: dict[str, int | None]) -> BPETokenizer:
    """A ``BPETokenizer`` from already type-checked GGUF ``tokenizer.ggml.*`` metadata.

    ``ids`` holds ``bos``, ``eos``, ``eot``, ``eom`` (None when absent). An unknown
    ``tokenizer.ggml.pre`` or malformed merges are a ModelFileError naming the key.
    """
    pre = fields.get("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZER_SPLITS:
        raise ModelFileError(source, f"metadata tokenizer.ggml.pre={short_repr(pre)} names a "
                                     f"pre-tokenizer this loader does not know "
                                     f"(known: {', '.join(sorted(PRE_TOKENIZER_SPLITS))})")
    merges_field = fields.get("tokenizer.ggml.merges")
    if not isinstance(merges_field, list) or not merges_field:
        raise ModelFileError(source, "metadata tokenizer.ggml.merges is missing or empty "
                                     "(a BPE vocabulary needs its merges)")
    merges = []
    for index, merge in enumerate(merges_field):
        parts = merge.split(" ") if isinstance(merge, str) else []
        if len(parts) != 2 or not all(parts):
            raise ModelFileError(source, f"metadata tokenizer.ggml.merges[{index}]="
                                         f"{short_repr(merge)} is not two tokens separated by a space")
        merges.append((parts[0], parts[1]))
    spelling = byte_alphabet()
    alphabet = set(spelling.values())
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokens):
        spelled = token if set(token) <= alphabet else "".join(spelling[b] for b in token.encode("utf-8"))
        if spelled in vocab:
            raise ModelFileError(source, f"metadata tokenizer.ggml.tokens[{index}]={short_repr(token)} "
                                         f"repeats token {vocab[spelled]}")
        vocab[spelled] = index
    for index, (left, right) in enumerate(merges):
        if left not in vocab or right not in vocab or left + right not in vocab:
            raise ModelFileError(source, f"metadata tokenizer.ggml.merges[{index}]="
                                         f"{short_repr(merges_field[index])} joins tokens that are "
                                         "not in the vocabulary")
    model = models.BPE(vocab=vocab, merges=merges, ignore_merges=pre in _IGNORE_MERGES,
                       fuse_unk=False, byte_fallback=False)
    backend = HFTokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(split), behavior="isolated") for split in PRE_TOKENIZER_SPLITS[pre]]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    types = types or [NORMAL] * len(tokens)
    control = [AddedToken(tokens[i], special=True, normalized=False)
               for i, kind in enumerate(types) if kind == CONTROL and set(tokens[i]) <= alphabet]
    user = [AddedToken(tokens[i], special=False, normalized=False)
            for i, kind in enumerate(types) if kind == USER_DEFINED and tokens[i] in vocab]
    backend.add_special_tokens(control)
    backend.add_tokens(user)
    add_bos = fields.get("tokenizer.ggml.add_bos_token", pre in _ADD_BOS_DEFAULT)
    if not isinstance(add_bos, bool):
        raise ModelFileError(source, f"metadata tokenizer.ggml.add_bos_token={short_repr(add_bos)} "
                                     "is not a bool")
    if add_bos and ids["bos"] is None:
        raise ModelFileError(source, "metadata tokenizer.ggml.add_bos_token is true but "
                                     "tokenizer.ggml.bos_token_id is missing")
    if ids["eos"] is None:
        raise ModelFileError(source, "metadata tokenizer.ggml.eos_token_id is missing")
    return BPETokenizer(backend.to_str(), bos_id=ids["bos"], eos_id=ids["eos"], add_bos=add_bos,
                        stop_ids=end_of_generation_ids(tokens, types, ids),
                        chat_template=fields.get("tokenizer.chat_template"), source=source)


def end_of_generation_ids(tokens: Sequence[str], types: Sequence[int] | None,
                          ids: dict[str, int | None]) -> list[int]:
    """EOS, EOT, EOM and every control or user-defined token spelling an end of turn, as
    llama.cpp collects them (``special_eog_ids``)."""
    found = [ids[name] for name in ("eos", "eot", "eom") if ids.get(name) is not None]
    kinds = types or [NORMAL] * len(tokens)
    for text in END_OF_GENERATION_TEXTS:
        for index, token in enumerate(tokens):
            if token == text and kinds[index] in (CONTROL, USER_DEFINED):
                found.append(index)
    return sorted(set(found))


def describe(tokenizer: BPETokenizer) -> dict:
    """The tokenizer's fields for a cache manifest (``json``-serializable)."""
    return json.loads(json.dumps({"bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id,
                                  "add_bos": tokenizer.add_bos, "stop_ids": sorted(tokenizer.stop_ids),
                                  "chat_template": tokenizer.chat_template}))
