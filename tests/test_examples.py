"""The bundled example models and networks load, generate and measure what they claim."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import gancraft
from gancraft import toy

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name", toy.DOMAINS)
def test_example_models_load_and_generate(name):
    ckpt = gancraft.load(EXAMPLES / f"{name}.st")
    assert ckpt.g_config.img_resolution == 32 and ckpt.d_config is not None
    assert set(ckpt.nets) == {"G_ema", "D"}  # the training copy G is dropped to keep the repository light
    assert ckpt.non_finite() == []
    G = ckpt.generator()
    img = G(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)))
    assert img.shape == (2, 3, 32, 32) and torch.isfinite(img).all()
    assert ckpt.history and ckpt.history[0]["command"] == "train"
    D = ckpt.discriminator()
    assert D(img).shape == (2, 1)


@pytest.mark.parametrize("name", toy.DOMAINS)
def test_example_models_are_paper_shaped_and_trained_as_nvidia(name):
    """The latent side of a real StyleGAN2 (dormant directions need a W much wider than the toy
    domains' five factors), trained with path-length regularisation."""
    ckpt = gancraft.load(EXAMPLES / f"{name}.st")
    g = ckpt.g_config
    assert (g.z_dim, g.w_dim, g.mapping_layers, g.mapping_lr_multiplier) == (512, 512, 8, 0.01)
    options = ckpt.history[0]["params"]["options"]
    assert options["pl_weight"] == 2 and options["pl_interval"] == 4


def test_example_models_draw_their_own_domain():
    """Each file holds the model of the domain it is named after: its samples lie nearer the
    mean toy feature of real renders of that domain than of any other (a swapped file fails)."""
    net = torch.jit.load(str(EXAMPLES / "toy-features.pt")).eval()
    with torch.no_grad():
        means = torch.stack(
            [
                net(torch.from_numpy(toy.render_batch(d, 64, 55, 32)[0]).permute(0, 3, 1, 2).float() / 255).mean(0)
                for d in toy.DOMAINS
            ]
        )
        for i, name in enumerate(toy.DOMAINS):
            G = gancraft.load(EXAMPLES / f"{name}.st").generator()
            img = G(torch.randn(32, G.z_dim, generator=torch.Generator().manual_seed(1)))
            f = net(((img.clamp(-1, 1) + 1) / 2))
            nearest = torch.cdist(f, means).argmin(1)
            assert (nearest == i).float().mean() >= 0.9, (name, nearest.tolist())


def test_feature_extractor_separates_the_toy_domains():
    net = torch.jit.load(str(EXAMPLES / "toy-features.pt")).eval()
    feats = {}
    for d in toy.DOMAINS:
        imgs, _ = toy.render_batch(d, 16, 123, 32)
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            feats[d] = net(x)
        assert feats[d].shape == (16, 128)
    # every image is nearer its own domain's mean feature than any other domain's
    means = {d: f.mean(0) for d, f in feats.items()}
    for d, f in feats.items():
        dists = torch.stack([(f - means[e]).norm(dim=1) for e in toy.DOMAINS], 1)
        assert (dists.argmin(1) == toy.DOMAINS.index(d)).all()


def test_factor_regressor_reads_yaw():
    net = torch.jit.load(str(EXAMPLES / "toy-factors.pt")).eval()
    imgs, factors = toy.render_batch("cat", 64, 321, 32)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        pred = net(x)
    assert pred.shape == (64, len(toy.FACTORS))
    yaw = torch.from_numpy(factors["yaw"]).float()
    assert torch.corrcoef(torch.stack([pred[:, 0], yaw]))[0, 1] > 0.95


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_recipes_parse():
    for target in (
        "demo",
        "cocktail-table",
        "blend",
        "directions",
        "videos",
        "cocktail",
        "expand",
        "examples-report",
        "hyper-compare",
        "hyper-compare HC_TARGET=blend",
    ):
        r = subprocess.run(
            ["make", "-n", "-C", str(EXAMPLES.parent / "recipes"), *target.split(), "OUT=/nonexistent/out"],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, (target, r.stderr)
        if "HC_TARGET=blend" in target:  # the target model is the blend, made first, and the arms train toward it
            assert (
                "blend-layers --low" in r.stdout
                and "--domain blend=/nonexistent/out/hyper-compare-blend/blend.st" in r.stdout
            )


def test_quality_network_responds_to_damage_it_never_saw():
    """toy-quality.pt exists because toy-features.pt barely separates damaged renders from clean
    ones: a smooth warp (held out of its training) must move its features far more, against the
    real-vs-real floor, than it moves toy-features'."""
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        from make_quality_extractor import warp
    finally:
        sys.path.remove(str(EXAMPLES))
    from gancraft.metrics.fid import fid_from_stats, stats_from_features

    def renders(seed: int) -> torch.Tensor:
        return torch.from_numpy(toy.render_batch("cat", 64, seed, 32)[0]).permute(0, 3, 1, 2).float() / 255

    ref, clean = renders(41), renders(42)
    warped = warp(clean, clean, torch.Generator().manual_seed(0))
    ratio = {}
    for name in ("toy-features", "toy-quality"):
        net = torch.jit.load(str(EXAMPLES / f"{name}.pt")).eval()
        with torch.no_grad():
            stats = [stats_from_features([net(x).double().numpy()]) for x in (ref, clean, warped)]
        ratio[name] = fid_from_stats(stats[2], stats[0]) / fid_from_stats(stats[1], stats[0])
    assert ratio["toy-quality"] > 20 and ratio["toy-quality"] > 5 * ratio["toy-features"], ratio


def test_d_factor_probe_reads_the_logits_input_and_scores_held_out():
    """d_factor_probe.py's figures (examples/README.md) rest on two things: the hooks capture the
    layer that feeds D's logit (b4.out of the captured b4.fc gives D's output back), and the R^2
    is held out (a target the features hold scores near 1, one they do not hold near 0 or below;
    fitting on the test rows would score the noise target high)."""
    import sys

    import numpy as np

    sys.path.insert(0, str(EXAMPLES))
    try:
        from d_factor_probe import activations, held_out_r2
    finally:
        sys.path.remove(str(EXAMPLES))
    D = gancraft.load(EXAMPLES / "face.st").discriminator().eval()
    images = torch.from_numpy(toy.render_batch("face", 8, 5, 32)[0]).permute(0, 3, 1, 2).float() / 127.5 - 1
    acts = activations(D, images)
    assert list(acts) == ["b32", "b16", "b8", "b4.fc"] and acts["b4.fc"].shape == (8, 64)
    with torch.no_grad():
        logits = D(images)
        again = D.b4.out(torch.from_numpy(acts["b4.fc"]).float())
    torch.testing.assert_close(again, logits, rtol=1e-4, atol=1e-5)
    assert not D.b4.fc._forward_hooks  # the hooks are removed

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 200))
    held = x[:, 3] - 0.5 * x[:, 7]
    only_in_test = np.concatenate([rng.normal(size=300), x[300:, 3]])  # linear in the test rows alone
    r2 = held_out_r2(x, np.stack([held, only_in_test], 1), 300)
    assert r2[0] > 0.95 and r2[1] < 0.05


def test_d_logit_curve_ideal_and_binned_means():
    """The ideal D's curve in examples/README.md is log(real density / sample density) per bin: a
    generator that samples the factor uniformly over its range gets a flat curve, edge bins
    (half as wide inside the range) included; one that samples a single bin gets log(bin's share
    of the range) there and nothing elsewhere. binned_mean averages per bin of the readings."""
    import sys

    import numpy as np

    sys.path.insert(0, str(EXAMPLES))
    try:
        from d_logit_curve import SEED_CURVE, binned_mean, factor_grid, grid_renders, ideal_curve, render_factors
    finally:
        sys.path.remove(str(EXAMPLES))
    grid = factor_grid("expression", 9)
    assert np.allclose(grid, np.linspace(-1, 1, 9))
    uniform = np.random.default_rng(0).uniform(-1, 1, 200_000)
    assert np.abs(ideal_curve(uniform, grid, "expression")).max() < 0.05
    one_bin = np.full(100, 0.26)  # the bin centred on +0.25, an eighth of the range
    curve = ideal_curve(one_bin, grid, "expression")
    assert np.isclose(curve[5], np.log(1 / 8)) and np.isnan(np.delete(curve, 5)).all()
    means = binned_mean(np.array([1.0, 3.0, 10.0]), np.array([-0.98, -0.9, 0.1]), grid)
    assert means[0] == 2.0 and means[4] == 10.0 and np.isnan(means[1])
    # D's curve is read on renders that differ in the named factor alone
    renders = grid_renders("face", "expression", np.array([-1.0, 1.0]), 3)
    smile = dict(toy.sample_factors(3, SEED_CURVE), expression=np.ones(3))
    assert torch.equal(renders[1], render_factors("face", smile)) and not torch.equal(renders[0], renders[1])


def test_d_alone_renders_like_takes_the_factor_from_the_readings():
    """d_alone.py --fakes renders: the fakes differ from real renders in the named factor's
    marginal only, drawn from the generator's readings and clipped to the factor's range."""
    import sys

    import numpy as np

    sys.path.insert(0, str(EXAMPLES))
    try:
        from d_alone import SEED_FAKES, renders_like
    finally:
        sys.path.remove(str(EXAMPLES))
    fakes = renders_like("face", "expression", np.array([2.0]), 3)
    factors = dict(toy.sample_factors(3, SEED_FAKES), expression=np.ones(3))
    want = np.stack([np.asarray(toy.render("face", factors, i)) for i in range(3)])
    assert torch.equal(fakes, torch.from_numpy(want).permute(0, 3, 1, 2).float() / 127.5 - 1)


def test_d_alone_fresh_like_widens_only_the_low_resolutions():
    """d_alone.py --fresh --channel-max: a new D of the model's architecture whose cap is raised,
    so the toy shape's 64 channels become 64, 128, 256, 512 at 32, 16, 8, 4 px; without the
    option, the same widths as the model's D and new weights."""
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        from d_alone import fresh_like
    finally:
        sys.path.remove(str(EXAMPLES))
    from gancraft.nets.stylegan2 import Discriminator
    from gancraft.train.configs import architecture

    torch.manual_seed(0)
    D = Discriminator(architecture("toy", 32)[1])
    same, wide = fresh_like(D), fresh_like(D, 512)
    assert {k: v.shape for k, v in same.state_dict().items()} == {k: v.shape for k, v in D.state_dict().items()}
    assert not torch.equal(same.state_dict()["b32.conv0.weight"], D.state_dict()["b32.conv0.weight"])
    assert [wide.cfg.channels(r) for r in (32, 16, 8, 4)] == [64, 128, 256, 512]
    assert wide(torch.zeros(4, 3, 32, 32)).shape == (4, 1)


def test_d_alone_widened_keeps_ds_logits_and_lets_the_new_units_learn():
    """d_alone.py --channel-max without --fresh: the model's D, wider, gives the same logits (to
    rounding without the minibatch-std layer; within 0.01 with it, the new channels' epsilon), and
    the new units of the block that feeds the 4 px block get gradient from the first step."""
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        from d_alone import widened
    finally:
        sys.path.remove(str(EXAMPLES))
    import dataclasses

    from gancraft.nets.stylegan2 import Discriminator
    from gancraft.train.configs import architecture

    torch.manual_seed(0)
    x = torch.randn(16, 3, 32, 32)
    cfg = architecture("toy", 32)[1]
    for mbstd, tol in ((0, 1e-4), (1, 1e-2)):
        D = Discriminator(dataclasses.replace(cfg, mbstd_num_channels=mbstd))
        with torch.no_grad():  # trained-looking biases, so that a dropped one would show
            for name, p in D.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0, 0.5)
            D.b4.conv.weight[:, 64:] *= 50  # a D that leans on the minibatch-std feature
        wide = widened(D, 512)
        assert [wide.cfg.channels(r) for r in (32, 16, 8, 4)] == [64, 128, 256, 512]
        with torch.no_grad():
            before, after = D(x), wide(x)
        assert before.abs().mean() > 0.2 and (before - after).abs().max() < tol, (mbstd, (before - after).abs().max())
    wide(x).sum().backward()
    assert wide.b8.conv1.weight.grad[64:].abs().sum() > 0 and wide.b8.skip.weight.grad[64:].abs().sum() > 0


def test_d_alone_seen_hides_or_perturbs_only_as_asked():
    """d_alone.py --diffaug/--noise: without either, D sees the images unchanged; cutout zeroes a
    half-size square of every image and leaves the rest; instance noise has the asked sigma."""
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        from d_alone import row_mask, seen
    finally:
        sys.path.remove(str(EXAMPLES))
    images = torch.rand(64, 3, 32, 32) + 0.5  # no pixel is zero before the cut
    assert torch.equal(seen(images, (), 0.0), images)
    torch.manual_seed(0)
    cut = seen(images, ("cutout",), 0.0)
    hidden = (cut == 0).all(dim=1)
    assert torch.equal(cut[~hidden.unsqueeze(1).expand_as(cut)], images[~hidden.unsqueeze(1).expand_as(cut)])
    per_image = hidden.flatten(1).sum(1)
    assert per_image.min() > 0 and per_image.max() == 16 * 16  # clipped at the border, whole inside
    noisy = seen(images, (), 0.1)
    assert abs((noisy - images).std().item() - 0.1) < 0.005
    keep = row_mask("0-15,28-31", 32)
    shown = seen(images, (), 0.0, keep)
    assert not shown[:, :, :16].any() and not shown[:, :, 28:].any()
    assert torch.equal(shown[:, :, 16:28], images[:, :, 16:28])
    assert torch.equal(row_mask("8", 32), row_mask("8-8", 32)) and row_mask("", 32).all()
    for bad in ("8-40", "a-b", "11-8"):
        with pytest.raises(SystemExit, match="--hide-rows"):
            row_mask(bad, 32)


def test_d_saliency_finds_the_pixels_d_reads_and_the_factor_changes():
    """d_saliency.py: a D that reads only rows 8-11 gets all its gradient in that band (8x uniform
    with bands of 4 rows), and expression's pixels are the mouth's, in the lower half of a face."""
    import sys

    import numpy as np

    sys.path.insert(0, str(EXAMPLES))
    try:
        from d_saliency import band_profile, factor_pixels, saliency
    finally:
        sys.path.remove(str(EXAMPLES))
    weight = torch.zeros(3, 32, 32)
    weight[:, 8:12] = torch.linspace(-2, 2, 32)  # signs differ: saliency takes the magnitude
    maps = saliency(lambda x: (x * weight).sum(dim=(1, 2, 3)), torch.randn(5, 3, 32, 32))
    assert torch.allclose(maps[0], 3 * weight[0].abs())
    assert np.allclose(band_profile(maps, 4), [0, 0, 8, 0, 0, 0, 0, 0])
    base = toy.sample_factors(4, 1)
    mouth = factor_pixels("face", "expression", base)
    assert mouth.flatten(1).any(1).all() and not mouth[:, :16].any()
    background = factor_pixels("face", "background", base)
    assert background[:, 0, 0].all() and not background[:, 16, 16].any()


def test_draw_capacity_scales_factors_measures_drawings_and_fits_the_mapping():
    """draw_capacity.py: factors map their ranges onto [-1, 1]; a drawer that returns the renders
    themselves scores MSE 0, spread 1 and correlation 1; the fitted mapping sends z to the
    drawer's w of the factors z's first five coordinates stand for (normal CDF, then the range)."""
    import sys

    import numpy as np

    sys.path.insert(0, str(EXAMPLES))
    try:
        from draw_capacity import Drawer, evaluate, factor_vectors, fit_mapping, references, renders

        from report import real_images
    finally:
        sys.path.remove(str(EXAMPLES))
    from gancraft.nets.config import GeneratorConfig
    from gancraft.nets.stylegan2 import Generator

    ends = {name: np.array([lo, hi, (lo + hi) / 2]) for name, (lo, hi) in toy.FACTOR_RANGES.items()}
    assert torch.equal(factor_vectors(ends), torch.tensor([[-1.0] * 5, [1.0] * 5, [0.0] * 5]))

    images, f = renders("face", 40, 3)
    lookup = {tuple(row.tolist()): img for row, img in zip(f, images)}

    class Copy(torch.nn.Module):  # the perfect drawer: each factor row's own render
        def forward(self, rows):
            return torch.stack([lookup[tuple(r.tolist())] for r in rows])

    nets = {
        "factors": torch.jit.load(EXAMPLES / "toy-factors.pt").eval(),
        "features": torch.jit.load(EXAMPLES / "toy-features.pt").eval(),
    }
    r = evaluate(Copy(), (images, f), references(images, real_images("face", 40, 4), nets), nets)
    assert r["mse"] < 1e-10 and r["mouth_mse"] < 1e-10
    assert np.allclose(r["spread"], 1.0) and np.allclose(r["corr"], 1.0)

    torch.manual_seed(0)
    cfg = GeneratorConfig(z_dim=32, w_dim=16, img_resolution=8, mapping_layers=2, channel_base=64, channel_max=16)
    G = Generator(cfg)
    drawer = Drawer(G)
    err = fit_mapping(G, drawer, steps=800)
    assert err < 0.3, err
    z = torch.randn(500, 32)
    normal = torch.distributions.Normal(0.0, 1.0)
    with torch.no_grad():
        w = G.mapping(z, None, broadcast=False)
        want = drawer.embed(normal.cdf(z[:, :5]) * 2 - 1)
        wrong = drawer.embed(normal.cdf(z[:, 5:10]) * 2 - 1)
    assert (w - want).square().mean() < 0.3 * (w - wrong).square().mean()
    assert torch.allclose(G.mapping.w_avg, w.mean(0), atol=0.1 * float(w.std()))


def test_intended_factors_reads_z_first_coordinates_and_fits_slopes():
    """intended_factors.py: the intended factors are z's first five coordinates through the
    normal CDF, z being the seed-0 draw; slope and correlation are those of a least-squares line."""
    import sys

    import numpy as np

    sys.path.insert(0, str(EXAMPLES))
    try:
        from intended_factors import intended_and_read, slope_and_correlation, thirds
    finally:
        sys.path.remove(str(EXAMPLES))
    regressor = torch.jit.load(EXAMPLES / "toy-factors.pt").eval()
    intended, read = intended_and_read(str(EXAMPLES / "face.st"), 40, regressor)
    z = torch.randn(40, 512, generator=torch.Generator().manual_seed(0))
    want = torch.distributions.Normal(0.0, 1.0).cdf(z[:, :5]).double().numpy() * 2 - 1
    assert np.allclose(intended, want) and read.shape == (40, 5)
    assert read[:, [1, 2, 4]].min() < -0.3  # the [0, 1] factors scaled to [-1, 1], as the intended ones
    x = np.random.default_rng(0).uniform(-1, 1, (500, 2))
    y = np.stack([0.5 * x[:, 0] + 0.1, -x[:, 1] + np.random.default_rng(1).normal(0, 0.5, 500)], 1)
    (s0, c0), (s1, c1) = slope_and_correlation(x, y)
    assert np.isclose(s0, 0.5) and np.isclose(c0, 1.0)
    assert -1.15 < s1 < -0.85 and -0.85 < c1 < -0.6
    meant = np.array([-0.9, -0.6, -0.4, 0.0, 0.4, 0.6, 0.9])
    assert thirds(meant, np.arange(7.0)) == (0.5, 3.0, 5.5)


def test_d_logits_keep_the_discriminators_minibatch_std_groups():
    """d_logit_curve.logits scores every image in a minibatch-std group of D's own size (4), as
    training does: a set that 4 does not divide gets its last chunk padded, never groups of 2."""
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        from d_logit_curve import d_chunks, logits
    finally:
        sys.path.remove(str(EXAMPLES))
    D = gancraft.load(EXAMPLES / "face.st").discriminator()
    images = torch.rand(10, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        got = logits(D, images).float()
        want = D(torch.cat([images, images[:2]]))[:10].flatten()  # 12 = 3 groups of 4
        in_pairs = D(images).flatten()  # 10 = 5 groups of 2: what an undivided chunk computes
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, in_pairs, atol=1e-3)
    sizes = [(len(c), own) for c, own in d_chunks(D, torch.zeros(410, 3, 4, 4))]
    assert sizes == [(200, 200), (200, 200), (12, 10)]
    assert [(len(c), own) for c, own in d_chunks(D, torch.zeros(1, 3, 4, 4))] == [(4, 1)]


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=120)


def test_example_scripts_refuse_user_mistakes_in_one_line_with_exit_2(tmp_path: Path):
    # a GancraftError from the library (the model is missing) and a script's own check (SystemExit)
    for name, args, message in [
        ("d_logit_curve.py", [str(tmp_path / "face.st")], f"d_logit_curve.py: {tmp_path / 'face.st'}: no such file"),
        ("snapshot_check.py", ["face", str(EXAMPLES / "face.st"), "--range", "expression=2,1"], "expression range 2,1"),
    ]:
        r = _script(name, *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().splitlines() == [r.stderr.strip()] and message in r.stderr


def test_scripts_run_their_main_through_run_script():
    scripts = sorted(EXAMPLES.glob("*.py")) + sorted((EXAMPLES.parent / "recipes").glob("*.py"))
    bare = [p.name for p in scripts if "run_script(main)" not in p.read_text() and "import gancraft" in p.read_text()]
    assert not bare, bare


def test_run_script_exit_codes(monkeypatch, capsys):
    from gancraft.errors import CheckpointError, run_script

    monkeypatch.setattr("sys.argv", ["tool.py"])

    def fails(exc):
        def main():
            raise exc

        return main

    for main, code, err in [
        (fails(CheckpointError("m.st: no such file")), 2, "tool.py: m.st: no such file\n"),
        (fails(SystemExit("--n: must be positive")), 2, "tool.py: --n: must be positive\n"),
        (fails(SystemExit(3)), 3, ""),
        (lambda: 1, 1, ""),
        (lambda: None, None, ""),
    ]:
        with pytest.raises(SystemExit) as e:
            run_script(main)
        assert e.value.code == code and capsys.readouterr().err == err
    with pytest.raises(ZeroDivisionError):  # a bug stays a traceback
        run_script(lambda: 1 / 0)
