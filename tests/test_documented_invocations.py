"""Every gancraft invocation that the README, the design notes and the commands' own --help (the man
pages) show must parse as written: no unknown option, no missing -o, no bad value type.

The pipelines among them run for real on tiny models in test_pipelines.py.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from gancraft.cli.main import cli

from conftest import cli_invoke

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT.parent / "shared" / "DESIGN.md"
_SEPARATORS = {"|", "||", "&&", ";"}
_REDIRECTS = {">", ">>", "<", "2>", "2>&1"}


def _joined_lines(text: str) -> list[str]:
    """Lines with shell continuations ('\\' at the end) joined."""
    out, pending = [], ""
    for line in text.splitlines():
        line = line.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    return out


def invocations(text: str) -> list[list[str]]:
    """The gancraft argument lists in `text`: each command of each pipeline, redirections dropped."""
    found = []
    for line in _joined_lines(text):
        line = line.strip().removeprefix("$ ")
        if "gancraft " not in line or "$(" in line or "`" in line:
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        segment: list[str] = []
        for tok in [*tokens, ";"]:
            if tok not in _SEPARATORS:
                segment.append(tok)
                continue
            # a command is 'gancraft ...' or 'torchrun ... -m gancraft ...'; anything else is prose or output
            at = segment.index("gancraft") if "gancraft" in segment else -1
            if at == 0 or (at > 0 and segment[at - 1] == "-m"):
                args = segment[at + 1 :]
                # usage lines ('fid A B [OPTIONS]') name placeholders, not files
                if args and not any(re.fullmatch(r"\[?[A-Z][A-Z_]*\]?(\.[a-z]+)?", a) for a in args):
                    found.append(_without_redirects(args))
            segment = []
    return found


def _without_redirects(args: list[str]) -> list[str]:
    out, skip = [], False
    for tok in args:
        if skip:
            skip = False
        elif tok in _REDIRECTS:
            skip = tok != "2>&1"
        elif not re.fullmatch(r"\d?>>?\S+", tok):
            out.append(tok)
    return out


def _fenced_blocks(markdown: str) -> str:
    return "\n".join(re.findall(r"```[a-z]*\n(.*?)```", markdown, flags=re.S))


def _indented_blocks(markdown: str) -> str:
    return "\n".join(line[4:] for line in markdown.splitlines() if line.startswith("    "))


def _help_texts() -> dict[str, str]:
    """Each command's --help (and its subcommands'): what the man pages are generated from."""
    texts = {}
    ctx = click.Context(cli, info_name="gancraft")
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        subs = [(name, cmd)]
        if isinstance(cmd, click.Group):
            subs += [(f"{name} {s}", c) for s, c in cmd.commands.items()]
        for label, c in subs:
            texts[label] = "\n".join(filter(None, [c.help, c.epilog]))
    return texts


def _cases() -> list[tuple[str, list[str]]]:
    cases = [("README.md", args) for args in invocations(_fenced_blocks((ROOT / "README.md").read_text()))]
    if DESIGN.is_file():
        cases += [("DESIGN.md", args) for args in invocations(_indented_blocks(DESIGN.read_text()))]
    for label, text in _help_texts().items():
        cases += [(f"gancraft {label} --help", args) for args in invocations(text)]
    return cases


CASES = _cases()


def test_the_documents_show_invocations_of_every_command():
    shown = {args[0] for _, args in CASES}
    ctx = click.Context(cli, info_name="gancraft")
    assert set(cli.list_commands(ctx)) <= shown
    # the issue's own pipelines are among them
    assert ["blend-layers", "--low", "-", "--high", "c.st", "-o", "mix.st"] in [a for _, a in CASES]


def test_extraction_handles_pipes_continuations_and_redirections():
    text = "cat x | gancraft average a.st - -o - \\\n  --force > out.st  # comment\ntorchrun -m gancraft fid a b"
    assert invocations(text) == [["average", "a.st", "-", "-o", "-", "--force"], ["fid", "a", "b"]]


@pytest.mark.parametrize("where,args", CASES, ids=[f"{w}: {' '.join(a)}"[:90] for w, a in CASES])
def test_documented_invocation_parses(where, args, monkeypatch, tmp_path):
    original = click.Command.invoke

    def parse_only(self, ctx):
        # groups go on to their subcommand; a command stops once its arguments are parsed
        return original(self, ctx) if isinstance(self, click.Group) else None

    monkeypatch.setattr(click.Command, "invoke", parse_only)
    monkeypatch.chdir(tmp_path)
    if "--resume" in args:  # the one option that checks its folder exists while parsing
        (tmp_path / args[args.index("--resume") + 1]).mkdir(parents=True)
    result = cli_invoke(*args, input=b"bytes on stdin")
    assert result.exit_code == 0, f"{where}: gancraft {shlex.join(args)}\n{result.output}"
