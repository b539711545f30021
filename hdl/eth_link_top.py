"""``EthLinkTop``: LiteEth's UDP/IP core and ``EthLink`` with flat ports (the ``systole_eth`` IP).

The core is ``gen.liteeth``'s ``liteeth_core`` Verilog, instantiated here as a black
box: its user port ``link_*`` meets ``EthLink``, its PHY ports leave this module under
their own names. For a board (``ref_clock`` / ``phy_reset_cycles``) the module also
provides what ``gen.liteeth`` says a wrapper must: the ``IDELAYCTRL`` of the core's RX
``IDELAYE2``s, the PHY's reset pulse at power-up, and the core's synchronised
active-high ``sys_reset``.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Instance, IOPort, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4LiteSignature, AXI4Signature, connect_flat, flat_members
from .eth_link import FRAME_TIMEOUT, MAX_PAYLOAD, EthLink
from .spec.config import AccelConfig
from .udp_port import RX_FIELDS, TX_FIELDS, UDP_WORD, flat_port_name

__all__ = ["CORE_MODULE", "EthLinkTop"]

CORE_MODULE = "liteeth_core"


class EthLinkTop(wiring.Component):
    """``liteeth_core`` + ``EthLink`` on ``aclk`` (the core's ``sys_clock``), ``aresetn`` synchronous.

    Ports: ``aclk``, ``aresetn``; the core's PHY ports (``phy_ports``: ``{name:
    (direction, width)}`` with direction ``input``, ``output`` or ``inout``); ``m_axi_ctrl_*``
    (AXI4-Lite to the accelerator's registers), ``m_axi_mem_*`` (AXI4 to memory);
    ``irq`` (from the accelerator); ``link_active`` (a request is handled: an LED).

    - ``sys_reset`` of the core is high from configuration until the PHY's reset pulse
      ends (two cycles without one), through two flip-flops on ``aclk``: active high,
      synchronous to the core's clock. ``aresetn`` resets ``EthLink`` but not the core:
      the core's ``eth_rx``/``eth_tx`` domains are reset only by its PHY-reset CSR, so
      a ``sys_reset`` later on would reset one side of its clock-domain-crossing FIFOs
      and not the other (seen in simulation: the core then stopped passing frames).
    - ``ref_clock`` (a port name, e.g. ``clk_ref_200``): an ``IDELAYCTRL`` on that
      200 MHz input calibrates the core's IDELAYE2s; ``idelay_ready`` is its RDY.
    - ``phy_reset_cycles`` > 0: the port ``phy_reset`` (active-low, the core's own
      ``*_rst_n`` ANDed in) is held low that many ``aclk`` cycles after configuration,
      and the core is held in reset meanwhile; it is not repeated by ``aresetn``.
    """

    def __init__(self, config: AccelConfig, *, udp_port: int, phy_ports: dict[str, tuple[str, int]],
                 max_payload: int = MAX_PAYLOAD, frame_timeout: int = FRAME_TIMEOUT, ctrl_addr_width: int = 8,
                 ref_clock: str | None = None, phy_reset: str | None = None, phy_reset_cycles: int = 0):
        if (phy_reset is None) != (phy_reset_cycles == 0):
            raise ValueError(f"phy_reset={phy_reset!r} and phy_reset_cycles={phy_reset_cycles}: give both or neither")
        if phy_reset is not None and phy_ports.get(phy_reset) != ("output", 1):
            raise ValueError(f"phy_reset={phy_reset!r} is not a 1-bit output of the core: {sorted(phy_ports)}")
        self.config = config
        self.link = EthLink(config, udp_port=udp_port, max_payload=max_payload, frame_timeout=frame_timeout,
                            ctrl_addr_width=ctrl_addr_width)
        self.phy_ports = dict(phy_ports)
        self.ref_clock = ref_clock
        self.phy_reset = phy_reset
        self.phy_reset_cycles = phy_reset_cycles
        members = {"aclk": In(1), "aresetn": In(1)}
        for name, (direction, width) in phy_ports.items():
            if direction != "inout":        # inout ports are IOPorts (a signature has no inout)
                members[name] = (In if direction == "input" else Out)(width)
        members.update(flat_members("m_axi_ctrl", AXI4LiteSignature(ctrl_addr_width, 32)))
        members.update(flat_members("m_axi_mem", AXI4Signature(config)))
        members["irq"] = In(1)
        members["link_active"] = Out(1)
        if ref_clock is not None:
            members[ref_clock] = In(1)
            members["idelay_ready"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        # The power-up pulse and the reset synchroniser are not reset by aresetn.
        m.domains.power = power = ClockDomain("power", reset_less=True)
        m.d.comb += [sync.clk.eq(self.aclk), sync.rst.eq(~self.aresetn), power.clk.eq(self.aclk)]
        m.submodules.link = link = self.link
        connect_flat(m, self, "m_axi_ctrl", link.ctrl)
        connect_flat(m, self, "m_axi_mem", link.mem)
        m.d.comb += [link.irq.eq(self.irq), self.link_active.eq(link.busy)]

        phy_held = Signal()             # the PHY is in its power-up reset
        if self.phy_reset_cycles:
            count = Signal(range(self.phy_reset_cycles + 1))
            m.d.comb += phy_held.eq(count != self.phy_reset_cycles)
            with m.If(phy_held):
                m.d.power += count.eq(count + 1)
        core_reset = [Signal(name=f"sys_reset_stage{i}", init=1, attrs={"ASYNC_REG": "TRUE"}) for i in range(2)]
        m.d.power += [core_reset[0].eq(phy_held), core_reset[1].eq(core_reset[0])]

        ports = {"i_sys_clock": ClockSignal("sync"), "i_sys_reset": core_reset[1]}
        for name, (direction, width) in self.phy_ports.items():
            if direction == "inout":
                ports[f"io_{name}"] = IOPort(width, name=name)
            elif name == self.phy_reset:
                core_reset_n = Signal(name="core_phy_reset_n")
                ports[f"o_{name}"] = core_reset_n
                m.d.comb += getattr(self, name).eq(core_reset_n & ~phy_held)
            else:
                ports[("i_" if direction == "input" else "o_") + name] = getattr(self, name)
        rx, tx = link.udp_rx, link.udp_tx
        for field in RX_FIELDS:
            ports[f"o_{flat_port_name('source', field)}"] = getattr(rx.payload, field)
        ports[f"o_{flat_port_name('source', 'valid')}"] = rx.valid
        ports[f"i_{flat_port_name('source', 'ready')}"] = rx.ready
        for field in TX_FIELDS:
            ports[f"i_{flat_port_name('sink', field)}"] = getattr(tx.payload, field)
        ports[f"i_{flat_port_name('sink', 'valid')}"] = tx.valid
        ports[f"o_{flat_port_name('sink', 'ready')}"] = tx.ready
        # The core's own XDC (gen.liteeth) names its nets relative to this module and is read
        # scoped to it (Vivado's SCOPED_TO_REF): synthesis must keep the module whole.
        m.submodules.core = Instance(CORE_MODULE, a_keep_hierarchy="yes", **ports)

        if self.ref_clock is not None:
            m.submodules.idelayctrl = Instance("IDELAYCTRL", i_REFCLK=getattr(self, self.ref_clock),
                                               i_RST=~self.aresetn, o_RDY=self.idelay_ready)
        return m
