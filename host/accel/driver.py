"""The register-level driver: one code path for the simulator and the boards.

The driver knows the register map (``hdl.spec.regmap``), the ``AccelConfig`` and the
packed weight layout (``host.accel.pack``). It knows nothing about LLMs. It talks to a
platform through ``host.accel.bus.RegisterBus`` and ``host.accel.bus.DeviceMemory``.

Guarantees:

- ``Driver(...)`` reads ID, VERSION and the capability registers. It refuses
  (``ConfigMismatch``) an accelerator whose build differs from the expected config.
- ``load_weights`` places packed weights in device memory once. ``matmul`` then only
  moves activations and results.
- Every ``ERR_CODE`` becomes an exception naming the code, its meaning and the
  faulting address. The accelerator is soft-reset before the exception leaves, so
  the next job can run.
- A job that does not finish within its timeout raises ``AcceleratorTimeout``,
  after a soft reset. Every wait has a deadline on the bus's clock (``bus.now``),
  and its error says what was awaited and for how long. A timeout that is not a
  finite positive number is refused (``ValueError``) before anything waits on it.
- Every error here is an ``AcceleratorError``: a ``host.errors.SystoleError``, so a
  command line prints it as one line.
- ``compiled_job`` hands a planned job to compiled code that submits it itself (the
  fused decoder's kernels on the KV260): the same plan, so the same register writes in
  the same order; a failure comes back through ``compiled_job_failed``, which runs the
  error path above (soft reset, the same one-line error).
"""

from __future__ import annotations

import ctypes
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from hdl.spec.config import AccelConfig
from hdl.spec.formats import WeightFormat, tile_beats, tokens_per_block
from hdl.spec.job import Job, check, row_strides
from hdl.spec.regmap import ID_MAGIC, REGISTERS, VERSION, ErrorCode, by_name, const_value

from ..errors import SystoleError
from .bus import DeviceMemory, RegisterBus
from .pack import Int4Weights, PackedWeights, pack_int4, pack_weights

__all__ = ["AcceleratorError", "ConfigMismatch", "JobRefused", "DmaError", "AcceleratorTimeout",
           "UnsupportedFormat",
           "JobStats", "DeviceBuffer", "WeightBuffer", "CompiledJob", "Driver"]

_OFF = {reg.name: reg.offset for reg in REGISTERS}
_CTRL = {f.name: f.mask for f in by_name("CTRL").fields}
_IER_DONE = by_name("IER").fields[0].mask
_ISR_DONE = by_name("ISR").fields[0].mask
_STATUS_BUSY = by_name("STATUS").fields[0].mask
_DEVICE_ALIGN = 4096        # buffers start on a page: no burst ever straddles two buffers
_LINE = 64                  # C starts on its own cache line after A in the job's scratch
# A job whose A and C span at most this many bytes syncs one range over both, for the
# device and for the CPU (so consecutive jobs of a shape rewrite no sync attribute);
# a larger one syncs A for the device and C for the CPU, so the 1 MiB classifier C is
# not cleaned before its job nor A invalidated after. The cost weighed: the extra lines
# maintained (cache operations on lines that need none) against the sysfs writes saved.
_JOINT_SYNC_BYTES = 32 << 10
_MAX_PLANS = 4096            # planned matmul jobs kept (a model's layers x a few M)
_CYCLES_TRIES = 4           # CYCLES_HI moves every 2^32 cycles: two misses in a row mean a broken bus


def _check_positive(name: str, value: float, unit: str = " of seconds") -> float:
    """``value`` if it is a finite number > 0: a NaN deadline would never pass."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name}={value!r} must be a finite number{unit} > 0")
    return value


class AcceleratorError(SystoleError, RuntimeError):
    """Base class of every error the accelerator reports."""


class ConfigMismatch(AcceleratorError):
    """The accelerator's identity or capabilities differ from the expected build."""


class JobRefused(AcceleratorError):
    """The hardware refused a job before any DMA traffic (bad dims, alignment, ...)."""

    def __init__(self, code: ErrorCode, address: int, by: str = "accelerator"):
        self.code, self.address = code, address
        super().__init__(f"{by} refused the job: {code.name} ({code.doc})"
                         f"{f', address {address:#x}' if address else ''}")


class DmaError(AcceleratorError):
    """A DMA transfer got an error response; the job ended early."""

    def __init__(self, code: ErrorCode, address: int, port: int = 0, masters: tuple[str, ...] = ()):
        self.code, self.address, self.port = code, address, port
        where = ""
        if code == ErrorCode.DMA_READ and len(masters) > 1:
            name = masters[port] if port < len(masters) else f"port {port}"
            where = f" on read port {port} ({name})"
        super().__init__(f"accelerator DMA error: {code.name} ({code.doc}) at address {address:#x}{where}")


class UnsupportedFormat(ConfigMismatch, ValueError):
    """The weights' format is one the accelerator's CAP_FORMATS does not list."""


class AcceleratorTimeout(AcceleratorError):
    """A job did not finish in time; the accelerator was soft-reset."""


@dataclass(frozen=True)
class JobStats:
    """Counters of one finished job (from the hardware's performance registers)."""

    busy_cycles: int
    stall_cycles: int
    read_beats: int
    write_beats: int


@dataclass(frozen=True)
class DeviceBuffer:
    """A range of device memory owned by the driver."""

    offset: int            # from the start of the DeviceMemory window
    device_address: int    # what the accelerator's registers get
    nbytes: int


@dataclass(frozen=True)
class WeightBuffer:
    """Packed weights resident in device memory."""

    buffer: DeviceBuffer
    n: int
    k: int
    w_stride: int = 0      # W_STRIDE: bytes from one port's stream to the next
    w_format: WeightFormat = WeightFormat.INT8


@dataclass
class _Allocator:
    """First-fit allocator over the device memory window, page-aligned."""

    size: int
    free: list[tuple[int, int]] = field(default_factory=list)   # (offset, nbytes), sorted

    def __post_init__(self):
        self.free = [(0, self.size)]

    def alloc(self, nbytes: int) -> int:
        need = -(-nbytes // _DEVICE_ALIGN) * _DEVICE_ALIGN
        for i, (offset, length) in enumerate(self.free):
            if length >= need:
                self.free[i:i + 1] = [(offset + need, length - need)] if length > need else []
                return offset
        largest = max((length for _, length in self.free), default=0)
        raise MemoryError(f"device memory exhausted: need {need} bytes, largest free block {largest} "
                          f"of {self.size}")

    def release(self, offset: int, nbytes: int) -> None:
        need = -(-nbytes // _DEVICE_ALIGN) * _DEVICE_ALIGN
        self.free.append((offset, need))
        self.free.sort()
        merged: list[tuple[int, int]] = []
        for off, length in self.free:
            if merged and merged[-1][0] + merged[-1][1] == off:
                merged[-1] = (merged[-1][0], merged[-1][1] + length)
            else:
                merged.append((off, length))
        self.free = merged


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


@dataclass
class _JobPlan:
    """A checked job, ready to run: ``(offset, word)`` register writes and its timeout
    (the writes also as uint32 arrays, for a bus that replays plans in compiled code),
    and ``after``: what the last run read after ap_done (``_AFTER_JOB``)."""

    words: tuple[tuple[int, int], ...]
    timeout_s: float
    what: str
    offsets: np.ndarray = field(default=None, compare=False)
    values: np.ndarray = field(default=None, compare=False)
    after: np.ndarray = field(default=None, compare=False)
    replay_args: tuple | None = field(default=None, compare=False)   # set by the first replay

    def __post_init__(self):
        self.offsets = np.array([o for o, _ in self.words], np.uint32)
        self.values = np.array([v for _, v in self.words], np.uint32)
        self.after = np.zeros(len(_AFTER_JOB), np.uint32)

    @property
    def arrays(self) -> tuple[int, int, int]:
        """``(offsets address, values address, count)`` for a compiled replay (the plan
        keeps both arrays alive)."""
        return self.offsets.ctypes.data, self.values.ctypes.data, len(self.words)


# What the driver reads after a job, in order: the counters (JobStats) and ERR_CODE
# (PERF_BUSY first and ERR_CODE last: CompiledJob's contract).
_AFTER_JOB = ("PERF_BUSY", "PERF_STALL", "PERF_RD_BEATS", "PERF_WR_BEATS", "ERR_CODE")
_AFTER_JOB_OFFSETS = np.array([_OFF[name] for name in _AFTER_JOB], np.uint32)
# A CompiledJob's words: systole_job's address, then its 14 arguments in order.
COMPILED_JOB_WORDS = 15
# A compiled submission's status when a link's transport failed (firmware/udp_bulk.c's
# systole_udp_job); systole_job's own are 1, 0, -1 and -2.
JOB_LINK_FAILED = -3


@dataclass(eq=False)
class CompiledJob:
    """``matmul(a, weights)`` for compiled code to submit itself, into ``c``.

    ``words`` (uint64, ``COMPILED_JOB_WORDS``) are ``firmware/replay.c``'s ``systole_job``
    address and then its 14 arguments in order: the mapped register page, the plan's
    register writes (the arrays ``_execute`` replays), ap_start/ap_done, the timeout in
    ns, the read-back offsets and the plan's ``after`` array (its first word PERF_BUSY,
    its last ERR_CODE), and a ``JobIo`` of the plan's bound to ``a`` and ``c``. The
    object keeps every array those addresses point at alive; it holds while
    ``Driver.compiled_epoch()`` returns the ``epoch`` it was made in.

    The caller calls ``systole_job(words[1:])`` and, unless it returned 1 with ERR_CODE
    0, ``Driver.compiled_job_failed(job, status)``. ``submit()`` makes that call from
    Python (tests, and the Ethernet projection's timing of it)."""

    words: np.ndarray
    after: np.ndarray
    epoch: tuple
    plan: "_JobPlan"
    io: object
    a: np.ndarray
    c: np.ndarray
    _call: tuple | None = field(default=None, repr=False)

    def submit(self) -> int:
        """Call the function at ``words[0]`` with ``words[1:]``, as compiled code does; its status."""
        if self._call is None:
            function = ctypes.CFUNCTYPE(ctypes.c_int, *[ctypes.c_uint64] * (COMPILED_JOB_WORDS - 1))
            self._call = (function(int(self.words[0])), [int(word) for word in self.words[1:]])
        function, arguments = self._call
        return function(*arguments)


class Driver:
    """Runs matmul jobs on one accelerator through a ``RegisterBus`` + ``DeviceMemory``."""

    def __init__(self, bus: RegisterBus, memory: DeviceMemory, config: AccelConfig,
                 use_irq: bool | None = None, timeout_scale: float = 20.0, min_timeout_s: float = 1e-3,
                 shared: DeviceMemory | None = None):
        """``memory`` holds the weights (and everything ``alloc`` gives). ``shared``, when
        given, holds what the CPU and the accelerator share job by job: each job's A and
        C (the scratch). On the KV260 with ``config.coherent_io`` it is the I/O-coherent
        u-dma-buf, whose syncs cost nothing (the RTL marks A and C bursts coherent);
        None: the scratch lives in ``memory`` too."""
        self.bus, self.memory, self.config = bus, memory, config
        self.shared = memory if shared is None else shared
        if shared is not None and shared is not memory:
            lo, hi = memory.device_address, memory.device_address + memory.size
            if shared.device_address < hi and lo < shared.device_address + shared.size:
                raise ValueError(f"shared memory [{shared.device_address:#x}, "
                                 f"{shared.device_address + shared.size:#x}) overlaps the weights' "
                                 f"[{lo:#x}, {hi:#x})")
        self.use_irq = bus.has_irq if use_irq is None else use_irq
        self.timeout_scale = _check_positive("timeout_scale", timeout_scale, unit="")
        self.min_timeout_s = _check_positive("min_timeout_s", min_timeout_s)
        self.last_stats: JobStats | None = None
        self.check_identity()
        self.formats = self.bus.read32(_OFF["CAP_FORMATS"])
        self._allocator = _Allocator(memory.size)
        self._shared_allocator = self._allocator if self.shared is memory else _Allocator(self.shared.size)
        self._scratch: dict[str, DeviceBuffer] = {}
        self._plans: dict[tuple, tuple] = {}   # (id(weights), M) -> _plan_matmul's entry
        self._scratch_generation = 0
        # A bus with mapped registers may replay a plan in compiled code (polling only),
        # and with memory that says where it lives, a matmul's memory traffic with it.
        waits = not self.use_irq or getattr(bus, "replay_waits_on_device", False)   # (e.g. a link bridge)
        self._replay = getattr(bus, "replay", None) if waits else None
        io_spec = getattr(self.shared, "io_spec", None)
        # (``bus.job`` runs it, ``bus.job_io(**fields)`` describes the memory traffic.)
        self._job = getattr(bus, "job", None) if self._replay is not None and io_spec is not None else None
        self._io_spec = io_spec() if self._job is not None else None
        # (and ``bus.job_entry()`` lets compiled code submit the plans: ``compiled_job``)
        self._job_entry = getattr(bus, "job_entry", None) if self._job is not None else None
        # (a bus whose jobs are prepared per plan, the link's windows: ``bus.prepare_job``)
        self._prepare_job = getattr(bus, "prepare_job", None) if self._job_entry is not None else None
        self.soft_reset()
        self.bus.write32(_OFF["GIE"], 1 if self.use_irq else 0)
        self.bus.write32(_OFF["IER"], _IER_DONE if self.use_irq else 0)

    # -- identity ------------------------------------------------------------------
    def check_identity(self) -> None:
        """Raise ``ConfigMismatch`` unless every constant register matches ``config``."""
        ident = self.bus.read32(_OFF["ID"])
        if ident != ID_MAGIC:
            raise ConfigMismatch(f"no Systole accelerator on this bus: ID reads {ident:#010x}, "
                                 f"expected {ID_MAGIC:#010x}")
        mismatches = []
        for reg in REGISTERS:
            if reg.kind != "const":
                continue
            want, got = const_value(reg, self.config), self.bus.read32(reg.offset)
            if want != got:
                mismatches.append(f"{reg.name} reads {got:#x}, config '{self.config.name}' expects {want:#x}")
        if mismatches:
            raise ConfigMismatch("accelerator build does not match the configuration: "
                                 + "; ".join(mismatches)
                                 + f" (driver speaks register map v{VERSION[0]}.{VERSION[1]})")

    # -- memory --------------------------------------------------------------------
    def alloc(self, nbytes: int) -> DeviceBuffer:
        """A page-aligned buffer of device memory."""
        if nbytes <= 0:
            raise ValueError(f"buffer size must be positive, got {nbytes}")
        offset = self._allocator.alloc(nbytes)
        return DeviceBuffer(offset, self.memory.device_address + offset, nbytes)

    def free(self, buffer: DeviceBuffer) -> None:
        self._allocator.release(buffer.offset, buffer.nbytes)

    def load_weights(self, packed: PackedWeights) -> WeightBuffer:
        """Copy packed weights into device memory (once per model)."""
        if (packed.cols, packed.ports) != (self.config.cols, self.config.weight_ports):
            raise ValueError(f"weights packed for cols={packed.cols} over {packed.ports} port(s); "
                             f"this accelerator has cols={self.config.cols} over "
                             f"{self.config.weight_ports}")
        if packed.k > self.config.max_k:
            raise ValueError(f"K={packed.k} exceeds the accelerator's max K {self.config.max_k} "
                             f"(activation buffer {self.config.act_buffer_bytes} bytes)")
        self.check_format(packed.format)
        # One page-aligned buffer per port: each stream starts on a 4 KiB page, so every
        # port's bursts are whole 4 KiB ones (W_STRIDE = the stream rounded up to pages).
        stride = _round_up(packed.stream_bytes, _DEVICE_ALIGN) if packed.ports > 1 else 0
        buffer = self.alloc(stride * (packed.ports - 1) + packed.stream_bytes)
        for port, stream in enumerate(packed.streams()):
            self.memory.write(buffer.offset + port * stride, stream.reshape(-1))
        self.memory.sync_for_device(buffer.offset, buffer.nbytes)
        return WeightBuffer(buffer, packed.n, packed.k, stride, packed.format)

    def check_format(self, fmt: WeightFormat) -> None:
        """``UnsupportedFormat`` unless the bitstream's CAP_FORMATS lists ``fmt``."""
        if not self.formats >> int(fmt) & 1:
            runs = [f.name.lower() for f in WeightFormat if self.formats >> int(f) & 1]
            raise UnsupportedFormat(
                f"this accelerator does not run {WeightFormat(fmt).name.lower()} weights: its "
                f"CAP_FORMATS is {self.formats:#x} ({', '.join(runs) or 'none'}); choose a quant "
                "scheme with those weights or a bitstream built with them")

    def load_matrix(self, w: np.ndarray | Int4Weights) -> WeightBuffer:
        """Pack an int8 ``[N, K]`` matrix (or ``Int4Weights``) for this accelerator and load it."""
        if isinstance(w, Int4Weights):
            self.check_format(WeightFormat.INT4)
            return self.load_weights(pack_int4(w, self.config.cols, self.config.weight_ports))
        return self.load_weights(pack_weights(w, self.config.cols, self.config.weight_ports))

    def _scratch_buffer(self, nbytes: int) -> tuple[DeviceBuffer, DeviceMemory]:
        """A job's scratch of at least ``nbytes`` and the memory it is in: ``shared``, or,
        when ``shared`` is a window of its own too small for it (a long prompt's
        prefill), a second scratch in ``memory`` (synced as without ``shared``: the
        coherent attributes of the A and C bursts do no harm there); decode jobs stay in
        ``shared``."""
        nbytes = _round_up(nbytes, _DEVICE_ALIGN)
        if self.shared is self.memory or nbytes <= self.shared.size:
            name, window, allocator = "job", self.shared, self._shared_allocator
        else:
            name, window, allocator = "job-large", self.memory, self._allocator
        current = self._scratch.get(name)
        if current is None or current.nbytes < nbytes:
            if current is not None:
                allocator.release(current.offset, current.nbytes)
            offset = allocator.alloc(nbytes)
            current = self._scratch[name] = DeviceBuffer(offset, window.device_address + offset, nbytes)
            self._scratch_generation += 1      # every plan that used the old one is stale
        return current, window

    # -- jobs ----------------------------------------------------------------------
    def matmul(self, a: np.ndarray, weights: WeightBuffer) -> np.ndarray:
        """``int32[M, N] = a (int8 [M, K]) x W^T`` on the accelerator."""
        a = np.asarray(a)
        if a.dtype != np.int8 or a.ndim != 2:
            raise TypeError(f"activations must be int8 [M, K], got {a.dtype} {a.shape}")
        m, k = a.shape
        if k != weights.k:
            raise ValueError(f"activations have K={k}, weights have K={weights.k}")
        # A decode token runs the same jobs every time: plan each once (strides, scratch
        # buffers, registers, the rules' verdict, the timeout) and replay it; the
        # register sequence is run_job's. A plan holds while the scratch buffers stay.
        _, _, a_buf, c_buf, a_stride, c_stride, plan, io, syncs, shared = self._planned(weights, m, k)
        if io is not None:                     # the whole job in one compiled call
            a = np.ascontiguousarray(a)
            out = np.empty((m, weights.n), np.int32)
            io.a = a.__array_interface__["data"][0]
            io.c = out.__array_interface__["data"][0]
            self._execute(plan, io)
            return out
        if a_stride == k:
            shared.write(a_buf.offset, a)
        else:
            staged = np.zeros((m, a_stride), np.int8)
            staged[:, :k] = a
            shared.write(a_buf.offset, staged)
        shared.sync_for_device(*syncs[0])
        self._execute(plan)
        shared.sync_for_cpu(*syncs[1])
        rows = shared.read(c_buf.offset, m * c_stride).view(np.int32).reshape(m, c_stride // 4)
        return np.ascontiguousarray(rows[:, :weights.n])

    def _planned(self, weights: WeightBuffer, m: int, k: int) -> tuple:
        """``_plan_matmul``'s entry for ``weights`` at ``m`` rows, planned once."""
        cached = self._plans.get((id(weights), m))
        if cached is None or cached[0] is not weights or cached[1] != self._scratch_generation:
            cached = self._plan_matmul(weights, m, k)
        return cached

    # -- jobs submitted by compiled code -----------------------------------------------
    def compiled_epoch(self) -> tuple | None:
        """What a ``CompiledJob`` depends on beyond its own arrays: the scratch buffers'
        generation and the bus's ``job_entry()`` (systole_job's address and the mapped
        page); None when this driver has no compiled job path (or its bus is closed)."""
        entry = self._job_entry() if self._job_entry is not None else None
        return None if entry is None else (self._scratch_generation, *entry)

    def compiled_job(self, weights: WeightBuffer, a: np.ndarray, c: np.ndarray) -> CompiledJob | None:
        """``matmul(a, weights)`` into ``c`` as a ``CompiledJob`` (the plan ``matmul``
        replays), or None when this driver has no compiled job path: a bus without
        ``job``/``job_entry`` (mapped registers and ``firmware/replay.c``), interrupts,
        or memory without ``io_spec``. ``a`` (int8 ``[M, K]``) and ``c`` (int32
        ``[M, N]``) must be C-contiguous; the job reads and writes them in place."""
        epoch = self.compiled_epoch()
        if epoch is None:
            return None
        if not (a.dtype == np.int8 and a.ndim == 2 and a.shape[1] == weights.k and a.flags.c_contiguous):
            raise TypeError(f"activations must be C-contiguous int8 [M, {weights.k}], got {a.dtype} {a.shape}")
        m = a.shape[0]
        if not (c.dtype == np.int32 and c.shape == (m, weights.n) and c.flags.c_contiguous
                and c.flags.writeable):
            raise TypeError(f"results must be writeable C-contiguous int32 [{m}, {weights.n}], "
                            f"got {c.dtype} {c.shape}")
        plan, io = self._planned(weights, m, weights.k)[6:8]
        if self._prepare_job is not None and self._prepare_job(*self._job_args(plan), io) is None:
            return None
        io = io.bound(a.ctypes.data, c.ctypes.data)     # the plan's traffic, bound to a and c
        offsets, values, count = plan.arrays
        words = np.array([epoch[1], epoch[2], _OFF["STATUS"], _STATUS_BUSY, offsets, values, count,
                          _OFF["CTRL"], _CTRL["ap_start"], _CTRL["ap_done"], int(plan.timeout_s * 1e9),
                          _AFTER_JOB_OFFSETS.ctypes.data, len(_AFTER_JOB), plan.after.ctypes.data,
                          ctypes.addressof(io)], np.uint64)
        return CompiledJob(words, plan.after, epoch, plan, io, a, c)

    def compiled_job_failed(self, job: CompiledJob, status: int) -> None:
        """The error path of a ``CompiledJob`` whose submission returned ``status``
        (``systole_job``'s -2, -1 or 0, or 2: done with ERR_CODE set): the exception
        ``matmul`` raises for it, after the same soft reset; -3 (``JOB_LINK_FAILED``: a
        link's ``systole_udp_job``) the bus's error (``bus.job_failed``)."""
        if status == JOB_LINK_FAILED:
            self.bus.job_failed(job.io)
        self._outcome(job.plan, 1 if status == 2 else status)
        raise AcceleratorError(f"{job.plan.what}: compiled submission returned status {status}, "
                               "which is not a failure (expected -2, -1, 0 or 2)")

    def compiled_jobs_ran(self, job: CompiledJob) -> JobStats:
        """Note that compiled code ran jobs, ``job`` the last: ``last_stats`` become its
        counters."""
        busy_cycles, stall, rd_beats, wr_beats, _ = job.after.tolist()
        self.last_stats = JobStats(busy_cycles, stall, rd_beats, wr_beats)
        return self.last_stats

    def _plan_matmul(self, weights: WeightBuffer, m: int, k: int) -> tuple:
        """Plan ``matmul``'s job for ``weights`` at ``m`` rows (see ``matmul``).

        A and C share one scratch buffer: A's rows at its start, C's from the next cache
        line after them. ``syncs`` are the job's ``(offset, nbytes)`` for the device and
        for the CPU: one range from A's start to C's end for both when it spans at most
        ``_JOINT_SYNC_BYTES`` (every Gemma 3 270M decode job but the classifier: the
        range offset is then the scratch's start for every such job, and only its size
        changes with the shape), else A's rows and C's rows."""
        a_stride, c_stride = row_strides(self.config, k, weights.n)
        a_bytes, c_bytes = m * a_stride, m * c_stride
        c_at = _round_up(a_bytes, max(_LINE, self.config.bus_bytes))
        scratch, window = self._scratch_buffer(c_at + c_bytes)
        a_buf = DeviceBuffer(scratch.offset, scratch.device_address, a_bytes)
        c_buf = DeviceBuffer(scratch.offset + c_at, scratch.device_address + c_at, c_bytes)
        if c_at + c_bytes <= _JOINT_SYNC_BYTES:
            syncs = ((a_buf.offset, c_at + c_bytes),) * 2
        else:
            syncs = ((a_buf.offset, a_bytes), (c_buf.offset, c_bytes))
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()
        job = Job(a_addr=a_buf.device_address, w_addr=weights.buffer.device_address,
                  c_addr=c_buf.device_address, m=m, n=weights.n, k=k, a_stride=a_stride,
                  c_stride=c_stride, w_stride=weights.w_stride, w_format=int(weights.w_format))
        plan = self._plan(job, None, True)
        io = None
        if self._job is not None:
            base, fds, readback, sync_state = self._io_spec if window is self.shared else window.io_spec()
            io = self.bus.job_io(a_buf=base + a_buf.offset, c_buf=base + c_buf.offset, m=m, k=k,
                                 a_stride=a_stride, c_row_bytes=4 * weights.n, c_stride=c_stride,
                                 readback=int(readback), sync_state=sync_state)
            io.fds[:] = fds if fds is not None else (-1,) * 5
            direction = getattr(window, "BIDIRECTIONAL", 0)
            io.sync_device[:] = (*syncs[0], direction)
            io.sync_cpu[:] = (*syncs[1], direction)
        entry = self._plans[(id(weights), m)] = (weights, self._scratch_generation, a_buf, c_buf,
                                                 a_stride, c_stride, plan, io, syncs, window)
        return entry

    def run_job(self, *, a_addr: int, w_addr: int, c_addr: int, m: int, n: int, k: int,
                a_stride: int, c_stride: int, w_stride: int = 0, w_format: int = WeightFormat.INT8,
                timeout_s: float | None = None, precheck: bool = True) -> JobStats:
        """Program one job, start it, wait for it; raise on any error code.

        ``ValueError`` for a value no register can hold; ``JobRefused`` (raised here,
        before any register is written) for a job the rules refuse, unless
        ``precheck`` is False.
        """
        plan = self._plan(Job(a_addr=a_addr, w_addr=w_addr, c_addr=c_addr, m=m, n=n, k=k,
                              a_stride=a_stride, c_stride=c_stride, w_stride=w_stride,
                              w_format=int(w_format)), timeout_s, precheck)
        return self._execute(plan)

    def _plan(self, job: Job, timeout_s: float | None, precheck: bool) -> "_JobPlan":
        """Everything about ``job`` that does not change from run to run: its register
        writes (in the order ``run_job`` makes them), the rules' verdict, the timeout."""
        words = tuple((_OFF[register], word) for register, word in job.registers().items())
        if precheck:
            code, address = check(self.config, job)
            if code != ErrorCode.OK:
                raise JobRefused(code, address, by="the driver (before the hardware)")
        if timeout_s is None:
            fmt = job.w_format if job.w_format in tuple(WeightFormat) else WeightFormat.INT8
            tokens = tokens_per_block(fmt, self.config.rows)
            ideal = -(-job.m // tokens) * (-(-job.n // self.config.cols) * tile_beats(fmt, job.k) + job.k)
            timeout_s = max(self.min_timeout_s,
                            self.timeout_scale * ideal / (self.config.clock_mhz * 1e6))
        _check_positive("timeout_s", timeout_s)
        return _JobPlan(words, timeout_s, f"job M={job.m} N={job.n} K={job.k}")

    @staticmethod
    def _job_args(plan: "_JobPlan") -> tuple:
        """A bus's ``job``/``replay`` arguments for ``plan`` (the read-backs into ``plan.after``)."""
        args = plan.replay_args
        if args is None:
            args = plan.replay_args = (_OFF["STATUS"], _STATUS_BUSY, *plan.arrays, _OFF["CTRL"],
                                       _CTRL["ap_start"], _CTRL["ap_done"], plan.timeout_s,
                                       _AFTER_JOB_OFFSETS.ctypes.data, len(_AFTER_JOB), plan.after.ctypes.data)
        return args

    def _execute(self, plan: "_JobPlan", io=None) -> JobStats:
        """Run a planned job: the busy check, its register writes, ap_start, the wait,
        the counters and the error registers (with ``io``, a ``JobIo``, also the job's
        memory traffic, all in one compiled call)."""
        bus = self.bus
        read = bus.read32
        if self._replay is not None:           # the same sequence, performed by compiled code
            args = plan.replay_args or self._job_args(plan)
            done = self._replay(*args) if io is None else self._job(*args, io)
        elif read(_OFF["STATUS"]) & _STATUS_BUSY:
            done = -1
        else:
            write = bus.write32
            for offset, word in plan.words:
                write(offset, word)
            write(_OFF["CTRL"], _CTRL["ap_start"])
            done = self._wait_done(plan.timeout_s)
            if done:
                after = plan.after
                for i, offset in enumerate(_AFTER_JOB_OFFSETS.tolist()):
                    after[i] = read(offset)
        return self._outcome(plan, done)

    def _outcome(self, plan: "_JobPlan", done: int) -> JobStats:
        """A run of ``plan`` that returned ``done`` (1 finished, 0 timed out, -1 busy
        before the first write, -2 a failed cache-maintenance write): its ``JobStats``
        from ``plan.after``, or the exception (a timeout after a soft reset)."""
        read = self.bus.read32
        if done == -2:
            raise OSError(f"{plan.what}: a u-dma-buf cache-maintenance write failed")
        if done == -1:
            raise AcceleratorError("accelerator is busy with another job; call soft_reset() first")
        if not done:
            self.soft_reset()
            how = "waiting for its interrupt" if self.use_irq else "polling ap_done"
            raise AcceleratorTimeout(
                f"{plan.what} did not finish within {plan.timeout_s * 1e3:.3f} ms ({how}); "
                "the accelerator was soft-reset")
        busy_cycles, stall, rd_beats, wr_beats, code = plan.after.tolist()
        self.last_stats = JobStats(busy_cycles, stall, rd_beats, wr_beats)
        if code != ErrorCode.OK:
            address = read(_OFF["ERR_ADDR_LO"]) | read(_OFF["ERR_ADDR_HI"]) << 32
            try:
                error = ErrorCode(code)
            except ValueError:
                raise AcceleratorError(f"accelerator reported unknown error code {code:#x}") from None
            if error in (ErrorCode.DMA_READ, ErrorCode.DMA_WRITE):
                raise DmaError(error, address, read(_OFF["ERR_PORT"]), self.config.weight_masters)
            raise JobRefused(error, address)
        return self.last_stats

    def _wait_done(self, timeout_s: float) -> bool:
        if not self.use_irq:
            return self._poll_done(timeout_s)
        self.bus.wait_irq(timeout_s)
        if self._clear_interrupts() & _ISR_DONE:
            self.bus.read32(_OFF["CTRL"])                     # clear ap_done (clear on read)
            return True
        return bool(self.bus.read32(_OFF["CTRL"]) & _CTRL["ap_done"])

    def _clear_interrupts(self) -> int:
        """Clear every set ISR bit (toggle-on-write: write back exactly the set bits)."""
        isr = self.bus.read32(_OFF["ISR"])
        if isr:
            self.bus.write32(_OFF["ISR"], isr)
        return isr

    def _poll_done(self, timeout_s: float) -> bool:
        deadline = self.bus.now() + timeout_s
        while True:
            if self.bus.read32(_OFF["CTRL"]) & _CTRL["ap_done"]:
                return True
            if self.bus.now() > deadline:
                return False

    def soft_reset(self, timeout_s: float = 0.1) -> None:
        """End any job and return the engine to idle; raise if it is not idle within ``timeout_s``."""
        _check_positive("timeout_s", timeout_s)
        self.bus.write32(_OFF["CTRL"], _CTRL["soft_reset"])
        deadline = self.bus.now() + timeout_s
        while not self.bus.read32(_OFF["CTRL"]) & _CTRL["ap_idle"]:
            if self.bus.now() > deadline:
                raise AcceleratorTimeout(f"accelerator did not return to idle (CTRL.ap_idle) within "
                                         f"{timeout_s * 1e3:g} ms of a soft reset; the memory system "
                                         "may be hung (power-cycle or reload)")
        self._clear_interrupts()
        self.bus.read32(_OFF["CTRL"])                         # drop a stale ap_done

    def cycles(self) -> int:
        """The free-running cycle counter (64-bit, read consistently)."""
        for _ in range(_CYCLES_TRIES):
            high = self.bus.read32(_OFF["CYCLES_HI"])
            low = self.bus.read32(_OFF["CYCLES_LO"])
            if self.bus.read32(_OFF["CYCLES_HI"]) == high:
                return high << 32 | low
        raise AcceleratorError(f"CYCLES_HI changed between reads {_CYCLES_TRIES} times in a row: the "
                               "register bus returns garbage")
