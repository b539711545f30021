"""``python -m gen.vivado ip|kv260|nexys_video``: Vivado flows for the two boards.

Vivado is not run here: this writes TCL that a user with Vivado runs with one
command, under ``build/vivado/<target>/`` (or ``--out``):

``ip``           ``hdl/systole_top.v`` + ``package_systole.tcl`` (``ipx::`` packaging: the
                 ``s_axi_ctrl`` interface and every DMA master of ``weight_masters``
                 (``m_axi_dma``, read-only ``m_axi_w1`` ..) inferred, each master with its
                 address space, ``aclk`` associated with all of them and ``aresetn`` as its
                 reset, ``irq`` an interrupt, a memory map whose registers come from
                 ``hdl/spec/regmap.py``). With ``--link`` also the ``systole_link`` UART
                 bridge IP.
``kv260``        the IP, ``kv260.xdc`` (over-temperature shutdown), ``kv260_timing.xdc``
                 (with the masters' own clock: every path between the two clocks
                 bounded by one fast-clock period, data path only), ``bd.tcl``
                 (``zynq_ultra_ps_e`` with the KV260 board preset, HPM0_FPD ->
                 SmartConnect -> ``s_axi_ctrl``, each DMA master straight into its own
                 128-bit HP port: ``m_axi_dma`` -> S_AXI_HP0_FPD, ``m_axi_w1..w3`` ->
                 S_AXI_HP1..HP3_FPD; with ``coherent_io`` (the preset) ``m_axi_dma`` ->
                 the I/O-coherent S_AXI_HPC0_FPD and ``m_axi_w1..w3`` -> S_AXI_HP1, HP3,
                 HP0_FPD; each reaching all of DDR;
                 ``pl_clk0`` at the configuration's clock for the core and control, ``pl_clk1``
                 at ``axi_clock_mhz`` for the masters and the HP ports (or ``pl_clk0``
                 everywhere without one), ``irq`` -> ``pl_ps_irq0``),
                 ``build.tcl`` (synth, impl writing the bitstream, FAIL on negative
                 WNS/WHS before ``.bit`` is copied out, ``.bit.bin`` via bootgen,
                 ``.xsa`` with bitstream, ``.hwh``), ``systole.dtso`` (every used HP port's
                 AFI widths, ``/dev/udmabuf0`` and, with ``coherent_io``, the
                 ``dma-coherent`` ``/dev/udmabuf1``; + ``systole.dtbo``
                 when ``dtc`` is installed), ``shell.json``, ``systole.bif``,
                 ``README.md``.
``nexys_video``  the three IPs (accelerator, ``systole_link`` UART bridge, ``systole_eth``
                 Ethernet link with LiteEth's ``liteeth_core.v`` from ``gen.liteeth``),
                 ``bd.tcl`` (MIG 7-series for the DDR3 from our ``mig.prj``: Digilent's 1.2
                 clocking and pins, a 128-bit AXI port; a SmartConnect merging both links'
                 and the accelerator's AXI4 masters into the MIG, one merging both links'
                 control masters into ``s_axi_ctrl``, everything on MIG's ``ui_clk``, the
                 IDELAYCTRL on MIG's 200 MHz ``ui_addn_clk_0``), ``mig.prj``,
                 ``nexys_video.xdc`` (+ LiteEth's ``liteeth_core.xdc`` scoped to the core),
                 ``build.tcl`` with the same timing rule, ``program.tcl``, ``README.md``.

Run a flow with ``cd build/vivado/<target> && vivado -mode batch -source build.tcl``.

One module per part of the flow: ``ports`` (the Verilog port parser), ``ip`` (IP
packaging), ``build_script`` (the shared ``build.tcl``), ``kv260`` and ``nexys_video``
(each board's design), ``render`` (the Jinja2 templates in ``templates/``). Every
board fact comes from ``hdl.spec.boards.BOARDS``; none is typed here.
"""

from __future__ import annotations

from pathlib import Path

from hdl.spec.boards import BOARDS
from hdl.spec.config import AccelConfig

from . import kv260, nexys_video
from .ip import ip_files
from .render import write_files

__all__ = ["TARGETS", "IP_BOARD", "LINK_BOARD", "default_baud", "generate"]

TARGETS = ("ip", "kv260", "nexys_video")
# The ``ip`` target packages for this board's part (the IP lists every board's family).
IP_BOARD = "kv260"
# The board whose host link the ``systole_link`` bridge is: its UART rate and control window.
LINK_BOARD = "nexys_video"


def default_baud() -> int:
    """The link's UART rate when none is given: the link board's ``uart_baud``."""
    return BOARDS[LINK_BOARD].uart_baud


def generate(target: str, config: AccelConfig, out: Path, *, baud: int | None = None,
             udmabuf_bytes: int = 256 << 20, coherent_bytes: int = kv260.COHERENT_BYTES, top_verilog: Path | None = None, link: bool = False) -> list[Path]:
    """Write every file of ``target`` (``ip``, ``kv260``, ``nexys_video``) under ``out``; the paths.

    ``link`` adds the ``systole_link`` bridge IP to the ``ip`` target (the Nexys Video
    flow always has it); ``baud`` is its UART rate (default: ``default_baud()``).
    ``udmabuf_bytes`` and ``coherent_bytes`` size the KV260's two u-dma-bufs (the second,
    ``dma-coherent``, only with ``coherent_io``). ``top_verilog`` reuses an existing ``systole_top.v`` instead of converting the
    design. ``ValueError`` names a target or a configuration value the flow refuses.
    """
    baud = default_baud() if baud is None else baud
    link_board = BOARDS[LINK_BOARD]
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose {', '.join(TARGETS)}")
    if target == "nexys_video" or link:    # a rate the UART cannot make: refused before any write
        from hdl.uart import divisor_for
        divisor_for(config.clock_mhz * 1e6, baud)
    if target == "ip":
        return ip_files(config, out, board=BOARDS[IP_BOARD], link=link_board if link else None,
                        baud=baud, top_verilog=top_verilog)
    if target == "kv260":
        board_files = kv260.files(config, udmabuf_bytes, coherent_bytes=coherent_bytes)      # refuses a bad configuration first
        written = ip_files(config, out / "ip", board=kv260.BOARD, top_verilog=top_verilog)
        written += write_files(out, board_files)
        dtbo = kv260.compile_overlay(out / "systole.dtso")
        return written + ([dtbo] if dtbo else [])
    if target == "nexys_video":
        board_files = nexys_video.files(config, baud)
        written = ip_files(config, out / "ip", board=nexys_video.BOARD, link=link_board,
                           baud=baud, top_verilog=top_verilog, eth=link_board)
        return written + write_files(out, board_files)
    raise ValueError(f"unknown target {target!r}; choose {', '.join(TARGETS)}")
