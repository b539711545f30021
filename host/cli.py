"""The error boundary and option types shared by every command-line entry point.

``@entry`` wraps a ``main(argv) -> int`` so that it ends in one of four ways:

- it returns: its own status;
- ``SystoleError``, ``OSError`` or ``MemoryError`` (a user's mistake or the
  environment): status 2 and one line, ``error: <message>``;
- Ctrl-C (``KeyboardInterrupt``): status 130 and ``interrupted`` (``main`` may first
  print what it had done, then re-raise);
- anything else is a bug: status 1, the traceback, then one line saying it is a bug.

With ``SYSTOLE_DEBUG=1`` in the environment, the one-line errors keep their traceback
too (printed before the line), to see where deep inside a load or a transfer it failed.

A closed stdout (``... | head``) ends quietly with status 0: the reader has
everything it asked for.

``ArgumentParser`` prints a bad option as one line too (argparse's own prints the
usage first). The option types (``finite_float``, ``positive_float``,
``unit_fraction``, ``int_in``, ``out_dir``) refuse NaN, infinities, out-of-range numbers and unusable
output folders while the command line is parsed, before any work starts and before
anything is written. This module imports only the standard library.
"""

from __future__ import annotations

import argparse
import errno
import functools
import math
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable, Sequence

from .errors import SystoleError, UsageError

__all__ = ["ArgumentParser", "entry", "run", "describe_os_error", "finite_float", "positive_float",
           "nonnegative_float", "unit_fraction", "int_in", "out_dir", "UsageError"]

EXIT_USER = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad option reported in one line that points at ``--help``."""

    def error(self, message: str):
        self.exit(EXIT_USER, f"{self.prog}: error: {message} (see --help)\n")


def describe_os_error(error: OSError) -> str:
    """``OSError`` as one line naming the file and, for the common cases, the remedy."""
    where = f" ({error.filename})" if error.filename else ""
    what = error.strerror or str(error)
    hint = {errno.ENOSPC: "; free some space or point the output elsewhere",
            errno.EACCES: "; check the permissions", errno.EROFS: "; the file system is read-only",
            errno.ENOENT: ""}.get(error.errno, "")
    return f"{what}{where}{hint}"


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Call ``main(argv)`` inside the boundary; return the exit status."""
    try:
        return int(main(argv) or 0)
    except SystemExit as done:     # argparse's --help and its one-line errors
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return EXIT_BUG
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SystoleError as error:
        _debug_traceback()
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER
    except OSError as error:
        _debug_traceback()
        print(f"error: {describe_os_error(error)}", file=sys.stderr)
        return EXIT_USER
    except MemoryError:
        _debug_traceback()
        print("error: out of memory; try a smaller model, context or --max-new-tokens", file=sys.stderr)
        return EXIT_USER
    except Exception as error:   # a bug: keep the traceback, say so in the last line
        traceback.print_exc()
        print(f"error: this is a bug in Systole ({type(error).__name__} above), not a problem "
              "with your input; please report it with the command line", file=sys.stderr)
        return EXIT_BUG


def _debug_traceback() -> None:
    if os.environ.get("SYSTOLE_DEBUG", "").strip().lower() in ("1", "yes", "on", "true"):
        traceback.print_exc()


def entry(main: Callable[[Sequence[str] | None], int | None]) -> Callable[[Sequence[str] | None], int]:
    """Decorate a ``main(argv, **options)``: calling it runs it inside ``run``; the status."""

    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None, **options) -> int:
        return run(functools.partial(main, **options) if options else main, argv)

    return wrapped


# -- option types (argparse ``type=``): raise ArgumentTypeError, printed as one line ----
def finite_float(text: str) -> float:
    """A float that is neither NaN nor infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def nonnegative_float(text: str) -> float:
    """A finite float >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def unit_fraction(text: str) -> float:
    """A finite float in (0, 1]: a fraction or a probability mass."""
    value = finite_float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1]")
    return value


def int_in(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An option type for an integer in ``[low, high]`` (either end may be open)."""

    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = (f"in [{low}, {high}]" if low is not None and high is not None
                      else f">= {low}" if low is not None else f"<= {high}")
            raise argparse.ArgumentTypeError(f"{value} must be {bounds}")
        return value

    parse.__name__ = "integer"      # argparse names the type in its messages
    return parse


def out_dir(text: str) -> Path:
    """A folder that exists and is writable, or can be created inside one that is.

    Nothing is left behind here (the probe is an anonymous temporary file): the
    generator makes the folder when it writes, after every other option has been checked.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("the output folder must not be empty")
    path = Path(text).expanduser()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: {probe} is a file, not a folder")
    try:        # os.access() says yes to root even on a read-only mount: try for real
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {probe} is not writable "
                                         f"({error.strerror})") from None
    return path
