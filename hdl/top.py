"""``SystoleTop``: the accelerator with the flat, Vivado-inferable ports."""

from amaranth.hdl import Cat, ClockDomain, DomainRenamer, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4LiteSignature, AXI4ReadSignature, AXI4Signature, connect_flat, flat_members
from .controller import Controller, read_ports
from .csr import CSR_ADDR_WIDTH, Csr
from .dma_crossing import DmaCrossing, connect_contract
from .dma_reader import DmaReader
from .dma_writer import DmaWriter
from .spec.config import AccelConfig
from .spec.job import FIELDS
from .spec.regmap import by_name

__all__ = ["SystoleTop", "MASTER_CLOCK_PORTS", "is_master_port"]

# The masters' own clock and reset, in a build with ``axi_clock_mhz``.
MASTER_CLOCK_PORTS = ("m_axi_aclk", "m_axi_aresetn")


def is_master_port(name: str) -> bool:
    """Whether the top's port ``name`` belongs to an AXI master (``m_axi_<master>_*``),
    not to their clock and reset."""
    return name.startswith("m_axi_") and name not in MASTER_CLOCK_PORTS


class SystoleTop(wiring.Component):
    """Csr + Controller (with the compute core) + DmaReader + DmaWriter.

    Ports: ``aclk``; ``aresetn`` (active low, synchronous: it resets the whole
    design at a rising ``aclk`` edge); ``s_axi_ctrl_*`` (AXI4-Lite slave, 8-bit
    address, 32-bit data); ``m_axi_dma_*`` (AXI4 master, all five channels,
    ``config.bus_bits`` data, ``config.addr_width`` address: A, weight stream 0
    and C); with ``weight_ports`` P > 1, ``m_axi_w1_*`` .. ``m_axi_w<P-1>_*``
    (AXI4 read masters of the same widths: weight streams 1 .. P-1); ``irq``
    (level, active high). The design's ``sync`` domain is ``aclk``/``~aresetn``.

    Without ``axi_clock_mhz`` every interface is synchronous to ``aclk``. With it, the
    masters (``m_axi_*``) are synchronous to ``m_axi_aclk`` and reset by
    ``m_axi_aresetn`` (active low, synchronous to ``m_axi_aclk``), asynchronous to
    ``aclk``: the DMA blocks run there (domain ``axi``) and a ``DmaCrossing`` carries
    each one's contract to the controller. ``s_axi_ctrl`` and ``irq`` stay on ``aclk``.
    Both resets must be asserted together at power-up.
    """

    def __init__(self, config: AccelConfig):
        self.config = config
        members = {"aclk": In(1), "aresetn": In(1)}
        if config.split_clocks:
            members.update({name: In(1) for name in MASTER_CLOCK_PORTS})
        members.update(flat_members("s_axi_ctrl", AXI4LiteSignature(CSR_ADDR_WIDTH, 32).flip()))
        members.update(flat_members("m_axi_dma", AXI4Signature(config)))
        for master in config.weight_masters[1:]:
            members.update(flat_members(master, AXI4ReadSignature(config)))
        members["irq"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.domains.sync = sync = ClockDomain("sync")
        m.d.comb += [sync.clk.eq(self.aclk), sync.rst.eq(~self.aresetn)]

        # The DMA blocks' own domain: ``axi`` on m_axi_aclk, or ``sync`` itself.
        dma_domain = "axi" if cfg.split_clocks else "sync"
        if cfg.split_clocks:
            m.domains.axi = axi = ClockDomain("axi")
            m.d.comb += [axi.clk.eq(self.m_axi_aclk), axi.rst.eq(~self.m_axi_aresetn)]

        def in_dma_domain(block):
            return DomainRenamer({"sync": dma_domain})(block) if cfg.split_clocks else block

        m.submodules.csr = csr = Csr(cfg)
        m.submodules.controller = ctrl = Controller(cfg)
        readers = []
        for index, master in enumerate(cfg.weight_masters):
            reader = DmaReader(cfg)
            m.submodules["reader" if index == 0 else f"reader{index}"] = in_dma_domain(reader)
            connect_flat(m, self, master, reader.bus)
            readers.append(reader)
        writer = DmaWriter(cfg)
        m.submodules.writer = in_dma_domain(writer)

        connect_flat(m, self, "s_axi_ctrl", csr.bus)
        connect_flat(m, self, "m_axi_dma", writer.bus)
        m.d.comb += self.irq.eq(csr.irq)

        # Each job field from its registers, low word first (hdl.spec.job.FIELDS).
        m.d.comb += [getattr(ctrl, f.name).eq(Cat(*(getattr(csr, r.lower()) for r in f.registers)))
                     for f in FIELDS]
        m.d.comb += [
            ctrl.start.eq(csr.start),
            ctrl.start_busy.eq(csr.start_busy),
            ctrl.soft_reset.eq(csr.soft_reset),
            csr.busy.eq(ctrl.busy),
            csr.done.eq(ctrl.done),
            csr.status.eq(by_name("STATUS").pack(busy=ctrl.busy, error=ctrl.err_code != 0)),
            csr.err_code.eq(ctrl.err_code),
            csr.err_port.eq(ctrl.err_port),
            csr.err_addr_lo.eq(ctrl.err_addr[:32]),
            csr.err_addr_hi.eq(ctrl.err_addr[32:]),
            csr.cycles_lo.eq(ctrl.cycles[:32]),
            csr.cycles_hi.eq(ctrl.cycles[32:]),
            csr.perf_busy.eq(ctrl.perf_busy),
            csr.perf_stall.eq(ctrl.perf_stall),
            csr.perf_rd_beats.eq(ctrl.perf_rd_beats),
            csr.perf_wr_beats.eq(ctrl.perf_wr_beats),
        ]
        # The DMA contract (hdl/dma_control.py and the data stream), member by member, for
        # every block: straight to the controller, or through a crossing.
        sides = [(side, reader, "read") for side, reader in zip(read_ports(cfg), readers)]
        sides.append(("wr", writer, "write"))
        for side, block, direction in sides:
            facing_controller = block
            if cfg.split_clocks:
                crossing = DmaCrossing(cfg, direction, domain=dma_domain)
                m.submodules[f"{side}_crossing"] = crossing
                connect_contract(m, cfg, direction, crossing.block, block)
                facing_controller = crossing.core
            connect_contract(m, cfg, direction, _ControllerSide(ctrl, side), facing_controller)
        return m


class _ControllerSide:
    """The controller's ``<side>_<name>`` members, reachable as ``<name>``."""

    def __init__(self, controller: Controller, side: str):
        self._controller, self._side = controller, side

    def __getattr__(self, name):
        return getattr(self._controller, f"{self._side}_{name}")
