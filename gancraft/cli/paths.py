"""File arguments as shell users write them: '-' for standard input/output, and default output names.

'-' as an input reads the whole of standard input into a temporary file (the format is found
from its bytes); '-' as an output makes the command write its file into a temporary folder and
copy the bytes to standard output once the file is complete, so a failed command sends nothing
down the pipe. While standard output carries data, the paths a command would print there go to
standard error instead. Both temporary files are removed when the command ends.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import click

from ..errors import GancraftError
from ..io_util import STDIO, spool_stream

_META = "gancraft.stdio"


class _Stdio:
    """What one command invocation did with its standard streams."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.stdin: Path | None = None
        self.stdout: Path | None = None

    def tmp(self) -> Path:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="gancraft-stdio-"))
        return self.folder

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _state(create: bool = True) -> _Stdio | None:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    root = ctx.find_root()
    state = root.meta.get(_META)
    if state is None and create:
        state = root.meta[_META] = _Stdio()
        root.call_on_close(state.close)
    return state


def binary_stream(name: str):
    """sys.stdin's or sys.stdout's bytes (looked up on each call: test runners replace them)."""
    return getattr(sys, name).buffer


def read_stdin() -> Path:
    """Standard input kept in a temporary file; refused a second time (a stream is read once)."""
    state = _state()
    if state.stdin is not None:
        raise GancraftError("'-' (standard input) is given twice; a stream can be read only once")
    stream = binary_stream("stdin")
    if stream.isatty():
        raise GancraftError("'-' reads standard input, but it is a terminal; pipe a file in (... | gancraft ...)")
    state.stdin = spool_stream(stream, state.tmp())
    return state.stdin


def stdout_target(suffix: str) -> Path:
    """A temporary path whose file `emit_path` copies to standard output."""
    state = _state()
    if state.stdout is not None:
        raise GancraftError("'-' (standard output) is given twice; only one file can go there")
    if binary_stream("stdout").isatty():
        raise GancraftError(
            "'-o -' writes binary data to standard output, which is a terminal; "
            "redirect or pipe it (> file, | gancraft ...) or give a file name"
        )
    state.stdout = state.tmp() / f"stdout{suffix}"
    return state.stdout


def stdout_taken() -> bool:
    state = _state(create=False)
    return state is not None and state.stdout is not None


def is_stdout(path: str | Path) -> bool:
    state = _state(create=False)
    return state is not None and state.stdout is not None and str(path) == str(state.stdout)


def send_to_stdout(path: str | Path) -> None:
    out = binary_stream("stdout")
    with open(path, "rb") as fh:
        shutil.copyfileobj(fh, out, 1 << 20)
    out.flush()


class InputFile(click.Path):
    """A file to read; '-' is standard input (a file named '-' is './-')."""

    def __init__(self, dir_okay: bool = False) -> None:
        super().__init__(dir_okay=dir_okay)

    def convert(self, value, param, ctx):
        if value == STDIO:
            return str(read_stdin())
        return super().convert(value, param, ctx)


class OutputFile(click.Path):
    """A file to write; '-' is standard output. `suffix` is the extension its writer expects."""

    def __init__(self, suffix: str = "", dir_okay: bool = False) -> None:
        super().__init__(dir_okay=dir_okay)
        self.suffix = suffix

    def convert(self, value, param, ctx):
        if value == STDIO:
            return str(stdout_target(self.suffix))
        return super().convert(value, param, ctx)


class NamedOutput(click.Path):
    """An output that other files are named after (a training run's folder), so it cannot be '-'."""

    def __init__(self, file_okay: bool = True, dir_okay: bool = False) -> None:
        super().__init__(file_okay=file_okay, dir_okay=dir_okay)

    def convert(self, value, param, ctx):
        if value == STDIO:
            raise GancraftError(
                "-o -: this command names its run folder after the output, so it needs a file "
                "name (a file called '-' is ./-)"
            )
        return super().convert(value, param, ctx)


def spec_with_stdin(spec: str) -> str:
    """'-:REST' (a directions file on standard input, then its index) with '-' read into a file."""
    if spec.startswith(STDIO + ":"):
        return f"{read_stdin()}{spec[len(STDIO) :]}"
    return spec


def stem(path: str | Path) -> str:
    """The name part of an input for derived output names; 'stdin' for '-'."""
    p = Path(path)
    state = _state(create=False)
    if state is not None and state.stdin is not None and p == state.stdin:
        return "stdin"
    name = p.name
    for ext in (".safetensors", ".st", ".pt", ".pth", ".pkl", ".npz"):
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return p.stem or p.name or "out"


def derived_name(stems: list[str], tag: str, ext: str = ".st") -> str:
    """'a+b.TAG.st' in the current folder: the inputs' names (three at most, then a count) and the operation."""
    shown = stems if len(stems) <= 3 else [*stems[:2], f"{len(stems) - 2}more"]
    return "+".join(shown) + (f".{tag}" if tag else "") + ext
