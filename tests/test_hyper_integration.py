"""Hyper-network models in sample, render and inspect: prompts seen or not, morphs, misuse, summaries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gancraft import load, save
from gancraft.checkpoint.summary import summarize
from gancraft.errors import GancraftError
from gancraft.latent import domains as dom
from gancraft.latent.prompts import PromptVectors
from gancraft.latent.seeds import z_from_seeds
from gancraft.media.images import to_uint8
from gancraft.media.video import read_video_info
from gancraft.metrics import clip as clip_mod
from gancraft.train import hyper as hy

from conftest import cli_fails, cli_invoke, cli_ok, make_tiny_checkpoint

TINY_CLIP = dict(
    embed_dim=16,
    vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
    text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
)
PROMPTS = ["a pencil sketch", "a cartoon"]
UNSEEN = "a watercolour, of a lighthouse!"


@pytest.fixture(scope="module")
def clip():
    return clip_mod.load_clip("ViT-B-32", random_init=True, seed=0, **TINY_CLIP)


@pytest.fixture(scope="module")
def hyper_path(clip, tmp_path_factory):
    parent = make_tiny_checkpoint(seed=2)
    dim = parent.generator().synthesis.style_dim
    parent.tensors["domain_vectors.toon"] = torch.linspace(-0.3, 0.3, dim)
    # trained in the order the hyper-network uses, so the two compose ('toon+a cartoon')
    parent.domains = {"toon": {"kind": "vector", "tensor": "domain_vectors.toon", "modulation": "after-demod"}}
    result = hy.train_hyper(parent, PROMPTS, clip, hy.HyperSettings(steps=2, batch=4, lr=5e-2, width=8, seed=1))
    path = tmp_path_factory.mktemp("hyper") / "hyper.st"
    save(hy.hyper_checkpoint(parent, result), path)
    return path


@pytest.fixture(scope="module")
def plain_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("plain") / "plain.st"
    save(make_tiny_checkpoint(seed=2), path)
    return path


@pytest.fixture
def tiny_clip_loaded(monkeypatch, clip):
    """CLIP loading returns the tiny random CLIP the model was trained with; calls are counted."""
    calls = []

    def fake(*args, **kwargs):
        calls.append(kwargs)
        return clip

    monkeypatch.setattr(clip_mod, "load_clip", fake)
    return calls


invoke, ok, fails = cli_invoke, cli_ok, cli_fails


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def expected(ckpt, seeds, vector) -> np.ndarray:
    G = ckpt.generator()
    with torch.no_grad():
        images = G(z_from_seeds(seeds, G.z_dim), style_scale=vector)
    return to_uint8(images).astype(int)


def test_resolving_prompt_domains_loads_clip_once(hyper_path, tiny_clip_loaded, clip):
    ckpt = load(hyper_path)
    G = ckpt.generator()
    specs = dom.resolve_domains(ckpt, "all", G, clip_weights="weights.pt")
    assert len(tiny_clip_loaded) == 1 and tiny_clip_loaded[0]["weights"] == "weights.pt"
    assert [s.name for s in specs] == ["toon", *PROMPTS]
    pv = PromptVectors(ckpt, clip=clip)
    for spec, prompt in zip(specs[1:], PROMPTS):
        assert torch.equal(spec.style_scale, pv.vector(prompt))
        assert dom.check_folder_name(spec) == prompt.replace(" ", "_")
    both = dom.resolve_domain(ckpt, "toon+a cartoon", G, prompts=pv)
    assert torch.allclose(both.style_scale, ckpt.tensors["domain_vectors.toon"] + pv.vector("a cartoon"))
    unseen = dom.prompt_domain(ckpt, UNSEEN, G, prompts=pv)
    assert unseen.folder == "a_watercolour_of_a_lighthouse"
    assert torch.equal(unseen.style_scale, pv.vector(UNSEEN))
    # nothing built when only the plain vector is asked for
    assert dom.resolve_domains(ckpt, "toon", G, prompts=lambda: pytest.fail("CLIP loaded"))[0].name == "toon"


def test_sample_seen_and_unseen_prompts(hyper_path, tiny_clip_loaded, clip, tmp_path):
    out = tmp_path / "out"
    written = ok(
        "sample",
        hyper_path,
        "--prompt",
        PROMPTS[0],
        "--prompt",
        UNSEEN,
        "--seeds",
        "3,8",
        "--batch",
        "2",
        "--latents",
        tmp_path / "z.npz",
        "-o",
        out,
    )
    folders = {PROMPTS[0]: out / "a_pencil_sketch", UNSEEN: out / "a_watercolour_of_a_lighthouse"}
    assert written == [str(f / n) for f in folders.values() for n in ("seed0003.png", "seed0008.png")] + [
        str(tmp_path / "z.npz")
    ]
    assert len(tiny_clip_loaded) == 1
    ckpt = load(hyper_path)
    pv = PromptVectors(ckpt, clip=clip)
    plain = expected(ckpt, [3, 8], None)
    for prompt, folder in folders.items():
        want = expected(ckpt, [3, 8], pv.vector(prompt))
        got = np.stack([png(folder / "seed0003.png"), png(folder / "seed0008.png")])
        assert np.array_equal(got, want)
        assert np.abs(got - plain).max() > 0
    # the latents file remembers the unseen prompt as its rows' domain: the same pixels come back
    ok("sample", hyper_path, "--from-latents", tmp_path / "z.npz", "-o", tmp_path / "again")
    for folder in folders.values():
        again = tmp_path / "again" / folder.name / "seed0008.png"
        assert np.array_equal(png(again), png(folder / "seed0008.png"))


def test_sample_without_prompts_uses_every_stored_domain(hyper_path, tiny_clip_loaded, clip, tmp_path):
    ok("sample", hyper_path, "--seeds", "4", "--batch", "1", "-o", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["toon", "a_pencil_sketch", "a_cartoon"])
    ckpt = load(hyper_path)
    want = expected(ckpt, [4], PromptVectors(ckpt, clip=clip).vector("a cartoon"))[0]
    assert np.array_equal(png(tmp_path / "a_cartoon" / "seed0004.png"), want)


def test_render_morph_between_prompts(hyper_path, tiny_clip_loaded, clip, tmp_path):
    ok("sample", hyper_path, "--prompt", "a cartoon", "--prompt", UNSEEN, "--seeds", "3,5", "-o", tmp_path / "s")
    for space in ("vector", "text"):
        frames = tmp_path / f"m_{space}"
        ok(
            "render",
            hyper_path,
            "--prompt",
            "a cartoon",
            "--prompt",
            UNSEEN,
            "--prompt-space",
            space,
            "--seeds",
            "3,5",
            "--frames",
            "5",
            "-o",
            frames,
        )
        assert read_video_info(frames) == (5, 32, 16)
        for i, folder in ((0, "a_cartoon"), (4, "a_watercolour_of_a_lighthouse")):
            cells = np.concatenate([png(tmp_path / "s" / folder / f"seed{s:04d}.png") for s in (3, 5)], axis=1)
            assert np.abs(png(frames / f"frame{i:05d}.png") - cells).max() <= 1
        middle = png(frames / "frame00002.png")
        assert np.abs(middle - png(frames / "frame00000.png")).max() > 0
    out = tmp_path / "three.gif"
    assert ok(
        "render",
        hyper_path,
        "--prompts",
        "a cartoon,a pencil sketch,a robot",
        "--seeds",
        "1",
        "--loop",
        "--frames",
        "6",
        "-o",
        out,
    ) == [str(out)]
    assert read_video_info(out) == (6, 16, 16)
    # one prompt is the domain of an ordinary interpolation
    ok("render", hyper_path, "--prompt", UNSEEN, "--seeds", "3,5", "--frames", "2", "-o", tmp_path / "i")
    assert (
        np.abs(
            png(tmp_path / "i" / "frame00000.png")
            - png(tmp_path / "s" / "a_watercolour_of_a_lighthouse" / "seed0003.png")
        ).max()
        <= 1
    )


def test_misuse_exits_2_with_one_line(hyper_path, plain_path, tmp_path, monkeypatch):
    out = tmp_path / "o"
    assert "no hyper-network" in fails("sample", plain_path, "--prompt", "a cartoon", "-o", out)
    assert "no hyper-network" in fails("render", plain_path, "--prompts", "a,b", "-o", out)
    assert "given twice" in fails("sample", hyper_path, "--prompt", "a b", "--prompt", "a b", "-o", out)
    assert "share one folder" in fails("sample", hyper_path, "--prompt", "a b", "--prompt", "a  b", "-o", out)
    assert "at least two prompts" in fails("render", hyper_path, "--prompts", "a cartoon", "-o", out)
    assert "exclude" in fails("render", hyper_path, "--prompt", "x", "--domain", "toon", "-o", out)
    assert "--prompt" in fails("sample", hyper_path, "--from-latents", tmp_path / "z.npz", "--prompt", "x", "-o", out)
    assert "not both" in fails("render", hyper_path, "--prompts", "a,b", "--prompt", "c", "-o", out)
    assert "missing.pt" in fails(
        "sample", hyper_path, "--prompt", "x", "--clip-weights", tmp_path / "missing.pt", "-o", out
    )
    monkeypatch.setattr(clip_mod, "cached_weights", lambda model="ViT-B-32", tag="openai": None)
    assert "--clip-weights PATH" in fails("sample", hyper_path, "--prompt", "x", "-o", out)
    assert "--clip-weights PATH" in fails("sample", hyper_path, "-o", out)  # stored hyper domains need CLIP too
    assert "--clip-weights PATH" in fails("render", hyper_path, "--prompts", "a,b", "-o", tmp_path / "v.mp4")
    assert not out.exists() and not (tmp_path / "v.mp4").exists()
    with pytest.raises(GancraftError, match="no hyper-network"):
        dom.prompt_domain(load(plain_path), "x", load(plain_path).generator())


def test_inspect_shows_the_hyper_network(hyper_path):
    ckpt = load(hyper_path)
    hyper_params = sum(v.numel() for k, v in ckpt.tensors.items() if k.startswith("hyper."))
    style_dim = ckpt.generator().synthesis.style_dim
    info = summarize(ckpt)
    assert info["networks"]["hyper"]["parameters"] == hyper_params > 0
    assert info["networks"]["domain_vectors"] == {"tensors": 1, "parameters": style_dim}
    assert info["domain_parameters"] == {"toon": style_dim, "a pencil sketch": 0, "a cartoon": 0}
    h = info["hyper"]
    assert (h["parameters"], h["prompts"], h["source_prompt"]) == (hyper_params, 2, "Photo")
    assert h["architecture"]["style_dims"] == hy.style_dims(ckpt.generator()) and "RANDOM" in h["clip"]
    as_json = json.loads(invoke("inspect", hyper_path, "--json").stdout)
    assert as_json["hyper"] == h and as_json["networks"]["hyper"]["parameters"] == hyper_params
    text = invoke("inspect", hyper_path).stdout
    assert f"hyper-network {hyper_params:,} parameters" in text
    assert "2 training prompts" in text and "'Photo'" in text
    assert f"domain_vectors.toon ({style_dim:,} parameters)" in text
    assert "hyper" not in summarize(make_tiny_checkpoint())
    assert "hyper" not in summarize(make_tiny_checkpoint())["networks"]
