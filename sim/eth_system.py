"""Simulation harness of the Nexys Video design over Ethernet: ``systole_eth`` (LiteEth's
core in its GMII simulation variant + ``EthLink``) wired to ``systole_top``, as the
block design wires the Ethernet IP next to the UART bridge.

The PHY side is LiteEth's GMII on ``aclk`` (``gen.liteeth``'s ``gmii-model``
variant): the testbench is the PHY and the network. As in ``sim.link_system``, the
link's ``m_axi_ctrl`` drives the accelerator's ``s_axi_ctrl``, the accelerator's
``irq`` goes back to the link, and the AXI4 masters stay separate ports for AXI RAM
models sharing one backing store (the SmartConnect + MIG as the masters see them).
"""

from __future__ import annotations

from pathlib import Path

from amaranth.hdl import Instance, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.eth_link_top import EthLinkTop
from hdl.spec.boards import BOARDS
from hdl.spec.config import AccelConfig

from .link_system import _instance_ports, add_accelerator, memory_members

__all__ = ["BOARD", "EthSystem", "eth_link_top", "eth_sources"]

BOARD = BOARDS["nexys_video"]


def eth_link_top(config: AccelConfig, **kwargs) -> EthLinkTop:
    """The ``systole_eth`` IP around the simulation variant of the board's core."""
    from gen.liteeth import GMII_PORTS
    return EthLinkTop(config, udp_port=BOARD.ethernet.udp_port, phy_ports=GMII_PORTS, **kwargs)


class EthSystem(wiring.Component):
    """``systole_eth`` + ``systole_top`` with the GMII pins and both AXI4 masters out."""

    def __init__(self, config: AccelConfig, link: EthLinkTop):
        self.config = config
        self.link = link
        members = {"aclk": In(1), "aresetn": In(1), "irq": Out(1), "link_active": Out(1)}
        for name, (direction, width) in link.phy_ports.items():
            members[name] = (In if direction == "input" else Out)(width)
        members.update(memory_members(config))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        ctrl = add_accelerator(m, self, self.config)
        link_ports = {"aclk": self.aclk, "aresetn": self.aresetn, "irq": self.irq,
                      "link_active": self.link_active}
        link_ports.update({name: getattr(self, name) for name in self.link.phy_ports})
        link_ports.update({f"m_axi_ctrl_{n}": s for n, s in ctrl.items()})
        link_ports.update({n: getattr(self, n) for n in self.link.signature.members if n.startswith("m_axi_mem_")})
        m.submodules.link = Instance("systole_eth", **_instance_ports(self.link, link_ports))
        return m


def eth_sources(config: AccelConfig, link: EthLinkTop) -> tuple[list[Path], str]:
    """Verilog sources and toplevel of the system (each file cached by content)."""
    from gen import liteeth
    from sim.runner import BUILD, write_verilog
    from sim.top_build import top_verilog
    core_dir = BUILD / "liteeth" / f"{BOARD.name}-{liteeth.SIM_PHY}"
    core = liteeth.generate(BOARD, core_dir, phy=liteeth.SIM_PHY)[".v"]     # ~1 s; same bytes, same build
    tag = f"{config.name}-p{link.link.max_payload}-t{link.link.frame_timeout}"
    return [core, write_verilog(link, "systole_eth", BUILD / "sim" / "src" / f"systole_eth-{tag}.v"),
            top_verilog(config),
            write_verilog(EthSystem(config, link), "eth_system", BUILD / "sim" / "src" / f"eth_system-{tag}.v")
            ], "eth_system"
