"""The host step on the KV260's own CPU: counts that do not depend on a CPU, and the
Cortex-A53 time estimated from them (issue 16).

On the KV260 the host is a 1.333 GHz quad Cortex-A53, not the x86 machine the tests
run on. This module counts what one decode token asks of the host, then prices the
counts with a stated CPU model.

**Counts per decode token** (``count``), for a model at a context length:

- ``jobs``: accelerator jobs (``host.perf.projection.model_matmuls``, K split at
  ``max_k`` as the runtime does);
- ``flops`` and ``transcendentals`` (exp, tanh) of the host step, and ``bytes`` it
  reads and writes, from the per-op inventory ``host_ops`` (norms, quantize and
  dequantize, RoPE, the KV cache, attention, GeGLU/SwiGLU, the greedy classifier's
  argmax over the int32 results): formulas in the model's dimensions;
- ``python_calls``: Python-level calls (functions and builtins, ``sys.setprofile``'s
  ``call`` and ``c_call`` events) of real decode tokens, counted while the real
  transformer runs on the real driver over ``InstantDevice`` (registers that finish a
  job at ``ap_start``), detokenizer excluded;
- ``compiled_calls``: Python -> compiled calls, the fused decoder's own count
  (``FusedDecoder.counts``: on the KV260 classes the whole token is one call,
  ``token_jobs``; elsewhere jobs + 1), plus one firmware/replay.c call per job where
  the driver replays its plans and the kernels do not submit the jobs;
- ``syscalls``: per job, counted by ``strace -c`` around a child process that runs
  a decode token's jobs, in order (``token_jobs``), through the driver over the KV260
  platform's own classes (``host.platforms.kv260``: ``UioRegisters``,
  ``UdmabufMemory``) on ordinary files.

**The estimate** (``estimate``): every count times a constant of ``CpuModel``::

    t = flops / flops_per_s + transcendentals * transcendental_s + bytes / bytes_per_s
        + python_calls * python_call_s + compiled_calls * compiled_call_s + syscalls * syscall_s

The terms are added, not overlapped: an in-order core with a single outstanding
stream is the conservative reading. ``A53`` states its constants and where they come
from; ``measure_cpu_model()`` measures the same constants on this machine, so the
model can be checked here against a measured host time before its A53 figure is
believed.

**W4A8** (the projection's last columns): the default W4A8 scheme's weights formats
for the accelerator, and its host step: the counts above with the greedy classifier
step of ``shortlist_argmax`` (``classifier_op``; its scanned share measured on an int4
classifier, ``argmax_scan_share(shortlist=...)``) and one more Python and compiled
call per token.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hdl.spec.config import AccelConfig, preset
from hdl.spec.regmap import REGISTERS, by_name, const_value

from ..accel.bus import MemoryWindow
from ..cli import ArgumentParser, entry, int_in
from ..llm.model.base import ModelConfig

__all__ = ["HostOp", "host_ops", "jobs_per_token", "CpuModel", "A53", "estimate", "InstantDevice",
           "instant_backend", "StepCounts", "count", "count_python_calls", "syscalls_per_job",
           "GEMMA_270M_TOKEN", "token_jobs",
           "strace_counts", "FileAccelerator", "measure_cpu_model", "main"]


# -- the per-op inventory ------------------------------------------------------------
@dataclass(frozen=True)
class HostOp:
    """One step of the host's work per decode token, summed over layers."""

    name: str
    flops: int = 0
    transcendentals: int = 0
    bytes: int = 0

    def __add__(self, other: "HostOp") -> "HostOp":
        return HostOp(self.name, self.flops + other.flops, self.transcendentals + other.transcendentals,
                      self.bytes + other.bytes)


def _visible_keys(config: ModelConfig, layer: int, context: int) -> int:
    """Keys one decode query at position ``context - 1`` attends to."""
    if config.is_global(layer) or config.sliding_window is None:
        return context
    return min(context, config.sliding_window)


from ..llm.expf import EXP_FLOPS  # noqa: E402  (the kernels' exp: flops, not a libm call)
from ..llm.tanh import TANH_FLOPS  # noqa: E402  (the kernels' tanh: flops, not a libm call)


def host_ops(config: ModelConfig, context: int, kv_bytes: int = 2,
             tanh_flops: int | None = TANH_FLOPS, argmax_scanned: float = 1.0,
             exp_flops: int | None = EXP_FLOPS) -> list[HostOp]:
    """The host step of one decode token at ``context`` tokens (the new one included),
    float32 activations, a KV cache of ``kv_bytes`` per element (2: bfloat16, the
    runtime's ``KVCache``; 4: float32; 1: int8). A bfloat16 element costs 1 flop to widen
    where attention reads it (a shift: once per cached element and KV head, the query
    heads of a group share the widened row) and 4 to round where it is stored.

    Per element counts: RMSNorm 5 flops (square-add, scale, weight) and reads x and
    its weight; int8 quantization 4 (|x| max, scale, round, clamp) and writes a byte;
    dequantization 2 (int32 to float, scale) reading the int32 result and the scale;
    RoPE 3; GELU/SiLU 8 and one tanh; attention 2 per multiply-add, softmax 3 and one
    exp per score. ``tanh_flops``: count the tanh as that many flops instead of a
    transcendental (``host.llm._numba_fused.TANH_FLOPS``, 25, for its libm-free
    ``_tanh``, the host's one tanh, host.llm.tanh); None: a transcendental (libm).
    ``exp_flops`` likewise for the softmax's exp (``EXP_FLOPS``, 25, the fused kernels'
    ``_exp``, host.llm.expf; None: libm's, as the numpy path's ``np.exp``).

    The greedy classifier argmax (``argmax_logit``) reads every int32 sum and takes the
    maximum of each block of ``ARGMAX_BLOCK`` (1 flop per entry, 4 bytes); only the
    ``argmax_scanned`` share of the blocks (those that could hold the maximum:
    ``argmax_scan_share`` measures it) has its logits made: 2 flops and the float32
    scale per entry; the block bounds, 4 bytes per block, are read once.
    """
    d, f, hd = config.dim, config.hidden_dim, config.head_dim
    h, kv, v = config.n_heads, config.n_kv_heads, config.vocab_size
    qkv_n = (h + 2 * kv) * hd

    def norm(n: int) -> tuple[int, int, int]:
        return 5 * n, 0, 8 * n                   # x and weight in

    def quantize(n: int) -> tuple[int, int, int]:
        return 4 * n, 0, n                       # int8 out (x already in registers)

    def dequantize(n: int) -> tuple[int, int, int]:
        return 2 * n, 0, 8 * n                   # int32 result and float32 scale in

    ops = {name: HostOp(name) for name in ("embedding", "norms", "quantize", "dequantize", "rope",
                                           "kv cache", "attention", "ffn activation", "residual",
                                           "classifier argmax")}

    def add(name: str, flops: int = 0, transcendentals: int = 0, nbytes: int = 0) -> None:
        ops[name] = ops[name] + HostOp(name, flops, transcendentals, nbytes)

    add("embedding", d, 0, 8 * d)                # one float32 row in, scaled, out
    for layer in range(config.n_layers):
        t = _visible_keys(config, layer, context)
        add("norms", *norm(d))                   # attention pre-norm
        add("quantize", *quantize(d))
        add("dequantize", *dequantize(qkv_n))
        if config.qkv_bias:
            add("dequantize", qkv_n, 0, 4 * qkv_n)
        if config.qk_norm:
            add("norms", *norm((h + kv) * hd))
        add("rope", 3 * (h + kv) * hd, 0, 8 * hd)    # cos and sin rows of the position
        widen = 1 if kv_bytes == 2 else 0
        add("kv cache", 4 * widen * 2 * kv * hd, 0, 2 * kv * hd * kv_bytes)
        # q.K^T and p.V per query head; each cached row is read once per KV head
        exps = h * t
        add("attention", 4 * h * t * hd + 3 * h * t + widen * 2 * kv * t * hd + (exp_flops or 0) * exps,
            0 if exp_flops else exps, 2 * kv * t * hd * kv_bytes)
        add("quantize", *quantize(h * hd))
        add("dequantize", *dequantize(d))
        add("residual", d, 0, 8 * d)
        if config.post_norms:
            add("norms", *norm(d))
        add("norms", *norm(d))                   # ffn pre-norm
        add("quantize", *quantize(d))
        add("dequantize", *dequantize(2 * f))
        if tanh_flops is None:
            add("ffn activation", 8 * f, f, 0)
        else:
            add("ffn activation", (8 + tanh_flops) * f, 0, 0)
        add("quantize", *quantize(f))
        add("dequantize", *dequantize(d))
        if config.post_norms:
            add("norms", *norm(d))
        add("residual", d, 0, 8 * d)
    add("norms", *norm(d))                       # output norm
    add("quantize", *quantize(d))
    ops["classifier argmax"] = classifier_op(config, argmax_scanned)
    return list(ops.values())


def classifier_op(config: ModelConfig, scanned_share: float, shortlist: int = 0) -> HostOp:
    """The greedy classifier step after the classifier job.

    ``argmax_logit`` (``shortlist`` 0): every int32 sum read and each block's maximum
    taken (1 flop, 4 bytes per entry); the ``scanned_share`` of the blocks that could
    hold the maximum have their logits made (2 flops and the float32 scale per entry);
    the block bounds, 4 bytes per block, read once.

    ``shortlist_argmax`` (an int4 classifier, ``QuantScheme.shortlist``): the same scan
    for the ``shortlist + 1`` largest, each made logit also compared with the heap's
    root (1 flop; the rare insertions are left out); then the ``shortlist`` int8 rows
    (``dim`` bytes and a scale each) dotted with the activations (2 flops per byte,
    counted at the float rate) and ranked (``shortlist^2 / 2`` compares)."""
    from ..llm._numba_fused import ARGMAX_BLOCK

    v, d = config.vocab_size, config.dim
    scanned = round(scanned_share * v)
    flops, nbytes = v + 2 * scanned, 4 * v + 4 * scanned + 4 * -(-v // ARGMAX_BLOCK)
    if not shortlist:
        return HostOp("classifier argmax", flops, 0, nbytes)
    return HostOp("classifier argmax", flops + scanned + 2 * shortlist * d + shortlist * shortlist // 2, 0,
                  nbytes + shortlist * (d + 4))


def jobs_per_token(config: ModelConfig, accel: AccelConfig) -> int:
    """Accelerator jobs of one decode token (K split at ``max_k`` as the runtime does)."""
    from .projection import model_matmuls
    return sum(-(-shape.k // accel.max_k) for shape in model_matmuls(config))


# -- the CPU model -------------------------------------------------------------------
@dataclass(frozen=True)
class CpuModel:
    """The constants that turn counts into time (see the module doc)."""

    name: str
    flops_per_s: float           # float32, compiled loops over vectors
    transcendental_s: float      # one exp or tanh
    bytes_per_s: float           # streamed to or from DRAM by one core
    python_call_s: float         # one Python-level call, interpreter work included
    compiled_call_s: float       # one Python -> compiled call (numba's dispatch of ~25 arguments)
    syscall_s: float             # one system call, kernel entry to return
    source: str = ""


# The Cortex-A53 of the K26 SOM (KV260) at 1.333 GHz. Stated, not measured here:
# - flops: NEON is 64 bits wide on the A53 (a 128-bit FMLA takes two issue slots),
#   4 float32 flops/cycle at best; 2 flops/cycle sustained in compiled loops that also
#   load and store (half the peak): 2.67 GFLOP/s.
# - exp/tanh: about 40 cycles each (a vectorized polynomial with range reduction on
#   a 2-wide in-order core).
# - DRAM: 2.5 GB/s for one A53 core streaming (one core cannot keep the 19.2 GB/s
#   DDR4-2400 x64 busy: few outstanding misses, 64-byte lines).
# - Python: CPython 3.11 runs about 10x slower on a 1.33 GHz in-order A53 than on a
#   ~3-4 GHz x86 core (clock x IPC); a Python-level call of the driver's and runtime's
#   code (numpy scalar work, attribute lookups and the call itself) costs 0.1-0.2 us
#   on the x86 machine here (``measure_cpu_model``), so 1.5 us on the A53; numba's
#   dispatch of a fused kernel (about 25 arguments, each type-checked and unboxed)
#   costs 1-2 us here, so 15 us on the A53.
# - syscall: 1.5 us, kernel entry and return for read/write/select on a short path.
A53 = CpuModel("Cortex-A53 @ 1.333 GHz (KV260), stated constants", flops_per_s=2.67e9,
               transcendental_s=40 / 1.333e9, bytes_per_s=2.5e9, python_call_s=1.5e-6,
               compiled_call_s=15e-6, syscall_s=1.5e-6, source="host/perf/a53.py: A53")


def estimate(counts: "StepCounts", cpu: CpuModel) -> dict[str, float]:
    """Milliseconds per token, by term, and their sum (``"total"``)."""
    terms = {
        "flops": counts.flops / cpu.flops_per_s,
        "exp/tanh": counts.transcendentals * cpu.transcendental_s,
        "memory": counts.bytes / cpu.bytes_per_s,
        "python calls": counts.python_calls * cpu.python_call_s,
        "compiled calls": counts.compiled_calls * cpu.compiled_call_s,
        "syscalls": counts.syscalls * cpu.syscall_s,
    }
    ms = {name: seconds * 1e3 for name, seconds in terms.items()}
    ms["total"] = sum(ms.values())
    return ms


# -- an accelerator that answers at once ------------------------------------------------
class InstantDevice:
    """A ``RegisterBus`` whose accelerator finishes every job at ``ap_start``.

    The registers are a uint32 array, as ``UioRegisters``' mmap view is, so the
    driver's Python work per access is the board's; C is left as it is (counting, not
    computing). ``has_irq`` False: the driver polls ``ap_done``.
    """

    has_irq = False

    def __init__(self, config: AccelConfig):
        self.words = np.zeros(1024, np.uint32)
        for reg in REGISTERS:
            if reg.kind == "const":
                self.words[reg.offset // 4] = const_value(reg, config)
        ctrl = by_name("CTRL")
        self._ctrl = ctrl.offset
        self._start = ctrl.field("ap_start").mask
        self._idle = ctrl.field("ap_idle").mask
        self._done_bit = ctrl.field("ap_done").mask
        self._done = self._done_bit | self._idle | ctrl.field("ap_ready").mask
        self.words[self._ctrl // 4] = self._idle
        self.jobs = 0

    # As UioRegisters: the access is a Python call and an item of a uint32 array; the
    # device's own reaction adds no call (it is the hardware's).
    def read32(self, offset: int) -> int:
        value = int(self.words[offset >> 2])
        if offset == self._ctrl:                 # ap_done is clear-on-read
            self.words[offset >> 2] = value & ~self._done_bit
        return value

    def write32(self, offset: int, value: int) -> None:
        if offset == self._ctrl:
            started = value & self._start
            self.jobs += 1 if started else 0
            self.words[offset >> 2] = self._done if started else self._idle
            return
        self.words[offset >> 2] = value

    def wait_irq(self, timeout_s: float) -> bool:
        return False

    def now(self) -> float:
        return time.monotonic()


def instant_backend(config: AccelConfig, memory_bytes: int = 1 << 30):
    """The ``DriverBackend`` over ``InstantDevice`` and host memory."""
    from ..accel.driver import Driver
    from ..accel.hardware import DriverBackend

    bus = InstantDevice(config)
    memory = MemoryWindow(bytearray(memory_bytes), 0x4000_0000)
    return DriverBackend(config, Driver(bus, memory, config), "instant-device", platform=bus)


# Where the stand-in u-dma-bufs sit: udmabuf0 (weights) and, for a coherent_io
# configuration, udmabuf1 (each job's A and C, dma-coherent) right above it.
_UDMABUF_BASE = 0x4000_0000
SHARED_BYTES = 16 << 20


def _fake_udmabuf(root: Path, size: int, name: str = "udmabuf0", phys: int = _UDMABUF_BASE,
                  coherent: bool = False) -> None:
    """``root/<name>`` (``size`` bytes, sparse) and its sysfs directory under ``root/sys``,
    as ``UdmabufMemory(name, dev=root, sysfs=root / "sys")`` opens them; ``coherent``:
    its ``dma_coherent`` reads 1 (the node has ``dma-coherent``)."""
    sysfs = root / "sys" / name
    sysfs.mkdir(parents=True)
    (sysfs / "phys_addr").write_text(f"{phys:#x}\n")
    (sysfs / "size").write_text(f"{size}\n")
    (sysfs / "dma_coherent").write_text(f"{int(coherent)}\n")
    with open(root / name, "wb") as file:
        file.truncate(size)


def fake_board_memory(root: Path, config: AccelConfig, size: int, readback: bool | None = None):
    """``(memory, shared)`` as the KV260 backend opens them, over files in ``root``:
    ``udmabuf0`` and, for ``config.coherent_io``, the coherent ``udmabuf1`` (else None)."""
    from ..platforms.kv260 import UdmabufMemory

    _fake_udmabuf(root, size)
    memory = UdmabufMemory("udmabuf0", dev=root, sysfs=root / "sys", readback=readback)
    if not config.coherent_io:
        return memory, None
    _fake_udmabuf(root, SHARED_BYTES, "udmabuf1", _UDMABUF_BASE + size, coherent=True)
    return memory, UdmabufMemory("udmabuf1", dev=root, sysfs=root / "sys", coherent=True)


class BoardRig:
    """The KV260 backend's own classes on files: ``UioRegisters`` (the plan replayed by
    firmware/replay.c), ``UdmabufMemory`` (syncs through its sysfs attribute files; for
    a ``coherent_io`` configuration each job's A and C in the coherent ``udmabuf1``,
    ``shared``, as the backend opens it) and a ``FileAccelerator`` thread answering jobs
    (``compute``: with C computed by the golden model; else C is left as it is).
    ``backend`` is the ``DriverBackend``; ``jobs`` counts the jobs answered.
    ``close()`` removes the files."""

    def __init__(self, config: AccelConfig, memory_bytes: int = 1 << 30, compute: bool = False):
        from ..accel.driver import Driver
        from ..accel.hardware import DriverBackend
        from ..platforms.kv260 import UioRegisters

        self._tmp = tempfile.TemporaryDirectory(prefix="systole-rig-")
        root = Path(self._tmp.name)
        self.memory, self.shared = fake_board_memory(root, config, memory_bytes, readback=False)
        more = () if self.shared is None else ((self.shared._bytes, self.shared.device_address),)
        self.device = FileAccelerator(root / "uio0", config, memory=self.memory._bytes if compute else None,
                                      base=self.memory.device_address, more=more)
        self.registers = UioRegisters(root / "uio0", irq=False)
        driver = Driver(self.registers, self.memory, config, use_irq=False, min_timeout_s=1.0,
                        shared=self.shared)
        self.backend = DriverBackend(config, driver, "kv260-rig", platform=self)

    @property
    def jobs(self) -> int:
        return len(self.device.jobs)

    @property
    def replays(self) -> bool:
        """Whether the driver replays its plans in compiled code."""
        return self.backend.driver._replay is not None

    def close(self) -> None:
        self.device.close()
        self.memory.close()
        if self.shared is not None:
            self.shared.close()
        self.registers.close()
        self._tmp.cleanup()


# -- counting ------------------------------------------------------------------------
@dataclass(frozen=True)
class StepCounts:
    """What one decode token asks of the host (see the module doc)."""

    model: str
    context: int
    jobs: int
    flops: int
    transcendentals: int
    bytes: int
    python_calls: int
    syscalls: int
    driver_python_calls: int = 0               # of python_calls, in the driver
    compiled_calls: int = 0                    # Python -> compiled (numba) calls of the host step
    syscalls_per_job: float = 0.0
    ops: tuple[HostOp, ...] = field(default=(), repr=False)


# The driver's code: the backend stack under the runtime (host/accel, host/platforms).
_DRIVER_CODE = tuple(str(Path(__file__).resolve().parents[1] / part) for part in ("accel", "platforms"))


class _CallCounter:
    """Counts Python-level calls (``sys.setprofile``'s call and c_call events), and in
    ``driver`` those made in or into the driver's code (``_DRIVER_CODE``: a call whose
    callee or caller lives there)."""

    def __init__(self):
        self.calls = 0
        self.driver = 0

    def _trace(self, frame, event, arg):
        if event == "call":
            self.calls += 1
            caller = frame.f_back
            if frame.f_code.co_filename.startswith(_DRIVER_CODE) or (
                    caller is not None and caller.f_code.co_filename.startswith(_DRIVER_CODE)):
                self.driver += 1
        elif event == "c_call":
            self.calls += 1
            if frame.f_code.co_filename.startswith(_DRIVER_CODE):
                self.driver += 1

    def __enter__(self):
        sys.setprofile(self._trace)
        return self

    def __exit__(self, *exc):
        sys.setprofile(None)


def decode_step(transformer, decoder=None):
    """``step(token, cache) -> next token``, greedy: through ``decoder`` (a
    ``FusedDecoder``) when given, else ``Transformer.forward`` and ``sample_next``."""
    from ..llm.generate import sample_next

    if decoder is not None:
        return lambda token, cache: decoder.greedy(token, cache)[0]
    return lambda token, cache: sample_next(transformer.forward([token], cache)[-1])


def count_python_calls(transformer, cache, tokens: int = 4, decoder=None) -> tuple[int, int, int]:
    """``(Python-level calls per decode token, of them in the driver, jobs per token)``
    of ``transformer`` decoding greedily on ``cache`` (its backend should be
    ``instant_backend`` or a ``BoardRig``'s), through ``decoder`` when given. The
    driver's share is the calls made in or into host/accel and host/platforms during
    the same tokens (``_CallCounter``)."""
    backend = transformer.linear.backend
    step = decode_step(transformer, decoder)
    token = step(1, cache)                      # compiled code loaded, buffers grown
    jobs0 = backend.platform.jobs
    with _CallCounter() as total:
        for _ in range(tokens):
            token = step(token, cache)
    jobs = round((backend.platform.jobs - jobs0) / tokens)
    return round(total.calls / tokens), round(total.driver / tokens), jobs


# Gemma 3 270M's decode token as (N, K) jobs: per layer the fused QKV, the attention
# output, the fused FFN gate and up, the FFN down; then the classifier.
GEMMA_270M_TOKEN = ((1536, 640), (640, 1024), (4096, 640), (640, 2048)) * 18 + ((262144, 640),)


def token_jobs(config: ModelConfig, accel: AccelConfig) -> tuple[tuple[int, int], ...]:
    """One decode token's accelerator jobs as (N, K), in order (K split at ``max_k``)."""
    from .projection import model_matmuls
    jobs = []
    for shape in model_matmuls(config):
        pieces = -(-shape.k // accel.max_k)
        jobs += [(shape.n, -(-shape.k // pieces))] * pieces
    return tuple(jobs)


def syscalls_per_job(config: AccelConfig, irq: bool, shapes=GEMMA_270M_TOKEN,
                     tokens: int = 3) -> dict[str, float]:
    """System calls per job of the driver over the KV260 platform's classes, by name and
    ``"total"``: ``strace -c`` of a child process running ``tokens`` times the jobs of a
    decode token (``shapes``, (N, K) in order: the syncs' ranges differ from job to job
    as they do on the board), less a child running none. ``config`` is a preset, or one
    with ``coherent_io`` switched off (A and C then synced through udmabuf0's sysfs)."""
    def run(n: int) -> dict[str, int]:
        with tempfile.TemporaryDirectory(prefix="systole-strace-") as tmp:
            out = Path(tmp) / "strace.txt"
            subprocess.run(["strace", "-c", "-o", str(out), sys.executable, "-m", "host.perf.a53",
                            "--syscall-child", config.name + ("" if config.coherent_io else ":synced"),
                            "irq" if irq else "poll", str(n),
                            ",".join(f"{n}x{k}" for n, k in shapes)],
                           check=True, cwd=Path(__file__).resolve().parents[2],
                           stdout=subprocess.DEVNULL)
            return strace_counts(out.read_text())
    from ..platforms.replay import library
    library()                                # built now: its compiler's calls are not a job's
    busy, idle = run(tokens), run(0)
    jobs = tokens * len(shapes)
    per_job = {name: (busy.get(name, 0) - idle.get(name, 0)) / jobs for name in busy}
    # Not the board's: UdmabufMemory truncates an ordinary file after each write so it
    # reads back as the value (a sysfs attribute is not truncated), and the GIL passes
    # to and from the thread playing the accelerator (futex).
    for name in ("ftruncate", "futex"):
        per_job["total"] -= per_job.pop(name, 0.0)
    return {name: value for name, value in per_job.items() if value or name == "total"}


def strace_counts(text: str) -> dict[str, int]:
    """Calls by syscall name, and ``"total"``, from an ``strace -c`` summary."""
    counts = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[3].isdigit():
            counts[fields[-1]] = int(fields[3])
    if "total" not in counts:
        raise ValueError(f"no total line in strace's summary:\n{text}")
    return counts


class FileAccelerator:
    """The accelerator's side of a register page kept in a file, in a thread: on
    ap_start it records the registers, sets the counters and ERR_CODE (``error``), then
    ap_done (and ISR's done bit, and with ``irq_fd`` four bytes to it, as the UIO node
    would); a soft reset makes it idle. ``answer`` False ignores ap_start (a hung job);
    ``hang_after`` N answers N more jobs, then none (a job hung mid-token); ``on_start``,
    when set, is called with the recorded registers at each ap_start, before the job
    is answered. The page starts as ``InstantDevice``'s: the constants and ap_idle."""

    def __init__(self, path: Path, config: AccelConfig, irq_fd: int | None = None,
                 memory: np.ndarray | None = None, base: int = 0, more: tuple = ()):
        import mmap
        import threading

        Path(path).write_bytes(InstantDevice(config).words.tobytes())
        self._file = open(path, "r+b")
        self._map = mmap.mmap(self._file.fileno(), 4096)
        self.words = np.frombuffer(self._map, np.uint32)
        ctrl = by_name("CTRL")
        self.ctrl = ctrl.offset // 4
        self.start, self.idle = ctrl.field("ap_start").mask, ctrl.field("ap_idle").mask
        self.done = ctrl.field("ap_done").mask | ctrl.field("ap_ready").mask | self.idle
        self.reset = ctrl.field("soft_reset").mask
        self.perf = by_name("PERF_BUSY").offset // 4
        self.err = by_name("ERR_CODE").offset // 4
        self.isr = by_name("ISR").offset // 4
        self.irq_fd = irq_fd
        self.config, self.memory, self.base = config, memory, base    # memory: compute C
        self.more = more                       # further (memory, base) windows (golden_job)
        self.error = 0
        self.answer = True
        self.hang_after: int | None = None
        self.on_start = None
        self.jobs: list[np.ndarray] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        words = self.words
        while not self._stop:
            value = int(words[self.ctrl])
            if value & self.start and self.answer and self.hang_after != 0:
                if self.hang_after is not None:
                    self.hang_after -= 1
                self.jobs.append(words.copy())
                if self.on_start is not None:
                    self.on_start(self.jobs[-1])
                words[self.perf] = 1000 + len(self.jobs)
                words[self.err] = self.error
                if self.memory is not None and not self.error:
                    self._compute()
                words[self.isr] = 1
                words[self.ctrl] = self.done
                if self.irq_fd is not None:
                    os.write(self.irq_fd, b"\1\0\0\0")
            elif value & self.reset:
                words[self.ctrl] = self.idle
            else:
                time.sleep(0)

    def _compute(self) -> None:
        """C of the job in the registers, by the golden model, on ``memory``."""
        from hdl.spec.job import FIELDS, Job

        from ..accel.golden import golden_job

        words = self.words
        job = Job(**{f.name: sum(int(words[by_name(r).offset // 4]) << 32 * i
                                 for i, r in enumerate(f.registers)) for f in FIELDS})
        code, address = golden_job(self.config, job, self.memory, self.base, self.more)
        words[self.err] = code
        words[by_name("ERR_ADDR_LO").offset // 4] = address & 0xFFFF_FFFF
        words[by_name("ERR_ADDR_HI").offset // 4] = address >> 32

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        del self.words
        self._map.close()
        self._file.close()


def _syscall_child(preset_name: str, mode: str, tokens: int, shapes: str) -> None:
    """Run ``tokens`` times the jobs ``shapes`` (``NxK`` comma-separated, M = 1) through
    the driver on ``UioRegisters`` and ``UdmabufMemory`` over files shaped like their
    device and sysfs nodes, a ``FileAccelerator`` thread answering (strace follows only
    the main thread). The thread reads no weights, so each shape's ``WeightBuffer`` is
    one page standing for its N x K (the jobs' registers and syncs are the real ones).
    ``poll``: the backend's default, the plan replayed by firmware/replay.c; ``irq``:
    the interrupt path, the UIO node's select/read played by a pipe."""
    from hdl.spec.formats import WeightFormat

    from ..accel.driver import Driver, WeightBuffer, _round_up
    from ..platforms.kv260 import UioRegisters

    name, _, synced = preset_name.partition(":")        # "<preset>:synced": coherent_io off
    config = preset(name).replace(coherent_io=False) if synced else preset(name)
    irq = mode == "irq"
    jobs = [tuple(int(v) for v in shape.split("x")) for shape in shapes.split(",")]
    with tempfile.TemporaryDirectory(prefix="systole-kv260-") as tmp:
        root = Path(tmp)
        memory, shared = fake_board_memory(root, config, 32 << 20)
        read_end, write_end = os.pipe() if irq else (None, None)
        device = FileAccelerator(root / "uio0", config, irq_fd=write_end)
        registers = UioRegisters(root / "uio0", irq=False)
        if irq:                     # select/read on the pipe; the unmask write goes nowhere
            registers.has_irq = True
            registers._fd = read_end
            null = os.open(os.devnull, os.O_WRONLY)
            registers._unmask = lambda: os.write(null, b"\1\0\0\0")
        try:
            driver = Driver(registers, memory, config, use_irq=irq, min_timeout_s=1.0, shared=shared)
            page = driver.alloc(4096)
            weights = {(n, k): WeightBuffer(page, n, k, _round_up(k, config.bus_bytes) if config.weight_ports > 1
                                            else 0, WeightFormat.INT8) for n, k in set(jobs)}
            acts = {k: np.ones((1, k), np.int8) for _, k in jobs}
            for n, k in jobs:       # planned (scratch grown) before the counted tokens
                driver.matmul(acts[k], weights[n, k])
            for _ in range(tokens):
                for n, k in jobs:
                    driver.matmul(acts[k], weights[n, k])
        finally:
            device.close()


def text_prompts(tokenizer, count: int = 4) -> list[list[int]]:
    """The first sentence of each of the first ``count`` paragraphs of the held-out
    text (``host/llm/data/eval.txt``), as token ids: real prompts for a real model."""
    from ..llm.quality import DATA

    paragraphs = [p for p in (DATA / "eval.txt").read_text(encoding="utf-8").split("\n\n") if p.strip()]
    return [tokenizer.encode(p.split(". ")[0] + ".") for p in paragraphs[:count]]


def argmax_scan_share(config: ModelConfig, weights, tokens: int = 24,
                      prompts: list[list[int]] | None = None, shortlist: int = 0) -> float:
    """The share of the classifier's blocks whose logits ``argmax_logit`` computes, over
    ``tokens`` greedy decode tokens after each prompt of ``prompts`` (default: one of 8
    spread ids, for random-weight models; a real model's share depends on its text:
    ``text_prompts``) on the golden backend (which computes every sum, unlike the
    counting devices). ``shortlist``: the same for ``shortlist_argmax`` over an int4
    classifier (RTN) shortlisting that many."""
    from ..accel.backend import make_backend
    from ..llm._numba_fused import ARGMAX_BLOCK
    from ..llm.fused import FusedDecoder
    from ..llm.layers import linear_specs
    from ..llm.linear import QuantizedLinears
    from ..llm.quant import scheme
    from ..llm.transformer import RUNTIME_KV_DTYPE, Transformer

    backend = make_backend("golden", "kv260")
    try:
        chosen = scheme("per-channel")
        if shortlist:
            chosen = chosen.with_(name="per-channel+shortlist", int4_kinds=("classifier",), shortlist=shortlist)
        transformer = Transformer(config, weights, QuantizedLinears(linear_specs(config, weights), backend, chosen),
                                  kv_dtype=RUNTIME_KV_DTYPE)
        decoder = FusedDecoder.build(transformer)
        if prompts is None:
            prompts = [[2 + (7919 * i) % (config.vocab_size - 2) for i in range(8)]]
        scanned = 0
        for prompt in prompts:
            cache = transformer.new_cache(len(prompt) + tokens + 2)
            token = int(np.argmax(transformer.forward(prompt, cache)[-1]))
            decoder.argmax_blocks[0] = 0
            for _ in range(tokens):
                token = decoder.greedy(token, cache)[0]
            scanned += int(decoder.argmax_blocks[0])
        return scanned / (len(prompts) * tokens * -(-config.vocab_size // ARGMAX_BLOCK))
    finally:
        backend.close()


def count(name: str, config: ModelConfig, transformer, context: int, accel: AccelConfig,
          syscalls: dict[bool, dict[str, float]], tokens: int = 4, decoder=None,
          ops: list[HostOp] | None = None, argmax_scanned: float = 1.0) -> StepCounts:
    """The counts of one decode token of ``transformer`` (on ``instant_backend``) at
    ``context``, through ``decoder`` (a ``FusedDecoder``) when given; ``syscalls`` maps
    irq on/off to ``syscalls_per_job`` (the poll path's total is used: the cheaper);
    ``ops``: the host step's inventory (default ``host_ops`` with ``argmax_scanned``)."""
    cache = transformer.new_cache(context + tokens + 2)
    prompt = [1 + i % (config.vocab_size - 1) for i in range(context - 2)]
    transformer.forward(prompt, cache)          # the warm-up step makes it context - 1
    calls, driver_calls, jobs = count_python_calls(transformer, cache, tokens, decoder)
    if ops is None:
        from ..llm.transformer import KVCache
        kv_bytes = cache.keys[0].itemsize if isinstance(cache, KVCache) else 1     # else int8, on the device
        ops = host_ops(config, context, kv_bytes, argmax_scanned=argmax_scanned)
    per_job = syscalls[False]["total"]
    compiled = decoder.counts["compiled calls"] if decoder is not None else 0
    submitted = decoder is not None and decoder.submits_jobs     # the job inside the gap's call
    if getattr(transformer.linear.backend.platform, "replays", False) and not submitted:
        compiled += jobs                         # one firmware/replay.c call per job
    return StepCounts(name, context, jobs, sum(o.flops for o in ops), sum(o.transcendentals for o in ops),
                      sum(o.bytes for o in ops), calls, round(per_job * jobs), driver_python_calls=driver_calls,
                      compiled_calls=compiled, syscalls_per_job=per_job, ops=tuple(ops))


# -- this machine's constants (to check the model where it can be measured) -----------
def measure_cpu_model(backend=None, repeats: int = 5) -> CpuModel:
    """The ``CpuModel`` constants measured on this machine: a compiled multiply-add
    loop, a compiled tanh loop, a 64 MB copy, ``os.getppid``, and a Python-level call
    as the driver's code makes them: the time of a job on ``backend`` (an
    ``instant_backend``) over its call count (an empty function's call without one)."""
    import numba

    @numba.njit(cache=False, fastmath={"reassoc", "nsz", "arcp", "contract"})
    def madd(x, y, n):                # 2 flops per element per pass, vectorized as the fused kernels' dots
        acc = np.float32(0.0)
        for _ in range(n):
            for i in range(x.size):
                acc += x[i] * y[i]
        return acc

    @numba.njit(cache=False)
    def tanh_all(x, out):
        for i in range(x.size):
            out[i] = np.tanh(x[i])

    @numba.njit(cache=False)
    def dispatch(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16,
                 s0, s1, s2, s3, s4, s5, s6):         # a fused kernel's 25 arguments, no work
        return s0

    x = np.ones(4096, np.float32)
    y = np.full(4096, 0.5, np.float32)
    madd(x, y, 1)
    tanh_all(x, y)
    arrays = [np.ones(8, np.float32) for _ in range(17)]
    scalars = [np.float32(1.0), 3, np.float32(0.5), 7, True, np.float32(2.0), 11]
    dispatch(*arrays, *scalars)

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    passes = 2000
    flops_s = 2 * x.size * passes / best(lambda: madd(x, y, passes))
    big = np.ones(1 << 20, np.float32)
    out = np.empty_like(big)
    tanh_s = best(lambda: tanh_all(big, out)) / big.size
    src = np.ones(64 << 20, np.uint8)
    dst = np.empty_like(src)
    bytes_s = 2 * src.size / best(lambda: np.copyto(dst, src))

    def empty():
        return None

    n = 200_000
    empty_s = best(lambda: [empty() for _ in range(n)]) / n
    sys_s = best(lambda: [os.getppid() for _ in range(n)]) / n - empty_s
    call_s = empty_s
    if backend is not None:
        handle = backend.load("probe", np.ones((640, 640), np.int8))
        q = np.ones((1, 640), np.int8)
        backend.matmul(q, handle)
        with _CallCounter() as counter:
            backend.matmul(q, handle)
        jobs = 200
        call_s = best(lambda: [backend.matmul(q, handle) for _ in range(jobs)]) / jobs / counter.calls
    calls = 20_000
    compiled_s = best(lambda: [dispatch(*arrays, *scalars) for _ in range(calls)]) / calls - empty_s
    return CpuModel("this machine, measured", flops_per_s=flops_s, transcendental_s=tanh_s,
                    bytes_per_s=bytes_s, python_call_s=call_s, compiled_call_s=compiled_s,
                    syscall_s=max(sys_s, 0.0),
                    source="host.perf.a53.measure_cpu_model")


@dataclass
class Case:
    """One model at one context: its counts and times."""

    counts: StepCounts
    x86_ms: float                  # measured here: median decode token, instant device
    x86_model_ms: float            # the model with this machine's measured constants
    a53: dict[str, float]          # the A53 estimate by term
    note: str = ""
    x86_unfused_ms: float = 0.0    # measured here: the same through Transformer.forward
    attention: str = "host"        # where the board's attention runs (the runtime's "auto")
    attention_accel_ms: float = 0.0    # the accelerator time its attention jobs add
    a53_w4: float = 0.0            # the A53 estimate's total with the default W4A8 scheme's classifier


def _models(names: list[str]):
    """``(name, ModelConfig, weights, prompts)`` of the models asked for (``prompts``:
    ``text_prompts`` for a real model, None for random weights)."""
    from .host_time import random_llama_weights
    from .projection import STORIES, llama2c_config

    for name in names:
        if name == "gemma":
            from ..llm.model import load_model
            model = load_model(None, progress=False)
            yield "Gemma 3 270M", model.config, model.weights, text_prompts(model.tokenizer)
        else:
            config = llama2c_config(**STORIES[name])
            # llama2.c's stories110M runs 1024 tokens, stories15M 256 (``max_seq_len``).
            real = 1024 if name == "stories110M" else 256
            yield name, replace(config, max_seq_len=real), random_llama_weights(config), None


def measure_cases(names: list[str], contexts: list[int], accel: AccelConfig,
                  tokens: int = 8, repeats: int = 5, progress=print) -> tuple[list[Case], CpuModel]:
    """Counts, the x86 measurement and both estimates for every model and context, and
    this machine's measured ``CpuModel``."""
    from ..llm.attention import OffloadedAttention
    from ..llm.fused import FusedDecoder
    from ..llm.generate import choose_attention
    from ..llm.layers import linear_specs
    from ..llm.linear import QuantizedLinears
    from ..llm.quant import DEFAULT_W4_SCHEME, scheme
    from ..llm.quant import scheme as get_scheme
    from ..llm.transformer import RUNTIME_KV_DTYPE, Transformer
    from .attention import attention_cycles, offload_ops

    progress("measuring this machine's constants...")
    probe = instant_backend(accel, 16 << 20)
    here = measure_cpu_model(probe)
    probe.close()
    cases = []
    for name, config, weights, prompts in _models(names):
        progress(f"{name}: counting syscalls per job over a decode token's jobs (strace)...")
        syscalls = {irq: syscalls_per_job(accel, irq, token_jobs(config, accel)) for irq in (False, True)}
        progress(f"{name}: loading on the instant device and on the KV260 classes...")
        backend = instant_backend(accel)
        linears = QuantizedLinears(linear_specs(config, weights), backend, scheme("per-channel"))
        transformer = Transformer(config, weights, linears, kv_dtype=RUNTIME_KV_DTYPE)
        decoder = FusedDecoder.build(transformer)
        rig = BoardRig(accel)
        mode = choose_attention("auto", config, rig.backend)       # as the runtime decides on the board
        board = Transformer(config, weights, QuantizedLinears(linear_specs(config, weights), rig.backend,
                                                              scheme("per-channel")),
                            attention=OffloadedAttention(config, rig.backend) if mode == "accelerator" else None,
                            kv_dtype=RUNTIME_KV_DTYPE)
        board_decoder = FusedDecoder.build(board)
        runs = [c for c in contexts if c <= config.max_seq_len]
        # The A53's counts: the board's path (KV260 classes, compiled replay); the x86
        # model's: the path timed here (instant device, Python register accesses).
        progress(f"{name}: the classifier blocks the greedy argmax scans (golden backend)...")
        share = argmax_scan_share(config, weights, prompts=prompts)
        shortlist = get_scheme(DEFAULT_W4_SCHEME).shortlist
        if shortlist:
            progress(f"{name}: the blocks the W4A8 shortlist scans (an int4 classifier, golden backend)...")
            share_w4 = argmax_scan_share(config, weights, prompts=prompts, shortlist=shortlist)
            progress(f"{name}: blocks scanned: argmax {share:.0%}, shortlist of {shortlist} {share_w4:.0%}")
        board_counts = {c: count(name, config, board, c, accel, syscalls, decoder=board_decoder,
                                 argmax_scanned=share,
                                 ops=offload_ops(config, c, accel, share) if mode == "accelerator" else None)
                        for c in runs}
        rig.close()                                   # its accelerator thread off before timing
        for context in contexts:
            if context not in board_counts:
                note = f"context {context} beyond the model's {config.max_seq_len}: not run"
                cases.append(Case(StepCounts(name, context, 0, 0, 0, 0, 0, 0), 0.0, 0.0, {}, note))
                continue
            counts = board_counts[context]
            here_counts = count(name, config, transformer, context, accel, syscalls, decoder=decoder,
                                argmax_scanned=share)
            times: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(repeats):                  # both paths interleaved, side by side
                for fused in (True, False):
                    step = decode_step(transformer, decoder if fused else None)
                    cache = transformer.new_cache(context + tokens + 1)
                    transformer.forward([1 + i % (config.vocab_size - 1) for i in range(context - 1)], cache)
                    token, t0 = 1, time.perf_counter()
                    for _ in range(tokens):
                        token = step(token, cache)
                    times[fused].append((time.perf_counter() - t0) / tokens * 1e3)
            # The x86 measurement runs no syscalls per job (InstantDevice, no sysfs).
            x86_model = estimate(replace(here_counts, syscalls=0), here)["total"]
            extra = attention_cycles(config, context, accel) / (accel.clock_mhz * 1e3) if mode == "accelerator" else 0.0
            a53_w4 = estimate(counts, A53)["total"]
            if shortlist:            # its greedy step: shortlist_argmax, one more call
                ops = tuple(classifier_op(config, share_w4, shortlist) if op.name == "classifier argmax" else op
                            for op in counts.ops)
                a53_w4 = estimate(replace(counts, flops=sum(o.flops for o in ops), bytes=sum(o.bytes for o in ops),
                                          python_calls=counts.python_calls + 1,
                                          compiled_calls=counts.compiled_calls + 1, ops=ops), A53)["total"]
            cases.append(Case(counts, statistics.median(times[True]), x86_model, estimate(counts, A53), "",
                              statistics.median(times[False]), mode, extra, a53_w4))
        backend.close()
    return cases, here


def render(cases: list[Case], accel: AccelConfig, cpu: CpuModel = A53) -> str:
    """The counts table, the estimate table and the end-to-end KV260 projection."""
    lines = ["Counts per decode token (the fused host step, host.llm.fused, and the driver on the "
             "KV260 platform's classes; syscalls by strace):",
             f"{'model':<14}{'ctx':>5}{'attention':>12}{'jobs':>6}{'MFLOP':>8}{'exp/tanh':>10}{'MB':>8}{'compiled':>10}"
             f"{'Py calls':>10}{'driver':>8}{'per job':>9}{'syscalls':>10}{'per job':>9}"]
    for case in cases:
        c = case.counts
        if case.note:
            lines.append(f"{c.model:<14}{c.context:>5}  {case.note}")
            continue
        lines.append(f"{c.model:<14}{c.context:>5}{case.attention:>12}{c.jobs:>6}{c.flops / 1e6:>8.2f}"
                     f"{c.transcendentals:>10,}"
                     f"{c.bytes / 1e6:>8.2f}{c.compiled_calls:>10,}{c.python_calls:>10,}{c.driver_python_calls:>8,}"
                     f"{c.driver_python_calls / max(c.jobs, 1):>9.0f}"
                     f"{c.syscalls:>10,}{c.syscalls_per_job:>9.1f}")
    terms = ["flops", "exp/tanh", "memory", "python calls", "compiled calls", "syscalls"]
    lines += ["", f"A53 estimate, ms per token ({cpu.name}), next to this machine (x86: the model with "
              "its measured constants, the fused path measured, and the unfused path measured):",
              f"{'model':<14}{'ctx':>5}" + "".join(f"{t:>15}" for t in terms)
              + f"{'A53 total':>11}{'x86 model':>11}{'x86 fused':>11}{'x86 unfused':>13}"]
    for case in cases:
        if case.note:
            continue
        c = case.counts
        lines.append(f"{c.model:<14}{c.context:>5}" + "".join(f"{case.a53[t]:>15.2f}" for t in terms)
                     + f"{case.a53['total']:>11.2f}{case.x86_model_ms:>11.2f}{case.x86_ms:>11.2f}"
                     f"{case.x86_unfused_ms:>13.2f}")
    return "\n".join(lines)


def projection_lines(cases: list[Case]) -> list[str]:
    """KV260 end to end: the cycle model's accelerator time plus the A53 estimate."""
    from hdl.spec.boards import BOARDS
    from hdl.spec.formats import WeightFormat

    from ..llm.quant import DEFAULT_W4_SCHEME
    from ..llm.quant import scheme as get_scheme
    from .projection import STORIES, llama2c_matmuls, model_matmuls

    board = BOARDS["kv260"]
    config = preset(board.preset)
    w4 = {kind: WeightFormat.INT4 for kind in get_scheme(DEFAULT_W4_SCHEME).int4_kinds}
    lines = ["", "KV260 end to end, projected (accelerator: the cycle model on the DDR model, the "
             "attention jobs included where attention is offloaded; host: the A53 estimate; no overlap):",
             f"{'model':<14}{'ctx':>5}{'attention':>12}{'host ms':>9}{'int8 accel ms':>15}{'int8 tok/s':>12}"
             f"{'W4A8 host ms':>14}{'W4A8 accel ms':>15}{'W4A8 tok/s':>12}"]
    from .projection import project
    for case in cases:
        if case.note:
            continue
        c = case.counts
        if c.model == "Gemma 3 270M":
            from ..llm.model import load_model
            matmuls = model_matmuls(load_model(None, progress=False).config)
        else:
            matmuls = llama2c_matmuls(**STORIES[c.model])
        host = case.a53["total"]
        accel8 = project(c.model, matmuls, board, config, host).accelerator_ms + case.attention_accel_ms
        accel4 = project(c.model, matmuls, board, config, host, formats=w4).accelerator_ms + case.attention_accel_ms
        host4 = case.a53_w4 or host
        lines.append(f"{c.model:<14}{c.context:>5}{case.attention:>12}{host:>9.2f}{accel8:>15.2f}"
                     f"{1e3 / (accel8 + host):>12.1f}{host4:>14.2f}{accel4:>15.2f}{1e3 / (accel4 + host4):>12.1f}")
    return lines


def token_latencies(runtime, prompt: str, tokens: int) -> list[float]:
    """Milliseconds of each decode token of ``runtime.steps`` (greedy, ``tokens`` new
    tokens; the prefill's first token left out), the consumer's time excluded."""
    times, start = [], None
    for index, (token, _) in enumerate(runtime.steps(prompt, max_new_tokens=tokens)):
        now = time.perf_counter()
        if token >= 0 and index > 0:
            times.append((now - start) * 1e3)
        start = time.perf_counter()
    return times


def latency_lines(tokens: int = 128, runs: int = 3) -> list[str]:
    """Gemma 3 270M on the golden backend (the default scheme, fused decode): per-token
    latency p50, p90, p99 and max over ``runs`` generations of ``tokens`` tokens."""
    from ..llm.generate import Runtime
    from ..llm.model import load_model

    model = load_model(None, progress=False)
    with Runtime(model, "golden", preset=preset("kv260")) as runtime:
        samples = []
        for _ in range(runs):
            samples += token_latencies(runtime, "Once upon a time", tokens)
    p50, p90, p99 = np.percentile(samples, [50, 90, 99])
    return ["", f"Golden backend, Gemma 3 270M decode latency per token on this machine ({len(samples)} tokens, "
            f"{runs} runs of {tokens}; {runtime.describe()}):",
            f"  p50 {p50:.2f} ms, p90 {p90:.2f} ms, p99 {p99:.2f} ms, max {max(samples):.2f} ms"]


@entry
def main(argv: list[str] | None = None) -> int:
    """Counts per token and per job, the A53 estimate, and the model checked here."""
    import argparse

    parser = ArgumentParser(prog="python -m host.perf.a53", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["gemma", "stories15M", "stories110M"],
                        choices=["gemma", "stories15M", "stories110M"], help="models to count")
    parser.add_argument("--contexts", nargs="+", type=int, default=[64, 512],
                        help="context lengths (default: 64 512)")
    parser.add_argument("--latency", type=int_in(0, 4096), default=128, metavar="TOKENS",
                        help="also time TOKENS golden-backend Gemma decode tokens x3 and print "
                             "p50/p99 (0: skip; default 128)")
    parser.add_argument("--syscall-child", nargs=4, metavar=("PRESET", "MODE", "TOKENS", "SHAPES"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.syscall_child:
        preset_name, mode, tokens, shapes = args.syscall_child
        _syscall_child(preset_name, mode, int(tokens), shapes)
        return 0
    accel = preset("kv260")
    cases, here = measure_cases(args.models, args.contexts, accel, progress=lambda m: print(m, file=sys.stderr))
    print(render(cases, accel))
    print()
    for cpu in (A53, here):
        print(f"{cpu.name}: {cpu.flops_per_s / 1e9:.2f} GFLOP/s, exp/tanh {cpu.transcendental_s * 1e9:.1f} ns, "
              f"{cpu.bytes_per_s / 1e9:.2f} GB/s, Python-level call {cpu.python_call_s * 1e6:.3f} us, "
              f"compiled call {cpu.compiled_call_s * 1e6:.2f} us, "
              f"syscall {cpu.syscall_s * 1e6:.2f} us")
    print("\n".join(projection_lines(cases)))
    if args.latency:
        print("\n".join(latency_lines(args.latency)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
