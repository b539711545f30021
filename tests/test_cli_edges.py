"""Every entry point ends in one line and status 2 on a bad input, 1 and a traceback on a bug,
130 on Ctrl-C; what can be checked before work starts is checked before the model loads.

The generator CLIs are run in-process (``main(argv)`` returns the status); the Ctrl-C
case runs ``python -m host.llm.generate`` as a child process and sends it SIGINT for
real, mid-generation.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from host import cli
from host.errors import SystoleError, UsageError
from host.llm.generate import NonFiniteLogits, Runtime, generate, sample_next
from host.llm.generate import main as generate_main
from host.llm.model import load_model
from host.llm.quality import main as quality_main

from host_testmodels import write_gemma3_gguf
from test_host_transformer import make_gemma3

REPO = Path(__file__).resolve().parent.parent


def one_error_line(captured) -> str:
    """The single stderr line of a refused command (progress lines aside)."""
    lines = [line for line in captured.err.splitlines()
             if line.strip() and not line.startswith(("loading model", "note:", "dequantizing"))]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


# -- the boundary itself -------------------------------------------------------------
def test_the_boundary_maps_each_kind_of_ending_to_its_status(capsys):
    def raising(error):
        def main(argv):
            raise error
        return main

    assert cli.run(raising(UsageError("--x must be >= 1"))) == 2
    assert one_error_line(capsys.readouterr()) == "error: --x must be >= 1"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/cache/models/x.npy")
    assert cli.run(raising(full)) == 2
    line = one_error_line(capsys.readouterr())
    assert "/cache/models/x.npy" in line and "free some space" in line
    assert cli.run(raising(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    assert cli.run(raising(ZeroDivisionError("division by zero"))) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: this is a bug")
    assert cli.run(lambda argv: 0) == 0 and cli.run(lambda argv: 3) == 3


def test_systole_debug_keeps_the_traceback_of_a_one_line_error(capsys, monkeypatch):
    def main(argv):
        raise UsageError("--x must be >= 1")
    monkeypatch.setenv("SYSTOLE_DEBUG", "1")
    assert cli.run(main) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == "error: --x must be >= 1"


def test_every_option_type_refuses_nan_inf_and_out_of_range():
    import argparse
    for parse, bad in ((cli.finite_float, ["nan", "inf", "-inf", "x"]),
                       (cli.positive_float, ["0", "-1", "nan", "1e999"]),
                       (cli.unit_fraction, ["0", "1.5", "nan"]),
                       (cli.int_in(1, 10), ["0", "11", "1.5", "nan"])):
        for text in bad:
            with pytest.raises(argparse.ArgumentTypeError):
                parse(text)
    assert cli.int_in(1, 10)("0x4") == 4 and cli.unit_fraction("1") == 1.0


def test_out_dir_must_be_a_writable_folder(tmp_path):
    import argparse
    afile = tmp_path / "file"
    afile.write_text("x")
    for text in ("", "  ", str(afile), str(afile / "below")):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.out_dir(text)
    assert cli.out_dir(str(tmp_path / "new" / "deeper")) == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()        # checking writes nothing


# -- host.llm.generate ------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    model = make_gemma3(seed=5)
    model.config.max_position_embeddings = 4096    # room for a long generation to interrupt
    return write_gemma3_gguf(tmp_path_factory.mktemp("cli") / "tiny.gguf", model)


@pytest.fixture
def xdg(model_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(model_path.parent / "xdg"))


@pytest.mark.parametrize("options, says", [
    (["--prompt", ""], "empty"),
    (["--prompt", "caf\udce9"], "not valid UTF-8 text (byte 0xe9"),
    (["--prompt", "x", "--seed", "-1", "--temperature", "1"], "--seed"),
    (["--prompt", "x", "--temperature", "nan"], "--temperature"),
    (["--prompt", "x", "--temperature", "inf"], "--temperature"),
    (["--prompt", "x", "--top-p", "nan"], "--top-p"),
    (["--prompt", "x", "--top-k", "0"], "--top-k"),
    (["--prompt", "x", "--max-new-tokens", "-3"], "--max-new-tokens"),
    (["--prompt", "x", "--preset", "nosuch"], "--preset"),
    (["--prompt", "x", "--threads", "2", "--backend", "sim"], "--threads"),
])
def test_generate_refuses_before_the_model_loads(model_path, xdg, capsys, options, says):
    assert generate_main([*options, "--model", str(model_path)]) == 2
    captured = capsys.readouterr()
    assert says in one_error_line(captured)
    assert "loading model" not in captured.err and captured.out == ""


@pytest.mark.parametrize("options, says", [
    (["--prompt", "x", "--max-new-tokens", str(10**9)], "exceeds the context of 4096 tokens"),
    (["--prompt", "the cat " * 2100], "context holds 4096"),
    (["--prompt", "the cat " * 1000, "--max-new-tokens", "3000"], "use max_new_tokens <="),
])
def test_generate_refuses_what_does_not_fit_the_context_before_any_output(model_path, xdg, capsys,
                                                                          options, says):
    assert generate_main([*options, "--model", str(model_path)]) == 2
    captured = capsys.readouterr()
    assert says in one_error_line(captured) and captured.out == ""


def test_generate_names_a_missing_model_in_one_line(model_path, xdg, capsys):
    assert generate_main(["--prompt", "x", "--model", str(model_path.parent / "none.gguf")]) == 2
    assert "none.gguf: no such file" in one_error_line(capsys.readouterr())


def test_the_library_refuses_the_same_inputs(model_path):
    model = load_model(model_path, cache_dir=model_path.parent / "lib-cache", progress=False)
    runtime = Runtime(model, "float")
    for prompt, options in (("", {}), ("a\udcff", {}), ("a", {"max_new_tokens": 10**9}),
                            ("a", {"seed": -2, "temperature": 1.0}), ([10**6], {}),
                            ("a", {"temperature": float("inf")})):
        with pytest.raises(UsageError):
            generate(runtime, prompt, **options)


def test_sampling_never_makes_nan_probabilities():
    logits = np.array([1.0, 3.0, 2.0, 3.0 - 1e-3], np.float32)
    rng = np.random.default_rng(0)
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # inf - inf, 0/0 would raise
        picks = {sample_next(logits, temperature=1e-30, rng=rng) for _ in range(20)}
        assert picks == {1}
        assert sample_next(logits, temperature=1e-30, top_p=0.5, rng=rng) == 1
        assert sample_next(logits, temperature=1e30, top_k=2, rng=rng) in (1, 3)
    for bad in (np.nan, np.inf):
        damaged = logits.copy()
        damaged[2] = bad
        with pytest.raises(NonFiniteLogits):
            sample_next(damaged)
        with pytest.raises(NonFiniteLogits):
            sample_next(damaged, temperature=1.0, rng=rng)


def test_ctrl_c_prints_what_was_generated_and_exits_130(tmp_path):
    model = make_gemma3(seed=5)
    model.config.max_position_embeddings = 16384
    model_path = write_gemma3_gguf(tmp_path / "long.gguf", model)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "host.llm.generate", "--model", str(model_path), "--backend", "float",
               "--prompt", "Once upon", "--max-new-tokens", "16000"]
    # Greedy, this model writes " upon" forever (no EOS): 16000 tokens are 80 kB, more than the
    # pipe holds, so the child is still there (blocked on its full pipe if not generating)
    # when the signal comes, however late a loaded machine lets this process send it.

    def as_in_a_terminal():      # SIGINT as a shell gives it, whatever this test process inherited
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=as_in_a_terminal)
    try:
        out = b""
        deadline = time.monotonic() + 120
        while len(out) < len("Once upon") + 20 and time.monotonic() < deadline:
            out += os.read(child.stdout.fileno(), 64)     # the prompt, then streamed text
        assert len(out) >= len("Once upon") + 20, "the child produced no text"
        child.send_signal(signal.SIGINT)
        rest, err = child.communicate(timeout=60)
    finally:
        child.kill()
    err = err.decode()
    assert child.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    summary = [line for line in err.splitlines() if line.startswith("-- interrupted after")]
    assert len(summary) == 1, err
    produced = int(summary[0].split()[3])
    assert 0 < produced < 16000
    assert (out + rest).decode(errors="replace").startswith("Once upon")


# -- host.llm.quality --------------------------------------------------------------------
def test_quality_refuses_unreadable_texts_before_the_model_loads(model_path, xdg, tmp_path, capsys):
    binary, empty = tmp_path / "binary.txt", tmp_path / "empty.txt"
    binary.write_bytes(b"ok \xff\xfe text")
    empty.write_text("  \n")
    for path, says in ((binary, "not UTF-8 text (byte 0xff at offset 3)"), (empty, "empty"),
                       (tmp_path / "none.txt", "none.txt")):
        assert quality_main(["--model", str(model_path), "--text", str(path)]) == 2
        captured = capsys.readouterr()
        assert says in one_error_line(captured) and "quality of" not in captured.err


# -- gen.* -------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, says", [
    (["--clock-mhz", "nan"], "--clock-mhz"),
    (["--clock-mhz", "inf"], "--clock-mhz"),
    (["--clock-mhz", "0"], "--clock-mhz"),
    (["--clock-mhz", "5000"], "clock_mhz"),
    (["--rows", "0"], "--rows"),
    (["--bus-bits", "12"], "bus_bits"),
    (["--addr-width", "99"], "addr_width"),
])
def test_gen_verilog_refuses_bad_numbers_and_writes_nothing(tmp_path, capsys, argv, says):
    from gen.verilog import main
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    assert says in one_error_line(capsys.readouterr())
    assert not out.exists()


@pytest.mark.parametrize("out", ["", "FILE", "FILE/below"])
def test_gen_verilog_out_must_be_a_writable_folder(tmp_path, capsys, monkeypatch, out):
    from gen.verilog import main
    (tmp_path / "FILE").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert main(["--out", out]) == 2
    assert "--out" in one_error_line(capsys.readouterr())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]


@pytest.mark.parametrize("argv, says", [
    (["nexys_video", "--baud", "0"], "--baud"),
    (["nexys_video", "--baud", "-9600"], "--baud"),
    (["nexys_video", "--baud", "nan"], "--baud"),
    (["nexys_video", "--baud", "40000000"], "too fast"),
    (["nexys_video", "--baud", "15000000"], "off by"),
    (["ip", "--link", "--baud", "0"], "--baud"),
    (["kv260", "--udmabuf-mib", "-5"], "--udmabuf-mib"),
    (["kv260", "--udmabuf-mib", "0"], "--udmabuf-mib"),
    (["kv260", "--coherent-mib", "0"], "--coherent-mib"),
    (["kv260", "--coherent-mib", "4096"], "--coherent-mib"),
    (["kv260", "--clock-mhz", "nan"], "--clock-mhz"),
])
def test_gen_vivado_refuses_bad_numbers_and_writes_nothing(tmp_path, capsys, argv, says):
    from gen.vivado.__main__ import main
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    assert says in one_error_line(capsys.readouterr())
    assert not out.exists()


def test_the_vivado_library_refuses_a_udmabuf_size_dtc_would_choke_on():
    from gen.vivado import kv260
    from hdl.spec.config import preset
    for size in (-(256 << 20), 0, 1000, 2.5):
        with pytest.raises(ValueError, match="udmabuf_bytes"):
            kv260.files(preset("kv260"), size)


@pytest.mark.parametrize("module, argv, says", [
    ("gen.bench_dma", ["--min", "2"], "--min"),
    ("gen.bench_dma", ["--beats", "0"], "--beats"),
    ("gen.bench_dma", ["--latency", "0"], "--latency"),
    ("gen.perf_report", ["--out", ""], "--out"),
    ("gen.report", ["--preset", "nosuch"], "--preset"),
])
def test_the_bench_clis_refuse_bad_options_in_one_line(capsys, module, argv, says):
    import importlib
    assert importlib.import_module(module).main(argv) == 2
    assert says in one_error_line(capsys.readouterr())


def test_every_error_a_user_can_fix_is_a_systole_error():
    from host.accel.backend import BackendUnavailable
    from host.accel.driver import AcceleratorError
    from host.llm.model import ModelFileError
    from host.platforms.link import LinkError
    from host.platforms.sim import CosimError
    for error in (ModelFileError, BackendUnavailable, AcceleratorError, LinkError, CosimError,
                  UsageError, NonFiniteLogits):
        assert issubclass(error, SystoleError), error
