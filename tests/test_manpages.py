"""man/ is generated from the CLI; this keeps it in sync (regenerate: python -m gancraft.cli.manpage man/)."""

import inspect
import os
import shutil
import subprocess
from pathlib import Path

import click

from gancraft.cli.main import cli
from gancraft.cli.manpage import pages

MAN = Path(__file__).resolve().parent.parent / "man"


def test_man_pages_match_cli():
    want = pages()
    have = {p.name for p in MAN.glob("gancraft*.1")}
    assert have == set(want), "man/ is out of date: run python -m gancraft.cli.manpage man/"
    for name, text in want.items():
        assert (MAN / name).read_text() == text, f"man/{name} is out of date: run python -m gancraft.cli.manpage man/"


def test_every_subcommand_has_a_page_with_options():
    want = pages()
    assert "gancraft.1" in want
    for name, text in want.items():
        assert ".SH SYNOPSIS" in text and ".SH DESCRIPTION" in text
        if name != "gancraft.1":
            assert ".SH OPTIONS" in text


def _no_rewrap_blocks(cmd: click.Command) -> list[list[str]]:
    """The lines of each of click's no-rewrap (\\b) paragraphs in a command's help and epilog."""
    blocks = []
    for text in (cmd.help, cmd.epilog):
        for para in inspect.cleandoc(text or "").split("\n\n"):
            if para.startswith("\b\n"):
                blocks.append([line.strip() for line in para[2:].splitlines() if line.strip()])
    return blocks


def _commands() -> dict[str, click.Command]:
    """Page file name -> the command it documents."""
    ctx = cli.make_context("gancraft", [], resilient_parsing=True)
    out = {"gancraft.1": cli}
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        out[f"gancraft-{name}.1"] = cmd
        if isinstance(cmd, click.Group):
            sub_ctx = cmd.make_context(name, [], parent=ctx, resilient_parsing=True)
            for sub in cmd.list_commands(sub_ctx):
                if not cmd.get_command(sub_ctx, sub).hidden:
                    out[f"gancraft-{name}-{sub}.1"] = cmd.get_command(sub_ctx, sub)
    return out


def _rendered_lines(page: Path) -> list[str]:
    """The page as a reader sees it (groff's man output), lines stripped; without groff, the text
    of its unfilled (.nf ... .fi) regions, which is what groff prints line for line."""
    if shutil.which("groff"):
        out = subprocess.run(
            ["groff", "-k", "-man", "-Tutf8", "-P-cbou", str(page)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "GROFF_NO_SGR": "1"},
        ).stdout
        return [" ".join(line.split()).replace("\u2212", "-").replace("\u2010", "-") for line in out.splitlines()]
    lines, unfilled = [], False
    for line in page.read_text().splitlines():
        if line in (".nf", ".fi"):
            unfilled = line == ".nf"
        elif unfilled:
            lines.append(" ".join(line.replace("\\-", "-").replace("\\&", "").replace("\\\\", "\\").split()))
    return lines


def test_examples_render_one_per_line_in_every_page():
    """Every no-rewrap block of --help (the Examples) reads as the same lines in the rendered page,
    not as one filled paragraph."""
    checked = 0
    for name, cmd in _commands().items():
        rendered = _rendered_lines(MAN / name)
        for block in _no_rewrap_blocks(cmd):
            want = [" ".join(line.split()) for line in block]
            starts = [i for i, line in enumerate(rendered) if line == want[0]]
            assert any(rendered[i : i + len(want)] == want for i in starts), (
                f"man/{name}: the block starting {want[0]!r} is not rendered line for line"
            )
            checked += 1
    assert checked >= 15  # every subcommand page with examples, not a vacuous pass
