"""gancraft blend-layers: Pinkney's switch, per-resolution alpha, channel clusters and swaps, CLI."""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gancraft import load, save
from gancraft.errors import GancraftError
from gancraft.merge import ChannelSwap, blend_checkpoints, blend_layers
from gancraft.merge.channels import cluster_channels, spherical_kmeans

from conftest import cli_invoke, make_tiny_checkpoint

RES = [4, 8, 16, 32]


@pytest.fixture(scope="module")
def models():
    return [make_tiny_checkpoint(s, resolution=32) for s in (0, 1, 2)]


@pytest.fixture
def files(tmp_path: Path, models) -> list[Path]:
    paths = []
    for i, m in enumerate(models):
        paths.append(tmp_path / f"m{i}.st")
        save(m, paths[-1])
    return paths


def where(key: str) -> tuple[int, int] | None:
    """Independent statement of the layer order: (resolution, level) with level 0 = const/conv0."""
    m = re.match(r"^G(?:_ema)?\.synthesis\.b(\d+)\.(const|conv0|conv1|torgb)", key)
    if not m:
        return None
    return int(m.group(1)), 0 if m.group(2) in ("const", "conv0") else 1


def pos(res: int, level: int) -> int:
    return 2 * RES.index(res) + level


def expect_mix(out, parts, key, weights, atol=1e-6):
    want = sum(w * p.tensors[key].double() for w, p in zip(weights, parts))
    torch.testing.assert_close(out.tensors[key].double(), want, rtol=1e-6, atol=atol, msg=key)


def test_hard_switch_takes_each_layer_from_the_right_model(models):
    low, high = models[0], models[1]
    out = blend_checkpoints(low, [high], switch=16)
    assert out.nets == ["G_ema", "G"]  # generators only by default
    for key, v in out.tensors.items():
        w = where(key)
        if key.endswith("resample_filter"):
            src = low
        elif w is None:
            src = low  # mapping network and w_avg
        else:
            src = high if w[0] >= 16 else low
        assert torch.equal(v, src.tensors[key]), key
    assert any(where(k) and where(k)[0] == 16 for k in out.tensors)


def test_switch_level_one_keeps_the_blocks_first_conv_low(models):
    low, high = models[0], models[1]
    out = blend_checkpoints(low, [high], switch=16, level=1)
    assert torch.equal(out.tensors["G_ema.synthesis.b16.conv0.weight"], low.tensors["G_ema.synthesis.b16.conv0.weight"])
    for key in ("G_ema.synthesis.b16.conv1.weight", "G_ema.synthesis.b16.torgb.weight"):
        assert torch.equal(out.tensors[key], high.tensors[key])


def test_switch_at_lowest_resolution_with_high_mapping_is_the_high_model(models):
    low, high = models[0], models[1]
    out = blend_checkpoints(low, [high], switch=4, mapping_from="high")
    z = torch.randn(3, out.g_config.z_dim, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.generator()(z), high.generator()(z))


def test_blend_width_is_a_sigmoid_over_layer_positions(models):
    low, high = models[0], models[1]
    width = 1.5
    out = blend_checkpoints(low, [high], switch=16, blend_width=width)
    checked = 0
    for key in out.tensors:
        w = where(key)
        if w is None or key.endswith(("resample_filter", "noise_const")):
            continue
        s = 1 / (1 + math.exp(-(pos(*w) - pos(16, 0)) / width))
        expect_mix(out, [low, high], key, [1 - s, s])
        checked += 1
    assert checked > 20
    # the switch layer itself sits at the sigmoid's midpoint
    key = "G_ema.synthesis.b16.conv0.weight"
    expect_mix(out, [low, high], key, [0.5, 0.5])


def script_position(key: str) -> int | None:
    """blend_models.py's listing, restated: a TF variable name per gancraft layer, then the
    script's prefix match over levels [Conv0_up, Const] and [Conv1, ToRGB] from 4x4 up."""
    m = re.match(
        r"^G(?:_ema)?\.synthesis\.b(\d+)\.(const|conv0|conv1|torgb)"
        r"(?:\.affine)?(?:\.weight|\.bias|\.noise_strength)?$",
        key,
    )
    if not m:
        return None
    res, part = int(m.group(1)), m.group(2)
    tf_layer = {"const": "Const", "conv0": "Conv0_up", "torgb": "ToRGB", "conv1": "Conv" if res == 4 else "Conv1"}[part]
    name = f"G_synthesis/{res}x{res}/{tf_layer}/x"
    position = 0
    for r in [4 * 2**i for i in range(9)]:
        for suffixes in (["Conv0_up", "Const"], ["Conv1", "ToRGB"]):
            if any(name.startswith(f"G_synthesis/{r}x{r}/{sfx}") for sfx in suffixes):
                return position
            position += 1
    return None


@pytest.mark.parametrize(
    "spec,width", [("16", None), ("16:1", None), ("8", None), ("32:1", None), ("16", 1.0), ("8:1", 0.7), ("4", 2.5)]
)
def test_pinkney_reproduces_blend_models_weights(models, spec, width):
    low, high = models[0], models[1]
    out = blend_checkpoints(low, [high], pinkney=spec, blend_width=width)
    res, _, level = spec.partition(":")
    mid = {(r, lv): 2 * i + lv for i, r in enumerate([4 * 2**i for i in range(9)]) for lv in (0, 1)}[
        (int(res), int(level or 0))
    ]
    seen = set()
    for key in out.tensors:
        p = script_position(key)
        if p is None:  # not a trainable the script lists: the low model's (Gs_lo.clone())
            assert torch.equal(out.tensors[key], low.tensors[key]), key
            continue
        x = p - mid
        y = (1 if x > 1 else 0) if width is None else 1 / (1 + math.exp(-x / width))
        expect_mix(out, [low, high], key, [1 - y, y])
        seen.add(p)
    assert seen == set(range(8))  # every position of the 32 px model is checked


def test_pinkney_hard_switch_is_one_resolution_after_switch(models):
    low, high = models[0], models[1]
    a, b = blend_checkpoints(low, [high], pinkney="8"), blend_checkpoints(low, [high], switch=16)
    differ = [k for k in a.tensors if not torch.equal(a.tensors[k], b.tensors[k])]
    # only the noise images of 16 px and up, which the script never takes from the high model
    assert differ and all(k.endswith("noise_const") and where(k)[0] >= 16 for k in differ)


def test_pinkney_refusals(models):
    low, high = models[0], models[1]
    for kw, pattern in [
        (dict(pinkney="12"), "--pinkney: the model has no resolution 12"),
        (dict(pinkney="16:2"), "level must be 0 or 1"),
        (dict(pinkney="x"), "cannot read"),
        (dict(pinkney="16", switch=16), "replaces --switch"),
        (dict(pinkney="16", blend_width=-1.0), "positive"),
    ]:
        with pytest.raises(GancraftError, match=pattern):
            blend_checkpoints(low, [high], **kw)
    with pytest.raises(GancraftError, match="exactly two"):
        blend_checkpoints(low, [high, models[2]], pinkney="16")


def test_alpha_per_resolution_matches_formula(models):
    low, high = models[0], models[1]
    out = blend_checkpoints(low, [high], alpha="8:0.25,32:1")
    alpha = {4: 0.0, 8: 0.25, 16: 0.25, 32: 1.0}  # unlisted resolutions repeat the one below
    for key in out.tensors:
        w = where(key)
        if w is None:
            assert torch.equal(out.tensors[key], low.tensors[key]), key
        elif not key.endswith(("resample_filter", "noise_const")):
            expect_mix(out, [low, high], key, [1 - alpha[w[0]], alpha[w[0]]])
    # noise images are copied whole from the dominant model of their layer
    assert torch.equal(
        out.tensors["G_ema.synthesis.b16.conv0.noise_const"], low.tensors["G_ema.synthesis.b16.conv0.noise_const"]
    )
    assert torch.equal(
        out.tensors["G_ema.synthesis.b32.conv0.noise_const"], high.tensors["G_ema.synthesis.b32.conv0.noise_const"]
    )


def test_alpha_with_three_models(models):
    out = blend_checkpoints(models[0], models[1:], alpha="4:0/0,8:1/0,16:0.5/0.25,32:0/1.5")
    table = {4: (1, 0, 0), 8: (0, 1, 0), 16: (0.25, 0.5, 0.25), 32: (-0.5, 0, 1.5)}
    for key in out.tensors:
        w = where(key)
        if w and not key.endswith(("resample_filter", "noise_const")):
            expect_mix(out, models, key, table[w[0]], atol=1e-5)


def test_sources_of_mapping_w_avg_and_torgb(models):
    low, high = models[0], models[1]
    out = blend_checkpoints(low, [high], switch=16, mapping_from="high", w_avg_from="low", torgb_from="low")
    assert torch.equal(out.tensors["G_ema.mapping.fc0.weight"], high.tensors["G_ema.mapping.fc0.weight"])
    assert torch.equal(out.tensors["G_ema.mapping.w_avg"], low.tensors["G_ema.mapping.w_avg"])
    assert torch.equal(out.tensors["G_ema.synthesis.b32.torgb.weight"], low.tensors["G_ema.synthesis.b32.torgb.weight"])
    out = blend_checkpoints(low, [high], switch=16, mapping_from="high")
    assert torch.equal(out.tensors["G_ema.mapping.w_avg"], high.tensors["G_ema.mapping.w_avg"])


def test_keep_d_copies_the_low_discriminator(models):
    out = blend_checkpoints(models[0], [models[1]], switch=8, keep_d=True)
    d = {k: v for k, v in out.tensors.items() if k.startswith("D.")}
    assert d and all(torch.equal(v, models[0].tensors[k]) for k, v in d.items())
    assert out.d_config == models[0].d_config


def test_channel_swap_replaces_only_chosen_rows(models):
    low, high = models[0], models[1]
    chans = [1, 5, 6]
    out = blend_checkpoints(low, [high], channel_swap=ChannelSwap("b16.conv1", chans))
    for suffix in ("weight", "bias"):
        key = f"G_ema.synthesis.b16.conv1.{suffix}"
        for c in range(out.tensors[key].shape[0]):
            src = high if c in chans else low
            assert torch.equal(out.tensors[key][c], src.tensors[key][c]), (key, c)
    others = [k for k in out.tensors if "b16.conv1." not in k]
    assert all(torch.equal(out.tensors[k], low.tensors[k]) for k in others)
    # the swapped channels' feature maps are the high model's, given the same input features
    from gancraft.merge.channels import layer_features

    z = torch.randn(2, low.g_config.z_dim, generator=torch.Generator().manual_seed(1))
    f_out = layer_features(out.generator(), "b16.conv1", z)
    f_low = layer_features(low.generator(), "b16.conv1", z)
    keep = [c for c in range(f_out.shape[1]) if c not in chans]
    assert torch.equal(f_out[:, keep], f_low[:, keep])
    assert not torch.allclose(f_out[:, chans], f_low[:, chans])


def test_spherical_kmeans_recovers_directional_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(3, 16, generator=gen), dim=1)
    sizes = [300, 200, 100]
    truth = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    # varied magnitudes: spherical k-means must cluster by direction only
    scale = torch.rand(len(truth), 1, generator=gen) * 10 + 0.1
    x = (centres[truth] + 0.1 * torch.randn(len(truth), 16, generator=gen)) * scale
    cent, labels = spherical_kmeans(x, 3, seed=0)
    assert torch.equal(labels, truth)  # renumbered by size, largest first
    assert torch.allclose(cent.norm(dim=1), torch.ones(3))
    assert (cent * centres).sum(1).min() > 0.95


def test_cluster_channels_partition_and_determinism(models):
    a = cluster_channels(models[0], "b16.conv1", k=3, samples=4, seed=0)
    b = cluster_channels(models[0], "b16.conv1", k=3, samples=4, seed=0)
    assert torch.equal(a.channel_cluster, b.channel_cluster)
    groups = [set(a.channels([j])) for j in range(3)]
    assert set().union(*groups) == set(range(32)) and sum(map(len, groups)) == 32
    assert a.sizes == sorted(a.sizes, reverse=True) and sum(a.sizes) == 4 * 16 * 16
    with pytest.raises(GancraftError, match="cluster 3 does not exist"):
        a.channels([3])
    with pytest.raises(GancraftError, match="no conv layer 'b64.conv1'"):
        cluster_channels(models[0], "b64.conv1", k=3, samples=2)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(switch=16),
        dict(switch=8, blend_width=0.7),
        dict(switch=32, channel_swap=ChannelSwap("b16.conv1", [0, 5, 9])),
    ],
)
def test_streamed_blend_file_equals_the_in_memory_blend(files, models, tmp_path, monkeypatch, kwargs):
    # tiny chunks, so the file is streamed in many pieces per tensor
    monkeypatch.setattr(importlib.import_module("gancraft.merge.stream"), "CHUNK", 64)
    out = load(blend_layers(files[0], [files[1]], tmp_path / "o.st", **kwargs)).tensors
    want = blend_checkpoints(models[0], [models[1]], **kwargs).tensors
    assert set(out) == set(want)
    for k in want:
        assert out[k].dtype == want[k].dtype and torch.equal(
            out[k].view(-1).view(torch.int32), want[k].reshape(-1).view(torch.int32)
        ), k
    if "blend_width" not in kwargs and "channel_swap" not in kwargs:
        for k, v in out.items():
            w = where(k)
            src = models[1] if w and w[0] >= kwargs["switch"] and not k.endswith("resample_filter") else models[0]
            assert torch.equal(v, src.tensors[k]), k


def test_blend_file_history_and_refusals(files, tmp_path):
    out = blend_layers(files[0], [files[1]], tmp_path / "o.st", switch=16, blend_width=1.0)
    entry = load(out).history[-1]
    assert entry["command"] == "blend-layers" and entry["params"]["switch"] == 16
    assert len(entry["inputs"]) == 2
    cases = [
        (dict(switch=12), "no resolution 12"),
        (dict(switch=16, alpha="8:1"), "not both"),
        (dict(alpha="8:2/1"), r"gives 2 weights for 1 high"),
        (dict(alpha="64:1"), "no resolution 64"),
        (dict(alpha="16:x"), "cannot read"),
        (dict(switch=16, blend_width=0.0), "positive"),
        (dict(switch=16, mapping_from="mid"), "--mapping-from"),
    ]
    for kw, pattern in cases:
        with pytest.raises(GancraftError, match=pattern):
            blend_layers(files[0], [files[1]], tmp_path / "x.st", **kw)
    with pytest.raises(GancraftError, match="exactly two"):
        blend_layers(files[0], files[1:], tmp_path / "x.st", switch=16)
    # one high model has a default switch; several need a rule
    with pytest.raises(GancraftError, match="give --switch"):
        blend_layers(files[0], files[1:], tmp_path / "x.st")
    other = make_tiny_checkpoint(0, resolution=16)
    save(other, tmp_path / "small.st")
    with pytest.raises(GancraftError, match="architecture differs"):
        blend_layers(files[0], [tmp_path / "small.st"], tmp_path / "x.st", switch=8)
    assert not (tmp_path / "x.st").exists()


def test_cli_blend_with_preview_cluster_map_and_channels(files, tmp_path):
    out, prev, cmap = tmp_path / "o.st", tmp_path / "p.png", tmp_path / "c.png"
    base = ["blend-layers", "--low", str(files[0]), "--high", str(files[1])]
    r = cli_invoke(*base, "--switch", "16", "--preview", prev, "--preview-seeds", "0,1", "-o", out)
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == [str(out), str(prev)]
    grid = np.asarray(Image.open(prev))
    assert grid.shape == (2 * 32 + 2, 3 * 32 + 2 * 2, 3)
    # column 0 is the low model, column 2 the high one, same seed per row
    low_img = load(files[0]).generator()(torch.from_numpy(np.random.RandomState(1).randn(1, 32)).float())
    want = ((low_img[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8)).numpy()
    assert np.array_equal(grid[34:66, 0:32], want)

    r = cli_invoke(
        *base, "--cluster-layer", "b16.conv1", "--clusters", "3", "--cluster-samples", "4", "--cluster-map", cmap
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == [str(cmap)]
    assert Image.open(cmap).size[0] == 4 * 64

    swapped = tmp_path / "s.st"
    r = cli_invoke(
        *base,
        "--cluster-layer",
        "b16.conv1",
        "--clusters",
        "3",
        "--cluster-samples",
        "4",
        "--channels",
        "0",
        "-o",
        swapped,
    )
    assert r.exit_code == 0, r.output
    chans = cluster_channels(load(files[0]), "b16.conv1", k=3, samples=4).channels([0])
    s, lo, hi = load(swapped), load(files[0]), load(files[1])
    key = "G_ema.synthesis.b16.conv1.weight"
    assert chans and torch.equal(s.tensors[key][chans], hi.tensors[key][chans])
    rest = [c for c in range(32) if c not in chans]
    assert torch.equal(s.tensors[key][rest], lo.tensors[key][rest])

    for bad in (["--switch", "12"], ["--pinkney", "16:3"], ["--pinkney", "16", "--switch", "16"]):
        r = cli_invoke(*base, *bad, "-o", tmp_path / "bad.st")
        assert r.exit_code == 2 and r.stderr.strip().startswith("gancraft blend-layers: error:"), bad
        assert len(r.stderr.strip().splitlines()) == 1 and "--" in r.stderr
    assert not (tmp_path / "bad.st").exists()

    toon = tmp_path / "toon.st"
    r = cli_invoke(*base, "--pinkney", "8:1", "--blend-width", "0.5", "-o", toon)
    assert r.exit_code == 0, r.output
    want = blend_checkpoints(load(files[0]), [load(files[1])], pinkney=(8, 1), blend_width=0.5)
    assert all(torch.equal(v, want.tensors[k]) for k, v in load(toon).tensors.items())
