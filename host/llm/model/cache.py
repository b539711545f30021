"""The user's model cache: dequantized tensors stored once, memory-mapped afterwards.

Layout: ``<cache_root>/models/<key>/`` holds ``manifest.json`` (config, tensor
names, metadata) and one ``.npy`` per tensor. ``key`` hashes the source file's
resolved path, size and modification time plus ``FORMAT_VERSION``, so editing or
replacing a model file, or changing how this code dequantizes, never reuses a stale
entry. An entry appears atomically (written to a temporary directory, then
renamed), so a crash or two concurrent loads never leave a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["FORMAT_VERSION", "cache_root", "file_identity", "TensorCache"]

FORMAT_VERSION = 1


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/systole``, else ``~/.cache/systole``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "systole"


def file_identity(path: str | Path) -> str:
    """A short key for this version of the file: resolved path, size and mtime."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    text = f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}|v{FORMAT_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class TensorCache:
    """One cache entry: a manifest plus named float32/any-dtype arrays."""

    def __init__(self, key: str, root: Path | None = None):
        self.key = key
        self.directory = (root or cache_root()) / "models" / key

    def exists(self) -> bool:
        """Whether the entry is complete (its manifest is written last)."""
        return (self.directory / "manifest.json").is_file()

    def read_manifest(self) -> dict:
        return json.loads((self.directory / "manifest.json").read_text())

    def load(self, name: str, mmap: bool = True) -> np.ndarray:
        """The array stored under ``name`` (memory-mapped read-only by default)."""
        return np.load(self.directory / _file_name(name), mmap_mode="r" if mmap else None)

    def write(self, manifest: dict, arrays) -> None:
        """Store ``arrays`` (an iterable of ``(name, array)``) and ``manifest`` atomically."""
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.key}-", dir=self.directory.parent))
        try:
            names = []
            for name, array in arrays:
                np.save(staging / _file_name(name), np.ascontiguousarray(array))
                names.append(name)
            (staging / "manifest.json").write_text(json.dumps({**manifest, "tensors": names}))
            try:
                os.rename(staging, self.directory)
            except OSError:
                if not self.exists():      # lost a race only if the winner finished
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


def _file_name(name: str) -> str:
    return name.replace("/", "_") + ".npy"
