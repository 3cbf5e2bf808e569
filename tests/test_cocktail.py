"""GAN Cocktail rooting and union fine-tuning, and the baselines sharing `finetune`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import make_tiny_checkpoint

from gancraft import load, save
from gancraft.cli.main import cli
from gancraft.errors import GancraftError
from gancraft.train.loop import TrainOptions, run_training
from gancraft.train.methods import RootingMethod, UnionMethod, conditional_from_unconditional, parse_method


def _opts(steps: int = 2) -> TrainOptions:
    return TrainOptions(kimg=steps * 4 / 1000, batch=4, snap_kimg=100, seed=1)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    paths = {}
    for i, name in enumerate(["avg", "cat", "dog"]):
        paths[name] = d / f"{name}.st"
        save(make_tiny_checkpoint(seed=i), paths[name])
    return paths


def _sources(models) -> dict:
    return {"cat": load(models["cat"]), "dog": load(models["dog"])}


def test_conditional_start_reproduces_the_unconditional_model(models):
    """D computes exactly the old D for every class; G differs from the old G only through the
    class columns of fc0 (zeroing them gives the old G back), and those make classes differ."""
    start = load(models["avg"])
    G_old, D_old = start.generator(), start.discriminator()
    G, D, G_ema = conditional_from_unconditional(start, 3)
    assert G.c_dim == D.c_dim == 3
    z = torch.randn(4, G.z_dim)
    with torch.no_grad():
        ref = G_old(z)
        img_ref = D_old(ref)
        per_class = []
        for k in range(3):
            c = torch.nn.functional.one_hot(torch.full([4], k), 3).float()
            per_class.append(G.eval()(z, c))
            torch.testing.assert_close(D(ref, c), img_ref, atol=1e-5, rtol=1e-5)
        assert (per_class[0] - per_class[1]).abs().max() > 1e-2
        for net in (G, G_ema):
            net.mapping.fc0.weight[:, G.z_dim:] = 0
            for k in range(3):
                c = torch.nn.functional.one_hot(torch.full([4], k), 3).float()
                torch.testing.assert_close(net.eval()(z, c), ref, atol=1e-5, rtol=1e-5)


def test_union_has_one_domain_per_source_and_starts_from_the_average(models, tmp_path):
    method = UnionMethod(load(models["avg"]), _sources(models))
    trainer = run_training(method, _opts(2), tmp_path / "run", progress=False)
    start = load(tmp_path / "run" / "snapshot-000000.st")
    assert start.domains == {"cat": {"kind": "class", "class": 0}, "dog": {"kind": "class", "class": 1}}
    G, D, _ = conditional_from_unconditional(load(models["avg"]), 2, seed=0)
    for k, v in G.state_dict().items():
        assert torch.equal(start.tensors[f"G.{k}"], v), k
    for k, v in D.state_dict().items():
        assert torch.equal(start.tensors[f"D.{k}"], v), k
    end = trainer.checkpoint()
    assert not torch.equal(end.tensors["G.mapping.embed.weight"], start.tensors["G.mapping.embed.weight"])


def test_freeze_d_leaves_frozen_blocks_bit_identical(models, tmp_path):
    method = UnionMethod(load(models["avg"]), _sources(models), method="freeze-d", value=1)
    trainer = run_training(method, _opts(2), tmp_path / "run", progress=False)
    start = load(tmp_path / "run" / "snapshot-000000.st").tensors
    end = trainer.checkpoint().tensors
    frozen = trainer.D.blocks()[0].resolution
    d_keys = [k for k in end if k.startswith("D.")]
    for k in d_keys:
        same = torch.equal(start[k], end[k])
        if k.startswith(f"D.b{frozen}."):
            assert same, k
    assert not all(torch.equal(start[k], end[k]) for k in d_keys if k.startswith("D.b8."))


def test_domain_vector_mode_changes_only_the_vectors(models, tmp_path):
    start = load(models["avg"])
    method = UnionMethod(start, _sources(models), params="domain-vector")
    trainer = run_training(method, _opts(2), tmp_path / "run", progress=False)
    out = trainer.checkpoint()
    for k, v in start.tensors.items():
        if k.startswith(("G.", "G_ema.")):
            assert torch.equal(out.tensors[k], v), k
    width = start.generator().synthesis.style_dim
    for name in ("cat", "dog"):
        assert out.domains[name] == {"kind": "vector", "tensor": f"domain_vectors.{name}"}
        vec = out.tensors[f"domain_vectors.{name}"]
        assert vec.shape == (width,) and vec.abs().sum() > 0


def test_ewc_penalty_is_the_fisher_weighted_distance(models):
    method = UnionMethod(load(models["avg"]), _sources(models), method="ewc", value=50.0, fisher_batches=2)
    G, D, _ = method.networks()
    method.setup(G, D, torch.device("cpu"))
    assert method.g_penalty(G).item() == 0
    assert all(f.min() >= 0 for f in method.fisher) and sum(f.sum() for f in method.fisher) > 0
    params = list(G.parameters())
    with torch.no_grad():
        for p in params:
            p.add_(0.1)
    expected = 50.0 * sum((f * 0.01).sum() for f in method.fisher)
    torch.testing.assert_close(method.g_penalty(G), expected, rtol=1e-4, atol=1e-8)


def test_rooting_starts_from_the_root_and_learns_from_the_source(models):
    method = RootingMethod(load(models["avg"]), load(models["cat"]))
    G, D, G_ema = method.networks()
    root = load(models["avg"])
    for k, v in G.state_dict().items():
        assert torch.equal(root.tensors[f"G.{k}"], v)
    imgs, labels = method.data.batch(2, 0, 0, 0, 1, torch.device("cpu"))
    assert labels is None
    cat = load(models["cat"]).generator()
    assert imgs.shape == (2, 3, 16, 16) and torch.isfinite(imgs).all()
    assert not torch.allclose(imgs, G_ema(torch.randn(2, G.z_dim)), atol=1e-3)
    assert cat.img_resolution == 16


def test_parse_method():
    assert parse_method("transfer") == ("union", None)
    assert parse_method("freeze-d=2") == ("freeze-d", 2.0)
    assert parse_method("freeze-d 3") == ("freeze-d", 3.0)
    assert parse_method("ewc:1e4") == ("ewc", 1e4)
    for bad in ("freeze-d", "ewc=x", "freeze-d=1.5", "nope", "union=2"):
        with pytest.raises(GancraftError):
            parse_method(bad)


def test_root_and_finetune_cli(models, tmp_path):
    runner = CliRunner()
    common = ["--kimg", "0.004", "--batch", "4", "--quiet"]
    res = runner.invoke(cli, ["root", "--root", str(models["avg"]), "--source", str(models["cat"]),
                              "-o", str(tmp_path / "rooted"), *common])
    assert res.exit_code == 0, res.output
    rooted = tmp_path / "rooted" / "cat.st"
    assert res.stdout.strip().splitlines() == [str(rooted)]
    assert load(rooted).history[-1]["command"] == "root"

    out = tmp_path / "union.st"
    res = runner.invoke(cli, ["finetune", str(models["avg"]), "--domain", f"cat={rooted}",
                              "--domain", f"dog={models['dog']}", "-o", str(out), *common])
    assert res.exit_code == 0, res.output
    union = load(out)
    assert set(union.domains) == {"cat", "dog"} and union.g_config.c_dim == 2

    res = runner.invoke(cli, ["finetune", str(models["avg"]), "--domain", "catnoequals", "-o",
                              str(tmp_path / "x.st")])
    assert res.exit_code == 2 and "expected NAME=SOURCE_CHECKPOINT" in res.stderr
    res = runner.invoke(cli, ["finetune", str(models["avg"]), "--domain", f"cat={rooted}", "--method",
                              "freeze-d=9", "-o", str(tmp_path / "y.st"), *common])
    assert res.exit_code == 2 and "D has only" in res.stderr
