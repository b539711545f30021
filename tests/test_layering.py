"""The import layering of the tree: who may import whom (host/README.md draws it).

Every import in hdl/, host/, sim/ and gen/ is read from the source (``ast``, lazy
imports inside functions included, relative imports resolved), then held to the rules:

- ``hdl.spec`` imports only the standard library: the host reads it on a board
  without Amaranth.
- ``hdl`` imports nothing from ``host``, ``sim`` or ``gen``.
- ``host`` imports nothing from ``sim`` or ``gen``: no package cycle with ``sim``,
  whose testbenches use ``host``'s golden model.
- The LLM side (``host.llm``) never imports the driver, the bus, the hardware backend
  or a platform; it reaches the accelerator only through ``host.accel.backend``.
- The accelerator side (``host.accel``) imports nothing from ``host.llm``,
  ``host.platforms`` or ``host.perf``; the platforms nothing from ``host.llm``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("hdl", "host", "sim", "gen")

# (importer prefix, forbidden prefixes, why)
RULES = [
    ("hdl", ("host", "sim", "gen"), "hdl imports nothing from host, sim or gen"),
    ("host", ("sim", "gen"), "host imports nothing from sim or gen"),
    ("host.llm", ("host.accel.driver", "host.accel.bus", "host.accel.hardware", "host.platforms"),
     "the LLM side never imports the driver, bus or platforms"),
    ("host.accel", ("host.llm", "host.platforms", "host.perf", "host.serve"),
     "the accelerator side knows nothing about LLMs or platforms"),
    ("host.llm", ("host.serve",), "the LLM side knows nothing about the HTTP server above it"),
    ("host.platforms", ("host.llm", "host.perf"), "platforms know nothing about LLMs"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Every module ``source`` imports, as absolute names (relative ones resolved)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            found.add(stem)
            found.update(f"{stem}.{alias.name}" for alias in node.names)   # submodules
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(module: str, imported: set[str]) -> list[str]:
    """The rules ``module`` breaks by importing ``imported``."""
    broken = []
    for importer, forbidden, why in RULES:
        if _within(module, importer):
            broken += [f"{module} imports {name}: {why}" for name in sorted(imported)
                       if any(_within(name, prefix) for prefix in forbidden)]
    if _within(module, "hdl.spec"):
        broken += [f"{module} imports {name}: hdl.spec imports only the standard library"
                   for name in sorted(imported)
                   if name.split(".")[0] not in sys.stdlib_module_names and not _within(name, "hdl.spec")]
    return broken


def tree() -> dict[str, set[str]]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = module_name(path)
            modules[name] = imports_of(path.read_text(), name, path.name == "__init__.py")
    return modules


def test_the_tree_keeps_its_layers():
    modules = tree()
    assert len(modules) > 80 and "host.llm.transformer" in modules and "hdl.spec.job" in modules
    broken = [line for name, imported in modules.items() for line in violations(name, imported)]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("module, source", [
    ("host.llm.generate", "from ..accel.driver import Driver"),
    ("host.llm.linear", "def f():\n    from host.platforms import sim"),
    ("host.llm.quant", "import host.accel.bus"),
    ("host.platforms.sim", "from sim import cosim"),
    ("host.accel.cycles", "from ..llm.layers import LAYER_KINDS"),
    ("hdl.top", "from host.accel.pack import pack_weights"),
    ("hdl.spec.job", "import numpy as np"),
    ("hdl.spec.config", "from ..top import SystoleTop"),
])
def test_a_forbidden_import_is_caught(module, source):
    """The checker itself: each of these imports, added to that module, fails the test."""
    assert violations(module, imports_of(source, module, is_package=False))


def test_allowed_imports_pass():
    for module, source in [("host.llm.linear", "from ..accel.backend import IntBackend"),
                           ("host.platforms.sim", "from ..accel.driver import Driver"),
                           ("hdl.spec.job", "from .regmap import ErrorCode\nimport random"),
                           ("sim.systole_tb", "from host.accel.golden import golden_matmul")]:
        assert violations(module, imports_of(source, module, is_package=False)) == [], source
