"""Errors that reach the user as one clear line and exit code 2."""

from __future__ import annotations


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
