"""The cocotb testbench of the generated ``systole_top``, shared by the system tests
and the benchmark.

``SystoleTB`` holds the clocks (``aclk``, and ``m_axi_aclk`` in the preset's ratio for a
build with ``axi_clock_mhz``), the resets, an ``AxiLiteMaster`` on ``s_axi_ctrl``, a
memory on every master (``m_axi_dma`` and, with several weight ports, the read-only
``m_axi_w<p>``), all over one backing store (cocotbext-axi ``AxiRam``/``AxiRamRead``,
whose channels can pause, or ``LatencyRam`` for the bench), and an ``AxiMonitor`` per
master. ``check_matmul`` runs one job
end to end: it places A, the packed W and C (with guard bytes) in memory, runs the
job through the registers, and checks C bit for bit against
``host.accel.golden.golden_matmul``, the guard bytes, and the AR/AW bursts and the
beat counters against the DMA plan (``hdl.spec.dma``).

Pauses follow the verilog-axi / cocotbext-axi tests: *idle* is the memory inserting
gaps on the channels it drives (R and B), *back-pressure* is the memory deasserting
READY on the channels it receives (AR, AW and W); each channel gets its own pattern
(``set_pauses``, ``sim.dma_traffic.PAUSES``), on every port independently. Buffers start at a chosen beat offset from a 4 KiB edge (``place``),
so a sweep over ``sim.dma_traffic.edge_offsets`` makes every split at the edge happen.

The job is ``hdl.spec.job.Job`` (its registers come from the register map), and the
pytest side lives in ``sim.top_build``.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
from dataclasses import dataclass

import numpy as np

from hdl.spec.config import preset
from hdl.spec.dma import BOUNDARY_BYTES, beat_counts, read_bursts, write_bursts
from hdl.spec.job import Job, check, row_strides
from hdl.spec.regmap import REGISTERS, ErrorCode, by_name
from host.accel.golden import golden_matmul
from hdl.spec.formats import WeightFormat, tile_beats, tokens_per_block
from host.accel.pack import Int4Weights, PackedWeights, pack_int4, pack_weights, packed_size
from sim.axi_monitor import AxiMonitor, master_clock
from sim.dma_traffic import edge_offsets, pause_generator
from sim.top_build import PRESET_ENV

__all__ = ["CTRL", "GUARD_BYTES", "JobResult", "SystoleTB"]

OFFSET = {reg.name: reg.offset for reg in REGISTERS}
CTRL = {fld.name: fld.mask for fld in by_name("CTRL").fields}
GUARD_BYTES = 64
# Errors that end a job after it started; any other error code refuses it untouched.
_RAN = (ErrorCode.OK, ErrorCode.DMA_READ, ErrorCode.DMA_WRITE, ErrorCode.ABORTED,
        ErrorCode.START_BUSY)


@dataclass
class JobResult:
    """What a job left in the status registers."""

    err_code: int
    err_addr: int
    perf_busy: int
    perf_stall: int
    perf_rd_beats: int
    perf_wr_beats: int
    err_port: int = 0


class SystoleTB:
    """Clock, reset, control master, DMA memory and monitor for ``systole_top``."""

    def __init__(self, dut, *, memory: str = "axiram", read_latency: int = 32, monitor: bool = True,
                 clock_ns: int = 4):
        import cocotb
        from cocotb.clock import Clock
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiRamRead, AxiReadBus

        self.dut = dut
        self.config = preset(os.environ.get(PRESET_ENV, "tiny"))
        self.log = dut._log
        masters = self.config.weight_masters
        # cocotbext-axi logs every burst at INFO; keep the test logs readable.
        for name in ("s_axi_ctrl", *masters):
            logging.getLogger(f"cocotb.{dut._name}.{name}").setLevel(logging.WARNING)
        cocotb.start_soon(Clock(dut.aclk, clock_ns, unit="ns").start())
        # The masters' clock (m_axi_aclk where the build has its own), in the preset's ratio.
        clock, reset_n = master_clock(dut, self.config)
        if self.config.split_clocks:
            axi_ps = 2 * round(clock_ns * 500 * self.config.clock_mhz / self.config.axi_clock_mhz)
            cocotb.start_soon(Clock(clock, axi_ps, unit="ps").start())
        self.master_clock, self.master_reset_n = clock, reset_n
        self.ctrl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_ctrl"), dut.aclk, dut.aresetn,
                                  reset_active_level=False)
        space = 1 << self.config.addr_width
        if memory == "axiram":
            self.mem = AxiRam(AxiBus.from_prefix(dut, masters[0]), clock, reset_n,
                              reset_active_level=False, size=space)
            self.port_mems = [self.mem] + [
                AxiRamRead(AxiReadBus.from_prefix(dut, master), clock, reset_n,
                           reset_active_level=False, size=space, mem=self.mem.mem)
                for master in masters[1:]]
            self._patch_faults()
        elif memory == "latency":
            from sim.latency_ram import LatencyRam
            self.mem = LatencyRam(dut, masters[0], clock, bus_bytes=self.config.bus_bytes,
                                  read_latency=read_latency, size=space)
            self.port_mems = [self.mem] + [
                LatencyRam(dut, master, clock, bus_bytes=self.config.bus_bytes, read_latency=read_latency,
                           size=space, mem=self.mem.mem, writes=False) for master in masters[1:]]
        else:
            raise ValueError(f"memory={memory!r} must be 'axiram' or 'latency'")
        self.memory_kind = memory
        self.monitors = ([AxiMonitor(dut, self.config, master, writes=index == 0)
                          for index, master in enumerate(masters)] if monitor else [])
        self.monitor = self.monitors[0] if monitor else None
        self.fail_reads: tuple[int, int] | None = None
        self.fail_writes: tuple[int, int] | None = None
        self._traffic_before = [(0, 0)] * len(masters)   # (ARs, AWs) each monitor had seen at launch
        self.guard = GUARD_BYTES     # guard bytes checked on each side of the C area

    # -- memory model knobs -----------------------------------------------------------
    def _patch_faults(self):
        """AxiRam answers SLVERR for a beat whose access raises; raise inside the fault windows
        (on whichever port reads there)."""
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
        for port in self.port_mems[1:]:
            port._read = read

    def set_faults(self, reads: tuple[int, int] | None = None, writes: tuple[int, int] | None = None):
        """Answer SLVERR for accesses overlapping ``[lo, hi)`` (None: no faults)."""
        self.fail_reads, self.fail_writes = reads, writes
        if self.memory_kind == "latency":
            for port in self.port_mems:
                port.fail_reads, port.fail_writes = reads, writes

    def set_pauses(self, idle: str | None, backpressure: str | None, seed: int = 0):
        """Pause the AxiRam's channels, each with its own ``pause_generator``: ``idle``
        (a ``PAUSES`` kind) on the ones it drives (R, B), ``backpressure`` on the ones
        it takes (AR, AW, W), on every port with patterns of its own; None: that side
        never pauses."""
        if self.memory_kind != "axiram":
            raise ValueError(f"pauses need the AxiRam memory, not {self.memory_kind!r}")
        read, write = self.mem.read_if, self.mem.write_if
        drives, takes = [read.r_channel, write.b_channel], [read.ar_channel, write.aw_channel, write.w_channel]
        for port in self.port_mems[1:]:
            drives.append(port.r_channel)
            takes.append(port.ar_channel)
        sides = ((idle, drives), (backpressure, takes))
        index = itertools.count()
        for kind, channels in sides:
            for channel in channels:
                if kind is None:
                    channel.clear_pause_generator()
                    channel.pause = False     # killing the generator can leave it paused
                else:
                    channel.set_pause_generator(pause_generator(kind, next(index), seed))

    # -- registers --------------------------------------------------------------------
    async def reset(self):
        """Four cycles of reset, then the done interrupt enabled (GIE, IER.done)."""
        from cocotb.triggers import ClockCycles, RisingEdge
        self.dut.aresetn.value = 0
        self.master_reset_n.value = 0
        await ClockCycles(self.dut.aclk, 4)
        await ClockCycles(self.master_clock, 4)
        self.dut.aresetn.value = 1
        self.master_reset_n.value = 1
        await RisingEdge(self.dut.aclk)
        await self.write_reg("GIE", 1)
        await self.write_reg("IER", 1)

    async def read_reg(self, name: str) -> int:
        """The register called ``name`` (from the register map), over AXI-Lite."""
        return await self.ctrl.read_dword(OFFSET[name])

    async def write_reg(self, name: str, value: int):
        """Write the low 32 bits of ``value`` to the register called ``name``."""
        await self.ctrl.write_dword(OFFSET[name], value & 0xFFFF_FFFF)

    async def program(self, job: Job):
        """Write the job's argument registers, in register-map order."""
        for register, word in job.registers().items():
            await self.write_reg(register, word)

    async def start(self):
        """Write ap_start (whether or not a job is running)."""
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
                 "PERF_RD_BEATS", "PERF_WR_BEATS", "ERR_PORT")
        values = {name: await self.read_reg(name) for name in names}
        status = await self.read_reg("STATUS")
        assert status == (int(values["ERR_CODE"] != 0) << 1), f"STATUS={status:#x} after done"
        return JobResult(values["ERR_CODE"], values["ERR_ADDR_LO"] | values["ERR_ADDR_HI"] << 32,
                         values["PERF_BUSY"], values["PERF_STALL"], values["PERF_RD_BEATS"],
                         values["PERF_WR_BEATS"], values["ERR_PORT"])

    async def run_job(self, job: Job, max_cycles: int | None = None) -> JobResult:
        """Program, start and wait for one job; return its outcome."""
        await self.launch(job)
        return await self.complete(job, max_cycles)

    async def launch(self, job: Job):
        """Program the arguments and write ap_start (returns once the write is answered)."""
        self._traffic_before = [(len(mon.ars), len(mon.aws)) for mon in self.monitors]
        await self.program(job)
        await self.start()

    async def complete(self, job: Job, max_cycles: int | None = None) -> JobResult:
        """Wait for the done interrupt of ``job`` and check the bus is clean afterwards:
        no protocol error, no transaction left open, and no traffic at all if refused."""
        await self.wait_irq(max_cycles or 2000 + 40 * self._ideal_cycles(job))
        result = await self.finish()
        for mon, before in zip(self.monitors, self._traffic_before):
            assert not mon.errors, f"AXI protocol on {mon.prefix}: {mon.errors[:5]}"
            assert mon.quiet, f"AXI transactions left open on {mon.prefix} after done"
            if result.err_code not in _RAN:
                assert (len(mon.ars), len(mon.aws)) == before, \
                    f"refused job ({ErrorCode(result.err_code).name}) issued DMA traffic on {mon.prefix}"
        return result

    def _ideal_cycles(self, job: Job) -> int:
        """A rough lower bound on a job's cycles, to scale its timeout (0 if refused)."""
        cfg = self.config
        if check(cfg, job)[0] != ErrorCode.OK:
            return 0
        blocks = -(-job.m // tokens_per_block(job.w_format, cfg.rows))
        tiles = -(-job.n // cfg.cols)
        beats = tile_beats(job.w_format, job.k)
        return blocks * (tiles * max(beats, 4 * cfg.rows) + cfg.rows * -(-job.k // cfg.bus_bytes))

    # -- whole matmuls ----------------------------------------------------------------
    def place(self, m: int, n: int, k: int, rng: random.Random, base: int = 0x10_0000,
              offsets: tuple[int, int, int] | None = None, pad: bool = True,
              w_format: WeightFormat = WeightFormat.INT8) -> Job:
        """A legal job whose A, W and C start ``offsets`` beats from a 4 KiB edge.

        An offset is negative below the edge, 0 on it; each is drawn from
        ``edge_offsets`` when ``offsets`` is None. The buffers follow each other
        upwards from ``base`` with at least ``GUARD_BYTES`` between them; strides
        get 0-2 beats of padding when ``pad``.
        """
        cfg = self.config
        bb = cfg.bus_bytes
        a_stride, c_stride = row_strides(cfg, k, n)
        if pad:
            a_stride += bb * rng.randint(0, 2)
            c_stride += bb * rng.randint(0, 2)
        if offsets is None:
            offsets = tuple(rng.choice(edge_offsets(cfg)) for _ in range(3))
        cursor = base

        def at_edge(size: int, offset: int) -> int:
            nonlocal cursor
            lowest = cursor + GUARD_BYTES - offset * bb      # the edge may not be lower
            addr = -(-lowest // BOUNDARY_BYTES) * BOUNDARY_BYTES + offset * bb
            cursor = addr + size + GUARD_BYTES
            return addr

        a_addr = at_edge(m * a_stride, offsets[0])
        # The port streams back to back (W_STRIDE = one stream), as pack_weights lays them out.
        w_bytes = packed_size(n, k, cfg.cols, w_format)
        w_addr = at_edge(w_bytes, offsets[1])
        c_addr = at_edge(m * c_stride, offsets[2])
        w_stride = w_bytes // cfg.weight_ports if cfg.weight_ports > 1 else 0
        return Job(a_addr, w_addr, c_addr, m, n, k, a_stride, c_stride, w_stride, int(w_format))

    def pack(self, w) -> PackedWeights:
        """int8 ``[N, K]`` or ``Int4Weights`` packed for this build."""
        if isinstance(w, Int4Weights):
            return pack_int4(w, self.config.cols, self.config.weight_ports)
        return pack_weights(w, self.config.cols, self.config.weight_ports)

    def load_operands(self, job: Job, a: np.ndarray, w: np.ndarray, rng: random.Random) -> bytes:
        """Write A (rows at A_STRIDE, random padding), packed W, and random guard
        bytes over the whole C area; return the C area's initial bytes."""
        packed = self.pack(w)
        for row in range(job.m):
            line = bytearray(rng.randbytes(job.a_stride))
            line[:job.k] = a[row].tobytes()
            self.mem.write(job.a_addr + row * job.a_stride, bytes(line))
        for port, stream in enumerate(packed.streams()):
            self.mem.write(job.w_addr + port * job.w_stride, stream.tobytes())
        area = rng.randbytes(job.m * job.c_stride + 2 * self.guard)
        self.mem.write(job.c_addr - self.guard, area)
        return area

    def expected_c_area(self, job: Job, a: np.ndarray, w: np.ndarray, before: bytes) -> bytes:
        """The C area after a correct job: golden results, every other byte untouched."""
        c = golden_matmul(a, self.pack(w))
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
        fmt = WeightFormat.INT4 if isinstance(w, Int4Weights) else WeightFormat.INT8
        job = job or self.place(a.shape[0], w.shape[0], a.shape[1], rng, w_format=fmt)
        return job, self.load_operands(job, a, w, rng)

    def verify(self, job: Job, a: np.ndarray, w: np.ndarray, before: bytes, result: JobResult,
               code: int = ErrorCode.OK):
        """The job ended with ``code``, C is golden, nothing else in the C area changed,
        and its bursts (when monitored) and beat counters follow ``hdl.spec.dma``."""
        assert result.err_code == code, (f"job {job} ended with {ErrorCode(result.err_code).name} "
                                         f"at {result.err_addr:#x}, want {ErrorCode(code).name}")
        after = self.c_area(job, before)
        expected = self.expected_c_area(job, a, w, before)
        if after != expected:
            self._explain_mismatch(job, after, expected)
        for port, (mon, before) in enumerate(zip(self.monitors, self._traffic_before)):
            _same_bursts(f"{mon.prefix} AR", mon.ars[before[0]:], read_bursts(self.config, job, port))
            _same_bursts(f"{mon.prefix} AW", mon.aws[before[1]:],
                         [burst[:2] for burst in write_bursts(self.config, job)] if port == 0 else [])
        want_rd, want_wr = beat_counts(self.config, job)
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


def _same_bursts(kind: str, seen: list[tuple[int, int]], planned: list[tuple[int, int]]):
    """``seen`` bursts equal the ``planned`` ones; else name the first difference."""
    if seen == planned:
        return
    index = next((i for i, pair in enumerate(zip(seen, planned)) if pair[0] != pair[1]),
                 min(len(seen), len(planned)))
    got = f"{seen[index][0]:#x}+{seen[index][1]}" if index < len(seen) else "nothing"
    want = f"{planned[index][0]:#x}+{planned[index][1]}" if index < len(planned) else "nothing"
    raise AssertionError(f"{kind} burst {index} of {len(planned)} planned: got {got}, want {want}")
