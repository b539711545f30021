"""A cocotb AXI4 slave memory with a fixed read latency and many reads in flight.

cocotbext-axi's ``AxiRam`` answers a read burst as soon as it sees it and works
on one burst at a time, so it cannot stand in for DDR behind an interconnect.
``LatencyRam`` models that: every read burst's first beat is offered exactly
``read_latency`` cycles after its AR handshake (later only if earlier bursts
still occupy the R channel), up to ``max_reads`` bursts are accepted and queued,
and then beats follow one per cycle. Writes are accepted one burst at a time, W
only after its AW, and answered on B ``write_latency`` cycles after WLAST.

Everything runs in one coroutine per clock edge, reading the handshakes the
way cocotbext-axi does (at the rising edge, before the design's new values),
so a long weight stream costs one Python step per cycle. Addresses inside a
``fail_reads``/``fail_writes`` range are answered with SLVERR.
"""

from __future__ import annotations

from collections import deque

import cocotb
from cocotb.triggers import RisingEdge
from cocotbext.axi.memory import Memory

__all__ = ["LatencyRam"]

_SLVERR = 0b10


class LatencyRam(Memory):
    """AXI4 slave on the ``<prefix>_*`` ports of ``dut``; see the module docstring."""

    def __init__(self, dut, prefix: str, clock, *, bus_bytes: int, read_latency: int = 32,
                 max_reads: int = 32, write_latency: int = 2, size: int = 2**64, mem=None,
                 writes: bool = True):
        if read_latency < 1:
            raise ValueError(f"read_latency={read_latency} must be at least 1 cycle")
        super().__init__(size=size, mem=mem)       # ``mem``: another port's memory, shared
        self.writes = writes                       # False: a read-only port (no AW, W, B)
        self.clock = clock
        self.bus_bytes = bus_bytes
        self.read_latency = read_latency
        self.max_reads = max_reads
        self.write_latency = write_latency
        self.fail_reads: tuple[int, int] | None = None
        self.fail_writes: tuple[int, int] | None = None
        self.cycle = 0
        get = lambda name: getattr(dut, f"{prefix}_{name}")  # noqa: E731
        self.ar = {n: get(n) for n in ("arvalid", "arready", "araddr", "arlen", "arid")}
        self.r = {n: get(n) for n in ("rvalid", "rready", "rdata", "rresp", "rlast", "rid")}
        self.aw = {n: get(n) for n in ("awvalid", "awready", "awaddr", "awlen", "awid")} if writes else None
        self.w = {n: get(n) for n in ("wvalid", "wready", "wdata", "wstrb", "wlast")} if writes else None
        self.b = {n: get(n) for n in ("bvalid", "bready", "bresp", "bid")} if writes else None
        self.ar["arready"].value = self.r["rvalid"].value = 0
        if writes:
            self.aw["awready"].value = self.w["wready"].value = self.b["bvalid"].value = 0
        self._task = cocotb.start_soon(self._run())

    def _faulty(self, window, addr: int, length: int) -> bool:
        return window is not None and addr < window[1] and addr + length > window[0]

    async def _run(self):
        bb = self.bus_bytes
        reads = deque()        # [due_cycle, addr, beats_left, id, resp]
        writes = deque()       # [addr, id, resp]
        responses = deque()    # [due_cycle, id, resp]
        r_valid = b_valid = False
        ar_ready = aw_ready = w_ready = False
        edge = RisingEdge(self.clock)
        ar, r, aw, w, b = self.ar, self.r, self.aw, self.w, self.b
        while True:
            await edge
            self.cycle += 1
            now = self.cycle
            # Handshakes of the cycle that just ended.
            if ar_ready and ar["arvalid"].value:
                addr, beats = int(ar["araddr"].value), int(ar["arlen"].value) + 1
                resp = _SLVERR if self._faulty(self.fail_reads, addr, beats * bb) else 0
                reads.append([now - 1 + self.read_latency, addr, beats, int(ar["arid"].value), resp])
            if r_valid and r["rready"].value:
                head = reads[0]
                head[1] += bb
                head[2] -= 1
                if head[2] == 0:
                    reads.popleft()
            if self.writes and aw_ready and aw["awvalid"].value:
                addr = int(aw["awaddr"].value)
                beats = int(aw["awlen"].value) + 1
                resp = _SLVERR if self._faulty(self.fail_writes, addr, beats * bb) else 0
                writes.append([addr, int(aw["awid"].value), resp])
            if self.writes and w_ready and w["wvalid"].value:
                head = writes[0]
                if head[2] == 0:
                    data = int(w["wdata"].value).to_bytes(bb, "little")
                    strb = int(w["wstrb"].value)
                    if strb == (1 << bb) - 1:
                        self.write(head[0], data)
                    else:
                        for lane in range(bb):
                            if strb >> lane & 1:
                                self.write(head[0] + lane, data[lane:lane + 1])
                head[0] += bb
                if w["wlast"].value:
                    writes.popleft()
                    responses.append([now + self.write_latency, head[1], head[2]])
            if self.writes and b_valid and b["bready"].value:
                responses.popleft()

            # Outputs for the next cycle.
            r_valid = bool(reads) and reads[0][0] <= now
            if r_valid:
                head = reads[0]
                r["rdata"].value = int.from_bytes(self.read(head[1], bb), "little")
                r["rresp"].value = head[4]
                r["rlast"].value = head[2] == 1
                r["rid"].value = head[3]
            r["rvalid"].value = r_valid
            ar_ready = len(reads) < self.max_reads
            ar["arready"].value = ar_ready
            if not self.writes:
                continue
            aw_ready = len(writes) < 2
            aw["awready"].value = aw_ready
            w_ready = bool(writes)
            w["wready"].value = w_ready
            b_valid = bool(responses) and responses[0][0] <= now
            if b_valid:
                b["bresp"].value = responses[0][2]
                b["bid"].value = responses[0][1]
            b["bvalid"].value = b_valid
