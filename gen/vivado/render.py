"""The templates of the Vivado flows (``gen/vivado/templates/``) and how they are filled.

Jinja2 with ``StrictUndefined``: a template that names a variable the flow did not
pass fails with ``jinja2.UndefinedError`` instead of writing an empty word into TCL.
Blocks trim their own line (``trim_blocks``/``lstrip_blocks``), so a ``{% for %}``
line leaves nothing in the output; files end with the template's final newline.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import jinja2

__all__ = ["tcl_word", "render", "write_files"]


def tcl_word(text: object) -> str:
    """A braced Tcl word of ``text`` on one line, its braces, brackets and backslashes removed.

    For prose (descriptions from the register map) and plain values (``{128}``): the
    result is always a single word that Tcl neither substitutes nor splits.
    """
    return "{" + re.sub(r"[{}\\\[\]]", "", str(text).replace("\n", " ")) + "}"


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("gen.vivado", "templates"),
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["tcl_word"] = tcl_word
    return env


def render(template: str, **context: object) -> str:
    """The text of ``templates/<template>`` filled with ``context``; a missing variable raises."""
    return _environment().get_template(template).render(**context)


def write_files(out: Path, files: dict[str, str]) -> list[Path]:
    """Write ``{relative name: text}`` under ``out`` (parents created); the paths in order."""
    written = []
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
