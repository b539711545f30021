"""``make demo``: the main job, end to end, as far as the kit goes today.

1. Generate the Verilog and register artefacts for the chosen preset.
2. Run Gemma 3 270M through ``generate()`` on the accelerator's golden model and
   print the text, tok/s and the per-op profile.
"""

from __future__ import annotations

import sys

from host.cli import ArgumentParser, entry

from .verilog import REPO, add_config_args, config_from_args, write_artefacts


@entry
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gen.demo", description=__doc__.splitlines()[0])
    add_config_args(parser)
    args = parser.parse_args(argv)
    config = config_from_args(args)
    print(f"== Systole demo: preset {config.name} ({config.summary})")
    for path in write_artefacts(config, REPO / "build" / config.name):
        print(f"wrote {path.relative_to(REPO)}")
    from host.llm.generate import demo as run_generate_demo

    return run_generate_demo(config)


if __name__ == "__main__":
    sys.exit(main())
