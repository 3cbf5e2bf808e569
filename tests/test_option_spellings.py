"""One spelling per concept in every command's --help; the spellings of earlier versions still parse."""

from __future__ import annotations

import click
import numpy as np
import pytest
from PIL import Image

from gancraft.cli.options import DOWNLOAD_CLIP_ALIASES, TRUNC_ALIASES

from conftest import cli_fails, cli_invoke, cli_ok
from hostile_cli import commands

OLD = (*TRUNC_ALIASES, *DOWNLOAD_CLIP_ALIASES)
COMMANDS = commands()


def shown_names(command: click.Command) -> set[str]:
    """Every option name --help prints for `command`."""
    ctx = click.Context(command, info_name=command.name)
    names = set()
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None:
            names.update(word.rstrip(",") for word in record[0].split() if word.startswith("--"))
    return names


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_current_spellings_only(name):
    help_text = cli_invoke(*name.split(), "--help").output
    for old in OLD:
        assert old not in help_text.split(), f"{name} --help shows {old}"


def test_every_truncation_and_download_option_uses_one_spelling():
    truncation = {n for n, c in COMMANDS.items() if "--trunc" in shown_names(c)}
    download = {n for n, c in COMMANDS.items() if "--download-clip" in shown_names(c)}
    assert truncation == {
        "sample",
        "render",
        "fid compare",
        "fid stats",
        "direction",
        "sefa",
        "root",
        "finetune",
        "hyper",
    }
    assert download == {"sample", "render", "direction", "expand", "hyper", "finetune"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_batch_option_is_at_least_one(name):
    for param in COMMANDS[name].params:
        if "--batch" in param.opts:
            assert isinstance(param.type, click.IntRange) and param.type.min == 1, name


@pytest.mark.parametrize(
    ("name", "old", "new", "value"),
    [
        ("sefa", "--truncation-psi", "--trunc", "0.5"),
        ("direction", "--truncation-psi", "--trunc", "0.5"),
        ("root", "--truncation", "--trunc", "0.7"),
        ("finetune", "--truncation", "--trunc", "0.7"),
        ("hyper", "--truncation", "--trunc", "0.7"),
        ("direction", "--clip-download", "--download-clip", None),
        ("expand", "--clip-download", "--download-clip", None),
    ],
)
def test_old_spelling_sets_the_same_parameter(name, old, new, value):
    command = COMMANDS[name]
    extra = [value] if value is not None else []

    def parsed(option: str) -> dict:
        return command.make_context(name, [option, *extra], resilient_parsing=True).params

    before, after = parsed(old), parsed(new)
    assert before == after
    default = command.make_context(name, [], resilient_parsing=True).params
    assert before != default  # the old spelling reached the option, not just parsed


def test_old_truncation_spelling_gives_the_same_images(ckpt, tmp_path):
    new = cli_ok("sample", ckpt, "--seeds", "1", "--trunc", "0.3", "-o", tmp_path / "new")
    old = cli_ok("sample", ckpt, "--seeds", "1", "--truncation-psi", "0.3", "-o", tmp_path / "old")
    plain = cli_ok("sample", ckpt, "--seeds", "1", "-o", tmp_path / "plain")
    assert np.array_equal(np.asarray(Image.open(new[0])), np.asarray(Image.open(old[0])))
    assert not np.array_equal(np.asarray(Image.open(new[0])), np.asarray(Image.open(plain[0])))


def test_a_bad_value_under_an_old_spelling_names_the_current_one(ckpt, tmp_path):
    result = cli_invoke("sample", ckpt, "--seeds", "0", "--truncation", "nan", "-o", tmp_path / "x")
    assert result.exit_code == 2 and "--trunc 'nan': expected a finite number" in result.stderr


def test_refusals_name_an_option_by_its_current_spelling(ckpt, tmp_path):
    line = cli_fails("finetune", ckpt, "--prompt", "toon=a cartoon", "--truncation", "0.5", "-o", tmp_path / "x.st")
    assert "--trunc belongs to adversarial fine-tuning" in line
