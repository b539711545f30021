"""The CLI of ``gen.vivado``: ``python -m gen.vivado ip|kv260|nexys_video [options]``."""

from __future__ import annotations

import sys

from gen.verilog import REPO, add_config_args, config_from_args
from gen.vivado import TARGETS, default_baud, generate, kv260
from gen.vivado import __doc__ as PACKAGE_DOC
from host.cli import ArgumentParser, entry, int_in, out_dir

__all__ = ["main"]


@entry
def main(argv: list[str] | None = None) -> int:
    """Parse the options, generate the target's files, list them; 0 on success.

    A bad option or a configuration the flow refuses ends in ``parser.error`` (exit 2).
    """
    parser = ArgumentParser(prog="python -m gen.vivado", description=PACKAGE_DOC.splitlines()[0])
    parser.add_argument("target", choices=TARGETS)
    add_config_args(parser)
    parser.add_argument("--out", type=out_dir, help="output directory (default: build/vivado/<target>)")
    parser.add_argument("--baud", type=int_in(1), default=default_baud(),
                        help=f"Nexys Video UART baud rate (default: {default_baud()}, from hdl.spec.boards)")
    parser.add_argument("--udmabuf-mib", type=int_in(1, 2048), default=256, help="KV260 u-dma-buf size in MiB")
    parser.add_argument("--coherent-mib", type=int_in(1, 2048), default=kv260.COHERENT_BYTES >> 20,
                        help="KV260 coherent u-dma-buf (/dev/udmabuf1, A and C with coherent_io) size in MiB "
                             f"(default: {kv260.COHERENT_BYTES >> 20})")
    parser.add_argument("--link", action="store_true", help="ip: also package the systole_link UART bridge")
    args = parser.parse_args(argv)
    explicit = any(a.startswith("--preset") for a in (sys.argv[1:] if argv is None else argv))
    if args.target == "nexys_video" and not explicit:
        args.preset = "nexys_video"
    config = config_from_args(args)
    out = args.out or REPO / "build" / "vivado" / args.target
    try:
        written = generate(args.target, config, out, baud=args.baud, udmabuf_bytes=args.udmabuf_mib << 20,
                           coherent_bytes=args.coherent_mib << 20, link=args.link)
    except ValueError as exc:
        parser.error(str(exc))
    for path in written:
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    if args.target != "ip":
        print(f"next: cd {out} && vivado -mode batch -source build.tcl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
