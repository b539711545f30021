"""The cocotb testbench of the generated ``systole_top``, shared by the system tests
and the benchmark.

``SystoleTB`` holds the clock, the reset, an ``AxiLiteMaster`` on ``s_axi_ctrl``, a
memory on ``m_axi_dma`` (cocotbext-axi ``AxiRam`` with pause generators, or
``LatencyRam`` for the bench) and an AXI protocol monitor. ``check_matmul`` runs one
job end to end: it places A, the packed W and C (with guard bytes) in memory, runs
the job through the registers, and checks C bit for bit against
``host.accel.golden.golden_matmul`` plus the guard bytes and the beat counters.

``run_top(module, preset)`` is the pytest side: it generates the Verilog of the
preset once (cached by the content of ``hdl/``) and runs a cocotb module on it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hdl.spec.config import AccelConfig, preset
from hdl.spec.regmap import REGISTERS, ErrorCode, by_name
from host.accel.golden import golden_matmul
from host.accel.pack import pack_weights

__all__ = ["PRESET_ENV", "top_verilog", "top_build_args", "run_top", "Job", "JobResult", "SystoleTB",
           "read_bursts", "write_bursts", "round_up"]

PRESET_ENV = "SYSTOLE_PRESET"
OFFSET = {reg.name: reg.offset for reg in REGISTERS}
CTRL = {fld.name: fld.mask for fld in by_name("CTRL").fields}
GUARD_BYTES = 64
PAGE = 4096


def round_up(value: int, step: int) -> int:
    """The smallest multiple of ``step`` that is >= ``value``."""
    return -(-value // step) * step


def top_verilog(config: AccelConfig) -> Path:
    """``build/sim/src/systole_top-<preset>-<hash>.v``, converted only when ``hdl/`` changed."""
    from sim.runner import BUILD, REPO, write_verilog
    digest = hashlib.sha1(repr(config).encode())
    for path in sorted((REPO / "hdl").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
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


def run_top(test_module: str, preset_name: str, testcase=None, extra_env=None, tag: str = ""):
    """Run cocotb ``test_module`` on the top of preset ``preset_name`` (pytest side)."""
    from sim.runner import run_cocotb
    config = preset(preset_name)
    env = {PRESET_ENV: preset_name, **(extra_env or {})}
    return run_cocotb(sources=[top_verilog(config)], toplevel="systole_top",
                      test_module=test_module, testcase=testcase, extra_env=env,
                      tag=tag or preset_name, extra_args=top_build_args())


@dataclass
class Job:
    """The argument registers of one job."""

    a_addr: int
    w_addr: int
    c_addr: int
    m: int
    n: int
    k: int
    a_stride: int
    c_stride: int


@dataclass
class JobResult:
    """What a job left in the status registers."""

    err_code: int
    err_addr: int
    perf_busy: int
    perf_stall: int
    perf_rd_beats: int
    perf_wr_beats: int


def _split(config: AccelConfig, addr: int, beats: int) -> list[tuple[int, int]]:
    """AXI bursts of one DMA command: at most max_burst beats, never across 4 KiB."""
    out = []
    while beats:
        length = min(beats, config.max_burst, (PAGE - addr % PAGE) // config.bus_bytes)
        out.append((addr, length))
        addr += length * config.bus_bytes
        beats -= length
    return out


def read_bursts(config: AccelConfig, job: Job) -> list[tuple[int, int]]:
    """Every read burst of ``job`` in issue order (A rows of a block, then its W tiles)."""
    bb = config.bus_bytes
    out = []
    tiles = -(-job.n // config.cols)
    for block in range(0, job.m, config.rows):
        for row in range(block, min(job.m, block + config.rows)):
            out += _split(config, job.a_addr + row * job.a_stride, -(-job.k // bb))
        for tile in range(tiles):
            out += _split(config, job.w_addr + tile * job.k * bb, job.k)
    return out


def write_bursts(config: AccelConfig, job: Job) -> list[tuple[int, int, int]]:
    """Every write burst of ``job`` in issue order as (addr, beats, bytes written)."""
    bb = config.bus_bytes
    out = []
    tiles = -(-job.n // config.cols)
    for block in range(0, job.m, config.rows):
        for tile in range(tiles):
            valid_bytes = 4 * min(config.cols, job.n - tile * config.cols)
            for row in range(block, min(job.m, block + config.rows)):
                addr = job.c_addr + row * job.c_stride + tile * 4 * config.cols
                for start, beats in _split(config, addr, -(-valid_bytes // bb)):
                    written = min(beats * bb, addr + valid_bytes - start)
                    out.append((start, beats, written))
    return out


class AxiMonitor:
    """Watches ``m_axi_dma`` every cycle and records what the master breaks.

    Checks: VALID held with a stable payload until READY on AR, AW and W; INCR
    bursts of full-width beats, at most ``max_burst`` beats, inside one 4 KiB
    page; at most ``max_outstanding`` read bursts in flight; no W beat before
    its burst's AW is presented; WLAST on each burst's last beat. Counts the
    handshakes so tests can prove "no DMA traffic" and "nothing left half done".
    """

    def __init__(self, dut, config: AccelConfig):
        import cocotb
        self.dut = dut
        self.config = config
        self.errors: list[str] = []
        self.ar_bursts = self.aw_bursts = self.r_lasts = self.w_beats = self.b_resps = 0
        self.w_beats_announced = 0
        self.w_burst_ends: list[int] = []   # cumulative beat count at each burst end
        cocotb.start_soon(self._run())

    def _check_burst(self, kind: str, addr: int, length: int, size: int, burst: int):
        cfg = self.config
        if size != cfg.bus_bytes.bit_length() - 1 or burst != 1:
            self.errors.append(f"{kind}: size {size} burst {burst} (want full-width INCR)")
        if length > cfg.max_burst:
            self.errors.append(f"{kind}: {length} beats > max_burst {cfg.max_burst}")
        if addr % cfg.bus_bytes:
            self.errors.append(f"{kind}: unaligned address {addr:#x}")
        if addr // PAGE != (addr + length * cfg.bus_bytes - 1) // PAGE:
            self.errors.append(f"{kind}: burst {addr:#x}+{length} crosses 4 KiB")

    async def _run(self):
        from cocotb.triggers import RisingEdge
        d = self.dut
        p = "m_axi_dma_"
        sig = {n: getattr(d, p + n) for n in (
            "arvalid", "arready", "araddr", "arlen", "arsize", "arburst",
            "awvalid", "awready", "awaddr", "awlen", "awsize", "awburst",
            "wvalid", "wready", "wdata", "wstrb", "wlast",
            "rvalid", "rready", "rlast", "bvalid", "bready")}
        held = {"ar": None, "aw": None, "w": None}
        edge = RisingEdge(d.aclk)
        while True:
            await edge
            if not int(d.aresetn.value):
                held = {"ar": None, "aw": None, "w": None}
                continue
            for ch, fields in (("ar", ("araddr", "arlen", "arsize", "arburst")),
                               ("aw", ("awaddr", "awlen", "awsize", "awburst")),
                               ("w", ("wdata", "wstrb", "wlast"))):
                valid = int(sig[f"{ch}valid"].value)
                if held[ch] is not None:
                    if not valid:
                        self.errors.append(f"{ch.upper()}VALID dropped before READY")
                    elif tuple(int(sig[f].value) for f in fields) != held[ch]:
                        self.errors.append(f"{ch.upper()} payload changed while waiting for READY")
                was_held = held[ch] is not None
                held[ch] = None
                if valid:
                    payload = tuple(int(sig[f].value) for f in fields)
                    if ch == "aw" and not was_held:
                        # The writer may send W beats once their AW is presented.
                        self.w_beats_announced += payload[1] + 1
                        self.w_burst_ends.append(self.w_beats_announced)
                    if int(sig[f"{ch}ready"].value):
                        self._handshake(ch, payload)
                    else:
                        held[ch] = payload
            if int(sig["rvalid"].value) and int(sig["rready"].value) and int(sig["rlast"].value):
                self.r_lasts += 1
            if int(sig["bvalid"].value) and int(sig["bready"].value):
                self.b_resps += 1
            if self.ar_bursts - self.r_lasts > self.config.max_outstanding:
                self.errors.append(f"{self.ar_bursts - self.r_lasts} read bursts in flight "
                                   f"> max_outstanding {self.config.max_outstanding}")

    def _handshake(self, ch: str, payload: tuple):
        if ch == "ar":
            self.ar_bursts += 1
            self._check_burst("AR", payload[0], payload[1] + 1, payload[2], payload[3])
        elif ch == "aw":
            self.aw_bursts += 1
            self._check_burst("AW", payload[0], payload[1] + 1, payload[2], payload[3])
        else:
            self.w_beats += 1
            if self.w_beats > self.w_beats_announced:
                self.errors.append("W beat before its AW")
            elif bool(payload[2]) != (self.w_beats in self.w_burst_ends):
                self.errors.append(f"WLAST={payload[2]} wrong on W beat {self.w_beats}")

    @property
    def quiet(self) -> bool:
        """Every read burst has its last beat and every write burst its response."""
        return self.ar_bursts == self.r_lasts and self.aw_bursts == self.b_resps


class SystoleTB:
    """Clock, reset, control master, DMA memory and monitor for ``systole_top``."""

    def __init__(self, dut, *, memory: str = "axiram", read_latency: int = 32, monitor: bool = True,
                 clock_ns: int = 4):
        import cocotb
        from cocotb.clock import Clock
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

        self.dut = dut
        self.config = preset(os.environ.get(PRESET_ENV, "tiny"))
        self.log = dut._log
        # cocotbext-axi logs every burst at INFO; keep the test logs readable.
        for name in ("s_axi_ctrl", "m_axi_dma"):
            logging.getLogger(f"cocotb.{dut._name}.{name}").setLevel(logging.WARNING)
        cocotb.start_soon(Clock(dut.aclk, clock_ns, unit="ns").start())
        self.ctrl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_ctrl"), dut.aclk, dut.aresetn,
                                  reset_active_level=False)
        space = 1 << self.config.addr_width
        if memory == "axiram":
            self.mem = AxiRam(AxiBus.from_prefix(dut, "m_axi_dma"), dut.aclk, dut.aresetn,
                              reset_active_level=False, size=space)
            self._patch_faults()
        elif memory == "latency":
            from sim.latency_ram import LatencyRam
            self.mem = LatencyRam(dut, "m_axi_dma", dut.aclk, bus_bytes=self.config.bus_bytes,
                                  read_latency=read_latency, size=space)
        else:
            raise ValueError(f"memory={memory!r} must be 'axiram' or 'latency'")
        self.memory_kind = memory
        self.monitor = AxiMonitor(dut, self.config) if monitor else None
        self.fail_reads: tuple[int, int] | None = None
        self.fail_writes: tuple[int, int] | None = None
        self._traffic_before = (0, 0)
        self.guard = GUARD_BYTES     # guard bytes checked on each side of the C area

    # -- memory model knobs -----------------------------------------------------------
    def _patch_faults(self):
        """AxiRam answers SLVERR for a beat whose access raises; raise inside the fault windows."""
        ram = self.mem

        async def read(address, length):
            if self.fail_reads and address < self.fail_reads[1] and address + length > self.fail_reads[0]:
                raise IOError(f"injected read fault at {address:#x}")
            return ram.read(address % ram.size, length)

        async def write(address, data):
            if self.fail_writes and address < self.fail_writes[1] and address + len(data) > self.fail_writes[0]:
                raise IOError(f"injected write fault at {address:#x}")
            ram.write(address % ram.size, data)

        ram.read_if._read = read
        ram.write_if._write = write

    def set_faults(self, reads: tuple[int, int] | None = None, writes: tuple[int, int] | None = None):
        """Answer SLVERR for accesses overlapping ``[lo, hi)`` (None: no faults)."""
        self.fail_reads, self.fail_writes = reads, writes
        if self.memory_kind == "latency":
            self.mem.fail_reads, self.mem.fail_writes = reads, writes

    def set_stalls(self, kind: str, seed: int = 0):
        """Idle/back-pressure on every channel of the AxiRam: none, periodic or random."""
        if self.memory_kind != "axiram":
            raise ValueError("stall generators need the AxiRam memory")
        channels = [self.mem.write_if.aw_channel, self.mem.write_if.w_channel,
                    self.mem.write_if.b_channel, self.mem.read_if.ar_channel,
                    self.mem.read_if.r_channel]
        rng = random.Random(seed)
        for index, channel in enumerate(channels):
            if kind == "none":
                channel.clear_pause_generator()
                channel.pause = False     # killing the generator can leave it paused
            elif kind == "periodic":
                period = 2 + index % 3
                channel.set_pause_generator(itertools.cycle([1] + [0] * period))
            elif kind == "random":
                local = random.Random(rng.random())
                channel.set_pause_generator(iter(lambda: local.random() < 0.3, None))
            else:
                raise ValueError(f"stall kind {kind!r} must be none, periodic or random")

    # -- registers --------------------------------------------------------------------
    async def reset(self):
        from cocotb.triggers import ClockCycles, RisingEdge
        self.dut.aresetn.value = 0
        await ClockCycles(self.dut.aclk, 4)
        self.dut.aresetn.value = 1
        await RisingEdge(self.dut.aclk)
        await self.write_reg("GIE", 1)
        await self.write_reg("IER", 1)

    async def read_reg(self, name: str) -> int:
        return await self.ctrl.read_dword(OFFSET[name])

    async def write_reg(self, name: str, value: int):
        await self.ctrl.write_dword(OFFSET[name], value & 0xFFFF_FFFF)

    async def program(self, job: Job):
        for name in ("A_ADDR", "W_ADDR", "C_ADDR"):
            value = getattr(job, name.lower())
            await self.write_reg(f"{name}_LO", value)
            await self.write_reg(f"{name}_HI", value >> 32)
        for name in ("M", "N", "K", "A_STRIDE", "C_STRIDE"):
            await self.write_reg(name, getattr(job, name.lower()))

    async def start(self):
        await self.write_reg("CTRL", CTRL["ap_start"])

    async def wait_irq(self, max_cycles: int):
        """Wait for ``irq`` (GIE and IER.done are set by ``reset``); fail after ``max_cycles``."""
        from cocotb.triggers import ClockCycles, First, RisingEdge
        if not int(self.dut.irq.value):
            await First(RisingEdge(self.dut.irq), ClockCycles(self.dut.aclk, max_cycles))
        assert int(self.dut.irq.value), f"no interrupt within {max_cycles} cycles"

    async def finish(self) -> JobResult:
        """After the done interrupt: acknowledge it and read the job's outcome."""
        isr = await self.read_reg("ISR")
        assert isr & 1, f"ISR={isr:#x} lacks done"
        await self.write_reg("ISR", isr)
        assert int(self.dut.irq.value) == 0, "irq still high after ISR was cleared"
        ctrl = await self.read_reg("CTRL")
        assert ctrl & CTRL["ap_done"] and ctrl & CTRL["ap_idle"], f"CTRL={ctrl:#x} after done"
        names = ("ERR_CODE", "ERR_ADDR_LO", "ERR_ADDR_HI", "PERF_BUSY", "PERF_STALL",
                 "PERF_RD_BEATS", "PERF_WR_BEATS")
        values = {name: await self.read_reg(name) for name in names}
        status = await self.read_reg("STATUS")
        assert status == (int(values["ERR_CODE"] != 0) << 1), f"STATUS={status:#x} after done"
        return JobResult(values["ERR_CODE"], values["ERR_ADDR_LO"] | values["ERR_ADDR_HI"] << 32,
                         values["PERF_BUSY"], values["PERF_STALL"], values["PERF_RD_BEATS"],
                         values["PERF_WR_BEATS"])

    async def run_job(self, job: Job, max_cycles: int | None = None) -> JobResult:
        """Program, start and wait for one job; return its outcome."""
        await self.launch(job)
        return await self.complete(job, max_cycles)

    async def launch(self, job: Job):
        """Program the arguments and write ap_start (returns once the write is answered)."""
        self._traffic_before = ((self.monitor.ar_bursts, self.monitor.aw_bursts)
                                if self.monitor else (0, 0))
        await self.program(job)
        await self.start()

    async def complete(self, job: Job, max_cycles: int | None = None) -> JobResult:
        """Wait for the done interrupt of ``job`` and check the bus is clean afterwards:
        no protocol error, no transaction left open, and no traffic at all if refused."""
        await self.wait_irq(max_cycles or 2000 + 40 * self._ideal_cycles(job))
        result = await self.finish()
        if self.monitor:
            assert not self.monitor.errors, f"AXI protocol: {self.monitor.errors[:5]}"
            assert self.monitor.quiet, "AXI transactions left open after done"
            if result.err_code not in (ErrorCode.OK, ErrorCode.DMA_READ, ErrorCode.DMA_WRITE,
                                       ErrorCode.ABORTED, ErrorCode.START_BUSY):
                traffic = (self.monitor.ar_bursts, self.monitor.aw_bursts)
                assert traffic == self._traffic_before, \
                    f"refused job ({ErrorCode(result.err_code).name}) issued DMA traffic"
        return result

    def _ideal_cycles(self, job: Job) -> int:
        cfg = self.config
        blocks = -(-job.m // cfg.rows)
        tiles = -(-job.n // cfg.cols)
        return (blocks * (tiles * max(job.k, 4 * cfg.rows) + cfg.rows * -(-job.k // cfg.bus_bytes))
                if 0 < job.m < 1 << 24 and 0 < job.n < 1 << 24 and job.k else 0)

    # -- whole matmuls ----------------------------------------------------------------
    def place(self, m: int, n: int, k: int, rng: random.Random, base: int = 0x10_0000,
              a_edge: int | None = None, c_edge: int | None = None,
              w_edge: int | None = None, pad: bool = True) -> Job:
        """Addresses for a job, each buffer starting a few beats below a 4 KiB edge.

        ``*_edge`` is the number of beats below the edge (random when None); strides
        get 0-2 beats of padding when ``pad``.
        """
        bb = self.config.bus_bytes
        a_stride = round_up(k, bb) + (bb * rng.randint(0, 2) if pad else 0)
        c_stride = round_up(4 * n, bb) + (bb * rng.randint(0, 2) if pad else 0)
        cursor = base

        def below_edge(size: int, beats: int | None) -> int:
            nonlocal cursor
            beats = rng.randint(1, 6) if beats is None else beats
            page_end = round_up(cursor + GUARD_BYTES + beats * bb, PAGE)
            addr = page_end - beats * bb
            cursor = addr + size + GUARD_BYTES
            return addr

        a_addr = below_edge(m * a_stride, a_edge)
        w_addr = below_edge(packed_bytes(n, k, self.config.cols), w_edge)
        c_addr = below_edge(m * c_stride, c_edge)
        return Job(a_addr, w_addr, c_addr, m, n, k, a_stride, c_stride)

    def load_operands(self, job: Job, a: np.ndarray, w: np.ndarray, rng: random.Random) -> bytes:
        """Write A (rows at A_STRIDE, random padding), packed W, and random guard
        bytes over the whole C area; return the C area's initial bytes."""
        packed = pack_weights(w, self.config.cols)
        for row in range(job.m):
            line = bytearray(rng.randbytes(job.a_stride))
            line[:job.k] = a[row].tobytes()
            self.mem.write(job.a_addr + row * job.a_stride, bytes(line))
        self.mem.write(job.w_addr, packed.data.tobytes())
        area = rng.randbytes(job.m * job.c_stride + 2 * self.guard)
        self.mem.write(job.c_addr - self.guard, area)
        return area

    def expected_c_area(self, job: Job, a: np.ndarray, w: np.ndarray, before: bytes) -> bytes:
        """The C area after a correct job: golden results, every other byte untouched."""
        c = golden_matmul(a, pack_weights(w, self.config.cols))
        area = bytearray(before)
        for row in range(job.m):
            start = self.guard + row * job.c_stride
            area[start:start + 4 * job.n] = c[row].astype("<i4").tobytes()
        return bytes(area)

    async def check_matmul(self, a: np.ndarray, w: np.ndarray, rng: random.Random,
                           job: Job | None = None) -> JobResult:
        """Run ``C = A x W^T`` and check C, the guard bytes and the beat counters."""
        job, before = self.stage(a, w, rng, job)
        result = await self.run_job(job)
        self.verify(job, a, w, before, result)
        return result

    def stage(self, a: np.ndarray, w: np.ndarray, rng: random.Random,
              job: Job | None = None) -> tuple[Job, bytes]:
        """Place (unless ``job`` is given) and load a job's operands; see ``load_operands``."""
        job = job or self.place(a.shape[0], w.shape[0], a.shape[1], rng)
        return job, self.load_operands(job, a, w, rng)

    def verify(self, job: Job, a: np.ndarray, w: np.ndarray, before: bytes, result: JobResult,
               code: int = ErrorCode.OK):
        """The job ended with ``code``, C is golden, nothing else in the C area changed,
        and the beat counters match the job's shape."""
        assert result.err_code == code, (f"job {job} ended with {ErrorCode(result.err_code).name} "
                                         f"at {result.err_addr:#x}, want {ErrorCode(code).name}")
        after = self.c_area(job, before)
        expected = self.expected_c_area(job, a, w, before)
        if after != expected:
            self._explain_mismatch(job, after, expected)
        cfg = self.config
        tiles = -(-job.n // cfg.cols)
        want_rd = job.m * -(-job.k // cfg.bus_bytes) + -(-job.m // cfg.rows) * tiles * job.k
        want_wr = job.m * -(-4 * job.n // cfg.bus_bytes)
        assert (result.perf_rd_beats, result.perf_wr_beats) == (want_rd, want_wr), \
            f"beat counters {result.perf_rd_beats}/{result.perf_wr_beats}, want {want_rd}/{want_wr}"

    def c_area(self, job: Job, before: bytes) -> bytes:
        """The C area with its guard bytes as memory holds it now."""
        return self.mem.read(job.c_addr - self.guard, len(before))

    def guards_intact(self, job: Job, before: bytes) -> bool:
        """No byte on either side of the C area was written."""
        after = self.c_area(job, before)
        g = self.guard
        return after[:g] == before[:g] and after[len(after) - g:] == before[len(before) - g:]

    def _explain_mismatch(self, job: Job, after: bytes, expected: bytes):
        bad = [i for i in range(len(after)) if after[i] != expected[i]]
        first = bad[0] - self.guard
        row, offset = divmod(first, job.c_stride) if first >= 0 else (-1, first)
        where = (f"C[{row}, {offset // 4}]" if 0 <= row < job.m and offset < 4 * job.n
                 else f"guard/padding byte at C{first:+d}")
        raise AssertionError(f"{len(bad)} bytes differ in the C area of {job}; first: {where} "
                             f"got {after[bad[0]]:#04x} want {expected[bad[0]]:#04x}")


def packed_bytes(n: int, k: int, cols: int) -> int:
    """Bytes of an ``[n, k]`` weight matrix in the packed layout (see host.accel.pack)."""
    return -(-n // cols) * k * cols
