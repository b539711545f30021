"""The performance report's rendering: Markdown tables and PNG plots of measured figures.

``gen.perf_report`` measures and judges; this module only turns its ``Report`` into
``report.md`` and the plots beside it, computing nothing new but per-point cycle
counts for the roofline plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hdl.spec.boards import BOARDS
from hdl.spec.config import preset
from hdl.spec.ddr import stream_model
from host.accel.cycles import job_cycles
from host.llm.layers import LAYER_KINDS
from host.perf.projection import Projection

if TYPE_CHECKING:
    from .perf_report import ModelCase, Report

__all__ = ["render", "table", "projection_table", "plot_roofline", "plot_breakdown", "plot_sweep"]

PROMPT_TOKENS = 64


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def projection_table(projections: list[Projection]) -> str:
    rows = []
    for p in projections:
        rows.append([p.model, p.board.title, p.config.summary,
                     f"{p.accelerator_ms:.2f}", f"{p.host_ms:.2f}", f"{p.decode_tok_s:.1f}",
                     f"{p.roofline_tok_s:.1f}", f"{p.decode_tok_s / p.roofline_tok_s:.0%}",
                     f"{p.prefill_ms:.1f}", f"{p.prompt_tokens / p.prefill_ms * 1e3:.0f}"])
    return table(["model", "board", "array", "accel ms/tok", "host ms/tok", "decode tok/s",
                  "roofline tok/s", "of roofline", f"prefill {PROMPT_TOKENS} tok (ms)",
                  "prefill tok/s"], rows)


# -- plots -------------------------------------------------------------------------------

def plot_roofline(cases: list["ModelCase"], path: Path) -> None:
    """Achieved GMAC/s of every Gemma layer shape at decode and prefill, under each
    preset's compute and bandwidth roofs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gemma = cases[0]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, board_name in zip(axes, ("kv260", "nexys_video")):
        board, config = BOARDS[board_name], preset(BOARDS[board_name].preset)
        latency, rate = stream_model(config, board)
        clock = config.clock_mhz * 1e6
        peak = config.rows * config.cols * clock / 1e9                     # GMAC/s
        bandwidth = min(config.bandwidth_bytes_per_s, board.dram_bytes_per_s) / 1e9
        intensity = [0.5, 1, 2, 4, 8, 16, 32, 64, 128]
        ax.loglog(intensity, [min(peak, bandwidth * i) for i in intensity], "k-",
                  label=f"roof: {bandwidth:.1f} GB/s, {peak:.0f} GMAC/s")
        kinds = list(dict.fromkeys(shape.kind for shape in gemma.matmuls))
        colors = plt.get_cmap("tab10")
        for m in sorted({1, 4, config.rows, PROMPT_TOKENS}):
            for index, kind in enumerate(kinds):
                shape = next(s for s in gemma.matmuls if s.kind == kind)
                cycles = job_cycles(config, m, shape.n, shape.k, latency, rate=rate)
                macs = m * shape.n * shape.k
                weight_reads = -(-m // config.rows) * shape.n * shape.k
                # The five layer kinds sit almost on one point: spread them a little.
                x = macs / weight_reads * (1 + 0.06 * (index - 2))
                ax.loglog(x, macs / (cycles / clock) / 1e9, "o", color=colors(index),
                          label=kind if m == 1 else None)
            if m <= config.rows:        # every M >= rows sits on the ridge point
                label = f"M={m}" if m < config.rows else f"M>={m}"
                ax.annotate(label, (m, min(peak, bandwidth * m)),
                            textcoords="offset points", xytext=(4, -12), fontsize=7)
        ax.set_title(f"{board.title} ({config.summary})", fontsize=9)
        ax.set_xlabel("MACs per weight byte streamed")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("achieved GMAC/s (cycle model)")
    fig.suptitle("Gemma 3 270M matmuls on the roofline")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_breakdown(projections: list[Projection], cases: dict[str, "ModelCase"], path: Path) -> None:
    """Per-token time, accelerator (per layer kind) and host (per op), as stacked bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, stacks = [], []
    for p in projections:
        labels.append(f"{p.model}\n{p.board.title}")
        parts = {f"accel {kind}": p.per_kind.get(kind, 0) / p.clock_hz * 1e3 for kind in LAYER_KINDS}
        parts.update({f"host {op}": ms for op, ms in cases[p.model].host.per_op_ms.items()})
        stacks.append(parts)
    names = list(dict.fromkeys(name for parts in stacks for name in parts))
    totals = [sum(parts.values()) for parts in stacks]
    fig, ax = plt.subplots(figsize=(12, 5))
    bottom = [0.0] * len(stacks)
    colors = plt.get_cmap("tab20")
    for index, name in enumerate(names):
        shares = [100 * parts.get(name, 0.0) / total for parts, total in zip(stacks, totals)]
        ax.bar(labels, shares, bottom=bottom, label=name, color=colors(index % 20))
        bottom = [b + v for b, v in zip(bottom, shares)]
    for x, total in enumerate(totals):
        ax.annotate(f"{total:.1f} ms", (x, 101), ha="center", fontsize=8)
    ax.set_ylim(0, 108)
    ax.set_ylabel("share of a decode token's time (%)")
    ax.set_title("Where a decode token's time goes (accelerator: cycle model; host: measured)")
    ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in ((axes[0], "decode", "decode tok/s (host time counted)"),
                           (axes[1], "prefill", f"prefill tok/s ({PROMPT_TOKENS}-token prompt)")):
        for row in rows:
            c, res = row["config"], row["resources"]
            ax.scatter(res.luts, row[key], s=20 + res.dsps / 4)
            ax.annotate(f"{c.rows}x{c.cols}\n{c.weight_ports} port(s)", (res.luts, row[key]), fontsize=7)
        ax.set_xlabel("LUTs (Yosys synth_xilinx, xcup; marker size ~ DSPs)")
        ax.set_ylabel(title)
        ax.grid(True, alpha=0.3)
    fig.suptitle("Design space at 250 MHz: Gemma 3 270M on a KV260-class memory system")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the report ---------------------------------------------------------------------------

def render(report: "Report", out: Path) -> str:
    """``report.md`` for ``report`` (plots written to ``out`` beside it)."""
    sections = ["# Systole performance report", "",
                f"Generated by `make bench` (`python -m gen.perf_report`) on {report.date}. "
                "Accelerator times come from the cycle model, which is checked against the RTL's "
                "counters (`sim/test_cycle_model.py`, within 5%); host times are measured on this "
                "machine.", ""]
    for title, text in report.measured:
        sections += [f"## {title}", "", "```", text.strip(), "```", ""]

    host_rows = [[c.name, f"{c.host.min_ms:.2f}", f"{c.host.median_ms:.2f}", c.host.context,
                  ", ".join(f"{op} {ms:.2f}" for op, ms in sorted(c.host.per_op_ms.items(),
                                                                 key=lambda kv: -kv[1]))]
                 for c in report.cases]
    sections += ["## Host time per decode token (measured)", "",
                 table(["model", "min ms", "median ms", "context", "per op (ms, fastest run)"], host_rows),
                 "", "This shared 2-core machine's speed drifts by up to 2x over minutes; the minimum "
                 "is the least disturbed run, the median the typical one.", ""]

    sections += ["## Projected decode and prefill per board", "",
                 "Batch 1, no overlap of host and accelerator; host time = the median above. "
                 "The accelerator streams at the board's DDR model (hdl.spec.ddr: 256 ns, at least "
                 "64 cycles, of latency per port; one cap of 0.85 x the DRAM peak shared by the ports, "
                 "with refresh and bank stalls inside it). Roofline = int8 weight bytes per token "
                 "over the narrowest of the array's intake (cols bytes per array cycle), the weight "
                 "ports (ports x bus width x their clock) and the DDR peak.", "",
                 projection_table(report.projections), ""]

    if report.formats:
        rows = [[mix, p.model, p.board.title, f"{p.weight_bytes / 1e6:.1f}", f"{p.accelerator_ms:.2f}",
                 f"{p.accelerator_tok_s:.1f}", f"{p.roofline_tok_s:.1f}",
                 f"{p.accelerator_tok_s / p.roofline_tok_s:.0%}", f"{p.decode_tok_s:.1f}"]
                for mix, p in report.formats]
        sections += ["### Weight formats (hdl.spec.formats)", "",
                     "The same projection with each layer kind's weights in int8 or int4 (4-bit "
                     "weights with a 4-bit scale per 32 steps: ceil(K/2) + ceil(K/64) beats per "
                     "tile), as the quant schemes of host.llm.quant place them: all int8, the "
                     "default W4A8 scheme, the block linears int4 (classifier int8), every linear "
                     "int4. MB/token counts the beats streamed; the roofline is those bytes over "
                     "the same memory system.", "",
                     table(["weights", "model", "board", "MB/token", "accel ms/tok", "accel tok/s",
                            "roofline tok/s", "of roofline", "with host tok/s"], rows), ""]

    link_rows = [[model, f"{link_bytes / 1e3:.0f}", *(f"{tok_s:.1f}" for tok_s in rates)]
                 for model, link_bytes, rates in report.link_rows]
    sections += ["### The Nexys Video's host link", "",
                 "The Nexys Video has no CPU: the host drives it over a link (host.platforms.link, "
                 f"{report.uart_baud}-baud USB-UART today). Every matmul sends its activations and "
                 "receives its int32 results over that link, so end to end the board is "
                 "link-bound. Decode tok/s on the Nexys Video with the link counted:", "",
                 table(["model", "link KB/token"] + [name for name, _ in report.links], link_rows), "",
                 "The projection above (accelerator + host) holds on the board only with the "
                 "host beside the accelerator (the seed ran llama2.c on a soft CPU in the FPGA) or "
                 f"a link of at least {report.stories_link_mb_s:.0f} MB/s for stories15M "
                 "to stay within 10% of it.", ""]

    plot_roofline(report.cases, out / "roofline.png")
    plot_breakdown(report.projections, {case.name: case for case in report.cases}, out / "breakdown.png")
    sections += ["## Plots", "", "![roofline](roofline.png)", "", "![per-token breakdown](breakdown.png)", ""]

    if report.sweep:
        plot_sweep(report.sweep, out / "sweep.png")
        rows = [[f"{r['config'].rows}x{r['config'].cols}", r["config"].weight_ports,
                 r["resources"].luts, r["resources"].ffs, r["resources"].dsps,
                 f"{r['resources'].bram36:g}", f"{r['decode']:.1f}", f"{r['roofline']:.1f}",
                 f"{r['prefill']:.0f}"] for r in report.sweep]
        sections += ["## Design space (kv260 memory system: array at 250 MHz, ports at 300 MHz)", "",
                     table(["array", "HP ports", "LUT", "FF", "DSP", "BRAM36", "decode tok/s",
                            "roofline tok/s", "prefill tok/s"], rows), "",
                     "Each port is a 128-bit S_AXI_HP<n>_FPD; decode streams at the DDR model's rate "
                     "(hdl.spec.ddr: shared cap, refresh, bank stalls).", "",
                     "![design space](sweep.png)", ""]

    if report.rtl:
        rtl = report.rtl
        error = abs(rtl["predicted_cycles"] - rtl["token_cycles"]) / rtl["token_cycles"]
        sections += ["## Gemma 3 270M through the RTL (SimBackend)", "",
                     table(["figure", "value"], [
                         ["text (prompt + 2 tokens)", repr("Once upon a time" + rtl["text"])],
                         ["accelerator cycles per decode token (PERF_BUSY sum)", f"{rtl['token_cycles']:,}"],
                         ["cycle model's prediction", f"{rtl['predicted_cycles']:,} ({error:.2%} off)"],
                         ["implied decode at 250 MHz", f"{rtl['tok_s']:.2f} tok/s"],
                         ["simulated cycles per second", f"{rtl['cycles_per_s']:,.0f}"],
                         ["wall seconds per decode token in simulation", f"{rtl['decode_wall_s']:.1f}"],
                         ["simulator start (build cached or not)", f"{rtl['start_s']:.0f} s"]]), ""]

    sections += ["## Targets", "", table(["target", "measured", "wanted", "met"],
                                         [[v.name, v.measured, v.wanted, "yes" if v.met else "**MISSED**"]
                                          for v in report.verdicts]), ""]
    passed = all(v.met for v in report.verdicts)
    sections.append(f"Report {'passed' if passed else 'FAILED'} in {report.seconds:.0f} s.")
    return "\n".join(sections) + "\n"
