"""Careless numbers and shared tensors: NaN/inf options, huge seed ranges, one network pickled twice."""

from __future__ import annotations

import click
import pytest
import torch
from pickle_fixtures import dump, nvidia_snapshot

from gancraft import load, save
from gancraft.cli.main import cli
from gancraft.errors import GancraftError
from gancraft.latent.seeds import MAX_SEEDS, parse_seeds
from gancraft.nets.stylegan2 import Generator

from conftest import cli_fails, cli_ok, make_tiny_checkpoint, tiny_configs


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("num") / "m.st"
    save(make_tiny_checkpoint(), path)
    return path


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_floats_are_refused_by_every_float_option(ckpt, tmp_path, value):
    line = cli_fails("sample", ckpt, "--seeds", "0", "--trunc", value, "-o", tmp_path / "x")
    assert "--trunc" in line and "finite" in line
    line = cli_fails("render", ckpt, "--fps", value, "-o", tmp_path / "v.gif")
    assert "--fps" in line and "finite" in line
    assert not any(tmp_path.iterdir())


def test_every_float_option_is_checked():
    """Each float-typed option of every command goes through the one finite check."""
    from gancraft.cli.types import FiniteFloat, FiniteFloatRange

    ctx = click.Context(cli, info_name="gancraft")
    seen = 0
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        cmds = [cmd, *cmd.commands.values()] if isinstance(cmd, click.Group) else [cmd]
        for c in cmds:
            for p in c.params:
                if isinstance(p.type, (click.types.FloatParamType, click.FloatRange)):
                    assert isinstance(p.type, (FiniteFloat, FiniteFloatRange)), (name, p.name)
                    seen += 1
    assert seen > 20


def test_huge_seed_ranges_stop_before_allocating():
    with pytest.raises(GancraftError, match="split the range"):
        parse_seeds("0-4000000000")
    with pytest.raises(GancraftError, match="split the range"):
        parse_seeds(f"0-{MAX_SEEDS - 1},{MAX_SEEDS}")
    assert len(parse_seeds(f"0-{MAX_SEEDS - 1}")) == MAX_SEEDS


def test_one_network_pickled_as_g_and_g_ema_converts(tmp_path):
    g_cfg, _ = tiny_configs()
    torch.manual_seed(0)
    snap = nvidia_snapshot(G_ema=Generator(g_cfg))
    snap["G"] = snap["G_ema"]  # the same object twice, as a script pickling one network twice makes
    src = dump(snap, tmp_path / "twice.pkl")
    out = cli_ok("convert", src, "-o", tmp_path / "twice.st")
    ck = load(out[0])
    keys = [k for k in ck.tensors if k.startswith("G_ema.")]
    assert keys and all(torch.equal(ck.tensors[k], ck.tensors["G." + k[len("G_ema.") :]]) for k in keys)
