"""Build generated Verilog and run cocotb test modules on it, from pytest.

One build directory per (design, simulator, traced or not) under ``build/sim/``; the
Verilator model is rebuilt only when the Verilog changes, so many pytest cases share
one compile. Test outcomes come from cocotb's results file: a run with zero tests or
any failure fails the calling pytest test.

Waveforms: with ``WAVES=1`` in the environment (read as cocotb reads it), every
simulation run through this module's runners records an FST (Verilator
``--trace-fst``, Icarus through cocotb's dump module) at
``build/waves/<pytest test or run>.fst`` and says where with a ``WavesWritten``
warning, which pytest lists in its summary.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

from cocotb_tools.runner import Icarus, Verilator, get_results

from .toolchain import ToolchainError, check_fst, find_simulator

__all__ = ["REPO", "BUILD", "WAVES_DIR", "WavesWritten", "waves_requested", "write_verilog",
           "build", "run_cocotb"]

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build"
WAVES_DIR = BUILD / "waves"
_TRUE = ("1", "yes", "y", "on", "true", "enable")


class WavesWritten(UserWarning):
    """A simulation recorded a waveform; the message is its path."""


def waves_requested() -> bool:
    """``$WAVES`` holds a true value (1, yes, on, true...), as cocotb's runner reads it."""
    return os.environ.get("WAVES", "").strip().lower() in _TRUE


def write_verilog(component, name: str, path: Path) -> Path:
    """Convert ``component`` to Verilog module ``name`` at ``path`` (only if changed)."""
    from hdl.to_verilog import convert
    text = convert(component, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


@contextmanager
def _locked(directory: Path):
    """Serialise builds of one directory across pytest-xdist workers."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(*, sources: list[Path], toplevel: str, extra_args: tuple[str, ...] = (),
          waves: bool = False, fast_ports: tuple[str, ...] | None = None):
    """Compile ``sources`` for the selected simulator (cached by content).

    ``extra_args`` go to the simulator's compiler (e.g. a DPI ``.cpp`` for Verilator).
    ``fast_ports`` (Verilator only) builds for speed instead of visibility: only those
    top-level ports are reachable from cocotb, with timing delays supported and the
    C++ optimised; see ``_FastVerilator``. ``waves`` (or ``$WAVES``) builds a model
    that can record an FST, in a directory of its own. Returns
    ``(runner, build_dir, simulator)``.
    """
    sim = find_simulator()
    if fast_ports is not None and sim.name != "verilator":
        raise ToolchainError(f"a speed build needs Verilator (DPI, --timing); SIM={sim.name} cannot")
    waves = waves or waves_requested()
    if waves:
        check_fst(sim)
    # The key covers every input file's content, extra files (a DPI .cpp) included.
    inputs = [*sources, *(arg for arg in extra_args if Path(arg).is_file())]
    digest = hashlib.sha1(b"".join(Path(s).read_bytes() for s in inputs)
                          + "\0".join(extra_args + tuple(fast_ports or ("",))).encode()).hexdigest()[:12]
    flavour = ("-fast" if fast_ports else "") + ("-waves" if waves else "")
    build_dir = BUILD / "sim" / f"{toplevel}-{sim.name}{flavour}-{digest}"
    args = list(sim.build_args) + list(extra_args)
    with _locked(build_dir):
        if fast_ports is None:
            runner = _Verilator() if sim.name == "verilator" else _Icarus()
            runner.build(sources=[str(s) for s in sources], hdl_toplevel=toplevel,
                         build_dir=build_dir, build_args=args, timescale=sim.timescale, waves=waves)
        else:
            runner = _FastVerilator()
            control = build_dir / "public_ports.vlt"
            control.write_text("`verilator_config\n" + "".join(
                f'public_flat_rw -module "{toplevel}" -var "{port}"\n' for port in fast_ports))
            args += [str(control), *_FAST_ARGS]
            with _environment(MAKEFLAGS=f"{os.environ.get('MAKEFLAGS', '')} {_FAST_MAKEFLAGS}"):
                runner.build(sources=[str(s) for s in sources], hdl_toplevel=toplevel,
                             build_dir=build_dir, build_args=args, timescale=("1ps", "1ps"),
                             waves=waves)
    return runner, build_dir, sim


# Speed build: --timing lets the model make its own clock (no VPI write per edge);
# the C++ is optimised; -fcoroutines because the wheel's verilated.mk omits it.
_FAST_ARGS = ("--timing", "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
              "-CFLAGS", "-fcoroutines")
_FAST_MAKEFLAGS = "OPT_FAST=-O2 OPT_SLOW=-O1 OPT_GLOBAL=-O2"


class _WavesUnderBuild:
    """Runner mix-in: the waveform of a run goes to ``build/waves/``, named after the
    pytest test (or the run directory), and the run says where."""

    def _waves_path(self) -> Path:
        # "sim/test_x.py::test_y[id] (call)" -> "test_y[id]", as cocotb names results.
        test = os.environ.get("PYTEST_CURRENT_TEST", "")
        name = test.rsplit("::", 1)[-1].split(" ", 1)[0] if test else self.test_dir.name
        return WAVES_DIR / (re.sub(r"[^\w.\[\]-]+", "_", name) + ".fst")

    def _waves_file(self) -> str | None:
        return str(self._waves_path())

    def _fresh_waves_path(self) -> Path:
        """The path, with no waveform of an earlier run left at it."""
        path = self._waves_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        return path

    def test(self, *args, **kwargs):
        try:
            return super().test(*args, **kwargs)
        finally:
            if getattr(self, "waves", False) and self._waves_path().exists():
                warnings.warn(WavesWritten(f"waveform: {self._waves_path()} "
                                           f"(open it with gtkwave or surfer)"), stacklevel=2)


class _Verilator(_WavesUnderBuild, Verilator):
    """cocotb's Verilator runner; a traced model records FST (``--trace-fst``)."""

    def _build_command(self):
        commands = super()._build_command()
        if self.waves:
            commands[0].append("--trace-fst")      # with cocotb's --trace: FST, not VCD
        return commands

    def _test_command(self):
        commands = super()._test_command()
        if self.waves:
            commands[0] += ["--trace-file", str(self._fresh_waves_path())]
        return commands


class _Icarus(_WavesUnderBuild, Icarus):
    """cocotb's Icarus runner; its FST dump goes to ``build/waves/``."""

    def _test_command(self):
        if self.waves:
            self.plusargs = [*self.plusargs, f"+dumpfile_path={self._fresh_waves_path()}"]
        return super()._test_command()


class _FastVerilator(_Verilator):
    """cocotb's Verilator runner without ``--public-flat-rw``.

    Making every signal public stops Verilator from optimising, and the logic behind
    each public signal counts as input-dependent, so it is re-evaluated at every
    time step. A control file makes only the named top-level ports public instead.
    """

    def _build_command(self):
        commands = super()._build_command()
        commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
        return commands


@contextmanager
def _environment(**values: str):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_cocotb(*, sources: list[Path], toplevel: str, test_module: str,
               extra_env: dict[str, str] | None = None, seed: int | None = None,
               waves: bool = False, tag: str = "", extra_args: tuple[str, ...] = ()) -> Path:
    """Build ``sources`` (cached) and run every cocotb test of ``test_module`` against
    ``toplevel``; ``waves`` or ``$WAVES`` records an FST. There is no list of tests to
    pick from: a test that is written runs (``COCOTB_TEST_FILTER`` narrows a run by hand).

    Returns the results file. Raises ``AssertionError`` when no test ran or any failed.
    """
    runner, build_dir, sim = build(sources=sources, toplevel=toplevel, extra_args=extra_args,
                                   waves=waves)
    # Each run gets its own directory so parallel runs never share a results file.
    name = f"{test_module.rsplit('.', 1)[-1]}{'-' + tag if tag else ''}-{os.getpid()}"
    test_dir = build_dir / "runs" / name
    test_dir.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.update(extra_env or {})
    results = runner.test(test_module=test_module, hdl_toplevel=toplevel,
                          build_dir=build_dir, test_dir=test_dir, extra_env=env,
                          seed=seed, waves=waves, timescale=sim.timescale)
    num_tests, num_failed = get_results(Path(results))
    assert num_tests > 0, f"cocotb ran no tests from {test_module}"
    assert num_failed == 0, f"{num_failed} of {num_tests} cocotb tests failed in {test_module}"
    return Path(results)
