"""The boards Systole deploys to, described once: the KV260 and the Nexys Video.

Everything that depends on a board reads it from ``BOARDS``: the Amaranth platforms
(``hdl/boards``), the Vivado TCL, XDC and device tree (``gen.vivado``), the fit check
(``gen.report``), the projections (``host.perf``), the link defaults
(``host.platforms.nexys_video``) and the Ethernet core (``gen.liteeth``). Sources: AMD's Kria KV260 carrier and K26 SOM data
sheets and XilinxBoardStore presets, Digilent's Nexys Video reference manual and
master XDC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Fpga", "Pin", "Window", "Mig", "HpPort", "Ethernet", "Board", "BOARDS", "board"]


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
class Mig:
    """A 7-series MIG DDR3 controller as ``gen.vivado`` writes its ``mig.prj``.

    ``pins``: ``{MIG pin name: Pin}`` of the memory. The UI (and AXI) clock is the
    memory clock divided by ``phy_ratio``; the native UI word is ``2 * phy_ratio *
    data_width`` bits, so an ``axi_data_bits`` of that width needs no converter.
    """

    memory_part: str             # MIG's MemoryDevice
    memory_period_ps: int        # TimePeriod: the DDR3 clock (2500 ps = 400 MHz, DDR3-800)
    phy_ratio: int               # PHYRatio n:1
    input_clk_mhz: float         # InputClkFreq: what sys_clk_i gets
    sys_clk_pin: str             # System_Clock pin (MIG's PADName) and ...
    sys_clk_bank: int            # ... its bank
    mmcm_vco_mhz: float          # MMCM_VCO
    extra_clk_divide: float      # MMCMClkOut0: ui_addn_clk_0 = VCO / this (the 200 MHz clk_ref_i)
    data_width: int              # DQ bits
    row_bits: int
    col_bits: int
    bank_bits: int
    memory_bytes: int
    pins: dict[str, Pin]
    axi_data_bits: int           # our choice: the UI width (Digilent's preset uses 32)
    axi_addr_bits: int
    axi_id_bits: int

    @property
    def memory_clk_hz(self) -> float:
        return 1e12 / self.memory_period_ps

    @property
    def ui_clk_hz(self) -> float:
        """MIG's ``ui_clk``: the memory clock / ``phy_ratio`` (the AXI port's clock)."""
        return self.memory_clk_hz / self.phy_ratio

    @property
    def extra_clk_hz(self) -> float:
        """``ui_addn_clk_0``: MMCM VCO / ``extra_clk_divide`` (200 MHz for IDELAYCTRL's clk_ref_i)."""
        return self.mmcm_vco_mhz * 1e6 / self.extra_clk_divide

    @property
    def ui_data_bits(self) -> int:
        """The native UI word: one ui_clk carries 2 * phy_ratio beats of ``data_width``."""
        return 2 * self.phy_ratio * self.data_width

    @property
    def axi_bytes_per_s(self) -> float:
        """The AXI port's peak: ``axi_data_bits`` per ``ui_clk`` cycle."""
        return self.axi_data_bits / 8 * self.ui_clk_hz


@dataclass(frozen=True)
class HpPort:
    """One Zynq UltraScale+ PL-to-PS slave port ``S_AXI_HP<hp>_FPD`` a DMA master connects to.

    Its names in ``zynq_ultra_ps_e`` (PG201; Kria-PYNQ's base.tcl sets the HP1 forms
    ``PSU__USE__S_AXI_GP3``, ``saxihp1_fpd_aclk``, ``SAXIGP3/HP1_LPS_OCM``): the PSU__ options
    and the address segments count it as S_AXI_GP<gp>. UG1085 table 35-2: its AFI registers are
    module AFIFM<afifm>; the afi-fpga binding's ``config-afi`` regids 0..13 are AFIFM0..6's
    RDCTRL, WRCTRL in turn, so AFIFM<n> is regid 2n (read width) and 2n + 1 (write width).
    ``ddrc``: the DDR controller AXI port (XPI) it reaches and who shares it (UG1085).
    ``coherent``: the port is ``S_AXI_HPC<hp>_FPD`` instead, which reaches the DDRC through
    the CCI and can snoop the APU's caches (UG1085 "APU Coherent Interfaces"); every name
    then says ``HPC<hp>`` where it says ``HP<hp>`` (``saxihpc0_fpd_aclk``, ``SAXIGP0/HPC0_DDR_LOW``).
    """

    hp: int
    gp: int
    afifm: int
    ddrc: str
    coherent: bool = False

    @property
    def name(self) -> str:
        """``HP<hp>`` or, coherent, ``HPC<hp>``."""
        return f"HPC{self.hp}" if self.coherent else f"HP{self.hp}"

    @property
    def interface(self) -> str:
        return f"S_AXI_{self.name}_FPD"

    @property
    def clock_pin(self) -> str:
        return f"saxi{self.name.lower()}_fpd_aclk"

    @property
    def use_property(self) -> str:
        return f"PSU__USE__S_AXI_GP{self.gp}"

    @property
    def width_property(self) -> str:
        return f"PSU__SAXIGP{self.gp}__DATA_WIDTH"

    def segment(self, name: str) -> str:
        """The PS's address segment ``name`` (``DDR_LOW``) as this port reaches it: ``SAXIGP2/HP0_DDR_LOW``
        (``SAXIGP0/HPC0_DDR_LOW`` for HPC0)."""
        return f"SAXIGP{self.gp}/{self.name}_{name}"

    @property
    def afi_registers(self) -> tuple[int, int]:
        """The ``config-afi`` regids of this port's read and write width."""
        return 2 * self.afifm, 2 * self.afifm + 1


@dataclass(frozen=True)
class Ethernet:
    """A board's Ethernet port as the FPGA sees it, and the defaults a design gives it.

    The pins are ``Board.pins`` named ``eth_*``. ``tx_delay_s`` and ``rx_delay_s`` are the
    RGMII clock-to-data skews the FPGA adds (a phase-shifted TX clock; IDELAYs on the RX
    data), because the PHY adds none. ``reset_low_s``: how long the design holds the PHY's
    reset pin low at power-up. ``ip_address``, ``mac_address`` and ``udp_port`` are
    the link's defaults: a generator may be given others.
    """

    phy: str                     # the PHY chip
    interface: str               # MAC-PHY interface: "rgmii"
    clock_hz: float              # RXC/TXC at 1000BASE-T
    tx_delay_s: float
    rx_delay_s: float
    reset_pin: str               # Board.pins key of the PHY's reset
    reset_low_s: float           # the PHY's reset pulse at power-up
    ip_address: str
    mac_address: int             # 48 bits
    udp_port: int

    @property
    def mac_text(self) -> str:
        """``mac_address`` as ``02:53:...``."""
        return ":".join(f"{self.mac_address >> shift & 0xFF:02x}" for shift in range(40, -8, -8))


@dataclass(frozen=True)
class Board:
    """A board: its FPGA, memory system, address windows, clocks and pins.

    ``dram_windows``: where the accelerator's DMA reaches DRAM. ``ctrl_window``: where
    the registers sit in the map of whoever drives ``s_axi_ctrl`` (the PS on the
    KV260, the link bridge on the Nexys Video). ``dma_ports``: the PS ports the DMA
    masters (``AccelConfig.weight_masters``) connect to, in that order;
    ``coherent_dma_ports`` the same for a configuration with ``coherent_io`` (its first,
    for ``m_axi_dma``, snoops the CPU's caches; the others are for the weight masters).
    ``snoop_enable``: the register write (address, value) that lets a coherent port's
    transactions snoop the CPU's caches, made once after boot.
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
    connector_iostandards: dict[str, str] = field(default_factory=dict)  # connector: I/O standard of its bank
    config_voltage: float | None = None           # bank 0 VCCO (7-series CONFIG_VOLTAGE); None: not set
    mig: Mig | None = None                        # a MIG DDR3 controller the flow generates
    # Board-file versions the flow was designed against, newest first (board_part's own
    # first); build.tcl uses the newest one installed. Empty: board_part's only.
    board_part_versions: tuple[str, ...] = ()
    dma_excluded_segments: tuple[str, ...] = ()   # segments the DMA masters see but must not use
    dma_ports: tuple[HpPort, ...] = ()            # the PS slave ports of the DMA masters, master 0's first
    coherent_dma_ports: tuple[HpPort, ...] = ()   # ... with AccelConfig.coherent_io (master 0's snoops)
    snoop_enable: tuple[int, int] | None = None   # (address, value) enabling the coherent port's snoops
    ethernet: Ethernet | None = None              # an Ethernet port the design may use

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
    def board_parts(self) -> tuple[str, ...]:
        """Every board part of ``board_part_versions``, ``board_part`` first; ValueError if it is not."""
        base, _, own = self.board_part.rpartition(":")
        parts = tuple(f"{base}:{v}" for v in self.board_part_versions) or (self.board_part,)
        if parts[0] != self.board_part:
            raise ValueError(f"{self.name}: board_part {self.board_part} is not the first of "
                             f"board_part_versions {self.board_part_versions}")
        return parts

    @property
    def dram_window(self) -> Window:
        """The first (on the Nexys Video: the only) DRAM window."""
        return self.dram_windows[0]


# The DDR controller (UG1085 v2.4, "DDR QoS Controller"): six AXI ports (XPIs) S0..S5 into
# one DDRC. UG1085 "PL-PS Interface Specifics": S_AXI_HP1_FPD and S_AXI_HP2_FPD share XPI 4
# (exclusively); S_AXI_HP0_FPD shares an XPI with the DisplayPort master and S_AXI_HP3_FPD one
# with the FPD DMA. That these two are XPI 3 and XPI 5, and that HPC0/HPC1 reach the DDRC
# through the CCI (XPIs 1, 2), is not in the UG1085 text checked here (not confirmed).
# The plan: master p gets one contiguous weight stream of 1/P of the weights, so at the
# preset's 250 MHz each port reads 16 B x 250 MHz = 4 GB/s and XPI 4 carries HP1 + HP2 = 8 GB/s.
# An XPI is a 128-bit port at the DDRC clock (DDR4-2400: 600 MHz, 9.6 GB/s per direction; width
# and clock not confirmed in the text checked): 8 GB/s fits, with ~17% to spare; the 16 GB/s
# total fits the DDR4's 19.2 GB/s peak only at ~83% efficiency, which DRAM rarely sustains.
_KV260_HP_PORTS = (
    HpPort(hp=0, gp=2, afifm=2, ddrc="XPI shared with the DisplayPort master (S3, not confirmed)"),
    HpPort(hp=1, gp=3, afifm=3, ddrc="XPI 4, shared with S_AXI_HP2_FPD"),
    HpPort(hp=2, gp=4, afifm=4, ddrc="XPI 4, shared with S_AXI_HP1_FPD"),
    HpPort(hp=3, gp=5, afifm=5, ddrc="XPI shared with the FPD DMA (S5, not confirmed)"),
)
# The two I/O-coherent ports (UG1085 "APU Coherent Interfaces"): S_AXI_HPC0_FPD and
# S_AXI_HPC1_FPD go through the CCI before the DDRC, so they can snoop the APU's L1/L2 (a
# burst with AxCACHE[3:2] != 0 and the CCI's snoops enabled) and have a longer latency to
# DDR than the HP ports. PSU__USE__S_AXI_GP0/GP1 and AFIFM0/AFIFM1 (UG1085 table 35-2, the
# tools sometimes call them AFI0/AFI1).
_KV260_HPC_PORTS = (
    HpPort(hp=0, gp=0, afifm=0, coherent=True,
           ddrc="through the CCI (XPIs 1, 2, not confirmed), snooping the APU caches; longer latency"),
    HpPort(hp=1, gp=1, afifm=1, coherent=True,
           ddrc="through the CCI (XPIs 1, 2, not confirmed), snooping the APU caches; longer latency"),
)
# With AccelConfig.coherent_io: m_axi_dma (A, weight stream 0, C) on HPC0; the weight
# masters on HP ports spread over the XPIs: HP1 first (XPI 4, its own while HP2 is unused),
# then HP3 (shared with the FPD DMA, idle in our use), HP0 (shared with the DisplayPort
# master, which scans out while a monitor is attached), and HP2 last (it would share XPI 4
# with HP1). The preset's four masters use HPC0, HP1, HP3, HP0: three XPIs for the weight
# streams plus the CCI's.
_KV260_COHERENT_DMA_PORTS = (_KV260_HPC_PORTS[0], *(_KV260_HP_PORTS[hp] for hp in (1, 3, 0, 2)))
# The CCI-400's Snoop_Control_Register_S3 (slave interface 3, the one HPC0/HPC1 enter by):
# bit 0 Enable_snoops (UG1085 "APU Coherent Interfaces" names the bit; the CCI-400 TRM puts
# slave interface n's registers at 0x1000 * (n + 1) past the CCI's base, 0xFD6E0000 in the
# ZynqMP map). The address is not confirmed on a board.
_KV260_SNOOP_ENABLE = (0xFD6E_4000, 0x1)

_KV260 = Board(
    name="kv260",
    title="KV260",
    preset="kv260",
    fpga=Fpga(part="xck26-sfvc784-2LV-c", device="xck26", package="sfvc784", speed="2LV-c",
              title="XCK26 (Zynq UltraScale+)", vivado_family="zynquplus Production",
              yosys_family="xcup", luts=117_120, ffs=234_240, dsps=1_248, bram36=144,
              note="+64 URAM"),
    # XilinxBoardStore boards/Xilinx/kv260_som/1.4 (preset_s4.xml holds the PSU__* names the
    # design sets, checked). 2.0 exists but ships no preset_s4.xml in the store (not checked).
    board_part="xilinx.com:kv260_som:part0:1.4",
    board_part_versions=("1.4",),
    dram="DDR4 64-bit 2400 MT/s",
    dram_bytes_per_s=19.2e9,
    # As every S_AXI_HP<n>_FPD sees it (segment HP<n>_DDR_LOW, HP<n>_DDR_HIGH): the low 2 GiB
    # and the high 2 GiB of the 4 GiB DDR4.
    dram_windows=(Window(0x0000_0000, 2 << 30, "DDR_LOW"),
                  Window(0x8_0000_0000, 2 << 30, "DDR_HIGH")),
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
    dma_port="one 128-bit HP port per DMA master (S_AXI_HP0_FPD .. S_AXI_HP3_FPD) at the PL clock; "
             "with coherent_io m_axi_dma on the I/O-coherent S_AXI_HPC0_FPD",
    # Not DRAM: excluded on every HP port, as Kria-PYNQ's kv260/base/base.tcl does for HP1
    # (commit 21bf5e18: HP1_LPS_OCM, HP1_QSPI).
    dma_excluded_segments=("LPS_OCM", "QSPI"),
    dma_ports=_KV260_HP_PORTS,
    coherent_dma_ports=_KV260_COHERENT_DMA_PORTS,
    snoop_enable=_KV260_SNOOP_ENABLE,
)

def _mig_pins(standard: str, pins: str) -> dict[str, Pin]:
    return {name: Pin(site, standard) for name, _, site in (word.partition("=") for word in pins.split())}


# Digilent/vivado-boards new/board_files/nexys_video/A.0/1.2/mig.prj (board files 1.2,
# commit 21510952, MIG 4.2): part, clocking, geometry and pins. The AXI width is ours.
_NEXYS_VIDEO_MIG = Mig(
    memory_part="DDR3_SDRAM/Components/MT41K256M16XX-125",
    memory_period_ps=2500, phy_ratio=4,
    input_clk_mhz=100, sys_clk_pin="R4(MRCC_P)", sys_clk_bank=34,   # <SystemClock>Single-Ended
    mmcm_vco_mhz=800, extra_clk_divide=4.0,                          # <UIExtraClocks>1: 200 MHz
    data_width=16, row_bits=15, col_bits=10, bank_bits=3, memory_bytes=512 << 20,
    pins={
        **_mig_pins("SSTL15", "ddr3_addr[0]=M2 ddr3_addr[10]=L5 ddr3_addr[11]=N5 ddr3_addr[12]=N4 "
                    "ddr3_addr[13]=P2 ddr3_addr[14]=P6 ddr3_addr[1]=M5 ddr3_addr[2]=M3 ddr3_addr[3]=M1 "
                    "ddr3_addr[4]=L6 ddr3_addr[5]=P1 ddr3_addr[6]=N3 ddr3_addr[7]=N2 ddr3_addr[8]=M6 "
                    "ddr3_addr[9]=R1 ddr3_ba[0]=L3 ddr3_ba[1]=K6 ddr3_ba[2]=L4 ddr3_cas_n=K3 ddr3_cke[0]=J6 "
                    "ddr3_dm[0]=G3 ddr3_dm[1]=F1 ddr3_dq[0]=G2 ddr3_dq[10]=F3 ddr3_dq[11]=D2 ddr3_dq[12]=C2 "
                    "ddr3_dq[13]=A1 ddr3_dq[14]=E2 ddr3_dq[15]=B1 ddr3_dq[1]=H4 ddr3_dq[2]=H5 ddr3_dq[3]=J1 "
                    "ddr3_dq[4]=K1 ddr3_dq[5]=H3 ddr3_dq[6]=H2 ddr3_dq[7]=J5 ddr3_dq[8]=E3 ddr3_dq[9]=B2 "
                    "ddr3_odt[0]=K4 ddr3_ras_n=J4 ddr3_we_n=L1"),
        **_mig_pins("DIFF_SSTL15", "ddr3_ck_n[0]=P4 ddr3_ck_p[0]=P5 ddr3_dqs_n[0]=J2 ddr3_dqs_n[1]=D1 "
                    "ddr3_dqs_p[0]=K2 ddr3_dqs_p[1]=E1"),
        **_mig_pins("LVCMOS15", "ddr3_reset_n=G1"),
    },
    axi_data_bits=128,           # = ui_data_bits: 1.6 GB/s at ui_clk (the preset's 32 bits give 400 MB/s)
    axi_addr_bits=29, axi_id_bits=2,                                 # as the preset (512 MiB)
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
        # The RTL8211E-VL's RGMII and management pins: Digilent's master XDC ("## Ethernet",
        # Nexys-Video-Master.xdc at commit 16e3b34) and litex-boards 2023.12
        # (platforms/digilent_nexys_video.py: "eth_clocks", "eth") agree on every site and
        # standard. Bank 13 is at 2.5 V; the reset sits in bank 34 at 3.3 V. ETH_PME_B (W14)
        # is left out: no design uses it.
        "eth_rxck": Pin("V13", "LVCMOS25", "ETH_RXCK, RGMII receive clock from the PHY (MRCC)"),
        "eth_rxctl": Pin("W10", "LVCMOS25", "ETH_RXCTL"),
        **{f"eth_rxd{i}": Pin(site, "LVCMOS25", f"ETH_RXD{i}")
           for i, site in enumerate("AB16 AA15 AB15 AB11".split())},
        "eth_txck": Pin("AA14", "LVCMOS25", "ETH_TXCK, RGMII transmit clock to the PHY"),
        "eth_txctl": Pin("V10", "LVCMOS25", "ETH_TXCTL"),
        **{f"eth_txd{i}": Pin(site, "LVCMOS25", f"ETH_TXD{i}")
           for i, site in enumerate("Y12 W12 W11 Y11".split())},
        "eth_mdc": Pin("AA16", "LVCMOS25", "ETH_MDC, PHY management clock"),
        "eth_mdio": Pin("Y16", "LVCMOS25", "ETH_MDIO, PHY management data (bidirectional)"),
        "eth_int_b": Pin("Y14", "LVCMOS25", "ETH_INT_B, PHY interrupt", active_low=True),
        "eth_rst_b": Pin("U7", "LVCMOS33", "ETH_RST_B, PHY reset", active_low=True),
    },
    uart_baud=921_600,
    # Bank 0 (configuration) is powered at 3.3 V on the Nexys Video.
    config_voltage=3.3,
    dma_port="MIG's 128-bit AXI port at ui_clk, shared with the link bridge through a SmartConnect",
    mig=_NEXYS_VIDEO_MIG,
    # Digilent/vivado-boards nexys_video/A.0/1.2; 1.1's MIG wants a 200 MHz sys_clk (not ours).
    board_part_versions=("1.2",),
    ethernet=Ethernet(
        phy="Realtek RTL8211E-VL",
        interface="rgmii",
        clock_hz=125e6,                 # 1000BASE-T; litex-boards constrains eth_clocks:rx at 8 ns
        # litex-boards 2023.12 targets/digilent_nexys_video.py builds LiteEthPHYRGMII with its
        # default skews: TXC from a PLL output at +2 ns (90 degrees at 125 MHz), RXD/RX_CTL
        # through IDELAYE2s set to 2 ns. That is LiteX's configuration for this board; the
        # PHY's own delay straps were not checked against Digilent's reference manual here.
        tx_delay_s=2e-9,
        rx_delay_s=2e-9,
        reset_pin="eth_rst_b",
        # The RTL8211E datasheet's reset timing asks for the reset held low for at least
        # 10 ms (as recalled from Realtek's datasheet; not confirmed here, the datasheet was
        # not available): the power-up pulse the design gives the PHY.
        reset_low_s=10e-3,
        # Our defaults: a private address on LiteX's usual 192.168.1.x bring-up subnet; a
        # locally administered unicast MAC (first octet 0x02) whose next four octets spell
        # "SYLK" (link_protocol.MAGIC); UDP port 0x5359 ("SY").
        ip_address="192.168.1.50",
        mac_address=0x02_53_59_4C_4B_01,
        udp_port=0x5359,
    ),
)

BOARDS: dict[str, Board] = {b.name: b for b in (_KV260, _NEXYS_VIDEO)}


def board(name: str) -> Board:
    """The board called ``name``; ``KeyError`` lists the known ones."""
    try:
        return BOARDS[name]
    except KeyError:
        raise KeyError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}") from None
