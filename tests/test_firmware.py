"""firmware/: the C driver and self-test build for the host and the KV260's A53; the C
packing and reference product agree bit for bit with host.accel.pack / host.accel.golden,
over one weight port and several; and the driver, run on a register file in RAM
(firmware/fake_device.h) for every preset, checks its capabilities and jobs as
hdl.spec.job does (the generated vectors), reads a failed job's error (and a read
fault's port) back and times out by the platform clock."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gen import job_vectors
from gen.regs import c_header
from hdl.spec.config import PRESETS, preset
from hdl.spec.job import FIELDS, Job, check
from hdl.spec.regmap import ErrorCode, by_name
from host.accel.golden import golden_matmul
from host.accel.pack import pack_weights

REPO = Path(__file__).resolve().parent.parent
CROSS = "aarch64-linux-gnu-"
EM_AARCH64 = 183

# One worker runs the whole module, so no build is relinked while another runs it.
pytestmark = pytest.mark.xdist_group("firmware")


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"`{tool}` is not installed; run `make deps` (installs the Debian packages)")


@pytest.fixture(scope="module")
def build_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("firmware")


def _status_codes() -> dict[str, int]:
    """``enum systole_status`` of firmware/systole.h: ``{"SYSTOLE_E_JOB": -5, ...}``."""
    text = (REPO / "firmware" / "systole.h").read_text()
    body = re.search(r"enum systole_status \{(.*?)\};", text, re.S).group(1)
    return {name: int(value) for name, value in re.findall(r"(SYSTOLE_\w+) = (-?\d+)", body)}


STATUS = _status_codes()


def _build(build_root: Path, preset_name: str, cross: str = "", target: str = "all") -> Path:
    """Write the preset's generated headers and build the firmware against them; the output dir."""
    _require(f"{cross}gcc")
    regs_dir = build_root / f"regs-{preset_name}"
    regs_dir.mkdir(parents=True, exist_ok=True)
    config = preset(preset_name)
    (regs_dir / "systole_regs.h").write_text(c_header(config))
    (regs_dir / "systole_job_vectors.h").write_text(job_vectors.c_header(config))
    out = build_root / f"{cross.rstrip('-') or 'host'}-{preset_name}"
    result = subprocess.run(
        ["make", "-s", "-C", str(REPO / "firmware"), f"REGS={regs_dir / 'systole_regs.h'}", f"OUT={out}",
         f"CROSS_COMPILE={cross}", target], capture_output=True, text=True)
    assert result.returncode == 0, f"firmware build failed:\n{result.stdout}\n{result.stderr}"
    return out


@pytest.fixture(scope="module")
def host_build(build_root):
    """``host_build(preset)``: the host build for a preset, built once per module."""
    built: dict[str, Path] = {}

    def get(preset_name: str) -> Path:
        if preset_name not in built:
            built[preset_name] = _build(build_root, preset_name)
        return built[preset_name]
    return get


@pytest.fixture(scope="module")
def host_kv260(host_build) -> Path:
    return host_build("kv260")


def _selftest(out: Path, *args) -> str:
    result = subprocess.run([str(out / "selftest"), *map(str, args)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"selftest {args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _report(text: str) -> tuple[dict[str, str], dict[str, int], dict[str, int]]:
    """A fake-device command's ``key value`` lines: (plain keys, ``job`` fields, ``reg`` words)."""
    plain, job, regs = {}, {}, {}
    for words in (line.split() for line in text.splitlines()):
        if words[0] == "job":
            job[words[1]] = int(words[2], 0)
        elif words[0] == "reg":
            regs[words[1]] = int(words[2], 0)
        else:
            plain[words[0]] = words[1]
    return plain, job, regs


def _assert_job_programmed(job: dict[str, int], regs: dict[str, int]) -> None:
    """The argument registers hold the job, word for word as hdl.spec.job lays it out."""
    assert list(job) == [f.name for f in FIELDS]
    expected = Job(**job).registers()
    assert {name: regs[name] for name in expected} == expected


def test_cross_compiles_for_aarch64(build_root):
    # The KV260 is the board with an A53; the Nexys Video's header is compiled by its
    # host build (the job-check vectors) and by the bare-metal cross build below.
    out = _build(build_root, "kv260", CROSS)
    elf = (out / "selftest").read_bytes()
    assert elf[:4] == b"\x7fELF" and elf[4] == 2, "not a 64-bit ELF"
    assert int.from_bytes(elf[18:20], "little") == EM_AARCH64, "selftest is not an AArch64 binary"
    assert (out / "libsystole.a").stat().st_size > 0


def test_bare_metal_configuration_compiles(build_root):
    # Without __linux__ the mmap/sysfs helpers drop out and selftest.c exports only
    # systole_selftest(); both must still compile cleanly under -Werror.
    out = _build(build_root, "nexys_video", CROSS, target="baremetal")
    symbols = subprocess.run(["nm", str(out / "baremetal" / "selftest.o")], capture_output=True, text=True).stdout
    assert " T systole_selftest" in symbols and " T main" not in symbols
    symbols = subprocess.run(["nm", str(out / "baremetal" / "systole.o")], capture_output=True, text=True).stdout
    assert " T systole_run" in symbols and "systole_open_uio" not in symbols


def test_host_reference_self_check_passes(host_kv260):
    assert "300 of 300 random products correct" in _selftest(host_kv260, "reference", 7, 300)


@pytest.mark.parametrize("seed, m, n, k, cols, ports", [
    (1, 1, 1, 1, 16, 1), (2, 3, 17, 33, 16, 1), (3, 5, 40, 130, 8, 1),   # seed 3: only -128/127
    (4, 9, 64, 640, 16, 1), (7, 2, 5, 4096, 4, 1), (11, 16, 33, 77, 32, 1),
    (1, 1, 1, 1, 64, 4), (2, 3, 17, 33, 16, 2), (3, 5, 40, 130, 8, 4),   # several weight ports
    (5, 9, 129, 70, 64, 4), (6, 4, 7, 300, 4, 4), (8, 2, 100, 65, 32, 2),
])
def test_c_packing_and_reference_match_python(host_kv260, tmp_path, seed, m, n, k, cols, ports):
    stdout = _selftest(host_kv260, "dump", tmp_path, seed, m, n, k, cols, ports)
    a = np.fromfile(tmp_path / "a.bin", dtype=np.int8).reshape(m, k)
    w = np.fromfile(tmp_path / "w.bin", dtype=np.int8).reshape(n, k)
    packed_c = np.fromfile(tmp_path / "packed.bin", dtype=np.int8)
    c_c = np.fromfile(tmp_path / "c.bin", dtype=np.int32).reshape(m, n)
    packed = pack_weights(w, cols, ports)
    np.testing.assert_array_equal(packed_c, packed.data)
    # systole_stream_bytes is the distance between the streams: the job's W_STRIDE.
    assert stdout.split() == ["stream_bytes", str(packed.stream_bytes)]
    np.testing.assert_array_equal(c_c, golden_matmul(a, packed))
    if seed % 4 == 3:
        assert set(np.unique(a)) <= {-128, 127} and set(np.unique(w)) <= {-128, 127}


def test_error_names_cover_every_error_code(host_kv260):
    for code in ErrorCode:
        assert _selftest(host_kv260, "errname", int(code)).strip() == code.name
    assert _selftest(host_kv260, "errname", 0xEE).strip() == "UNKNOWN"


@pytest.mark.parametrize("preset_name", list(PRESETS))
def test_init_checks_identity_version_and_capabilities(host_build, preset_name):
    config = preset(preset_name)
    lines = dict(line.split(" ", 1) for line in _selftest(host_build(preset_name), "fakeinit").splitlines())
    status = {name: int(rest.split()[0]) for name, rest in lines.items()}
    # 0 = ok, -1 = bad ID, -2 = major version, -3 = capabilities (firmware/systole.h)
    assert status == {"good": 0, "id": -1, "version": -2, "minor": 0, "array": -3, "bus": -3, "max_k": -3,
                      "ports": -3}
    fields = dict(item.split("=") for item in lines["good"].split()[1:])
    assert int(fields["rows"]) == config.rows and int(fields["cols"]) == config.cols
    assert int(fields["bus_bytes"]) == config.bus_bytes and int(fields["addr_width"]) == config.addr_width
    assert int(fields["max_burst"]) == config.max_burst and int(fields["max_k"]) == config.max_k
    assert int(fields["ports"]) == config.weight_ports
    # init leaves the engine soft-reset: CTRL was written with only soft_reset set.
    soft_reset = next(f for f in by_name("CTRL").fields if f.name == "soft_reset")
    assert int(fields["ctrl"], 16) == soft_reset.mask


@pytest.mark.parametrize("preset_name", list(PRESETS))
def test_check_job_follows_the_job_rules(host_build, preset_name):
    config = preset(preset_name)
    vectors = job_vectors.vectors(config)
    # Every code but those only a running engine reports.
    runtime = {ErrorCode.START_BUSY, ErrorCode.DMA_READ, ErrorCode.DMA_WRITE, ErrorCode.ABORTED}
    assert {code for _, code, _ in vectors} == set(ErrorCode) - runtime
    result = subprocess.run([str(host_build(preset_name) / "selftest"), "checkjobs"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"systole_check_job disagrees with hdl.spec.job:\n{result.stdout}{result.stderr}"
    assert f"checkjobs: {len(vectors)} of {len(vectors)} vectors agree" in result.stdout


@pytest.mark.parametrize("preset_name", ["kv260", "nexys_video"])
def test_check_vectors_decide_on_the_w_stride_rules(preset_name):
    """The vectors systole_check_job must reproduce (test above) reach every W_STRIDE rule:
    with several weight ports ALIGN at W_STRIDE, after C_STRIDE's and before STRIDE, and the
    last stream's end deciding ADDR_RANGE, also with (P-1)*W_STRIDE above 2^32; with one
    port a misaligned W_STRIDE is accepted."""
    config = preset(preset_name)
    bb, ports = config.bus_bytes, config.weight_ports
    vectors = job_vectors.vectors(config)
    misaligned = [(job, code, addr) for job, code, addr in vectors if job.w_stride % bb]
    if ports == 1:
        assert any(code == ErrorCode.OK for _, code, _ in misaligned)
        assert not any(code == ErrorCode.ALIGN and addr == job.w_stride for job, code, addr in misaligned)
        return
    assert any(code == ErrorCode.ALIGN and addr == job.w_stride for job, code, addr in misaligned)
    assert any(job.c_stride % bb and (code, addr) == (ErrorCode.ALIGN, job.c_stride) for job, code, addr in misaligned)
    assert any(job.a_stride < job.k and (code, addr) == (ErrorCode.ALIGN, job.w_stride)
               for job, code, addr in misaligned)
    # Refused for the last stream alone: the first one, at W_ADDR, fits.
    by_stride = [(job, code) for job, code, addr in vectors if (code, addr) == (ErrorCode.ADDR_RANGE, job.w_addr)
                 and check(config, Job(**{**job.__dict__, "w_stride": 0}))[0] == ErrorCode.OK]
    assert by_stride and any((ports - 1) * job.w_stride >= 1 << 32 for job, _ in by_stride)
    assert any(code == ErrorCode.OK and (ports - 1) * job.w_stride >= 1 << 32 for job, code, _ in vectors)


@pytest.mark.parametrize("preset_name, code, addr, port", [
    ("kv260", ErrorCode.DMA_READ, 0x8_1234_5670, 3), ("kv260", ErrorCode.DMA_READ, 0x1_0000_0000, 0),
    ("nexys_video", ErrorCode.DMA_READ, 0x8000_0000, 0), ("kv260", ErrorCode.DMA_WRITE, 0xFFFF_FFF0, 0),
    ("kv260", ErrorCode.ABORTED, 0, 0), ("kv260", ErrorCode.OK, 0, 0), ("small", ErrorCode.OK, 0, 0)])
def test_wait_reads_back_the_job_error(host_build, preset_name, code, addr, port):
    plain, job, regs = _report(_selftest(host_build(preset_name), "fakewait", int(code), addr, port))
    assert int(plain["status"]) == STATUS["SYSTOLE_E_JOB" if code else "SYSTOLE_OK"]
    assert (int(plain["err_code"]), plain["err_name"], int(plain["err_addr"], 0)) == (code, code.name, addr)
    assert int(plain["err_port"]) == port
    # The wait ends at the poll that sees ap_done, not later.
    assert plain["clock_calls"] == plain["finish_after"]
    _assert_job_programmed(job, regs)
    # The legal job (edge_jobs' good one) has streams W_STRIDE apart exactly with several ports.
    assert (regs["W_STRIDE"] != 0) == (preset(preset_name).weight_ports > 1)


@pytest.mark.parametrize("timeout_us, step_us", [(1000, 7), (1000, 10), (0, 1), (5_000_000, 120_000)])
def test_wait_times_out_by_the_platform_clock(host_kv260, timeout_us, step_us):
    plain, job, regs = _report(_selftest(host_kv260, "faketimeout", timeout_us, step_us))
    assert int(plain["status"]) == STATUS["SYSTOLE_E_TIMEOUT"]
    waited = int(plain["waited_us"])
    assert timeout_us <= waited <= timeout_us + step_us, f"gave up after {waited} us of a {timeout_us} us timeout"
    # The last CTRL write is the soft reset alone (no ap_start left behind).
    assert regs["CTRL"] == by_name("CTRL").field("soft_reset").mask
    _assert_job_programmed(job, regs)
