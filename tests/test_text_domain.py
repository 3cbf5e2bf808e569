"""Text-driven domain vectors as the official HyperDomainNet code trains them: td_single and td_multiple pieces."""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F

from gancraft import load
from gancraft.latent.domains import resolve_domain
from gancraft.metrics import clip as clip_mod
from gancraft.train import hyper as hy
from gancraft.train import text_domain as td

from conftest import cli_fails, cli_invoke, make_tiny_checkpoint

TINY_CLIP = dict(
    embed_dim=16,
    vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
    text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
)
PROMPTS = ["a pencil sketch", "an oil painting", "a cartoon"]


@pytest.fixture(scope="module")
def clip():
    return clip_mod.load_clip("ViT-B-32", random_init=True, seed=0, **TINY_CLIP)


@pytest.fixture(scope="module")
def parent():
    return make_tiny_checkpoint(seed=1)


def _first_vs_later(log: list[dict[str, float]]) -> float:
    norms = [s["grad_norm"] for s in log]
    assert all(torch.isfinite(torch.tensor(norms))), norms
    return max(norms[:3]) / statistics.median(norms[5:])


def test_text_vector_first_steps_have_ordinary_gradients(parent, clip):
    # d starts at exactly zero (official); shared noise would make source == adapted and the
    # first gradient ~1e5-1e8 times the later ones
    result = td.train_text_vector(parent, "a cartoon", [clip], td.TextVectorSettings(steps=16, seed=3))
    assert _first_vs_later(result.log) < 50
    # and the recipe learns: the directional loss falls from ~1 (no change) over the run
    first, last = result.log[0]["direction"], statistics.mean(s["direction"] for s in result.log[-5:])
    assert first > 0.9 and last < first - 0.15, (first, last)
    assert result.vector.abs().max() > 0.05


def test_hyper_first_steps_have_ordinary_gradients(parent, clip):
    # without crops, only independent noise and the small non-zero init keep the loss defined
    settings = hy.HyperSettings(steps=16, batch=4, lr=1e-3, width=32, seed=3, crop=None)
    result = hy.train_hyper(parent, PROMPTS, clip, settings)
    assert _first_vs_later(result.log) < 50


def test_official_defaults():
    s, h = td.TextVectorSettings(), hy.HyperSettings()
    # td_single_ffhq.yaml
    assert (s.steps, s.batch, s.lr, s.betas, s.style_mixing, s.source_prompt) == (
        300,
        4,
        0.1,
        (0.9, 0.999),
        0.9,
        "Photo",
    )
    # td_multiple.yaml
    assert (h.steps, h.batch, h.lr, h.betas, h.style_mixing) == (10000, 8, 5e-5, (0.9, 0.999), 0.9)
    assert (h.tt_weight, h.angle_weight, h.norm_weight) == (0.4, 0.0, 0.0)
    assert (h.convex_hull, h.resample_cos, h.crop, h.width, h.depth, h.head_depth) == (True, 0.95, 0.8, 512, 4, 2)
    templates = td.prompt_templates()
    assert len(templates) == 79 and len(set(templates)) == 79 and all("{}" in t for t in templates)
    assert "a photo of many {}." not in templates and "a sketch of a {}." in templates


def test_resampled_targets_stay_within_the_cosine_bound():
    torch.manual_seed(0)
    v = torch.randn(64, 3, 16)
    r = td.resample_near(v, 0.95)
    cos = F.cosine_similarity(r, v, dim=-1)
    assert torch.allclose(r.norm(dim=-1), torch.ones(64, 3), atol=1e-5)
    assert cos.min() >= 0.95 - 1e-5 and cos.max() < 0.9999
    assert cos.max() - cos.min() > 0.02  # spread over the band, not pinned to its edge


def test_convex_mixing_weights_and_mixtures():
    torch.manual_seed(0)
    a = td.dirichlet_alphas(8)
    assert a.shape == (8, 8) and (a >= 0).all() and torch.allclose(a.sum(1), torch.ones(8))
    v = F.normalize(torch.randn(8, 5, 16), dim=-1)
    mixed = td.convex_mix(v, a)
    assert torch.allclose(mixed.norm(dim=-1), torch.ones(8, 5), atol=1e-5)
    assert torch.allclose(mixed[2], F.normalize((a[2].view(8, 1, 1) * v).sum(0), dim=-1), atol=1e-5)
    assert torch.allclose(td.convex_mix(v, torch.eye(8)), v, atol=1e-6)


def test_crops_and_style_mixing(parent):
    torch.manual_seed(0)
    img = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16)
    corners = {
        tuple(td.random_crop(img, 0.8)[0, 0, 0, :1].tolist() + [td.random_crop(img, 0.8).shape[-1]]) for _ in range(40)
    }
    assert {c[1] for c in corners} == {12} and len(corners) > 3  # 80% side, several positions
    G = parent.generator()
    mixed = td.mixing_latents(G, 3, 1.0, torch.device("cpu"))
    switches = (mixed[:, 1:] != mixed[:, :-1]).any(-1).any(0).sum()
    assert switches == 1  # two latents, one crossover for the whole batch
    plain = td.mixing_latents(G, 3, 0.0, torch.device("cpu"))
    assert not (plain[:, 1:] != plain[:, :-1]).any()


def test_hyper_batch_is_mixed_and_resampled(parent, clip, monkeypatch):
    seen = {}
    real_terms = hy.clip_terms

    def spy(src_enc, ada_enc, src_text, trg_text):
        seen["targets"] = trg_text.detach().clone()
        return real_terms(src_enc, ada_enc, src_text, trg_text)

    monkeypatch.setattr(hy, "clip_terms", spy)
    texts = hy._Texts(clip, PROMPTS, "Photo", templates=True)
    G = parent.generator()
    base = dict(batch=4, width=16, seed=0)
    for convex, resample in ((False, None), (True, None), (True, 0.95)):
        settings = hy.HyperSettings(convex_hull=convex, resample_cos=resample, **base)
        net = hy.HyperNetwork(hy.HyperConfig(16, hy.style_dims(G), width=16)).train()
        inputs = []
        net.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach().clone()))
        with td.seeded(0, torch.device("cpu")):
            hy.hyper_step_losses(G, net, clip, texts, settings, torch.device("cpu"))
        # the hyper-network sees each prompt alone, or Dirichlet mixtures of the batch's prompts
        is_prompt = (inputs[0] @ texts.inputs.T).max(1).values > 1 - 1e-5
        assert is_prompt.all() if not convex else not is_prompt.all()
        targets = seen["targets"]
        best = torch.einsum("bte,pte->btp", targets, texts.targets).max(-1).values
        if resample is None:
            assert (best > 1 - 1e-5).all() if not convex else (best < 1 - 1e-5).any()
        else:
            assert (best < 0.9999).all()


def test_finetune_prompt_writes_text_driven_vectors(tiny_ckpt_path, tmp_path, clip, monkeypatch):
    monkeypatch.setattr(clip_mod, "load_clip", lambda *a, **k: clip)
    out = tmp_path / "toon.st"
    result = cli_invoke(
        "finetune",
        tiny_ckpt_path,
        "--prompt",
        "toon=a cartoon",
        "--steps",
        "3",
        "--clip-model",
        "ViT-B-32",
        "-o",
        out,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    ckpt = load(out)
    src = load(tiny_ckpt_path)
    assert ckpt.domains["toon"] == {
        "kind": "vector",
        "tensor": "domain_vectors.toon",
        "prompt": "a cartoon",
        "modulation": "after-demod",
    }
    vec = ckpt.tensors["domain_vectors.toon"]
    assert vec.shape == (src.generator().synthesis.style_dim,) and vec.abs().max() > 0
    assert all(torch.equal(ckpt.tensors[k], v) for k, v in src.tensors.items())
    spec = resolve_domain(ckpt, "toon", ckpt.generator())
    assert torch.equal(spec.style_scale.flatten(), vec)
    assert ckpt.history[-1]["command"] == "finetune"


def test_text_vector_trains_in_its_modulation_order(parent, clip):
    # the loss renders through the order asked for: the same seed gives other vectors in the other order
    vectors = {
        o: td.train_text_vector(
            parent, "a cartoon", [clip], td.TextVectorSettings(steps=2, seed=3, modulation=o)
        ).vector
        for o in ("after-demod", "before-demod")
    }
    assert (vectors["after-demod"] - vectors["before-demod"]).abs().max() > 1e-3


def test_finetune_prompt_records_the_paper_figure_order(tiny_ckpt_path, tmp_path, clip, monkeypatch):
    monkeypatch.setattr(clip_mod, "load_clip", lambda *a, **k: clip)
    out = tmp_path / "toon.st"
    result = cli_invoke(
        "finetune",
        tiny_ckpt_path,
        "--prompt",
        "toon=a cartoon",
        "--steps",
        "1",
        "--modulation-order",
        "before-demod",
        "-o",
        out,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    ckpt = load(out)
    assert ckpt.domains["toon"]["modulation"] == "before-demod"
    assert resolve_domain(ckpt, "toon", ckpt.generator()).modulation == "before-demod"


@pytest.mark.parametrize(
    "args,what",
    [
        (["--prompt", "toon=a cartoon", "--kimg", "1"], "--kimg"),
        (["--prompt", "toon=a cartoon", "--domain", "a=b.st"], "--domain"),
        (["--prompt", "toon=a cartoon", "--params", "all"], "--params"),
        (["--prompt", "a cartoon"], "NAME=TEXT"),
        (["--prompt", "t/n=a cartoon"], "letters"),
        (["--prompt", "toon=Photo"], "source prompt"),
        (["--prompt", "toon=a cartoon", "--clip-weights", "x.pt"], "one file per CLIP model"),
        ([], "--domain"),
    ],
)
def test_finetune_prompt_misuse(tiny_ckpt_path, tmp_path, clip, monkeypatch, args, what):
    monkeypatch.setattr(clip_mod, "load_clip", lambda *a, **k: clip)
    assert what in cli_fails("finetune", tiny_ckpt_path, "-o", tmp_path / "o.st", "--steps", "1", *args)
