"""The job FSM: check the arguments, then per M block load A, stream W, drain C."""

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .burst import command_layout
from .core import ComputeCore
from .dma_control import control_members
from .dma_reader import read_data_layout
from .dma_writer import write_data_layout
from .jobcheck import JobCheck
from .skid import SkidBuffer
from .spec.config import AccelConfig
from .spec.job import FIELDS, times
from .spec.formats import WeightFormat, int4_tile_beats
from .spec.regmap import ErrorCode, field_bits

__all__ = ["Controller", "read_ports", "MAX_FANOUT"]

MAX_FANOUT = 64        # Vivado MAX_FANOUT of the control registers that reach the whole array


def read_ports(config: AccelConfig) -> tuple[str, ...]:
    """The controller's names of its reader contracts, port 0 (A and W stream 0) first."""
    return tuple(f"rd{p}" for p in range(config.weight_ports))


class Controller(wiring.Component):
    """Runs one job at a time from ``start`` to a one-cycle ``done`` pulse.

    - ``start`` (ignored while ``busy``) latches the arguments, clears
      ``err_code``/``err_addr`` and the ``perf_*`` counters, and raises ``busy``.
      ``JobCheck`` then validates them (``JobCheck.LATENCY`` cycles, no DMA); a
      refused job ends with its ``ErrorCode``.
    - Each M block of ``vr = min(T, rows left)`` rows (``T = rows``, or ``rows / 2``
      tokens for int4 weights): ``vr`` commands of
      ``ceil(K/bb)`` beats to reader 0 (row ``m`` at ``A + m*A_STRIDE``) go to the
      activation buffer, then ``ceil(N/cols)`` commands of a tile's beats
      (``formats.tile_beats``: ``K`` for int8) to every
      reader ``p`` (one per tile, from ``W + p*W_STRIDE`` on) go to the feeder, one
      beat of every reader side by side per step (reader ``p`` carries columns
      ``p*bb .. p*bb + bb - 1`` of each tile). The readers queue them, so the weight
      stream follows the A rows without a gap. A tile's command goes to all readers
      before the next tile's goes to any. The next block's A load starts when the
      feeder has taken the last weight beat (it overwrites the buffer); the
      drain of the last tiles runs on meanwhile. ``done`` follows when the core
      is idle, every reader is idle and the writer has every B response.
    - DMA errors (``rd<p>_error``/``wr_error``, sticky in the DMA blocks) and
      ``soft_reset`` while busy end the job through ABORT: ``*_abort`` to every
      reader, the writer and the core until all DMA blocks are idle (every port's
      outstanding bursts answered) and the core's pipeline has flushed, then one
      ``*_clear`` pulse and ``done``. The code is ``DMA_READ`` with the burst address
      and the reader in ``err_port`` (the lowest one if several fail in one cycle),
      ``DMA_WRITE`` with the burst address, or ``ABORTED``.
    - ``start_busy`` (a start written while busy) sets ``START_BUSY`` if no other
      error is recorded; the running job continues.
    - Counters: ``perf_busy`` counts busy cycles, ``perf_stall`` the cycles the
      feeder wanted a weight beat and one reader had none, ``perf_rd_beats`` and
      ``perf_wr_beats`` the data beats taken from all readers and sent towards the
      writer; ``cycles`` runs freely from reset.
    """

    def __init__(self, config: AccelConfig):
        self.config = config
        super().__init__({
            "start": In(1),
            "start_busy": In(1),
            "soft_reset": In(1),
            # The job's arguments, as wide as their registers (hdl.spec.job.FIELDS).
            **{f.name: In(f.storage_bits) for f in FIELDS},
            "busy": Out(1),
            "done": Out(1),
            "err_code": Out(8),
            "err_addr": Out(64),
            "perf_busy": Out(32),
            "perf_stall": Out(32),
            "perf_rd_beats": Out(32),
            "perf_wr_beats": Out(32),
            "cycles": Out(64),
            "err_port": Out(8),
            # The DmaReader (rd<p>_*, one per weight port) and DmaWriter (wr_*) contracts,
            # seen from this side.
            **{f"{side}_{name}": member.flip() for side in (*read_ports(config), "wr")
               for name, member in control_members(config).items()},
            **{f"{side}_data": In(stream.Signature(read_data_layout(config)))
               for side in read_ports(config)},
            "wr_data": Out(stream.Signature(write_data_layout(config))),
        })

    def _latch_format(self, pair, tile_beats, w_tile_bytes, bb_log2) -> list:
        """At start: ``pair`` and one port's beats (and bytes) per tile from W_FORMAT and K.
        A format the build does not run is refused by the check before they are used."""
        k = self.k[:field_bits("K")]
        if not self.config.int4:
            return [pair.eq(0), tile_beats.eq(k), w_tile_bytes.eq(k << bb_log2)]
        paired = self.w_format == WeightFormat.INT4
        beats = Mux(paired, int4_tile_beats(k), k)
        return [pair.eq(paired), tile_beats.eq(beats), w_tile_bytes.eq(beats << bb_log2)]

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        aw = cfg.addr_width
        bb_log2 = exact_log2(cfg.bus_bytes)
        m.submodules.check = check = JobCheck(cfg)
        m.submodules.core = core = ComputeCore(cfg)
        # A register that fans out to every reader, the writer, the skid buffers and the
        # core's pipeline (thousands of flip-flops on kv260): MAX_FANOUT lets Vivado
        # replicate it next to its loads.
        abort = Signal(attrs={"max_fanout": MAX_FANOUT})

        # Every stream to and from the DMA blocks passes a skid buffer, so no
        # combinational path runs between the controller and the AXI masters. An
        # abort empties them: nothing of an aborted job may reach the next one.
        ports = read_ports(cfg)
        rd_cmd, rd_data = [], []
        for side in ports:
            cmd_skid = SkidBuffer(command_layout(cfg))
            data_skid = SkidBuffer(read_data_layout(cfg))
            m.submodules[f"{side}_cmd_skid"] = ResetInserter(abort)(cmd_skid)
            m.submodules[f"{side}_data_skid"] = ResetInserter(abort)(data_skid)
            wiring.connect(m, cmd_skid.o, wiring.flipped(getattr(self, f"{side}_cmd")))
            wiring.connect(m, wiring.flipped(getattr(self, f"{side}_data")), data_skid.i)
            rd_cmd.append(cmd_skid.i)
            rd_data.append(data_skid.o)
        wr_cmd_skid = SkidBuffer(command_layout(cfg))
        wr_data_skid = SkidBuffer(write_data_layout(cfg))
        m.submodules.wr_cmd_skid = ResetInserter(abort)(wr_cmd_skid)
        m.submodules.wr_data_skid = ResetInserter(abort)(wr_data_skid)
        wiring.connect(m, core.write_cmd, wr_cmd_skid.i)
        wiring.connect(m, wr_cmd_skid.o, wiring.flipped(self.wr_cmd))
        wiring.connect(m, core.write_data, wr_data_skid.i)
        wiring.connect(m, wr_data_skid.o, wiring.flipped(self.wr_data))

        # Latched arguments (the host may rewrite the registers during a job), whole:
        # the check must see every bit the host wrote. Once it passed, the counts fit
        # their fields and the datapath below uses only those bits.
        args = {f.name: Signal(f.storage_bits, name=f"arg_{f.name}") for f in FIELDS}
        bits = {f.name: f.value_bits for f in FIELDS}
        a_addr, c_addr = args["a_addr"], args["c_addr"]
        m_rows, n_cols, k = args["m"][:bits["m"]], args["n"][:bits["n"]], args["k"][:bits["k"]]
        a_stride, c_stride = args["a_stride"], args["c_stride"]
        # int4 weights (hdl.spec.formats): a token per pair of rows, tiles of pairs and
        # scale beats. Latched at start with the arguments; meaningful once checked.
        pair = Signal()
        tile_beats = Signal(range(1, cfg.max_k + 2))
        a_row_beats = Signal(range(cfg.max_k // cfg.bus_bytes + 1))
        a_last_word = Signal(range(cfg.max_k // cfg.bus_bytes))
        w_tile_bytes = Signal(bits["k"] + 1 + bb_log2)
        # Where each port's weight stream starts: W_ADDR + p * W_STRIDE, formed at start.
        w_bases = [Signal(aw, name=f"w_base{p}") for p in range(len(ports))]
        m.d.comb += [getattr(check, name).eq(arg) for name, arg in args.items()]

        busy = Signal()              # registered: it gates counters and the CSR's start
        m.d.comb += self.busy.eq(busy)

        # Block state.
        rows_left = Signal(bits["m"])
        last_block = Signal()
        block_rows = Signal(range(1, cfg.rows + 1))
        block_last_row = Signal(range(cfg.rows))
        c_block = Signal(aw)

        # Command issuer: A rows of the block on port 0, then one command per weight
        # tile on every port. A port that has taken the tile's command waits (``w_sent``)
        # until all have, so the ports' streams stay in step tile by tile.
        issue_go = Signal()
        issue_rows_left = Signal(range(cfg.rows + 1))
        issue_cols_left = Signal(bits["n"])
        a_next = Signal(aw)          # address of the next A row to read
        c_next = Signal(aw)          # C address of that row
        w_next = [Signal(aw, name=f"w_next{p}") for p in range(len(ports))]
        w_sent = Signal(len(ports))
        issuing_a = Signal()
        issuing_w = Signal()
        w_final = Signal()           # the next W command is the block's last
        w_taken = Signal(len(ports))
        for p, cmd in enumerate(rd_cmd):
            wants_w = issuing_w & ~w_sent[p]
            m.d.comb += [
                cmd.valid.eq(wants_w | issuing_a if p == 0 else wants_w),
                cmd.payload.addr.eq(Mux(issuing_a, a_next, w_next[p]) if p == 0 else w_next[p]),
                cmd.payload.beats.eq(Mux(issuing_a, a_row_beats, tile_beats) if p == 0 else tile_beats),
                # A's rows are shared with the CPU job by job; weight tiles are not.
                cmd.payload.coherent.eq(issuing_a if p == 0 else 0),
                w_taken[p].eq(w_sent[p] | (issuing_w & cmd.valid & cmd.ready)),
            ]
        with m.If(issue_go):
            m.d.sync += [issuing_a.eq(1), issue_rows_left.eq(block_rows),
                         issue_cols_left.eq(n_cols), w_final.eq(n_cols <= cfg.cols), w_sent.eq(0),
                         *(nxt.eq(base) for nxt, base in zip(w_next, w_bases))]
        with m.Elif(issuing_a):
            with m.If(rd_cmd[0].valid & rd_cmd[0].ready):
                m.d.sync += [a_next.eq(a_next + a_stride), c_next.eq(c_next + c_stride),
                             issue_rows_left.eq(issue_rows_left - 1)]
                with m.If(issue_rows_left == 1):
                    m.d.sync += [issuing_a.eq(0), issuing_w.eq(1)]
        with m.Elif(issuing_w):
            with m.If(w_taken.all()):
                m.d.sync += [*(nxt.eq(nxt + w_tile_bytes) for nxt in w_next), w_sent.eq(0),
                             issue_cols_left.eq(issue_cols_left - cfg.cols),
                             w_final.eq(issue_cols_left <= 2 * cfg.cols)]
                with m.If(w_final):
                    m.d.sync += issuing_w.eq(0)
            with m.Else():
                m.d.sync += w_sent.eq(w_taken)

        # A loader: beats of the block's rows (port 0) into the activation buffer. The
        # weights: one beat of every port side by side, taken together.
        load_row = Signal(range(cfg.rows))
        load_word = Signal(range(cfg.max_k // cfg.bus_bytes))
        w_all_valid = Signal()
        m.d.comb += [
            w_all_valid.eq(Cat(d.valid for d in rd_data).all()),
            core.act_write_row.eq(load_row),
            core.act_write_word.eq(load_word),
            core.act_write_data.eq(rd_data[0].payload.data),
            core.weights.payload.eq(Cat(d.payload.data for d in rd_data)),
            core.beats.eq(tile_beats),
            core.pair.eq(pair),
            core.n.eq(n_cols),
            core.rows_valid.eq(block_rows),
            core.c_addr.eq(c_block),
            core.c_stride.eq(c_stride),
        ]

        # LOAD_A and FEED as registers beside the state, kept in step with its transitions:
        # the A and weight handshakes (which fan out to the activation buffer's write
        # enables and the feeder's counters) then start at a flip-flop, not a state decode.
        loading = Signal()
        feeding = Signal()
        m.d.comb += [
            rd_data[0].ready.eq(loading | (feeding & core.weights.ready & w_all_valid)),
            core.act_write_en.eq(loading & rd_data[0].valid),
            core.weights.valid.eq(feeding & w_all_valid),
            *(d.ready.eq(feeding & core.weights.ready & w_all_valid) for d in rd_data[1:]),
        ]

        flush = Signal(range(core.flush_cycles + 1))
        m.d.comb += [
            *(getattr(self, f"{side}_abort").eq(abort) for side in (*ports, "wr")),
            core.abort.eq(abort),
        ]
        rd_error = Cat(getattr(self, f"{side}_error") for side in ports).any()
        # Every DMA block idle (and, for FINISH, the core too), registered: the blocks'
        # idle flags are a few LUTs deep already, so the FSM sees them a cycle late.
        dma_idle = Signal()
        all_idle = Signal()
        blocks_idle = Cat(getattr(self, f"{side}_idle") for side in (*ports, "wr")).all()
        m.d.sync += [dma_idle.eq(blocks_idle), all_idle.eq(blocks_idle & core.idle)]

        # Performance counters.
        m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(self.busy):
            m.d.sync += self.perf_busy.eq(self.perf_busy + 1)
            with m.If(core.starving):
                m.d.sync += self.perf_stall.eq(self.perf_stall + 1)
            m.d.sync += self.perf_rd_beats.eq(
                self.perf_rd_beats + sum((d.valid & d.ready).as_unsigned() for d in rd_data))
            with m.If(wr_data_skid.i.valid & wr_data_skid.i.ready):
                m.d.sync += self.perf_wr_beats.eq(self.perf_wr_beats + 1)

        # Faults, registered: soft reset first, then the readers (lowest port first),
        # then the writer.
        fault = Signal()
        fault_code = Signal(8)
        fault_addr = Signal(64)
        fault_port = Signal(8)
        soft_reset = Signal()
        m.d.sync += [fault.eq(self.soft_reset | rd_error | self.wr_error),
                     soft_reset.eq(self.soft_reset)]
        with m.If(self.soft_reset):
            m.d.sync += [fault_code.eq(ErrorCode.ABORTED), fault_addr.eq(0), fault_port.eq(0)]
        with m.Elif(rd_error):
            m.d.sync += fault_code.eq(ErrorCode.DMA_READ)
            for p, side in reversed(list(enumerate(ports))):
                with m.If(getattr(self, f"{side}_error")):
                    m.d.sync += [fault_addr.eq(getattr(self, f"{side}_error_addr")), fault_port.eq(p)]
        with m.Else():
            m.d.sync += [fault_code.eq(ErrorCode.DMA_WRITE), fault_addr.eq(self.wr_error_addr),
                         fault_port.eq(0)]

        # Where the FSM is, as registers kept beside its transitions: the error registers
        # below are set from these and registered conditions, not from the state decode.
        in_check = Signal()          # CHECK or CHECKING
        in_run = Signal()            # BLOCK .. FINISH: a fault there aborts the job
        aborting = Signal()
        m.d.comb += aborting.eq(in_run & fault)

        def watch_for_errors():
            with m.If(fault):
                m.next = "ABORT"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [
                        *(arg.eq(getattr(self, name)) for name, arg in args.items()),
                        *(base.eq(self.w_addr + times(self.w_stride, p)) for p, base in enumerate(w_bases)),
                        a_row_beats.eq((self.k + cfg.bus_bytes - 1) >> bb_log2),
                        a_last_word.eq(((self.k + cfg.bus_bytes - 1) >> bb_log2) - 1),
                        *self._latch_format(pair, tile_beats, w_tile_bytes, bb_log2),
                        in_check.eq(1),
                        self.perf_busy.eq(0),
                        self.perf_stall.eq(0),
                        self.perf_rd_beats.eq(0),
                        self.perf_wr_beats.eq(0),
                        busy.eq(1),
                    ]
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += [check.start.eq(1)]
                m.next = "CHECKING"
                with m.If(soft_reset):
                    m.d.sync += in_check.eq(0)
                    m.next = "DONE"
            with m.State("CHECKING"):
                with m.If(check.done):
                    m.d.sync += in_check.eq(0)
                    with m.If(check.refused):
                        m.next = "DONE"
                    with m.Else():
                        m.d.sync += [rows_left.eq(m_rows), a_next.eq(a_addr), c_next.eq(c_addr),
                                     c_block.eq(c_addr), in_run.eq(1)]
                        m.next = "BLOCK"
                with m.If(soft_reset):
                    m.d.sync += [in_check.eq(0), in_run.eq(0)]
                    m.next = "DONE"
            with m.State("BLOCK"):
                tokens = Mux(pair, cfg.rows // 2, cfg.rows) if cfg.int4 else cfg.rows
                m.d.sync += [
                    block_rows.eq(Mux(rows_left < tokens, rows_left, tokens)),
                    block_last_row.eq(Mux(rows_left < tokens, rows_left - 1, tokens - 1)),
                    last_block.eq(rows_left <= tokens),
                    load_row.eq(0),
                    load_word.eq(0),
                ]
                m.next = "ISSUE"
                watch_for_errors()
            with m.State("ISSUE"):
                m.d.comb += [issue_go.eq(1)]
                m.d.sync += loading.eq(~fault)
                m.next = "LOAD_A"
                watch_for_errors()
            with m.State("LOAD_A"):
                with m.If(rd_data[0].valid):
                    m.d.sync += load_word.eq(load_word + 1)
                    with m.If(load_word == a_last_word):
                        m.d.sync += [load_word.eq(0), load_row.eq(load_row + 1)]
                        with m.If(load_row == block_last_row):
                            m.d.sync += loading.eq(0)
                            m.next = "FEED_START"
                with m.If(fault):
                    m.d.sync += loading.eq(0)
                watch_for_errors()
            with m.State("FEED_START"):
                m.d.comb += [core.start.eq(1)]
                m.d.sync += feeding.eq(~fault)
                m.next = "FEED"
                watch_for_errors()
            with m.State("FEED"):
                with m.If(core.block_done | fault):
                    m.d.sync += feeding.eq(0)
                with m.If(core.block_done):
                    m.d.sync += [rows_left.eq(rows_left - block_rows), c_block.eq(c_next)]
                    with m.If(last_block):
                        m.next = "FINISH"
                    with m.Else():
                        m.next = "BLOCK"
                watch_for_errors()
            with m.State("FINISH"):
                # An error that shows up with the last response must not end the job as
                # OK: `all_idle` and `fault` both lag the DMA blocks by one cycle, so the
                # cycle a block first reads idle after its erring response is the cycle
                # `fault` is set.
                with m.If(all_idle & ~fault):
                    m.d.sync += in_run.eq(0)
                    m.next = "DONE"
                watch_for_errors()
            with m.State("ABORT"):
                with m.If(flush != core.flush_cycles):
                    m.d.sync += flush.eq(flush + 1)
                with m.Elif(dma_idle):
                    m.d.sync += abort.eq(0)
                    m.next = "CLEAR"
            with m.State("CLEAR"):
                m.d.comb += [getattr(self, f"{side}_clear").eq(1) for side in (*ports, "wr")]
                m.d.sync += abort.eq(0)
                m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)
                m.next = "IDLE"

        # The error registers, by priority (the later assignment wins): a start while
        # busy, a start, the check's refusal, a soft reset during the check, a fault
        # while running (which also starts the abort).
        with m.If(self.start_busy & busy & (self.err_code == ErrorCode.OK)):
            m.d.sync += self.err_code.eq(ErrorCode.START_BUSY)
        with m.If(~busy & self.start):
            m.d.sync += [self.err_code.eq(ErrorCode.OK), self.err_addr.eq(0), self.err_port.eq(0)]
        with m.If(in_check & check.done & check.refused):
            m.d.sync += [self.err_code.eq(check.code), self.err_addr.eq(check.addr)]
        with m.If(in_check & soft_reset):
            m.d.sync += self.err_code.eq(ErrorCode.ABORTED)
        with m.If(aborting):
            m.d.sync += [self.err_code.eq(fault_code), self.err_addr.eq(fault_addr), self.err_port.eq(fault_port),
                         issuing_a.eq(0), issuing_w.eq(0), flush.eq(0), abort.eq(1), in_run.eq(0)]
        return m
