"""The KV260 platform layer on ordinary files: mmap registers, u-dma-buf memory, sysfs sync."""

import sys

import numpy as np
import pytest

from hdl.spec.config import preset
from host.accel.driver import ConfigMismatch, Driver
from host.platforms.kv260 import UdmabufMemory, UioRegisters, find_uio


def test_uio_registers_map_the_file(tmp_path):
    image = tmp_path / "uio0"
    words = np.arange(1024, dtype=np.uint32) * 0x01010101
    image.write_bytes(words.tobytes())
    regs = UioRegisters(image, irq=False)
    assert regs.read32(0x10) == int(words[4])
    regs.write32(0x80, 0xDEADBEEF)
    regs.write32(0x84, -1)
    assert regs.read32(0x80) == 0xDEADBEEF
    assert regs.read32(0x84) == 0xFFFFFFFF
    regs.close()
    stored = np.frombuffer(image.read_bytes(), np.uint32)
    assert stored[0x80 // 4] == 0xDEADBEEF and stored[5] == words[5]
    with pytest.raises(ValueError, match="0x1002"):
        UioRegisters(image, irq=False).read32(0x1002)


def test_driver_refuses_a_device_that_is_not_systole(tmp_path):
    image = tmp_path / "uio0"
    image.write_bytes(bytes(4096))
    with pytest.raises(ConfigMismatch, match="ID reads 0x00000000"):
        Driver(UioRegisters(image, irq=False), memory=None, config=preset("kv260"))


def test_find_uio_by_name(tmp_path):
    for index, name in enumerate(["axi-gpio", "systole"]):
        (tmp_path / f"uio{index}").mkdir()
        (tmp_path / f"uio{index}" / "name").write_text(name + "\n")
    assert str(find_uio("systole", sysfs=tmp_path)) == "/dev/uio1"
    with pytest.raises(FileNotFoundError, match="xmutil loadapp"):
        find_uio("nope", sysfs=tmp_path)


def test_udmabuf_memory_and_cache_maintenance(tmp_path):
    sysfs = tmp_path / "sys" / "udmabuf0"
    sysfs.mkdir(parents=True)
    (sysfs / "phys_addr").write_text("0x70000000\n")
    (sysfs / "size").write_text("65536\n")
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "udmabuf0").write_bytes(bytes(65536))
    memory = UdmabufMemory("udmabuf0", dev=dev, sysfs=tmp_path / "sys")
    assert (memory.device_address, memory.size) == (0x70000000, 65536)
    payload = np.arange(-64, 64, dtype=np.int8)
    memory.write(4096, payload)
    memory.sync_for_device(4096, payload.nbytes)
    attributes = ("sync_mode", "sync_offset", "sync_size", "sync_direction", "sync_for_device", "sync_for_cpu")

    def written() -> dict[str, str]:
        """What each attribute file got since the last call (then emptied)."""
        text = {name: (sysfs / name).read_text().strip() for name in attributes}
        for name in attributes:
            (sysfs / name).write_text("")
        return {name: value for name, value in text.items() if value}

    # Direction 0 (BIDIRECTIONAL): sync_for_device cleans, sync_for_cpu invalidates.
    assert written() == {"sync_mode": "0", "sync_offset": "4096", "sync_size": "128",
                         "sync_direction": "0", "sync_for_device": "1"}
    assert memory.sync_state.tolist() == [4096, 128, 0]
    memory.sync_for_cpu(4096, 128)            # the attributes hold the range: the trigger only
    assert written() == {"sync_for_cpu": "1"}
    memory.sync_for_cpu(8192, 128)            # only what changed
    assert written() == {"sync_offset": "8192", "sync_for_cpu": "1"}
    memory.sync_for_device(8192, 64)
    assert written() == {"sync_size": "64", "sync_for_device": "1"}
    memory.sync_state[:] = memory.SYNC_UNKNOWN   # (as after a failed write): all rewritten
    memory.sync_for_cpu(8192, 64)
    assert written() == {"sync_offset": "8192", "sync_size": "64", "sync_direction": "0",
                         "sync_for_cpu": "1"}
    assert memory.read(4096, 128).view(np.int8).tolist() == payload.tolist()
    assert (dev / "udmabuf0").read_bytes()[4096:4096 + 128] == payload.tobytes()
    with pytest.raises(ValueError, match="outside"):
        memory.write(65536 - 4, np.zeros(8, np.uint8))


def test_udmabuf_direct_view_writes_without_syncs(tmp_path):
    """``direct_view``: a second mapping opened O_SYNC after ``sync_mode`` 2 (u-dma-buf
    maps it write-combining); its stores land in the buffer with no sync written. A
    coherent window's direct view is the window itself."""
    from host.perf.a53 import fake_board_memory

    memory, shared = fake_board_memory(tmp_path, preset("kv260"), 1 << 16, readback=True)
    view = memory.direct_view()
    assert view is memory.direct_view() and view.size == memory.size
    assert (tmp_path / "sys" / "udmabuf0" / "sync_mode").read_text() == "2\n"
    for name in ("sync_offset", "sync_size", "sync_for_device"):
        assert not (tmp_path / "sys" / "udmabuf0" / name).read_text()
    view[4096:4100] = [1, 2, 3, 4]
    assert memory.read(4096, 4).tolist() == [1, 2, 3, 4]
    assert (tmp_path / "udmabuf0").read_bytes()[4096:4100] == bytes([1, 2, 3, 4])
    assert shared.direct_view() is shared._bytes
    memory.close()
    shared.close()


@pytest.mark.parametrize("compiled", [True, False])
def test_planned_jobs_replay_the_same_register_sequence(tmp_path, compiled):
    """The driver's plan performed by firmware/replay.c (one ctypes call) or by Python
    write32/read32 calls: the same job registers, counters and refusals."""
    import sys

    from host.accel.bus import MemoryWindow
    from host.accel.driver import AcceleratorError, AcceleratorTimeout, JobRefused
    from host.perf.a53 import FileAccelerator
    from host.platforms.replay import library, library_problem
    from hdl.spec.job import FIELDS
    from hdl.spec.regmap import ErrorCode, by_name

    assert library() is not None, library_problem()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)            # the Python path polls while holding the GIL
    config = preset("kv260")
    image = tmp_path / "uio0"
    device = FileAccelerator(image, config)
    regs = UioRegisters(image, irq=False)
    if not compiled:
        regs.replay = None
    try:
        driver = Driver(regs, MemoryWindow(bytearray(4 << 20), 0x4000_0000), config, min_timeout_s=1.0)
        assert (driver._replay is not None) == compiled
        weights = driver.load_matrix(np.ones((96, 640), np.int8))
        for _ in range(3):
            driver.matmul(np.ones((1, 640), np.int8), weights)
        assert driver.last_stats.busy_cycles == 1003
        job = device.jobs[-1]
        for f in FIELDS:          # every job register holds the job's value at ap_start
            value = sum(int(job[by_name(r).offset // 4]) << 32 * i for i, r in enumerate(f.registers))
            assert value == {"m": 1, "n": 96, "k": 640}.get(f.name, value)
        assert int(job[by_name("W_ADDR_LO").offset // 4]) == weights.buffer.device_address & 0xFFFF_FFFF
        device.error = int(ErrorCode.FORMAT)
        with pytest.raises(JobRefused, match="FORMAT"):
            driver.matmul(np.ones((1, 640), np.int8), weights)
        device.error = 0
        busy = by_name("STATUS")
        regs.write32(busy.offset, busy.fields[0].mask)
        jobs = len(device.jobs)
        with pytest.raises(AcceleratorError, match="busy"):
            driver.matmul(np.ones((1, 640), np.int8), weights)
        assert len(device.jobs) == jobs
        regs.write32(busy.offset, 0)
        device.answer = False              # a job that never finishes: timeout, soft reset
        driver.min_timeout_s = 0.02
        hung = driver.load_matrix(np.ones((64, 640), np.int8))      # planned with the short timeout
        with pytest.raises(AcceleratorTimeout, match="did not finish within .* the accelerator was soft-reset"):
            driver.matmul(np.ones((1, 640), np.int8), hung)
        assert int(device.words[device.ctrl]) == device.idle
        device.answer = True
        driver.matmul(np.ones((1, 640), np.int8), weights)      # and the next job runs
        assert driver.last_stats.busy_cycles == 1000 + len(device.jobs)
    finally:
        device.close()
        sys.setswitchinterval(interval)
    regs.close()


def _job_of(words):
    """The ``Job`` held by a register page's words."""
    from hdl.spec.job import FIELDS, Job
    from hdl.spec.regmap import by_name

    return Job(**{f.name: sum(int(words[by_name(r).offset // 4]) << 32 * i for i, r in enumerate(f.registers))
                  for f in FIELDS})


@pytest.mark.parametrize("compiled", [True, False])
def test_matmul_through_the_kv260_classes_equals_golden(tmp_path, compiled):
    """A matmul on UioRegisters + UdmabufMemory files, a thread computing C with the
    golden model from the jobs it is given: with firmware/replay.c's systole_job (A in,
    the syncs, the job, C out, one call) or the Python path, C is golden's; at each
    trigger the u-dma-buf attributes hold a range covering the job's A (sync_for_device,
    read by the thread at ap_start) and C (sync_for_cpu, read after the job), direction
    0: one range over A and C for a small job, A's and C's own rows for a large one; an
    attribute that already holds its value is not written again."""
    import sys

    from host.accel.golden import golden_matmul
    from host.accel.pack import pack_weights
    from host.perf.a53 import FileAccelerator

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    config = preset("kv260")
    sysfs = tmp_path / "sys" / "udmabuf0"
    sysfs.mkdir(parents=True)
    (sysfs / "phys_addr").write_text("0x40000000\n")
    (sysfs / "size").write_text(f"{4 << 20}\n")
    (tmp_path / "udmabuf0").write_bytes(bytes(4 << 20))
    memory = UdmabufMemory("udmabuf0", dev=tmp_path, sysfs=tmp_path / "sys")
    device = FileAccelerator(tmp_path / "uio0", config, memory=memory._bytes, base=memory.device_address)
    regs = UioRegisters(tmp_path / "uio0", irq=False)
    if not compiled:
        regs.replay = regs.job = None
    held = {}                                  # what the attributes hold: the last value written

    def attributes(trigger: str) -> tuple[int, int, int]:
        """The range a write to ``trigger`` just synced (the trigger file emptied again;
        an emptied attribute file not written since holds its last value)."""
        assert (sysfs / trigger).read_text() == "1\n", f"{trigger} was not written"
        (sysfs / trigger).write_text("")
        for name in ("sync_offset", "sync_size", "sync_direction"):
            text = (sysfs / name).read_text()
            if text:
                held[name] = int(text)
        return held["sync_offset"], held["sync_size"], held["sync_direction"]

    for_device = []
    device.on_start = lambda words: for_device.append(attributes("sync_for_device"))
    try:
        driver = Driver(regs, memory, config, min_timeout_s=1.0)
        assert (driver._job is not None) == compiled
        rng = np.random.default_rng(3)
        # (m, n, k): small jobs (one range); C of 8200 x 4 bytes > 32 KiB (two ranges)
        for m, n, k in ((1, 96, 640), (3, 200, 70), (1, 64, 1), (1, 8200, 16), (1, 96, 640)):
            w = rng.integers(-128, 128, (n, k), dtype=np.int8)
            weights = driver.load_matrix(w)
            (sysfs / "sync_for_device").write_text("")       # (load_matrix's sync)
            for run in range(2):                            # planned, then replayed
                if run:                                     # the same ranges again: no attribute written
                    for name in ("sync_offset", "sync_size", "sync_direction"):
                        (sysfs / name).write_text("")
                jobs = len(device.jobs)
                a = rng.integers(-128, 128, (m, k), dtype=np.int8)
                np.testing.assert_array_equal(driver.matmul(a, weights),
                                              golden_matmul(a, pack_weights(w, config.cols, config.weight_ports)))
                assert len(device.jobs) == jobs + 1
                job = _job_of(device.jobs[-1])
                a_at, c_at = job.a_addr - memory.device_address, job.c_addr - memory.device_address
                a_end, c_end = a_at + m * job.a_stride, c_at + m * job.c_stride
                device_range, cpu_range = for_device[-1], attributes("sync_for_cpu")
                if c_end - a_at <= 32 << 10:    # one range, [A start, C end), for both
                    assert a_end <= c_at < a_end + 64
                    assert device_range == cpu_range == (a_at, c_end - a_at, 0)
                    if run:                     # the triggers were the job's only writes
                        assert not any((sysfs / name).read_text() for name in ("sync_offset", "sync_size"))
                else:                           # offset and size change twice a job
                    assert device_range == (a_at, a_end - a_at, 0)
                    assert cpu_range == (c_at, c_end - c_at, 0)
        assert held["sync_direction"] == 0 and (sysfs / "sync_direction").read_text() == ""
    finally:
        device.close()
        regs.close()
        memory.close()
        sys.setswitchinterval(interval)


@pytest.mark.parametrize("compiled", [True, False])
def test_matmul_with_a_and_c_in_the_coherent_udmabuf(tmp_path, compiled):
    """The kv260 preset (coherent_io) as its backend opens it: weights in udmabuf0, each
    job's A and C in the dma-coherent udmabuf1. C is golden's on the compiled and the
    Python paths; the job's A and C addresses lie in udmabuf1 and W in udmabuf0; no sync
    attribute of either node is written by a job (udmabuf0's sync_for_device only by the
    weights' load), and udmabuf1's are never opened."""
    from host.accel.golden import golden_matmul
    from host.accel.pack import pack_weights
    from host.perf.a53 import FileAccelerator, fake_board_memory

    config = preset("kv260")
    assert config.coherent_io
    memory, shared = fake_board_memory(tmp_path, config, 4 << 20)
    device = FileAccelerator(tmp_path / "uio0", config, memory=memory._bytes, base=memory.device_address,
                             more=((shared._bytes, shared.device_address),))
    regs = UioRegisters(tmp_path / "uio0", irq=False)
    if not compiled:
        regs.replay = regs.job = None
    sysfs = tmp_path / "sys"
    try:
        driver = Driver(regs, memory, config, min_timeout_s=1.0, shared=shared)
        assert (driver._job is not None) == compiled
        assert driver._io_spec is None or driver._io_spec[1] is None     # nothing to sync
        rng = np.random.default_rng(5)
        for m, n, k in ((1, 96, 640), (3, 200, 70), (1, 8200, 16)):
            w = rng.integers(-128, 128, (n, k), dtype=np.int8)
            weights = driver.load_matrix(w)
            assert (sysfs / "udmabuf0" / "sync_for_device").read_text() == "1\n"
            for name in ("sync_offset", "sync_size", "sync_direction", "sync_for_device", "sync_for_cpu"):
                (sysfs / "udmabuf0" / name).write_text("")
            for _ in range(2):                                  # planned, then replayed
                a = rng.integers(-128, 128, (m, k), dtype=np.int8)
                np.testing.assert_array_equal(driver.matmul(a, weights),
                                              golden_matmul(a, pack_weights(w, config.cols, config.weight_ports)))
                job = _job_of(device.jobs[-1])
                lo, hi = shared.device_address, shared.device_address + shared.size
                assert lo <= job.a_addr and job.a_addr + m * job.a_stride <= hi
                assert lo <= job.c_addr and job.c_addr + m * job.c_stride <= hi
                assert memory.device_address <= job.w_addr < memory.device_address + memory.size
                assert not any((sysfs / "udmabuf0" / name).read_text()
                               for name in ("sync_offset", "sync_size", "sync_for_device", "sync_for_cpu"))
        assert sorted(p.name for p in (sysfs / "udmabuf1").iterdir()) == ["dma_coherent", "phys_addr", "size"]
    finally:
        device.close()
        regs.close()
        memory.close()
        shared.close()


def test_a_job_too_large_for_the_coherent_udmabuf_runs_synced_in_udmabuf0(tmp_path):
    """A prefill's job whose A and C exceed udmabuf1 runs from udmabuf0 with its syncs;
    the decode jobs after it are back in udmabuf1, with none."""
    from host.accel.golden import golden_matmul
    from host.accel.pack import pack_weights
    from host.perf.a53 import SHARED_BYTES, FileAccelerator, fake_board_memory

    config = preset("kv260")
    memory, shared = fake_board_memory(tmp_path, config, 64 << 20)
    device = FileAccelerator(tmp_path / "uio0", config, memory=memory._bytes, base=memory.device_address,
                             more=((shared._bytes, shared.device_address),))
    regs = UioRegisters(tmp_path / "uio0", irq=False)
    sysfs = tmp_path / "sys" / "udmabuf0"
    try:
        driver = Driver(regs, memory, config, min_timeout_s=1.0, shared=shared)
        rng = np.random.default_rng(9)
        w = rng.integers(-128, 128, (2048, 64), dtype=np.int8)
        weights = driver.load_matrix(w)
        packed = pack_weights(w, config.cols, config.weight_ports)
        rows = SHARED_BYTES // (4 * 2048) + 1                    # C alone is larger than udmabuf1
        for m in (rows, 1):
            (sysfs / "sync_for_cpu").write_text("")
            a = rng.integers(-128, 128, (m, 64), dtype=np.int8)
            np.testing.assert_array_equal(driver.matmul(a, weights), golden_matmul(a, packed))
            job = _job_of(device.jobs[-1])
            in_shared = shared.device_address <= job.c_addr < shared.device_address + shared.size
            assert in_shared == (m == 1)
            assert (sysfs / "sync_for_cpu").read_text() == ("" if m == 1 else "1\n")
    finally:
        device.close()
        regs.close()
        memory.close()
        shared.close()


def test_coherent_udmabuf_refuses_a_node_without_dma_coherent(tmp_path):
    from host.perf.a53 import _fake_udmabuf

    _fake_udmabuf(tmp_path, 1 << 20, "udmabuf1", coherent=False)
    with pytest.raises(ValueError, match=r"udmabuf1.* not DMA coherent .*dma_coherent is 0.*dma-coherent;"):
        UdmabufMemory("udmabuf1", dev=tmp_path, sysfs=tmp_path / "sys", coherent=True)
    (tmp_path / "sys" / "udmabuf1" / "dma_coherent").unlink()          # a u-dma-buf without it
    with pytest.raises(ValueError, match="dma_coherent is absent"):
        UdmabufMemory("udmabuf1", dev=tmp_path, sysfs=tmp_path / "sys", coherent=True)


def test_driver_refuses_shared_memory_overlapping_the_weights():
    from host.accel.bus import MemoryWindow
    from host.perf.a53 import InstantDevice

    config = preset("kv260")
    memory = MemoryWindow(bytearray(1 << 16), 0x4000_0000)
    with pytest.raises(ValueError, match=r"shared memory \[0x4000f000, 0x4001f000\) overlaps the weights"):
        Driver(InstantDevice(config), memory, config, shared=MemoryWindow(bytearray(1 << 16), 0x4000_F000))


# -- jobs submitted by the fused decoder's kernels (host.llm.fused) -----------------------------

def _board_decoder(rig, submit: bool, one_call: bool = False):
    """The Gemma-like test model (tests/test_a53.py) on ``rig``'s backend, fused; ``submit``
    False keeps the per-job Python path (``matmul``); with ``submit``, ``one_call`` runs
    the whole token in one compiled call, else one call per gap."""
    from host.llm.fused import FusedDecoder
    from host.llm.layers import linear_specs
    from host.llm.linear import QuantizedLinears
    from host.llm.quant import scheme
    from host.llm.transformer import RUNTIME_KV_DTYPE, Transformer
    from test_a53 import GEMMA_LIKE, gemma_like_weights

    weights = gemma_like_weights(GEMMA_LIKE)
    transformer = Transformer(GEMMA_LIKE, weights, QuantizedLinears(linear_specs(GEMMA_LIKE, weights),
                                                                     rig.backend, scheme("per-channel")),
                              kv_dtype=RUNTIME_KV_DTYPE)
    decoder = FusedDecoder.build(transformer)
    decoder._no_submission = not submit
    decoder.one_call = one_call
    return transformer, decoder


def test_kernel_submitted_jobs_equal_the_python_path():
    """On the KV260 classes with a thread computing C: the kernels' own submissions give
    the same tokens, int32 sums (so bit-equal logits), registers at every ap_start and
    counters as the per-job path; jobs + 1 compiled calls, few Python calls per job."""
    from hdl.spec.regmap import by_name
    from host.perf.a53 import BoardRig, count_python_calls

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    runs = {}
    try:
        for submit in (True, False):
            rig = BoardRig(preset("kv260"), 64 << 20, compute=True)
            try:
                transformer, decoder = _board_decoder(rig, submit)
                cache = transformer.new_cache(24)
                transformer.forward([1, 2, 3, 4], cache)
                jobs0 = rig.jobs
                token, tokens, logits = 5, [], []
                for _ in range(6):
                    token = decoder.greedy(token, cache)[0]
                    tokens.append(token)
                cache.length -= 1
                logits = decoder.logits(token, cache)
                assert decoder.submits_jobs == submit
                assert decoder.counts["compiled calls"] == decoder.counts["accelerator jobs"] + 1
                registers = np.array(rig.device.jobs[jobs0:])
                stats = (rig.backend.jobs, rig.backend.total_cycles, rig.backend.last_cycles())
                calls, driver_calls, jobs = count_python_calls(transformer, cache, tokens=2, decoder=decoder)
                runs[submit] = tokens, logits, registers, stats, calls / jobs
            finally:
                rig.close()
    finally:
        sys.setswitchinterval(interval)
    (tokens, logits, registers, stats, per_job), (tokens_py, logits_py, registers_py, stats_py, per_job_py) = \
        runs[True], runs[False]
    assert tokens == tokens_py
    np.testing.assert_array_equal(logits, logits_py)
    ctrl = by_name("CTRL").offset // 4                  # the registers as ap_start found them
    registers[:, ctrl] = registers_py[:, ctrl] = 0
    np.testing.assert_array_equal(registers, registers_py)
    assert stats == stats_py and stats[2] == 1000 + stats[0]        # the counters of the last job
    assert per_job < 4 < per_job_py                     # Python calls per job: ~3 against ~21


@pytest.mark.parametrize("failure", ["timeout", "refused"])
def test_a_kernel_submitted_job_fails_through_the_driver(failure):
    """A job the kernel submitted that times out (the accelerator never answers) or is
    refused: the driver's usual one-line error; after a timeout the accelerator was
    soft-reset. The next token runs."""
    from hdl.spec.regmap import ErrorCode
    from host.accel.driver import AcceleratorTimeout, JobRefused
    from host.perf.a53 import BoardRig

    rig = BoardRig(preset("kv260"), 64 << 20)
    try:
        rig.backend.driver.min_timeout_s = 0.05        # the plans made at the first token
        transformer, decoder = _board_decoder(rig, True)
        cache = transformer.new_cache(8)
        transformer.forward([1, 2], cache)
        if failure == "timeout":
            rig.device.answer = False
            expected = AcceleratorTimeout, r"^job M=1 N=\d+ K=64 did not finish within 50\.000 ms \(polling " \
                                           r"ap_done\); the accelerator was soft-reset$"
        else:
            rig.device.error = int(ErrorCode.FORMAT)
            expected = JobRefused, r"^accelerator refused the job: FORMAT"
        with pytest.raises(expected[0], match=expected[1]):
            decoder.greedy(3, cache)
        assert decoder.submits_jobs
        ctrl = int(rig.device.words[rig.device.ctrl])
        assert ctrl == rig.device.idle if failure == "timeout" else ctrl & rig.device.idle   # reset / ended
        rig.device.answer, rig.device.error = True, 0
        assert 0 <= decoder.greedy(3, cache)[0] < transformer.config.vocab_size      # and it runs on
    finally:
        rig.close()


def test_the_kernels_call_systole_job_as_replay_declares_it():
    """The numba kernels' call through systole_job's address (host.llm._numba_fused) passes
    each word as the parameter ctypes declares (pointer, uint32, uint64), all of them."""
    import ctypes

    from host.accel.driver import COMPILED_JOB_WORDS
    from host.llm._numba_fused import _JOB_PARAMETERS
    from host.platforms.replay import library

    kinds = {ctypes.c_uint32: "u", ctypes.c_uint64: "q"}
    declared = "".join(kinds.get(kind, "p") for kind in library().systole_job.argtypes)
    assert declared == _JOB_PARAMETERS and COMPILED_JOB_WORDS == 1 + len(declared)


# -- the whole token in one compiled call (host.llm.fused's one-call path) ----------------------

def test_one_call_token_equals_the_per_gap_path():
    """On the KV260 classes with a thread computing C: the token in one compiled call
    gives the same tokens, bit-equal logits and classifier sums, the same registers at
    every ap_start and counters as one call per gap; one compiled call per greedy token,
    two with the logits dequantized for sampling."""
    from hdl.spec.regmap import by_name
    from host.perf.a53 import BoardRig

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    runs = {}
    try:
        for one_call in (True, False):
            rig = BoardRig(preset("kv260"), 64 << 20, compute=True)
            try:
                transformer, decoder = _board_decoder(rig, True, one_call)
                cache = transformer.new_cache(24)
                transformer.forward([1, 2, 3, 4], cache)        # 10 positions: past the window of 8
                jobs0 = rig.jobs
                token, tokens, sums, calls = 5, [], [], []
                for _ in range(6):
                    token, logit = decoder.greedy(token, cache)
                    tokens.append((token, logit))
                    sums.append(decoder._bound[3][3].copy())     # the classifier's int32 sums
                    calls.append(decoder.counts["compiled calls"])
                    assert decoder.one_call_ran == one_call and decoder.submits_jobs
                cache.length -= 1
                logits = decoder.logits(token, cache)
                calls.append(decoder.counts["compiled calls"])
                registers = np.array(rig.device.jobs[jobs0:])
                stats = (rig.backend.jobs, rig.backend.total_cycles, rig.backend.last_cycles())
                runs[one_call] = tokens, np.array(sums), logits, registers, stats, calls
            finally:
                rig.close()
    finally:
        sys.setswitchinterval(interval)
    (tokens, sums, logits, registers, stats, calls), (tokens_gap, sums_gap, logits_gap, registers_gap,
                                                      stats_gap, calls_gap) = runs[True], runs[False]
    assert tokens == tokens_gap
    assert sums.any()                                   # C computed, not left as it was
    np.testing.assert_array_equal(sums, sums_gap)
    np.testing.assert_array_equal(logits, logits_gap)
    ctrl = by_name("CTRL").offset // 4
    registers[:, ctrl] = registers_gap[:, ctrl] = 0
    assert len(registers) == 7 * (4 * 4 + 1)
    np.testing.assert_array_equal(registers, registers_gap)
    assert stats == stats_gap
    assert calls == [1] * 6 + [2] and calls_gap == [4 * 4 + 2] * 7


@pytest.mark.parametrize("failure", ["timeout", "refused"])
def test_a_job_failing_inside_the_one_call_token(failure):
    """A job of the one-call token that times out mid-token (layer 1's ffn_up_gate, the
    7th job, never finishes) or is refused: the driver's one-line error, nothing after it
    submitted, the accelerator idle after the soft reset; the next token runs."""
    from hdl.spec.regmap import ErrorCode
    from host.accel.driver import AcceleratorTimeout, JobRefused
    from host.perf.a53 import BoardRig

    rig = BoardRig(preset("kv260"), 64 << 20)
    try:
        rig.backend.driver.min_timeout_s = 0.05        # the plans made at the first token
        transformer, decoder = _board_decoder(rig, True, one_call=True)
        cache = transformer.new_cache(8)
        transformer.forward([1, 2], cache)
        decoder.greedy(3, cache)
        jobs, length = rig.jobs, cache.length
        if failure == "timeout":
            rig.device.hang_after = 6
            expected = AcceleratorTimeout, r"^job M=1 N=192 K=64 did not finish within 50\.000 ms \(polling " \
                                           r"ap_done\); the accelerator was soft-reset$"
        else:
            rig.device.error = int(ErrorCode.FORMAT)
            expected = JobRefused, r"^accelerator refused the job: FORMAT"
        with pytest.raises(expected[0], match=expected[1]):
            decoder.greedy(4, cache)
        assert decoder.one_call_ran and cache.length == length
        assert rig.jobs == jobs + (6 if failure == "timeout" else 1)
        ctrl = int(rig.device.words[rig.device.ctrl])
        assert ctrl == rig.device.idle if failure == "timeout" else ctrl & rig.device.idle   # reset / ended
        rig.device.hang_after, rig.device.error = None, 0
        assert 0 <= decoder.greedy(4, cache)[0] < transformer.config.vocab_size      # and it runs on
        assert cache.length == length + 1 and decoder.counts["compiled calls"] == 1
        assert rig.jobs == jobs + (6 if failure == "timeout" else 1) + 4 * 4 + 1
    finally:
        rig.close()


# -- attention on the accelerator inside the one-call token -------------------------------------

def _offloaded_decoder(rig, one_call: bool, max_seq_len: int = 64):
    """The Gemma-like test model with attention on ``rig``'s accelerator, fused; ``one_call``
    False keeps the Python path (one call per gap, the driver's ``matmul_rows``)."""
    import dataclasses

    from host.llm.attention import OffloadedAttention
    from host.llm.fused import FusedDecoder
    from host.llm.layers import linear_specs
    from host.llm.linear import QuantizedLinears
    from host.llm.quant import scheme
    from host.llm.transformer import Transformer
    from test_a53 import GEMMA_LIKE, gemma_like_weights

    config = dataclasses.replace(GEMMA_LIKE, max_seq_len=max_seq_len)
    weights = gemma_like_weights(config)
    transformer = Transformer(config, weights, QuantizedLinears(linear_specs(config, weights), rig.backend,
                                                                scheme("per-channel")),
                              attention=OffloadedAttention(config, rig.backend))
    decoder = FusedDecoder.build(transformer)
    decoder.one_call = one_call
    return transformer, decoder


def test_offloaded_attention_in_one_call_equals_the_python_path():
    """On the KV260 classes with a thread computing C: attention on the accelerator with
    the whole token in one compiled call (the KV rows written by the kernel into the
    packed layout of the host copy and of the memory's direct view, the q.K^T job bound
    per tile count) gives the same greedy tokens and logits, the same registers at every
    ap_start and counters as the Python path, over 150 tokens: the window's ring wraps
    (8 slots), the global layers' matrices are re-packed as the cache doubles (16 ->
    256 slots) and their q.K^T rows cross two tile boundaries (64 columns); the first
    three tokens run the Python path in both runs, so the one call starts by flushing the
    values it staged. Both paths leave the same packed KV cache on the device."""
    from hdl.spec.regmap import by_name
    from host.accel.pack import unpack_weights
    from host.perf.a53 import BoardRig

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    runs = {}
    try:
        for one_call in (True, False):
            rig = BoardRig(preset("kv260"), 64 << 20, compute=True)
            try:
                transformer, decoder = _offloaded_decoder(rig, one_call, max_seq_len=160)
                cache = transformer.new_cache(8)
                transformer.forward([1, 2, 3], cache)          # prefill: the Python path's blocks
                jobs0 = rig.jobs
                token, tokens, calls = 5, [], set()
                for step in range(150):
                    decoder.one_call = one_call and step >= 3     # (the first tokens stage values on the host)
                    token, logit = decoder.greedy(token, cache)
                    tokens.append((token, logit))
                    if step >= 3:
                        calls.add(decoder.counts["compiled calls"])
                    assert decoder.one_call_ran == decoder.one_call and decoder.offload_unavailable is None
                    if step == 2:
                        assert cache.staged == 3 * 4 * 2          # tokens x layers x KV heads, flushed next
                logits = decoder.logits(token, cache)          # (the ring cannot go back a token)
                registers = np.array(rig.device.jobs[jobs0:])
                stats = (rig.backend.jobs, rig.backend.total_cycles, rig.backend.last_cycles())
                cache.flush()                                   # (the Python path stages values)
                memory = rig.memory.direct_view()
                device = []                                   # each matrix as the accelerator reads it
                for heads in cache.heads:
                    for head in heads:
                        for handle in (head.keys, *head.values):
                            weights = handle.device
                            streams = [memory[weights.buffer.offset + port * weights.w_stride:][
                                       :handle.packed.stream_bytes] for port in range(handle.packed.ports)]
                            packed = type(handle.packed)(np.concatenate(streams).view(np.int8), handle.n,
                                                         handle.k, handle.packed.cols, handle.packed.ports)
                            np.testing.assert_array_equal(unpack_weights(packed), unpack_weights(handle.packed))
                            device.append(unpack_weights(packed))
                runs[one_call] = tokens, logits, registers, stats, calls, cache.grown, device
            finally:
                rig.close()
    finally:
        sys.setswitchinterval(interval)
    (tokens, logits, registers, stats, calls, grown, device), \
        (tokens_py, logits_py, registers_py, stats_py, calls_py, grown_py, device_py) = runs[True], runs[False]
    assert tokens == tokens_py and len(set(tokens)) > 10
    np.testing.assert_array_equal(logits, logits_py)
    ctrl = by_name("CTRL").offset // 4
    registers[:, ctrl] = registers_py[:, ctrl] = 0
    assert len(registers) == 151 * (4 * 4 + 1 + 2 * 4 * 2)
    np.testing.assert_array_equal(registers, registers_py)
    assert stats == stats_py
    assert calls == {1} and grown == grown_py >= 4
    for ours, theirs in zip(device, device_py):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("which", [0, 1])
def test_an_attention_job_failing_inside_the_one_call_token(which):
    """A q.K^T (``which`` 0) or p.V job of the offloaded one-call token that never
    finishes: the driver's one-line error naming that job's shape, nothing after it
    submitted, the accelerator idle after the soft reset; the next token runs."""
    from host.accel.driver import AcceleratorTimeout
    from host.perf.a53 import BoardRig

    rig = BoardRig(preset("kv260"), 64 << 20)
    try:
        rig.backend.driver.min_timeout_s = 0.05
        transformer, decoder = _offloaded_decoder(rig, True)
        cache = transformer.new_cache(8)
        transformer.forward([1, 2], cache)
        decoder.greedy(3, cache)
        jobs, length = rig.jobs, cache.length
        rig.device.hang_after = 1 + which         # layer 0: qkv, then the first KV head's q.K^T, p.V
        shape = "M=2 N=8 K=32" if which == 0 else "M=2 N=32 K=8"      # (a local layer: the 8-slot ring)
        with pytest.raises(AcceleratorTimeout, match=rf"^job {shape} did not finish within 50\.000 ms"):
            decoder.greedy(4, cache)
        assert decoder.one_call_ran and cache.length == length
        assert rig.jobs == jobs + 1 + which
        assert int(rig.device.words[rig.device.ctrl]) == rig.device.idle
        rig.device.hang_after = None
        assert 0 <= decoder.greedy(4, cache)[0] < transformer.config.vocab_size
        assert cache.length == length + 1 and decoder.counts["compiled calls"] == 1
    finally:
        rig.close()
