"""The generated ``systole_top`` for simulation: its Verilog, its build options, and
running a cocotb module on it from pytest.

``top_verilog(config)`` converts the design once per content of ``hdl/``;
``run_top(module, preset)`` builds it for the selected simulator (cached by
``sim.runner``) and runs every cocotb test of ``module`` on it, telling the testbench
the preset through ``$SYSTOLE_PRESET`` (``PRESET_ENV``).

Only the standard library and ``hdl.spec`` are imported at module level, so the
testbench may import ``PRESET_ENV`` inside the simulator without Amaranth.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hdl.spec.config import AccelConfig, preset

__all__ = ["PRESET_ENV", "top_verilog", "top_build_args", "run_top", "on_presets"]

PRESET_ENV = "SYSTOLE_PRESET"


def top_verilog(config: AccelConfig) -> Path:
    """``build/sim/src/systole_top-<preset>-<hash>.v``, converted only when ``hdl/`` changed."""
    from sim.runner import BUILD, REPO, write_verilog
    digest = hashlib.sha1(repr(config).encode())
    # hdl/spec/ is part of the design too (the register map, the job rules, the DMA plan).
    for path in sorted([*(REPO / "hdl").glob("*.py"), *(REPO / "hdl" / "spec").glob("*.py")]):
        digest.update(str(path.relative_to(REPO)).encode() + path.read_bytes())
    path = BUILD / "sim" / "src" / f"systole_top-{config.name}-{digest.hexdigest()[:12]}.v"
    if not path.exists():
        from hdl.top import SystoleTop
        write_verilog(SystoleTop(config), "systole_top", path)
    return path


def top_build_args() -> tuple[str, ...]:
    """Simulator build options for the top.

    cocotb makes every signal of a Verilator model public, which keeps all of
    Amaranth's intermediate wires alive; for the 16x16 array that multiplies the
    C++ to compile. The testbenches only touch top-level ports, so only those are
    made public.
    """
    from sim.toolchain import find_simulator
    if find_simulator().name == "verilator":
        return ("--no-public-flat-rw", "--public-depth", "1")
    return ()


def on_presets(*names: str) -> list:
    """pytest parameters for the presets ``names``, each in the xdist group of its build,
    so one worker compiles a preset's top and runs everything on it."""
    import pytest
    return [pytest.param(name, marks=pytest.mark.xdist_group(f"top-{name}")) for name in names]


def run_top(test_module: str, preset_name: str, extra_env: dict[str, str] | None = None,
            tag: str = "") -> Path:
    """Run every cocotb test of ``test_module`` on the top of preset ``preset_name``.

    Returns the results file; fails (``AssertionError``) when no test ran or one failed.
    """
    from sim.runner import run_cocotb
    config = preset(preset_name)
    env = {PRESET_ENV: preset_name, **(extra_env or {})}
    return run_cocotb(sources=[top_verilog(config)], toplevel="systole_top",
                      test_module=test_module, extra_env=env,
                      tag=tag or preset_name, extra_args=top_build_args())
