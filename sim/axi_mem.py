"""An AXI4 slave memory for the Amaranth simulator, with protocol checks.

``AxiMemory`` answers an Amaranth ``AXI4ReadSignature``/``AXI4WriteSignature``
master from a ``bytearray``. It is the reference the DMA unit tests and the DMA
throughput benchmark measure against, written independently of the RTL:

- a fixed read latency (cycles from the AR handshake to the first RVALID),
  any number of bursts in flight, beats in order, one per cycle at most;
- back-pressure on every channel: READY low on AR/AW/W and VALID withheld on
  R/B, following a ``sim.dma_traffic.Stalls`` pattern (none, periodic, random,
  or "lazy": READY only after VALID has been seen, which hangs a master whose
  VALID waits for READY);
- error injection by address (SLVERR/DECERR on the beats of a range; a write
  burst touching the range is not written and answered with the error);
- checks of everything the master promises, raising ``ProtocolError`` at the
  cycle it breaks: VALID held with a stable payload until READY, INCR bursts
  of full-width beats, aligned, at most ``max_burst`` beats and inside one 4 KiB
  page, at most ``max_outstanding`` bursts in flight, W beats never ahead of
  their AW, WLAST exactly on each burst's last beat, AxCACHE/AxPROT as
  specified: normal non-cacheable (0b0011, 0b000), or the I/O coherent pair
  (0b1111, 0b010) when the config has ``coherent_io``. Every burst's attributes
  are recorded (``bursts``) so a test can check which bursts were coherent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hdl.axi import BOUNDARY_BYTES, BURST_INCR, RESP_OKAY, axsize, cache_prot
from hdl.spec.config import AccelConfig
from sim.dma_traffic import Stalls

__all__ = ["ProtocolError", "AxiMemory", "Burst"]


class ProtocolError(AssertionError):
    """The master broke an AXI rule or a DMA contract limit."""


@dataclass
class Burst:
    """One AR or AW as the slave saw it."""

    addr: int
    beats: int
    cycle: int                       # handshake cycle
    resp: list[int] = field(default_factory=list)
    cache: int = 0                   # AxCACHE
    prot: int = 0                    # AxPROT


class AxiMemory:
    """AXI4 slave over ``memory`` (``bytearray`` mapped at ``base``).

    Attach with ``add_to(sim)`` before ``sim.run()``. ``read_latency`` is the
    number of cycles from the AR handshake to the earliest RVALID of that
    burst; ``write_latency`` the cycles from a burst's last W beat (and its
    AW) to the earliest BVALID. ``errors`` is a list of ``(lo, hi, resp)``
    byte ranges [lo, hi) answered with ``resp``. Observations for the tests:
    ``ars``/``aws`` (every burst, in handshake order), ``bursts`` (every burst as
    ``(channel, address, beats, cache, prot)``, channel "AR" or "AW"), ``max_reads_in_flight``,
    ``max_writes_in_flight``, ``first_read_error``/``first_write_error`` (the
    burst address of the first burst answered with an error).
    """

    def __init__(self, bus, config: AccelConfig, memory: bytearray, *, base: int = 0,
                 read_latency: int = 4, write_latency: int = 2, stalls: dict | None = None,
                 errors: list[tuple[int, int, int]] = (), seed: int = 0, domain: str = "sync"):
        self.domain = domain
        if read_latency < 1:
            raise ValueError(f"read_latency={read_latency} must be >= 1 cycle")
        self.bus = bus
        self.config = config
        self.memory = memory
        self.base = base
        self.read_latency = read_latency
        self.write_latency = write_latency
        stalls = dict(stalls or {})
        unknown = set(stalls) - {"ar", "r", "aw", "w", "b"}
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}; use ar, r, aw, w, b")
        self.stalls = {ch: stalls.get(ch) or Stalls("none") for ch in ("ar", "r", "aw", "w", "b")}
        self.errors = list(errors)
        self.ars: list[Burst] = []
        self.aws: list[Burst] = []
        self.bursts: list[tuple[str, int, int, int, int]] = []
        self.reads_in_flight = 0
        self.writes_in_flight = 0
        self.max_reads_in_flight = 0
        self.max_writes_in_flight = 0
        self.first_read_error: int | None = None
        self.first_write_error: int | None = None
        self.ar_beats = 0            # beats requested by every AR taken so far
        self.r_beats = 0
        self.w_beats = 0
        self.cycle = 0

    # --- helpers -----------------------------------------------------------
    def _fail(self, message: str):
        raise ProtocolError(f"cycle {self.cycle}: {message}")

    def _offset(self, addr: int, length: int) -> int:
        offset = addr - self.base
        if offset < 0 or offset + length > len(self.memory):
            self._fail(f"address 0x{addr:X}+{length} is outside the memory "
                       f"[0x{self.base:X}, 0x{self.base + len(self.memory):X})")
        return offset

    def _resp(self, addr: int, length: int) -> int:
        for lo, hi, resp in self.errors:
            if addr < hi and lo < addr + length:
                return resp
        return RESP_OKAY

    def _check_burst(self, kind: str, addr: int, length: int, size: int, burst: int,
                     cache: int, prot: int):
        bus_bytes = self.config.bus_bytes
        beats = length + 1
        if burst != BURST_INCR:
            self._fail(f"{kind}BURST={burst}, expected INCR")
        if size != axsize(bus_bytes):
            self._fail(f"{kind}SIZE={size}, expected {axsize(bus_bytes)} (full {bus_bytes}-byte beats)")
        allowed = {cache_prot(False)} | ({cache_prot(True)} if self.config.coherent_io else set())
        if (cache, prot) not in allowed:
            self._fail(f"{kind}CACHE={cache:#06b} {kind}PROT={prot:#05b}, expected one of "
                       + ", ".join(f"({c:#06b}, {p:#05b})" for c, p in sorted(allowed)))
        if addr % bus_bytes:
            self._fail(f"{kind}ADDR=0x{addr:X} is not {bus_bytes}-byte aligned")
        if beats > self.config.max_burst:
            self._fail(f"{kind}LEN={length}: {beats} beats exceed max_burst={self.config.max_burst}")
        if addr // BOUNDARY_BYTES != (addr + beats * bus_bytes - 1) // BOUNDARY_BYTES:
            self._fail(f"{kind} burst 0x{addr:X}+{beats} beats crosses a 4 KiB boundary")
        self._offset(addr, beats * bus_bytes)

    @staticmethod
    def _hold(name: str, previous, now, fail):
        """AXI: once VALID is high it stays, with the same payload, until READY."""
        if previous is not None and previous != now:
            fail(f"{name}VALID/payload changed before the handshake: {previous} -> {now}")

    def add_to(self, sim) -> None:
        """Register the read and write channel models that exist on ``bus``."""
        if hasattr(self.bus, "arvalid"):
            sim.add_testbench(self._read_side, background=True)
        if hasattr(self.bus, "awvalid"):
            sim.add_testbench(self._write_side, background=True)

    # --- read channels -------------------------------------------------------
    async def _read_side(self, ctx):
        bus, config = self.bus, self.config
        bus_bytes = config.bus_bytes
        queue: deque = deque()       # [burst, first_cycle, next_beat]
        held_ar = None               # AR payload presented and not yet taken
        held_r = False
        ar_seen = False
        ctx.set(bus.arready, 0)
        ctx.set(bus.rvalid, 0)
        async for (_, _, arvalid, arready, araddr, arlen, arsize, arburst, arcache, arprot,
                   rvalid, rready) in ctx.tick(self.domain).sample(
                       bus.arvalid, bus.arready, bus.araddr, bus.arlen, bus.arsize,
                       bus.arburst, bus.arcache, bus.arprot, bus.rvalid, bus.rready):
            self.cycle += 1
            # AR
            payload = (arvalid, araddr, arlen, arcache, arprot) if arvalid else (0,)
            self._hold("AR", held_ar, payload, self._fail)
            if arvalid and arready:
                self._check_burst("AR", araddr, arlen, arsize, arburst, arcache, arprot)
                burst = Burst(araddr, arlen + 1, self.cycle, cache=arcache, prot=arprot)
                self.ars.append(burst)
                self.bursts.append(("AR", araddr, arlen + 1, arcache, arprot))
                self.ar_beats += burst.beats
                queue.append([burst, self.cycle + self.read_latency - 1, 0])
                self.reads_in_flight += 1
                if self.reads_in_flight > config.max_outstanding:
                    self._fail(f"{self.reads_in_flight} reads in flight exceed "
                               f"max_outstanding={config.max_outstanding}")
                self.max_reads_in_flight = max(self.max_reads_in_flight, self.reads_in_flight)
                held_ar = None
            else:
                held_ar = payload if arvalid else None
            ar_seen = bool(arvalid) and not arready
            # R
            if rvalid and rready:
                entry = queue[0]
                burst = entry[0]
                entry[2] += 1
                self.r_beats += 1
                if entry[2] == burst.beats:
                    queue.popleft()
                    self.reads_in_flight -= 1
                held_r = False
            elif rvalid:
                held_r = True            # keep driving the same beat
            if not held_r:
                if queue and queue[0][1] <= self.cycle and not self.stalls["r"].stall():
                    burst, _, beat = queue[0]
                    addr = burst.addr + beat * bus_bytes
                    offset = self._offset(addr, bus_bytes)
                    resp = self._resp(addr, bus_bytes)
                    if resp != RESP_OKAY and self.first_read_error is None:
                        self.first_read_error = burst.addr
                    burst.resp.append(resp)
                    ctx.set(bus.rdata, int.from_bytes(self.memory[offset:offset + bus_bytes], "little"))
                    ctx.set(bus.rresp, resp)
                    ctx.set(bus.rlast, beat == burst.beats - 1)
                    ctx.set(bus.rvalid, 1)
                else:
                    ctx.set(bus.rvalid, 0)
            ctx.set(bus.arready, not self.stalls["ar"].stall(ar_seen))

    # --- write channels ------------------------------------------------------
    async def _write_side(self, ctx):
        bus, config = self.bus, self.config
        bus_bytes = config.bus_bytes
        aw_taken: deque = deque()    # AWs handshaken, waiting for their W beats
        w_bursts: deque = deque()    # complete W bursts (lists of (data, strb)), waiting for AW
        w_beats: list = []           # W beats of the burst in progress
        b_queue: deque = deque()     # [burst, earliest cycle]
        held_aw = held_w = None
        held_b = False
        aw_seen = w_seen = False
        aw_presented = 0             # AWs whose AWVALID has been seen
        w_started = 0                # W bursts with at least one beat seen
        ctx.set(bus.awready, 0)
        ctx.set(bus.wready, 0)
        ctx.set(bus.bvalid, 0)
        async for (_, _, awvalid, awready, awaddr, awlen, awsize, awburst, awcache, awprot,
                   wvalid, wready, wdata, wstrb, wlast, bvalid, bready) in ctx.tick(self.domain).sample(
                       bus.awvalid, bus.awready, bus.awaddr, bus.awlen, bus.awsize,
                       bus.awburst, bus.awcache, bus.awprot,
                       bus.wvalid, bus.wready, bus.wdata, bus.wstrb, bus.wlast,
                       bus.bvalid, bus.bready):
            self.cycle += 1
            # AW
            payload = (awvalid, awaddr, awlen, awcache, awprot) if awvalid else (0,)
            self._hold("AW", held_aw, payload, self._fail)
            if awvalid and held_aw is None:
                aw_presented += 1
            if awvalid and awready:
                self._check_burst("AW", awaddr, awlen, awsize, awburst, awcache, awprot)
                burst = Burst(awaddr, awlen + 1, self.cycle, cache=awcache, prot=awprot)
                self.aws.append(burst)
                self.bursts.append(("AW", awaddr, awlen + 1, awcache, awprot))
                aw_taken.append(burst)
                self.writes_in_flight += 1
                if self.writes_in_flight > config.max_outstanding:
                    self._fail(f"{self.writes_in_flight} writes in flight exceed "
                               f"max_outstanding={config.max_outstanding}")
                self.max_writes_in_flight = max(self.max_writes_in_flight, self.writes_in_flight)
                held_aw = None
            else:
                held_aw = payload if awvalid else None
            aw_seen = bool(awvalid) and not awready
            # W
            payload = (wvalid, wdata, wstrb, wlast) if wvalid else (0,)
            self._hold("W", held_w, payload, self._fail)
            if wvalid and held_w is None and not w_beats:
                w_started += 1
                if w_started > aw_presented:
                    self._fail(f"W burst {w_started} started before its AW was presented "
                               f"({aw_presented} AWs so far)")
            if wvalid and wready:
                w_beats.append((wdata, wstrb))
                self.w_beats += 1
                if wlast:
                    w_bursts.append(w_beats)
                    w_beats = []
                held_w = None
            else:
                held_w = payload if wvalid else None
            w_seen = bool(wvalid) and not wready
            # Complete every burst that has both its AW and its W beats.
            while aw_taken and w_bursts:
                burst, beats = aw_taken.popleft(), w_bursts.popleft()
                if len(beats) != burst.beats:
                    self._fail(f"AW 0x{burst.addr:X} has {burst.beats} beats but WLAST came "
                               f"on beat {len(beats)}")
                resp = self._resp(burst.addr, burst.beats * bus_bytes)
                burst.resp.append(resp)
                if resp == RESP_OKAY:
                    for beat, (data, strb) in enumerate(beats):
                        offset = self._offset(burst.addr + beat * bus_bytes, bus_bytes)
                        raw = data.to_bytes(bus_bytes, "little")
                        for lane in range(bus_bytes):
                            if strb >> lane & 1:
                                self.memory[offset + lane] = raw[lane]
                elif self.first_write_error is None:
                    self.first_write_error = burst.addr
                b_queue.append([burst, self.cycle + self.write_latency - 1])
            if w_beats and len(w_beats) > config.max_burst:
                self._fail(f"{len(w_beats)} W beats without WLAST exceed max_burst")
            # B
            if bvalid and bready:
                self.writes_in_flight -= 1
                held_b = False
            elif bvalid:
                held_b = True
            if not held_b:
                if b_queue and b_queue[0][1] <= self.cycle and not self.stalls["b"].stall():
                    burst, _ = b_queue.popleft()
                    ctx.set(bus.bresp, burst.resp[0])
                    ctx.set(bus.bvalid, 1)
                else:
                    ctx.set(bus.bvalid, 0)
            ctx.set(bus.awready, not self.stalls["aw"].stall(aw_seen))
            ctx.set(bus.wready, not self.stalls["w"].stall(w_seen))

    def quiescent(self) -> bool:
        """No burst in flight and no W beat waiting for its AW."""
        return self.reads_in_flight == 0 and self.writes_in_flight == 0
