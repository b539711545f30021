"""A cocotb monitor of an AXI4 master's protocol, for the system testbench.

``AxiMonitor`` samples the ``<prefix>_*`` ports of ``dut`` at every rising clock edge
(the way cocotbext-axi samples handshakes) and records, without stopping the
simulation, every rule the master breaks:

- VALID held, with a stable payload (AxCACHE and AxPROT too), until READY on AR, AW and W;
- INCR bursts of full-width beats, aligned, at most ``max_burst`` beats, inside one
  4 KiB page (``hdl.spec.dma.BOUNDARY_BYTES``);
- at most ``max_outstanding`` read bursts in flight;
- no W beat before its burst's AW is presented, WLAST on each burst's last beat.

It also logs every AR and AW taken, as ``(address, beats)`` in handshake order, so a
test can compare them with the DMA plan (``hdl.spec.dma.read_bursts``,
``write_bursts``), and every burst with its attributes as ``(channel, address, beats,
AxCACHE, AxPROT)`` in ``bursts`` (channel "AR" or "AW"), and counts the handshakes, so a test can prove "no DMA traffic at
all" (a refused job) and "nothing left half done" (``quiet``).
"""

from __future__ import annotations

from hdl.spec.config import AccelConfig
from hdl.spec.dma import BOUNDARY_BYTES

__all__ = ["AxiMonitor", "master_clock"]

# Payload fields of each channel whose VALID must wait for READY.
_HELD_CHANNELS = (("ar", ("araddr", "arlen", "arsize", "arburst", "arcache", "arprot")),
                  ("aw", ("awaddr", "awlen", "awsize", "awburst", "awcache", "awprot")),
                  ("w", ("wdata", "wstrb", "wlast")))


def master_clock(dut, config: AccelConfig):
    """``(clock, active-low reset)`` handles of the top's AXI masters: ``m_axi_aclk`` and
    ``m_axi_aresetn`` in a build with ``axi_clock_mhz``, else ``aclk`` and ``aresetn``."""
    if config.split_clocks:
        return dut.m_axi_aclk, dut.m_axi_aresetn
    return dut.aclk, dut.aresetn


class AxiMonitor:
    """Protocol checks and handshake counts on one AXI4 master port; see the module docstring.

    ``errors`` lists what was broken (empty when the master behaved); ``ars`` and
    ``aws`` hold every burst taken; ``ar_bursts``, ``aw_bursts``, ``r_lasts``,
    ``w_beats`` and ``b_resps`` count handshakes since the monitor started.
    """

    def __init__(self, dut, config: AccelConfig, prefix: str = "m_axi_dma", writes: bool = True):
        import cocotb
        self.dut = dut
        # The masters' clock and reset: m_axi_aclk/m_axi_aresetn where the build has them.
        self.clock, self.reset_n = master_clock(dut, config)
        self.config = config
        self.prefix = prefix
        self.writes = writes          # False for a read-only master (m_axi_w<p>)
        self.errors: list[str] = []
        self.ars: list[tuple[int, int]] = []
        self.aws: list[tuple[int, int]] = []
        self.bursts: list[tuple[str, int, int, int, int]] = []
        self.ar_bursts = self.aw_bursts = self.r_lasts = self.w_beats = self.b_resps = 0
        self.w_beats_announced = 0
        self.w_burst_ends: list[int] = []   # cumulative beat count at each burst end
        cocotb.start_soon(self._run())

    @property
    def quiet(self) -> bool:
        """Every read burst has its last beat and every write burst its response."""
        return self.ar_bursts == self.r_lasts and self.aw_bursts == self.b_resps

    def _check_burst(self, kind: str, addr: int, length: int, size: int, burst: int):
        cfg = self.config
        if size != cfg.bus_bytes.bit_length() - 1 or burst != 1:
            self.errors.append(f"{kind}: size {size} burst {burst} (want full-width INCR)")
        if length > cfg.max_burst:
            self.errors.append(f"{kind}: {length} beats > max_burst {cfg.max_burst}")
        if addr % cfg.bus_bytes:
            self.errors.append(f"{kind}: unaligned address {addr:#x}")
        last = addr + length * cfg.bus_bytes - 1
        if addr // BOUNDARY_BYTES != last // BOUNDARY_BYTES:
            self.errors.append(f"{kind}: burst {addr:#x}+{length} crosses 4 KiB")

    async def _run(self):
        from cocotb.triggers import RisingEdge
        d = self.dut
        names = ["arvalid", "arready", "araddr", "arlen", "arsize", "arburst", "arcache", "arprot",
                 "rvalid", "rready", "rlast"]
        if self.writes:
            names += ["awvalid", "awready", "awaddr", "awlen", "awsize", "awburst", "awcache", "awprot",
                      "wvalid", "wready", "wdata", "wstrb", "wlast", "bvalid", "bready"]
        sig = {n: getattr(d, f"{self.prefix}_{n}") for n in names}
        channels = [(ch, fields) for ch, fields in _HELD_CHANNELS if self.writes or ch == "ar"]
        held = {"ar": None, "aw": None, "w": None}
        edge = RisingEdge(self.clock)
        await edge
        while not int(self.reset_n.value):  # before the first reset ends (X on Icarus)
            await edge
        while True:
            await edge
            # A later reset may drop VALID mid-handshake; otherwise a master in reset
            # drives no VALID, so reset is read only while something is held (every
            # signal read costs, once per cycle).
            if any(value is not None for value in held.values()) and not int(self.reset_n.value):
                held = {"ar": None, "aw": None, "w": None}
                continue
            for ch, fields in channels:
                valid = int(sig[f"{ch}valid"].value)
                if held[ch] is not None:
                    if not valid:
                        self.errors.append(f"{ch.upper()}VALID dropped before READY")
                    elif tuple(int(sig[f].value) for f in fields) != held[ch]:
                        self.errors.append(f"{ch.upper()} payload changed while waiting for READY")
                was_held = held[ch] is not None
                held[ch] = None
                if valid:
                    payload = tuple(int(sig[f].value) for f in fields)
                    if ch == "aw" and not was_held:
                        # The writer may send W beats once their AW is presented.
                        self.w_beats_announced += payload[1] + 1
                        self.w_burst_ends.append(self.w_beats_announced)
                    if int(sig[f"{ch}ready"].value):
                        self._handshake(ch, payload)
                    else:
                        held[ch] = payload
            if int(sig["rvalid"].value) and int(sig["rready"].value) and int(sig["rlast"].value):
                self.r_lasts += 1
            if self.writes and int(sig["bvalid"].value) and int(sig["bready"].value):
                self.b_resps += 1
            if self.ar_bursts - self.r_lasts > self.config.max_outstanding:
                self.errors.append(f"{self.ar_bursts - self.r_lasts} read bursts in flight "
                                   f"> max_outstanding {self.config.max_outstanding}")

    def _handshake(self, ch: str, payload: tuple):
        if ch == "ar":
            self.ar_bursts += 1
            self.ars.append((payload[0], payload[1] + 1))
            self.bursts.append(("AR", payload[0], payload[1] + 1, payload[4], payload[5]))
            self._check_burst("AR", payload[0], payload[1] + 1, payload[2], payload[3])
        elif ch == "aw":
            self.aw_bursts += 1
            self.aws.append((payload[0], payload[1] + 1))
            self.bursts.append(("AW", payload[0], payload[1] + 1, payload[4], payload[5]))
            self._check_burst("AW", payload[0], payload[1] + 1, payload[2], payload[3])
        else:
            self.w_beats += 1
            if self.w_beats > self.w_beats_announced:
                self.errors.append("W beat before its AW")
            elif bool(payload[2]) != (self.w_beats in self.w_burst_ends):
                self.errors.append(f"WLAST={payload[2]} wrong on W beat {self.w_beats}")
