"""A job: the argument registers of one matmul and the rules that refuse a bad one.

``C[M, N] (int32) = A[M, K] (int8) x W[N, K]^T``, with A rows ``A_STRIDE`` bytes
apart, W packed tile-major in one stream per weight port, port ``p``'s from
``W_ADDR + p*W_STRIDE`` (``host.accel.pack``), and C rows ``C_STRIDE`` bytes apart.
The fields come from the register map (``hdl.spec.regmap``): their registers, and the
width of the count fields of M, N and K.

The rules are declared once, here, and followed by:

- the RTL (``hdl.jobcheck.JobCheck`` evaluates ``quick_checks`` and ``extents`` on its
  signals: every rule below is written with operators that Python ints and Amaranth
  values share);
- the host driver's pre-check (``host.accel.driver``) and the RTL tests' oracle
  (``check``);
- the C firmware (``systole_check_job``), which must reproduce the check vectors
  ``gen.job_vectors`` generates from ``check`` (``edge_jobs``).

The first failing rule wins; ERR_ADDR (the ``addr`` of ``check``) is 0 for the M, N
and K rules, the offending address or stride otherwise:

1. ``M_RANGE``/``N_RANGE``: 0, or above ``max_mn`` (a bit above the count field set);
   ``K_RANGE``: 0, or a bit above the K count field set; ``A_OVERFLOW``: K above
   ``max_k`` (one M block of A must fit the activation buffer); ``FORMAT``: W_FORMAT
   names a weight format the build does not run (``AccelConfig.format_mask``).
2. ``ALIGN``: the A, W, C address, A_STRIDE, C_STRIDE or (with more than one weight
   port) W_STRIDE, in that order, is not a multiple of the bus width.
3. ``STRIDE``: ``A_STRIDE < K``, then ``C_STRIDE < 4 N``.
4. ``ADDR_RANGE``: the first buffer (A, W, C) whose last byte lies at or above
   ``2^addr_width``; ERR_ADDR is its base. A buffer is exactly what the DMA touches:
   ``(M-1)*A_STRIDE + ceil(K/bb)*bb`` bytes of A, ``(P-1)*W_STRIDE + ceil(N/cols)*T*bb``
   of W, ``T`` the format's beats per tile (``formats.tile_beats``: ``K`` for int8) (``P`` weight ports; the streams may overlap, they are only read) and
   ``(M-1)*C_STRIDE + ceil(4N/bb)*bb`` of C. Ending exactly at ``2^addr_width`` is legal.
"""

from __future__ import annotations

import random
from dataclasses import astuple, dataclass, fields

from .config import AccelConfig
from .formats import WeightFormat, tile_beats
from .regmap import ErrorCode, by_name

__all__ = ["JobField", "FIELDS", "field", "Job", "Extent", "quick_checks", "extents", "check",
           "row_strides", "product_bits", "edge_jobs", "times"]


@dataclass(frozen=True)
class JobField:
    """One argument of a job and the register(s) that carry it (``_LO`` first)."""

    name: str
    registers: tuple[str, ...]

    @property
    def storage_bits(self) -> int:
        """Bits the registers keep: everything the host may write."""
        return 32 * len(self.registers)

    @property
    def value_bits(self) -> int:
        """Bits a legal value may use: the register's ``count`` field if it has one."""
        reg = by_name(self.registers[0])
        return reg.field("count").width if reg.fields else self.storage_bits


FIELDS: tuple[JobField, ...] = (
    JobField("a_addr", ("A_ADDR_LO", "A_ADDR_HI")),
    JobField("w_addr", ("W_ADDR_LO", "W_ADDR_HI")),
    JobField("c_addr", ("C_ADDR_LO", "C_ADDR_HI")),
    JobField("m", ("M",)),
    JobField("n", ("N",)),
    JobField("k", ("K",)),
    JobField("a_stride", ("A_STRIDE",)),
    JobField("c_stride", ("C_STRIDE",)),
    JobField("w_stride", ("W_STRIDE",)),
    JobField("w_format", ("W_FORMAT",)),
)
_FIELD = {f.name: f for f in FIELDS}


def field(name: str) -> JobField:
    """The job field called ``name`` (``field("n").value_bits`` is N's width)."""
    try:
        return _FIELD[name]
    except KeyError:
        raise KeyError(f"no job field {name!r}; the fields are {', '.join(_FIELD)}") from None


@dataclass(frozen=True)
class Job:
    """The arguments of one job, as the registers hold them (integers, or signals)."""

    a_addr: int
    w_addr: int
    c_addr: int
    m: int
    n: int
    k: int
    a_stride: int
    c_stride: int
    w_stride: int = 0         # only read with several weight ports
    w_format: int = 0         # hdl.spec.formats.WeightFormat

    def registers(self) -> dict[str, int]:
        """``{register name: 32-bit word}``; ValueError names a value no register can hold."""
        words = {}
        for spec, value in zip(FIELDS, astuple(self)):
            if not 0 <= value < 1 << spec.storage_bits:
                raise ValueError(f"{spec.name}={value:#x} does not fit "
                                 f"{'/'.join(spec.registers)} ({spec.storage_bits} bits)")
            for index, register in enumerate(spec.registers):
                words[register] = value >> (32 * index) & 0xFFFF_FFFF
        return words


if [f.name for f in fields(Job)] != [f.name for f in FIELDS]:
    raise ValueError("Job's attributes must follow FIELDS, in order")


def _log2(value: int) -> int:
    if value <= 0 or value & (value - 1):
        raise ValueError(f"{value} is not a power of two")
    return value.bit_length() - 1


def times(value, constant: int):
    """``value * constant`` as a sum of shifts (ints and signals alike), so a constant
    product costs adders in the RTL and never a DSP multiplier."""
    if constant < 0:
        raise ValueError(f"constant={constant} must not be negative")
    terms = [value << bit for bit in range(constant.bit_length()) if constant >> bit & 1]
    return sum(terms[1:], terms[0]) if terms else 0


def _round_up(value, step_log2: int):
    """``value`` rounded up to a multiple of ``2^step_log2`` (ints and signals alike)."""
    return ((value + (1 << step_log2) - 1) >> step_log2) << step_log2


def quick_checks(config: AccelConfig, job: Job) -> list[tuple[object, ErrorCode, object]]:
    """Rules 1-3 in order: ``(failed, code, ERR_ADDR value)`` per rule."""
    mask = config.bus_bytes - 1
    k_limit = by_name("K").field("count").limit
    return [
        (job.m == 0, ErrorCode.M_RANGE, 0),
        (job.m > config.max_mn, ErrorCode.M_RANGE, 0),
        (job.n == 0, ErrorCode.N_RANGE, 0),
        (job.n > config.max_mn, ErrorCode.N_RANGE, 0),
        (job.k == 0, ErrorCode.K_RANGE, 0),
        (job.k > k_limit, ErrorCode.K_RANGE, 0),
        (job.k > config.max_k, ErrorCode.A_OVERFLOW, 0),
        (((config.format_mask >> job.w_format) & 1) == 0, ErrorCode.FORMAT, 0),
        ((job.a_addr & mask) != 0, ErrorCode.ALIGN, job.a_addr),
        ((job.w_addr & mask) != 0, ErrorCode.ALIGN, job.w_addr),
        ((job.c_addr & mask) != 0, ErrorCode.ALIGN, job.c_addr),
        ((job.a_stride & mask) != 0, ErrorCode.ALIGN, job.a_stride),
        ((job.c_stride & mask) != 0, ErrorCode.ALIGN, job.c_stride),
        *([((job.w_stride & mask) != 0, ErrorCode.ALIGN, job.w_stride)]
          if config.weight_ports > 1 else []),
        (job.a_stride < job.k, ErrorCode.STRIDE, job.a_stride),
        (job.c_stride < 4 * job.n, ErrorCode.STRIDE, job.c_stride),
    ]


@dataclass(frozen=True)
class Extent:
    """A buffer's bytes: ``multiplier * multiplicand + tail`` from ``base``."""

    base: object
    multiplier: object
    multiplicand: object
    tail: object


def product_bits() -> int:
    """Bits of every extent's multiplier (``M - 1`` and ``ceil(N/cols)`` of a job that
    passed rule 1): the M and N count fields."""
    return max(_FIELD["m"].value_bits, _FIELD["n"].value_bits)


def extents(config: AccelConfig, job: Job, beats=None) -> list[Extent]:
    """The A, W and C buffers of rule 4, meaningful once rules 1-3 pass. ``beats`` is
    one port's beats per tile (``formats.tile_beats`` of the job's format and K):
    computed here for an integer job, given by the RTL as a signal."""
    bb_log2 = _log2(config.bus_bytes)
    if beats is None:
        beats = tile_beats(job.w_format, job.k)
    return [
        Extent(job.a_addr, job.m - 1, job.a_stride, _round_up(job.k, bb_log2)),
        Extent(job.w_addr, (job.n + config.cols - 1) >> _log2(config.cols), beats << bb_log2,
               times(job.w_stride, config.weight_ports - 1)),
        Extent(job.c_addr, job.m - 1, job.c_stride, _round_up(4 * job.n, bb_log2)),
    ]


def check(config: AccelConfig, job: Job) -> tuple[ErrorCode, int]:
    """``(code, ERR_ADDR)`` of ``job``: ``(ErrorCode.OK, 0)`` when it may run."""
    for failed, code, value in quick_checks(config, job):
        if failed:
            return code, int(value)
    top = 1 << config.addr_width
    for extent in extents(config, job):
        if extent.base + extent.multiplier * extent.multiplicand + extent.tail > top:
            return ErrorCode.ADDR_RANGE, extent.base
    return ErrorCode.OK, 0


def row_strides(config: AccelConfig, k: int, n: int) -> tuple[int, int]:
    """The smallest legal ``(A_STRIDE, C_STRIDE)`` for K and N: whole bus beats."""
    bb_log2 = _log2(config.bus_bytes)
    return _round_up(k, bb_log2), _round_up(4 * n, bb_log2)


def edge_jobs(config: AccelConfig, rng: random.Random, count: int = 120) -> list[Job]:
    """Jobs on every rule's boundary, then ``count`` random jobs near the boundaries.

    Together they reach every ``ErrorCode`` a job check can return (the RTL, driver
    and firmware tests check that they do).
    """
    bb = config.bus_bytes
    top = 1 << config.addr_width
    ports = config.weight_ports
    stream = 2 * (2 * bb + 1) * bb          # one port's stream of the good job: 2 tiles of K beats
    w_stride = stream if ports > 1 else 0
    c_stride = 8 * config.cols                     # two C rows of N = cols + 1 fit
    c_tail = _round_up(4 * (config.cols + 1), _log2(bb))
    good = Job(a_addr=0x1000, w_addr=0x8000, c_addr=0x20000, m=3, n=config.cols + 1,
               k=2 * bb + 1, a_stride=3 * bb, c_stride=c_stride, w_stride=w_stride)
    count_limit = {name: by_name(name).field("count").limit for name in ("M", "N", "K")}

    def variant(**changes) -> Job:
        return Job(**{**good.__dict__, **changes})

    jobs = [good, variant(m=0), variant(n=0), variant(k=0),
            variant(k=config.max_k, a_stride=config.max_k),
            variant(k=config.max_k + 1, a_stride=config.max_k + bb),
            variant(m=count_limit["M"]), variant(n=count_limit["N"]),
            variant(m=count_limit["M"] + 2), variant(n=count_limit["N"] + 1),
            variant(k=count_limit["K"] + 1 + 16), variant(m=1 << 31),
            variant(a_addr=top - 3 * 3 * bb), variant(a_addr=top - 3 * 3 * bb + bb),
            variant(c_addr=top - 2 * c_stride - c_tail), variant(c_addr=top - 2 * c_stride - c_tail + bb),
            variant(w_addr=(1 << 64) - bb), variant(a_addr=1, m=0),
            variant(a_stride=3 * bb + 2), variant(c_stride=c_stride + 1),
            variant(a_stride=2 * bb), variant(c_stride=4 * bb),
            variant(w_format=WeightFormat.INT4), variant(w_format=len(WeightFormat)),
            variant(w_format=0xFF), variant(w_format=1 << 31), variant(w_format=2, k=0),
            variant(w_format=2, a_addr=1)]
    if ports > 1:
        w_top = top - (ports - 1) * w_stride - stream   # the last W stream ends at the top
        jobs += [variant(w_stride=w_stride + 1), variant(w_stride=0), variant(w_stride=(1 << 32) - bb),
                 variant(w_addr=w_top), variant(w_addr=w_top + bb)]
    names = [f.name for f in FIELDS]
    for _ in range(count):
        changes = {}
        for name in rng.sample(names, rng.randint(1, 3)):
            current = getattr(good, name)
            if name.endswith("_addr"):
                changes[name] = rng.choice([top - rng.randrange(0, 1 << 16) * bb,
                                            rng.randrange(0, 1 << 20) * bb + rng.choice([0, 0, 1]),
                                            top + rng.randrange(0, 4) * bb])
            elif name in ("m", "n"):
                changes[name] = rng.choice([0, 1, rng.randrange(1, 1 << 24), (1 << 24) - 1,
                                            (1 << 24) + rng.randrange(0, 1 << 8)])
            elif name == "w_format":
                changes[name] = rng.choice([0, 1, 1, 2, rng.randrange(0, 1 << 32)])
            elif name == "k":
                changes[name] = rng.choice([0, 1, config.max_k, config.max_k + 1,
                                            rng.randrange(1, 1 << 16), (1 << 16) + rng.randrange(0, 64)])
            else:
                changes[name] = rng.choice([0, bb, rng.randrange(0, 1 << 32), current + 1,
                                            (1 << 32) - bb])
        jobs.append(variant(**changes))
    return jobs
