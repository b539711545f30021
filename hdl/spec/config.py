"""The one accelerator configuration: ``AccelConfig`` and its board presets.

Everything that depends on the shape of the accelerator (the HDL, the register
map's capability values, the generators, the host driver, the weight packing and
the cycle model) takes an ``AccelConfig``. Like all of ``hdl.spec`` it imports only
the standard library, so the host runtime uses it on a board without Amaranth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .formats import WeightFormat, format_mask
from .regmap import by_name

__all__ = ["AccelConfig", "MAX_WEIGHT_PORTS", "PRESETS", "preset"]

_BUS_WIDTHS = (32, 64, 128, 256, 512)
MAX_WEIGHT_PORTS = 4        # the Zynq UltraScale+ PL has four S_AXI_HP ports


def _is_pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True)
class AccelConfig:
    """Shape of one accelerator build.

    The array is ``rows x cols`` int8 PEs, output-stationary. The weights stream
    over ``weight_ports`` AXI4 read masters at once (``m_axi_dma``, which also reads
    A and writes C, then ``m_axi_w1`` ...): one beat of each carries one ``k`` step
    for ``bus_bytes`` output channels, so ``cols == weight_ports * bus_bytes``
    always, and ``rows`` token rows share those beats.

    ``axi_clock_mhz`` gives the AXI masters a clock of their own (``m_axi_aclk``,
    asynchronous to the core's ``aclk``): faster ports than the array's intake let
    the stream catch up after a DRAM refresh (``hdl/dma_crossing.py``). ``None``: the
    masters run on ``aclk``, in one clock domain with the core.

    ``coherent_io``: the bursts that carry data the CPU shares job by job (A's rows and
    C) are marked I/O coherent (``hdl.axi.CACHE_COHERENT``/``PROT_COHERENT``) and
    ``m_axi_dma`` goes to a port that snoops the CPU caches (the KV260's
    ``S_AXI_HPC0_FPD``), so the host needs no cache maintenance per job. The weight
    streams stay non-coherent (written once, cleaned once). False: every burst is
    normal non-cacheable, as for the HP ports and the MIG.
    """

    name: str
    rows: int                  # token rows per M block (activations held on chip)
    cols: int                  # output channels per weight beat (N tile)
    bus_bits: int              # m_axi_dma data width
    act_buffer_bytes: int      # on-chip activation buffer: rows x max_k int8
    addr_width: int            # m_axi_dma address width
    clock_mhz: float           # target fabric clock (Vivado constraint, projections)
    max_burst: int = 256       # beats per AXI4 INCR burst (AXI4 allows up to 256)
    read_fifo_beats: int = 512  # read-data FIFO; bounds reads in flight by credit
    max_outstanding: int = 8   # AR bursts in flight at most
    id_width: int = 1          # m_axi_dma ID width (one ID: responses stay in order)
    weight_ports: int = 1      # AXI4 masters the weight stream is split over
    axi_clock_mhz: float | None = None   # the masters' own clock (m_axi_aclk); None: aclk
    int4: bool = True          # runs 4-bit weights too (hdl.spec.formats); needs an even rows
    coherent_io: bool = False  # A and C bursts I/O coherent (m_axi_dma on a snooping port)

    def __post_init__(self) -> None:
        if self.bus_bits not in _BUS_WIDTHS:
            raise ValueError(f"bus_bits={self.bus_bits} must be one of {_BUS_WIDTHS}")
        if not (isinstance(self.weight_ports, int) and _is_pow2(self.weight_ports)
                and self.weight_ports <= MAX_WEIGHT_PORTS):
            raise ValueError(f"weight_ports={self.weight_ports!r} must be a power of two "
                             f"<= {MAX_WEIGHT_PORTS}")
        if self.cols != self.weight_ports * self.bus_bytes:
            raise ValueError(
                f"cols={self.cols} must equal weight_ports*bus_bits/8="
                f"{self.weight_ports * self.bus_bytes}: one beat of every weight port "
                "feeds one k step of every column")
        if not 1 <= self.rows <= 64:
            raise ValueError(f"rows={self.rows} must be in 1..64")
        step = self.rows * self.bus_bytes
        if self.act_buffer_bytes <= 0 or self.act_buffer_bytes % step:
            raise ValueError(
                f"act_buffer_bytes={self.act_buffer_bytes} must be a positive multiple of "
                f"rows*bus_bytes={step}")
        k_limit = by_name("K").field("count").limit
        if self.max_k > k_limit:
            raise ValueError(f"max_k={self.max_k} exceeds {k_limit} (the K register's count field)")
        if not 32 <= self.addr_width <= 64:
            raise ValueError(f"addr_width={self.addr_width} must be in 32..64")
        if not (_is_pow2(self.max_burst) and self.max_burst <= 256):
            raise ValueError(f"max_burst={self.max_burst} must be a power of two <= 256")
        if self.max_burst * self.bus_bytes > 4096:
            raise ValueError(f"max_burst={self.max_burst} beats of {self.bus_bytes} B exceed 4 KiB")
        if not (_is_pow2(self.read_fifo_beats) and self.read_fifo_beats >= self.max_burst):
            raise ValueError(
                f"read_fifo_beats={self.read_fifo_beats} must be a power of two >= max_burst")
        if not 1 <= self.max_outstanding <= 32:
            raise ValueError(f"max_outstanding={self.max_outstanding} must be in 1..32")
        if not 1 <= self.id_width <= 16:
            raise ValueError(f"id_width={self.id_width} must be in 1..16")
        if not (isinstance(self.clock_mhz, (int, float)) and 1.0 <= self.clock_mhz <= 1000.0):
            raise ValueError(f"clock_mhz={self.clock_mhz!r} must be a finite number in 1..1000 MHz")
        if self.int4 and self.rows % 2:
            raise ValueError(f"rows={self.rows} must be even for int4 weights (a token takes a pair "
                             "of rows); set int4=False")
        if self.axi_clock_mhz is not None and not (
                isinstance(self.axi_clock_mhz, (int, float)) and 1.0 <= self.axi_clock_mhz <= 1000.0):
            raise ValueError(f"axi_clock_mhz={self.axi_clock_mhz!r} must be None (the masters on aclk) "
                             "or a finite number in 1..1000 MHz")

    # Derived quantities. Nothing else in the project recomputes these.
    @property
    def bus_bytes(self) -> int:
        """Bytes per AXI data beat (``cols / weight_ports``)."""
        return self.bus_bits // 8

    @property
    def max_k(self) -> int:
        """Largest K a job may use: one M block of activations must fit on chip."""
        return self.act_buffer_bytes // self.rows

    @property
    def max_mn(self) -> int:
        """Largest M and N a job may use: what the M and N count fields hold."""
        return min(by_name("M").field("count").limit, by_name("N").field("count").limit)

    @property
    def c_beats_per_row(self) -> int:
        """Beats of int32 results per row of one N tile (``cols * 4 / bus_bytes``)."""
        return 4 * self.cols // self.bus_bytes

    @property
    def split_clocks(self) -> bool:
        """Whether the AXI masters have their own clock (``m_axi_aclk``)."""
        return self.axi_clock_mhz is not None

    @property
    def port_clock_mhz(self) -> float:
        """The AXI masters' clock: ``axi_clock_mhz``, or ``clock_mhz`` without one."""
        return self.clock_mhz if self.axi_clock_mhz is None else self.axi_clock_mhz

    @property
    def array_bytes_per_s(self) -> float:
        """Weight bytes the array takes per second at most: one beat of every port per
        ``aclk`` cycle."""
        return self.cols * self.clock_mhz * 1e6

    @property
    def ports_bytes_per_s(self) -> float:
        """Peak of the weight masters together: one beat per ``port_clock_mhz`` cycle each."""
        return self.weight_ports * self.bus_bytes * self.port_clock_mhz * 1e6

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """Peak weight stream: the lower of the array's intake and the ports' peak."""
        return min(self.array_bytes_per_s, self.ports_bytes_per_s)

    @property
    def weight_masters(self) -> tuple[str, ...]:
        """The read masters of the weight stream, port 0 first: ``m_axi_dma`` (which also
        carries A and C), then ``m_axi_w1`` ... (read-only)."""
        return ("m_axi_dma", *(f"m_axi_w{p}" for p in range(1, self.weight_ports)))

    @property
    def summary(self) -> str:
        """One line for people: the array, its clock, the weight ports and theirs."""
        ports = f"{self.weight_ports}x {self.bus_bits}-bit port{'s' if self.weight_ports > 1 else ''}"
        clocks = f" @ {self.axi_clock_mhz:g} MHz" if self.split_clocks else ""
        return f"{self.rows}x{self.cols} @ {self.clock_mhz:g} MHz, {ports}{clocks}"

    @property
    def weight_formats(self) -> tuple[WeightFormat, ...]:
        """The weight formats this build runs (``CAP_FORMATS``)."""
        return (WeightFormat.INT8, WeightFormat.INT4) if self.int4 else (WeightFormat.INT8,)

    @property
    def format_mask(self) -> int:
        """``CAP_FORMATS``: bit ``f`` set when format ``f`` runs."""
        return format_mask(self.weight_formats)

    def replace(self, **changes) -> "AccelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, AccelConfig] = {
    # Kria KV260: Zynq UltraScale+ PL at 250 MHz; the weights over the four 128-bit HP
    # ports, so 64 columns (16 GB/s into the array). The ports run at 300 MHz (19.2 GB/s,
    # the DDR4's peak; DS925 allows 333 MHz on the PS-PL AXI ports), so after a refresh
    # they deliver faster than the array takes and the stream catches up. 8 rows keep
    # the 512 PEs' DSPs at 41% of the K26's 1248 (16 rows would need 82%).
    "kv260": AccelConfig(name="kv260", rows=8, cols=64, bus_bits=128,
                         act_buffer_bytes=32 * 1024, addr_width=40, clock_mhz=250.0,
                         weight_ports=4, axi_clock_mhz=300.0, coherent_io=True),
    # Nexys Video: Artix-7 at 100 MHz, MIG's 128-bit AXI port to 16-bit DDR3-800.
    "nexys_video": AccelConfig(name="nexys_video", rows=8, cols=16, bus_bits=128,
                               act_buffer_bytes=32 * 1024, addr_width=32, clock_mhz=100.0),
    # Small builds that simulate quickly; same RTL, fewer PEs. small runs int8 only, so a
    # bitstream without a format is in the tests too.
    "small": AccelConfig(name="small", rows=4, cols=8, bus_bits=64,
                         act_buffer_bytes=4 * 1024, addr_width=32, clock_mhz=100.0,
                         max_burst=16, read_fifo_beats=64, max_outstanding=4, int4=False),
    # tiny splits its weights over two ports, clocks them apart from the core and marks A
    # and C coherent, so the multi-port RTL, the clock crossing and the per-burst AxCACHE/
    # AxPROT are in every quick test (small keeps every burst non-coherent).
    "tiny": AccelConfig(name="tiny", rows=2, cols=8, bus_bits=32,
                        act_buffer_bytes=2 * 128, addr_width=32, clock_mhz=100.0,
                        max_burst=8, read_fifo_beats=16, max_outstanding=2, weight_ports=2,
                        axi_clock_mhz=130.0, coherent_io=True),
}


def preset(name: str) -> AccelConfig:
    """The preset called ``name``; ``KeyError`` lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
