"""``UartBridge``: link frames in, AXI4-Lite register and AXI4 memory transactions out.

The protocol is ``hdl.spec.link_protocol``. The bridge is three blocks in a row, like a
network stack's depacketizer, worker and packetizer::

    rx bytes ─► LinkRx ──header, payload, end──► LinkExec ──response, payload──► LinkTx ─► tx bytes
                (sync, header, CRC,             (checks; ctrl: AXI4-Lite,          (header, payload,
                 frame timeout)                   mem: AXI4 bursts, buffer)          CRC)

It is the Nexys Video's stand-in for a CPU: the host runtime drives the accelerator
through it.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, flipped

from .axi import AXI4LiteSignature, AXI4Signature
from .link_exec import LinkExec, check_limits
from .link_rx import LinkRx, check_frame_timeout
from .link_tx import LinkTx
from .spec.config import AccelConfig

__all__ = ["UartBridge"]


class UartBridge(wiring.Component):
    """Executes link requests on ``ctrl`` (AXI4-Lite) and ``mem`` (AXI4), one at a time.

    - A request runs only after its CRC checked out; a corrupted request is answered with
      ``Status.CRC``, one that stalls for more than ``frame_timeout`` cycles with ``TRUNCATED``,
      and the bridge then hunts for the next sync byte. No input can hang it.
    - MEM_WRITE/MEM_READ of ``length`` bytes at any byte address become one INCR burst of
      full-width beats with byte strobes on the first and last beat. The range must sit in
      one ``max_payload``-aligned window (checked), so no burst crosses 4 KiB or exceeds
      256 beats. Write data is buffered (``max_payload`` bytes) until the CRC is known;
      read data is buffered before the response goes out, so R is never back-pressured.
    - AW is issued before W, W beats never outnumber the AW's length, every valid is
      raised without waiting for ready and held until its handshake.
    - A REG_WRITE, MEM_WRITE or REPLAY runs at most once per write sequence number: a
      repeat of the last one is answered with its status (a REPLAY's reads run again),
      an older one with ``Status.STALE``, and neither writes to the bus; HELLO reports
      ``last_seq``, the clock and ``max_replay`` (protocol 2.1).
    - REPLAY runs one job's register sequence (``LinkReplay``) in one exchange.
    - ``irq`` is reported by the IRQ command and in the HELLO answer.
    - Throughput is bounded by the serial line: at most one byte per cycle in, one AXI
      W beat per cycle, and one response byte per cycle out.
    - ``rx`` is ready from the hunt for a sync byte until a frame's last CRC byte, and
      again once the answer's last byte is taken by ``tx``; bytes offered in between
      wait. ``busy`` is high from the sync byte until then.

    The timing of each step is stated by ``LinkRx``, ``LinkExec`` and ``LinkTx``.
    """

    def __init__(self, config: AccelConfig, *, max_payload: int = 4096, ctrl_addr_width: int = 8,
                 frame_timeout: int = 1_000_000):
        # The parts' own checks, so that a bad parameter fails here and not at elaboration.
        check_limits(config, max_payload=max_payload, ctrl_addr_width=ctrl_addr_width)
        check_frame_timeout(frame_timeout)
        self.config = config
        self.max_payload = max_payload
        self.ctrl_addr_width = ctrl_addr_width
        self.frame_timeout = frame_timeout
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "ctrl": Out(AXI4LiteSignature(addr_width=ctrl_addr_width)),
            "mem": Out(AXI4Signature(config)),
            "irq": In(1),
            "busy": Out(1),          # a request is being received, executed or answered
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = LinkRx(frame_timeout=self.frame_timeout)
        m.submodules.executor = executor = LinkExec(self.config, max_payload=self.max_payload,
                                                    ctrl_addr_width=self.ctrl_addr_width)
        m.submodules.sender = sender = LinkTx()
        wiring.connect(m, flipped(self.rx), receiver.rx)
        m.d.comb += executor.header.eq(receiver.header)
        wiring.connect(m, receiver.payload, executor.payload)
        wiring.connect(m, receiver.end, executor.end)
        wiring.connect(m, executor.response, sender.response)
        wiring.connect(m, executor.response_payload, sender.payload)
        wiring.connect(m, sender.tx, flipped(self.tx))
        wiring.connect(m, executor.ctrl, flipped(self.ctrl))
        wiring.connect(m, executor.mem, flipped(self.mem))
        m.d.comb += [executor.irq.eq(self.irq), self.busy.eq(receiver.busy)]
        return m
