"""``build.tcl``: the one Vivado build flow both boards share (``templates/build.tcl.j2``).

The script checks that the board files are installed, sources the IP packaging
scripts, creates the project for the board's part and board part, adds the
constraints and the block design, synthesizes and implements (the run writes the
bitstream), then gates on timing: a negative (or missing) WNS or WHS is an ``error``
before ``systole.bit`` is copied out or ``systole.xsa`` written. After them come the board's own outputs
(the ``outputs`` block of ``templates/<board>/build.tcl.j2``).
"""

from __future__ import annotations

from hdl.spec.boards import Board
from hdl.spec.config import AccelConfig

from .render import render

__all__ = ["build_tcl"]


def build_tcl(board: Board, config: AccelConfig, *, ips: list[str], xdc: str | None = None,
              impl_xdc: str | None = None, scoped_xdc: dict[str, str] | None = None) -> str:
    """``build.tcl`` for ``board``: packages ``ips`` (``ip/package_<name>.tcl``), adds ``xdc``
    and ``impl_xdc`` (read in implementation only), and each ``{path: module}`` of
    ``scoped_xdc`` read in implementation only, scoped to the cells of that module
    (``SCOPED_TO_REF``: its net names are the module's own).

    Part, board part and project name come from ``board``; the script fails (exit
    status 1) on any error, timing not met included.
    """
    return render(f"{board.name}/build.tcl.j2", board=board, config=config, ips=ips, xdc=xdc, impl_xdc=impl_xdc,
                  scoped_xdc=scoped_xdc or {})
