"""The one base class of the errors a user can act on.

A ``SystoleError`` is a user's mistake (a bad option, a damaged model file) or a
failure of the environment (a board that does not answer, a full disk). It carries a
message that names the thing at fault and, where there is one, the remedy: the
command-line boundary (``host.cli.run``) prints it as one line and exits with
status 2. Any other exception is a bug and keeps its traceback.

Each layer derives its own errors from it, next to the builtin they refine
(``ModelFileError(SystoleError, ValueError)``), so ``except ValueError`` in older
callers keeps working. This module imports only the standard library: ``gen`` and
``hdl``-side tools use it without numpy.
"""

from __future__ import annotations

__all__ = ["SystoleError", "UsageError"]


class SystoleError(Exception):
    """A user's mistake or an environment failure; its message is one complete line."""


class UsageError(SystoleError, ValueError):
    """An option or input that cannot work, found before any work starts."""
