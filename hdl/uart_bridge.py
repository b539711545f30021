"""``UartBridge``: link frames in, AXI4-Lite register and AXI4 memory transactions out.

The protocol is ``hdl.spec.link_protocol``. The bridge takes request bytes from ``rx``
(a ``UartRx``, or any byte stream), checks the frame's CRC, then executes it as one
AXI transaction and sends the response bytes on ``tx``. It is the Nexys Video's
stand-in for a CPU: the host runtime drives the accelerator through it.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .axi import (BURST_INCR, CACHE_NORMAL_NONCACHEABLE_BUFFERABLE, PROT_DEFAULT, AXI4LiteSignature,
                  AXI4Signature, axsize)
from .spec.config import AccelConfig
from .spec.link_protocol import MAGIC, PROTOCOL_VERSION, REQUEST_SYNC, RESPONSE_SYNC, Command, Status

__all__ = ["UartBridge", "crc16_step"]


def crc16_step(m: Module, crc, byte) -> Signal:
    """A signal holding CRC-16/CCITT-FALSE of ``crc`` after ``byte`` (combinational).

    One signal per bit step keeps the expression a chain; nested Muxes that each use
    the previous value twice would grow exponentially before Yosys could share them.
    """
    value = Signal(16)
    m.d.comb += value.eq(crc ^ Cat(Const(0, 8), byte))
    for step in range(8):
        shifted = Signal(16, name=f"crc_step{step}")
        m.d.comb += shifted.eq(Mux(value[15], (value << 1)[:16] ^ 0x1021, (value << 1)[:16]))
        value = shifted
    return value


class UartBridge(wiring.Component):
    """Executes link requests on ``ctrl`` (AXI4-Lite) and ``mem`` (AXI4), one at a time.

    - A request runs only after its CRC checked out; a corrupted request is answered with
      ``Status.CRC``, one that stalls for ``frame_timeout`` cycles with ``TRUNCATED``,
      and the bridge then hunts for the next sync byte. No input can hang it.
    - MEM_WRITE/MEM_READ of ``length`` bytes at any byte address become one INCR burst of
      full-width beats with byte strobes on the first and last beat. The range must sit in
      one ``max_payload``-aligned window (checked), so no burst crosses 4 KiB or exceeds
      256 beats. Write data is buffered (``max_payload`` bytes) until the CRC is known;
      read data is buffered before the response goes out, so R is never back-pressured.
    - AW is issued before W, W beats never outnumber the AW's length, every valid is
      raised without waiting for ready and held until its handshake.
    - ``irq`` is reported by the IRQ command and in the HELLO answer.
    - Throughput is bounded by the serial line: at most one byte per cycle in, one AXI
      beat per two cycles, and one response byte per two cycles out.
    """

    def __init__(self, config: AccelConfig, *, max_payload: int = 4096, ctrl_addr_width: int = 8,
                 frame_timeout: int = 1_000_000):
        bus_bytes = config.bus_bytes
        if max_payload & (max_payload - 1) or not bus_bytes <= max_payload <= 4096 \
                or max_payload // bus_bytes > 256:
            raise ValueError(f"max_payload={max_payload} must be a power of two in {bus_bytes}..4096 "
                             f"and at most 256 beats of {bus_bytes} bytes")
        if not 3 <= ctrl_addr_width <= 32:
            raise ValueError(f"ctrl_addr_width={ctrl_addr_width} must be in 3..32")
        if frame_timeout < 16:
            raise ValueError(f"frame_timeout={frame_timeout} cycles is too short (>= 16)")
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

    def hello_payload(self) -> list:
        """The HELLO answer bytes (hdl.spec.link_protocol.HELLO_FORMAT); the last is the irq line."""
        return [*MAGIC, *PROTOCOL_VERSION, self.max_payload & 0xFF, self.max_payload >> 8,
                self.config.bus_bytes, self.config.addr_width, self.ctrl_addr_width, None]

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        bb = cfg.bus_bytes
        lane_bits = (bb - 1).bit_length()
        window_bits = (self.max_payload - 1).bit_length()
        depth = self.max_payload // bb

        m.submodules.buffer = buffer = Memory(shape=cfg.bus_bits, depth=depth, init=[])
        wport = buffer.write_port(granularity=8)
        rport = buffer.read_port()
        m.d.comb += rport.en.eq(0)

        cmd = Signal(8)
        seq = Signal(8)
        addr = Signal(64)
        length = Signal(16)
        count = Signal(16)              # header byte / payload byte / beat / response byte index
        crc = Signal(16, init=0xFFFF)
        crc_low = Signal(8)
        status = Signal(8)
        resp_len = Signal(16)
        reg_data = Signal(32)           # REG_WRITE payload, REG_READ result
        timer = Signal(range(self.frame_timeout + 1))
        resp_error = Signal()
        byte_out = Signal(8)

        # Derived from the request: byte position inside the window, beats of the burst.
        end = Signal(64)
        m.d.comb += end.eq(addr + length - 1)
        first_beat = addr[lane_bits:window_bits] if window_bits > lane_bits else Const(0, 1)
        last_beat = end[lane_bits:window_bits] if window_bits > lane_bits else Const(0, 1)
        beats_minus_1 = Signal(8)
        m.d.comb += beats_minus_1.eq(last_beat - first_beat)
        all_lanes = (1 << bb) - 1
        first_strb = Signal(bb)
        last_strb = Signal(bb)
        lanes = Const(all_lanes, bb)
        # bb - 1 - (end % bb) is ~end's lane bits, bb being a power of two.
        m.d.comb += [first_strb.eq((lanes << addr[:lane_bits])[:bb] if lane_bits else lanes),
                     last_strb.eq((lanes >> (~end[:lane_bits])[:lane_bits])[:bb] if lane_bits else lanes)]

        crc_byte = Signal(8)            # the byte the CRC takes in this cycle
        crc_next = crc16_step(m, crc, crc_byte)
        rx_byte = self.rx.payload
        rx_take = self.rx.valid & self.rx.ready

        # Request checks, evaluated once the CRC has matched.
        known_cmd = Signal()
        m.d.comb += known_cmd.eq(Cat(*(cmd == c for c in Command)).any())
        is_reg = (cmd == Command.REG_READ) | (cmd == Command.REG_WRITE)
        is_mem = (cmd == Command.MEM_READ) | (cmd == Command.MEM_WRITE)
        bad_length = Signal()
        bad_address = Signal()
        m.d.comb += [
            bad_length.eq((is_reg & (length != 4)) | (is_mem & ((length == 0) | (length > self.max_payload)))),
            bad_address.eq(
                (is_reg & ((addr[:2] != 0) | (addr[self.ctrl_addr_width:] != 0))) |
                (is_mem & ((addr[window_bits:] != end[window_bits:]) |
                           ((addr[cfg.addr_width:] != 0) if cfg.addr_width < 64 else Const(0))))),
        ]

        hello = Array(Const(b if b is not None else 0, 8) for b in self.hello_payload())

        ctrl, mem = self.ctrl, self.mem
        m.d.comb += [
            ctrl.awaddr.eq(addr), ctrl.awprot.eq(PROT_DEFAULT), ctrl.araddr.eq(addr),
            ctrl.arprot.eq(PROT_DEFAULT), ctrl.wdata.eq(reg_data), ctrl.wstrb.eq(0xF),
            mem.awid.eq(0), mem.awaddr.eq(Cat(Const(0, lane_bits), addr[lane_bits:cfg.addr_width])),
            mem.awlen.eq(beats_minus_1), mem.awsize.eq(axsize(bb)), mem.awburst.eq(BURST_INCR),
            mem.awlock.eq(0), mem.awcache.eq(CACHE_NORMAL_NONCACHEABLE_BUFFERABLE),
            mem.awprot.eq(PROT_DEFAULT), mem.awqos.eq(0),
            mem.arid.eq(0), mem.araddr.eq(mem.awaddr), mem.arlen.eq(beats_minus_1),
            mem.arsize.eq(axsize(bb)), mem.arburst.eq(BURST_INCR), mem.arlock.eq(0),
            mem.arcache.eq(CACHE_NORMAL_NONCACHEABLE_BUFFERABLE), mem.arprot.eq(PROT_DEFAULT),
            mem.arqos.eq(0),
            mem.wdata.eq(rport.data),
        ]
        aw_done = Signal()
        w_done = Signal()

        def receive_byte():
            """Frame timeout: a request that stops arriving is answered TRUNCATED."""
            with m.If(rx_take):
                m.d.sync += timer.eq(0)
            with m.Elif(timer == self.frame_timeout):
                m.d.sync += [status.eq(Status.TRUNCATED), resp_len.eq(0)]
                m.next = "RESPOND"
            with m.Else():
                m.d.sync += timer.eq(timer + 1)

        def respond(code, nbytes=0):
            m.d.sync += [status.eq(code), resp_len.eq(nbytes)]
            m.next = "RESPOND"

        with m.FSM() as fsm:
            with m.State("HUNT"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_take & (rx_byte == REQUEST_SYNC)):
                    m.d.sync += [crc.eq(0xFFFF), count.eq(0), timer.eq(0), cmd.eq(0), seq.eq(0)]
                    m.next = "HEADER"

            with m.State("HEADER"):
                m.d.comb += [self.rx.ready.eq(1), crc_byte.eq(rx_byte)]
                receive_byte()
                with m.If(rx_take):
                    m.d.sync += [crc.eq(crc_next), count.eq(count + 1)]
                    with m.Switch(count):
                        with m.Case(0):
                            m.d.sync += cmd.eq(rx_byte)
                        with m.Case(1):
                            m.d.sync += seq.eq(rx_byte)
                        for i in range(8):
                            with m.Case(2 + i):
                                m.d.sync += addr.word_select(i, 8).eq(rx_byte)
                        with m.Case(10):
                            m.d.sync += length[:8].eq(rx_byte)
                        with m.Case(11):
                            m.d.sync += [length[8:].eq(rx_byte), count.eq(0)]
                            has_payload = (cmd == Command.REG_WRITE) | (cmd == Command.MEM_WRITE)
                            with m.If(has_payload & (Cat(length[:8], rx_byte) != 0)):
                                m.next = "PAYLOAD"
                            with m.Else():
                                m.next = "CRC_LOW"

            with m.State("PAYLOAD"):
                m.d.comb += [self.rx.ready.eq(1), crc_byte.eq(rx_byte)]
                receive_byte()
                position = Signal(window_bits)
                m.d.comb += position.eq(addr[:window_bits] + count[:window_bits])
                m.d.comb += [wport.addr.eq(position[lane_bits:] if window_bits > lane_bits else 0),
                             wport.data.eq(rx_byte.replicate(bb))]
                with m.If(rx_take):
                    m.d.sync += [crc.eq(crc_next), count.eq(count + 1)]
                    with m.If(cmd == Command.MEM_WRITE):
                        m.d.comb += wport.en.eq((1 << position[:lane_bits]) if lane_bits else 1)
                    with m.Else():
                        m.d.sync += reg_data.eq(Cat(reg_data[8:], rx_byte))
                    with m.If(count == length - 1):
                        m.next = "CRC_LOW"

            with m.State("CRC_LOW"):
                m.d.comb += self.rx.ready.eq(1)
                receive_byte()
                with m.If(rx_take):
                    m.d.sync += crc_low.eq(rx_byte)
                    m.next = "CRC_HIGH"

            with m.State("CRC_HIGH"):
                m.d.comb += self.rx.ready.eq(1)
                receive_byte()
                with m.If(rx_take):
                    with m.If(Cat(crc_low, rx_byte) != crc):
                        respond(Status.CRC)
                    with m.Else():
                        m.next = "CHECK"

            with m.State("CHECK"):
                m.d.sync += [count.eq(0), aw_done.eq(0), w_done.eq(0), resp_error.eq(0)]
                with m.If(~known_cmd):
                    respond(Status.BAD_COMMAND)
                with m.Elif(bad_length):
                    respond(Status.BAD_LENGTH)
                with m.Elif(bad_address):
                    respond(Status.BAD_ADDRESS)
                with m.Elif(cmd == Command.HELLO):
                    respond(Status.OK, len(self.hello_payload()))
                with m.Elif(cmd == Command.IRQ):
                    respond(Status.OK, 1)
                with m.Elif(cmd == Command.REG_READ):
                    m.next = "LITE_AR"
                with m.Elif(cmd == Command.REG_WRITE):
                    m.next = "LITE_AW_W"
                with m.Elif(cmd == Command.MEM_READ):
                    m.next = "MEM_AR"
                with m.Else():
                    m.next = "MEM_AW"

            with m.State("LITE_AR"):
                m.d.comb += ctrl.arvalid.eq(1)
                with m.If(ctrl.arready):
                    m.next = "LITE_R"
            with m.State("LITE_R"):
                m.d.comb += ctrl.rready.eq(1)
                with m.If(ctrl.rvalid):
                    m.d.sync += reg_data.eq(ctrl.rdata)
                    respond(Mux(ctrl.rresp[1], Mux(ctrl.rresp[0], Status.AXI_DECERR, Status.AXI_SLVERR),
                                Status.OK), Mux(ctrl.rresp[1], 0, 4))

            with m.State("LITE_AW_W"):
                m.d.comb += [ctrl.awvalid.eq(~aw_done), ctrl.wvalid.eq(~w_done)]
                aw_now = aw_done | ctrl.awready
                w_now = w_done | ctrl.wready
                m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]
                with m.If(aw_now & w_now):
                    m.next = "LITE_B"
            with m.State("LITE_B"):
                m.d.comb += ctrl.bready.eq(1)
                with m.If(ctrl.bvalid):
                    respond(Mux(ctrl.bresp[1], Mux(ctrl.bresp[0], Status.AXI_DECERR, Status.AXI_SLVERR),
                                Status.OK))

            with m.State("MEM_AW"):
                m.d.comb += mem.awvalid.eq(1)
                with m.If(mem.awready):
                    m.next = "MEM_W_FETCH"
            with m.State("MEM_W_FETCH"):
                # The buffer's read port has one cycle of latency; its data then holds
                # (en low) for as long as the beat waits for WREADY.
                m.d.comb += [rport.en.eq(1), rport.addr.eq(first_beat + count)]
                m.next = "MEM_W"
            with m.State("MEM_W"):
                last = count == beats_minus_1
                m.d.comb += [mem.wvalid.eq(1), mem.wlast.eq(last),
                             mem.wstrb.eq(Mux(count == 0, first_strb, all_lanes) & Mux(last, last_strb, all_lanes))]
                with m.If(mem.wready):
                    m.d.sync += count.eq(count + 1)
                    with m.If(last):
                        m.next = "MEM_B"
                    with m.Else():
                        m.next = "MEM_W_FETCH"
            with m.State("MEM_B"):
                m.d.comb += mem.bready.eq(1)
                with m.If(mem.bvalid):
                    respond(Mux(mem.bresp[1], Mux(mem.bresp[0], Status.AXI_DECERR, Status.AXI_SLVERR),
                                Status.OK))

            with m.State("MEM_AR"):
                m.d.comb += mem.arvalid.eq(1)
                with m.If(mem.arready):
                    m.next = "MEM_R"
            with m.State("MEM_R"):
                m.d.comb += [mem.rready.eq(1), wport.addr.eq(first_beat + count), wport.data.eq(mem.rdata)]
                with m.If(mem.rvalid):
                    m.d.comb += wport.en.eq(all_lanes)
                    m.d.sync += count.eq(count + 1)
                    # The worst response of the burst wins (DECERR > SLVERR > OKAY).
                    with m.If(mem.rresp[1] & (~resp_error | mem.rresp[0])):
                        m.d.sync += [resp_error.eq(1),
                                     status.eq(Mux(mem.rresp[0], Status.AXI_DECERR, Status.AXI_SLVERR))]
                    with m.If(mem.rlast):
                        with m.If(resp_error | mem.rresp[1]):
                            m.d.sync += resp_len.eq(0)
                            m.next = "RESPOND"
                        with m.Else():
                            respond(Status.OK, length)

            # Response: sync, cmd, seq, status, length (2), payload, CRC (2).
            with m.State("RESPOND"):
                m.d.sync += [count.eq(0), crc.eq(0xFFFF), byte_out.eq(RESPONSE_SYNC)]
                m.next = "TX_SYNC"
            with m.State("TX_SYNC"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte_out)]
                with m.If(self.tx.ready):
                    m.d.sync += byte_out.eq(cmd)
                    m.next = "TX_HEADER"
            with m.State("TX_HEADER"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte_out), crc_byte.eq(byte_out)]
                with m.If(self.tx.ready):
                    m.d.sync += [crc.eq(crc_next), count.eq(count + 1)]
                    header = Array([seq, status, resp_len[:8], resp_len[8:]])
                    with m.If(count == 4):
                        m.d.sync += count.eq(0)
                        with m.If(resp_len == 0):
                            m.next = "TX_CRC_LOW_PREP"
                        with m.Else():
                            m.next = "TX_PAYLOAD_FETCH"
                    with m.Else():
                        m.d.sync += byte_out.eq(header[count[:2]])
            with m.State("TX_PAYLOAD_FETCH"):
                position = Signal(window_bits)
                m.d.comb += [position.eq(addr[:window_bits] + count[:window_bits]),
                             rport.en.eq(1),
                             rport.addr.eq(position[lane_bits:] if window_bits > lane_bits else 0)]
                lane = Signal(range(bb))
                m.d.sync += lane.eq(position[:lane_bits] if lane_bits else 0)
                m.next = "TX_PAYLOAD_SELECT"
            with m.State("TX_PAYLOAD_SELECT"):
                with m.Switch(cmd):
                    with m.Case(Command.HELLO):
                        m.d.sync += byte_out.eq(Mux(count == len(self.hello_payload()) - 1, self.irq,
                                                    hello[count[:4]]))
                    with m.Case(Command.IRQ):
                        m.d.sync += byte_out.eq(self.irq)
                    with m.Case(Command.REG_READ):
                        m.d.sync += byte_out.eq(reg_data.word_select(count[:2], 8))
                    with m.Default():
                        m.d.sync += byte_out.eq(rport.data.word_select(lane, 8))
                m.next = "TX_PAYLOAD"
            with m.State("TX_PAYLOAD"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte_out), crc_byte.eq(byte_out)]
                with m.If(self.tx.ready):
                    m.d.sync += [crc.eq(crc_next), count.eq(count + 1)]
                    with m.If(count == resp_len - 1):
                        m.next = "TX_CRC_LOW_PREP"
                    with m.Else():
                        m.next = "TX_PAYLOAD_FETCH"
            with m.State("TX_CRC_LOW_PREP"):
                m.d.sync += byte_out.eq(crc[:8])
                m.next = "TX_CRC_LOW"
            with m.State("TX_CRC_LOW"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte_out)]
                with m.If(self.tx.ready):
                    m.d.sync += byte_out.eq(crc[8:])
                    m.next = "TX_CRC_HIGH"
            with m.State("TX_CRC_HIGH"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte_out)]
                with m.If(self.tx.ready):
                    m.next = "HUNT"

        m.d.comb += self.busy.eq(~fsm.ongoing("HUNT"))
        return m
