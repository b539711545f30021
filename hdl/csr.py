"""``Csr``: the AXI4-Lite slave ``s_axi_ctrl`` and the register file of ``regmap.py``."""

from amaranth.hdl import C, Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import RESP_OKAY, AXI4LiteSignature
from .spec.config import AccelConfig
from .spec.regmap import REGISTERS, Register, by_name, const_value

__all__ = ["Csr", "CSR_ADDR_WIDTH"]

CSR_ADDR_WIDTH = 8          # 0x00..0xFF: 64 words


def _port_name(reg: Register) -> str:
    return reg.name.lower()


class Csr(wiring.Component):
    """AXI4-Lite slave with the registers of ``regmap.REGISTERS``, derived, not restated.

    Ports: ``bus`` (the slave), one ``Out`` per ``rw`` register and one ``In``
    per ``status`` register (lowercase register names, ``width`` bits), plus
    ``start``, ``start_busy``, ``soft_reset`` (one-cycle pulses), ``busy``,
    ``done`` (a pulse per ended job) and ``irq = GIE & |(IER & ISR)``.

    Bus timing: AW and W are taken independently, in any order, each into its
    own register (AWREADY/WREADY low while that register is full). The write
    takes effect at the clock edge where both are held and no B is pending, and
    BVALID rises with it (one cycle after the later of the two handshakes,
    when the B channel is free). A read is taken when no R is pending; RDATA
    and RVALID are registered at the AR handshake edge (one cycle latency).
    BVALID/RVALID and their payload hold until BREADY/RREADY. Responses are
    always OKAY. Address bits 1:0 are ignored; unmapped words read 0 and
    ignore writes. WSTRB selects the byte lanes of every write.

    Register kinds (see ``regmap``): ``ctrl`` per its field docs (ap_start
    pulses ``start`` one cycle after the write, or ``start_busy`` if a job is
    running; ap_done and ap_ready set on ``done`` and clear
    on a read of CTRL, a ``done`` in the same cycle wins; ap_idle = ~busy;
    soft_reset pulses ``soft_reset``; interrupt = irq); ``rw`` storage, reset
    0; ``isr`` bits set when their event fires and the same-named IER bit is
    set, and toggle when written 1 (the event wins); ``status`` the input;
    ``const`` ``const_value(reg, config)``.

    ``busy`` must rise the cycle after ``start`` (the controller's contract).
    """

    def __init__(self, config: AccelConfig):
        self.config = config
        members = {
            "bus": In(AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH, data_width=32)),
            "start": Out(1),
            "start_busy": Out(1),
            "soft_reset": Out(1),
            "busy": In(1),
            "done": In(1),
            "irq": Out(1),
        }
        for reg in REGISTERS:
            if reg.offset >= 1 << CSR_ADDR_WIDTH:
                raise ValueError(f"{reg.name} at offset 0x{reg.offset:X} is outside the "
                                 f"{CSR_ADDR_WIDTH}-bit CSR address space (0x00..0xFF)")
            if reg.kind not in ("rw", "status"):
                continue
            name = _port_name(reg)
            if name in members:
                raise ValueError(f"register {reg.name} would clash with port {name!r}")
            members[name] = Out(reg.width) if reg.kind == "rw" else In(reg.width)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus

        # --- write channel: AW and W each held until the pair is complete.
        aw_full = Signal()
        aw_addr = Signal(CSR_ADDR_WIDTH)
        w_full = Signal()
        w_data = Signal(32)
        w_strb = Signal(4)
        m.d.comb += [
            bus.awready.eq(~aw_full),
            bus.wready.eq(~w_full),
            bus.bresp.eq(RESP_OKAY),
        ]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(bus.awaddr)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]

        write = Signal()
        m.d.comb += write.eq(aw_full & w_full & ~bus.bvalid)
        with m.If(write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bus.bvalid.eq(1)]
        with m.Elif(bus.bready):
            m.d.sync += bus.bvalid.eq(0)

        # --- read channel: one read at a time, answered on the next cycle.
        read = Signal()
        m.d.comb += [
            bus.arready.eq(~bus.rvalid),
            read.eq(bus.arvalid & bus.arready),
            bus.rresp.eq(RESP_OKAY),
        ]
        with m.If(read):
            m.d.sync += bus.rvalid.eq(1)
        with m.Elif(bus.rready):
            m.d.sync += bus.rvalid.eq(0)

        def writes(reg: Register):
            return write & (aw_addr[2:] == reg.offset >> 2)

        def reads(reg: Register):
            return read & (bus.araddr[2:] == reg.offset >> 2)

        # --- register state and read values, from the register map.
        value_of: dict[int, object] = {}
        ier = self._rw_port("IER")
        gie = self._rw_port("GIE")
        isr_state = {}
        for reg in REGISTERS:
            if reg.kind == "rw":
                port = getattr(self, _port_name(reg))
                for lane in range((reg.width + 7) // 8):
                    top = min(reg.width, lane * 8 + 8)
                    with m.If(writes(reg) & w_strb[lane]):
                        m.d.sync += port[lane * 8:top].eq(w_data[lane * 8:top])
                value_of[reg.offset] = port
            elif reg.kind == "status":
                value_of[reg.offset] = getattr(self, _port_name(reg))
            elif reg.kind == "const":
                value_of[reg.offset] = Const(const_value(reg, self.config), 32)
            elif reg.kind == "isr":
                isr = Signal(reg.width, name=_port_name(reg))
                isr_state[reg.name] = isr
                value_of[reg.offset] = isr
            elif reg.kind != "ctrl":
                raise ValueError(f"{reg.name}: unknown register kind {reg.kind!r}")

        # Interrupt events by ISR field name; every ISR field needs one.
        events = {"done": self.done, "ready": self.done}
        ier_fields = {f.name: f for f in by_name("IER").fields}
        pending = []            # ISR bits that are set and enabled: they raise irq
        for reg in REGISTERS:
            if reg.kind != "isr":
                continue
            isr = isr_state[reg.name]
            for fld in reg.fields:
                if fld.name not in events or fld.name not in ier_fields:
                    raise ValueError(f"{reg.name}.{fld.name} has no event source or IER bit")
                bit = fld.lsb
                enable = ier[ier_fields[fld.name].lsb]
                pending.append(isr[bit] & enable)
                with m.If(events[fld.name] & enable):
                    m.d.sync += isr[bit].eq(1)
                with m.Elif(writes(reg) & w_strb[bit // 8] & w_data[bit]):
                    m.d.sync += isr[bit].eq(~isr[bit])

        gie_enable = gie[{f.name: f for f in by_name("GIE").fields}["enable"].lsb]
        m.d.comb += self.irq.eq(gie_enable & Cat(*pending).any())

        # CTRL: the ap_ctrl_hs control word.
        for reg in REGISTERS:
            if reg.kind == "ctrl":
                value_of[reg.offset] = self._control_word(m, reg, writes(reg), reads(reg),
                                                          w_data, w_strb)

        with m.If(read):
            m.d.sync += bus.rdata.eq(0)
            with m.Switch(bus.araddr[2:]):
                for offset, value in value_of.items():
                    with m.Case(offset >> 2):
                        m.d.sync += bus.rdata.eq(value)
        return m

    def _rw_port(self, name: str):
        reg = by_name(name)
        if reg.kind != "rw":
            raise ValueError(f"{name} must be an rw register, not {reg.kind}")
        return getattr(self, _port_name(reg))

    def _control_word(self, m, reg, written, read, w_data, w_strb):
        """Logic of the ``ctrl`` register; returns its 32-bit read value."""
        fields = {f.name: f for f in reg.fields}

        def written_one(name):
            bit = fields[name].lsb
            return written & w_strb[bit // 8] & w_data[bit]

        ap_done = Signal()
        ap_ready = Signal()
        # Writes are at least two cycles apart (B must go first), so a busy
        # raised the cycle after ``start`` is seen by the next ap_start write.
        m.d.sync += [
            self.start.eq(written_one("ap_start") & ~self.busy),
            self.start_busy.eq(written_one("ap_start") & self.busy),
            self.soft_reset.eq(written_one("soft_reset")),
        ]
        with m.If(self.done):
            m.d.sync += [ap_done.eq(1), ap_ready.eq(1)]
        with m.Elif(read):
            m.d.sync += [ap_done.eq(0), ap_ready.eq(0)]

        sources = {
            "ap_start": self.start,
            "ap_done": ap_done,
            "ap_idle": ~self.busy,
            "ap_ready": ap_ready,
            "auto_restart": C(0, 1),
            "soft_reset": self.soft_reset,
            "interrupt": self.irq,
        }
        value = Signal(32, name="ctrl_value")
        for name, fld in fields.items():
            if name not in sources:
                raise ValueError(f"{reg.name}.{name} has no implementation in Csr")
            m.d.comb += value[fld.lsb:fld.lsb + fld.width].eq(sources[name])
        return value
