"""The KV260 flow: block design, build script, device-tree overlay, xmutil files, README.

Every board fact (part, board part, the control window of ``M_AXI_HPM0_FPD``, the
GIC SPI of ``pl_ps_irq0``, the HP ports with their PSU__ names, AFI registers and the
DRAM segments each reaches) comes from ``hdl.spec.boards.BOARDS["kv260"]``. What this
module decides is the design: control through HPM0_FPD and a SmartConnect, each DMA
master of ``config.weight_masters`` straight into its own HP port (``m_axi_dma`` into
S_AXI_HP0_FPD, ``m_axi_w<p>`` into S_AXI_HP<p>_FPD; with ``coherent_io`` the order of
``board.coherent_dma_ports``: ``m_axi_dma`` into the I/O-coherent S_AXI_HPC0_FPD, the
weight masters into HP1, HP3, HP0), and with ``coherent_io`` a second, ``dma-coherent``
u-dma-buf (``/dev/udmabuf1``) for A and C. Clocks: ``pl_clk0`` at the
configuration's ``clock_mhz`` for the core (``aclk``, ``s_axi_ctrl``, HPM0 and its
SmartConnect); with ``axi_clock_mhz``, ``pl_clk1`` at that rate for the masters
(``m_axi_aclk``) and the HP ports, each clock with its own ``proc_sys_reset``, and
``kv260_timing.xdc`` bounding the paths between them. Without it, ``pl_clk0`` clocks
everything. The texts are ``templates/kv260/``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hdl.spec.boards import BOARDS, Board, HpPort
from hdl.spec.config import AccelConfig
from hdl.spec.regmap import ID_MAGIC, by_name

from .build_script import build_tcl
from .ip import vlnv
from .render import render

__all__ = ["BOARD", "CTRL_BITS", "COHERENT_BYTES", "port_order", "dma_ports", "bd_tcl", "dtso", "files", "compile_overlay"]

BOARD = BOARDS["kv260"]
# M_AXI_HPM0_FPD's data width; the SmartConnect converts to the 32-bit AXI4-Lite slave.
CTRL_BITS = 128
# The overlay's AFI_FS value (AFI register 14) for HPM0 and HPM1 at CTRL_BITS.
HPM_AFI_FS = 0xA00
# The DMA's addresses reach all of the KV260's DDR, above 4 GiB included.
MIN_ADDR_WIDTH = 40
# The default size of the coherent u-dma-buf (/dev/udmabuf1) that holds A and C with
# coherent_io: a job's A and C are at most a few MiB (Gemma 3 270M at 512 tokens: A 512 x
# 2048 int8 = 1 MiB, C 512 x 2048 int32 = 4 MiB).
COHERENT_BYTES = 16 << 20


def _check_buffer(name: str, size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % 4096:
        raise ValueError(f"{name}={size!r} must be a positive multiple of 4 KiB "
                         "(u-dma-buf allocates whole pages)")


def _afi_width_code(bits: int) -> int:
    """AFIFM read/write width code of the zynqmp AFI node: 0 = 128, 1 = 64, 2 = 32 bit."""
    try:
        return {128: 0, 64: 1, 32: 2}[bits]
    except KeyError:
        raise ValueError(f"bus_bits={bits}: an HP port is 32, 64 or 128 bits wide") from None


def port_order(config: AccelConfig, board: Board = BOARD) -> tuple[HpPort, ...]:
    """The PS ports the DMA masters take in turn: ``board.coherent_dma_ports`` with
    ``config.coherent_io``, else ``board.dma_ports``.

    ``ValueError`` when the configuration wants coherent I/O and the board has no port
    for it (or the first one does not snoop).
    """
    if not config.coherent_io:
        return board.dma_ports
    if not board.coherent_dma_ports or not board.coherent_dma_ports[0].coherent:
        raise ValueError(f"coherent_io: {board.name} has no I/O-coherent port for m_axi_dma")
    return board.coherent_dma_ports


def dma_ports(config: AccelConfig, board: Board = BOARD) -> tuple[tuple[str, HpPort], ...]:
    """``(master, HP port)`` of every DMA master, ``config.weight_masters`` over ``port_order`` in order.

    ``ValueError`` when the configuration has more weight ports than the board has HP ports.
    """
    masters, order = config.weight_masters, port_order(config, board)
    if len(masters) > len(order):
        raise ValueError(f"weight_ports={config.weight_ports}: {board.name} has {len(order)} HP ports "
                         f"({', '.join(p.interface for p in order)}) for the DMA masters, one each")
    return tuple(zip(masters, order))


def _irq_pin(board: Board) -> str:
    """The PS pin of ``board.irq`` (``pl_ps_irq0`` for ``pl_ps_irq0[0]``)."""
    return board.irq.partition("[")[0]


def bd_tcl(config: AccelConfig, board: Board = BOARD) -> str:
    """The KV260 block design: PS with the board preset + SmartConnect + accelerator.

    The registers sit at ``board.ctrl_window`` in the PS's map, every DMA master reaches
    every window of ``board.dram_windows`` through its HP port (``dma_ports``), the
    interrupt goes to ``board.irq``. Refuses a ``bus_bits`` an HP port cannot take, an
    ``addr_width`` below 40 bits and more weight ports than HP ports.
    """
    if config.bus_bits not in (32, 64, 128):
        raise ValueError(f"bus_bits={config.bus_bits}: an HP port is 32, 64 or 128 bits wide")
    if config.addr_width < MIN_ADDR_WIDTH:
        raise ValueError(f"addr_width={config.addr_width}: the KV260's DDR (above 4 GiB too) "
                         f"needs {MIN_ADDR_WIDTH} bits")
    ports = dma_ports(config, board)
    return render("kv260/bd.tcl.j2", config=config, board=board, ctrl_bits=CTRL_BITS, dma=ports,
                  unused_ports=port_order(config, board)[len(ports):], accel_vlnv=vlnv("systole"), irq_pin=_irq_pin(board))


def dtso(config: AccelConfig, udmabuf_bytes: int, board: Board = BOARD, coherent_bytes: int = COHERENT_BYTES) -> str:
    """Device-tree overlay: bitstream, AFI widths, PL clocks (``pl_clk1`` too for the masters'
    own clock), UIO registers + irq, u-dma-buf (a second, ``dma-coherent`` one of
    ``coherent_bytes`` for A and C with ``coherent_io``).

    The AFI widths are those of every HP (and HPC) port the block design uses
    (``dma_ports``). The UIO node's ``reg`` is ``board.ctrl_window`` and its interrupt
    ``board.irq_spi``, the same numbers the block design uses.
    """
    return render("kv260/systole.dtso.j2", config=config, board=board, ctrl=board.ctrl_window,
                  dma=dma_ports(config, board), ctrl_bits=CTRL_BITS, hpm_afi_fs=HPM_AFI_FS,
                  afi_width_code=_afi_width_code(config.bus_bits),
                  pl_clk_hz=int(config.clock_mhz * 1e6), udmabuf_bytes=udmabuf_bytes,
                  coherent_bytes=coherent_bytes if config.coherent_io else None,
                  master_clk_hz=int(config.axi_clock_mhz * 1e6) if config.split_clocks else None)


def files(config: AccelConfig, udmabuf_bytes: int, board: Board = BOARD,
          coherent_bytes: int = COHERENT_BYTES) -> dict[str, str]:
    """``{name: text}`` of the KV260 flow besides the IP: bd, XDC, build, overlay, xmutil, README.

    ``udmabuf_bytes``: the size of ``/dev/udmabuf0`` (A, W and C; with ``coherent_io`` the
    weights only); ``coherent_bytes``: of the coherent ``/dev/udmabuf1`` (A and C, with
    ``coherent_io`` only). Both a positive multiple of 4 KiB, or ``ValueError``.
    """
    _check_buffer("udmabuf_bytes", udmabuf_bytes)
    _check_buffer("coherent_bytes", coherent_bytes)
    ident = by_name("ID")
    timing = {}
    if config.split_clocks:
        max_delay_ns = 1e3 / max(config.clock_mhz, config.axi_clock_mhz)
        timing["kv260_timing.xdc"] = render("kv260/kv260_timing.xdc.j2", config=config,
                                            max_delay_ns=max_delay_ns)
    return {
        "bd.tcl": bd_tcl(config, board),
        "kv260.xdc": render("kv260/kv260.xdc.j2"),
        **timing,
        "build.tcl": build_tcl(board, config, ips=["systole"], xdc="kv260.xdc",
                               impl_xdc=next(iter(timing), None)),
        "systole.dtso": dtso(config, udmabuf_bytes, board, coherent_bytes),
        "shell.json": render("kv260/shell.json.j2"),
        "systole.bif": render("kv260/systole.bif.j2"),
        "README.md": render("kv260/README.md.j2", config=config, board=board, irq_pin=_irq_pin(board),
                            dma=dma_ports(config, board),
                            udmabuf_bytes=udmabuf_bytes,
                            coherent_bytes=coherent_bytes if config.coherent_io else None, id_register=ident, id_magic=ID_MAGIC,
                            id_text=ID_MAGIC.to_bytes(4, "big").decode("ascii")),
    }


def compile_overlay(dtso_path: Path) -> Path | None:
    """``dtc -@`` the overlay next to its source; None when dtc is not installed."""
    if shutil.which("dtc") is None:
        return None
    dtbo = dtso_path.with_suffix(".dtbo")
    subprocess.run(["dtc", "-@", "-q", "-I", "dts", "-O", "dtb", "-o", str(dtbo), str(dtso_path)], check=True)
    return dtbo
