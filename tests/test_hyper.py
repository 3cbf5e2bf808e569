"""HyperDomainNet: a hyper-network trained on many prompts modulates a frozen generator, and nothing else."""

from __future__ import annotations

import copy

import pytest
import torch

from gancraft import Checkpoint, load, save
from gancraft.checkpoint.summary import summarize
from gancraft.errors import GancraftError
from gancraft.latent.domains import prompt_domain, resolve_domain
from gancraft.latent.prompts import PromptVectors, interpolate_prompts, style_scale_for_prompt
from gancraft.metrics import clip as clip_mod
from gancraft.nets import Generator, GeneratorConfig
from gancraft.train import hyper as hy
from gancraft.train import text_domain as td
from gancraft.train.clip_losses import DirectionalClipLoss

from conftest import cli_invoke, make_tiny_checkpoint

TINY_CLIP = dict(
    embed_dim=16,
    vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
    text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
)
PROMPTS = ["a pencil sketch", "an oil painting", "a cartoon", "a marble statue"]
SETTINGS = dict(steps=12, batch=4, lr=2e-2, width=32, depth=2, seed=3)


def tiny_clip(seed: int = 0) -> clip_mod.ClipModel:
    return clip_mod.load_clip("ViT-B-32", random_init=True, seed=seed, **TINY_CLIP)


@pytest.fixture(scope="module")
def clip():
    return tiny_clip()


@pytest.fixture(scope="module")
def parent() -> Checkpoint:
    """A tiny generator that already carries a plain per-domain vector, which must survive."""
    ckpt = make_tiny_checkpoint(seed=1)
    dim = ckpt.generator().synthesis.style_dim
    ckpt.tensors["domain_vectors.toon"] = torch.linspace(-0.2, 0.2, dim)
    ckpt.domains = {"toon": {"kind": "vector", "tensor": "domain_vectors.toon"}}
    return ckpt


@pytest.fixture(scope="module")
def trained(parent, clip):
    before = {k: v.clone() for k, v in parent.tensors.items()}
    result = hy.train_hyper(parent, PROMPTS, clip, hy.HyperSettings(**SETTINGS))
    return before, result


@pytest.fixture(scope="module")
def hyper_ckpt(trained, parent, tmp_path_factory) -> Checkpoint:
    path = tmp_path_factory.mktemp("hyper") / "hyper.st"
    save(hy.hyper_checkpoint(parent, trained[1], {"test": True}), path)
    return load(path)


def _z(n: int = 3, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, 32, generator=torch.Generator().manual_seed(seed))


def test_domain_vector_width_is_the_sum_of_style_channels(parent):
    G = parent.generator()
    conv_widths = [layer.in_channels for layer in G.synthesis.layers() if layer.kind == "conv"]
    assert hy.style_dims(G) == conv_widths
    assert sum(conv_widths) == G.synthesis.style_dim == hy.parameters_per_domain(parent)
    assert summarize(parent)["domain_vector_dim"] == sum(conv_widths)
    # the seed's headline: ~6k per domain against ~30M generator weights at 1024 px (config F)
    cfg = GeneratorConfig(img_resolution=1024, channel_base=32768, channel_max=512)
    big = Generator(cfg)
    per_domain = hy.parameters_per_domain(Checkpoint(tensors={}, g_config=cfg))
    assert per_domain == big.synthesis.style_dim == 6048
    assert 25e6 < sum(p.numel() for p in big.parameters()) < 35e6


def test_untrained_hyper_network_is_the_official_residual_mapper():
    # td_multiple.yaml at 1024 px (config F): ~14M parameters, 17 heads of 6048 values in all
    cfg = GeneratorConfig(img_resolution=1024, channel_base=32768, channel_max=512)
    net = hy.HyperNetwork(hy.HyperConfig(embed_dim=512, style_dims=hy.style_dims(Generator(cfg))))
    assert len(net.heads) == 17 and net.cfg.out_dim == 6048
    assert 13.5e6 < sum(p.numel() for p in net.parameters()) < 14.5e6
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in net.backbone.modules()) == 1 + 2 * 3
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):  # Xavier-uniform x 0.01, zero bias
            bound = 0.01 * (6 / (m.in_features + m.out_features)) ** 0.5
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.5 * bound
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
    # small but not zero: the official mapper never starts at exactly the source generator
    emb = torch.nn.functional.normalize(torch.randn(8, 512, generator=torch.Generator().manual_seed(0)), dim=-1)
    rms = net.train()(emb).square().mean().sqrt().item()
    assert 1e-3 < rms < 3e-2, rms


def test_training_leaves_the_generator_bit_identical(trained, parent, hyper_ckpt):
    before, result = trained
    assert set(parent.tensors) == set(before)
    assert all(torch.equal(parent.tensors[k], before[k]) for k in before)
    G_used = result.generator.state_dict()
    assert all(torch.equal(G_used[k], before[f"G_ema.{k}"]) for k in G_used)
    assert not any(p.requires_grad for p in result.generator.parameters())
    for k, v in before.items():
        assert torch.equal(hyper_ckpt.tensors[k], v), k
    assert {k for k in hyper_ckpt.tensors if k not in before} == {f"hyper.{k}" for k in result.hyper.state_dict()}


def test_directional_loss_decreases(trained, parent, clip):
    result = trained[1]
    before = hy.evaluate(parent, None, clip, PROMPTS, n=6)
    after = hy.evaluate(parent, result.hyper, clip, PROMPTS, n=6)
    assert before["direction"] == pytest.approx(1.0, abs=1e-3)  # d = 0: no image change at all
    assert after["direction"] < before["direction"] - 0.05, (before, after)
    assert after["domain_norm"] > 0


def test_images_for_a_prompt_come_only_through_the_modulation(hyper_ckpt, parent, clip):
    v = hy.domain_vector_for_prompt(hyper_ckpt, "a cartoon", clip)
    z = _z()
    # the reference generator is the parent's: any other route from prompt to pixels would differ
    G_parent = parent.generator()
    img = hyper_ckpt.generator()(z, style_scale=v)
    assert torch.equal(img, G_parent(z, style_scale=v))
    assert not torch.equal(img, G_parent(z))
    # the vector depends on the hyper.* tensors and the text only: zero the heads, get the parent back
    zeroed = copy.copy(hyper_ckpt)
    zeroed.tensors = {
        k: (torch.zeros_like(t) if k.startswith("hyper.heads.") else t) for k, t in hyper_ckpt.tensors.items()
    }
    v0 = hy.domain_vector_for_prompt(zeroed, "a cartoon", clip)
    assert torch.equal(hyper_ckpt.generator()(z, style_scale=v0), G_parent(z))
    assert torch.equal(style_scale_for_prompt(hyper_ckpt, "a cartoon", clip=clip), v)


def test_unseen_prompt_gives_a_valid_vector(hyper_ckpt, clip):
    seen = hy.domain_vectors_for_prompts(hyper_ckpt, PROMPTS, clip)
    v = hy.domain_vector_for_prompt(hyper_ckpt, "a watercolour of a lighthouse", clip)
    assert v.shape == (hyper_ckpt.generator().synthesis.style_dim,)
    assert torch.isfinite(v).all() and v.abs().sum() > 0
    assert not any(torch.equal(v, s) for s in seen)
    assert torch.isfinite(hyper_ckpt.generator()(_z(), style_scale=v)).all()


def test_save_load_round_trip(trained, hyper_ckpt, clip):
    result = trained[1]
    loaded = hy.load_hyper(hyper_ckpt)
    emb = clip.encode_text(PROMPTS + ["never seen"])
    assert torch.equal(loaded(emb), result.hyper(emb))
    info = hyper_ckpt.extra["hyper"]
    assert info["prompts"] == PROMPTS and info["source_prompt"] == "Photo" and info["clip"] == clip.name
    assert info["architecture"]["style_dims"] == hy.style_dims(hyper_ckpt.generator())
    assert all(hyper_ckpt.domains[p] == {"kind": "hyper", "prompt": p} for p in PROMPTS)
    assert hyper_ckpt.history[-1]["command"] == "hyper"
    # the plain domain vector of the parent is still there and still resolves
    G = hyper_ckpt.generator()
    spec = resolve_domain(hyper_ckpt, "toon", G)
    assert torch.equal(spec.style_scale.flatten(), hyper_ckpt.tensors["domain_vectors.toon"].flatten())


def test_the_modulation_order_is_stored_and_read_back(hyper_ckpt, clip):
    assert hyper_ckpt.extra["hyper"]["modulation"] == "after-demod"
    pv = PromptVectors(hyper_ckpt, clip=clip)
    G = hyper_ckpt.generator()
    assert pv.modulation == "after-demod"
    assert resolve_domain(hyper_ckpt, PROMPTS[0], G, prompts=pv).modulation == "after-demod"
    assert prompt_domain(hyper_ckpt, "a pirate", G, prompts=pv).modulation == "after-demod"
    # the parent's vector predates recorded orders: it keeps the order it was trained with, and the two
    # kinds of vector have no sum
    assert resolve_domain(hyper_ckpt, "toon", G).modulation == "before-demod"
    with pytest.raises(GancraftError, match="different modulation orders"):
        resolve_domain(hyper_ckpt, f"toon+{PROMPTS[0]}", G, prompts=pv)
    old = copy.copy(hyper_ckpt)
    old.extra = {**hyper_ckpt.extra, "hyper": {k: v for k, v in hyper_ckpt.extra["hyper"].items() if k != "modulation"}}
    old_pv = PromptVectors(old, clip=clip)
    assert old_pv.modulation == "before-demod"
    assert prompt_domain(old, "a pirate", G, prompts=old_pv).modulation == "before-demod"


def test_hyper_losses_render_in_the_settings_order(trained, parent, clip):
    G = parent.generator()
    texts = hy._Texts(clip, PROMPTS, "Photo", templates=False)
    totals = {}
    for order in ("after-demod", "before-demod"):
        settings = hy.HyperSettings(**SETTINGS, modulation=order)
        with td.seeded(0, torch.device("cpu")), torch.no_grad():
            totals[order] = hy.hyper_step_losses(G, trained[1].hyper, clip, texts, settings, torch.device("cpu"))[0]
    assert abs(totals["after-demod"] - totals["before-demod"]) > 1e-4


def test_batched_directional_loss_matches_the_nada_loss(clip):
    gen = torch.Generator().manual_seed(0)
    src = torch.rand(3, 3, 16, 16, generator=gen) * 2 - 1
    adapted = torch.rand(3, 3, 16, 16, generator=gen) * 2 - 1
    for target in ("a pencil sketch", "a cartoon"):
        text = td.templated_text(clip, ["a photo", target], None)
        ours = td.directional_loss(
            clip.encode_images(src), clip.encode_images(adapted), td.text_directions(text[0], text[1])
        )
        nada = DirectionalClipLoss([clip], "a photo", target)(src, adapted)
        assert torch.allclose(ours, nada, atol=1e-5)


def test_regularisers_vanish_exactly_when_their_property_holds():
    gen = torch.Generator().manual_seed(1)
    src = torch.nn.functional.normalize(torch.randn(4, 8, generator=gen), dim=-1)
    # scaled copies of the source images keep every pairwise angle
    assert td.in_domain_angle_loss(src, 3 * src).item() == pytest.approx(0, abs=1e-6)
    assert td.in_domain_angle_loss(src, torch.randn(4, 8, generator=gen)).item() > 1e-3
    # pairs differ in latent and domain: image changes equal to the text changes (plus a common offset)
    text = torch.randn(4, 5, 8, generator=gen)
    aligned = text.mean(1) + torch.randn(1, 8, generator=gen)
    assert td.target_target_loss(aligned, text).item() == pytest.approx(0, abs=1e-5)
    assert td.target_target_loss(-aligned, text).item() == pytest.approx(2, abs=1e-5)


def test_prompt_interpolation_end_points(hyper_ckpt, clip):
    pv = PromptVectors(hyper_ckpt, clip=clip)
    a, b = pv.vectors(["a cartoon", "a pencil sketch"])
    lin = pv.interpolate("a cartoon", "a pencil sketch", [0.0, 0.5, 1.0])
    assert torch.equal(lin[0], a) and torch.equal(lin[2], b)
    assert torch.allclose(lin[1], (a + b) / 2, atol=1e-6)
    text = interpolate_prompts(hyper_ckpt, "a cartoon", "a pencil sketch", [0.0, 0.5, 1.0], clip=clip, space="text")
    assert torch.allclose(text[0], a, atol=1e-5) and torch.allclose(text[2], b, atol=1e-5)
    assert torch.isfinite(text).all()
    with pytest.raises(GancraftError, match="space"):
        pv.interpolate("a", "b", [0.5], space="pixels")


def test_misuse_is_a_clear_error(hyper_ckpt, parent, clip, tmp_path):
    with pytest.raises(GancraftError, match="trained with CLIP"):
        hy.domain_vector_for_prompt(hyper_ckpt, "a cartoon", tiny_clip(seed=1))
    with pytest.raises(GancraftError, match="no hyper-network"):
        hy.load_hyper(parent)
    with pytest.raises(GancraftError, match="already holds a hyper-network"):
        hy.train_hyper(hyper_ckpt, ["a robot"], clip, hy.HyperSettings(steps=1, batch=2, width=4))
    with pytest.raises(GancraftError, match="unconditional"):
        hy.train_hyper(make_tiny_checkpoint(c_dim=3), ["a robot"], clip, hy.HyperSettings(steps=1, batch=2))
    with pytest.raises(GancraftError, match="source prompt"):
        hy.train_hyper(parent, ["Photo", "a robot"], clip, hy.HyperSettings(steps=1, batch=2))
    with pytest.raises(GancraftError, match="already a domain name"):
        result = hy.train_hyper(parent, ["toon"], clip, hy.HyperSettings(steps=1, batch=2, width=4))
        hy.hyper_checkpoint(parent, result)


def _run(*args):
    return cli_invoke("hyper", *args)


def _one_line_error(result, what: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gancraft hyper: error: ") and what in lines[0], result.stderr


@pytest.mark.parametrize(
    "content, what",
    [
        (None, "not found"),
        ("\n# only a comment\n\n", "no prompts"),
        ("a sketch\na cartoon\na sketch\n", "appears twice"),
        ("a sketch\nPhoto\n", "source prompt"),
        (b"\xff\xfe\x00bad", "not UTF-8"),
    ],
)
def test_cli_bad_prompts_file(tiny_ckpt_path, tmp_path, content, what):
    prompts = tmp_path / "prompts.txt"
    if isinstance(content, bytes):
        prompts.write_bytes(content)
    elif content is not None:
        prompts.write_text(content)
    out = tmp_path / "out.st"
    _one_line_error(_run(tiny_ckpt_path, "--prompts", prompts, "-o", out), what)
    assert not out.exists()


def test_cli_bad_options_and_missing_clip(tiny_ckpt_path, tmp_path, monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a sketch\na cartoon\n")
    out = tmp_path / "out.st"
    _one_line_error(_run(tiny_ckpt_path, "--prompts", prompts, "-o", out, "--batch", "1"), "--batch")
    _one_line_error(_run(tiny_ckpt_path, "--prompts", prompts, "-o", out, "--lr", "0"), "--lr")
    _one_line_error(
        _run(tiny_ckpt_path, "--prompts", prompts, "-o", out, "--clip-weights", tmp_path / "missing.pt"), "missing.pt"
    )
    # no weights given and none cached: refused without any download attempt
    monkeypatch.setattr(clip_mod, "cached_weights", lambda model="ViT-B-32", tag="openai": None)
    _one_line_error(_run(tiny_ckpt_path, "--prompts", prompts, "-o", out), "--clip-weights")
    assert not out.exists()


def test_cli_trains_and_writes_a_loadable_checkpoint(tiny_ckpt_path, tmp_path, monkeypatch, clip):
    monkeypatch.setattr(clip_mod, "load_clip", lambda *a, **k: clip)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# styles\na sketch\n\na cartoon\n")
    out = tmp_path / "out.st"
    args = (tiny_ckpt_path, "--prompts", prompts, "-o", out, "--steps", "2", "--batch", "2", "--width", "8")
    result = _run(*args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    ckpt = load(out)
    assert ckpt.extra["hyper"]["prompts"] == ["a sketch", "a cartoon"]
    assert ckpt.extra["hyper"]["modulation"] == "after-demod"
    assert hy.domain_vector_for_prompt(ckpt, "a pirate", clip).shape == (ckpt.generator().synthesis.style_dim,)
    src = load(tiny_ckpt_path)
    assert all(torch.equal(ckpt.tensors[k], v) for k, v in src.tensors.items())
    _one_line_error(_run(*args), "already exists")
    _one_line_error(_run(out, "--prompts", prompts, "-o", tmp_path / "again.st"), "already holds a hyper-network")
    before = tmp_path / "before.st"
    assert _run(*args[:4], before, *args[5:], "--modulation-order", "before-demod").exit_code == 0
    assert load(before).extra["hyper"]["modulation"] == "before-demod"
