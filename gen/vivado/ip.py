"""IP packaging: ``package_<name>.tcl`` (``ipx::``) for the accelerator, the UART link
bridge and the Ethernet link (``systole_eth``: ``hdl.eth_link_top.EthLinkTop`` around
``gen.liteeth``'s core, whose Verilog is a second source of that IP).

The packaged interfaces come from the Verilog's real port list (``gen.vivado.ports``);
the register map Vivado and PYNQ show (in the ``.hwh``) is ``hdl.spec.regmap``; the
supported families are every board's of ``hdl.spec.boards``. The text is
``templates/package_ip.tcl.j2``.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from hdl.spec.boards import BOARDS, Board
from hdl.spec.config import AccelConfig
from hdl.spec.regmap import REGISTERS

from hdl.top import MASTER_CLOCK_PORTS

from .ports import interface_prefixes, verilog_ports
from .render import render, write_files

__all__ = ["IP_VENDOR", "IP_LIBRARY", "IP_VERSION", "vlnv", "package_ip_tcl", "accel_package_tcl",
           "link_package_tcl", "link_ctrl_addr_width", "ETH_REF_CLOCK", "eth_phy_reset_cycles", "eth_link_top",
           "eth_package_tcl", "ip_files"]

IP_VENDOR = "systole.dev"
IP_LIBRARY = "systole"
IP_VERSION = "1.0"
# The address block reg0 of s_axi_ctrl is the board's ctrl_window (the register map uses
# 0x00..0xFF): the block design assigns exactly that range, so the two agree.
# How hdl.spec.regmap's access kinds read in IP-XACT (R/TOW: written to toggle, a write).
IPX_ACCESS = {"RW": "read-write", "RO": "read-only", "R/TOW": "read-write"}


# systole_eth's input for the 200 MHz reference of its IDELAYCTRL (the core's RX IDELAYE2s).
ETH_REF_CLOCK = "clk_ref"


def vlnv(name: str) -> str:
    """``vendor:library:name:version`` of our IP ``name`` (``systole``, ``systole_link``)."""
    return f"{IP_VENDOR}:{IP_LIBRARY}:{name}:{IP_VERSION}"


def package_ip_tcl(*, top: str, name: str, display_name: str, description: str,
                   ports: dict[str, tuple[str, int]], part: str, irq_mode: str = "master",
                   registers: bool = True, register_block_bytes: int = 0,
                   master_ranges: dict[str, int] | None = None,
                   master_clock: tuple[str, str] | None = None, sources: tuple[str, ...] = ()) -> str:
    """TCL packaging ``hdl/<top>.v`` (and ``hdl/<s>`` of each of ``sources``) as IP ``name``
    into ``<script dir>/<name>/``.

    Every AXI interface prefix of ``ports`` is inferred and must be inferred exactly
    once (the script errors otherwise), associated with ``aclk``; ``aresetn`` is the
    active-low reset. With ``master_clock`` = ``(clock, reset)`` (``m_axi_aclk``,
    ``m_axi_aresetn``) the ``m_axi_*`` interfaces are associated with that clock and its
    active-low reset instead; both ports must exist (``ValueError``). ``irq`` becomes a level-high interrupt (``master`` = output,
    ``slave`` = input). ``registers`` adds the ``s_axi_ctrl`` memory map of
    ``hdl.spec.regmap`` in one block of ``register_block_bytes``; ``master_ranges`` sets
    each AXI master's address-space size, and must name every ``m_axi_*`` interface and no
    other (``ValueError``).
    """
    if registers and not 0x100 <= register_block_bytes <= 1 << 32:
        raise ValueError(f"register_block_bytes={register_block_bytes:#x}: the register block needs "
                         "0x100..4 GiB (the register map spans 0x00..0xFF)")
    if irq_mode not in ("master", "slave"):
        raise ValueError(f"irq_mode={irq_mode!r}: choose master (an output) or slave (an input)")
    busses, master_ranges = interface_prefixes(ports), master_ranges or {}
    masters = [bus for bus in busses if bus.startswith("m_axi_")]
    if sorted(master_ranges) != masters:
        raise ValueError(f"{name}: master_ranges names {sorted(master_ranges)}, the master interfaces are {masters}")
    clocks = {"aclk": "aresetn"}
    bus_clocks = {bus: "aclk" for bus in busses}
    if master_clock is not None:
        missing = [port for port in master_clock if port not in ports]
        if missing:
            raise ValueError(f"{name}: master_clock names {missing}, which {top} does not have")
        clocks[master_clock[0]] = master_clock[1]
        bus_clocks.update({bus: master_clock[0] for bus in masters})
    return render("package_ip.tcl.j2", top=top, name=name, vlnv=vlnv(name), part=part,
                  vendor=IP_VENDOR, library=IP_LIBRARY, version=IP_VERSION,
                  display_name=display_name, description=description,
                  families=" ".join(b.fpga.vivado_family for b in BOARDS.values()),
                  busses=busses, bus_clocks=bus_clocks, clocks=clocks, irq_mode=irq_mode,
                  registers=REGISTERS if registers else (), register_block_bytes=register_block_bytes,
                  ipx_access=IPX_ACCESS, master_ranges=master_ranges, sources=sources)


def link_ctrl_addr_width(board: Board) -> int:
    """Address bits of the link bridge's ``m_axi_ctrl``: the board's ``ctrl_window``, a power of two."""
    size = board.ctrl_window.size
    if size <= 0 or size & (size - 1):
        raise ValueError(f"{board.name}: ctrl_window size 0x{size:X} is not a power of two")
    return size.bit_length() - 1


def accel_package_tcl(config: AccelConfig, ports: dict[str, tuple[str, int]], part: str,
                      board: Board | None = None) -> str:
    """``package_systole.tcl``: the accelerator with its registers, every DMA master of
    ``config.weight_masters`` an address space of ``addr_width`` bits.

    The register block is ``board.ctrl_window.size`` (default: the part's board in ``BOARDS``),
    the range the board's block design assigns to it.
    """
    board = board or next(b for b in BOARDS.values() if b.fpga.part == part)
    return package_ip_tcl(
        top="systole_top", name="systole", display_name="Systole int8 matmul accelerator",
        description=f"C = A x W^T, int8 in, int32 out; {config.rows}x{config.cols} PEs, "
                    f"{config.bus_bits}-bit AXI4 DMA over {config.weight_ports} master(s), AXI4-Lite registers "
                    f"('{config.name}')",
        ports=ports, part=part, register_block_bytes=board.ctrl_window.size,
        master_ranges={master: 1 << config.addr_width for master in config.weight_masters},
        master_clock=MASTER_CLOCK_PORTS if config.split_clocks else None)


def link_package_tcl(config: AccelConfig, board: Board, baud: int, ports: dict[str, tuple[str, int]],
                     part: str) -> str:
    """``package_systole_link.tcl``: the bridge, its control master spanning ``board.ctrl_window``."""
    return package_ip_tcl(
        top="systole_link", name="systole_link", display_name="Systole UART link bridge",
        description=f"USB-UART ({baud} baud 8N1) frames to AXI4-Lite and AXI4 masters",
        ports=ports, part=part, irq_mode="slave", registers=False,
        master_ranges={"m_axi_ctrl": board.ctrl_window.size, "m_axi_mem": 1 << config.addr_width})


def eth_phy_reset_cycles(board: Board) -> int:
    """``aclk`` cycles of the PHY's power-up reset: ``reset_low_s`` at the core's clock
    (``gen.liteeth.CLOCK``), rounded up."""
    from gen.liteeth import CLOCK
    return math.ceil(round(board.ethernet.reset_low_s * board.clocks_hz[CLOCK], 6))


def eth_link_top(config: AccelConfig, board: Board):
    """The ``systole_eth`` component for ``board``: the board's core (``gen.liteeth``'s RGMII
    ports), the control master spanning ``ctrl_window``, an IDELAYCTRL on ``ETH_REF_CLOCK``
    and the PHY's reset pulse of ``eth_phy_reset_cycles``."""
    from gen.liteeth import RGMII_PORTS
    from hdl.eth_link_top import EthLinkTop
    eth = board.ethernet
    if eth is None:
        raise ValueError(f"{board.name} has no Ethernet facts (Board.ethernet)")
    return EthLinkTop(config, udp_port=eth.udp_port, phy_ports=RGMII_PORTS,
                      ctrl_addr_width=link_ctrl_addr_width(board), ref_clock=ETH_REF_CLOCK,
                      phy_reset=_core_port_of_pin(board, eth.reset_pin),
                      phy_reset_cycles=eth_phy_reset_cycles(board))


def _core_port_of_pin(board: Board, pin: str) -> str:
    from gen.liteeth import RGMII_PINS
    ports = [port for port, stem in RGMII_PINS.items() if stem == pin]
    if len(ports) != 1:
        raise ValueError(f"{board.name}: the Ethernet pin {pin!r} is on no core port of {sorted(RGMII_PINS)}")
    return ports[0]


def eth_package_tcl(config: AccelConfig, board: Board, ports: dict[str, tuple[str, int]], part: str) -> str:
    """``package_systole_eth.tcl``: the Ethernet link with LiteEth's ``liteeth_core.v`` as a
    second source; its control master spans ``board.ctrl_window``."""
    from gen.liteeth import MODULE
    eth = board.ethernet
    return package_ip_tcl(
        top="systole_eth", name="systole_eth", display_name="Systole Ethernet link",
        description=f"LiteEth UDP/IP ({eth.interface.upper()}, {eth.phy}), UDP port {eth.udp_port}: "
                    "link datagrams to AXI4-Lite and AXI4 masters",
        ports=ports, part=part, irq_mode="slave", registers=False, sources=(f"{MODULE}.v",),
        master_ranges={"m_axi_ctrl": board.ctrl_window.size, "m_axi_mem": 1 << config.addr_width})


def _link_verilog(config: AccelConfig, board: Board, baud: int) -> str:
    from hdl.link_top import LinkTop
    from hdl.to_verilog import convert
    top = LinkTop(config, baud=baud, ctrl_addr_width=link_ctrl_addr_width(board))
    return convert(top, "systole_link")


def ip_files(config: AccelConfig, ip_dir: Path, *, board: Board, link: Board | None = None,
             baud: int | None = None, top_verilog: Path | None = None, eth: Board | None = None) -> list[Path]:
    """``hdl/*.v`` and ``package_*.tcl`` under ``ip_dir``; the paths written.

    The accelerator's Verilog (and the register artefacts) is generated, or copied from
    ``top_verilog``. With ``link``, also the ``systole_link`` bridge of that board: its
    control master spans the board's ``ctrl_window``, its UART runs at ``baud``
    (default: the board's ``uart_baud``). With ``eth``, also the ``systole_eth`` link of
    that board: ``gen.liteeth.generate`` writes ``liteeth_core.v`` (a source of the IP),
    ``.xdc`` (read by the board's build) and ``.json`` into ``hdl/``.
    """
    hdl_dir = ip_dir / "hdl"
    hdl_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if top_verilog is None:
        from gen.verilog import write_artefacts
        written += write_artefacts(config, hdl_dir)
    else:
        shutil.copyfile(top_verilog, hdl_dir / "systole_top.v")
        written.append(hdl_dir / "systole_top.v")
    ports = verilog_ports((hdl_dir / "systole_top.v").read_text(), "systole_top")
    part = board.fpga.part
    files = {"package_systole.tcl": accel_package_tcl(config, ports, part, board)}
    if link is not None:
        baud = link.uart_baud if baud is None else baud
        if baud is None:
            raise ValueError(f"{link.name} has no UART link (uart_baud is None); pass a baud rate")
        text = _link_verilog(config, link, baud)
        (hdl_dir / "systole_link.v").write_text(text)
        written.append(hdl_dir / "systole_link.v")
        files["package_systole_link.tcl"] = link_package_tcl(config, link, baud,
                                                             verilog_ports(text, "systole_link"), part)
    if eth is not None:
        from gen import liteeth
        written += list(liteeth.generate(eth, hdl_dir).values())
        from hdl.to_verilog import convert
        text = convert(eth_link_top(config, eth), "systole_eth")
        (hdl_dir / "systole_eth.v").write_text(text)
        written.append(hdl_dir / "systole_eth.v")
        files["package_systole_eth.tcl"] = eth_package_tcl(config, eth, verilog_ports(text, "systole_eth"), part)
    return written + write_files(ip_dir, files)
