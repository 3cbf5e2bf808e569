"""The command line under careless numbers: every command x every numeric option x hostile values.

The full table (all of hostile_cli.HOSTILE) runs from `make fuzz`; here every option gets the
values that used to end in tracebacks or unbounded allocations.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from gancraft.cli.types import MAX_COUNT, BoundedInt, FiniteFloat, FiniteFloatRange
from gancraft.metrics import clip as clip_mod

import hostile_cli
from conftest import cli_fails, make_tiny_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAST_VALUES = ("nan", "1000000000000", "")
TINY_CLIP = dict(
    embed_dim=16,
    vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
    text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tiny = clip_mod.load_clip("ViT-B-32", random_init=True, seed=0, **TINY_CLIP)
    with pytest.MonkeyPatch.context() as mp:
        # hyper needs CLIP, whose weights this machine lacks: a random tiny one stands in
        mp.setattr(clip_mod, "load_clip", lambda *a, **k: tiny)
        yield hostile_cli.make_files(tmp_path_factory.mktemp("hostile"), make_tiny_checkpoint)


def test_every_base_invocation_succeeds(files, tmp_path):
    """The table means something only if each case's command would succeed without the bad value."""
    for name, args in hostile_cli.base_invocations(files, tmp_path).items():
        code, stdout, stderr = hostile_cli.run(name, args)
        assert code == 0 and hostile_cli.judge(name, "", code, stdout, stderr) is None, (name, stderr[-800:])


def test_every_command_with_numeric_options_is_in_the_table(files, tmp_path):
    bases = hostile_cli.base_invocations(files, tmp_path)
    for name, cmd in hostile_cli.commands().items():
        if hostile_cli.numeric_options(cmd):
            assert name in bases, f"{name}: add a base invocation to tests/hostile_cli.py"


def test_hostile_values_in_every_numeric_option(files, tmp_path):
    failures, outcomes = hostile_cli.run_table(files, tmp_path / "out", FAST_VALUES)
    assert len(outcomes) > 200
    assert not failures, "\n".join(failures)


def test_every_number_option_is_finite_and_bounded():
    """An integer option without an upper bound is a way to allocate in proportion to a typo."""
    ints = 0
    for name, cmd in hostile_cli.commands().items():
        for p in cmd.params:
            if isinstance(p.type, click.types.IntParamType):
                assert isinstance(p.type, BoundedInt) and p.type.max is not None, (name, p.name)
                assert p.type.max <= max(MAX_COUNT, 2**32 - 1), (name, p.name)
                ints += 1
            elif isinstance(p.type, click.types.FloatParamType):
                assert isinstance(p.type, (FiniteFloat, FiniteFloatRange)), (name, p.name)
    assert ints > 30


@pytest.mark.parametrize(
    "args, option, what",
    [
        (["render", "{ckpt}", "--seeds", "0,1", "--frames", "1000000000000"], "--frames", "at most"),
        (["render", "{ckpt}", "--seeds", "0,1", "--frames", "1e12"], "--frames", "whole number"),
        (["sample", "{ckpt}", "--seeds", "0", "--batch", "4000000000"], "--batch", "at most 1024"),
        (["sample", "{ckpt}", "--seeds", "0", "--trunc", "1e30"], "--trunc", "at most 10"),
        (["fid", "stats", "{ckpt}", "-n", "1000000000000"], "--n", "at most"),
        (["train", "{tmp}", "--resolution", "16", "--kimg", "1e30"], "--kimg", "at most"),
        (["hyper", "{ckpt}", "--prompts", "{ckpt}", "-o", "{tmp}/h.st", "--width", "0"], "--width", "at least 1"),
        (["direction", "{ckpt}", "--seeds", "0-3", "--svm-c", "0"], "--svm-c", "above 0"),
        (["sample", "{ckpt}", "--seeds", "0", "--trunc-cutoff", "-1"], "--trunc-cutoff", "at least 0"),
    ],
)
def test_one_line_naming_the_option(tiny_ckpt_path, tmp_path, args, option, what):
    args = [a.format(ckpt=tiny_ckpt_path, tmp=tmp_path) for a in args]
    line = cli_fails(*args)
    assert option in line and what in line, line
    assert [p.name for p in tmp_path.iterdir()] == [tiny_ckpt_path.name]


def test_computed_seeds_past_numpy_range(tiny_ckpt_path, tmp_path):
    # --seed-offset is within bounds, but offset + n is not; it fails after the progress bar starts
    code, _, stderr = hostile_cli.run(
        "fid",
        [
            "stats",
            str(tiny_ckpt_path),
            "-o",
            str(tmp_path / "s.npz"),
            "-n",
            "8",
            "--seed-offset",
            str(2**32 - 4),
            "--extractor",
            str(EXAMPLES / "toy-features.pt"),
        ],
    )
    assert hostile_cli.judge("fid", "--seed-offset", code, "", stderr) is None, stderr
    assert code == 2 and "seed 4294967296" in stderr and not (tmp_path / "s.npz").exists()
