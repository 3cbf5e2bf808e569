"""Generate man pages from the click commands, so man/ can never drift from --help.

python -m gancraft.cli.manpage man/
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import click

from .. import __version__
from .main import cli

DATE = "2026-11"  # fixed so regenerating is byte-stable; bump with releases


def _esc(text: str) -> str:
    lines = []
    for line in text.replace("\\", "\\\\").splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line.replace("-", "\\-"))
    return "\n".join(lines)


def _options(cmd: click.Command, ctx: click.Context) -> list[str]:
    out = []
    for param in cmd.get_params(ctx):
        if isinstance(param, click.Argument):
            continue
        rec = param.get_help_record(ctx)
        if rec is None:
            continue
        names, help_text = rec
        out += [".TP", f"\\fB{_esc(names)}\\fR", _esc(help_text or "")]
    return out


def render(cmd: click.Command, name: str, ctx: click.Context, options_from: click.Command | None = None) -> str:
    """One page; `options_from` supplies the options when a group routes to a hidden default command."""
    full = "gancraft" if name == "gancraft" else f"gancraft {name}"
    page = "gancraft" if name == "gancraft" else "gancraft-" + name.replace(" ", "-")
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    # click 8.4+ keeps the docstring's indentation in cmd.help; without removing it, a no-rewrap
    # paragraph starts with spaces before its \b and would be filled like prose
    help_text = inspect.cleandoc(cmd.help or "")
    short = help_text.splitlines()[0] if help_text else ""
    lines = [
        f'.TH "{page.upper()}" 1 "{DATE}" "gancraft {__version__}" "gancraft manual"',
        ".SH NAME",
        f"{_esc(page)} \\- {_esc(short)}",
        ".SH SYNOPSIS",
        f"\\fB{_esc(full)}\\fR {_esc(usage)}",
        ".SH DESCRIPTION",
    ]
    for para in help_text.split("\n\n"):
        if para.startswith("\b\n"):
            # click's no-rewrap marker: keep the lines (examples) as they are, unfilled
            lines += [".PP", ".nf", _esc(para[2:]), ".fi"]
        else:
            lines += [".PP", _esc(" ".join(line.strip() for line in para.splitlines()))]
    opts = _options(options_from or cmd, ctx)
    if opts:
        lines += [".SH OPTIONS", *opts]
    if cmd.epilog:
        lines += [".SH EXAMPLES", ".nf", _esc(click.unstyle(cmd.epilog.replace("\b\n", "")).strip()), ".fi"]
    if isinstance(cmd, click.Group) and name != "gancraft":
        subs = [s for s in cmd.list_commands(ctx) if not cmd.get_command(ctx, s).hidden]
        see_also = ", ".join(f"\\fBgancraft\\-{name}\\-{s}\\fR(1)" for s in subs)
        lines += [".SH SEE ALSO", see_also + ", \\fBgancraft\\fR(1)"]
    elif isinstance(cmd, click.Group):
        lines += [".SH COMMANDS"]
        for sub in cmd.list_commands(ctx):
            subcmd = cmd.get_command(ctx, sub)
            lines += [
                ".TP",
                f"\\fBgancraft {sub}\\fR",
                _esc(subcmd.get_short_help_str(80)),
            ]
        lines += [".SH SEE ALSO", ", ".join(f"\\fBgancraft\\-{s}\\fR(1)" for s in cmd.list_commands(ctx))]
        lines += [
            ".SH SHELL COMPLETION",
            ".PP",
            'bash: eval "$(_GANCRAFT_COMPLETE=bash_source gancraft)"',
            ".br",
            'zsh: eval "$(_GANCRAFT_COMPLETE=zsh_source gancraft)"',
            ".br",
            "fish: _GANCRAFT_COMPLETE=fish_source gancraft | source",
        ]
    else:
        lines += [".SH SEE ALSO", "\\fBgancraft\\fR(1)"]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """File name -> man page text for gancraft(1) and every subcommand."""
    # make_context applies each command's context_settings (e.g. -h as a help option) the way a
    # real invocation does; a bare Context would not, and click caches the help option per command
    root_ctx = cli.make_context("gancraft", [], resilient_parsing=True)
    out = {"gancraft.1": render(cli, "gancraft", root_ctx)}
    for name in cli.list_commands(root_ctx):
        cmd = cli.get_command(root_ctx, name)
        ctx = cmd.make_context(name, [], parent=root_ctx, resilient_parsing=True)
        default = None
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(ctx):
                subcmd = cmd.get_command(ctx, sub)
                sub_ctx = subcmd.make_context(sub, [], parent=ctx, resilient_parsing=True)
                if subcmd.hidden:
                    default = subcmd  # the group's own form (e.g. `fid A B`)
                else:
                    out[f"gancraft-{name}-{sub}.1"] = render(subcmd, f"{name} {sub}", sub_ctx)
        out[f"gancraft-{name}.1"] = render(cmd, name, ctx, options_from=default)
    return out


def write_pages(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, text in pages().items():
        p = folder / fname
        p.write_text(text)
        written.append(p)
    for stale in folder.glob("gancraft*.1"):
        if stale not in written:
            stale.unlink()
    return written


if __name__ == "__main__":
    for p in write_pages(sys.argv[1] if len(sys.argv) > 1 else "man"):
        print(p)
