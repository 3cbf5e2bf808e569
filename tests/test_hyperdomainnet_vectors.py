"""Domain vectors from the official HyperDomainNet code's checkpoints: convert --domain-vector NAME=FILE.

The fixture files are written in the layout the official training saves (restated from its save
code, not copied): a dict with model_type 'parameterization', patch_key 'cin_mult', a state_dict
of heads.conv_<i>.params_in tensors [1, 1, C_in, 1, 1], sg2_params and da_type. The images are
checked against rosinality's generator (the official code's base) with each conv's input channels
scaled as the official code indexes them.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from reference.rosinality_model import Generator as RosG

from gancraft import load, save
from gancraft.checkpoint.rosinality import write_rosinality
from gancraft.latent.domains import resolve_domain
from gancraft.nets import GeneratorConfig

from conftest import cli_fails, cli_ok, make_tiny_checkpoint

TOL = 1e-4
RES = 128  # 11 conv layers: conv_10 exists, so text order (conv_10 before conv_2) differs from the true one


def official_in_channels(g: GeneratorConfig) -> list[int]:
    """C_in of conv_0, conv_1, ...: the 4x4 conv, then per resolution its upsampling conv (from the
    previous resolution's channels) and its second conv."""
    out = [g.channels(4)]
    for res in g.block_resolutions[1:]:
        out += [g.channels(res // 2), g.channels(res)]
    return out


def write_official(path: Path, heads: dict[int, torch.Tensor], img_size: int, order=None, **fields) -> Path:
    """torch.save the dict a td_single run of the official code saves; `order` is the heads' key order."""
    obj = {
        "model_type": "parameterization",
        "patch_key": "cin_mult",
        "state_dict": OrderedDict(
            (f"heads.conv_{i}.params_in", heads[i].reshape(1, 1, -1, 1, 1).clone()) for i in (order or sorted(heads))
        ),
        "sg2_params": {
            "img_size": img_size,
            "latent_size": 32,
            "map_layers": 2,
            "channel_multiplier": 2,
            "device": "cuda:0",
            "checkpoint_path": "pretrained/StyleGAN2/stylegan2-ffhq-config-f.pt",
        },
        "da_type": "td",
    }
    obj.update(fields)
    torch.save(obj, path)
    return path


def random_heads(g: GeneratorConfig, seed: int = 0) -> dict[int, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {i: 0.5 * torch.randn(c, generator=gen) for i, c in enumerate(official_in_channels(g))}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    ckpt = make_tiny_checkpoint(seed=3, resolution=RES, with_d=False)
    return ckpt, save(ckpt, tmp_path_factory.mktemp("m") / "m.st")


def _official_images(ckpt, heads: dict[int, torch.Tensor], z: torch.Tensor, tmp_path: Path) -> torch.Tensor:
    """rosinality's generator with the official indexing: conv_0 is conv1, conv_i (i > 0) is convs[i - 1].
    'cin_mult' multiplies the demodulated weight by (1 + v) along its input channels, which is the
    conv's input scaled channel by channel."""
    g = ckpt.g_config
    write_rosinality(ckpt, tmp_path / "r.pt", allow_custom_channels=True)
    ref = RosG(g.img_resolution, g.w_dim, g.mapping_layers, channels={r: g.channels(r) for r in g.block_resolutions})
    ref.load_state_dict(torch.load(tmp_path / "r.pt", weights_only=True)["g_ema"], strict=True)
    convs = [ref.conv1.conv] + [layer.conv for layer in ref.convs]
    assert len(convs) == len(heads)
    for i, conv in enumerate(convs):
        gain = (1 + heads[i]).reshape(1, -1, 1, 1)
        conv.register_forward_pre_hook(lambda _m, args, gain=gain: (args[0] * gain, *args[1:]))
    with torch.no_grad():
        return ref([z], randomize_noise=False)[0]


def test_official_vector_gives_the_official_images(model, tmp_path):
    ckpt, src = model
    heads = random_heads(ckpt.g_config)
    vec = write_official(tmp_path / "toon.pt", heads, RES)
    out = cli_ok("convert", src, "--domain-vector", f"toon={vec}", "-o", tmp_path / "toon.st")
    assert out == [str(tmp_path / "toon.st")]
    converted = load(out[0])
    assert converted.domains["toon"]["modulation"] == "after-demod"
    assert converted.history[-1]["params"]["domain_vectors"] == {"toon": str(vec)}
    G = converted.generator()
    spec = resolve_domain(converted, "toon", G)
    z = torch.randn(2, ckpt.g_config.z_dim, generator=torch.Generator().manual_seed(1))
    want = _official_images(ckpt, heads, z, tmp_path)
    with torch.no_grad():
        got = G(z, noise_mode="const", style_scale=spec.style_scale, modulation=spec.modulation)
        plain = G(z, noise_mode="const")
    assert (got - want).abs().max().item() <= TOL
    assert (plain - want).abs().max().item() > 100 * TOL  # the vector changes the images
    assert len(cli_ok("sample", out[0], "--domain", "toon", "--seeds", "0", "-o", tmp_path / "s")) == 1


def test_heads_are_read_in_layer_order_whatever_the_file_order(model, tmp_path):
    ckpt, src = model
    heads = random_heads(ckpt.g_config, seed=4)
    n = len(heads)
    vectors = {}
    for name, order in (("ordered", list(range(n))), ("shuffled", [5, 10, 0, 2, 9, 1, 7, 3, 8, 6, 4])):
        path = write_official(tmp_path / f"{name}.pt", heads, RES, order=order)
        out = cli_ok("convert", src, "--domain-vector", f"v={path}", "-o", tmp_path / f"{name}.st")
        vectors[name] = load(out[0]).tensors["domain_vectors.v"]
    assert torch.equal(vectors["ordered"], vectors["shuffled"])
    assert torch.equal(vectors["ordered"], torch.cat([heads[i] for i in range(n)]))


class NotData:
    pass


@pytest.mark.parametrize(
    "fields, said",
    [
        (dict(model_type="mapper"), "holds a hyper-network (mapper)"),
        (dict(model_type="original"), "a whole fine-tuned generator"),
        (dict(patch_key="csep_mult"), "patch_key 'csep_mult'"),
        (dict(da_type="im2im", style_latents=torch.zeros(1, 11, 32)), "image-driven (im2im)"),
        (dict(state_dict={"heads.conv_0.params_out": torch.zeros(1, 32, 1, 1, 1)}), "unexpected entry"),
        (dict(state_dict={"heads.conv_0.params_in": torch.zeros(32)}), "expected [1, 1, C_in, 1, 1]"),
        (dict(state_dict={"heads.conv_1.params_in": torch.zeros(1, 1, 32, 1, 1)}), "without gaps"),
        (dict(state_dict={"heads.conv_0.params_in": torch.full((1, 1, 32, 1, 1), float("nan"))}), "NaN"),
        (dict(state_dict=[1, 2]), "expected named tensors"),
        (dict(sg2_params=NotData()), "asks to import"),
    ],
)
def test_unreadable_or_foreign_files_are_refused(model, tmp_path, fields, said):
    ckpt, src = model
    path = write_official(tmp_path / "x.pt", random_heads(ckpt.g_config), RES, **fields)
    assert said in cli_fails("convert", src, "--domain-vector", f"v={path}", "-o", tmp_path / "o.st")
    assert not (tmp_path / "o.st").exists()


def test_vectors_of_another_architecture_and_misuse_are_refused(model, tmp_path):
    ckpt, src = model
    small = make_tiny_checkpoint(seed=1, resolution=64, with_d=False)
    other_size = write_official(tmp_path / "64.pt", random_heads(small.g_config), 64)
    heads = random_heads(ckpt.g_config)
    heads[10] = torch.zeros(8)
    other_width = write_official(tmp_path / "w.pt", heads, RES)
    good = write_official(tmp_path / "good.pt", random_heads(ckpt.g_config), RES)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:200])
    out = tmp_path / "o.st"
    for args, said in (
        (["--domain-vector", f"v={other_size}"], "9 conv layers (made for 64 px), the model has 11 (128 px)"),
        (["--domain-vector", f"v={other_width}"], "conv_10 has 8 input channels, the model's b128.conv1 has 16"),
        (["--domain-vector", str(good)], "expected NAME=FILE"),
        (["--domain-vector", f"v={good}", "--domain-vector", f"v={good}"], "given twice"),
        (["--domain-vector", f"a/b={good}"], "letters, digits"),
        (["--domain-vector", f"v={good}", "--to", "rosinality"], "--to native only"),
        (["--domain-vector", f"v={tmp_path / 'none.pt'}"], "no such file"),
        (["--domain-vector", f"v={cut}"], "cannot read"),
    ):
        assert said in cli_fails("convert", src, *args, "-o", out)
        assert not out.exists()
    with_v = cli_ok("convert", src, "--domain-vector", f"v={good}", "-o", tmp_path / "v.st")[0]
    assert "already has a domain" in cli_fails("convert", with_v, "--domain-vector", f"v={good}", "-o", out)
    assert not out.exists()
