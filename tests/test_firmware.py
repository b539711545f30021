"""firmware/: the C driver and self-test build for the host and the KV260's A53; the C
packing and reference product agree bit for bit with host.accel.pack / host.accel.golden,
in both weight formats (int8, int4) and over one weight port and several; and the
driver, run on a register file in RAM (firmware/fake_device.h) for every preset, checks
its capabilities (CAP_FORMATS among them) and jobs as hdl.spec.job does (the generated
vectors), refuses a weight format the bitstream does not run before writing a register,
reads a failed job's error (and a read fault's port) back and times out by the platform
clock."""

from __future__ import annotations

import mmap
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gen import job_vectors
from gen.regs import c_header
from hdl.spec.config import PRESETS, preset
from hdl.spec.formats import GROUP, Q_MAX, Q_MIN, S_MAX, WeightFormat
from hdl.spec.job import FIELDS, Job, check
from hdl.spec.regmap import REGISTERS, ErrorCode, by_name, const_value
from host.accel.golden import golden_job, golden_matmul
from host.accel.pack import Int4Weights, pack_int4, pack_weights
from host.platforms.sim import OPS, REPLY, REQUEST, STATUS_ERROR, STATUS_OK

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


def _build(build_root: Path, preset_name: str, cross: str = "", target: str = "all", remote: bool = False) -> Path:
    """Write the preset's generated headers and build the firmware against them (``remote``:
    registers through firmware/remote_bus.c); the output dir."""
    _require(f"{cross}gcc")
    regs_dir = build_root / f"regs-{preset_name}"
    regs_dir.mkdir(parents=True, exist_ok=True)
    config = preset(preset_name)
    (regs_dir / "systole_regs.h").write_text(c_header(config))
    (regs_dir / "systole_job_vectors.h").write_text(job_vectors.c_header(config))
    out = build_root / f"{cross.rstrip('-') or 'host'}{'-remote' if remote else ''}-{preset_name}"
    result = subprocess.run(
        ["make", "-s", "-C", str(REPO / "firmware"), f"REGS={regs_dir / 'systole_regs.h'}", f"OUT={out}",
         f"CROSS_COMPILE={cross}", *(["REMOTE=1"] if remote else []), target], capture_output=True, text=True)
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
    """A fake-device command's ``key value`` lines (a plain value may hold spaces): (plain
    keys, ``job`` fields, ``reg`` words)."""
    plain, job, regs = {}, {}, {}
    for words in (line.split() for line in text.splitlines()):
        if words[0] == "job":
            job[words[1]] = int(words[2], 0)
        elif words[0] == "reg":
            regs[words[1]] = int(words[2], 0)
        else:
            plain[words[0]] = " ".join(words[1:])
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
    out = _selftest(host_kv260, "reference", 7, 300)
    assert "300 of 300 random products correct" in out
    # Both formats had their share, the int4 products checked against a plain sum a * q * s.
    counts = dict(re.findall(r"(int8|int4) (\d+)", out))
    assert int(counts["int8"]) >= 100 and int(counts["int4"]) >= 100, out


SHAPES = [
    (1, 1, 1, 1, 16, 1), (2, 3, 17, 33, 16, 1), (3, 5, 40, 130, 8, 1),   # seed 3: only extremes
    (4, 9, 64, 640, 16, 1), (7, 2, 5, 4096, 4, 1), (11, 16, 33, 77, 32, 1),
    (1, 1, 1, 1, 64, 4), (2, 3, 17, 33, 16, 2), (3, 5, 40, 130, 8, 4),   # several weight ports
    (5, 9, 129, 70, 64, 4), (6, 4, 7, 300, 4, 4), (8, 2, 100, 65, 32, 2),
]
# int4's tile has a scale beat per 64 steps and a pair beat per 2: K on each side of both.
INT4_SHAPES = [(9, 2, 9, 2, 8, 1), (10, 3, 5, 63, 8, 2), (12, 2, 17, 64, 16, 4), (13, 1, 3, 65, 4, 1),
               (15, 4, 70, 127, 32, 2), (19, 3, 8, 128, 8, 1), (23, 2, 11, 129, 16, 2)]


@pytest.mark.parametrize("fmt, seed, m, n, k, cols, ports",
                         [(WeightFormat.INT8, *shape) for shape in SHAPES]
                         + [(WeightFormat.INT4, *shape) for shape in SHAPES + INT4_SHAPES],
                         ids=lambda value: value.name.lower() if isinstance(value, WeightFormat) else None)
def test_c_packing_and_reference_match_python(host_kv260, tmp_path, fmt, seed, m, n, k, cols, ports):
    stdout = _selftest(host_kv260, "dump", tmp_path, seed, m, n, k, cols, ports, int(fmt))
    a = np.fromfile(tmp_path / "a.bin", dtype=np.int8).reshape(m, k)
    packed_c = np.fromfile(tmp_path / "packed.bin", dtype=np.int8)
    c_c = np.fromfile(tmp_path / "c.bin", dtype=np.int32).reshape(m, n)
    if fmt is WeightFormat.INT8:
        w = np.fromfile(tmp_path / "w.bin", dtype=np.int8).reshape(n, k)
        packed = pack_weights(w, cols, ports)
        extremes = {"w": (w, {-128, 127})}
    else:
        assert not (tmp_path / "w.bin").exists()
        q = np.fromfile(tmp_path / "q.bin", dtype=np.int8).reshape(n, k)
        s = np.fromfile(tmp_path / "s.bin", dtype=np.uint8).reshape(n, -(-k // GROUP))
        packed = pack_int4(Int4Weights(q, s), cols, ports)   # Int4Weights checks the ranges
        extremes = {"q": (q, {Q_MIN, Q_MAX}), "s": (s, {0, S_MAX})}
    np.testing.assert_array_equal(packed_c, packed.data)
    # systole_stream_bytes is the distance between the streams: the job's W_STRIDE.
    assert stdout.split() == ["stream_bytes", str(packed.stream_bytes)]
    np.testing.assert_array_equal(c_c, golden_matmul(a, packed))
    if seed % 4 == 3:
        assert set(np.unique(a)) <= {-128, 127}
        for name, (values, ends) in extremes.items():
            assert set(np.unique(values).tolist()) <= ends, name
            # Both ends are there whenever there are enough values to hold them.
            assert values.size < 8 or set(np.unique(values).tolist()) == ends, name


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
                      "ports": -3, "coherent_io": -3, "formats": -3}
    fields = dict(item.split("=") for item in lines["good"].split()[1:])
    assert int(fields["rows"]) == config.rows and int(fields["cols"]) == config.cols
    assert int(fields["bus_bytes"]) == config.bus_bytes and int(fields["addr_width"]) == config.addr_width
    assert int(fields["max_burst"]) == config.max_burst and int(fields["max_k"]) == config.max_k
    assert int(fields["ports"]) == config.weight_ports
    assert int(fields["coherent_io"]) == int(config.coherent_io)
    assert int(fields["formats"], 16) == config.format_mask
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


@pytest.mark.parametrize("preset_name", list(PRESETS))
def test_check_vectors_decide_on_the_format_rule(preset_name):
    """The vectors systole_check_job must reproduce reach the FORMAT rule in its place and
    the int4 W extent: every format the build lacks is refused with FORMAT (ERR_ADDR 0)
    on the legal job, after the K rules and before ALIGN; with int4, W ending exactly at
    the top is accepted for K around the pair and block boundaries while its int8 twin
    is not, and one beat further is refused at W_ADDR."""
    config = preset(preset_name)
    vectors = job_vectors.vectors(config)
    good = vectors[0][0]
    result = {job: (code, addr) for job, code, addr in vectors}
    for job, code, addr in vectors:
        if code == ErrorCode.FORMAT:
            assert addr == 0 and job.w_format not in config.weight_formats, job
    lacking = [f for f in (*WeightFormat, len(WeightFormat), 0xFF, 1 << 31) if f not in config.weight_formats]
    for fmt in lacking:
        assert result.get(Job(**{**good.__dict__, "w_format": fmt})) == (ErrorCode.FORMAT, 0), fmt
    assert any(code == ErrorCode.FORMAT and job.a_addr % config.bus_bytes for job, code, _ in vectors)
    assert any(code == ErrorCode.K_RANGE and job.w_format not in config.weight_formats for job, code, _ in vectors)
    int4 = job_vectors.int4_jobs(config, good)
    assert all(job in result for job in int4)
    if WeightFormat.INT4 not in config.weight_formats:
        assert {result[job][0] for job in int4} == {ErrorCode.FORMAT}
        return
    at_top, past_top = int4[0::2], int4[1::2]
    assert all(result[job] == (ErrorCode.OK, 0) for job in at_top)
    assert all(result[job] == (ErrorCode.ADDR_RANGE, job.w_addr) for job in past_top)
    twins = [check(config, Job(**{**job.__dict__, "w_format": WeightFormat.INT8})) for job in at_top]
    assert sum(code == ErrorCode.ADDR_RANGE for code, _ in twins) >= len(at_top) - 3
    assert {job.k for job in at_top} >= {k for k in (63, 64, 65, 127, 128, 129, config.max_k) if k <= config.max_k}


@pytest.mark.parametrize("preset_name", ["kv260", "small"])
@pytest.mark.parametrize("w_format", [*WeightFormat, len(WeightFormat), 0xFF, 1 << 31])
def test_driver_refuses_a_format_the_bitstream_lacks(host_build, preset_name, w_format):
    """systole_run of the legal job in each format: one CAP_FORMATS lists runs, with
    W_FORMAT programmed; any other is refused with SYSTOLE_E_FORMAT and ERR FORMAT at 0
    before a single register is written, and says why."""
    config = preset(preset_name)
    plain, job, regs = _report(_selftest(host_build(preset_name), "fakeformat", int(w_format)))
    supported = w_format in config.weight_formats
    assert int(plain["supported"]) == supported
    assert plain["format_name"] == (WeightFormat(w_format).name.lower() if w_format < len(WeightFormat)
                                    else "unknown")
    assert job["w_format"] == w_format
    if supported:
        assert int(plain["status"]) == STATUS["SYSTOLE_OK"]
        _assert_job_programmed(job, regs)
        return
    assert int(plain["status"]) == STATUS["SYSTOLE_E_FORMAT"]
    assert (int(plain["err_code"]), plain["err_name"], int(plain["err_addr"], 0)) == (ErrorCode.FORMAT, "FORMAT", 0)
    assert int(plain["written"]) == 0 and regs["W_FORMAT"] == 0
    assert "CAP_FORMATS" in plain["strerror"]


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


class GoldenDevice:
    """The accelerator's registers over a DDR file, its engine the rules and the golden
    model: ap_start refuses the job as ``hdl.spec.job.check`` does, else writes
    ``golden_matmul`` of the packed weights, in the job's W_FORMAT, at C; done at once.
    It answers firmware/remote_bus.c's requests, so the unchanged self-test (a REMOTE=1
    build) runs on it, every format CAP_FORMATS lists, without an RTL simulation."""

    BASE = 0x4000_0000        # the DDR file's device address (u-dma-buf's phys_addr)
    MEMORY_BYTES = 4 << 20

    def __init__(self, config, root: Path):
        self.config = config
        self.regs = {reg.offset: const_value(reg, config) if reg.kind == "const" else 0 for reg in REGISTERS}
        self.ctrl = by_name("CTRL")
        self.regs[self.ctrl.offset] = self.ctrl.field("ap_idle").mask
        self.cycles = 0
        self.formats_run: list[int] = []
        sysfs = root / "sys" / "class" / "u-dma-buf" / "udmabuf0"
        sysfs.mkdir(parents=True)
        (sysfs / "phys_addr").write_text(f"{self.BASE:#x}\n")
        (sysfs / "size").write_text(f"{self.MEMORY_BYTES}\n")
        (root / "dev").mkdir()
        (root / "dev" / "udmabuf0").write_bytes(bytes(self.MEMORY_BYTES))
        (root / "dev" / "uio0").write_bytes(bytes(4096))
        self.root = root
        self._file = open(root / "dev" / "udmabuf0", "r+b")
        self.memory = np.frombuffer(mmap.mmap(self._file.fileno(), self.MEMORY_BYTES), dtype=np.uint8)

    def _job(self) -> Job:
        values = {f.name: sum(self.regs[by_name(r).offset] << 32 * i for i, r in enumerate(f.registers))
                  for f in FIELDS}
        return Job(**values)

    def _run(self) -> None:
        job = self._job()
        code, address = golden_job(self.config, job, self.memory, self.BASE)
        self.regs[by_name("ERR_CODE").offset] = code
        self.regs[by_name("ERR_ADDR_LO").offset] = address & 0xFFFF_FFFF
        self.regs[by_name("ERR_ADDR_HI").offset] = address >> 32
        if code == ErrorCode.OK:
            self.formats_run.append(job.w_format)
        done = self.ctrl.field("ap_done").mask | self.ctrl.field("ap_idle").mask | self.ctrl.field("ap_ready").mask
        self.regs[self.ctrl.offset] = done

    def request(self, op: str, a: int, b: int) -> int:
        if op == "READ32":
            value = self.regs.get(a, 0)
            if a in (by_name("CYCLES_LO").offset, by_name("CYCLES_HI").offset):
                value = self.cycles >> (32 if a == by_name("CYCLES_HI").offset else 0) & 0xFFFF_FFFF
            if a == self.ctrl.offset:     # ap_done is clear-on-read
                self.regs[a] &= ~self.ctrl.field("ap_done").mask
            return value
        if op == "WRITE32":
            if a == self.ctrl.offset:
                if b & self.ctrl.field("soft_reset").mask:
                    self.regs[a] = self.ctrl.field("ap_idle").mask
                elif b & self.ctrl.field("ap_start").mask:
                    self._run()
            elif by_name("W_FORMAT").offset >= a >= by_name("A_ADDR_LO").offset:
                self.regs[a] = b
            return 0
        self.cycles += a if op == "WAIT_IRQ" else 1
        return self.cycles if op == "NOW" else 0

    def run(self, selftest: Path, *args) -> tuple[int, str, str]:
        """``selftest ARGS`` with its registers answered here: (exit status, stdout, stderr)."""
        ours, theirs = socket.socketpair()
        env = {**os.environ, "SYSTOLE_REMOTE_FD": str(theirs.fileno()), "SYSTOLE_REMOTE_ROOT": str(self.root),
               "SYSTOLE_REMOTE_CLOCK_MHZ": repr(self.config.clock_mhz)}
        with open(self.root / "stdout", "w+") as out, open(self.root / "stderr", "w+") as err:
            process = subprocess.Popen([str(selftest), *map(str, args)], env=env, stdout=out, stderr=err,
                                       pass_fds=(theirs.fileno(),))
            theirs.close()
            ours.settimeout(60)
            try:
                while len(request := ours.recv(REQUEST.size, socket.MSG_WAITALL)) == REQUEST.size:
                    op, a, b = REQUEST.unpack(request)
                    known = op < len(OPS) and OPS[op] in ("READ32", "WRITE32", "WAIT_IRQ", "NOW")
                    reply = (STATUS_OK, self.request(OPS[op], a, b)) if known else (STATUS_ERROR, 0)
                    ours.sendall(REPLY.pack(*reply))
                status = process.wait(timeout=60)
            finally:
                ours.close()
                if process.poll() is None:
                    process.kill()
                    process.wait()
            out.seek(0)
            err.seek(0)
            return status, out.read(), err.read()


@pytest.mark.parametrize("preset_name", ["kv260", "tiny", "small"])
def test_selftest_runs_every_format_the_device_lists(build_root, tmp_path, preset_name):
    """``selftest run`` on GoldenDevice: the jobs take turns over the formats CAP_FORMATS
    lists (int8 alone on small), W_FORMAT carries each, and every product the C reference
    expects is the golden model's of the bytes the C packing left in the DDR."""
    config = preset(preset_name)
    device = GoldenDevice(config, tmp_path)
    selftest = _build(build_root, preset_name, remote=True) / "selftest"
    status, stdout, stderr = device.run(selftest, "run", tmp_path / "dev" / "uio0", "udmabuf0", 5, 8)
    assert status == 0, stdout + stderr
    assert "selftest: 0 of 8 jobs failed" in stdout
    printed = re.findall(r"^job \d+ m=\d+ n=\d+ k=\d+: ok, .* format (\w+)$", stdout, re.M)
    assert [WeightFormat[name.upper()] for name in printed] == device.formats_run
    assert set(device.formats_run) == set(config.weight_formats), stdout


@pytest.mark.parametrize("preset_name", ["kv260", "small"])
def test_refusals_name_the_format_on_a_device_without_it(build_root, tmp_path, preset_name):
    """``selftest refuse`` on GoldenDevice: each refusal line carries the job's w_format
    (hdl.spec.job.check on the printed fields gives the printed code), and a device
    without int4 reports int4 jobs refused with FORMAT by driver and device alike."""
    config = preset(preset_name)
    device = GoldenDevice(config, tmp_path)
    selftest = _build(build_root, preset_name, remote=True) / "selftest"
    status, stdout, stderr = device.run(selftest, "refuse", tmp_path / "dev" / "uio0", "udmabuf0")
    assert status == 0, stdout + stderr
    lines = re.findall(r"^refusal \d+ (.*): precheck (\w+) (0x[0-9a-f]+) hw (\w+) (0x[0-9a-f]+) beats 0 0 ok$",
                       stdout, re.M)
    expected = [code for _, code, _ in job_vectors.vectors(config) if code != ErrorCode.OK]
    assert len(lines) == len(expected), stdout
    for fields, pre_code, pre_addr, hw_code, hw_addr in lines:
        job = Job(**{name: int(value, 0) for name, value in re.findall(r"(\w+) (0x[0-9a-f]+|\d+)", fields)})
        code, address = check(config, job)
        assert (pre_code, int(pre_addr, 16)) == (hw_code, int(hw_addr, 16)) == (code.name, address), fields
    lacking = [f for f in WeightFormat if f not in config.weight_formats]
    reports = re.findall(r"^refuse: format (\w+), not in CAP_FORMATS 0x[0-9a-f]+: (\d+) job\(s\) refused with "
                         r"FORMAT$", stdout, re.M)
    assert [name for name, _ in reports] == [f.name.lower() for f in lacking]
    assert all(int(count) > 0 for _, count in reports)
