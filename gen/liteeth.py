"""``python -m gen.liteeth nexys_video``: LiteEth's UDP/IP core as Verilog, for a board's Ethernet.

The core is LiteEth's standalone generator (``liteeth.gen.UDPCore``, Migen/LiteX, pinned
in requirements.lock): RGMII PHY with 7-series primitives, MAC, ARP, IPv4, ICMP echo and
UDP. Its configuration is made here from ``hdl.spec.boards``: the part, the Ethernet
facts (RGMII skews, IP and MAC address, UDP port) and the clock the core runs on.

The core has one UDP port, ``link``: it receives the datagrams sent to the board's UDP
port, with their sender's IP address and port, and sends datagrams to any address and
port (a reply goes back to its request's sender). ``link_*`` is LiteEth's "raw" UDP
user port (``liteeth.gen.get_udp_raw_port_ios``), except that it listens on the
configured port instead of on its own ``sink_dst_port`` input: a reply's destination
port does not move the port the core listens on.

What a wrapper around the core must provide (the core does not): the 125 MHz RGMII
clocks come from the PHY (``rgmii_clocks_rx``; a PLL in the core makes the TX clock from
it, so the core transmits only while the PHY has a 1000BASE-T link); the RX IDELAYE2s
need an ``IDELAYCTRL`` on a 200 MHz reference in the design; ``sys_reset`` is active high
(LiteX's CRG synchronises it to ``sys_clock``); ``rgmii_rst_n`` stays high and MDIO idle
(the core drives both from CSRs that nothing writes), so a PHY reset pulse at power-up
is the wrapper's.

Written under ``build/liteeth/<board>/``: ``liteeth_core.v``, ``liteeth_core.xdc`` (the
core's clock and false-path constraints, without LiteX's placeholder pin lines) and
``liteeth_core.json`` (the configuration). The same configuration gives the same bytes:
LiteX's date and git-revision banner lines are replaced by the pinned versions.

``--phy gmii-model`` (``generate(..., phy=SIM_PHY)``) writes a simulation variant under
``build/liteeth/<board>-gmii-model/``: the same MAC, ARP, ICMP, IP and UDP with the
same addresses and user port, but LiteEth's GMII PHY in its model mode: ``gmii_rx_*``
and ``gmii_tx_*`` are sampled and driven on ``sys_clock`` (which is then the 125 MHz
GMII clock; ``gmii_clocks_rx`` is unused), LiteX's reset synchroniser is plain logic,
and nothing is a vendor primitive, so Verilator and Icarus run it. Preamble, FCS,
padding and inter-frame gap are the real MAC's. The board variant is not touched by it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
import json
import logging
import re
import tempfile
from importlib.metadata import version
from pathlib import Path

from hdl.spec.boards import BOARDS, Board

__all__ = ["MODULE", "LINK_PORT", "DATA_WIDTH", "CLOCK", "RGMII_PINS", "RGMII_PORTS", "SIM_PHY", "GMII_PORTS", "core_config",
           "sim_config", "generate", "main"]

MODULE = "liteeth_core"
LINK_PORT = "link"
# The user port's width: 32 bits at the 100 MHz ui_clk carry 3.2 Gb/s, above the 1 Gb/s
# line rate (8 bits would cap the link at 800 Mb/s).
DATA_WIDTH = 32
# The board clock the core's sys_clock is: the Nexys Video design runs on MIG's ui_clk.
CLOCK = "ui_clk"
# The core's RGMII ports and the board pins (``Board.pins``; a stem names the group
# stem0, stem1, ...) each one sits on.
RGMII_PINS = {
    "rgmii_clocks_rx": "eth_rxck",
    "rgmii_clocks_tx": "eth_txck",
    "rgmii_rx_ctl": "eth_rxctl",
    "rgmii_rx_data": "eth_rxd",
    "rgmii_tx_ctl": "eth_txctl",
    "rgmii_tx_data": "eth_txd",
    "rgmii_mdc": "eth_mdc",
    "rgmii_mdio": "eth_mdio",
    "rgmii_int_n": "eth_int_b",
    "rgmii_rst_n": "eth_rst_b",
}
# The board variant's PHY ports: {port: (direction, width)} (tests/test_liteeth.py checks
# them against Yosys's elaboration of the core).
RGMII_PORTS = {"rgmii_clocks_rx": ("input", 1), "rgmii_clocks_tx": ("output", 1),
               "rgmii_rx_ctl": ("input", 1), "rgmii_rx_data": ("input", 4),
               "rgmii_tx_ctl": ("output", 1), "rgmii_tx_data": ("output", 4),
               "rgmii_mdc": ("output", 1), "rgmii_mdio": ("inout", 1),
               "rgmii_int_n": ("input", 1), "rgmii_rst_n": ("output", 1)}
# The simulation variant's PHY and its ports: {port: (direction, width)}.
SIM_PHY = "gmii-model"
GMII_PORTS = {"gmii_clocks_rx": ("input", 1), "gmii_rx_dv": ("input", 1), "gmii_rx_er": ("input", 1),
              "gmii_rx_data": ("input", 8), "gmii_tx_en": ("output", 1), "gmii_tx_er": ("output", 1),
              "gmii_tx_data": ("output", 8)}
_PACKAGES = ("liteeth", "litex", "migen")
# LiteEth's PHY class for each (interface, yosys family) this generator supports.
_PHYS = {("rgmii", "xc7"): "LiteEthS7PHYRGMII"}


def core_config(board: Board, *, ip_address: str | None = None, mac_address: int | None = None,
                udp_port: int | None = None) -> dict:
    """LiteEth's core configuration for ``board`` (JSON-serialisable; the PHY by class name).

    ``ip_address``, ``mac_address`` and ``udp_port`` default to ``board.ethernet``'s.
    ``ValueError`` names a board without Ethernet, an interface or family LiteEth's
    generator is not used for here, or an address or port out of range.
    """
    eth = board.ethernet
    if eth is None:
        raise ValueError(f"{board.name} has no Ethernet facts (Board.ethernet); "
                         f"boards with one: {', '.join(b.name for b in BOARDS.values() if b.ethernet)}")
    phy = _PHYS.get((eth.interface, board.fpga.yosys_family))
    if phy is None:
        raise ValueError(f"{board.name}: no LiteEth PHY for {eth.interface} on {board.fpga.yosys_family}; "
                         f"supported: {sorted(_PHYS)}")
    ip_address = str(ipaddress.IPv4Address(eth.ip_address if ip_address is None else ip_address))
    mac_address = eth.mac_address if mac_address is None else mac_address
    if not 0 <= mac_address < 1 << 48 or mac_address >> 40 & 1:
        raise ValueError(f"mac_address={mac_address:#x}: must be a 48-bit unicast address (first octet even)")
    udp_port = eth.udp_port if udp_port is None else udp_port
    if not 1 <= udp_port <= 0xFFFF:
        raise ValueError(f"udp_port={udp_port}: must be 1..65535")
    return {
        "vendor": "xilinx",
        "toolchain": "vivado",
        "device": board.fpga.part,
        "phy": phy,
        "phy_tx_delay": eth.tx_delay_s,
        "phy_rx_delay": eth.rx_delay_s,
        "clk_freq": int(board.clocks_hz[CLOCK]),
        "core": "udp",
        "data_width": DATA_WIDTH,
        "mac_address": mac_address,
        "ip_address": ip_address,
        "udp_ports": {LINK_PORT: {"mode": "raw", "data_width": DATA_WIDTH, "udp_port": udp_port}},
    }


def sim_config(board: Board, **overrides) -> dict:
    """``core_config`` of the simulation variant: LiteEth's GMII PHY (model mode), the
    core clocked at the board's Ethernet clock (``sys_clock`` is the GMII clock)."""
    config = core_config(board, **overrides)
    for key in ("phy_tx_delay", "phy_rx_delay"):
        del config[key]
    return dict(config, phy="LiteEthPHYGMII", phy_model=True, clk_freq=int(board.ethernet.clock_hz))


def _core_class():
    from liteeth import gen

    class SystoleUDPCore(gen.UDPCore):
        """``UDPCore`` whose raw ports listen on their configured ``udp_port``."""

        def add_raw_port(self, platform, name, port_cfg):
            platform.add_extension(gen.get_udp_raw_port_ios(name, port_cfg["data_width"]))
            pads = platform.request(name)
            port = self.core.udp.crossbar.get_port(port_cfg["udp_port"], dw=port_cfg["data_width"])
            for pad, *_ in pads.layout:
                side, _, field = pad.partition("_")
                stream, wire = getattr(port, side), getattr(pads, pad)
                outward = (side == "sink") == (field == "ready")       # sink.ready, source.* leave the core
                self.comb += wire.eq(getattr(stream, field)) if outward else getattr(stream, field).eq(wire)

    return SystoleUDPCore


def _build(config: dict, workdir: Path) -> Path:
    """Run LiteX's builder for ``config`` in ``workdir``; the gateware directory."""
    from litex.build.xilinx.platform import XilinxPlatform
    from litex.soc.integration.builder import Builder
    from liteeth import gen
    from liteeth import phy as liteeth_phys

    core_config = dict(config, phy=getattr(liteeth_phys, config["phy"]))
    platform = XilinxPlatform(config["device"], io=[], toolchain=config["toolchain"])
    platform.add_extension(gen._io)          # the pads LiteEth's own generator declares
    soc = _core_class()(platform, core_config)
    builder = Builder(soc, output_dir=str(workdir), compile_gateware=False, compile_software=False,
                      csr_csv=str(workdir / "csr.csv"))
    builder.build(build_name=MODULE)
    return workdir / "gateware"


def _build_sim(config: dict) -> str:
    """The simulation variant's Verilog: no vendor platform, so LiteX's reset synchroniser
    lowers to flip-flops; the GMII PHY is built in LiteEth's model mode (its CRG makes
    eth_rx and eth_tx from sys and instantiates no BUFG/ODDR)."""
    from unittest import mock

    from litex.build.generic_platform import GenericPlatform, Pins, Subsignal
    from litex.build.sim.common import sim_special_overrides
    from liteeth.phy.gmii import LiteEthPHYGMII

    class ConstraintsIgnored:
        """A simulation has no timing constraints (LiteEth's generator adds some)."""

        def add_period_constraint(self, *args, **kwargs):
            pass

    class SimPlatform(GenericPlatform):
        def __init__(self, io):
            super().__init__("sim", io)
            self.toolchain = ConstraintsIgnored()

        def add_false_path_constraint(self, *args, **kwargs):
            pass

        def get_verilog(self, *args, special_overrides=None, **kwargs):
            return super().get_verilog(*args, special_overrides={**sim_special_overrides,
                                                                 **(special_overrides or {})}, **kwargs)

    width = {port: w for port, (_, w) in GMII_PORTS.items()}
    io = [("sys_clock", 0, Pins(1)), ("sys_reset", 0, Pins(1)),
          ("gmii_clocks", 0, Subsignal("rx", Pins(1))),
          ("gmii", 0, *(Subsignal(port[len("gmii_"):], Pins(w)) for port, w in width.items()
                        if not port.startswith("gmii_clocks")))]
    platform = SimPlatform(io)
    core_config = {k: v for k, v in config.items() if k != "phy_model"}
    core_config["phy"] = LiteEthPHYGMII
    # LiteEth's generator builds LiteEthPHYGMII(clock_pads, pads) and has no way to ask
    # for its model mode; (with_hw_init_reset, model) default to (False, True) meanwhile.
    with mock.patch.object(LiteEthPHYGMII.__init__, "__defaults__", (False, True)):
        soc = _core_class()(platform, core_config)
    soc.finalize()
    return str(platform.get_verilog(soc, name=MODULE))


def _versions() -> str:
    return ", ".join(f"{name} {version(name)}" for name in _PACKAGES)


def _sort_runs(text: str, pattern: str) -> str:
    """``text`` with each run of consecutive lines matching ``pattern`` sorted.

    Migen keeps a module's primitive instances and LiteX its clock-group constraints in
    sets of objects hashed by address, so their order changes from run to run; only the
    Verilog's hierarchy comment and the XDC's clock-group lines show that order.
    """
    lines, out, run = text.split("\n"), [], []
    for line in lines + [None]:
        if line is not None and re.fullmatch(pattern, line):
            run.append(line)
            continue
        out += sorted(run)
        run = []
        if line is not None:
            out.append(line)
    return "\n".join(out)


def _normalize_verilog(text: str) -> str:
    """LiteX's Verilog, the same bytes for the same configuration: the banner's date and
    git revision (of whatever checkout holds the installed litex) give way to the pinned
    package versions, and the hierarchy comment's primitive lines are sorted."""
    text = re.sub(r"^// LiteX sha1 : .*$", f"// Packages   : {_versions()}", text, count=1, flags=re.M)
    text = re.sub(r"^// Date       : .*\n", "", text, count=1, flags=re.M)
    text = re.sub(r"^//  Auto-Generated by LiteX on .*\.$", f"//  Auto-Generated by LiteX ({_versions()}).",
                  text, count=1, flags=re.M)
    return _sort_runs(text, r"[│ ]*└─── \[\w+\]")


def _timing_constraints(xdc: str) -> str:
    """The core's XDC from its clock constraints on (LiteX's pin section has only
    placeholders), its clock groups in a fixed order."""
    start = xdc.index("# Design constraints")
    text = "#" * 80 + "\n" + xdc[start:]
    return _sort_runs(text.replace("-asynchronous\n\nset_clock_groups", "-asynchronous\nset_clock_groups"),
                      r"set_clock_groups .*")


def generate(board: Board, out: Path, *, phy: str | None = None, **overrides) -> dict[str, Path]:
    """Write ``liteeth_core.v``, ``.xdc`` and ``.json`` for ``board`` under ``out``; ``{suffix: path}``.

    ``phy``: ``None`` for the board's own PHY, ``SIM_PHY`` for the simulation variant
    (``.v`` and ``.json`` only). ``overrides``: ``ip_address``, ``mac_address``,
    ``udp_port`` (see ``core_config``).
    """
    if phy not in (None, SIM_PHY):
        raise ValueError(f"phy={phy!r}: None (the board's) or {SIM_PHY!r}")
    config = core_config(board, **overrides) if phy is None else sim_config(board, **overrides)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="liteeth-") as tmp, \
            contextlib.redirect_stdout(io.StringIO()), _quiet_logging():
        if phy is None:
            gateware = _build(config, Path(tmp))
            verilog = _normalize_verilog((gateware / f"{MODULE}.v").read_text())
            texts = {".v": verilog, ".xdc": _timing_constraints((gateware / f"{MODULE}.xdc").read_text())}
        else:
            texts = {".v": _normalize_verilog(_build_sim(config))}
    texts[".json"] = json.dumps({"board": board.name, "packages": _versions(), "config": config},
                                indent=2, sort_keys=True) + "\n"
    paths = {}
    for suffix, text in texts.items():
        paths[suffix] = out / f"{MODULE}{suffix}"
        paths[suffix].write_text(text)
    return paths


@contextlib.contextmanager
def _quiet_logging():
    """LiteX logs its whole SoC at INFO level; keep warnings only."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gen.liteeth", description=__doc__.splitlines()[0])
    parser.add_argument("board", choices=[name for name, b in BOARDS.items() if b.ethernet])
    parser.add_argument("--out", type=Path, help="output directory (default: build/liteeth/<board>)")
    parser.add_argument("--ip", help="the board's IPv4 address (default: the board's)")
    parser.add_argument("--mac", help="the board's MAC address, aa:bb:cc:dd:ee:ff (default: the board's)")
    parser.add_argument("--udp-port", type=int, help="the link's UDP port (default: the board's)")
    parser.add_argument("--phy", choices=[SIM_PHY], help="a simulation variant (default: the board's PHY)")
    args = parser.parse_args(argv)
    board = BOARDS[args.board]
    mac = None if args.mac is None else int(args.mac.replace(":", "").replace("-", ""), 16)
    try:
        name = board.name if args.phy is None else f"{board.name}-{args.phy}"
        paths = generate(board, args.out or Path("build") / "liteeth" / name, phy=args.phy,
                         ip_address=args.ip, mac_address=mac, udp_port=args.udp_port)
    except ValueError as error:
        parser.error(str(error))
    for path in paths.values():
        print(path)


if __name__ == "__main__":
    main()
