"""``SystoleTop``: the accelerator with the flat, Vivado-inferable ports."""

from amaranth.hdl import Cat, ClockDomain, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4LiteSignature, AXI4ReadSignature, AXI4Signature, connect_flat, flat_members
from .controller import Controller, read_ports
from .csr import CSR_ADDR_WIDTH, Csr
from .dma_control import control_members
from .dma_reader import DmaReader
from .dma_writer import DmaWriter
from .spec.config import AccelConfig
from .spec.job import FIELDS
from .spec.regmap import by_name

__all__ = ["SystoleTop"]


class SystoleTop(wiring.Component):
    """Csr + Controller (with the compute core) + DmaReader + DmaWriter.

    Ports: ``aclk``; ``aresetn`` (active low, synchronous: it resets the whole
    design at a rising ``aclk`` edge); ``s_axi_ctrl_*`` (AXI4-Lite slave, 8-bit
    address, 32-bit data); ``m_axi_dma_*`` (AXI4 master, all five channels,
    ``config.bus_bits`` data, ``config.addr_width`` address: A, weight stream 0
    and C); with ``weight_ports`` P > 1, ``m_axi_w1_*`` .. ``m_axi_w<P-1>_*``
    (AXI4 read masters of the same widths: weight streams 1 .. P-1); ``irq``
    (level, active high). Every interface is synchronous to ``aclk``. The design's
    ``sync`` domain is ``aclk``/``~aresetn``.
    """

    def __init__(self, config: AccelConfig):
        self.config = config
        members = {"aclk": In(1), "aresetn": In(1)}
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

        m.submodules.csr = csr = Csr(cfg)
        m.submodules.controller = ctrl = Controller(cfg)
        readers = []
        for index, master in enumerate(cfg.weight_masters):
            reader = DmaReader(cfg)
            m.submodules["reader" if index == 0 else f"reader{index}"] = reader
            connect_flat(m, self, master, reader.bus)
            readers.append(reader)
        m.submodules.writer = writer = DmaWriter(cfg)

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
        # The DMA contract (hdl/dma_control.py), member by member, for both blocks.
        for side, block in (*zip(read_ports(cfg), readers), ("wr", writer)):
            for name, member in control_members(cfg).items():
                ours, theirs = getattr(ctrl, f"{side}_{name}"), getattr(block, name)
                if name == "cmd":
                    wiring.connect(m, ours, theirs)
                elif member.flow == In:
                    m.d.comb += theirs.eq(ours)
                else:
                    m.d.comb += ours.eq(theirs)
        for side, reader in zip(read_ports(cfg), readers):
            wiring.connect(m, reader.data, getattr(ctrl, f"{side}_data"))
        wiring.connect(m, ctrl.wr_data, writer.data)
        return m
