"""The `gancraft` command: a click group whose subcommands live one per module in this package."""

from __future__ import annotations

import importlib
import importlib.util
import signal
import sys

from ..runtime import configure_openmp

configure_openmp()  # first: OpenMP reads its environment only once, when torch loads it

import click  # noqa: E402

from .. import __version__  # noqa: E402
from ..errors import GancraftError  # noqa: E402

# name -> module in gancraft.cli; each module defines `command`
COMMANDS = {
    "inspect": "inspect_cmd",
    "convert": "convert",
    "sample": "sample",
    "render": "render",
    "average": "average",
    "blend-layers": "blend_layers",
    "sefa": "sefa",
    "direction": "direction",
    "train": "train",
    "root": "root",
    "finetune": "finetune",
    "expand": "expand",
    "hyper": "hyper",
    "fid": "fid",
    "weights": "weights",
}

# commands that only move tensors between files keep glibc's allocator defaults, so that freed
# memory goes back to the system during long streaming merges
_FILE_ONLY = {"inspect", "convert", "average", "blend-layers"}


def _available() -> dict[str, str]:
    return {n: m for n, m in COMMANDS.items() if importlib.util.find_spec(f"gancraft.cli.{m}") is not None}


class GancraftGroup(click.Group):
    """Loads subcommands on demand and turns user errors into one line and exit code 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_available())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = _available().get(name)
        if module is None:
            return None
        from .types import check_numbers

        return check_numbers(importlib.import_module(f"gancraft.cli.{module}").command)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GancraftError as exc:
            sub = ctx.invoked_subcommand or ""
            from ..io_util import display_text

            click.echo(f"gancraft{(' ' + sub) if sub else ''}: error: {display_text(str(exc))}", err=True)
            raise click.exceptions.Exit(2) from None
        except KeyboardInterrupt:
            click.echo("gancraft: interrupted; no partial output was kept", err=True)
            raise click.exceptions.Exit(130) from None


@click.group(cls=GancraftGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gancraft")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Read, merge, edit and evaluate pretrained GAN generators (StyleGAN2 family).

    Every command reads checkpoint, latent and image files and writes new ones, printing the
    paths it wrote on stdout (logs and progress go to stderr), so pipelines are plain shell
    scripts and Makefiles. Checkpoints may be gancraft safetensors, rosinality .pt or NVIDIA
    .pkl files; the format is detected from the content, and nothing in a file is executed.

    StyleGAN3 models (NVIDIA's configs T and R) can be inspected, sampled, rendered, averaged,
    blended, factorised with sefa, scored with fid and converted to native. Refused for them: the
    training commands (train, root, finetune, expand, hyper), domain vectors, --precision mixed or
    bf16 (they run in fp32 only) and export to rosinality or NVIDIA pickles.

    Commands that run networks keep large freed memory blocks for reuse instead of returning
    them to the system after every layer (glibc; faster CPU generation and training).
    GANCRAFT_MALLOC=system keeps the C library's defaults.
    """
    if ctx.invoked_subcommand not in _FILE_ONLY:
        from ..runtime import keep_freed_memory

        keep_freed_memory()


def _terminate(signum, frame):
    # turn SIGTERM into an exception so that atomic writes remove their temporary files
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="gancraft")


if __name__ == "__main__":
    sys.exit(main())
