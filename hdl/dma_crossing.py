"""``DmaCrossing``: a DMA block's contract carried across from the core's clock to the
AXI masters' own clock."""

from amaranth.hdl import DomainRenamer, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import AsyncFIFO, AsyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .burst import command_layout
from .dma_control import control_members
from .dma_reader import read_data_layout
from .dma_writer import write_data_layout
from .skid import SkidBuffer
from .spec.config import AccelConfig

__all__ = ["DmaCrossing", "contract_signature", "connect_contract", "COMMAND_DEPTH", "DATA_DEPTH", "COUNT_BITS"]

COMMAND_DEPTH = 4       # commands in flight to the block (one per A row or weight tile)
DATA_DEPTH = 17         # beats; AsyncFIFOBuffered's 2**n + 1, above the pointers' round trip
COUNT_BITS = 8          # commands and beats counted modulo 2**8 on both sides


def contract_signature(config: AccelConfig, direction: str) -> wiring.Signature:
    """The contract of a ``DmaReader`` (``direction="read"``) or ``DmaWriter``
    (``"write"``) as the block presents it: ``hdl.dma_control.control_members`` and its
    ``data`` stream."""
    if direction == "read":
        data_member = Out(stream.Signature(read_data_layout(config)))
    elif direction == "write":
        data_member = In(stream.Signature(write_data_layout(config)))
    else:
        raise ValueError(f"direction={direction!r} must be 'read' or 'write'")
    return wiring.Signature({**control_members(config), "data": data_member})


def connect_contract(m: Module, config: AccelConfig, direction: str, user, block) -> None:
    """Wire ``block`` (it presents ``contract_signature(config, direction)``) to ``user``
    (it holds the same members, flipped): streams with ``wiring.connect``, the rest by
    flow. Combinational."""
    for name, member in contract_signature(config, direction).members.items():
        ours, theirs = getattr(user, name), getattr(block, name)
        if member.is_signature:
            wiring.connect(m, ours, theirs)
        elif member.flow == In:
            m.d.comb += theirs.eq(ours)
        else:
            m.d.comb += ours.eq(theirs)


class DmaCrossing(wiring.Component):
    """One DMA block's contract (``hdl/README.md``) from the ``sync`` domain (the core's
    ``aclk``) to ``domain`` (``m_axi_aclk``), where the block runs.

    ``core`` looks like the block to the controller; ``block`` drives the block. The two
    clocks may be in any ratio and are asynchronous.

    - Commands cross in an ``AsyncFIFO`` of ``COMMAND_DEPTH``; data beats in an
      ``AsyncFIFOBuffered`` of ``DATA_DEPTH`` (towards the core for a reader, towards
      the block for a writer), one beat per cycle of the slower clock. A
      ``SkidBuffer`` in ``domain`` sits between each FIFO and the block (cutting the
      block's ready and valid paths from the FIFO's pointer logic); nothing resets it,
      it drains into the block (which drops commands and a writer's beats while
      stopped) or towards the core (which drops a reader's beats during an abort).
    - ``abort`` (level) reaches the block through a two-flop synchronizer. While it is
      high on the core side, a reader's beats arriving there are taken and dropped; a
      writer drops the beats it is offered itself (``DmaWriter``'s abort).
    - ``clear`` (pulse) crosses as a toggle and becomes one ``clear`` pulse at the block.
    - ``error``, ``error_addr`` and ``idle`` come from a snapshot of the block side,
      taken whenever the core side has latched the previous one (a toggle handshake: the
      snapshot's bits are stable for at least two cycles of the core clock before they
      are latched). With the snapshot come the commands the block has taken and the
      beats that have crossed on its side, so ``core.idle`` is exact: the block was idle
      when it had taken every command the core pushed and every beat had crossed. A
      snapshot from before the last ``clear`` reads as no error and not idle.

    Latency: a command or beat crosses in two to four cycles of the receiving clock;
    ``error`` follows the block by one handshake, about four cycles of each clock, and
    ``idle`` one core cycle after it (the count compares are registered). The core must not push commands while ``abort`` is high, and must hold it
    until ``idle`` (the controller's ABORT state does both).
    """

    def __init__(self, config: AccelConfig, direction: str, domain: str = "axi"):
        self.config = config
        self.direction = direction
        self.domain = domain
        contract = contract_signature(config, direction)
        super().__init__({"core": Out(contract), "block": In(contract)})

    def elaborate(self, platform):
        m = Module()
        config, core, block, axi = self.config, self.core, self.block, self.domain
        reads = self.direction == "read"

        # Every stream meets the block through a ``SkidBuffer`` in ``domain``, so the
        # block's handshakes never reach a FIFO's pointer logic in the same cycle. The
        # counts below are taken at the block's own handshakes: what a skid holds is
        # still on its way.
        def skid(name, layout):
            buffer = SkidBuffer(layout)
            m.submodules[name] = DomainRenamer({"sync": axi})(buffer)
            return buffer

        # -- commands: core -> block ----------------------------------------------------
        cmd_layout = command_layout(config)
        cmds = m.submodules.cmds = AsyncFIFO(width=cmd_layout.size, depth=COMMAND_DEPTH,
                                             w_domain="sync", r_domain=axi)
        cmd_skid = skid("cmd_skid", cmd_layout)
        m.d.comb += [
            cmds.w_data.eq(core.cmd.payload),
            cmds.w_en.eq(core.cmd.valid),
            core.cmd.ready.eq(cmds.w_rdy),
            cmd_skid.i.payload.eq(cmds.r_data),
            cmd_skid.i.valid.eq(cmds.r_rdy),
            cmds.r_en.eq(cmd_skid.i.ready),
        ]
        wiring.connect(m, cmd_skid.o, wiring.flipped(block.cmd))
        cmds_pushed = Signal(COUNT_BITS)
        cmds_taken = Signal(COUNT_BITS)
        m.d.sync += cmds_pushed.eq(cmds_pushed + (cmds.w_en & cmds.w_rdy))
        m.d[axi] += cmds_taken.eq(cmds_taken + (block.cmd.valid & block.cmd.ready))

        # -- data: block -> core (reader) or core -> block (writer) ---------------------
        layout = read_data_layout(config) if reads else write_data_layout(config)
        beats = m.submodules.beats = AsyncFIFOBuffered(
            width=layout.size, depth=DATA_DEPTH,
            w_domain=axi if reads else "sync", r_domain="sync" if reads else axi)
        data_skid = skid("data_skid", layout)
        beats_core = Signal(COUNT_BITS)      # beats taken from / given to the core side
        beats_block = Signal(COUNT_BITS)     # beats given by / taken by the block
        m.d[axi] += beats_block.eq(beats_block + (block.data.valid & block.data.ready))
        if reads:
            wiring.connect(m, wiring.flipped(block.data), data_skid.i)
            m.d.comb += [
                beats.w_data.eq(data_skid.o.payload),
                beats.w_en.eq(data_skid.o.valid),
                data_skid.o.ready.eq(beats.w_rdy),
                core.data.payload.eq(beats.r_data),
                # An aborted job's beats are dropped here, so none reaches the next job.
                core.data.valid.eq(beats.r_rdy & ~core.abort),
                beats.r_en.eq(core.data.ready | core.abort),
            ]
            beats_core_step = beats.r_en & beats.r_rdy
        else:
            m.d.comb += [
                beats.w_data.eq(core.data.payload),
                beats.w_en.eq(core.data.valid),
                core.data.ready.eq(beats.w_rdy),
                data_skid.i.payload.eq(beats.r_data),
                data_skid.i.valid.eq(beats.r_rdy),
                beats.r_en.eq(data_skid.i.ready),
            ]
            wiring.connect(m, data_skid.o, wiring.flipped(block.data))
            beats_core_step = beats.w_en & beats.w_rdy
        m.d.sync += beats_core.eq(beats_core + beats_core_step)

        # -- abort and clear: core -> block --------------------------------------------
        m.submodules.abort_cdc = FFSynchronizer(core.abort, block.abort, o_domain=axi)
        clear_toggle = Signal()
        clear_at_block = Signal()
        clear_seen = Signal()
        with m.If(core.clear):
            m.d.sync += clear_toggle.eq(~clear_toggle)
        m.submodules.clear_cdc = FFSynchronizer(clear_toggle, clear_at_block, o_domain=axi)
        m.d.comb += block.clear.eq(clear_at_block != clear_seen)
        m.d[axi] += clear_seen.eq(clear_at_block)

        # -- the block's state: block -> core, one snapshot per handshake --------------
        snapshot = data.StructLayout({"idle": 1, "error": 1, "error_addr": config.addr_width,
                                      "cmds": COUNT_BITS, "beats": COUNT_BITS, "clear": 1})
        # Only its toggle is synchronized: the snapshot holds still until the core answers.
        taken = Signal(snapshot, attrs={"systole.cdc": "snapshot"})
        taken_toggle = Signal()
        answered = Signal()                   # the core's latched toggle, seen in ``axi``
        latched_toggle = Signal()
        offered = Signal()                    # ``taken_toggle``, seen in ``sync``
        m.submodules.offer_cdc = FFSynchronizer(taken_toggle, offered, o_domain="sync")
        m.submodules.answer_cdc = FFSynchronizer(latched_toggle, answered, o_domain=axi)
        with m.If(answered == taken_toggle):
            m.d[axi] += [
                taken.idle.eq(block.idle),
                taken.error.eq(block.error),
                taken.error_addr.eq(block.error_addr),
                taken.cmds.eq(cmds_taken),
                taken.beats.eq(beats_block),
                taken.clear.eq(clear_seen),
                taken_toggle.eq(~taken_toggle),
            ]
        latched = Signal(snapshot)
        with m.If(offered != latched_toggle):
            m.d.sync += [latched.eq(taken), latched_toggle.eq(offered)]

        current = Signal()                    # the snapshot is from after the last clear
        m.d.comb += [
            current.eq(latched.clear == clear_toggle),
            core.error.eq(latched.error & current),
            core.error_addr.eq(latched.error_addr),
        ]
        # ``idle`` in two registered steps, so the count compares end at a flip-flop: the
        # snapshot matched the core side's counts last cycle, and the core side has pushed
        # no command, moved no beat and sent no clear since (the counts see a move only the
        # cycle after). A block seen idle with nothing sent to it since is still idle.
        core_moves = (cmds.w_en & cmds.w_rdy) | beats_core_step | core.clear
        matched = Signal()
        moved = Signal()
        m.d.sync += [
            matched.eq(latched.idle & current & (latched.cmds == cmds_pushed) & (latched.beats == beats_core)),
            moved.eq(core_moves),
            core.idle.eq(matched & ~moved & ~core_moves),
        ]
        return m
