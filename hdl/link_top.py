"""``LinkTop``: the UART bridge with flat, Vivado-inferable ports (the ``systole_link`` IP)."""

from amaranth.hdl import ClockDomain, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4LiteSignature, AXI4Signature, connect_flat, flat_members
from .spec.boards import BOARDS
from .spec.config import AccelConfig
from .uart import UartRx, UartTx, divisor_for
from .uart_bridge import UartBridge

__all__ = ["LinkTop"]


class LinkTop(wiring.Component):
    """UartRx -> UartBridge -> UartTx, clocked by ``aclk`` with ``aresetn`` (synchronous).

    Ports: ``uart_rxd``/``uart_txd`` (the host's serial line, 8N1), ``m_axi_ctrl_*``
    (AXI4-Lite master to the accelerator's ``s_axi_ctrl``), ``m_axi_mem_*`` (AXI4 master
    to DDR, ``config.bus_bits`` wide like the accelerator's DMA port), ``irq`` (from the
    accelerator), ``link_active`` (high while a request is handled: an LED).

    ``divisor`` is aclk cycles per bit (default from ``config.clock_mhz`` and ``baud``, whose
    default is the Nexys Video's link rate in ``hdl.spec.boards``); ``frame_timeout``
    defaults to 10 ms of aclk cycles.
    """

    def __init__(self, config: AccelConfig, *, baud: int | None = None, divisor: int | None = None,
                 max_payload: int | None = None, frame_timeout: int | None = None, ctrl_addr_width: int = 8):
        clock_hz = config.clock_mhz * 1e6
        self.config = config
        baud = BOARDS["nexys_video"].uart_baud if baud is None else baud
        self.divisor = divisor if divisor is not None else divisor_for(clock_hz, baud)
        self.max_payload = max_payload if max_payload is not None else min(4096, 256 * config.bus_bytes)
        self.frame_timeout = frame_timeout if frame_timeout is not None else int(clock_hz * 0.01)
        self.ctrl_addr_width = ctrl_addr_width
        members = {"aclk": In(1), "aresetn": In(1), "uart_rxd": In(1, init=1), "uart_txd": Out(1, init=1)}
        members.update(flat_members("m_axi_ctrl", AXI4LiteSignature(ctrl_addr_width, 32)))
        members.update(flat_members("m_axi_mem", AXI4Signature(config)))
        members["irq"] = In(1)
        members["link_active"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        m.d.comb += [sync.clk.eq(self.aclk), sync.rst.eq(~self.aresetn)]

        m.submodules.rx = rx = UartRx(self.divisor)
        m.submodules.tx = tx = UartTx(self.divisor)
        m.submodules.bridge = bridge = UartBridge(
            self.config, max_payload=self.max_payload, ctrl_addr_width=self.ctrl_addr_width,
            frame_timeout=self.frame_timeout)
        wiring.connect(m, rx.data, bridge.rx)
        wiring.connect(m, bridge.tx, tx.data)
        connect_flat(m, self, "m_axi_ctrl", bridge.ctrl)
        connect_flat(m, self, "m_axi_mem", bridge.mem)
        m.d.comb += [rx.rx.eq(self.uart_rxd), self.uart_txd.eq(tx.tx), bridge.irq.eq(self.irq),
                     self.link_active.eq(bridge.busy)]
        return m
