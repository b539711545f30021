"""The host's small C libraries (``firmware/*.c``), compiled on first use and loaded with ctypes.

Each library is one source file compiled with the C compiler (``$CC``, else ``cc`` or
``gcc``) into ``build/<name>/<digest of source and flags>/lib<name>.so`` and reused
afterwards; a changed source gets a new directory. Where no compiler works the caller
gets None and the reason, and keeps its Python path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["FIRMWARE", "CFLAGS", "shared_library"]

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
# The firmware's own warnings (firmware/Makefile), as errors.
CFLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wconversion",
          "-Wno-sign-conversion", "-shared", "-fPIC")


def shared_library(source: Path, name: str, cflags: tuple[str, ...] = CFLAGS) -> tuple[ctypes.CDLL | None, str | None]:
    """``(the loaded library, None)``, or ``(None, why not)``."""
    text = source.read_bytes()
    digest = hashlib.sha256(text + " ".join(cflags).encode()).hexdigest()[:16]
    target = ROOT / "build" / name / digest / f"lib{name}.so"
    if not target.exists():
        compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            return None, "no C compiler (set CC, or install gcc)"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        result = subprocess.run([compiler, *cflags, str(source), "-o", str(partial)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            return None, f"{compiler} failed on {source.name}: {result.stderr.strip()}"
        partial.replace(target)
    return ctypes.CDLL(str(target)), None
