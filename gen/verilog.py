"""``python -m gen.verilog``: write the Verilog and register artefacts for a configuration.

Outputs go to ``build/<preset>/`` (or ``--out``):

- ``systole_top.v``: the accelerator top (ports ``aclk``, ``aresetn``,
  ``s_axi_ctrl_*``, ``m_axi_dma_*``, ``irq``);
- ``systole_regs.h``, ``systole_regs.py``, ``registers.md``: the register map;
- ``systole_job_vectors.h``: jobs with the error each gets (``gen.job_vectors``), for
  the firmware's ``selftest checkjobs``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hdl.spec.config import PRESETS, AccelConfig, preset
from host.cli import ArgumentParser, UsageError, entry, int_in, out_dir, positive_float

from . import job_vectors
from .regs import c_header, markdown, python_module

REPO = Path(__file__).resolve().parent.parent

__all__ = ["config_from_args", "add_config_args", "write_artefacts", "main"]


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The ``--preset`` and per-field override options shared by every generator."""
    parser.add_argument("--preset", default="kv260", choices=sorted(PRESETS),
                        help="board or test configuration (default: kv260)")
    parser.add_argument("--rows", type=int_in(1), help="override: PE rows")
    parser.add_argument("--bus-bits", type=int_in(8),
                        help="override: DMA data width (cols = weight ports x bus_bits/8)")
    parser.add_argument("--act-buffer-bytes", type=int_in(1), help="override: activation buffer bytes")
    parser.add_argument("--addr-width", type=int_in(1), help="override: DMA address bits")
    parser.add_argument("--clock-mhz", type=positive_float, help="override: target clock")
    clocks = parser.add_mutually_exclusive_group()
    clocks.add_argument("--axi-clock-mhz", type=positive_float,
                        help="override: the AXI masters' own clock (m_axi_aclk)")
    clocks.add_argument("--one-clock", action="store_true",
                        help="override: the AXI masters on aclk (no m_axi_aclk)")


def config_from_args(args: argparse.Namespace) -> AccelConfig:
    """The preset with any overrides applied; ``UsageError`` names a bad value."""
    try:
        return _config_from_args(args)
    except (ValueError, KeyError) as error:
        raise UsageError(f"configuration refused: {error}") from None


def _config_from_args(args: argparse.Namespace) -> AccelConfig:
    config = preset(args.preset)
    changes = {}
    if args.rows is not None:
        changes["rows"] = args.rows
    if args.bus_bits is not None:
        changes["bus_bits"] = args.bus_bits
        changes["cols"] = config.weight_ports * args.bus_bits // 8
    if args.act_buffer_bytes is not None:
        changes["act_buffer_bytes"] = args.act_buffer_bytes
    if args.addr_width is not None:
        changes["addr_width"] = args.addr_width
    if args.clock_mhz is not None:
        changes["clock_mhz"] = args.clock_mhz
    if args.axi_clock_mhz is not None:
        changes["axi_clock_mhz"] = args.axi_clock_mhz
    if args.one_clock:
        changes["axi_clock_mhz"] = None
    if changes:
        changes["name"] = f"{config.name}-custom"
        config = config.replace(**changes)
    return config


def write_artefacts(config: AccelConfig, out: Path) -> list[Path]:
    """Write every artefact for ``config`` under ``out``; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("systole_regs.h", c_header(config)),
                       ("systole_regs.py", python_module(config)),
                       ("registers.md", markdown(config)),
                       ("systole_job_vectors.h", job_vectors.c_header(config))):
        path = out / name
        path.write_text(text)
        written.append(path)
    from hdl.to_verilog import convert
    from hdl.top import SystoleTop
    path = out / "systole_top.v"
    path.write_text(convert(SystoleTop(config), "systole_top"))
    written.append(path)
    return written


@entry
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gen.verilog", description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--out", type=out_dir, help="output directory (default: build/<preset>)")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    out = args.out or REPO / "build" / config.name
    for path in write_artefacts(config, out):
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
