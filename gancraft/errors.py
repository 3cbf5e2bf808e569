"""Errors that reach the user as one clear line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


class GancraftError(Exception):
    """A problem with the user's input (file, option, value). The CLI prints it and exits 2.

    `field` names the library parameter the problem is about, so that the command line can say
    which of its options that is (`cli.common.naming_options`) while the library's own message
    speaks of the value only.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CheckpointError(GancraftError):
    """A checkpoint that cannot be read, is unsafe, or cannot be rebuilt."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for quoting a
    third-party failure inside one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_script(main: Callable[[], int | None]) -> None:
    """Run the `main` of a script in examples/ or recipes/ as the CLI runs a command: a GancraftError,
    or a SystemExit carrying a message, becomes one line 'SCRIPT: message' on stderr and exit 2."""
    prog = Path(sys.argv[0]).name
    try:
        code = main()
    except GancraftError as exc:
        message = str(exc)
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise
        message = exc.code
    else:
        sys.exit(code)
    print(f"{prog}: {message}", file=sys.stderr)
    sys.exit(2)
