"""Simulation harness of the Nexys Video design: the ``systole_link`` bridge IP wired to
the ``systole_top`` accelerator, as the block design wires them.

In Vivado the bridge's ``m_axi_ctrl`` drives the accelerator's ``s_axi_ctrl`` directly,
the accelerator's ``irq`` goes back to the bridge, and the AXI4 masters reach the MIG
through a SmartConnect. Here the masters stay separate ports (the bridge's, the
accelerator's ``m_axi_dma`` and, for a build with several weight ports, its
``m_axi_w<p>``); the testbench puts cocotbext-axi RAMs sharing one backing store on
them, which is what the SmartConnect + MIG look like from the masters.
"""

from __future__ import annotations

from pathlib import Path

from amaranth.hdl import Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.axi import AXI4ReadSignature, AXI4Signature, flat_members
from hdl.spec.config import AccelConfig
from hdl.link_top import LinkTop

__all__ = ["LinkSystem", "link_sources", "memory_members", "add_accelerator"]


def _instance_ports(component: wiring.Component, connect: dict) -> dict:
    """Instance keyword arguments: every port of ``component`` bound to ``connect[name]``."""
    ports = {}
    for name, member in component.signature.members.items():
        ports[("i_" if member.flow == In else "o_") + name] = connect[name]
    return ports


def memory_members(config: AccelConfig) -> dict:
    """The system's AXI4 master ports: the link's ``m_axi_mem``, the accelerator's
    ``m_axi_dma`` and, for a build with several weight ports, its ``m_axi_w<p>``."""
    members = {}
    members.update(flat_members("m_axi_mem", AXI4Signature(config)))
    members.update(flat_members("m_axi_dma", AXI4Signature(config)))
    for master in config.weight_masters[1:]:
        members.update(flat_members(master, AXI4ReadSignature(config)))
    return members


def add_accelerator(m: Module, system: wiring.Component, config: AccelConfig) -> dict:
    """Instantiate ``systole_top`` in ``m`` on ``system``'s clock, reset, irq and master
    ports (the masters on aclk too when the build splits clocks: the crossing then joins
    two in-phase clocks, which it must handle as well as any other ratio). Returns its
    ``s_axi_ctrl`` signals by field (``awaddr``, ...), named ``ctrl_<field>``, for the
    link's ``m_axi_ctrl`` to drive."""
    from hdl.top import SystoleTop, is_master_port
    accel = SystoleTop(config)
    accel._MustUse__silence = True      # only its port list is used; the Verilog is separate
    ctrl = {name[len("s_axi_ctrl_"):]: Signal(member.shape, name=f"ctrl_{name[11:]}")
            for name, member in accel.signature.members.items() if name.startswith("s_axi_ctrl_")}
    ports = {"aclk": system.aclk, "aresetn": system.aresetn, "irq": system.irq}
    ports.update({f"s_axi_ctrl_{n}": s for n, s in ctrl.items()})
    ports.update({n: getattr(system, n) for n in accel.signature.members if is_master_port(n)})
    if config.split_clocks:
        ports.update({"m_axi_aclk": system.aclk, "m_axi_aresetn": system.aresetn})
    m.submodules.accel = Instance("systole_top", **_instance_ports(accel, ports))
    return ctrl


class LinkSystem(wiring.Component):
    """``systole_link`` + ``systole_top`` with the serial pins and both AXI4 masters out."""

    def __init__(self, config: AccelConfig, link: LinkTop):
        self.config = config
        self.link = link
        members = {"aclk": In(1), "aresetn": In(1), "uart_rxd": In(1, init=1), "uart_txd": Out(1, init=1),
                   "irq": Out(1), "link_active": Out(1), **memory_members(config)}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        ctrl = add_accelerator(m, self, self.config)
        link_ports = {"aclk": self.aclk, "aresetn": self.aresetn, "uart_rxd": self.uart_rxd,
                      "uart_txd": self.uart_txd, "irq": self.irq, "link_active": self.link_active}
        link_ports.update({f"m_axi_ctrl_{n}": s for n, s in ctrl.items()})
        link_ports.update({n: getattr(self, n) for n in self.link.signature.members if n.startswith("m_axi_mem_")})
        m.submodules.link = Instance("systole_link", **_instance_ports(self.link, link_ports))
        return m


def link_sources(config: AccelConfig, link: LinkTop, *, system: bool) -> tuple[list[Path], str]:
    """Verilog sources and toplevel for the bridge alone or the whole system (cached by content)."""
    from sim.runner import BUILD, write_verilog
    tag = f"{config.name}-d{link.divisor}-p{link.max_payload}-t{link.frame_timeout}"
    sources = [write_verilog(link, "systole_link", BUILD / "sim" / "src" / f"systole_link-{tag}.v")]
    if not system:
        return sources, "systole_link"
    from sim.top_build import top_verilog
    sources.append(top_verilog(config))
    sources.append(write_verilog(LinkSystem(config, link), "link_system",
                                 BUILD / "sim" / "src" / f"link_system-{tag}.v"))
    return sources, "link_system"
