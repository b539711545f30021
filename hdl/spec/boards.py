"""The boards Systole deploys to, described once: the KV260 and the Nexys Video.

Everything that depends on a board reads it from ``BOARDS``: the Amaranth platforms
(``hdl/boards``), the Vivado TCL, XDC and device tree (``gen.vivado``), the fit check
(``gen.report``), the projections (``host.perf``) and the link defaults
(``host.platforms.nexys_video``). Sources: AMD's Kria KV260 carrier and K26 SOM data
sheets and XilinxBoardStore presets, Digilent's Nexys Video reference manual and
master XDC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Fpga", "Pin", "Window", "Board", "BOARDS", "board"]


@dataclass(frozen=True)
class Fpga:
    """A board's FPGA: the part names each tool uses and its resources."""

    part: str                  # Vivado part
    device: str                # Amaranth XilinxPlatform device, package, speed
    package: str
    speed: str
    title: str                 # for tables
    vivado_family: str         # IP "supported families" entry
    yosys_family: str          # synth_xilinx -family
    luts: int
    ffs: int
    dsps: int
    bram36: int
    note: str = ""


@dataclass(frozen=True)
class Pin:
    """One FPGA pin a Systole design uses: package site and I/O standard."""

    site: str
    iostandard: str
    doc: str = ""
    active_low: bool = False


@dataclass(frozen=True)
class Window:
    """A range of an address map."""

    base: int
    size: int
    name: str = ""

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass(frozen=True)
class Board:
    """A board: its FPGA, memory system, address windows, clocks and pins.

    ``dram_windows``: where the accelerator's DMA reaches DRAM. ``ctrl_window``: where
    the registers sit in the map of whoever drives ``s_axi_ctrl`` (the PS on the
    KV260, the link bridge on the Nexys Video).
    """

    name: str
    title: str
    preset: str                                   # hdl.spec.config preset
    fpga: Fpga
    board_part: str                               # Vivado board part (board files)
    dram: str
    dram_bytes_per_s: float                       # peak of the DRAM interface
    dram_windows: tuple[Window, ...]
    ctrl_window: Window
    irq: str                                      # where the accelerator's irq goes
    clocks_hz: dict[str, float]
    pins: dict[str, Pin]
    dma_port: str                                 # what the DMA master connects to
    connectors: dict[str, str] = field(default_factory=dict)   # name: pins in order ("-" = power)
    uart_baud: int | None = None                  # the host link's serial rate
    irq_spi: int | None = None                    # GIC SPI number (Zynq PL-to-PS interrupt)
    read_latency: int = 32                        # DMA read latency assumed by projections (cycles)
    connector_iostandards: dict[str, str] = field(default_factory=dict)  # connector: I/O standard of its bank
    config_voltage: float | None = None           # bank 0 VCCO (7-series CONFIG_VOLTAGE); None: not set

    def pin_group(self, stem: str) -> tuple[Pin, ...]:
        """Pins ``stem0``, ``stem1``, ... in order (``led`` gives LD0..LD7)."""
        numbered = sorted((int(m.group(1)), pin) for name, pin in self.pins.items()
                          if (m := re.fullmatch(rf"{re.escape(stem)}(\d+)", name)))
        if not numbered or [i for i, _ in numbered] != list(range(len(numbered))):
            raise KeyError(f"{self.name} has no pin group {stem!r}0..")
        return tuple(pin for _, pin in numbered)

    @property
    def cfgbvs(self) -> str | None:
        """The 7-series ``CFGBVS`` for ``config_voltage``: ``VCCO`` at 2.5 V or more, else ``GND`` (UG470)."""
        if self.config_voltage is None:
            return None
        return "VCCO" if self.config_voltage >= 2.5 else "GND"

    @property
    def dram_window(self) -> Window:
        """The first (on the Nexys Video: the only) DRAM window."""
        return self.dram_windows[0]


_KV260 = Board(
    name="kv260",
    title="KV260",
    preset="kv260",
    fpga=Fpga(part="xck26-sfvc784-2LV-c", device="xck26", package="sfvc784", speed="2LV-c",
              title="XCK26 (Zynq UltraScale+)", vivado_family="zynquplus Production",
              yosys_family="xcup", luts=117_120, ffs=234_240, dsps=1_248, bram36=144,
              note="+64 URAM"),
    board_part="xilinx.com:kv260_som:part0:1.4",
    dram="DDR4 64-bit 2400 MT/s",
    dram_bytes_per_s=19.2e9,
    # As S_AXI_HP0_FPD sees it: the low 2 GiB and the high 2 GiB of the 4 GiB DDR4.
    dram_windows=(Window(0x0000_0000, 2 << 30, "HP0_DDR_LOW"),
                  Window(0x8_0000_0000, 2 << 30, "HP0_DDR_HIGH")),
    # The registers in the HPM0_FPD window (0xA000_0000..0xAFFF_FFFF), one 64 KiB segment.
    ctrl_window=Window(0xA000_0000, 0x1_0000, "HPM0_FPD"),
    irq="pl_ps_irq0[0]",
    irq_spi=89,                                   # pl_ps_irq0[0] is GIC SPI 121 = 32 + 89
    # No PL oscillator: pl_clk0 comes from the PS (100 MHz with the starter kit's
    # default firmware; a Systole overlay sets the preset's clock).
    clocks_hz={"pl_clk0": 100e6},
    pins={"fan_en_b": Pin("A12", "LVCMOS33", "carrier fan enable (HDA20)", active_low=True)},
    # J2 in Digilent PMOD order: 1-4 top row, 7-10 bottom row; the carrier's silkscreen
    # numbers the same pins 1,3,5,7 (top) and 2,4,6,8 (bottom). 3.3 V.
    connectors={"pmod_j2": "H12 E10 D10 C11 - - B10 E12 D11 B11 - -"},
    connector_iostandards={"pmod_j2": "LVCMOS33"},
    dma_port="one 128-bit HP port (S_AXI_HP0_FPD) at the PL clock",
)

_NEXYS_VIDEO = Board(
    name="nexys_video",
    title="Nexys Video",
    preset="nexys_video",
    fpga=Fpga(part="xc7a200tsbg484-1", device="xc7a200t", package="sbg484", speed="1",
              title="XC7A200T (Artix-7)", vivado_family="artix7 Production", yosys_family="xc7",
              luts=133_800, ffs=267_600, dsps=740, bram36=365),
    board_part="digilentinc.com:nexys_video:part0:1.2",
    dram="DDR3 16-bit 800 MT/s",
    dram_bytes_per_s=1.6e9,
    # Where the block design puts the DDR3 for both the link bridge and the DMA.
    dram_windows=(Window(0x8000_0000, 512 << 20, "DDR3"),),
    # The link bridge's AXI4-Lite master covers one 4 KiB segment.
    ctrl_window=Window(0x0000_0000, 0x1000, "link m_axi_ctrl"),
    irq="the link bridge's irq input (read by the IRQ command)",
    clocks_hz={"clk100": 100e6, "ui_clk": 100e6},  # ui_clk: MIG at DDR3-800, 4:1
    pins={
        "clk100": Pin("R4", "LVCMOS33", "100 MHz oscillator"),
        "cpu_resetn": Pin("G4", "LVCMOS15", "CPU_RESET button, low while pressed", active_low=True),
        # The FPGA side of the FT232R: rx is the chip's TXD (uart_tx_in), tx its RXD.
        "uart_rx": Pin("V18", "LVCMOS33", "USB-UART to the FPGA (uart_tx_in)"),
        "uart_tx": Pin("AA19", "LVCMOS33", "FPGA to the USB-UART (uart_rx_out)"),
        **{f"led{i}": Pin(site, "LVCMOS25", f"LD{i}")
           for i, site in enumerate("T14 T15 T16 U16 V15 W16 W15 Y13".split())},
        **{f"button{i}": Pin(site, "LVCMOS12", f"BTN{name}")
           for i, (site, name) in enumerate(zip("B22 D22 C22 D14 F15".split(), "CDLRU"))},
        **{f"switch{i}": Pin(site, "LVCMOS12", f"SW{i}")
           for i, site in enumerate("E22 F21 G21 G22 H17 J16 K13 M17".split())},
    },
    uart_baud=921_600,
    # Bank 0 (configuration) is powered at 3.3 V on the Nexys Video.
    config_voltage=3.3,
    dma_port="MIG's AXI port at ui_clk, shared with the link bridge through a SmartConnect",
)

BOARDS: dict[str, Board] = {b.name: b for b in (_KV260, _NEXYS_VIDEO)}


def board(name: str) -> Board:
    """The board called ``name``; ``KeyError`` lists the known ones."""
    try:
        return BOARDS[name]
    except KeyError:
        raise KeyError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}") from None
