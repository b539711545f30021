"""The co-simulation system: the accelerator top wired to the DPI-backed memory.

``SimSystem(config)`` is what ``host.platforms.sim`` runs in Verilator: the real
``SystoleTop`` (the Verilog that goes to the boards) with its ``m_axi_dma`` port
connected to ``SimMemory``. The ports are ``aclk``, ``aresetn``, ``s_axi_ctrl_*``,
``irq`` and the memory controls ``mem_*`` (latency, fault window, hang).
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, DomainRenamer, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.axi import AXI4LiteSignature, flat_members
from hdl.config import AccelConfig

from .sim_memory import SimMemory, dpi_sources

__all__ = ["SimSystem", "build"]

TOPLEVEL = "systole_cosim"


class SimSystem(wiring.Component):
    """``SystoleTop`` plus ``SimMemory``; see the module docstring."""

    def __init__(self, config: AccelConfig):
        self.config = config
        # aclk comes from the model's own clock generator (see systole_clock.sv).
        members = {"aclk": Out(1), "aresetn": In(1, init=1), "irq": Out(1)}
        members.update(flat_members("s_axi_ctrl", AXI4LiteSignature().flip()))
        members.update({
            "mem_read_latency": In(16, init=32),
            "mem_fault_lo": In(config.addr_width),
            "mem_fault_hi": In(config.addr_width),
            "mem_fault_read": In(1),
            "mem_fault_write": In(1),
            "mem_hang": In(1),
        })
        super().__init__(members)

    def elaborate(self, platform):
        from hdl.top import SystoleTop

        m = Module()
        half_period_ps = round(1e6 / self.config.clock_mhz / 2)
        m.submodules.clock = Instance("systole_clock", p_HALF_PERIOD_PS=half_period_ps,
                                      o_clk=self.aclk)
        # The reset is registered (as a board's reset block would): Amaranth folds the
        # reset into every register's next-state logic, and a reset straight from a
        # top-level input would make the simulator re-evaluate all of it each cycle.
        m.domains.mem = mem_domain = ClockDomain("mem", local=True, reset_less=True)
        aresetn = Signal(init=0)
        m.d.mem += aresetn.eq(self.aresetn)
        m.d.comb += mem_domain.clk.eq(self.aclk)
        m.domains.memrst = memrst = ClockDomain("memrst", local=True)
        m.d.comb += [memrst.clk.eq(self.aclk), memrst.rst.eq(~aresetn)]
        top = m.submodules.accel = SystoleTop(self.config)
        memory = SimMemory(self.config)
        m.submodules.memory = DomainRenamer("memrst")(memory)
        m.d.comb += [top.aclk.eq(self.aclk), top.aresetn.eq(aresetn), self.irq.eq(top.irq)]
        for name, member in top.signature.members.items():
            if name.startswith("s_axi_ctrl_"):
                if member.flow == In:
                    m.d.comb += getattr(top, name).eq(getattr(self, name))
                else:
                    m.d.comb += getattr(self, name).eq(getattr(top, name))
            elif name.startswith("m_axi_dma_"):
                inner = getattr(memory.bus, name[len("m_axi_dma_"):])
                if member.flow == Out:
                    m.d.comb += inner.eq(getattr(top, name))
                else:
                    m.d.comb += getattr(top, name).eq(inner)
        for control in ("read_latency", "fault_lo", "fault_hi", "fault_read", "fault_write", "hang"):
            m.d.comb += getattr(memory, control).eq(getattr(self, f"mem_{control}"))
        return m


def build(config: AccelConfig):
    """Generate and compile the co-simulation for ``config`` (cached by content).

    Returns ``(runner, build_dir, simulator, toplevel)`` for ``runner.test``.
    """
    from .runner import BUILD, build as build_sources, write_verilog

    system = SimSystem(config)
    verilog = write_verilog(system, TOPLEVEL, BUILD / "cosim" / "src" / f"{TOPLEVEL}_{config.name}.v")
    port, clock, cpp = dpi_sources()
    runner, build_dir, sim = build_sources(sources=[verilog, port, clock], toplevel=TOPLEVEL,
                                           extra_args=(str(cpp),),
                                           fast_ports=tuple(system.signature.members))
    return runner, build_dir, sim, TOPLEVEL
