"""The board's first run, rehearsed: the C self-test against the co-simulated RTL.

``firmware/`` built with ``REMOTE=1`` (``SYSTOLE_REMOTE_BUS``) sends each register
access of the unchanged driver and self-test to ``firmware/remote_bus.c``, which
speaks ``host.platforms.sim``'s request protocol on a socket. ``Relay`` passes those
requests into a ``CosimSession`` as they are: the session keeps its one implementation
of starting, timing out and logging the simulator, and the C side needs no socket
setup of its own. The simulated DDR file is the self-test's u-dma-buf: a directory laid
out as ``/sys/class/u-dma-buf`` and ``/dev`` would be (``fake_board``), whose
``dev/udmabuf0`` opens the session's ``memory_fd``, so ``systole_udmabuf_open`` and the
KV260 platform's ``UdmabufMemory`` run down to their ``mmap`` line.

Outcomes are judged independently: products by ``host.accel.golden`` on the bytes the
RTL left in memory, refusals by ``hdl.spec.job.check``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gen import job_vectors
from gen.regs import c_header
from hdl.spec.config import preset
from hdl.spec.job import Job, check
from hdl.spec.regmap import ErrorCode, by_name
from host.accel.golden import golden_matmul
from host.accel.pack import PackedWeights, packed_size
from host.platforms.sim import OPS, REPLY, REQUEST, STATUS_ERROR, STATUS_OK

REPO = Path(__file__).resolve().parent.parent
CONFIG = preset("small")
MEMORY_BYTES = 4 << 20
# The C side never closes the session or changes the memory: those stay the test's.
RELAYED_OPS = ("READ32", "WRITE32", "WAIT_IRQ", "NOW")
pytestmark = pytest.mark.xdist_group("cosim-small")


@pytest.fixture(scope="module")
def selftest(tmp_path_factory) -> Path:
    """The REMOTE=1 self-test binary for CONFIG."""
    root = tmp_path_factory.mktemp("firmware-remote")
    (root / "systole_regs.h").write_text(c_header(CONFIG))
    (root / "systole_job_vectors.h").write_text(job_vectors.c_header(CONFIG))
    result = subprocess.run(["make", "-s", "-C", str(REPO / "firmware"), f"REGS={root / 'systole_regs.h'}",
                             f"OUT={root / 'out'}", "REMOTE=1", "all"], capture_output=True, text=True)
    assert result.returncode == 0, f"firmware build failed:\n{result.stdout}\n{result.stderr}"
    return root / "out" / "selftest"


@pytest.fixture(scope="module")
def session():
    from host.platforms.sim import CosimSession
    with CosimSession(CONFIG, memory_bytes=MEMORY_BYTES) as running:
        yield running


@pytest.fixture(scope="module")
def fake_board(session, tmp_path_factory) -> Path:
    """``ROOT/sys/class/u-dma-buf/udmabuf0`` and ``ROOT/dev/udmabuf0`` over the session's
    DDR (through /proc/self/fd, so it works in any process that holds ``memory_fd``), and
    ``ROOT/dev/uio0``, a plain page: the remote build maps it but reaches the registers
    through the transport."""
    root = tmp_path_factory.mktemp("board")
    sysfs = root / "sys" / "class" / "u-dma-buf" / "udmabuf0"
    sysfs.mkdir(parents=True)
    (sysfs / "phys_addr").write_text(f"{session.memory.device_address:#x}\n")
    (sysfs / "size").write_text(f"{MEMORY_BYTES}\n")
    (root / "dev").mkdir()
    (root / "dev" / "udmabuf0").symlink_to(f"/proc/self/fd/{session.memory_fd}")
    (root / "dev" / "uio0").write_bytes(bytes(4096))
    return root


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def run_selftest(session, selftest: Path, root: Path, *args: str, timeout_s: float = 90.0):
    """Run ``selftest ARGS`` with its register requests relayed into ``session``;
    ``(exit status, stdout, stderr)``."""
    ours, theirs = socket.socketpair()
    env = {**os.environ, "SYSTOLE_REMOTE_FD": str(theirs.fileno()), "SYSTOLE_REMOTE_ROOT": str(root),
           "SYSTOLE_REMOTE_CLOCK_MHZ": repr(CONFIG.clock_mhz)}
    # Output goes to files: a full pipe would stop the child while we wait on its socket.
    with open(root / "stdout", "w+") as out, open(root / "stderr", "w+") as err:
        process = subprocess.Popen([str(selftest), *args], env=env, stdout=out, stderr=err,
                                   pass_fds=(theirs.fileno(), session.memory_fd))
        theirs.close()
        ours.settimeout(timeout_s)
        try:
            while (request := _recv_exact(ours, REQUEST.size)) is not None:
                op, a, b = REQUEST.unpack(request)
                if op < len(OPS) and OPS[op] in RELAYED_OPS:
                    ours.sendall(REPLY.pack(STATUS_OK, session.request(OPS[op], a, b)))
                else:
                    ours.sendall(REPLY.pack(STATUS_ERROR, 0))
            status = process.wait(timeout=timeout_s)
        finally:
            ours.close()
            if process.poll() is None:
                process.kill()
                process.wait()
        out.seek(0)
        err.seek(0)
        return status, out.read(), err.read()


def assert_last_job_matches_golden(session, stdout: str) -> None:
    """Recompute the last job of ``systole_selftest`` from the bytes it left in the DDR
    (its layout: A at 0, W (the port streams back to back) and C each on the next 4 KiB, a
    guard beat after each C row)."""
    m, n, k = map(int, re.findall(r"^job \d+ m=(\d+) n=(\d+) k=(\d+): ok", stdout, re.M)[-1])
    bb = CONFIG.bus_bytes
    a_stride, c_stride = -(-k // bb) * bb, -(-4 * n // bb) * bb + bb
    w_off = -(-(m * a_stride) // 4096) * 4096
    c_off = -(-(w_off + packed_size(n, k, CONFIG.cols)) // 4096) * 4096
    memory = session.memory
    a = memory.read(0, m * a_stride).view(np.int8).reshape(m, a_stride)[:, :k]
    packed = PackedWeights(memory.read(w_off, packed_size(n, k, CONFIG.cols)).view(np.int8), n, k, CONFIG.cols,
                           CONFIG.weight_ports)
    c = memory.read(c_off, m * c_stride).view(np.int32).reshape(m, c_stride // 4)[:, :n]
    np.testing.assert_array_equal(c, golden_matmul(np.ascontiguousarray(a), packed))


def test_remote_ops_follow_the_protocol():
    text = (REPO / "firmware" / "remote_bus.c").read_text()
    body = re.search(r"enum remote_op \{(.*?)\};", text, re.S).group(1)
    assert [name.strip().removeprefix("OP_") for name in body.split(",")] == list(RELAYED_OPS)
    assert list(OPS[:len(RELAYED_OPS)]) == list(RELAYED_OPS)


def test_selftest_run_on_the_rtl(session, selftest, fake_board):
    """``selftest run /dev/uio0 udmabuf0``, the board's first command, passes on the RTL,
    and the last product it left in memory is the golden one."""
    status, stdout, stderr = run_selftest(session, selftest, fake_board, "run", str(fake_board / "dev" / "uio0"),
                                          "udmabuf0", "7", "6")
    assert status == 0, stdout + stderr
    assert (f"systole: {CONFIG.rows}x{CONFIG.cols} array, {CONFIG.bus_bytes}-byte bus, "
            f"{CONFIG.weight_ports} weight port(s)") in stdout
    assert len(re.findall(r"^job \d+ .*: ok,", stdout, re.M)) == 6, stdout
    assert "selftest: 0 of 6 jobs failed" in stdout
    assert_last_job_matches_golden(session, stdout)


def test_refusals_agree_with_the_rtl_and_the_rules(session, selftest, fake_board):
    """Every refused vector: the C pre-check, the RTL's ERR_CODE/ERR_ADDR and
    hdl.spec.job.check give the same code and address, and no DMA beat moves."""
    status, stdout, stderr = run_selftest(session, selftest, fake_board, "refuse",
                                          str(fake_board / "dev" / "uio0"), "udmabuf0")
    lines = re.findall(r"^refusal (\d+) (.*): precheck (\w+) (0x[0-9a-f]+) hw (\w+) (0x[0-9a-f]+) "
                       r"beats (\d+) (\d+) (ok|FAIL)$", stdout, re.M)
    expected = [i for i, (_, code, _) in enumerate(job_vectors.vectors(CONFIG)) if code != ErrorCode.OK]
    assert [int(line[0]) for line in lines] == expected, stdout
    for index, fields, pre_code, pre_addr, hw_code, hw_addr, read_beats, write_beats, _ in lines:
        values = dict(re.findall(r"(\w+) (0x[0-9a-f]+|\d+)", fields))
        job = Job(**{name: int(value, 0) for name, value in values.items()})
        code, address = check(CONFIG, job)
        assert (hw_code, int(hw_addr, 16)) == (code.name, address), (index, job)
        assert (pre_code, int(pre_addr, 16)) == (code.name, address), (index, job)
        assert (read_beats, write_beats) == ("0", "0"), (index, job)
    assert status == 0, stdout + stderr
    assert f"refuse: {len(expected)} of {len(expected)} refused jobs agree" in stdout
    # Every refusal code the rules have was exercised on the RTL.
    assert {name for _, _, _, _, name, *_ in lines} >= {
        c.name for c in job_vectors.refusal_codes(CONFIG, job_vectors.vectors(CONFIG)[0][0]) - {ErrorCode.OK}}


def test_timeout_soft_resets_and_recovers_on_the_rtl(session, selftest, fake_board):
    status, stdout, stderr = run_selftest(session, selftest, fake_board, "timeout",
                                          str(fake_board / "dev" / "uio0"), "udmabuf0")
    assert status == 0, stdout + stderr
    assert re.search(r"^timeout: .* job timed out \(engine soft-reset\); engine idle after it$", stdout, re.M), stdout
    ctrl = session.bus.read32(by_name("CTRL").offset)
    assert ctrl & 1 == 0, f"CTRL={ctrl:#x}: ap_start still set after the recovery jobs"
    assert_last_job_matches_golden(session, stdout)


def test_kv260_udmabuf_memory_on_the_rtl(session, fake_board):
    """host.platforms.kv260's UdmabufMemory, opened through its sysfs and /dev paths, is
    the memory of the host driver's jobs on the RTL; its cache syncs reach sysfs."""
    from host.accel.driver import Driver
    from host.accel.pack import pack_weights
    from host.platforms.kv260 import UdmabufMemory

    memory = UdmabufMemory("udmabuf0", dev=fake_board / "dev", sysfs=fake_board / "sys" / "class" / "u-dma-buf")
    assert (memory.device_address, memory.size) == (session.memory.device_address, MEMORY_BYTES)
    driver = Driver(session.bus, memory, CONFIG)
    rng = np.random.default_rng(13)
    a = rng.integers(-128, 128, (6, 70), dtype=np.int8)
    w = rng.integers(-128, 128, (21, 70), dtype=np.int8)
    np.testing.assert_array_equal(driver.matmul(a, driver.load_matrix(w)),
                                  golden_matmul(a, pack_weights(w, CONFIG.cols, CONFIG.weight_ports)))
    sysfs = fake_board / "sys" / "class" / "u-dma-buf" / "udmabuf0"
    assert (sysfs / "sync_mode").read_text() == "0\n"
    assert (sysfs / "sync_for_cpu").read_text() == "1\n"


class _RelayedWords:
    """Stands in for ``UioRegisters``' numpy view of its mapping: each word read or written
    is that register of the RTL (a file mapping cannot react to an access; a real UIO
    page does, so only the view is swapped, the lines above it run as on the board)."""

    def __init__(self, bus, size: int):
        self.bus, self.size = bus, size

    def __getitem__(self, index: int) -> int:
        return self.bus.read32(4 * int(index))

    def __setitem__(self, index: int, value: int) -> None:
        self.bus.write32(4 * int(index), int(value))


def test_kv260_uio_registers_on_the_rtl(session, fake_board):
    """host.platforms.kv260's UioRegisters (opened and mapped on the fake /dev/uio0, its
    word view relayed to the RTL) and UdmabufMemory carry the host driver's jobs: the
    product equals the golden model's, and a job the rules refuse is refused by the RTL
    with the code and address of hdl.spec.job.check."""
    from host.accel.driver import Driver, JobRefused
    from host.accel.pack import pack_weights
    from host.platforms.kv260 import UdmabufMemory, UioRegisters
    from hdl.spec.job import Job, check

    registers = UioRegisters(fake_board / "dev" / "uio0", irq=False)
    registers._words = _RelayedWords(session.bus, registers._words.size)
    # The relay sees Python's accesses only; firmware/replay.c would write the file page
    # itself. The compiled replay runs the same plan (tests/test_platform_kv260.py).
    registers.replay = None
    memory = UdmabufMemory("udmabuf0", dev=fake_board / "dev", sysfs=fake_board / "sys" / "class" / "u-dma-buf")
    driver = Driver(registers, memory, CONFIG, min_timeout_s=120.0)   # wall time: the RTL is simulated
    try:
        rng = np.random.default_rng(17)
        a = rng.integers(-128, 128, (3, 40), dtype=np.int8)
        w = rng.integers(-128, 128, (9, 40), dtype=np.int8)
        np.testing.assert_array_equal(driver.matmul(a, driver.load_matrix(w)),
                                      golden_matmul(a, pack_weights(w, CONFIG.cols, CONFIG.weight_ports)))
        base = memory.device_address
        job = Job(m=1, n=CONFIG.cols, k=CONFIG.max_k + 1, a_addr=base, w_addr=base, c_addr=base,
                  a_stride=CONFIG.max_k + 1, c_stride=4 * CONFIG.cols)
        code, addr = check(CONFIG, job)
        assert code != 0
        with pytest.raises(JobRefused) as refused:
            driver.run_job(a_addr=job.a_addr, w_addr=job.w_addr, c_addr=job.c_addr, m=job.m, n=job.n,
                           k=job.k, a_stride=job.a_stride, c_stride=job.c_stride, precheck=False)
        assert (int(refused.value.code), refused.value.address) == (int(code), addr)
    finally:
        registers.close()


def test_dma_error_is_reported_then_the_next_run_passes(session, selftest, fake_board):
    """A read fault anywhere in the buffer: the C self-test's job ends with the RTL's
    ERR_CODE DMA_READ and ERR_PORT (systole_wait reads them back; one port: m_axi_dma, 0),
    and the next run, with the memory healthy again, passes."""
    uio = str(fake_board / "dev" / "uio0")
    base = session.memory.device_address
    session.set_memory("fault_lo", base)
    session.set_memory("fault_hi", base + MEMORY_BYTES)
    session.set_memory("fault_read", 1)
    try:
        status, stdout, stderr = run_selftest(session, selftest, fake_board, "run", uio, "udmabuf0", "3", "1")
    finally:
        session.set_memory("fault_read", 0)
    assert status == 1, stdout + stderr
    assert re.search(rf"^job 0 .*: FAIL ERR_CODE={ErrorCode.DMA_READ.name} ERR_PORT=0,", stdout, re.M), stdout
    assert "the accelerator reported a job error" in stderr
    status, stdout, stderr = run_selftest(session, selftest, fake_board, "run", uio, "udmabuf0", "3", "2")
    assert status == 0, stdout + stderr
    assert_last_job_matches_golden(session, stdout)
