"""Test-side writers: small random Hugging Face models saved in the formats host.llm.model reads.

Independent of host/: GGUF tensors follow llama.cpp's convert_hf_to_gguf.py (names,
Gemma's norm "+1", the q/k row permutation for Llama) and llama2.c files follow its
export.py (v0 legacy, v1 float and v2 Q8_0 "ak42"), written here with struct and numpy.
"""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import torch

BYTE_PIECES = [f"<0x{b:02X}>" for b in range(256)]
WORD_PIECES = ["\u2581", "e", "t", "a", "o", "n", "i", "s", "h", "r", "l", "d", "u", "T", "O",
               "\u2581t", "he", "\u2581the", "\u2581a", "in", "on", "\u2581on", "ce", "\u2581u", "\u2581up",
               "\u2581upon", "\u2581ti", "me", "\u2581time", "er", "\u2581The", "nce", "Once",
               "\u2581Once", "at", "\u2581cat", "\u2581sat", "\u2581mat", "!", ".", ","]


def small_vocab(size: int, specials: list[str]) -> tuple[list[str], list[float], list[int]]:
    """Specials (control, first one unknown), 256 byte pieces, then scored word pieces."""
    pieces = list(specials) + BYTE_PIECES
    types = [3] * len(specials) + [6] * 256
    types[specials.index("<unk>")] = 2
    scores = [0.0] * len(pieces)
    # like a trained BPE vocabulary: every character of a merged piece is a piece itself
    extra = [f"w{i}" for i in range(size)]
    chars = sorted({c for word in WORD_PIECES + extra[:60] for c in word} - set(WORD_PIECES))
    words = WORD_PIECES + chars + extra
    for index, word in enumerate(words[: size - len(pieces)]):
        pieces.append(word)
        types.append(1)
        scores.append(-float(index))
    return pieces, scores, types


def randomize(model: torch.nn.Module, seed: int, std: float = 0.2) -> None:
    """Every parameter, norms included, drawn at random (init would leave norms trivial)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.permute: HF rotate_half rows -> interleaved pairs."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def _state(model) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}


def _finish(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _tokenizer_kv(writer, pieces, scores, types, bos, eos, unk, space_prefix) -> None:
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(bos)
    writer.add_eos_token_id(eos)
    writer.add_unk_token_id(unk)
    writer.add_add_bos_token(True)
    writer.add_add_space_prefix(space_prefix)


def _gguf_writer(path: Path, architecture: str, name: str, cfg, rope_base: float) -> gguf.GGUFWriter:
    """A writer with the hyperparameters every architecture here shares."""
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(rope_base)
    return writer


def _layer_names(layers: int, per_layer: dict[str, str]) -> dict[str, str]:
    """HF tensor names of every layer mapped to llama.cpp's ``blk.{i}.*`` names."""
    return {f"model.layers.{i}.{hf}.weight": f"blk.{i}.{ours}.weight"
            for i in range(layers) for hf, ours in per_layer.items()}


def byte_level_vocab(size: int, specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>")):
    """A byte-level BPE vocabulary of ``size`` tokens (in id order) and its merges, trained
    with HF ``tokenizers`` on a little text (``tokenizer.ggml.model = "gpt2"`` files)."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=list(specials), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = ("Once upon a time the cat sat on the mat. Hello, world! The quick brown fox jumps over "
            "the lazy dog; naïve café, 日本語 🤖. def f(x): return x * 2  # numbers 12345 and 678.")
    words = text.split()
    trained.train_from_iterator([text] * 5 + [" ".join(words[i:] + words[:i]) for i in range(len(words))],
                                trainer)
    spec = json.loads(trained.to_str())
    vocab = spec["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    assert len(tokens) == size, f"trained {len(tokens)} tokens, wanted {size}"
    merges = [" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]]
    return tokens, merges, [3 if t in specials else 1 for t in tokens]


def llama3_rope_divisors(cfg) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.generate_extra_tensors: Llama 3's rope_freqs.weight."""
    import math

    rope = cfg.rope_parameters
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old_context = rope["original_max_position_embeddings"]
    freqs = 1.0 / (rope["rope_theta"] ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    low_wavelen, high_wavelen = old_context / low, old_context / high
    divisors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            divisors.append(1.0)
        elif wavelen > low_wavelen:
            divisors.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            divisors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(divisors, np.float32)


def write_llama_gguf(path: Path, model, *, tensor_type=None, tied: bool = False,
                     architecture: str = "llama", int32_tensors: tuple[str, ...] = (),
                     drop: tuple[str, ...] = (), n_tokens: int | None = None,
                     bpe: bool = False, chat_template: str | None = None) -> Path:
    """A HF LlamaForCausalLM (or Qwen2/Qwen3ForCausalLM with ``architecture`` "qwen2",
    "qwen3") as llama.cpp would convert it (F32, or ``tensor_type``).

    Llama's q/k rows are permuted for interleaved RoPE, Qwen's are not; Qwen 2 has q/k/v
    biases, Qwen 3 q/k norms and its own head size; a Llama 3 RoPE configuration gets
    ``rope_freqs.weight``. ``n_tokens`` writes a vocabulary of that many tokens instead of
    one per embedding row; ``bpe`` a byte-level BPE vocabulary instead of SentencePiece.
    """
    cfg = model.config
    state = _state(model)
    is_llama = architecture == "llama"
    writer = _gguf_writer(path, architecture, f"test-{architecture}", cfg, cfg.rope_parameters["rope_theta"])
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer.add_rope_dimension_count(head_dim)
    if architecture == "qwen3":
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if bpe:
        tokens, merges, types = byte_level_vocab(n_tokens or cfg.vocab_size)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("qwen2" if not is_llama else "llama-bpe")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        writer.add_bos_token_id(0)
        writer.add_eos_token_id(2)
        writer.add_add_bos_token(False)
        writer.add_eot_token_id(tokens.index("<|im_end|>"))
    else:
        pieces, scores, types = small_vocab(n_tokens or cfg.vocab_size, ["<unk>", "<s>", "</s>"])
        _tokenizer_kv(writer, pieces, scores, types, bos=1, eos=2, unk=0, space_prefix=True)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    if not tied:
        names["lm_head.weight"] = "output.weight"
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
                 "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    if architecture == "qwen3":
        per_layer.update({"self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"})
    names.update(_layer_names(cfg.num_hidden_layers, per_layer))
    if architecture == "qwen2":
        names.update({f"model.layers.{i}.self_attn.{p}_proj.bias": f"blk.{i}.attn_{p}.bias"
                      for i in range(cfg.num_hidden_layers) for p in "qkv"})
    if cfg.rope_parameters.get("rope_type") == "llama3":
        writer.add_tensor("rope_freqs.weight", llama3_rope_divisors(cfg))
    for hf_name, name in names.items():
        data = state[hf_name]
        if is_llama and name.endswith("attn_q.weight"):
            data = llama_cpp_permute(data, cfg.num_attention_heads)
        elif is_llama and name.endswith("attn_k.weight"):
            data = llama_cpp_permute(data, cfg.num_key_value_heads)
        if name in drop:
            continue
        if name in int32_tensors:
            writer.add_tensor(name, np.rint(data * 100).astype(np.int32))
            continue
        _add_tensor(writer, name, data, tensor_type)
    _finish(writer)
    return path


def _add_tensor(writer, name: str, data: np.ndarray, tensor_type) -> None:
    if tensor_type is None or data.ndim == 1:
        writer.add_tensor(name, data.astype(np.float32))
    else:
        quantized = gguf.quants.quantize(data.astype(np.float32), tensor_type)
        writer.add_tensor(name, quantized, raw_shape=quantized.shape, raw_dtype=tensor_type)


def write_gemma3_gguf(path: Path, model) -> Path:
    """A HF Gemma3ForCausalLM as llama.cpp converts it: norms get +1 folded in."""
    cfg = model.config
    state = _state(model)
    writer = _gguf_writer(path, "gemma3", "test-gemma3", cfg,
                          cfg.rope_parameters["full_attention"]["rope_theta"])
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_sliding_window(cfg.sliding_window)
    pieces, scores, types = small_vocab(cfg.vocab_size, ["<pad>", "<eos>", "<bos>", "<unk>"])
    _tokenizer_kv(writer, pieces, scores, types, bos=2, eos=1, unk=3, space_prefix=False)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
                 "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
                 "self_attn.k_norm": "attn_k_norm", "post_attention_layernorm": "post_attention_norm",
                 "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    names.update(_layer_names(cfg.num_hidden_layers, per_layer))
    for hf_name, name in names.items():
        data = state[hf_name]
        if name.endswith("norm.weight"):
            data = data + 1.0
        writer.add_tensor(name, data.astype(np.float32))
    _finish(writer)
    return path


def write_llama2c(path: Path, model, version: int, group_size: int = 64, shared: bool = False) -> Path:
    """llama2.c export.py: legacy v0 (float), version1 (float) or version2 (Q8_0), interleaved q/k rows."""
    cfg = model.config
    state = _state(model)
    n_layers, heads, kv_heads = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
    layer = lambda i, name: state[f"model.layers.{i}.{name}.weight"]  # noqa: E731
    wq = [llama_cpp_permute(layer(i, "self_attn.q_proj"), heads) for i in range(n_layers)]
    wk = [llama_cpp_permute(layer(i, "self_attn.k_proj"), kv_heads) for i in range(n_layers)]
    wv = [layer(i, "self_attn.v_proj") for i in range(n_layers)]
    wo = [layer(i, "self_attn.o_proj") for i in range(n_layers)]
    w1 = [layer(i, "mlp.gate_proj") for i in range(n_layers)]
    w2 = [layer(i, "mlp.down_proj") for i in range(n_layers)]
    w3 = [layer(i, "mlp.up_proj") for i in range(n_layers)]
    att_norm = [layer(i, "input_layernorm") for i in range(n_layers)]
    ffn_norm = [layer(i, "post_attention_layernorm") for i in range(n_layers)]
    embed, final = state["model.embed_tokens.weight"], state["model.norm.weight"]
    output = embed if shared else state["lm_head.weight"]
    params = (cfg.hidden_size, cfg.intermediate_size, n_layers, heads, kv_heads,
              cfg.vocab_size, cfg.max_position_embeddings)
    f32 = lambda arrays: b"".join(np.asarray(a, "<f4").tobytes() for a in arrays)  # noqa: E731
    if version == 0:
        header = struct.pack("7i", *params[:5], params[5] if shared else -params[5], params[6])
        head_size = cfg.hidden_size // heads
        rope_tables = np.zeros(cfg.max_position_embeddings * head_size // 2, np.float32)
        body = f32([embed, *att_norm, *wq, *wk, *wv, *wo, *ffn_norm, *w1, *w2, *w3, final,
                    rope_tables, rope_tables])
        if not shared:
            body += f32([output])
        path.write_bytes(header + body)
        return path
    assert version in (1, 2)
    header = struct.pack("I", 0x616B3432) + struct.pack("i", version) + struct.pack("7i", *params)
    header += struct.pack("B", int(shared)) + (struct.pack("i", group_size) if version == 2 else b"")
    header += b"\0" * (256 - len(header))
    body = f32([*att_norm, *ffn_norm, final])
    if version == 1:
        body += f32([embed, *wq, *wk, *wv, *wo, *w1, *w2, *w3] + ([] if shared else [output]))
        path.write_bytes(header + body)
        return path
    for w in [embed, *wq, *wk, *wv, *wo, *w1, *w2, *w3] + ([] if shared else [output]):
        q, s = quantize_q80(w, group_size)
        body += q.tobytes() + s.astype("<f4").tobytes()
    path.write_bytes(header + body)
    return path


def quantize_q80(w: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """export.py quantize_q80: symmetric int8 per group of the flattened tensor."""
    groups = w.astype(np.float32).reshape(-1, group_size)
    scale = np.abs(groups).max(axis=1) / 127.0
    return np.round(groups / scale[:, None]).astype(np.int8).reshape(-1), scale.astype(np.float32)


def dequantize_q80(w: np.ndarray, group_size: int) -> np.ndarray:
    q, s = quantize_q80(w, group_size)
    return (q.reshape(-1, group_size).astype(np.float32) * s[:, None]).reshape(w.shape)


def write_tokenizer_bin(path: Path, pieces: list[str], scores: list[float]) -> Path:
    """llama2.c tokenizer.py export: ▁ as space, BOS/EOS wrapped in newlines."""
    encoded = []
    for index, piece in enumerate(pieces):
        text = {"<s>": "\n<s>\n", "</s>": "\n</s>\n"}.get(piece, piece).replace("\u2581", " ")
        encoded.append(text.encode("utf-8"))
    out = struct.pack("I", max(len(b) for b in encoded))
    for data, score in zip(encoded, scores):
        out += struct.pack("fI", score, len(data)) + data
    path.write_bytes(out)
    return path


# Qwen 2.5's ChatML template, shortened (no tools): a default system message, then turns.
CHATML_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def write_chat_model(path: Path, seed: int = 21) -> Path:
    """A tiny random Qwen 2 with a byte-level BPE vocabulary and a ChatML template."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=320, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1e4},
                         tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config).eval()
    randomize(model, seed, std=0.5)
    return write_llama_gguf(path, model, tied=True, architecture="qwen2", bpe=True,
                            chat_template=CHATML_TEMPLATE)


def write_tiny_llama2c(folder: Path, seed: int = 5) -> tuple[Path, Path]:
    """A small random llama2.c model (v0) and its tokenizer.bin in ``folder``: vocabulary
    320, dim 64, FFN 160, 2 layers, 4 heads over 2 KV heads, norms near 1. The RTL
    generation tests run it: small enough to simulate, a real llama2.c file all the same.
    Returns (model path, tokenizer path)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         rms_norm_eps=1e-5, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    hf = LlamaForCausalLM(config).eval()
    randomize(hf, seed=seed)
    with torch.no_grad():
        for name, parameter in hf.named_parameters():
            if "norm" in name:
                parameter.add_(1.0)
    pieces, scores, _ = small_vocab(config.vocab_size, ["<unk>", "<s>", "</s>"])
    tokenizer = write_tokenizer_bin(folder / "tokenizer.bin", pieces, scores)
    return write_llama2c(folder / "model.bin", hf, version=0), tokenizer
