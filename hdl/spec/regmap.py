"""The register map of ``s_axi_ctrl``, described once.

Every other view of the registers is derived from ``REGISTERS`` and ``ErrorCode``:
the RTL decode (``hdl/csr.py``), the C header, the Python constants module and
the Markdown table (``gen/regs.py``), the job fields and rules (``hdl.spec.job``) and
the host driver (``host/accel/driver.py``).

The layout follows the Vitis HLS ``ap_ctrl_hs`` convention that PYNQ and XRT users
know: control word at 0x00, GIE/IER/ISR at 0x04/0x08/0x0C, arguments from 0x10.
All registers are 32 bits wide; 64-bit values are split into ``_LO``/``_HI``.
Reads of unmapped offsets return 0 and writes to them are ignored, both with OKAY.
A register whose value is narrower than 32 bits states it with a field (``M``'s
``count`` is 24 bits); the job registers keep all 32 written bits, so a value beyond
its field is refused by the job check instead of running as a different job.

Register kinds (how ``hdl/csr.py`` implements them):

``ctrl``   the control word (special semantics, see ``CTRL`` field docs).
``rw``     plain storage written by the host; the value goes to the hardware.
``isr``    interrupt status: set by hardware events, each bit toggles on write 1.
``status`` read-only value driven by the hardware.
``const``  read-only constant from the ``AccelConfig`` (identity, capabilities).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .config import AccelConfig

__all__ = ["ID_MAGIC", "VERSION", "DocIntEnum", "ErrorCode", "Field", "Register", "REGISTERS",
           "by_name", "const_value", "field_bits"]

ID_MAGIC = 0x53595354        # "SYST"
VERSION = (1, 3)             # (major, minor) of this register map; 1.3: CAP_PORTS.coherent_io


class DocIntEnum(enum.IntEnum):
    """An ``IntEnum`` whose members carry their meaning: ``NAME = value, "doc"``."""

    def __new__(cls, value: int, doc: str):
        member = int.__new__(cls, value)
        member._value_ = value
        member.doc = doc
        return member


class ErrorCode(DocIntEnum):
    """Values of ``ERR_CODE``. A job refused for bad arguments issues no DMA traffic."""

    OK = 0x00, "no error"
    M_RANGE = 0x01, "M is 0 or above CAP_MAX_MN (wider than M.count)"
    N_RANGE = 0x02, "N is 0 or above CAP_MAX_MN (wider than N.count)"
    K_RANGE = 0x03, "K is 0 or wider than K.count (16 bits)"
    A_OVERFLOW = 0x04, "K above CAP_MAX_K: one M block of A would overflow the activation buffer"
    ALIGN = 0x05, "an address or stride is not a multiple of the bus width in bytes"
    STRIDE = 0x06, "A_STRIDE < K or C_STRIDE < 4*N"
    ADDR_RANGE = 0x07, "a buffer runs past the top of the address space"
    START_BUSY = 0x08, "ap_start written while a job was running (that job continues)"
    DMA_READ = 0x09, "SLVERR/DECERR on a read; ERR_ADDR holds the burst address, ERR_PORT its port"
    DMA_WRITE = 0x0A, "SLVERR/DECERR on a write; ERR_ADDR holds the burst address"
    ABORTED = 0x0B, "the job was ended by CTRL.soft_reset"
    FORMAT = 0x0C, "W_FORMAT names a weight format this bitstream does not run (see CAP_FORMATS)"


@dataclass(frozen=True)
class Field:
    """A bit field of a register."""

    name: str
    lsb: int
    width: int
    doc: str

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb

    @property
    def limit(self) -> int:
        """The largest value the field holds."""
        return (1 << self.width) - 1


@dataclass(frozen=True)
class Register:
    """One 32-bit register at ``offset``; see the module docstring for ``kind``."""

    name: str
    offset: int
    kind: str
    doc: str
    fields: tuple[Field, ...] = ()
    width: int = 32                         # significant bits (rw/status)
    value: Callable[["AccelConfig"], int] | None = field(default=None, compare=False)

    @property
    def access(self) -> str:
        return {"ctrl": "RW", "rw": "RW", "isr": "R/TOW", "status": "RO", "const": "RO"}[self.kind]

    def field(self, name: str) -> Field:
        """The field called ``name``."""
        for fld in self.fields:
            if fld.name == name:
                return fld
        raise KeyError(f"{self.name} has no field {name!r}; it has "
                       f"{', '.join(f.name for f in self.fields) or 'none'}")

    def pack(self, **values):
        """The register value with each named field set: ``STATUS.pack(busy=b, error=e)``.

        Works on ints and on Amaranth values alike (only ``<<`` and ``|``); every
        field must be given, so a new field cannot be left out silently.
        """
        missing = {f.name for f in self.fields} - set(values)
        extra = set(values) - {f.name for f in self.fields}
        if missing or extra:
            raise ValueError(f"{self.name}.pack needs exactly the fields "
                             f"{sorted(f.name for f in self.fields)}; missing {sorted(missing)}, "
                             f"unknown {sorted(extra)}")
        word = 0
        for fld in self.fields:
            word = word | (values[fld.name] << fld.lsb)
        return word


def _f(name: str, lsb: int, doc: str, width: int = 1) -> Field:
    return Field(name, lsb, width, doc)


REGISTERS: tuple[Register, ...] = (
    Register("CTRL", 0x00, "ctrl", "Control word (ap_ctrl_hs layout).", (
        _f("ap_start", 0, "Write 1 to start a job with the argument registers. Reads 1 until "
                          "the job is accepted (cleared on handshake). Written while busy, the "
                          "write is refused and ERR_CODE becomes START_BUSY."),
        _f("ap_done", 1, "1 when a job has ended (finished or refused); clear on read."),
        _f("ap_idle", 2, "1 while no job is running."),
        _f("ap_ready", 3, "1 when the accelerator has taken the job's inputs; clear on read "
                          "(set together with ap_done)."),
        _f("auto_restart", 7, "Not supported; reads 0."),
        _f("soft_reset", 8, "Write 1 to end any job and return to idle: outstanding AXI "
                            "transactions are completed first. Self-clearing; a running job "
                            "ends with ERR_CODE ABORTED."),
        _f("interrupt", 9, "Read-only copy of the irq output."),
    )),
    Register("GIE", 0x04, "rw", "Global interrupt enable.",
             (_f("enable", 0, "1 routes enabled ISR bits to irq."),), width=1),
    Register("IER", 0x08, "rw", "Interrupt enable.", (
        _f("done", 0, "Enable the ap_done interrupt."),
        _f("ready", 1, "Enable the ap_ready interrupt."),
    ), width=2),
    Register("ISR", 0x0C, "isr", "Interrupt status; a bit sets on its event when enabled in "
                                 "IER, and writing 1 toggles it.", (
        _f("done", 0, "A job ended."),
        _f("ready", 1, "A job's inputs were taken."),
    ), width=2),
    Register("A_ADDR_LO", 0x10, "rw", "Address of A (int8 [M, K], rows A_STRIDE bytes apart), bits 31:0."),
    Register("A_ADDR_HI", 0x14, "rw", "Address of A, bits 63:32."),
    Register("W_ADDR_LO", 0x18, "rw", "Address of the packed weights (tile-major int8), bits 31:0."),
    Register("W_ADDR_HI", 0x1C, "rw", "Address of the packed weights, bits 63:32."),
    Register("C_ADDR_LO", 0x20, "rw", "Address of C (int32 [M, N], rows C_STRIDE bytes apart), bits 31:0."),
    Register("C_ADDR_HI", 0x24, "rw", "Address of C, bits 63:32."),
    Register("M", 0x28, "rw", "Rows of A and C (tokens), 1..CAP_MAX_MN.",
             (_f("count", 0, "The row count; any bit above it set refuses the job (M_RANGE).", 24),)),
    Register("N", 0x2C, "rw", "Output channels (rows of W, columns of C), 1..CAP_MAX_MN.",
             (_f("count", 0, "The channel count; any bit above it set refuses the job (N_RANGE).", 24),)),
    Register("K", 0x30, "rw", "Reduction length (columns of A and W), 1..CAP_MAX_K.",
             (_f("count", 0, "The reduction length; any bit above it set refuses the job (K_RANGE).", 16),)),
    Register("A_STRIDE", 0x34, "rw", "Bytes between rows of A; a multiple of the bus width, >= K."),
    Register("C_STRIDE", 0x38, "rw", "Bytes between rows of C; a multiple of the bus width, >= 4*N."),
    Register("W_STRIDE", 0x3C, "rw", "Bytes from one weight port's stream to the next: port p "
                                     "streams from W_ADDR + p*W_STRIDE. A multiple of the bus "
                                     "width; unused (and unchecked) when CAP_PORTS.count is 1."),
    Register("STATUS", 0x40, "status", "Engine state.", (
        _f("busy", 0, "A job is running."),
        _f("error", 1, "ERR_CODE is not OK."),
    ), width=2),
    Register("ERR_CODE", 0x44, "status", "Sticky error code (ErrorCode) of the last job; cleared "
                                         "when the next job is accepted.", width=8),
    Register("ERR_ADDR_LO", 0x48, "status", "Faulting address (DMA error or bad argument), bits 31:0."),
    Register("ERR_ADDR_HI", 0x4C, "status", "Faulting address, bits 63:32."),
    Register("CYCLES_LO", 0x50, "status", "Free-running cycle counter since reset, bits 31:0."),
    Register("CYCLES_HI", 0x54, "status", "Free-running cycle counter, bits 63:32 (read HI, LO, HI)."),
    Register("PERF_BUSY", 0x58, "status", "Cycles from the last job's start to its done."),
    Register("PERF_STALL", 0x5C, "status", "Cycles of the last job in which the array waited for "
                                           "weight data (read stall)."),
    Register("PERF_RD_BEATS", 0x60, "status", "Read data beats of the last job (A and W)."),
    Register("PERF_WR_BEATS", 0x64, "status", "Write data beats of the last job (C)."),
    Register("ERR_PORT", 0x68, "status", "Read port of a DMA_READ fault (0 = m_axi_dma, p = "
                                         "m_axi_w<p>); 0 for every other code.", width=8),
    Register("W_FORMAT", 0x6C, "rw", "Weight format of the packed weights (hdl.spec.formats): "
                                     "0 = int8, 1 = int4 with 4-bit group scales.",
             (_f("count", 0, "The format; one CAP_FORMATS does not list refuses the job (FORMAT).", 8),)),
    Register("ID", 0x80, "const", "Identity: 0x53595354 ('SYST').", value=lambda c: ID_MAGIC),
    Register("VERSION", 0x84, "const", "Register map version, major << 16 | minor.",
             value=lambda c: VERSION[0] << 16 | VERSION[1]),
    Register("CAP_ARRAY", 0x88, "const", "Array shape.", (
        _f("rows", 0, "PE rows (tokens per M block).", 16),
        _f("cols", 16, "PE columns (output channels per weight beat).", 16),
    ), value=lambda c: c.rows | c.cols << 16),
    Register("CAP_BUS", 0x8C, "const", "DMA bus.", (
        _f("bus_bytes", 0, "Data bytes per beat.", 16),
        _f("addr_width", 16, "Address bits.", 8),
        _f("max_burst_log2", 24, "log2 of the longest burst in beats.", 8),
    ), value=lambda c: c.bus_bytes | c.addr_width << 16 | (c.max_burst.bit_length() - 1) << 24),
    Register("CAP_ACT_BYTES", 0x90, "const", "Activation buffer size in bytes.",
             value=lambda c: c.act_buffer_bytes),
    Register("CAP_MAX_K", 0x94, "const", "Largest K (activation buffer bytes / rows).",
             value=lambda c: c.max_k),
    Register("CAP_MAX_MN", 0x98, "const", "Largest M and N (the M and N count fields).",
             value=lambda c: c.max_mn),
    Register("CAP_PORTS", 0x9C, "const", "The DMA ports.", (
        _f("count", 0, "Weight read ports (m_axi_dma, m_axi_w1, ...); "
                       "CAP_ARRAY.cols = count * CAP_BUS.bus_bytes.", 8),
        _f("coherent_io", 16, "A and C bursts are I/O coherent (AxCACHE 0b1111, AxPROT 0b010): "
                              "m_axi_dma goes to a port that snoops the CPU caches, so A and C "
                              "need no cache maintenance per job. 0: every burst is normal "
                              "non-cacheable (AxCACHE 0b0011, AxPROT 0)."),
    ), value=lambda c: c.weight_ports | int(c.coherent_io) << 16),
    Register("CAP_FORMATS", 0xA0, "const", "Weight formats this bitstream runs: bit f set for "
                                            "W_FORMAT value f (bit 0 int8, bit 1 int4).",
             value=lambda c: c.format_mask),
)


def by_name(name: str) -> Register:
    """The register called ``name``."""
    for reg in REGISTERS:
        if reg.name == name:
            return reg
    raise KeyError(f"no register named {name!r}")


def field_bits(register: str, field_name: str = "count") -> int:
    """Width of a field, e.g. ``field_bits("K")`` is 16: the one place it is stated."""
    return by_name(register).field(field_name).width


def const_value(reg: Register, config: "AccelConfig") -> int:
    """The value a ``const`` register reads for ``config``."""
    if reg.kind != "const" or reg.value is None:
        raise ValueError(f"{reg.name} is not a constant register")
    return reg.value(config) & 0xFFFF_FFFF


def _check() -> None:
    """Refuse an inconsistent map at import (ValueError, which ``python -O`` keeps)."""
    offsets = [r.offset for r in REGISTERS]
    if len(set(offsets)) != len(offsets):
        raise ValueError(f"duplicate register offsets in {sorted(offsets)}")
    names = [r.name for r in REGISTERS]
    if len(set(names)) != len(names):
        raise ValueError("duplicate register names")
    for reg in REGISTERS:
        if reg.offset % 4:
            raise ValueError(f"{reg.name} at 0x{reg.offset:X} is not word-aligned")
        if reg.kind not in ("ctrl", "rw", "isr", "status", "const"):
            raise ValueError(f"{reg.name} has unknown kind {reg.kind!r}")
        for fld in reg.fields:
            if fld.lsb + fld.width > 32:
                raise ValueError(f"{reg.name}.{fld.name} (bits {fld.lsb}+{fld.width}) exceeds 32 bits")
        spans = sorted((f.lsb, f.lsb + f.width) for f in reg.fields)
        if any(end > start for (_, end), (start, _) in zip(spans, spans[1:])):
            raise ValueError(f"{reg.name} has overlapping fields")


_check()
