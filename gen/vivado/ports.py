"""The port list of a module in Amaranth-generated Verilog, for IP packaging and checks."""

from __future__ import annotations

import re

__all__ = ["verilog_ports", "interface_prefixes"]

_PORT_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s*)?([A-Za-z_]\w*)\s*;",
                        re.M)
_INTERFACE = re.compile(r"^([sm]_axi_[a-z0-9]+)_")


def verilog_ports(verilog: str, module: str) -> dict[str, tuple[str, int]]:
    """``{port: (direction, width)}`` of ``module``, in header order.

    Every name of the module header has a declaration, or ``ValueError`` names the
    ones without; a missing module is a ``ValueError`` too.
    """
    start = re.search(rf"^module\s+{re.escape(module)}\s*\(", verilog, re.M)
    if start is None:
        raise ValueError(f"module {module!r} not found in the Verilog")
    end = verilog.find("endmodule", start.end())
    body = verilog[start.end():end]
    header = body[:body.find(");")]
    names = [n.strip() for n in header.replace("\n", " ").split(",") if n.strip()]
    declared = {name: (direction, abs(int(msb) - int(lsb)) + 1 if msb else 1)
                for direction, msb, lsb, name in _PORT_DECL.findall(body) if name in names}
    missing = set(names) - set(declared)
    if missing:
        raise ValueError(f"no declaration found for ports {sorted(missing)} of {module}")
    return {name: declared[name] for name in names}


def interface_prefixes(ports: dict[str, tuple[str, int]]) -> list[str]:
    """The AXI interfaces among ``ports`` (``s_axi_ctrl`` from ``s_axi_ctrl_*``), sorted."""
    return sorted({m.group(1) for name in ports if (m := _INTERFACE.match(name))})
