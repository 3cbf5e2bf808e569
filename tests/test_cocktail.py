"""GAN Cocktail rooting and union fine-tuning, and the baselines sharing `finetune`.

Sources are tinted (a constant added to the image) so that a test can tell from the pixels
which model an image came from: a swapped source, a label off by one or rooting on the
root's own images shows up as the wrong tint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gancraft import load, save
from gancraft.checkpoint import Checkpoint
from gancraft.errors import GancraftError
from gancraft.train.loop import TrainOptions, run_training
from gancraft.train.methods import (
    DomainVectorMethod,
    EWCMethod,
    FreezeDMethod,
    RootingMethod,
    UnionMethod,
    UnionScratchMethod,
    build,
    conditional_from_unconditional,
    freeze_d_layers,
    parse_method,
)

from conftest import cli_fails, cli_ok, make_tiny_checkpoint

# untrained tiny models' images average anywhere in about [-1, 2.2] per image: the tints stand well clear
TINTS = {"avg": 0.0, "cat": 5.0, "dog": -5.0}
CLEAR = 2.5  # a batch mean beyond +-CLEAR comes from the cat (+) or dog (-) source


def _opts(steps: int = 2, **kw) -> TrainOptions:
    return TrainOptions(**{"kimg": steps * 4 / 1000, "batch": 4, "snap_kimg": 100, "seed": 1, **kw})


def _tinted(seed: int, tint: float, **kw) -> Checkpoint:
    """A tiny model whose images are shifted by `tint` (the last toRGB bias), well apart from the others."""
    ckpt = make_tiny_checkpoint(seed=seed, **kw)
    for net in ("G", "G_ema"):
        ckpt.tensors[f"{net}.synthesis.b16.torgb.bias"] += tint
    return ckpt


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    paths = {}
    for i, (name, tint) in enumerate(TINTS.items()):
        paths[name] = d / f"{name}.st"
        save(_tinted(i, tint), paths[name])
    return paths


def _sources(models, names=("cat", "dog")) -> dict:
    return {n: load(models[n]) for n in names}


def _tint_of(imgs: torch.Tensor) -> float:
    return imgs.mean().item()


def _assert_same_nets(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_conditional_start_has_one_class_pathway_and_reproduces_d(models):
    """D computes the old D scaled by one factor per class, sum(cmap(c)) / sqrt(cmap_dim), as the
    official code's conversion does; G differs from the old G only through the class columns of
    fc0, which make classes differ; G_ema is G (one random pathway, not two). Both come from the
    stored G_ema (the official code's start), not the stored G."""
    start = load(models["avg"])
    start.tensors["G.synthesis.b16.torgb.bias"] += 3.0  # the stored G differs from the stored G_ema
    G_old, D_old = start.generator("G_ema"), start.discriminator()
    G, D, G_ema = conditional_from_unconditional(start, 3)
    assert G.c_dim == D.c_dim == 3
    _assert_same_nets(G, G_ema)
    z = torch.randn(4, G.z_dim)
    with torch.no_grad():
        ref = G_old(z)
        per_class = []
        for k in range(3):
            c = F.one_hot(torch.full([4], k), 3).float()
            per_class.append(G.eval()(z, c))
            scale = D.mapping(None, c).sum(1, keepdim=True) / math.sqrt(D.b4.cmap_dim)
            torch.testing.assert_close(D(ref, c), D_old(ref) * scale, atol=1e-5, rtol=1e-5)
        assert (per_class[0] - per_class[1]).abs().max() > 1e-2
        G.mapping.fc0.weight[:, G.z_dim :] = 0
        for k in range(3):
            c = F.one_hot(torch.full([4], k), 3).float()
            torch.testing.assert_close(G(z, c), ref, atol=1e-5, rtol=1e-5)


def test_conditional_d_can_become_class_aware(models):
    """The projection's rows start equal (each the old output row); only cmap entries that differ
    give them different gradients. With equal entries (the mapping's last layer zeroed, as an
    earlier version did) the rows stayed equal forever and D could only scale one class-blind
    output per class: the GAN Cocktail union's cat and dog classes drew each other's domain."""
    start = load(models["avg"])
    _, D, _ = conditional_from_unconditional(start, 3)
    x = start.generator("G_ema")(torch.randn(6, start.g_config.z_dim)).detach()
    c = F.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3).float()
    for k in range(3):  # every class's map has entries of its own
        assert D.mapping(None, c[k : k + 1]).std() > 1e-3
    D(x, c).sum().backward()
    grad = D.b4.out.weight.grad
    assert (grad - grad[:1]).abs().max() > 1e-4 * grad.abs().max()


def test_conditional_d_class_mapping_keeps_nvidias_learning_rate(models):
    """The new class projection trains at the mapping's 0.01 multiplier, as NVIDIA's D and the
    official code: at the full rate it shrank to zero within ~20 steps on the example models and
    left D at chance for the whole run (see conditional_from_unconditional)."""
    start = load(models["avg"])
    _, D, _ = conditional_from_unconditional(start, 3)
    assert D.mapping.fc0.weight_gain == pytest.approx(0.01 / math.sqrt(D.mapping.fc0.weight.shape[1]))
    assert start.d_config.mapping_lr_multiplier == 0.01


@pytest.mark.parametrize("method", ["union", "scratch", "ewc=1"])
def test_every_union_start_has_g_ema_equal_to_g(models, method):
    G, _, G_ema = build(*parse_method(method), "all", load(models["avg"]), _sources(models)).networks()
    _assert_same_nets(G, G_ema)


def test_rooting_is_conditional_and_draws_only_the_sources_class(models):
    method = RootingMethod(load(models["avg"]), load(models["cat"]), ["avg", "cat", "dog"], "cat")
    G, D, G_ema = method.networks()
    assert G.c_dim == D.c_dim == 3 and method.num_classes == 3
    _assert_same_nets(G, G_ema)
    ref, _, _ = conditional_from_unconditional(load(models["avg"]), 3, seed=0)
    _assert_same_nets(G, ref)
    imgs, labels = method.data.batch(8, 0, 0, 0, 1, torch.device("cpu"))
    assert labels.tolist() == [1] * 8
    assert _tint_of(imgs) > CLEAR  # the cat source's images, not the root's (tint 0) or dog's
    assert method.sample_labels(5, torch.Generator()).tolist() == [1] * 5
    assert method.domains() == {n: {"kind": "class", "class": i} for i, n in enumerate(["avg", "cat", "dog"])}
    with pytest.raises(GancraftError, match="not one of them"):
        RootingMethod(load(models["avg"]), load(models["cat"]), ["avg", "dog"], "cat")


def test_rooting_trains_the_sources_class_toward_the_source(models, tmp_path):
    """A few steps move the cat class (only that class is trained) toward the cat source's tint."""
    root = load(models["avg"])
    method = RootingMethod(root, load(models["cat"]), ["avg", "cat"], "cat")
    G0, _, _ = method.networks()
    trainer = run_training(
        method, _opts(12, lr_g=0.01, lr_d=0.01, ema_kimg=0, pl_weight=0), tmp_path / "run", progress=False
    )
    z = torch.randn(16, G0.z_dim, generator=torch.Generator().manual_seed(3))
    c = F.one_hot(torch.full([16], 1), 2).float()
    with torch.no_grad():
        before, after = _tint_of(G0(z, c)), _tint_of(trainer.G(z, c))
    assert after - before > 0.1, (before, after)
    end = trainer.checkpoint().tensors
    start = load(tmp_path / "run" / "snapshot-000000.st").tensors
    for part in ("G.mapping.embed.weight", "G.mapping.fc0.weight", "G.synthesis.b16.conv1.weight"):
        assert not torch.equal(start[part], end[part]), part


def test_union_labels_follow_the_start_models_class_table(models):
    """A union start rooted as [dog, cat] gives label 0 to dog's images whatever the --domain order."""
    rooted = Checkpoint.from_modules(
        *_rooted_nets(models, ["dog", "cat"]),
        domains={"dog": {"kind": "class", "class": 0}, "cat": {"kind": "class", "class": 1}},
    )
    method = UnionMethod(rooted, _sources(models, ("cat", "dog")))
    assert method.names == ["dog", "cat"]
    imgs, labels = method.data.batch(16, 0, 0, 0, 1, torch.device("cpu"))
    assert _tint_of(imgs[labels == 0]) < -CLEAR and _tint_of(imgs[labels == 1]) > CLEAR
    G, _, _ = method.networks()
    assert torch.equal(G.mapping.embed.weight, rooted.generator().mapping.embed.weight)
    with pytest.raises(GancraftError, match="its classes are"):
        UnionMethod(rooted, _sources(models, ("cat", "avg")))


def _rooted_nets(models, classes):
    G, D, G_ema = RootingMethod(load(models["avg"]), load(models[classes[1]]), classes, classes[1]).networks()
    return G_ema, G, D


def test_union_from_unconditional_labels_sources_in_domain_order(models):
    method = UnionMethod(load(models["avg"]), _sources(models, ("dog", "cat")))
    imgs, labels = method.data.batch(16, 0, 0, 0, 1, torch.device("cpu"))
    assert _tint_of(imgs[labels == 0]) < -CLEAR and _tint_of(imgs[labels == 1]) > CLEAR
    assert method.domains() == {"dog": {"kind": "class", "class": 0}, "cat": {"kind": "class", "class": 1}}


def test_freeze_d_counts_layers_from_the_image_side(models, tmp_path):
    """freeze-d=2 freezes fromrgb and conv0 of the first block, bit for bit; its conv1 and skip train."""
    method = FreezeDMethod(load(models["avg"]), _sources(models), value=2)
    trainer = run_training(method, _opts(2), tmp_path / "run", progress=False)
    start = load(tmp_path / "run" / "snapshot-000000.st").tensors
    end = trainer.checkpoint().tensors
    first = trainer.D.blocks()[0].resolution
    for layer in ("fromrgb.weight", "fromrgb.bias", "conv0.weight", "conv0.bias"):
        assert torch.equal(start[f"D.b{first}.{layer}"], end[f"D.b{first}.{layer}"]), layer
    for layer in ("conv1.weight", "skip.weight"):
        assert not torch.equal(start[f"D.b{first}.{layer}"], end[f"D.b{first}.{layer}"]), layer
    assert len(freeze_d_layers(trainer.D, 5)) == 5
    with pytest.raises(GancraftError, match="layers before its epilogue"):
        freeze_d_layers(trainer.D, 99)


def test_domain_vector_mode_changes_only_the_vectors(models, tmp_path):
    start = load(models["avg"])
    method = DomainVectorMethod(start, _sources(models))
    trainer = run_training(method, _opts(2), tmp_path / "run", progress=False)
    out = trainer.checkpoint()
    for k, v in start.tensors.items():
        if k.startswith(("G.", "G_ema.")):
            assert torch.equal(out.tensors[k], v), k
    width = start.generator().synthesis.style_dim
    for name in ("cat", "dog"):
        assert out.domains[name] == {"kind": "vector", "tensor": f"domain_vectors.{name}", "modulation": "after-demod"}
        vec = out.tensors[f"domain_vectors.{name}"]
        assert vec.shape == (width,) and vec.abs().sum() > 0


def test_ewc_penalties_are_fisher_weighted_with_separate_lambdas(models):
    method = EWCMethod(load(models["avg"]), _sources(models), value=(2.0, 3.0, 5.0), fisher_samples=8, fisher_batch=4)
    G, D, _ = method.networks()
    method.setup(G, D, torch.device("cpu"))
    assert method.g_penalty(G).item() == 0 and method.d_penalty(D).item() == 0
    assert "mapping.embed.weight" not in method.fisher["G"] and "mapping.embed.weight" not in method.fisher["D"]
    for which in ("G", "D"):
        assert sum(f.sum() for f in method.fisher[which].values()) > 0
    with torch.no_grad():
        for net in (G, D):
            for p in net.parameters():
                p.add_(0.1)
    fg = method.fisher["G"]
    expected_g = sum((2.0 if n.startswith("mapping.") else 3.0) * (f * 0.01).sum() for n, f in fg.items())
    torch.testing.assert_close(method.g_penalty(G), expected_g, rtol=1e-4, atol=1e-8)
    expected_d = 5.0 * sum((f * 0.01).sum() for f in method.fisher["D"].values())
    torch.testing.assert_close(method.d_penalty(D), expected_d, rtol=1e-4, atol=1e-8)


def test_ewc_d_penalty_enters_d_training(models, tmp_path):
    """The D lambda holds D near its start: the Fisher-weighted distance it penalises ends far smaller."""
    dist = {}
    for lam in (0.0, 1e4):
        method = EWCMethod(
            load(models["avg"]), _sources(models), value=(0.0, 0.0, lam), fisher_samples=8, fisher_batch=4
        )
        trainer = run_training(method, _opts(4), tmp_path / f"run{lam}", progress=False)
        dist[lam] = method._ewc(trainer.D, "D").item()
        lines = [json.loads(x) for x in (tmp_path / f"run{lam}" / "log.jsonl").read_text().splitlines()]
        assert all(("penalty_D" in x) == (lam > 0) for x in lines)
    assert dist[1e4] < 0.5 * dist[0.0], dist


def test_parse_method():
    assert parse_method("transfer") == (UnionMethod, None)
    assert parse_method("freeze-d=2") == (FreezeDMethod, 2.0)
    assert parse_method("freeze-d 3") == (FreezeDMethod, 3.0)
    assert parse_method("ewc:1e4") == (EWCMethod, (1e4, 1e4, 1e4))
    assert parse_method("ewc=1,2,3") == (EWCMethod, (1.0, 2.0, 3.0))
    assert parse_method("scratch") == (UnionScratchMethod, None)
    for bad in ("freeze-d", "ewc=x", "freeze-d=1.5", "nope", "union=2", "ewc=1,2", "ewc=-1"):
        with pytest.raises(GancraftError):
            parse_method(bad)


def test_root_average_finetune_cli(models, tmp_path):
    common = ["--kimg", "0.008", "--batch", "4", "--quiet"]
    rooted = tmp_path / "rooted"
    out = cli_ok(
        "root", "--root", models["avg"], "--source", models["cat"], "--source", models["dog"], "-o", rooted, *common
    )
    assert out == [str(rooted / "avg.st"), str(rooted / "cat.st"), str(rooted / "dog.st")]
    table = {n: {"kind": "class", "class": i} for i, n in enumerate(["avg", "cat", "dog"])}
    for name in ("avg", "cat", "dog"):
        ck = load(rooted / f"{name}.st")
        assert ck.domains == table and ck.g_config.c_dim == 3 and ck.history[-1]["command"] == "root"
    start = load(rooted / "avg.st")
    for k in start.generator().state_dict():
        assert torch.equal(start.tensors[f"G.{k}"], start.tensors[f"G_ema.{k}"]), k
    # every rooted model starts from the same conditional root, so they can be averaged
    first = load(rooted / "cat-run" / "snapshot-000000.st")
    assert torch.equal(first.tensors["G.mapping.embed.weight"], start.tensors["G.mapping.embed.weight"])
    avg = tmp_path / "avg.st"
    cli_ok("average", rooted / "avg.st", rooted / "cat.st", rooted / "dog.st", "-o", avg)
    assert load(avg).domains == table
    union = tmp_path / "union.st"
    cli_ok(
        "finetune",
        avg,
        "--domain",
        f"dog={models['dog']}",
        "--domain",
        f"cat={models['cat']}",
        "--domain",
        f"avg={models['avg']}",
        "-o",
        union,
        *common,
    )
    assert load(union).domains == table
    assert "its classes are" in cli_fails(
        "finetune", avg, "--domain", f"cat={models['cat']}", "-o", tmp_path / "x.st", *common
    )
    assert "expected NAME=SOURCE_CHECKPOINT" in cli_fails(
        "finetune", models["avg"], "--domain", "catnoequals", "-o", tmp_path / "y.st"
    )
    assert "D has only" in cli_fails(
        "finetune",
        models["avg"],
        "--domain",
        f"cat={models['cat']}",
        "--method",
        "freeze-d=99",
        "-o",
        tmp_path / "z.st",
        *common,
    )
    assert "named like the root" in cli_fails(
        "root", "--root", models["avg"], "--source", models["avg"], "-o", tmp_path / "r2", *common
    )
    # without -o the folder is named after the root (this default once ended in UnboundLocalError)
    assert "named like the root" in cli_fails("root", "--root", models["avg"], "--source", models["avg"], *common)
