"""Per-op time accounting for generation: where each token's milliseconds go.

Time is taken at seams, never inside the model's code: ``Profiler.instrument`` wraps
the transformer's host ops (``Transformer.HOST_OPS``), the linear-layer seam records
each backend matmul and the quantize/dequantize around it, and the sampler records
itself. The fused decode path (``host.llm.fused``) cannot split its compiled calls
by op: their time is one ``host step`` row. Records go to one of two phases (``prefill``, ``decode``). ``report()``
adds ``other`` = wall time - everything recorded, so the rows always sum to the
measured wall time. Matmul rows count only the backend call; turning float
activations into int8 and int32 results back into float are the
``quantize``/``dequantize`` rows, host work like norms and softmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter
from typing import Callable

from .layers import LAYER_KINDS

__all__ = ["MATMUL_KINDS", "SECTIONS", "Profiler", "PhaseReport", "format_table"]

MATMUL_KINDS = LAYER_KINDS
SECTIONS = (*(f"matmul {kind}" for kind in MATMUL_KINDS), "quantize", "dequantize", "shortlist",
            "attention", "norms", "rope", "ffn activation", "embedding", "host step", "sampling")
PHASES = ("prefill", "decode")
_MATMUL_SECTION = {kind: f"matmul {kind}" for kind in MATMUL_KINDS}


@dataclass(frozen=True)
class PhaseReport:
    """One phase's totals: seconds per section (``other`` included), tokens, wall time."""

    phase: str
    tokens: int
    wall_seconds: float
    seconds: dict[str, float]
    calls: dict[str, int]
    macs: dict[str, int]
    cycles: dict[str, int]

    @property
    def matmul_seconds(self) -> float:
        return sum(s for name, s in self.seconds.items() if name.startswith("matmul "))

    @property
    def host_seconds(self) -> float:
        """Everything outside the backend's matmul calls (the Amdahl part)."""
        return self.wall_seconds - self.matmul_seconds

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.wall_seconds if self.wall_seconds > 0 else 0.0


class Profiler:
    """Accumulates op times per phase; cheap enough to stay on in every forward pass."""

    def __init__(self) -> None:
        self._phase = "decode"
        self.reset()

    @property
    def phase(self) -> str:
        """The phase new records go to (``prefill`` or ``decode``)."""
        return self._phase

    @phase.setter
    def phase(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase {phase!r} must be one of {PHASES}")
        self._phase = phase
        self._select()

    def reset(self) -> None:
        """Forget everything recorded (both phases)."""
        self._seconds = {phase: dict.fromkeys(SECTIONS, 0.0) for phase in PHASES}
        self._calls = {phase: dict.fromkeys(SECTIONS, 0) for phase in PHASES}
        self._macs = {phase: dict.fromkeys(MATMUL_KINDS, 0) for phase in PHASES}
        self._cycles = {phase: dict.fromkeys(MATMUL_KINDS, 0) for phase in PHASES}
        self._select()

    def _select(self) -> None:
        # The current phase's tables, looked up once: add() runs ~400 times per token.
        phase = self._phase
        self._now_seconds, self._now_calls = self._seconds[phase], self._calls[phase]
        self._now_macs, self._now_cycles = self._macs[phase], self._cycles[phase]

    def instrument(self, target: object, ops: dict[str, str]) -> None:
        """Time ``target``'s methods: ``ops`` maps a section to a method name, and each
        call of that method on ``target`` is added to the section from now on."""
        for section, method in ops.items():
            if section not in SECTIONS:
                raise ValueError(f"unknown profile section {section!r}; sections are {SECTIONS}")
            setattr(target, method, self._timed(section, getattr(target, method)))

    def _timed(self, section: str, function: Callable) -> Callable:
        add = self.add

        def timed(*args):
            start = perf_counter()
            result = function(*args)
            add(section, perf_counter() - start)
            return result

        return timed

    def add(self, section: str, seconds: float, calls: int = 1) -> None:
        """Add ``seconds`` to ``section`` of the current phase."""
        self._now_seconds[section] += seconds
        self._now_calls[section] += calls

    def add_matmul(self, kind: str, seconds: float, macs: int, cycles: int | None,
                   calls: int = 1) -> None:
        """Record ``calls`` backend matmuls of layer ``kind`` (cycles: hardware backends only)."""
        section = _MATMUL_SECTION[kind]
        self._now_seconds[section] += seconds
        self._now_calls[section] += calls
        self._now_macs[kind] += macs
        if cycles is not None:
            self._now_cycles[kind] += cycles

    def report(self, phase: str, tokens: int, wall_seconds: float) -> PhaseReport:
        """Totals of ``phase`` with ``other`` = ``wall_seconds`` - recorded time."""
        seconds = dict(self._seconds[phase])
        seconds["other"] = max(0.0, wall_seconds - sum(seconds.values()))
        return PhaseReport(phase, tokens, wall_seconds, seconds, dict(self._calls[phase]),
                           dict(self._macs[phase]), dict(self._cycles[phase]))


def format_table(report: PhaseReport) -> str:
    """A fixed-width table: ms/token, share of wall time and calls/token per section."""
    tokens = max(report.tokens, 1)
    lines = [f"{report.phase}: {report.tokens} tokens in {report.wall_seconds * 1e3:.1f} ms "
             f"({report.tokens_per_second:.2f} tok/s)",
             f"  {'op':<22}{'ms/token':>10}{'share':>8}{'calls/tok':>11}{'GMAC/s':>9}"
             f"{'cycles/tok':>12}"]
    for name, seconds in report.seconds.items():
        if seconds == 0.0 and name != "other":
            continue
        kind = name[len("matmul "):] if name.startswith("matmul ") else None
        rate = (f"{report.macs[kind] / seconds / 1e9:9.1f}" if kind and seconds > 0 else " " * 9)
        cycles = (f"{report.cycles[kind] / tokens:12.0f}" if kind and report.cycles[kind]
                  else " " * 12)
        calls = report.calls.get(name, 0)
        lines.append(f"  {name:<22}{seconds / tokens * 1e3:10.3f}"
                     f"{100 * seconds / report.wall_seconds if report.wall_seconds else 0:7.1f}%"
                     f"{calls / tokens:11.1f}{rate}{cycles}")
    lines.append(f"  {'total':<22}{report.wall_seconds / tokens * 1e3:10.3f}{100.0:7.1f}%")
    lines.append(f"  host (non-matmul) time: {report.host_seconds / tokens * 1e3:.3f} ms/token; "
                 f"matmul: {report.matmul_seconds / tokens * 1e3:.3f} ms/token")
    return "\n".join(lines)
