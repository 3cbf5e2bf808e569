"""NVIDIA stylegan2-ada-pytorch pickles: read as data, same tensors and same images as the source modules."""

from __future__ import annotations

import pytest
import torch
from pickle_fixtures import (
    STYLEGAN3_MODULE_SRC,
    EasyDict,
    Persistent,
    assert_same_tensors,
    dump,
    nvidia_snapshot,
    persistent_tree,
    perturbed,
    tf_generator,
)

from gancraft.checkpoint import load
from gancraft.checkpoint.nvidia import read_nvidia_pickle, read_pickle, sniff_pickle
from gancraft.errors import CheckpointError
from gancraft.nets.config import DiscriminatorConfig, GeneratorConfig
from gancraft.nets.stylegan2 import Discriminator, Generator


def _configs(c_dim: int = 0) -> tuple[GeneratorConfig, DiscriminatorConfig]:
    g = GeneratorConfig(
        z_dim=32, w_dim=32, c_dim=c_dim, img_resolution=16, channel_base=256, channel_max=32, mapping_layers=2
    )
    d = DiscriminatorConfig(c_dim=c_dim, img_resolution=16, channel_base=256, channel_max=32, mapping_layers=2)
    return g, d


def _networks(c_dim: int = 0, seed: int = 0) -> tuple[Generator, Generator, Discriminator]:
    torch.manual_seed(seed)
    g_cfg, d_cfg = _configs(c_dim)
    return (
        perturbed(Generator(g_cfg), seed + 1),
        perturbed(Generator(g_cfg), seed + 2),
        perturbed(Discriminator(d_cfg), seed + 3),
    )


@pytest.mark.parametrize("c_dim", [0, 5])
def test_snapshot_round_trip_is_exact(tmp_path, c_dim):
    G_ema, G, D = _networks(c_dim)
    path = dump(nvidia_snapshot(G_ema=G_ema, G=G, D=D), tmp_path / "snap.pkl")
    assert sniff_pickle(path) == "nvidia"
    ckpt = read_nvidia_pickle(path)
    assert ckpt.source_format == "nvidia"
    assert ckpt.nets == ["G_ema", "G", "D"]
    assert ckpt.g_config == G_ema.cfg
    assert ckpt.d_config == D.cfg
    assert_same_tensors(ckpt, "G_ema", G_ema)
    assert_same_tensors(ckpt, "G", G)
    assert_same_tensors(ckpt, "D", D)

    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(7))
    c = torch.nn.functional.one_hot(torch.tensor([0, 2, 4]), 5).float() if c_dim else None
    assert torch.equal(ckpt.generator("G_ema")(z, c), G_ema(z, c))
    assert torch.equal(ckpt.generator("G")(z, c), G(z, c))
    img = G_ema(z, c)
    assert torch.equal(ckpt.discriminator()(img, c), D(img, c))
    # sampling from a different network must give different images, or the check above proves nothing
    assert not torch.equal(G(z, c), G_ema(z, c))


def test_generic_loader_detects_nvidia_pickles(tmp_path):
    G_ema, _, _ = _networks()
    path = dump(nvidia_snapshot(G_ema=G_ema), tmp_path / "only_g_ema.pkl")
    ckpt = load(path)
    assert ckpt.nets == ["G_ema"] and ckpt.source_format == "nvidia"
    assert ckpt.d_config is None
    assert_same_tensors(ckpt, "G_ema", G_ema)
    assert read_pickle(path).nets == ["G_ema"]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_all_pickle_protocols(tmp_path, protocol):
    G_ema, _, D = _networks(seed=3)
    path = dump(nvidia_snapshot(G_ema=G_ema, D=D), tmp_path / "p.pkl", protocol=protocol)
    ckpt = read_nvidia_pickle(path)
    assert_same_tensors(ckpt, "G_ema", G_ema)
    assert_same_tensors(ckpt, "D", D)


def test_non_persistent_buffers_are_skipped(tmp_path):
    G_ema, _, _ = _networks()
    tree = persistent_tree(G_ema, nvidia_snapshot(G_ema=G_ema)["G_ema"].meta["state"]["_init_kwargs"])
    state = tree.meta["state"]
    mapping = state["_modules"]["mapping"].meta["state"]
    mapping["_buffers"]["scratch"] = torch.zeros(3)
    mapping["_non_persistent_buffers_set"] = {"scratch"}
    ckpt = read_nvidia_pickle(dump({"G_ema": tree}, tmp_path / "np.pkl"))
    assert "G_ema.mapping.scratch" not in ckpt.tensors
    assert_same_tensors(ckpt, "G_ema", G_ema)


def test_stylegan3_repository_flat_synthesis_kwargs(tmp_path):
    """The stylegan3 repo's StyleGAN2 generator takes synthesis options as plain kwargs."""
    G_ema, _, _ = _networks()
    cfg = G_ema.cfg
    kwargs = dict(
        z_dim=32,
        c_dim=0,
        w_dim=32,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs=EasyDict(num_layers=2),
        channel_base=cfg.channel_base,
        channel_max=cfg.channel_max,
        num_fp16_res=0,
        conv_clamp=None,
        fused_modconv_default="inference_only",
    )
    ckpt = read_nvidia_pickle(dump({"G_ema": persistent_tree(G_ema, kwargs)}, tmp_path / "sg3repo.pkl"))
    assert ckpt.g_config == cfg


def test_stylegan3_source_with_stylegan2_layers_is_refused(tmp_path):
    """StyleGAN3 pickles are read by tests/test_stylegan3.py; a StyleGAN3-marked generator whose
    modules are StyleGAN2's is neither, and is named as such."""
    G_ema, _, _ = _networks()
    snap = nvidia_snapshot(G_ema=G_ema, module_src=STYLEGAN3_MODULE_SRC)
    path = dump(snap, tmp_path / "sg3.pkl")
    assert sniff_pickle(path) == "stylegan3"
    with pytest.raises(CheckpointError, match=r"G_ema.synthesis.b4 is a SynthesisBlock, which a StyleGAN3"):
        read_nvidia_pickle(path)
    with pytest.raises(CheckpointError, match="StyleGAN3"):
        load(path)


def test_stylegan3_detected_from_structure_alone(tmp_path):
    G_ema, _, _ = _networks()
    snap = nvidia_snapshot(G_ema=G_ema)
    synthesis = snap["G_ema"].meta["state"]["_modules"]["synthesis"].meta["state"]
    synthesis["_modules"]["input"] = Persistent("SynthesisInput", {"_parameters": {}, "_buffers": {}, "_modules": {}})
    with pytest.raises(CheckpointError, match="which a StyleGAN3 generator"):
        read_nvidia_pickle(dump(snap, tmp_path / "sg3b.pkl"))


def test_sniff_tells_tf_from_nvidia_and_rejects_other_pickles(tmp_path):
    G_ema, _, _ = _networks()
    assert sniff_pickle(dump(tf_generator(G_ema, "Gs"), tmp_path / "tf.pkl")) == "tf"
    other = dump({"weights": torch.zeros(3)}, tmp_path / "other.pkl")
    with pytest.raises(CheckpointError, match="not a StyleGAN network pickle"):
        sniff_pickle(other)
    with pytest.raises(CheckpointError, match=str(other)):
        read_nvidia_pickle(other)


def test_unsupported_options_are_named(tmp_path):
    G_ema, _, _ = _networks()
    snap = nvidia_snapshot(G_ema=G_ema)
    snap["G_ema"].meta["state"]["_init_kwargs"]["synthesis_kwargs"]["architecture"] = "resnet"
    with pytest.raises(CheckpointError, match="architecture 'resnet' is not supported"):
        read_nvidia_pickle(dump(snap, tmp_path / "a.pkl"))
    snap["G_ema"].meta["state"]["_init_kwargs"]["synthesis_kwargs"] = EasyDict(
        channel_base=256, channel_max=32, magic_option=1
    )
    with pytest.raises(CheckpointError, match="magic_option"):
        read_nvidia_pickle(dump(snap, tmp_path / "b.pkl"))
    del snap["G_ema"].meta["state"]["_init_kwargs"]["z_dim"]
    with pytest.raises(CheckpointError, match="z_dim"):
        read_nvidia_pickle(dump(snap, tmp_path / "c.pkl"))


def test_discriminator_only_and_wrong_classes_are_refused(tmp_path):
    _, _, D = _networks()
    with pytest.raises(CheckpointError, match="no generator"):
        read_nvidia_pickle(dump(nvidia_snapshot(D=D), tmp_path / "d.pkl"))
    G_ema, _, _ = _networks()
    swapped = nvidia_snapshot(G_ema=G_ema, D=D)
    swapped["G_ema"], swapped["D"] = swapped["D"], swapped["G_ema"]
    with pytest.raises(CheckpointError, match="G_ema is a Discriminator"):
        read_nvidia_pickle(dump(swapped, tmp_path / "swap.pkl"))


def test_weights_that_do_not_match_the_config_are_caught(tmp_path):
    G_ema, _, _ = _networks()
    snap = nvidia_snapshot(G_ema=G_ema)
    snap["G_ema"].meta["state"]["_init_kwargs"]["mapping_kwargs"]["num_layers"] = 3
    ckpt = read_nvidia_pickle(dump(snap, tmp_path / "mismatch.pkl"))
    with pytest.raises(CheckpointError, match="missing"):
        ckpt.generator()


def test_kwargs_as_written_by_nvidias_tf_converter(tmp_path):
    """Pickles converted from TF by NVIDIA's legacy.py spell out every option, some as None."""
    G_ema, _, D = _networks()
    g_kwargs = dict(
        z_dim=32,
        c_dim=0,
        w_dim=32,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs=EasyDict(
            num_layers=2,
            embed_features=None,
            layer_features=None,
            activation="lrelu",
            lr_multiplier=0.01,
            w_avg_beta=0.995,
        ),
        synthesis_kwargs=EasyDict(
            channel_base=256,
            channel_max=32,
            num_fp16_res=0,
            conv_clamp=None,
            architecture="skip",
            resample_filter=[1, 3, 3, 1],
            use_noise=True,
            activation="lrelu",
        ),
    )
    d_kwargs = dict(
        c_dim=0,
        img_resolution=16,
        img_channels=3,
        architecture="resnet",
        channel_base=256,
        channel_max=32,
        num_fp16_res=0,
        conv_clamp=None,
        cmap_dim=None,
        block_kwargs=EasyDict(activation="lrelu", resample_filter=[1, 3, 3, 1], freeze_layers=0),
        mapping_kwargs=EasyDict(
            num_layers=0, embed_features=None, layer_features=None, activation="lrelu", lr_multiplier=0.1
        ),
        epilogue_kwargs=EasyDict(mbstd_group_size=None, mbstd_num_channels=1, activation="lrelu"),
    )
    snap = {"G_ema": persistent_tree(G_ema, g_kwargs), "D": persistent_tree(D, d_kwargs)}
    ckpt = read_nvidia_pickle(dump(snap, tmp_path / "legacy.pkl"))
    assert ckpt.g_config == G_ema.cfg
    assert ckpt.d_config.mbstd_group_size is None  # NVIDIA's "whole batch" groups
    img = G_ema(torch.randn(2, 32, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(ckpt.discriminator()(img), D.eval()(img))
