"""rosinality .pt files: read and write, checked against an independent rosinality re-implementation."""

from __future__ import annotations

import argparse
import dataclasses
import os
import zipfile
from pathlib import Path

import pytest
import torch
from reference.rosinality_model import Discriminator as RosD
from reference.rosinality_model import Generator as RosG
from reference.rosinality_model import stock_channels

from gancraft.checkpoint import load
from gancraft.checkpoint.core import Checkpoint
from gancraft.checkpoint.rosinality import _fit_channels, read_rosinality, stock_channel_multiplier, write_rosinality
from gancraft.errors import CheckpointError
from gancraft.nets import Generator, GeneratorConfig

from conftest import make_tiny_checkpoint

SIZE = 32
STYLE_DIM = 24
N_MLP = 3
CHANNELS = {4: 32, 8: 32, 16: 16, 32: 8}
TOL = 1e-4


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Give every bias and noise strength a non-zero value, so a wrong mapping of any of them shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.2 + 0.1 * torch.rand(1, generator=gen).item())
            elif name.endswith("bias"):
                p.add_(0.2 * torch.randn(p.shape, generator=gen))


def _ros_models(seed: int = 0) -> tuple[RosG, RosG, RosD]:
    torch.manual_seed(seed)
    g = RosG(SIZE, STYLE_DIM, N_MLP, channels=CHANNELS)
    g_ema = RosG(SIZE, STYLE_DIM, N_MLP, channels=CHANNELS)
    d = RosD(SIZE, channels=CHANNELS)
    for i, m in enumerate((g, g_ema, d)):
        _perturb(m, seed * 10 + i)
    return g, g_ema, d


def _save_like_train_py(path: Path, g: RosG, g_ema: RosG, d: RosD) -> None:
    g_optim = torch.optim.Adam(g.parameters(), lr=0.002, betas=(0.0, 0.99))
    d_optim = torch.optim.Adam(d.parameters(), lr=0.002, betas=(0.0, 0.99))
    # one step with zero gradients fills the optimiser state (as in a real file) without moving weights
    for opt, net in ((g_optim, g), (d_optim, d)):
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        opt.zero_grad(set_to_none=True)
    args = argparse.Namespace(size=SIZE, channel_multiplier=2, batch=4, path="lmdb", iter=800000, r1=10.0)
    torch.save(
        {
            "g": g.state_dict(),
            "d": d.state_dict(),
            "g_ema": g_ema.state_dict(),
            "g_optim": g_optim.state_dict(),
            "d_optim": d_optim.state_dict(),
            "args": args,
            "ada_aug_p": 0.0,
        },
        path,
    )


def _z(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, STYLE_DIM, generator=torch.Generator().manual_seed(seed))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def ros_models() -> tuple[RosG, RosG, RosD]:
    return _ros_models()


# --- (a) reading -------------------------------------------------------------------------------


def test_train_py_file_generates_the_same_images(tmp_path: Path, ros_models) -> None:
    g, g_ema, d = ros_models
    path = tmp_path / "040000.pt"
    _save_like_train_py(path, g, g_ema, d)
    ckpt = read_rosinality(path)

    assert ckpt.source_format == "rosinality"
    assert ckpt.nets == ["G_ema", "G", "D"]
    cfg = ckpt.g_config
    assert (cfg.img_resolution, cfg.z_dim, cfg.w_dim, cfg.mapping_layers) == (SIZE, STYLE_DIM, STYLE_DIM, N_MLP)
    assert {r: cfg.channels(r) for r in CHANNELS} == CHANNELS
    assert ckpt.extra["w_avg_estimated"] is True
    assert ckpt.extra["w_avg_estimated_for"] == ["G_ema", "G"]
    assert "ignored_keys" not in ckpt.extra  # optimiser state and args are known training state

    z = _z()
    for net, ref in (("G_ema", g_ema), ("G", g)):
        G = ckpt.generator(net)
        want, _ = ref([z], randomize_noise=False)
        assert want.shape == (4, 3, SIZE, SIZE)
        assert _max_diff(G(z, truncation_psi=1, noise_mode="const"), want) < TOL
        # truncation toward the estimated average must be the same operation in both codes
        w_avg = ckpt.tensors[f"{net}.mapping.w_avg"].view(1, -1)
        want, _ = ref([z], truncation=0.7, truncation_latent=w_avg, randomize_noise=False)
        assert _max_diff(G(z, truncation_psi=0.7, noise_mode="const"), want) < TOL


def test_latent_avg_becomes_w_avg_and_truncation_matches(tmp_path: Path, ros_models) -> None:
    _, g_ema, _ = ros_models
    latent_avg = g_ema.mean_latent(4096, seed=5)
    path = tmp_path / "converted.pt"
    # convert_weight.py stores latent_avg flat; mean_latent() keeps a batch axis: accept both
    for stored in (latent_avg[0], latent_avg):
        torch.save({"g_ema": g_ema.state_dict(), "latent_avg": stored}, path)
        ckpt = read_rosinality(path)
        assert ckpt.nets == ["G_ema"] and ckpt.d_config is None
        assert ckpt.extra["w_avg_estimated"] is False
        assert torch.equal(ckpt.tensors["G_ema.mapping.w_avg"], latent_avg[0])
        G = ckpt.generator()
        z = _z(3, seed=7)
        for psi in (1.0, 0.7):
            want, _ = g_ema([z], truncation=psi, truncation_latent=latent_avg, randomize_noise=False)
            assert _max_diff(G(z, truncation_psi=psi, noise_mode="const"), want) < TOL


def test_estimated_w_avg_is_the_mapping_mean(tmp_path: Path, ros_models) -> None:
    _, g_ema, _ = ros_models
    path = tmp_path / "no_avg.pt"
    torch.save({"g_ema": g_ema.state_dict(), "iteration": 1200}, path)
    first = read_rosinality(path)
    assert first.extra["ignored_keys"] == ["iteration"]
    est = first.tensors["G_ema.mapping.w_avg"]
    again = read_rosinality(path).tensors["G_ema.mapping.w_avg"]
    assert torch.equal(est, again), "the estimate must be reproducible"
    independent = g_ema.mean_latent(20000, seed=99)[0]
    # two Monte-Carlo means of the same distribution: close, and far from a trivial answer
    assert _max_diff(est, independent) < 0.05 * independent.abs().max().item() + 0.02
    assert independent.norm() > 0.5


def test_discriminator_outputs_match(tmp_path: Path, ros_models) -> None:
    g, g_ema, d = ros_models
    path = tmp_path / "ckpt.pt"
    _save_like_train_py(path, g, g_ema, d)
    D = read_rosinality(path).discriminator()
    # 8 images: two minibatch-std groups, so the grouping order is checked too
    img = torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    want = d(img)
    assert want.shape == (8, 1)
    assert _max_diff(D(img), want) < TOL


def test_format_detection_routes_pt_files_here(tmp_path: Path, ros_models) -> None:
    _, g_ema, _ = ros_models
    path = tmp_path / "model.bin"  # content decides, not the name
    torch.save({"g_ema": g_ema.state_dict()}, path)
    assert load(path).source_format == "rosinality"


def test_stock_channel_tables_fit_nvidia_channel_base() -> None:
    for cm, base in ((1, 16384), (2, 32768)):
        table = stock_channels(cm)
        assert _fit_channels(table, "t") == (base, 512)
        cfg = GeneratorConfig(img_resolution=1024, channel_base=base, channel_max=512)
        assert {r: cfg.channels(r) for r in table} == table
        assert stock_channel_multiplier(table) == cm
    assert stock_channel_multiplier(CHANNELS) is None
    with pytest.raises(CheckpointError, match="do not follow"):
        _fit_channels({4: 32, 8: 16, 16: 32}, "t")


# --- (b) writing -------------------------------------------------------------------------------


def test_export_loads_strictly_in_rosinality_model_and_matches(tmp_path: Path) -> None:
    ckpt = make_tiny_checkpoint(seed=3)
    g_cfg, d_cfg = ckpt.g_config, ckpt.d_config
    channels = {r: g_cfg.channels(r) for r in g_cfg.block_resolutions}
    path = tmp_path / "export.pt"
    info = write_rosinality(ckpt, path, allow_custom_channels=True)
    assert info["generator"] == {
        "size": g_cfg.img_resolution,
        "style_dim": g_cfg.w_dim,
        "n_mlp": g_cfg.mapping_layers,
        "channel_multiplier": 0,
    }

    obj = torch.load(path, map_location="cpu", weights_only=True)
    assert set(obj) == {"g_ema", "g", "d", "latent_avg", "g_latent_avg"}
    ref_g = RosG(g_cfg.img_resolution, g_cfg.w_dim, g_cfg.mapping_layers, channels=channels)
    ref_g.load_state_dict(obj["g_ema"], strict=True)
    G = ckpt.generator("G_ema")
    z = torch.randn(3, g_cfg.z_dim, generator=torch.Generator().manual_seed(11))
    latent_avg = obj["latent_avg"].view(1, -1)
    assert torch.equal(latent_avg[0], ckpt.tensors["G_ema.mapping.w_avg"])
    for psi in (1.0, 0.7):
        want, _ = ref_g([z], truncation=psi, truncation_latent=latent_avg, randomize_noise=False)
        assert _max_diff(G(z, truncation_psi=psi, noise_mode="const"), want) < TOL

    ref_d = RosD(d_cfg.img_resolution, channels={r: d_cfg.channels(r) for r in channels})
    ref_d.load_state_dict(obj["d"], strict=True)
    img = torch.randn(4, 3, d_cfg.img_resolution, d_cfg.img_resolution, generator=torch.Generator().manual_seed(2))
    assert _max_diff(ckpt.discriminator()(img), ref_d(img)) < TOL


def test_stock_layout_exports_without_custom_channels(tmp_path: Path) -> None:
    torch.manual_seed(4)
    cfg = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=8, mapping_layers=2)  # 512 channels: stock
    G = Generator(cfg)
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.15)
    ckpt = Checkpoint.from_modules(G_ema=G)
    path = tmp_path / "stock.pt"
    info = write_rosinality(ckpt, path)
    assert info == {"generator": {"size": 8, "style_dim": 16, "n_mlp": 2, "channel_multiplier": 2}}
    obj = torch.load(path, map_location="cpu", weights_only=True)
    assert set(obj) == {"g_ema", "latent_avg"}
    ref = RosG(8, 16, 2, channel_multiplier=2)
    ref.load_state_dict(obj["g_ema"], strict=True)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    want, _ = ref([z], randomize_noise=False)
    assert _max_diff(G(z, noise_mode="const"), want) < TOL


def test_model_without_noise_exports_as_zero_noise_strength(tmp_path: Path) -> None:
    torch.manual_seed(6)
    base = make_tiny_checkpoint(seed=6, with_d=False).g_config
    cfg = dataclasses.replace(base, use_noise=False)
    G = Generator(cfg)
    path = tmp_path / "nonoise.pt"
    write_rosinality(Checkpoint.from_modules(G_ema=G), path, allow_custom_channels=True)
    obj = torch.load(path, map_location="cpu", weights_only=True)
    ref = RosG(
        cfg.img_resolution, cfg.w_dim, cfg.mapping_layers, channels={r: cfg.channels(r) for r in cfg.block_resolutions}
    )
    ref.load_state_dict(obj["g_ema"], strict=True)
    z = torch.randn(2, cfg.z_dim, generator=torch.Generator().manual_seed(0))
    # random noise in the reference: a zero strength must make it irrelevant
    want, _ = ref([z], randomize_noise=True)
    assert _max_diff(G(z, noise_mode="const"), want) < TOL


# --- (c) round trips ---------------------------------------------------------------------------


def test_native_to_rosinality_to_native_is_exact(tmp_path: Path) -> None:
    ckpt = make_tiny_checkpoint(seed=8)
    gen = torch.Generator().manual_seed(8)
    # make G differ from G_ema everywhere, so swapped networks or averages would show
    for k, v in list(ckpt.tensors.items()):
        if k.startswith("G.") and not k.endswith("resample_filter"):
            ckpt.tensors[k] = v + 0.01 * torch.randn(v.shape, generator=gen)
    path = tmp_path / "rt.pt"
    write_rosinality(ckpt, path, allow_custom_channels=True)
    back = read_rosinality(path)
    assert back.g_config == ckpt.g_config
    # the conditional projection's depth means nothing without labels, and the file cannot say it
    assert dataclasses.replace(back.d_config, mapping_layers=ckpt.d_config.mapping_layers) == ckpt.d_config
    assert back.extra["w_avg_estimated"] is False
    assert set(back.tensors) == set(ckpt.tensors)
    for k, v in ckpt.tensors.items():
        assert back.tensors[k].shape == v.shape, k
        assert torch.equal(back.tensors[k], v), k


def test_rosinality_to_native_to_rosinality_is_exact(tmp_path: Path, ros_models) -> None:
    g, g_ema, d = ros_models
    src = {
        "g_ema": g_ema.state_dict(),
        "g": g.state_dict(),
        "d": d.state_dict(),
        "latent_avg": g_ema.mean_latent(512)[0],
    }
    path = tmp_path / "src.pt"
    torch.save(src, path)
    out = tmp_path / "out.pt"
    write_rosinality(read_rosinality(path), out, allow_custom_channels=True)
    obj = torch.load(out, map_location="cpu", weights_only=True)
    for key in ("g_ema", "g", "d"):
        assert set(obj[key]) == set(src[key]), key
        for k, v in src[key].items():
            assert torch.equal(obj[key][k], v), f"{key}.{k}"
    assert torch.equal(obj["latent_avg"], src["latent_avg"])


# --- (e) errors --------------------------------------------------------------------------------


def test_unknown_and_missing_tensors_are_refused(tmp_path: Path, ros_models) -> None:
    _, g_ema, _ = ros_models
    path = tmp_path / "bad.pt"
    sd = dict(g_ema.state_dict())
    sd["conv1.conv.label_embed.weight"] = torch.zeros(3, 3)
    torch.save({"g_ema": sd}, path)
    with pytest.raises(CheckpointError, match=r"bad\.pt.*unknown tensor conv1\.conv\.label_embed\.weight"):
        read_rosinality(path)

    sd = dict(g_ema.state_dict())
    del sd["convs.1.noise.weight"]
    torch.save({"g_ema": sd}, path)
    with pytest.raises(CheckpointError, match=r"missing tensor convs\.1\.noise\.weight"):
        read_rosinality(path)

    sd = dict(g_ema.state_dict())
    sd["convs.1.conv.weight"] = torch.zeros(1, 16, 15, 3, 3)
    torch.save({"g_ema": sd}, path)
    with pytest.raises(CheckpointError, match=r"convs\.1\.conv\.weight has shape"):
        read_rosinality(path)

    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="no g_ema, g or d"):
        read_rosinality(path)

    torch.save({"d": RosD(8, channels={8: 4, 4: 4}).state_dict()}, path)
    with pytest.raises(CheckpointError, match="only a discriminator"):
        read_rosinality(path)


def test_other_blur_kernel_is_refused(tmp_path: Path, ros_models) -> None:
    _, g_ema, _ = ros_models
    sd = dict(g_ema.state_dict())
    sd["convs.0.conv.blur.kernel"] = torch.ones(4, 4) / 4
    path = tmp_path / "blur.pt"
    torch.save({"g_ema": sd}, path)
    with pytest.raises(CheckpointError, match="blur kernel"):
        read_rosinality(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(c_dim=5), "conditional"),
        (dict(img_channels=1), "1-channel"),
        (dict(mapping_lr_multiplier=1.0), "lr_mlp"),
    ],
)
def test_export_refuses_what_rosinality_cannot_express(tmp_path: Path, change: dict, message: str) -> None:
    ckpt = make_tiny_checkpoint(seed=1, c_dim=5) if "c_dim" in change else make_tiny_checkpoint(seed=1)
    ckpt = dataclasses.replace(ckpt, g_config=dataclasses.replace(ckpt.g_config, **change))
    out = tmp_path / "x.pt"
    with pytest.raises(CheckpointError, match=message):
        write_rosinality(ckpt, out, allow_custom_channels=True)
    assert not out.exists()


def test_export_refuses_channel_layout_without_a_multiplier(tmp_path: Path) -> None:
    out = tmp_path / "x.pt"
    with pytest.raises(CheckpointError, match="match no rosinality channel_multiplier"):
        write_rosinality(make_tiny_checkpoint(seed=1), out)
    assert not out.exists()


def test_conditional_discriminator_export_is_refused(tmp_path: Path) -> None:
    plain = make_tiny_checkpoint(seed=1, with_d=False)
    cond = make_tiny_checkpoint(seed=1, c_dim=4)
    tensors = {**plain.tensors, **{k: v for k, v in cond.tensors.items() if k.startswith("D.")}}
    ckpt = dataclasses.replace(plain, tensors=tensors, d_config=cond.d_config)
    out = tmp_path / "x.pt"
    with pytest.raises(CheckpointError, match="discriminator.*conditional.*drop D"):
        write_rosinality(ckpt, out, allow_custom_channels=True)
    assert not out.exists()


def test_tensors_the_config_does_not_explain_are_refused(tmp_path: Path) -> None:
    ckpt = make_tiny_checkpoint(seed=1)
    ckpt.tensors["G_ema.mapping.embed.weight"] = torch.zeros(32, 4)
    with pytest.raises(CheckpointError, match="mapping.embed.weight has no counterpart"):
        write_rosinality(ckpt, tmp_path / "x.pt", allow_custom_channels=True)


def test_corrupt_and_truncated_files_are_refused(tmp_path: Path, ros_models) -> None:
    _, g_ema, _ = ros_models
    good = tmp_path / "good.pt"
    torch.save({"g_ema": g_ema.state_dict()}, good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt: cannot read"):
        read_rosinality(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match=r"garbage\.pt"):
        read_rosinality(garbage)
    with pytest.raises(CheckpointError, match="no such file"):
        read_rosinality(tmp_path / "absent.pt")


class _Payload:
    """Unpickling this would run a shell command: the file must be refused before that."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def test_code_execution_payload_is_refused(tmp_path: Path, ros_models) -> None:
    _, g_ema, _ = ros_models
    sentinel = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": g_ema.state_dict(), "latent_avg": _Payload(sentinel)}, path)
    with zipfile.ZipFile(path) as zf:
        pickled = b"".join(zf.read(n) for n in zf.namelist() if n.endswith("data.pkl"))
    assert b"system" in pickled, "the test file must really carry the payload"
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: the file asks to import \w+\.system"):
        read_rosinality(path)
    with pytest.raises(CheckpointError, match=r"evil\.pt"):
        load(path)
    assert not sentinel.exists()
