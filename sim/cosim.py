"""The co-simulation system: the accelerator top wired to the DPI-backed memory.

``SimSystem(config)`` is what ``host.platforms.sim`` runs in Verilator: the real
``SystoleTop`` (the Verilog that goes to the boards) with every master (``m_axi_dma``
and the weight masters ``m_axi_w<p>``) connected to its own port of one ``SimMemory``,
whose ports share the DRAM timing; the memory runs on the masters' clock (a second
generator makes ``m_axi_aclk`` at ``axi_clock_mhz`` for a build that has one, so
memory latencies and DDR timing count its cycles). The ports are ``aclk``, ``aresetn``, ``s_axi_ctrl_*``,
``irq`` and the memory controls ``mem_*`` (latency, fault window, hang, DDR timing;
one per ``MEMORY_CONTROLS`` entry). After reset the memory is ideal.

``python -m sim.cosim --config JSON --socket PATH --memory FILE --memory-base ADDR``
is the simulator process ``host.platforms.sim.CosimSession`` starts: it builds the
system for the configuration (cached by content), then runs ``sim.cosim_server``,
which connects to ``PATH`` and serves the session's requests until CLOSE.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from amaranth.hdl import ClockDomain, DomainRenamer, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.axi import AXI4LiteSignature, flat_members
from hdl.spec.config import AccelConfig
from host.platforms.sim import MEMORY_CONTROLS

from .sim_memory import SimMemory, control_members, dpi_sources

__all__ = ["SimSystem", "build", "main"]

TOPLEVEL = "systole_cosim"


class SimSystem(wiring.Component):
    """``SystoleTop`` plus ``SimMemory``; see the module docstring."""

    def __init__(self, config: AccelConfig):
        self.config = config
        # aclk comes from the model's own clock generator (see systole_clock.sv).
        members = {"aclk": Out(1), "aresetn": In(1, init=1), "irq": Out(1)}
        members.update(flat_members("s_axi_ctrl", AXI4LiteSignature().flip()))
        members.update({f"mem_{name}": member for name, member in control_members(config).items()})
        super().__init__(members)

    def elaborate(self, platform):
        from hdl.top import SystoleTop, is_master_port

        m = Module()
        config = self.config
        m.submodules.clock = Instance("systole_clock", p_HALF_PERIOD_PS=round(1e6 / config.clock_mhz / 2),
                                      o_clk=self.aclk)
        # The reset is registered (as a board's reset block would): Amaranth folds the
        # reset into every register's next-state logic, and a reset straight from a
        # top-level input would make the simulator re-evaluate all of it each cycle.
        m.domains.rstreg = rstreg = ClockDomain("rstreg", local=True, reset_less=True)
        aresetn = Signal(init=0)
        m.d.rstreg += aresetn.eq(self.aresetn)
        m.d.comb += rstreg.clk.eq(self.aclk)
        # The memory runs on the masters' clock: a second generator for m_axi_aclk, with
        # its own registered reset, or aclk itself.
        master_clk, master_resetn = self.aclk, aresetn
        if config.split_clocks:
            master_clk, master_resetn = Signal(), Signal(init=0)
            m.submodules.master_clock = Instance(
                "systole_clock", p_HALF_PERIOD_PS=round(1e6 / config.axi_clock_mhz / 2), o_clk=master_clk)
            m.domains.mrstreg = mrstreg = ClockDomain("mrstreg", local=True, reset_less=True)
            m.d.comb += mrstreg.clk.eq(master_clk)
            m.d.mrstreg += master_resetn.eq(self.aresetn)
        m.domains.memrst = memrst = ClockDomain("memrst", local=True)
        m.d.comb += [memrst.clk.eq(master_clk), memrst.rst.eq(~master_resetn)]
        top = m.submodules.accel = SystoleTop(config)
        memory = SimMemory(config, ports=config.weight_ports)
        m.submodules.memory = DomainRenamer("memrst")(memory)
        buses = {f"{master}_": memory.bus if p == 0 else getattr(memory, f"bus{p}")
                 for p, master in enumerate(config.weight_masters)}
        m.d.comb += [top.aclk.eq(self.aclk), top.aresetn.eq(aresetn), self.irq.eq(top.irq)]
        if config.split_clocks:
            m.d.comb += [top.m_axi_aclk.eq(master_clk), top.m_axi_aresetn.eq(master_resetn)]
        for name, member in top.signature.members.items():
            if name.startswith("s_axi_ctrl_"):
                if member.flow == In:
                    m.d.comb += getattr(top, name).eq(getattr(self, name))
                else:
                    m.d.comb += getattr(self, name).eq(getattr(top, name))
            elif is_master_port(name):
                prefix = next(prefix for prefix in buses if name.startswith(prefix))
                inner = getattr(buses[prefix], name[len(prefix):])
                if member.flow == Out:
                    m.d.comb += inner.eq(getattr(top, name))
                else:
                    m.d.comb += getattr(top, name).eq(inner)
        for control in MEMORY_CONTROLS:
            m.d.comb += getattr(memory, control).eq(getattr(self, f"mem_{control}"))
        return m


def build(config: AccelConfig):
    """Generate and compile the co-simulation for ``config`` (cached by content).

    Returns ``(runner, build_dir, simulator, toplevel)`` for ``runner.test``.
    """
    from .runner import BUILD, write_verilog
    from .runner import build as build_sources

    system = SimSystem(config)
    verilog = write_verilog(system, TOPLEVEL, BUILD / "cosim" / "src" / f"{TOPLEVEL}_{config.name}.v")
    port, clock, cpp = dpi_sources()
    runner, build_dir, sim = build_sources(sources=[verilog, port, clock], toplevel=TOPLEVEL,
                                           extra_args=(str(cpp),),
                                           fast_ports=tuple(system.signature.members))
    return runner, build_dir, sim, TOPLEVEL


def main(argv: list[str] | None = None) -> int:
    """Build and serve one co-simulation (see the module docstring); the exit status."""
    from .runner import BUILD

    parser = argparse.ArgumentParser(prog="python -m sim.cosim", description=main.__doc__)
    parser.add_argument("--config", required=True, help="the AccelConfig's fields as JSON")
    parser.add_argument("--socket", required=True, help="Unix socket the session listens on")
    parser.add_argument("--memory", required=True, help="file holding the simulated DDR")
    parser.add_argument("--memory-base", required=True, help="device address of the file's byte 0")
    args = parser.parse_args(argv)
    config = AccelConfig(**json.loads(args.config))
    runner, build_dir, sim, toplevel = build(config)
    workdir = BUILD / "cosim" / f"{config.name}-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        "SYSTOLE_COSIM_SOCKET": args.socket,
        "SYSTOLE_COSIM_PERIOD_PS": str(round(1e6 / config.clock_mhz)),
        "SYSTOLE_SIM_MEM": args.memory,
        "SYSTOLE_SIM_MEM_BASE": args.memory_base,
        "PYTHONPATH": os.pathsep.join(p for p in (str(BUILD.parent), os.environ.get("PYTHONPATH", ""))
                                      if p),
    }
    runner.test(test_module="sim.cosim_server", hdl_toplevel=toplevel, build_dir=build_dir,
                test_dir=workdir, extra_env=env, timescale=sim.timescale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
