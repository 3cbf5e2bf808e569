"""Original TF StyleGAN2 pickles: TF-named variables map back to the exact NVIDIA tensors and images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pickle_fixtures import (
    assert_same_tensors,
    dump,
    nvidia_snapshot,
    perturbed,
    tf_discriminator,
    tf_generator,
    tf_network,
)

from gancraft.checkpoint import load
from gancraft.checkpoint.nvidia import read_pickle
from gancraft.checkpoint.tf import read_tf_pickle
from gancraft.errors import CheckpointError
from gancraft.nets.config import DiscriminatorConfig, GeneratorConfig
from gancraft.nets.stylegan2 import Discriminator, Generator


def _nets(c_dim: int = 0) -> tuple[Generator, Generator, Discriminator]:
    torch.manual_seed(0)
    g_cfg = GeneratorConfig(
        z_dim=32, w_dim=32, c_dim=c_dim, img_resolution=16, channel_base=256, channel_max=32, mapping_layers=2
    )
    d_cfg = DiscriminatorConfig(img_resolution=16, channel_base=256, channel_max=32)
    return (
        perturbed(Generator(g_cfg), 1, 64),
        perturbed(Generator(g_cfg), 2, 64),
        perturbed(Discriminator(d_cfg), 3, 64),
    )


def test_g_d_gs_round_trip_is_exact(tmp_path):
    Gs, G, D = _nets()
    path = dump((tf_generator(G, "G"), tf_discriminator(D), tf_generator(Gs, "Gs")), tmp_path / "tf.pkl", protocol=3)
    ckpt = read_tf_pickle(path)
    assert ckpt.source_format == "tf"
    assert ckpt.nets == ["G_ema", "G", "D"]
    assert ckpt.g_config == Gs.cfg
    assert_same_tensors(ckpt, "G_ema", Gs)
    assert_same_tensors(ckpt, "G", G)
    assert_same_tensors(ckpt, "D", D)
    z = torch.randn(4, 32, generator=torch.Generator().manual_seed(5))
    img = ckpt.generator("G_ema")(z)
    assert torch.equal(img, Gs(z))
    assert not torch.equal(img, G(z))
    assert torch.equal(ckpt.discriminator()(img), D(img))


def test_lone_gs_and_generic_loader(tmp_path):
    Gs, _, _ = _nets()
    path = dump(tf_generator(Gs, "Gs"), tmp_path / "gs.pkl")
    for ckpt in (load(path), read_pickle(path)):
        assert ckpt.nets == ["G_ema"] and ckpt.source_format == "tf"
        assert_same_tensors(ckpt, "G_ema", Gs)


def test_conditional_generator_with_label_embedding(tmp_path):
    Gs, _, _ = _nets(c_dim=4)
    ckpt = read_tf_pickle(dump(tf_generator(Gs, "Gs"), tmp_path / "cond.pkl"))
    assert_same_tensors(ckpt, "G_ema", Gs)
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(1))
    c = torch.eye(4)[:2]
    assert torch.equal(ckpt.generator()(z, c), Gs(z, c))


def test_conversion_does_not_disturb_the_global_random_stream(tmp_path):
    Gs, _, _ = _nets()
    path = dump(tf_generator(Gs, "Gs"), tmp_path / "gs.pkl")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    read_tf_pickle(path)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_variables_are_named(tmp_path):
    Gs, _, _ = _nets()
    net = tf_generator(Gs, "Gs")
    net._state["components"]["synthesis"]._state["variables"].append(("8x8/Mystery/weight", np.zeros(3, np.float32)))
    with pytest.raises(CheckpointError, match="synthesis/8x8/Mystery/weight"):
        read_tf_pickle(dump(net, tmp_path / "x.pkl"))


def test_missing_variables_are_named(tmp_path):
    Gs, _, _ = _nets()
    net = tf_generator(Gs, "Gs")
    variables = net._state["components"]["synthesis"]._state["variables"]
    variables[:] = [v for v in variables if v[0] != "16x16/Conv1/mod_bias"]
    with pytest.raises(CheckpointError, match=r"synthesis\.b16\.conv1\.affine\.bias"):
        read_tf_pickle(dump(net, tmp_path / "m.pkl"))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"architecture": "resnet"}, "architecture 'resnet' is not supported"),
        ({"nonlinearity": "relu"}, "nonlinearity='relu'"),
        ({"some_new_option": 3}, "some_new_option"),
    ],
)
def test_unsupported_kwargs_are_named(tmp_path, kwargs, message):
    Gs, _, _ = _nets()
    with pytest.raises(CheckpointError, match=message):
        read_tf_pickle(dump(tf_generator(Gs, "Gs", extra_kwargs=kwargs), tmp_path / "k.pkl"))


def test_progressive_growing_networks_are_refused(tmp_path):
    Gs, _, _ = _nets()
    net = tf_generator(Gs, "Gs")
    net._state["components"]["synthesis"]._state["variables"].append(
        ("ToRGB_lod0/weight", np.zeros((1, 1, 32, 3), np.float32))
    )
    with pytest.raises(CheckpointError, match="progressive-growing"):
        read_tf_pickle(dump(net, tmp_path / "orig.pkl"))


def test_shape_mismatch_is_reported(tmp_path):
    Gs, _, _ = _nets()
    net = tf_generator(Gs, "Gs", extra_kwargs={"fmap_max": 16})
    with pytest.raises(CheckpointError, match="has shape"):
        read_tf_pickle(dump(net, tmp_path / "s.pkl"))


def test_other_pickles_are_refused(tmp_path):
    Gs, _, _ = _nets()
    with pytest.raises(CheckpointError, match="TF StyleGAN2 pickle"):
        read_tf_pickle(dump(nvidia_snapshot(G_ema=Gs), tmp_path / "nv.pkl"))
    old = tf_network("Gs", "G_main", {}, [])
    old._state["version"] = 2
    with pytest.raises(CheckpointError, match="too old"):
        read_tf_pickle(dump(old, tmp_path / "old.pkl"))
