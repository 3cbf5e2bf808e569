"""LPIPS and CLIP wrappers: no downloads, local weight files, fallbacks that say so, differentiable CLIP input."""

from __future__ import annotations

import pytest
import torch

from gancraft.errors import GancraftError
from gancraft.metrics import clip as clip_mod
from gancraft.metrics.perceptual import load_lpips, perceptual_metric

TINY_CLIP = dict(
    embed_dim=16,
    vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
    text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
)


def tiny_clip(seed: int = 0) -> clip_mod.ClipModel:
    return clip_mod.load_clip("ViT-B-32", random_init=True, seed=seed, **TINY_CLIP)


def _images(seed: int, n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def random_lpips():
    return load_lpips(random_init=True)


def test_lpips_random_backbone_is_a_distance(random_lpips):
    x, y = _images(0), _images(1)
    assert torch.allclose(random_lpips(x, x), torch.zeros(2, 1, 1, 1), atol=1e-6)
    d = random_lpips(x, y).flatten()
    assert torch.all(d > 0)
    assert torch.allclose(d, random_lpips(y, x).flatten(), atol=1e-6)
    assert not any(p.requires_grad for p in random_lpips.parameters())


def test_lpips_absent_means_none_and_pixel_fallback_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert load_lpips() is None
    m = perceptual_metric()
    assert not m.is_lpips and "LPIPS unavailable" in m.description and "--lpips-weights" in m.description
    x, y = _images(0), _images(1)
    assert torch.allclose(m(x, y), ((x - y).abs() / 2).flatten(1).mean(1))


def test_lpips_backbone_from_a_local_file(tmp_path, monkeypatch):
    import torchvision

    torch.manual_seed(3)
    alex = torchvision.models.alexnet()
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(alex.state_dict(), path)
    model = load_lpips(path)
    assert torch.equal(model.net.slice1._modules["0"].weight, alex.features[0].weight)
    assert torch.equal(model.net.slice5._modules["10"].bias, alex.features[10].bias)
    # the hub cache is where torchvision's own download lands
    (tmp_path / "checkpoints").mkdir()
    path.rename(tmp_path / "checkpoints" / path.name)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    metric = perceptual_metric()
    assert metric.is_lpips and metric.name == "lpips-alex"
    assert torch.equal(load_lpips().net.slice3._modules["6"].weight, alex.features[6].weight)


def test_lpips_bad_weight_files(tmp_path):
    with pytest.raises(GancraftError, match="not found"):
        load_lpips(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(GancraftError, match="cannot read"):
        load_lpips(tmp_path / "junk.pth")
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(GancraftError, match="does not match"):
        load_lpips(tmp_path / "wrong.pth")


def test_clip_embeddings_are_unit_and_differentiable():
    clip = tiny_clip()
    x = _images(0, 2, 48).requires_grad_()
    e = clip.encode_images(x)
    assert e.shape == (2, 16)
    assert torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    (e[:, 0].sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    t = clip.encode_text(["a photo of a cat", "a sketch"])
    assert t.shape == (2, 16) and not torch.allclose(t[0], t[1])


def test_clip_preprocess_resizes_crops_and_normalises():
    clip = tiny_clip()
    wide = torch.zeros(1, 3, 32, 64)  # mid-grey in [-1, 1]
    out = clip.preprocess(wide)
    assert out.shape == (1, 3, 32, 32)
    assert torch.allclose(out, ((0.5 - clip.mean) / clip.std).expand(1, 3, 32, 32), atol=1e-5)


def test_clip_weights_from_a_local_file(tmp_path):
    clip = tiny_clip(seed=5)
    path = tmp_path / "tiny-clip.bin"
    torch.save(clip.model.state_dict(), path)
    # a weights file counts as OpenAI's (QuickGELU) unless told otherwise; this one is not
    again = clip_mod.load_clip("ViT-B-32", weights=path, quick_gelu=False, **TINY_CLIP)
    x = _images(2)
    assert torch.allclose(again.encode_images(x), clip.encode_images(x), atol=1e-6)
    assert again.name.startswith("clip-ViT-B-32:sha256=")
    assert not torch.allclose(tiny_clip(seed=6).encode_images(x), clip.encode_images(x))


def test_clip_missing_weights_name_the_file_and_option(tmp_path, monkeypatch):
    monkeypatch.setattr(clip_mod, "cached_weights", lambda *a, **k: None)
    with pytest.raises(GancraftError) as info:
        clip_mod.load_clip("ViT-B-32")
    assert "--clip-weights" in str(info.value) and "open_clip_pytorch_model.bin" in str(info.value)
    with pytest.raises(GancraftError, match="not found"):
        clip_mod.load_clip("ViT-B-32", weights=tmp_path / "none.bin")
    with pytest.raises(GancraftError, match="unknown CLIP model"):
        clip_mod.load_clip("ViT-Q-99")
