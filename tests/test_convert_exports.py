"""convert's exports: clamped (stylegan2-ada-pytorch) models to rosinality, and NVIDIA network pickles.

Checked against rosinality's model (GANCRAFT_ROSINALITY_SRC, else the independent re-implementation
in tests/reference) and against NVIDIA's own loader (GANCRAFT_NVIDIA_SRC, either repository).
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import pickletools
import sys
from pathlib import Path

import pytest
import torch
from reference.rosinality_model import Discriminator as RosD
from reference.rosinality_model import Generator as RosG

from gancraft.checkpoint import Checkpoint, load, save
from gancraft.checkpoint.clamp import measure_clamp
from gancraft.checkpoint.nvidia_export import LOADER_SOURCE, fresh_discriminator_config
from gancraft.checkpoint.rosinality import write_rosinality
from gancraft.checkpoint.safe_pickle import PersistentRecord, safe_load
from gancraft.nets import GeneratorConfig

import nvidia_pairs
from conftest import (
    NVIDIA_SRC,
    ROSINALITY_SRC,
    cli_fails,
    cli_invoke,
    cli_ok,
    load_rosinality_model,
    make_tiny_checkpoint,
    needs_nvidia,
)

TOL = 1e-4


def _with_clamp(ckpt: Checkpoint, g: float | None, d: float | None = None) -> Checkpoint:
    return dataclasses.replace(
        ckpt,
        g_config=dataclasses.replace(ckpt.g_config, conv_clamp=g),
        d_config=ckpt.d_config and dataclasses.replace(ckpt.d_config, conv_clamp=d),
    )


def _images(ckpt: Checkpoint, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ckpt.generator("G_ema")(z, noise_mode="const")


def _z(n: int, dim: int, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


# --- conv_clamp: measured, not assumed -----------------------------------------------------------


def test_generator_peak_is_where_the_clamp_starts_to_matter():
    base = make_tiny_checkpoint(seed=2, with_d=False)
    samples = 6
    report = measure_clamp(_with_clamp(base, 1e6), samples=samples)
    peak, where = report.peak
    assert not report.engaged and where.startswith("G_ema.synthesis.") and peak > 1
    z = torch.randn(samples, base.g_config.z_dim, generator=torch.Generator().manual_seed(0))  # measure's latents
    free = _images(base, z)
    # just above the peak every clamp is idle: the clamped model is the unclamped one exactly
    above = _with_clamp(base, peak * 1.001)
    assert not measure_clamp(above, samples=samples).engaged
    assert torch.equal(_images(above, z), free)
    # just below it one activation is cut and the images change
    below = _with_clamp(base, peak * 0.99)
    report = measure_clamp(below, samples=samples)
    # measured with the clamps lifted: the same peak whatever the clamp
    assert report.engaged and report.peak[0] == pytest.approx(peak, rel=1e-6)
    assert not torch.equal(_images(below, z), free)


def test_discriminator_peak_is_measured_on_generated_images():
    base = make_tiny_checkpoint(seed=3)
    # the peak in a layer called with gain sqrt(1/2), whose clamp is scaled by it too
    base.tensors["D.b8.conv1.bias"] += 50
    base.tensors["D.b4.conv.weight"] *= 0.01  # so that the next layer does not outgrow it
    report = measure_clamp(_with_clamp(base, None, 1e6), samples=8)
    peak, where = report.peak
    assert set(report.peaks) == {"D"} and where == "D.b8.conv1"
    z = torch.randn(8, base.g_config.z_dim, generator=torch.Generator().manual_seed(0))  # measure's latents
    imgs = _images(base, z)
    with torch.no_grad():
        # D sees the images in minibatch-std groups of four, as the measurement does
        free = torch.cat([base.discriminator()(imgs[i : i + 4]) for i in (0, 4)])
        for factor, changes in ((1.001, False), (0.99, True)):
            clamped = _with_clamp(base, None, peak * factor)
            assert measure_clamp(clamped, samples=8).engaged == changes
            out = torch.cat([clamped.discriminator()(imgs[i : i + 4]) for i in (0, 4)])
            assert torch.equal(out, free) != changes


def test_unclamped_model_needs_no_measurement():
    assert measure_clamp(make_tiny_checkpoint(seed=1)) is None


def _ros_generator(ckpt: Checkpoint, obj: dict) -> RosG:
    g = ckpt.g_config
    ref = RosG(g.img_resolution, g.w_dim, g.mapping_layers, channels={r: g.channels(r) for r in g.block_resolutions})
    ref.load_state_dict(obj["g_ema"], strict=True)
    return ref


def test_clamped_model_that_never_reaches_its_clamp_exports_to_rosinality(tmp_path):
    ckpt = _with_clamp(make_tiny_checkpoint(seed=4), 256.0, 256.0)
    path = tmp_path / "ada.pt"
    write_rosinality(ckpt, path, allow_custom_channels=True)
    obj = torch.load(path, map_location="cpu", weights_only=True)
    ref = _ros_generator(ckpt, obj)
    z = _z(3, ckpt.g_config.z_dim)
    want, _ = ref([z], randomize_noise=False)
    assert (want - _images(ckpt, z)).abs().max().item() < TOL
    d = ckpt.d_config
    ref_d = RosD(d.img_resolution, channels={r: d.channels(r) for r in [*d.block_resolutions, 4]})
    ref_d.load_state_dict(obj["d"], strict=True)


def test_engaged_clamp_is_refused_with_its_figure_unless_allowed(tmp_path):
    ckpt = _with_clamp(make_tiny_checkpoint(seed=4, with_d=False), 256.0)
    with torch.no_grad():
        ckpt.tensors["G_ema.synthesis.b8.conv1.bias"] += 400  # pushes that layer past the clamp
    src = tmp_path / "hot.st"
    save(ckpt, src)
    out = tmp_path / "hot.pt"
    line = cli_fails("convert", src, "--to", "rosinality", "--allow-custom-channels", "--clamp-samples", 4, "-o", out)
    # the peak may lie in a later layer than b8.conv1: the large activations travel on
    assert "conv_clamp 256 engages over 4 samples" in line and "in G_ema.synthesis.b" in line
    assert "--allow-clamp" in line and not out.exists()
    peak = float(line.split("largest pre-clamp activation ")[1].split()[0])
    assert peak > 256
    result = cli_invoke(
        "convert",
        src,
        "--to",
        "rosinality",
        "--allow-custom-channels",
        "--clamp-samples",
        4,
        "--allow-clamp",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "engages" in result.stderr and out.exists()


def test_cli_reports_an_idle_clamp_and_converts(tmp_path):
    src = tmp_path / "ada.st"
    save(_with_clamp(make_tiny_checkpoint(seed=5), 256.0, 256.0), src)
    result = cli_invoke(
        "convert", src, "--to", "rosinality", "--allow-custom-channels", "--clamp-samples", 8, "-o", tmp_path / "ada.pt"
    )
    assert result.exit_code == 0, result.output
    assert "conv_clamp 256 never engages over 8 samples" in result.stderr
    assert result.stdout.split() == [str(tmp_path / "ada.pt")]


def test_format_options_belong_to_their_format(tmp_path, ckpt):
    assert "--fresh-d applies to --to nvidia only" in cli_fails(
        "convert", ckpt, "--fresh-d", "--to", "rosinality", "-o", tmp_path / "x.pt"
    )
    assert "--clamp-samples applies to --to rosinality only" in cli_fails(
        "convert", ckpt, "--clamp-samples", 3, "-o", tmp_path / "x.st"
    )
    assert not list(tmp_path.iterdir())


# --- NVIDIA pickles: structure, always ------------------------------------------------------------


def _pickle_globals(path: Path) -> set[str]:
    found, recent = set(), []
    with open(path, "rb") as fh:
        for op, arg, _ in pickletools.genops(fh):
            if op.name == "GLOBAL":
                found.add(arg)
            elif op.name == "STACK_GLOBAL":
                found.add(" ".join(recent[-2:]))
            elif isinstance(arg, str):
                recent.append(arg)
    return found


def test_nvidia_export_is_data_and_reads_back_exactly(tmp_path):
    ckpt = _with_clamp(make_tiny_checkpoint(seed=6, c_dim=3), 256.0, 256.0)
    out = save(ckpt, tmp_path / "x.pkl", to="nvidia")
    assert _pickle_globals(out) <= {
        "torch_utils.persistence _reconstruct_persistent_obj",
        "torch._utils _rebuild_tensor_v2",
        "torch.storage _load_from_bytes",
        "collections OrderedDict",
    }
    data = safe_load(out)
    assert set(data) == {"G", "D", "G_ema"}
    for name, rec in data.items():
        assert isinstance(rec, PersistentRecord) and rec.version == 6
        assert rec.class_name == ("Discriminator" if name == "D" else "Generator")
        # the only source in the file is gancraft's loader, which names NVIDIA's classes by import path
        assert rec.module_src == LOADER_SOURCE
    back = load(out)
    assert (back.g_config, back.d_config) == (ckpt.g_config, ckpt.d_config)
    assert set(back.tensors) == set(ckpt.tensors)
    for k, v in ckpt.tensors.items():
        assert torch.equal(back.tensors[k], v), k


def test_nvidia_export_without_discriminator_needs_fresh_d(tmp_path):
    src = tmp_path / "g.st"
    ck = make_tiny_checkpoint(seed=7, with_d=False)
    save(Checkpoint.from_modules(G_ema=ck.generator("G_ema")), src)
    out = tmp_path / "g.pkl"
    assert "--fresh-d" in cli_fails("convert", src, "--to", "nvidia", "-o", out)
    assert not out.exists()
    assert cli_ok("convert", src, "--to", "nvidia", "--fresh-d", "-o", out) == [str(out)]
    back = load(out)
    assert back.d_config == fresh_discriminator_config(ck.g_config).validate()
    # the one generator serves as G and G_ema
    for k, v in back.state_dict("G_ema").items():
        assert torch.equal(back.tensors[f"G.{k}"], v)
    assert cli_ok("convert", out, "--to", "nvidia", "-o", tmp_path / "again.pkl")  # now it has a D


# --- against NVIDIA's and rosinality's own code ---------------------------------------------------


@pytest.fixture(scope="module")
def nv():
    return nvidia_pairs.load_nvidia(NVIDIA_SRC)


def _nvidia_legacy():
    if str(Path(NVIDIA_SRC).resolve()) not in sys.path:
        sys.path.insert(0, str(Path(NVIDIA_SRC).resolve()))
    import legacy  # noqa: PLC0415 (NVIDIA's code, from GANCRAFT_NVIDIA_SRC)

    return legacy


@needs_nvidia
@pytest.mark.parametrize("c_dim", [0, 2])
def test_nvidia_loader_reproduces_gancraft_images_and_d(tmp_path, nv, c_dim):
    ckpt = _with_clamp(make_tiny_checkpoint(seed=8, c_dim=c_dim), 256.0, 256.0)
    with open(save(ckpt, tmp_path / "x.pkl", to="nvidia"), "rb") as fh:
        data = _nvidia_legacy().load_network_pkl(fh)
    G, D = data["G_ema"], data["D"]
    assert type(G) is nv["networks"].Generator and type(D) is nv["networks"].Discriminator
    z = _z(4, ckpt.g_config.z_dim)
    c = torch.nn.functional.one_hot(torch.arange(4) % c_dim, c_dim).float() if c_dim else None
    with torch.no_grad():
        for net in ("G_ema", "G"):
            want = ckpt.generator(net)(z, c, truncation_psi=0.7, noise_mode="const")
            got = data[net](z, c, truncation_psi=0.7, noise_mode="const")
            assert (want - got).abs().max().item() <= TOL and want.abs().max() > 0.1
        assert (D(got, c) - ckpt.discriminator()(got, c)).abs().max().item() <= TOL
    # saved again by NVIDIA's pickler it is an ordinary NVIDIA pickle, with NVIDIA's source
    buf = io.BytesIO()
    pickle.dump(data, buf)
    buf.seek(0)
    again = _nvidia_legacy().load_network_pkl(buf)["G_ema"]
    assert "gancraft" not in type(again)._orig_module_src
    with torch.no_grad():
        assert torch.equal(again(z, c, noise_mode="const"), G(z, c, noise_mode="const"))


def _rosinality_classes():
    if ROSINALITY_SRC:
        model = load_rosinality_model()
        return lambda size, dim, n_mlp: model.Generator(size, dim, n_mlp), lambda size: model.Discriminator(size)
    return lambda size, dim, n_mlp: RosG(size, dim, n_mlp, channel_multiplier=2), lambda size: RosD(size)


@needs_nvidia
def test_ada_trained_pickle_converts_to_rosinality_with_nvidia_images(tmp_path, nv):
    """A pickle NVIDIA's code wrote, with the conv_clamp=256 every stylegan2-ada-pytorch config uses."""
    res, dim = 16, 32
    # 512 channels up to 32 px: rosinality's stock table
    cfg = GeneratorConfig(
        z_dim=dim, w_dim=dim, img_resolution=res, mapping_layers=2, channel_base=16384, channel_max=512, conv_clamp=256
    )
    G, G_ema = nvidia_pairs.build_nvidia(nv, cfg), nvidia_pairs.build_nvidia(nv, cfg)
    nvidia_pairs.randomize_(G, 1)
    nvidia_pairs.randomize_(G_ema, 2)
    D = nv["networks"].Discriminator(
        c_dim=0, img_resolution=res, img_channels=3, channel_base=16384, channel_max=512, conv_clamp=256
    )
    src = tmp_path / "ada.pkl"
    with open(src, "wb") as fh:
        pickle.dump({"G": G.eval(), "D": D.eval(), "G_ema": G_ema.eval()}, fh)
    out = tmp_path / "ada.pt"
    result = cli_invoke("convert", src, "--to", "rosinality", "--clamp-samples", 16, "-o", out)
    assert result.exit_code == 0, result.output
    assert "never engages" in result.stderr

    obj = torch.load(out, map_location="cpu", weights_only=True)
    make_g, make_d = _rosinality_classes()
    ros_g, ros_d = make_g(res, dim, cfg.mapping_layers), make_d(res)
    ros_g.load_state_dict(obj["g_ema"], strict=True)
    ros_d.load_state_dict(obj["d"], strict=True)
    z = _z(4, dim)
    with torch.no_grad():
        want = G_ema(z, None, noise_mode="const")
        got, _ = ros_g([z], randomize_noise=False)
        assert (want - got).abs().max().item() <= TOL and want.abs().max() > 0.1
        assert (ros_d(want) - D(want, None)).abs().max().item() <= TOL
