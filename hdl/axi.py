"""AXI4 and AXI4-Lite signatures, protocol constants and flat top-level ports.

Every signature is written from the master's point of view with the AXI signal
names in lower case (``araddr``, ``rvalid``, ...): a master has
``bus: Out(AXI4ReadSignature(config))``, a slave ``bus: In(AXI4LiteSignature())``.

Vivado infers an AXI interface from top-level ports called ``<prefix>_<signal>``
(``m_axi_dma_araddr``, ``s_axi_ctrl_wdata``) next to ``aclk``/``aresetn``.
``flat_members`` makes those ports for a top-level signature and ``connect_flat``
wires them to a block's nested interface.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .spec.config import AccelConfig
from .spec.dma import BOUNDARY_BYTES

__all__ = [
    "RESP_OKAY", "RESP_EXOKAY", "RESP_SLVERR", "RESP_DECERR", "BURST_INCR",
    "CACHE_NORMAL_NONCACHEABLE_BUFFERABLE", "PROT_DEFAULT", "CACHE_COHERENT", "PROT_COHERENT",
    "BOUNDARY_BYTES", "axsize", "burst_attributes", "cache_prot", "AXI4ReadSignature", "AXI4WriteSignature", "AXI4Signature",
    "AXI4LiteSignature", "flat_members", "connect_flat",
]

# xRESP codes. Bit 1 set means the transfer failed.
RESP_OKAY = 0b00
RESP_EXOKAY = 0b01
RESP_SLVERR = 0b10
RESP_DECERR = 0b11

BURST_INCR = 0b01
# Normal non-cacheable bufferable: what Xilinx recommends for the Zynq HP ports.
CACHE_NORMAL_NONCACHEABLE_BUFFERABLE = 0b0011
# Unprivileged, secure, data access.
PROT_DEFAULT = 0b000
# I/O coherent bursts (``AccelConfig.coherent_io``, m_axi_dma on the KV260's S_AXI_HPC0_FPD).
# Xilinx AR 69446 and UG1085 ("APU Coherent Interfaces"): the CCI snoops a transaction
# from an HPC port only when AxCACHE[3:2] != 0; the tested value is 0b1111 on both AR and
# AW (write-back, read- and write-allocate). AxPROT[1] (non-secure) must match the
# security of the memory it snoops: Linux runs non-secure, so unprivileged, non-secure,
# data access.
CACHE_COHERENT = 0b1111
PROT_COHERENT = 0b010


def axsize(bus_bytes: int) -> int:
    """AxSIZE for full-width beats: log2 of the bytes per beat."""
    if bus_bytes < 1 or bus_bytes & (bus_bytes - 1) or bus_bytes > 128:
        raise ValueError(f"bus_bytes={bus_bytes} must be a power of two in 1..128")
    return bus_bytes.bit_length() - 1


def burst_attributes(bus, channel: str, bus_bytes: int) -> list:
    """Assignments of ``channel`` ("ar" or "aw")'s fixed fields for full-width INCR
    bursts with ID 0: size, burst type, no lock, no QoS. AxCACHE and AxPROT are not
    fixed: the DMA master drives them per burst (``cache_prot``)."""
    if channel not in ("ar", "aw"):
        raise ValueError(f"channel={channel!r} must be 'ar' or 'aw'")
    values = {"id": 0, "size": axsize(bus_bytes), "burst": BURST_INCR, "lock": 0, "qos": 0}
    return [getattr(bus, channel + name).eq(value) for name, value in values.items()]


def cache_prot(coherent: bool) -> tuple[int, int]:
    """``(AxCACHE, AxPROT)`` of a burst: the coherent pair for a burst of a coherent
    command in a ``coherent_io`` build, else normal non-cacheable bufferable, default
    protection (what the HP ports and the MIG take)."""
    if coherent:
        return CACHE_COHERENT, PROT_COHERENT
    return CACHE_NORMAL_NONCACHEABLE_BUFFERABLE, PROT_DEFAULT


def drive_cache_prot(m: Module, bus, channel: str, coherent_io: bool, issue, coherent) -> None:
    """Drive ``channel`` ("ar" or "aw")'s AxCACHE/AxPROT: in a ``coherent_io`` build
    registered with each burst's address when ``issue`` is high (``cache_prot`` of its
    command's ``coherent`` bit), else the plain pair as constants."""
    if channel not in ("ar", "aw"):
        raise ValueError(f"channel={channel!r} must be 'ar' or 'aw'")
    bus_cache, bus_prot = getattr(bus, channel + "cache"), getattr(bus, channel + "prot")
    plain_cache, plain_prot = cache_prot(False)
    if not coherent_io:
        m.d.comb += [bus_cache.eq(plain_cache), bus_prot.eq(plain_prot)]
        return
    coherent_cache, coherent_prot = cache_prot(True)
    cache = Signal(4, name=f"{channel}cache_q", init=plain_cache)
    prot = Signal(3, name=f"{channel}prot_q", init=plain_prot)
    with m.If(issue):
        m.d.sync += [cache.eq(Mux(coherent, coherent_cache, plain_cache)),
                     prot.eq(Mux(coherent, coherent_prot, plain_prot))]
    m.d.comb += [bus_cache.eq(cache), bus_prot.eq(prot)]


def _read_members(addr_width: int, data_width: int, id_width: int) -> dict:
    return {
        "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arlock": Out(1), "arcache": Out(4), "arprot": Out(3),
        "arqos": Out(4), "arvalid": Out(1), "arready": In(1),
        "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    }


def _write_members(addr_width: int, data_width: int, id_width: int) -> dict:
    return {
        "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awlock": Out(1), "awcache": Out(4), "awprot": Out(3),
        "awqos": Out(4), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
        "wvalid": Out(1), "wready": In(1),
        "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
    }


class _AXI4SignatureBase(wiring.Signature):
    """Shared parameters and equality of the AXI4 signatures."""

    def __init__(self, config: AccelConfig, members: dict):
        self.addr_width = config.addr_width
        self.data_width = config.bus_bits
        self.id_width = config.id_width
        super().__init__(members)

    def __eq__(self, other):
        return (type(other) is type(self) and
                (self.addr_width, self.data_width, self.id_width) ==
                (other.addr_width, other.data_width, other.id_width))

    def __hash__(self):
        return hash((type(self), self.addr_width, self.data_width, self.id_width))

    def __repr__(self):
        return (f"{type(self).__name__}(addr_width={self.addr_width}, "
                f"data_width={self.data_width}, id_width={self.id_width})")


class AXI4ReadSignature(_AXI4SignatureBase):
    """AXI4 read channels (AR, R) of ``config``'s DMA port, master's view."""

    def __init__(self, config: AccelConfig):
        super().__init__(config, _read_members(config.addr_width, config.bus_bits, config.id_width))


class AXI4WriteSignature(_AXI4SignatureBase):
    """AXI4 write channels (AW, W, B) of ``config``'s DMA port, master's view."""

    def __init__(self, config: AccelConfig):
        super().__init__(config, _write_members(config.addr_width, config.bus_bits, config.id_width))


class AXI4Signature(_AXI4SignatureBase):
    """All five AXI4 channels of ``config``'s DMA port, master's view.

    Its members are exactly the union of ``AXI4ReadSignature`` and
    ``AXI4WriteSignature``, so a reader and a writer share one port.
    """

    def __init__(self, config: AccelConfig):
        members = _read_members(config.addr_width, config.bus_bits, config.id_width)
        members.update(_write_members(config.addr_width, config.bus_bits, config.id_width))
        super().__init__(config, members)


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite (AW, W, B, AR, R), master's view; 32- or 64-bit data."""

    def __init__(self, addr_width: int = 8, data_width: int = 32):
        if not 1 <= addr_width <= 64:
            raise ValueError(f"addr_width={addr_width} must be in 1..64")
        if data_width not in (32, 64):
            raise ValueError(f"data_width={data_width} must be 32 or 64 (AXI4-Lite)")
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other):
        return (type(other) is AXI4LiteSignature and
                (self.addr_width, self.data_width) == (other.addr_width, other.data_width))

    def __hash__(self):
        return hash((AXI4LiteSignature, self.addr_width, self.data_width))

    def __repr__(self):
        return f"AXI4LiteSignature(addr_width={self.addr_width}, data_width={self.data_width})"


def flat_members(prefix: str, signature: wiring.Signature) -> dict[str, wiring.Member]:
    """Top-level port members ``{prefix}_{name}`` with the flows of ``signature``.

    Pass the signature as the block inside sees it: ``AXI4Signature(config)`` for
    the DMA master, ``AXI4LiteSignature().flip()`` for the control slave. The
    result goes into a component's signature dict.
    """
    members = {}
    for name, member in signature.members.items():
        if not member.is_port:
            raise TypeError(f"{prefix}: member {name!r} is not a port; only flat signatures flatten")
        members[f"{prefix}_{name}"] = member
    return members


def connect_flat(m: Module, owner, prefix: str, interface) -> None:
    """Wire ``interface`` (a block's nested AXI port) to ``owner``'s flat ports.

    Every member of ``interface`` must exist on ``owner`` as ``{prefix}_{name}``
    with the same flow (``flat_members`` makes them). ``interface`` may cover a
    subset of the flat port, so an ``AXI4ReadSignature`` reader and an
    ``AXI4WriteSignature`` writer connect to one ``AXI4Signature`` port.
    Combinational, no latency.
    """
    for name, member in interface.signature.members.items():
        inner = getattr(interface, name)
        try:
            outer = getattr(owner, f"{prefix}_{name}")
        except AttributeError:
            raise AttributeError(f"{owner!r} has no port {prefix}_{name} for {name!r}") from None
        if len(outer) != len(inner):
            raise ValueError(f"{prefix}_{name} is {len(outer)} bits but {name} is {len(inner)} bits")
        if member.flow == Out:
            m.d.comb += outer.eq(inner)
        else:
            m.d.comb += inner.eq(outer)
