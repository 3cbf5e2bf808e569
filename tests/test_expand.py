"""Domain expansion on tiny models: subspace maths, measured effect of training, CLIP/images paths, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gancraft import load, save
from gancraft.errors import GancraftError
from gancraft.latent.domains import apply_domain, resolve_domain
from gancraft.latent.sefa import sefa
from gancraft.latent.subspace import choose_directions, expansion_table, subspaces_from_table
from gancraft.train.expansion import (
    ExpansionMethod,
    ExpansionSettings,
    expand,
    expanded_checkpoint,
    invert_images,
    parse_task,
    run_expansion,
)
from gancraft.train.loop import TrainOptions

from conftest import cli_fails, cli_invoke, make_tiny_checkpoint

TINY_CLIP = dict(
    embed_dim=16,
    vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
    text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
)


def _child(channel: int, offset: float = 1.5, seed: int = 0):
    """A 'fine-tuned child' of the seed-0 parent: its last toRGB bias tints the image in one colour channel."""
    ckpt = make_tiny_checkpoint(seed)
    for net in ("G", "G_ema"):
        ckpt.tensors[f"{net}.synthesis.b16.torgb.bias"][channel] += offset
    return ckpt


def _table(G, names, distance=20.0):
    dirs = sefa(G, "first").directions
    return expansion_table(names, dirs, choose_directions(dirs.shape[0], len(names)), distance)


def _image_targets(folder: Path, z_dim: int) -> Path:
    """Three images of another tiny model as PNG files in `folder`: an `images` task's targets."""
    from gancraft.media.images import save_png, to_uint8

    folder.mkdir()
    with torch.no_grad():
        targets = make_tiny_checkpoint(3).generator()(torch.randn(3, z_dim), None).clamp(-1, 1)
    for i, arr in enumerate(to_uint8(targets)):
        save_png(arr, folder / f"{i}.png")
    return folder


def test_subspaces_match_sampling_side():
    parent = make_tiny_checkpoint(0)
    G = parent.generator()
    table = _table(G, ["a", "b"])
    assert [table[n]["index"] for n in ("a", "b")] == [31, 30]
    expanded = make_tiny_checkpoint(0, domains=table)
    sub = subspaces_from_table(table, G.mapping.w_avg)
    ws = G.mapping(torch.randn(5, G.z_dim, generator=torch.Generator().manual_seed(3)))
    for name, ours in (("base", sub.base(ws)), ("a", sub.domain(ws, "a")), ("a+b", sub.domain(ws, "a+b"))):
        theirs = apply_domain(ws, resolve_domain(expanded, name, G))
        assert torch.allclose(ours, theirs, atol=1e-5), name
    d_a = torch.tensor(table["a"]["direction"])
    # a repurposed latent sits exactly s along d_a from its base projection, and nowhere else differs
    diff = sub.domain(ws, "a") - sub.base(ws)
    assert torch.allclose(diff, 20.0 * d_a.expand_as(diff), atol=1e-4)
    # the base keeps w_avg's coordinate along d_a whatever w's coordinate was
    assert torch.allclose(sub.base(ws) @ d_a, (G.mapping.w_avg @ d_a).expand(5, G.num_ws), atol=1e-4)


def test_choose_directions_and_task_parsing():
    assert choose_directions(8, 3) == [7, 6, 5]
    assert choose_directions(8, 2, [1, 4]) == [1, 4]
    for args, msg in (
        ((8, 2, [1]), "one per task"),
        ((8, 2, [1, 1]), "twice"),
        ((8, 1, [8]), "out of range"),
        ((2, 3), "directions"),
    ):
        with pytest.raises(GancraftError, match=msg):
            choose_directions(*args)
    t = parse_task("sketch:clip:photo->a sketch: pencil")
    assert (t.name, t.kind, t.arg) == ("sketch", "clip", "photo->a sketch: pencil")
    for bad in ("sketch", "base:model:x.st", "a:gan:x", "a b:model:x"):
        with pytest.raises(GancraftError, match="--task"):
            parse_task(bad)


def _measure_pair(G, method, child_gens, n=16):
    """Pixel L2 of each domain's images to each child's images for the same z; base to the parent."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        ws = G.mapping(z)
        base = method.subspaces.base(ws)
        out = {
            "base": (G.synthesis(base, noise_mode="const") - method.source.synthesis(base, noise_mode="const"))
            .square()
            .mean()
            .item()
        }
        for dom in child_gens:
            img = G.synthesis(method.subspaces.domain(ws, dom), noise_mode="const")
            for target, child in child_gens.items():
                out[dom, target] = (img - child(z, None, noise_mode="const")).square().mean().item()
    return out


@pytest.fixture(scope="module")
def model_runs(tmp_path_factory) -> dict:
    """Children a (red tint) and b (blue tint), and two expansions of the seed-0 parent toward them:
    one with task a only and one with both tasks (15 steps each, shared by the tests below)."""
    d = tmp_path_factory.mktemp("model_tasks")
    parent = make_tiny_checkpoint(0)
    paths = {}
    for name, channel in (("a", 0), ("b", 2)):
        paths[name] = d / f"{name}.st"
        save(_child(channel), paths[name])
    full = _table(parent.generator(), ["a", "b"])
    runs = {}
    for names in (("a",), ("a", "b")):
        table = {"base": full["base"], **{n: full[n] for n in names}}
        tasks = [parse_task(f"{n}:model:{paths[n]}") for n in names]
        method = ExpansionMethod(parent, tasks, table, ExpansionSettings(source_weight=0.0))
        opts = TrainOptions(kimg=0.06 * len(names), batch=4 * len(names), snap_kimg=1, ema_kimg=0, lr_g=0.004)
        runs[names] = run_expansion(method, opts, d / f"run{len(names)}", progress=False)
    return {"parent": parent, "paths": paths, "table": full, "runs": runs}


def test_model_tasks_move_toward_children_and_keep_base(model_runs):
    trainer = model_runs["runs"]["a", "b"]
    method = trainer.method
    G0 = model_runs["parent"].generator()
    children = {n: load(p).generator() for n, p in model_runs["paths"].items()}
    before = _measure_pair(G0, method, children)
    base_change_untrained = _measure_pair(make_tiny_checkpoint(5).generator(), method, {})["base"]
    after = _measure_pair(trainer.G_ema, method, children)
    # the base subspace stays with the parent: a small fraction of how far an unrelated model is
    assert after["base"] < 0.05 * base_change_untrained
    for dom, other in (("a", "b"), ("b", "a")):
        assert after[dom, dom] < 0.5 * before[dom, dom], (dom, before, after)
        # domain a learned a, not b: b's target is still far from what a's subspace gives
        assert after[dom, dom] < 0.8 * after[dom, other], (dom, after)
    assert (trainer.run_dir / f"grid-{trainer.step:06d}.png").exists()
    log = (trainer.run_dir / "log.jsonl").read_text().splitlines()
    assert len(log) == trainer.step == 15


def test_second_domain_does_not_leak_into_first(model_runs):
    """Training b next to a leaves a's subspace where training a alone puts it."""
    G0 = model_runs["parent"].generator()
    z = torch.randn(8, G0.z_dim, generator=torch.Generator().manual_seed(7))
    # project with the one-direction subspaces, so both runs are compared on the same latents
    sub = subspaces_from_table({"a": model_runs["table"]["a"]}, G0.mapping.w_avg)
    with torch.no_grad():
        results = {
            len(names): tr.G_ema.synthesis(sub.domain(G0.mapping(z), "a"), noise_mode="const")
            for names, tr in model_runs["runs"].items()
        }
        child_a = load(model_runs["paths"]["a"]).generator()(z, None, noise_mode="const")
        start = G0.synthesis(sub.domain(G0.mapping(z), "a"), noise_mode="const")
    moved = (results[1] - start).square().mean()
    drift = (results[2] - results[1]).square().mean()
    assert (results[1] - child_a).square().mean() < (start - child_a).square().mean()
    assert drift < 0.2 * moved


def test_batch_is_split_over_tasks_and_d_trains_on_base_fakes(model_runs, tmp_path):
    """One batch is shared by the tasks (each trains on its part only, weight ~1/T as the official
    sampler); the source adversarial term has its own G update and D is trained; the output is G_ema."""
    parent = model_runs["parent"]
    tasks = [parse_task(f"{n}:model:{model_runs['paths'][n]}") for n in ("a", "b")]
    method = ExpansionMethod(parent, tasks, model_runs["table"])
    seen: dict[str, list[int]] = {"a": [], "b": []}
    task_loss = method.task_loss

    def counting(task, edit_img, base_img, context):
        seen[task.name].append(edit_img.shape[0])
        return task_loss(task, edit_img, base_img, context)

    method.task_loss = counting
    tr = run_expansion(
        method, TrainOptions(kimg=0.012, batch=6, snap_kimg=1, ema_kimg=0.01), tmp_path / "run", progress=False
    )
    assert seen == {"a": [3, 3], "b": [3, 3]}
    rows = [__import__("json").loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all("source_G" in r and "loss_D" in r for r in rows)
    D0 = parent.discriminator().state_dict()
    assert any(not torch.equal(v, D0[k]) for k, v in tr.D.state_dict().items())
    out = expanded_checkpoint(tr, {})
    assert torch.equal(out.tensors["G_ema.synthesis.b16.conv1.weight"], tr.G_ema.synthesis.b16.conv1.weight)
    assert not torch.equal(tr.G_ema.synthesis.b16.conv1.weight, tr.G.synthesis.b16.conv1.weight)


def test_reconstruction_loss_is_mse_plus_lpips():
    """MyStyle's loss as the official code weights it: per-image MSE, plus LPIPS when given."""
    from gancraft.train.expansion import _recon

    a, b = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    b[0] += 0.5
    b[1, 0] += 3.0
    assert torch.allclose(_recon(None, a, b), torch.tensor([0.25, 3.0]))
    assert torch.allclose(_recon(lambda x, y: torch.tensor([1.0, 2.0]), a, b), torch.tensor([1.25, 5.0]))


def test_clip_and_images_tasks_run_end_to_end(tmp_path):
    from gancraft.metrics.clip import load_clip
    from gancraft.metrics.perceptual import load_lpips

    parent = make_tiny_checkpoint(0)
    G0 = parent.generator()
    folder = _image_targets(tmp_path / "me", G0.z_dim)
    clip = load_clip("ViT-B-32", random_init=True, seed=0, **TINY_CLIP)
    lpips = load_lpips(random_init=True)
    table = _table(G0, ["sketch", "me"])
    tasks = [parse_task("sketch:clip:a pencil sketch"), parse_task(f"me:images:{folder}")]
    method = ExpansionMethod(parent, tasks, table, ExpansionSettings(invert_steps=4), lpips=lpips, clips=[clip])
    before_clip = method.clip_losses["sketch"]
    tr = run_expansion(
        method, TrainOptions(kimg=0.006, batch=2, snap_kimg=1, ema_kimg=0), tmp_path / "run", progress=False
    )
    assert tr.step == 3 and before_clip.source_text == "a photo"
    rows = [__import__("json").loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss_sketch"]) and 0 <= r["loss_sketch"] <= 2 for r in rows)
    assert all(r["replay_lpips"] >= 0 for r in rows)
    ckpt = expanded_checkpoint(tr, {"tasks": ["x"]})
    assert ckpt.domains["sketch"]["index"] == 31 and ckpt.domains["me"]["index"] == 30
    assert ckpt.history[-1]["params"]["clip"] == [clip.name]
    # the inversion itself fits the images better than the mean latent does
    imgs = method.images["me"]
    w_avg = G0.mapping.w_avg.expand(3, -1)
    w_inv = invert_images(G0, imgs, steps=15)
    err = lambda w: (G0.synthesis(w.unsqueeze(1).expand(-1, G0.num_ws, -1)) - imgs).square().mean()  # noqa: E731
    assert err(w_inv) < 0.9 * err(w_avg)
    # the report has a probe row for the images task and a zero-shot row for the clip task
    from gancraft.metrics import TorchScriptExtractor
    from gancraft.train.expansion_report import expansion_report

    rows, _ = expansion_report(method, tr.G_ema, TorchScriptExtractor(_features(tmp_path)), n=12)
    assert [(r.domain, r.measure.split(":")[0]) for r in rows] == [
        ("base", "FID to the parent"),
        ("sketch", "CLIP"),
        ("base", "probe"),
        ("me", "probe"),
    ]
    assert all(0 <= r.before <= 1 and 0 <= r.after <= 1 for r in rows[1:])


class _PooledColour(torch.nn.Module):
    """A cheap TorchScript feature extractor: per-channel means and spreads at two scales."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small = torch.nn.functional.avg_pool2d(x, 4)
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3)), small.flatten(1)[:, :24]], dim=1)


def _features(folder: Path) -> Path:
    path = folder / "features.pt"
    if not path.exists():
        torch.jit.script(_PooledColour()).save(str(path))
    return path


def test_cli_expand_writes_model_report_and_domains(tmp_path):
    parent, child = tmp_path / "p.st", tmp_path / "c.st"
    save(make_tiny_checkpoint(0), parent)
    save(make_tiny_checkpoint(1), child)
    out, report = tmp_path / "x.st", tmp_path / "report.txt"
    real = _image_targets(tmp_path / "real", load(parent).generator().z_dim)
    res = cli_invoke(
        "expand",
        parent,
        "--task",
        f"kid:model:{child}",
        "-o",
        out,
        "--kimg",
        "0.008",
        "--batch",
        "4",
        "--directions",
        "5",
        "--distance",
        "15",
        "--report",
        report,
        "--report-n",
        "12",
        "--report-extractor",
        _features(tmp_path),
        "--report-real",
        real,
        "--quiet",
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [str(out), str(report)]
    ckpt = load(out)
    assert ckpt.domains["base"] == {"kind": "base"}
    kid = ckpt.domains["kid"]
    assert kid["kind"] == "repurposed" and kid["index"] == 5 and kid["distance"] == 15.0
    # the default factorisation is the official code's: every modulation but the toRGBs after 4x4
    assert torch.allclose(torch.tensor(kid["direction"]), sefa(load(parent).generator(), "all").directions[5])
    assert ckpt.history[-1]["command"] == "expand" and "D" in ckpt.nets
    assert resolve_domain(ckpt, "kid", ckpt.generator()).shift is not None
    lines = report.read_text().splitlines()
    assert lines[0].startswith("Domain Expansion report: 12 samples per set, features torchscript:")
    assert [line.split()[:2] for line in lines[3:]] == [
        ["base", "base"],
        ["base", "base"],
        ["kid", "model"],
        ["base", "base"],
        ["kid", "model"],
    ]
    assert "FID to the parent" in lines[3] and f"FID to {real} (before: the parent" in lines[4]
    assert f"FID to {child}" in lines[5] and "probe" in lines[6]
    run = tmp_path / "x-run"
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"] == 2
    # --resume with a longer --kimg continues the run to the new total (it once kept the run's own)
    common = ["--task", f"kid:model:{child}", "-o", out, "--batch", "4", "--directions", "5", "--distance", "15"]
    res = cli_invoke("expand", parent, *common, "--kimg", "0.016", "--resume", "--quiet", "--force")
    assert res.exit_code == 0, res.output
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"] == 4
    res = cli_invoke("expand", parent, *common, "--kimg", "0.008", "--resume", "--quiet", "--force")
    assert res.exit_code == 2 and "--kimg 0.008" in res.stderr and "already at" in res.stderr
    # --lr given with --resume changes the run from there on (a default --lr is no change), --ema is refused
    res = cli_invoke("expand", parent, *common, "--kimg", "0.02", "--resume", "--ema", "3", "--quiet", "--force")
    assert res.exit_code == 2 and "ema_kimg: 10.0 in the run, 3.0 now" in res.stderr
    unbatched = [a for a in common if a not in ("--batch", "4")]  # options not given keep the run's (batch 4)
    res = cli_invoke("expand", parent, *unbatched, "--kimg", "0.02", "--resume", "--lr", "0.0005", "--quiet", "--force")
    assert res.exit_code == 0, res.output
    assert load(out).history[-1]["params"]["changes"] == [
        {"step": 4, "option": o, "from": 0.001, "to": 0.0005} for o in ("lr_g", "lr_d")
    ]
    # again without --force: refused before any training, one line
    res = cli_invoke("expand", parent, "--task", f"kid:model:{child}", "-o", out)
    assert res.exit_code == 2 and "exists" in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--task", "kid:model"], "NAME:KIND:ARG"),
        (["--task", "a:model:{c}", "--task", "a:model:{c}"], "used twice"),
        (["--task", "a:model:{c}", "--directions", "1,2"], "one per task"),
        (["--task", "a:model:{c}", "--distance", "0"], "--distance"),
        (["--task", "a:images:{d}/nowhere"], "does not exist"),
    ],
)
def test_cli_expand_refuses_bad_input(tmp_path, args, msg):
    parent, child = tmp_path / "p.st", tmp_path / "c.st"
    save(make_tiny_checkpoint(0, with_d=False), parent)
    save(make_tiny_checkpoint(1), child)
    args = [a.format(c=child, d=tmp_path) for a in args]
    res = cli_invoke("expand", parent, "-o", tmp_path / "x.st", "--quiet", *args)
    assert res.exit_code == 2, res.output
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("gancraft expand: error:") and msg in last and "Traceback" not in res.stderr
    assert not (tmp_path / "x.st").exists()


def test_cli_expand_refuses_a_conditional_model_before_any_work(tmp_path):
    parent, child = tmp_path / "p.st", tmp_path / "c.st"
    save(make_tiny_checkpoint(0, c_dim=2, with_d=False), parent)
    save(make_tiny_checkpoint(1), child)
    # one line: no factorisation, direction choice or LPIPS log before the refusal
    line = cli_fails("expand", parent, "--task", f"kid:model:{child}", "-o", tmp_path / "x.st")
    assert "class-conditional generators cannot be expanded" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.st", "p.st"]


def test_expanded_model_without_discriminator_keeps_none(tmp_path):
    parent = make_tiny_checkpoint(0, with_d=False)
    child = tmp_path / "c.st"
    save(make_tiny_checkpoint(1), child)
    table = _table(parent.generator(), ["kid"])
    method = ExpansionMethod(parent, [parse_task(f"kid:model:{child}")], table)
    tr = run_expansion(method, TrainOptions(kimg=0.004, batch=4, snap_kimg=1), tmp_path / "run", progress=False)
    ckpt = expanded_checkpoint(tr, {})
    assert ckpt.nets == ["G_ema", "G"] and ckpt.d_config is None
    with pytest.raises(GancraftError, match="already an expanded model"):
        ExpansionMethod(ckpt, [parse_task(f"kid2:model:{child}")], table)
    assert Path(tmp_path / "run" / "run.json").exists()


def _with_dead_directions(dead: dict[int, float], seed: int = 0):
    """A tiny parent and an orthonormal basis Q of W in which row k's effect on every style is scaled
    by dead[k] (0: the generator ignores that direction entirely), and the basis file's order says
    nothing about it (no singular values; the dead rows sit in the middle)."""
    ckpt = make_tiny_checkpoint(seed)
    q, _ = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(11)))
    basis = q.t().contiguous()
    for key in [k for k in ckpt.tensors if k.endswith("affine.weight")]:
        W = ckpt.tensors[key]
        for k, keep in dead.items():
            d = basis[k]
            W = W - (1 - keep) * torch.outer(W @ d, d)
        ckpt.tensors[key] = W
    return ckpt, basis


def test_least_changing_picks_the_measured_dormant_directions():
    from gancraft.latent.sefa import measure_directions
    from gancraft.latent.subspace import least_changing
    from gancraft.metrics.perceptual import pixel_distance

    ckpt, basis = _with_dead_directions({3: 0.0, 12: 0.0, 20: 0.05})
    G = ckpt.generator()
    ws = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(2))).detach()
    changes, _ = measure_directions(G, basis, ws, 20.0, pixel_distance, progress=False)
    assert changes[3] < 1e-5 and changes[12] < 1e-5 and 0 < changes[20] < 0.2 * np.median(changes)
    assert sorted(least_changing(changes, 2)) == [3, 12]
    assert least_changing(changes, 3)[2] == 20
    assert least_changing([0.5, 0.1, 0.1, 0.9], 2) == [2, 1]
    with pytest.raises(GancraftError, match="3 tasks"):
        least_changing([0.1, 0.2], 3)


def test_cli_expand_directions_dormant_measured_and_from_csv(tmp_path):
    from gancraft.latent.sefa import save_directions, write_measure_csv

    ckpt, basis = _with_dead_directions({7: 0.0, 25: 0.0})
    parent, child, dirs = tmp_path / "p.st", tmp_path / "c.st", tmp_path / "q.st"
    save(ckpt, parent)
    save(make_tiny_checkpoint(1), child)
    save_directions(dirs, basis, {"kind": "test"}, singular_values=torch.arange(32, 0, -1).float())
    common = [
        "expand",
        str(parent),
        "--sefa",
        str(dirs),
        "--task",
        f"a:model:{child}",
        "--task",
        f"b:model:{child}",
        "--kimg",
        "0.004",
        "--batch",
        "4",
        "--quiet",
        "--device",
        "cpu",
    ]
    res = cli_invoke(*common, "-o", tmp_path / "x.st", "--directions", "dormant", "--dormant-samples", "3")
    assert res.exit_code == 0, res.output
    out = load(tmp_path / "x.st")
    assert sorted([out.domains["a"]["index"], out.domains["b"]["index"]]) == [7, 25]
    assert "measured dormancy" in out.history[-1]["params"]["directions_source"]
    assert torch.allclose(torch.tensor(out.domains["a"]["direction"]), basis[out.domains["a"]["index"]], atol=1e-6)

    # a 'sefa --measure' CSV of these directions: its least-changing rows, least first
    changes = np.linspace(1.0, 2.0, 32)
    changes[[4, 9]] = [0.01, 0.02]
    csv = tmp_path / "q.measure.csv"
    write_measure_csv(csv, changes, np.zeros(32), np.arange(32, 0, -1), changes < 0.1, "pixel-l1")
    res = cli_invoke(*common, "-o", tmp_path / "y.st", "--directions", f"dormant:{csv}")
    assert res.exit_code == 0, res.output
    out = load(tmp_path / "y.st")
    assert (out.domains["a"]["index"], out.domains["b"]["index"]) == (4, 9)

    # a CSV measured on other directions is refused before any training
    write_measure_csv(csv, changes, np.zeros(32), np.ones(32), changes < 0.1, "pixel-l1", force=True)
    res = cli_invoke(*common, "-o", tmp_path / "z.st", "--directions", f"dormant:{csv}")
    assert res.exit_code == 2 and "singular values" in res.stderr and not (tmp_path / "z.st").exists()


def _text_direction(clip, source: str, target: str, templates) -> torch.Tensor:
    """NADA's text direction written out: mean over templates of the unit embeddings' change."""
    src = clip.encode_text([t.format(source) for t in templates])
    tgt = clip.encode_text([t.format(target) for t in templates])
    return torch.nn.functional.normalize((tgt - src).mean(0), dim=-1)


def test_directional_clip_loss_templates_and_summed_models():
    from gancraft.metrics.clip import load_clip
    from gancraft.train.clip_losses import DirectionalClipLoss, nada_templates

    templates = nada_templates()
    assert len(templates) == 79 and templates[0] == "a bad photo of a {}." and "a photo of many {}." not in templates
    clips = [load_clip("ViT-B-32", random_init=True, seed=s, **TINY_CLIP) for s in (0, 1)]
    gen = torch.Generator().manual_seed(0)
    src, ada = (torch.rand(3, 3, 16, 16, generator=gen) * 2 - 1 for _ in range(2))
    singles = []
    for clip in clips:
        with torch.no_grad():
            change = torch.nn.functional.normalize(clip.encode_images(ada) - clip.encode_images(src), dim=-1)
            expected = 1 - change @ _text_direction(clip, "a photo", "a sketch", templates)
            bare = 1 - change @ _text_direction(clip, "a photo", "a sketch", ["{}"])
        loss = DirectionalClipLoss([clip], "a photo", "a sketch", templates)(src, ada)
        assert torch.allclose(loss, expected, atol=1e-5)
        assert torch.allclose(DirectionalClipLoss([clip], "a photo", "a sketch")(src, ada), bare, atol=1e-5)
        assert not torch.allclose(expected, bare, atol=1e-3)
        singles.append(loss)
    # the official code sums the CLIP models' losses (weights 1.0 each), it does not average them
    both = DirectionalClipLoss(clips, "a photo", "a sketch", templates)(src, ada)
    assert torch.allclose(both, singles[0] + singles[1], atol=1e-5)


def test_clip_weights_file_of_openai_gets_quick_gelu(tmp_path):
    """`--clip-weights b32.bin` for OpenAI's weights must build the QuickGELU towers they were
    trained with; a file named for another source must not."""
    from gancraft.metrics.clip import load_clip

    net = load_clip("ViT-B-32", random_init=True, seed=0, **TINY_CLIP).model
    act = lambda c: type(c.model.visual.transformer.resblocks[0].mlp.gelu).__name__  # noqa: E731
    for name, quick in (
        ("b32.bin", True),
        ("ViT-B-32.pt", True),
        ("openai-b32.safetensors.bin", True),
        ("CLIP-ViT-B-32-laion2B-s34B-b79K.bin", False),
        ("datacomp_b32.bin", False),
    ):
        torch.save(net.state_dict(), tmp_path / name)
        clip = load_clip("ViT-B-32", weights=tmp_path / name, **TINY_CLIP)
        assert (act(clip) == "QuickGELU") == quick and ("QuickGELU" in clip.description) == quick, name
    assert act(load_clip("ViT-B-32", weights=tmp_path / "b32.bin", quick_gelu=False, **TINY_CLIP)) == "GELU"


def test_clip_task_moves_images_along_the_text_direction(tmp_path):
    """Training a clip task turns the base->domain image change toward target - source in CLIP's
    space (measured here with the direction written out), not away from it."""
    from gancraft.metrics.clip import load_clip
    from gancraft.train.clip_losses import nada_templates

    clip = load_clip("ViT-B-32", random_init=True, seed=0, **TINY_CLIP)
    parent = make_tiny_checkpoint(0, with_d=False)
    G0 = parent.generator()
    method = ExpansionMethod(
        parent,
        [parse_task("s:clip:a pencil sketch")],
        _table(G0, ["s"]),
        ExpansionSettings(replay_lpips=0),
        clips=[clip],
    )
    text_dir = _text_direction(clip, "a photo", "a pencil sketch", nada_templates())
    z = torch.randn(16, G0.z_dim, generator=torch.Generator().manual_seed(5))

    def alignment(G) -> float:
        with torch.no_grad():
            ws = G.mapping(z)
            base = clip.encode_images(G.synthesis(method.subspaces.base(ws), noise_mode="const"))
            dom = clip.encode_images(G.synthesis(method.subspaces.domain(ws, "s"), noise_mode="const"))
            return (torch.nn.functional.normalize(dom - base, dim=-1) @ text_dir).mean().item()

    before = alignment(G0)
    tr = run_expansion(
        method, TrainOptions(kimg=0.16, batch=8, snap_kimg=1, ema_kimg=0, lr_g=0.02), tmp_path / "run", progress=False
    )
    assert alignment(tr.G) > before + 0.2


def test_report_follows_the_papers_protocol(model_runs, tmp_path):
    """Base FID against the parent stays near the floor; each trained domain's FID to its child
    falls and the probe labels its samples as that child's (before: as the parent's)."""
    from gancraft.metrics import TorchScriptExtractor
    from gancraft.train.expansion_report import expansion_report, format_report

    parent = model_runs["parent"]
    tasks = [parse_task(f"{n}:model:{model_runs['paths'][n]}") for n in ("a", "b")]
    method = ExpansionMethod(parent, tasks, model_runs["table"], ExpansionSettings(source_weight=0.0))
    trainer = run_expansion(
        method, TrainOptions(kimg=0.24, batch=8, snap_kimg=1, ema_kimg=0, lr_g=0.01), tmp_path / "run", progress=False
    )
    ex = TorchScriptExtractor(_features(tmp_path))
    rows, floor = expansion_report(method, trainer.G, ex, n=48, batch=16)
    got = {(r.domain, r.measure.split(":")[0].split(" ")[0]): r for r in rows}
    assert format_report(rows, floor, 48, ex.name).splitlines()[1].endswith(f"on other seeds = {floor:.4f}")
    assert got["base", "FID"].before < 3 * floor + 1e-3 and got["base", "FID"].after < got["a", "FID"].before
    for dom in ("a", "b"):
        fid, probe = got[dom, "FID"], got[dom, "probe"]
        assert fid.after < 0.5 * fid.before
        assert probe.before < 0.2 and probe.after > 0.6, probe
    assert got["base", "probe"].before > 0.8 and got["base", "probe"].after > 0.5


def test_report_scores_base_subspace_and_parent_against_real_images(model_runs, tmp_path):
    """The real-data row compares what the paper compares (Sec. 4.5): the expanded model's base
    subspace and the parent over all of W, each against the real images, on the report's seeds."""
    from gancraft.metrics import TorchScriptExtractor
    from gancraft.metrics.features import to_unit_range
    from gancraft.train.expansion_report import _fid, expansion_report

    trainer = model_runs["runs"]["a", "b"]
    method, G, parent = trainer.method, trainer.G_ema, trainer.method.source
    ex = TorchScriptExtractor(_features(tmp_path))
    real = ex(to_unit_range(make_tiny_checkpoint(3).generator()(torch.randn(40, G.z_dim), None, noise_mode="const")))
    rows, _ = expansion_report(method, G, ex, n=32, batch=16, seed=4, real=real, real_name="photos/")
    row = rows[1]
    assert (row.domain, row.measure) == ("base", "FID to photos/ (before: the parent, all of W)")
    z = torch.randn([32, G.z_dim], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        base = G.synthesis(method.subspaces.base(G.mapping(z)), noise_mode="const")
        whole = parent(z, None, noise_mode="const")
    assert row.before == pytest.approx(_fid(ex(to_unit_range(whole)), real), rel=1e-9)
    assert row.after == pytest.approx(_fid(ex(to_unit_range(base)), real), rel=1e-9)
    # not the parent's base subspace, nor the expanded model over all of W
    with torch.no_grad():
        others = [
            parent.synthesis(method.subspaces.base(parent.mapping(z)), noise_mode="const"),
            G(z, None, noise_mode="const"),
        ]
    assert all(abs(row.after - _fid(ex(to_unit_range(x)), real)) > 1e-6 for x in others)
    assert [r.measure for r in expansion_report(method, G, ex, n=32, batch=16, seed=4)[0]] == [
        r.measure for r in rows if r is not row
    ]


def test_replay_and_tasks_see_the_right_subspaces(tmp_path, monkeypatch):
    """One step, every synthesis recorded: the frozen source replays only base-subspace latents
    (repurposed coordinates at w_avg's), and an images task trains on its inversions moved onto its
    own subspace, never on the base subspace; the inversions are the source's, of these images."""
    from gancraft.latent import subspace

    parent = make_tiny_checkpoint(0, with_d=False)  # no D: the source renders nothing but replay
    G0 = parent.generator()
    folder = _image_targets(tmp_path / "me", G0.z_dim)
    child = tmp_path / "c.st"
    save(make_tiny_checkpoint(1), child)
    table = _table(G0, ["me", "kid"])
    method = ExpansionMethod(
        parent,
        [parse_task(f"me:images:{folder}"), parse_task(f"kid:model:{child}")],
        table,
        ExpansionSettings(invert_steps=15),
    )
    replayed, on_domain = [], []
    # replay renders without gradients, the inversion (unprojected, its own latents) with them; G and
    # G_ema are deep copies of the source and carry the hook too
    source = method.source.synthesis
    source.register_forward_pre_hook(
        lambda module, args: (
            None if module is not source or torch.is_grad_enabled() else replayed.append(args[0].detach().clone())
        )
    )
    domain = subspace.Subspaces.domain

    def recording(self, ws, name):
        on_domain.append((name, ws.detach().clone()))
        return domain(self, ws, name)

    monkeypatch.setattr(subspace.Subspaces, "domain", recording)
    run_expansion(
        method,
        TrainOptions(kimg=0.006, batch=6, snap_kimg=1, ema_kimg=0, pl_weight=0),
        tmp_path / "run",
        progress=False,
        max_steps=1,
    )
    basis = method.subspaces.basis
    w_avg_coords = G0.mapping.w_avg @ basis.t()
    assert replayed and all(
        torch.allclose(ws @ basis.t(), w_avg_coords.expand(*ws.shape[:2], -1), atol=1e-4) for ws in replayed
    )
    inv = method.inverted["me"]
    trained = [ws for name, ws in on_domain if name == "me" and ws.shape[0] < 6]  # the grid renders 6+
    assert trained, "the images task never rendered its own subspace"
    for ws in trained:
        assert all(any(torch.allclose(row, w, atol=1e-6) for w in inv) for row in ws[:, 0])
    with torch.no_grad():
        errors = [
            (G0.synthesis(w.unsqueeze(1).expand(-1, G0.num_ws, -1)) - method.images["me"]).square().mean()
            for w in (inv, G0.mapping.w_avg.expand(3, -1))
        ]
    assert errors[0] < 0.9 * errors[1]
    # and they are the source's inversions of these very images, as invert_images gives them
    assert torch.allclose(inv, invert_images(G0, method.images["me"], steps=15), atol=1e-5)


def test_source_adversarial_step_updates_g(tmp_path):
    """With every other G loss weighted 0 and no path length, the source adversarial step alone
    must move G's synthesis (and only it: the mapping stays frozen)."""
    parent = make_tiny_checkpoint(0)
    child = tmp_path / "c.st"
    save(make_tiny_checkpoint(1), child)
    settings = ExpansionSettings(replay_l2=0, replay_lpips=0, expansion_weight=0, source_weight=1.0)
    method = ExpansionMethod(parent, [parse_task(f"kid:model:{child}")], _table(parent.generator(), ["kid"]), settings)
    tr = run_expansion(
        method,
        TrainOptions(kimg=0.004, batch=4, snap_kimg=1, ema_kimg=0, pl_weight=0),
        tmp_path / "run",
        progress=False,
        max_steps=1,
    )
    G0 = parent.generator()
    moved = [k for k, v in tr.G.state_dict().items() if not torch.equal(v, G0.state_dict()[k])]
    assert any(k.startswith("synthesis.") for k in moved) and not any(k.startswith("mapping.") for k in moved)


def test_library_writes_what_the_command_writes(tmp_path):
    from gancraft.latent.sefa import save_directions

    parent, child, dirs = tmp_path / "p.st", tmp_path / "c.st", tmp_path / "q.st"
    save(make_tiny_checkpoint(0), parent)
    save(make_tiny_checkpoint(1), child)
    save_directions(dirs, torch.eye(32), {"kind": "test"})
    task = f"kid:model:{child}"
    cli = tmp_path / "cli.st"
    args = ["--sefa", dirs, "--directions", "3", "--kimg", "0.004", "--batch", "4", "--seed", "5", "--device", "cpu"]
    res = cli_invoke("expand", parent, "--task", task, *args, "--quiet", "-o", cli)
    assert res.exit_code == 0, res.output
    opts = TrainOptions(kimg=0.004, batch=4, snap_kimg=1.0, seed=5, lr_g=0.001, lr_d=0.001, ema_kimg=10.0, gamma=10.0)
    api = expand(
        load(parent), [task], tmp_path / "api.st", directions_file=dirs, directions=[3], options=opts, progress=False
    )
    assert api == [tmp_path / "api.st"] and (tmp_path / "api-run" / "run.json").exists()
    a, b = load(cli), load(api[0])
    assert a.domains == b.domains and a.domains["kid"]["index"] == 3
    assert a.tensors.keys() == b.tensors.keys()
    for k in a.tensors:
        assert torch.equal(a.tensors[k], b.tensors[k]), k


def test_library_errors_name_the_value_and_the_command_adds_the_option(tmp_path):
    from gancraft.latent.sefa import write_measure_csv

    parent, child, csv = tmp_path / "p.st", tmp_path / "c.st", tmp_path / "m.csv"
    save(make_tiny_checkpoint(0), parent)
    save(make_tiny_checkpoint(1), child)
    write_measure_csv(csv, np.ones(5), np.zeros(5), np.ones(5), np.zeros(5, bool), "pixel-l1")
    with pytest.raises(GancraftError) as caught:
        expand(load(parent), [f"kid:model:{child}"], tmp_path / "x.st", directions=f"dormant:{csv}")
    assert caught.value.field == "directions" and "--" not in str(caught.value)
    res = cli_invoke(
        "expand", parent, "--task", f"kid:model:{child}", "--directions", f"dormant:{csv}", "-o", tmp_path / "x.st"
    )
    assert res.exit_code == 2 and not (tmp_path / "x.st").exists()
    assert res.stderr.strip().splitlines()[-1] == (
        f"gancraft expand: error: --directions: dormant:{csv}: the CSV measures 5 directions, the directions have 32"
    )


def test_settings_and_direction_choices_name_fields_not_flags():
    cases = [
        (lambda: ExpansionSettings(distance=0).validate(), "distance"),
        (lambda: ExpansionSettings(replay_lpips=float("nan")).validate(), "replay_lpips"),
        (lambda: ExpansionSettings(invert_steps=0).validate(), "invert_steps"),
        (lambda: choose_directions(8, 2, [1]), "directions"),
        (lambda: choose_directions(8, 1, [8]), "directions"),
        (lambda: expansion_table(["a"], torch.eye(4), [0], -1.0), "distance"),
    ]
    for call, field in cases:
        with pytest.raises(GancraftError) as caught:
            call()
        assert caught.value.field == field and "--" not in str(caught.value), (field, str(caught.value))


def test_cli_expand_report_real_folder_errors(tmp_path):
    parent, child = tmp_path / "p.st", tmp_path / "c.st"
    save(make_tiny_checkpoint(0), parent)
    save(make_tiny_checkpoint(1), child)
    (tmp_path / "empty").mkdir()
    common = ["expand", parent, "--task", f"kid:model:{child}", "-o", tmp_path / "x.st", "--kimg", "0.004"]
    common += ["--batch", "4", "--directions", "5", "--quiet", "--device", "cpu"]
    # checked before any training: nothing is written
    extractor = ["--report-extractor", _features(tmp_path)]
    line = cli_fails(*common, "--report", tmp_path / "r.txt", *extractor, "--report-real", tmp_path / "empty")
    assert f"{tmp_path / 'empty'}: no images" in line
    assert "--report-real" in cli_fails(*common, "--report-real", tmp_path / "empty")
    assert not (tmp_path / "x.st").exists() and not (tmp_path / "x-run").exists()
