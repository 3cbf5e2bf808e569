"""StyleGAN3: gancraft's network against NVIDIA's stylegan3 code, golden images, pickles, CLI.

The NVIDIA tests run when GANCRAFT_NVIDIA_SRC is a stylegan3 checkout (its own code needs
scipy and, for its pkg_resources import, setuptools < 81); the golden tests always run, on
images gancraft wrote after matching NVIDIA's (tests/reference/make_stylegan3_golden.py).
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pickle_fixtures import STYLEGAN3_MODULE_SRC, EasyDict, dump, persistent_tree
from PIL import Image
from safetensors.torch import load_file

from gancraft import load, save
from gancraft.checkpoint.core import Checkpoint
from gancraft.checkpoint.nvidia import read_nvidia_pickle, sniff_pickle
from gancraft.errors import CheckpointError, GancraftError
from gancraft.nets import stylegan3 as sg3
from gancraft.nets.stylegan3 import Generator, StyleGAN3Config, input_transform

from conftest import NVIDIA_SRC, cli_fails, cli_ok

REF = Path(__file__).parent / "reference"
TOL = 1e-4

needs_stylegan3 = pytest.mark.skipif(
    not NVIDIA_SRC or not (Path(NVIDIA_SRC).expanduser() / "training" / "networks_stylegan3.py").is_file(),
    reason="set GANCRAFT_NVIDIA_SRC to a stylegan3 checkout to compare with NVIDIA's StyleGAN3 code",
)


def tiny(**kw) -> StyleGAN3Config:
    base = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256, channel_max=8)
    base.update(kw)
    return StyleGAN3Config(**base)


R = dict(conv_kernel=1, use_radial_filters=True)


def gen_images_matrix(translate: tuple[float, float], angle: float) -> np.ndarray:
    """gen_images.py's make_transform, restated: the image's rotation and shift."""
    a = angle / 360 * 2 * np.pi
    return np.array([[np.cos(a), np.sin(a), translate[0]], [-np.sin(a), np.cos(a), translate[1]], [0, 0, 1]])


# ---------------------------------------------------------------- always: structure and golden images


def test_layer_schedule_of_a_16px_r_config():
    """Values printed by NVIDIA's stylegan3 SynthesisNetwork for this config (channel_base 512,
    channel_max 16, 16 px, R): names, sizes, rates, cutoffs, resampling and padding."""
    specs = tiny(channel_base=512, channel_max=16, **R).layer_specs()
    assert [s.name for s in specs] == [f"L{i}_36_16" for i in range(13)] + ["L13_16_16", "L14_16_3"]
    first, last = specs[1], specs[-1]
    assert (first.in_size, first.out_size, first.in_sampling_rate, first.out_sampling_rate) == (36, 36, 16, 16)
    assert first.in_cutoff == pytest.approx(2.0) and first.out_cutoff == pytest.approx(2.244924096618746)
    assert first.in_half_width == pytest.approx(6.0) and first.out_half_width == pytest.approx(5.755075903381254)
    assert (first.up, first.up_taps, first.down, first.down_taps, first.padding) == (2, 12, 2, 12, (11, 10, 11, 10))
    assert first.down_radial and first.conv_kernel == 1 and not first.is_critically_sampled
    assert [s.is_critically_sampled for s in specs].count(True) == 3  # L12, L13 and the toRGB
    assert not specs[12].down_radial  # critically sampled layers keep the separable filter
    assert last.is_torgb and (last.up, last.down, last.up_taps, last.down_taps) == (1, 1, 1, 1)
    assert specs[13].out_size == 16 and specs[12].out_cutoff == pytest.approx(8.0)


def test_filters_are_unit_gain_lowpass_of_the_specified_shape():
    G = Generator(tiny(**R))
    layer = G.synthesis.L1_36_8
    up, down = layer.up_filter, layer.down_filter
    assert up.ndim == 1 and down.ndim == 2  # R: radial downsampling filter
    assert up.sum().item() == pytest.approx(1, abs=1e-6) and down.sum().item() == pytest.approx(1, abs=1e-6)
    assert torch.allclose(up, up.flip(0)) and torch.allclose(down, down.t())
    # the radial filter depends only on the distance from its centre
    assert torch.allclose(down, down.flip(0)) and down[0, 3].item() == pytest.approx(down[3, 0].item())
    assert G.synthesis.L14_16_3.up_filter is None  # toRGB: no resampling


def test_separable_fir_equals_the_2d_filter():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 11, generator=gen)
    f = torch.rand(7, generator=gen)
    for up, down, pad in ((2, 1, (5, 4, 3, 6)), (1, 2, (-1, 2, 0, -2)), (2, 2, (0, 0, 0, 0))):
        want = sg3.ops.upfirdn2d(x, torch.outer(f, f), up=up, down=down, padding=pad, gain=up * up)
        got = sg3._fir(x, f, up=up, down=down, padding=pad, gain=up * up)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_input_transform_is_the_inverse_of_gen_images_matrix():
    for translate, angle in (((0.3, 1.0), 0.0), ((0.0, 0.0), 45.0), ((-0.2, 0.7), 200.0)):
        want = np.linalg.inv(gen_images_matrix(translate, angle))
        np.testing.assert_allclose(input_transform(translate, angle).numpy(), want, atol=1e-6)


@pytest.mark.parametrize("name", ["t16", "r16"])
def test_golden_images(name):
    golden = load_file(str(REF / "stylegan3_golden.safetensors"))
    ckpt = load(REF / f"stylegan3_{name}.st")
    assert ckpt.family == "stylegan3" and ckpt.g_config.config_name == name[0].upper()
    G = ckpt.generator()
    z = golden[f"{name}.z"]
    c = torch.nn.functional.one_hot(torch.arange(3) % G.c_dim, G.c_dim).float() if G.c_dim else None
    with torch.no_grad():
        torch.testing.assert_close(G(z, c), golden[f"{name}.plain"], rtol=0, atol=1e-5)
        torch.testing.assert_close(G(z, c, truncation_psi=0.7), golden[f"{name}.psi0.7"], rtol=0, atol=1e-5)
        G.synthesis.input.transform.copy_(input_transform((0.25, -0.1), 30.0))
        torch.testing.assert_close(G(z, c), golden[f"{name}.placed"], rtol=0, atol=1e-5)


def test_native_round_trip(tmp_path):
    G = Generator(tiny(c_dim=3, **R)).eval()
    ckpt = Checkpoint.from_modules(G_ema=G)
    back = load(save(ckpt, tmp_path / "m.st"))
    assert back.g_config == ckpt.g_config and back.family == "stylegan3"
    z, c = torch.randn(2, 8), torch.eye(3)[:2]
    assert torch.equal(back.generator()(z, c), G(z, c))


# ---------------------------------------------------------------- pickles, without NVIDIA's code


def _sg3_pickle(tmp_path: Path, G: Generator, **extra) -> Path:
    cfg = G.cfg
    kwargs = EasyDict(
        z_dim=cfg.z_dim,
        w_dim=cfg.w_dim,
        mapping_kwargs=EasyDict(num_layers=cfg.mapping_layers),
        channel_base=cfg.channel_base,
        channel_max=cfg.channel_max,
        magnitude_ema_beta=0.998,
        conv_kernel=cfg.conv_kernel,
        use_radial_filters=cfg.use_radial_filters,
        num_fp16_res=4,
        conv_clamp=256,
        c_dim=cfg.c_dim,
        img_resolution=cfg.img_resolution,
        img_channels=cfg.img_channels,
        **extra,
    )
    snap = {"G_ema": persistent_tree(G, kwargs, STYLEGAN3_MODULE_SRC), "augment_pipe": None}
    return dump(snap, tmp_path / "sg3.pkl")


def test_stylegan3_pickle_is_read_as_data(tmp_path):
    G = Generator(tiny(**R)).eval()
    path = _sg3_pickle(tmp_path, G)
    assert sniff_pickle(path) == "stylegan3"
    ckpt = read_nvidia_pickle(path)
    assert ckpt.g_config == StyleGAN3Config(**{**vars(G.cfg), "magnitude_ema_beta": 0.998})
    assert set(ckpt.state_dict("G_ema")) == set(G.state_dict())
    z = torch.randn(2, 8)
    assert torch.equal(ckpt.generator()(z), G(z))


def test_stylegan3_pickle_refusals(tmp_path):
    G = Generator(tiny()).eval()
    with pytest.raises(CheckpointError, match="unsupported constructor options: wobble"):
        read_nvidia_pickle(_sg3_pickle(tmp_path, G, wobble=1))
    snap = {
        "G_ema": persistent_tree(
            G,
            dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256, channel_max=8),
            STYLEGAN3_MODULE_SRC,
        )
    }
    layers = snap["G_ema"].meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]
    layers["L3_36_8"].meta["class_name"] = "SynthesisBlock"
    with pytest.raises(CheckpointError, match=r"G_ema.synthesis.L3_36_8 is a SynthesisBlock"):
        read_nvidia_pickle(dump(snap, tmp_path / "odd.pkl"))


# ---------------------------------------------------------------- CLI


@pytest.fixture
def sg3_file(tmp_path) -> Path:
    return save(load(REF / "stylegan3_r16.st"), tmp_path / "r16.st")


def test_cli_inspect_sample_convert(sg3_file, tmp_path):
    assert "family stylegan3 (config R), 16x16," in " ".join(cli_ok("inspect", str(sg3_file)))
    info = json.loads(" ".join(cli_ok("inspect", str(sg3_file), "--json")))
    assert info["family"] == "stylegan3" and info["stylegan3_config"] == "R"
    assert [x["name"] for x in info["synthesis_layers"]][-1] == "L14_16_3" and info["domain_vector_dim"] is None

    plain = cli_ok("sample", str(sg3_file), "--seeds", "0,1", "--domain", "0", "-o", str(tmp_path / "a"))
    moved = cli_ok(
        "sample",
        str(sg3_file),
        "--seeds",
        "0,1",
        "--domain",
        "0",
        "--translate",
        "0.25,-0.1",
        "--rotate",
        "30",
        "-o",
        str(tmp_path / "b"),
    )
    a, b = (np.asarray(Image.open(paths[-1])) for paths in (plain, moved))
    assert a.shape == (16, 16, 3) and not np.array_equal(a, b)
    # the moved image is the golden 'placed' rendering of the same model (z from seed 1, class 0)
    G = load(sg3_file).generator()
    G.synthesis.input.transform.copy_(input_transform((0.25, -0.1), 30.0))
    z = torch.from_numpy(np.random.RandomState(1).randn(1, 8)).float()
    want = (G(z, torch.eye(2)[:1]) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.abs(b.astype(int) - want.astype(int)).max() <= 1

    st = cli_ok("convert", str(sg3_file), "-o", str(tmp_path / "c.st"))
    back = load(st[0])
    assert back.family == "stylegan3" and back.history[-1]["command"] == "convert"
    for to in ("rosinality", "nvidia"):
        assert "converts --to native only" in cli_fails(
            "convert", str(sg3_file), "--to", to, "-o", str(tmp_path / f"x.{to}")
        )
    assert "--translate" in cli_fails("sample", str(sg3_file), "--translate", "1", "-o", str(tmp_path / "d"))
    line = cli_fails(
        "sample", str(sg3_file), "--mix-rows", "1", "--mix-cols", "2", "--domain", "0", "-o", str(tmp_path / "m.png")
    )
    assert "--mix-res: " in line and "no resolution blocks; give the mixed layers as w indices 0-" in line


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "--seeds", "0,1", "-o", "s"],
        ["sample", "--seeds", "0,1", "--grid", "g.png", "--latents", "l.npz"],
        ["render", "--seeds", "0,1", "--frames", "3", "-o", "v.gif"],
        ["render", "--seeds", "0,1", "--frames", "3", "-o", "frames"],
    ],
)
@pytest.mark.parametrize("precision", ["mixed", "bf16"])
def test_cli_reduced_precision_is_refused_before_any_output(sg3_file, tmp_path, monkeypatch, args, precision):
    # the refusal comes before progress bars, log lines and output folders: one line, nothing written
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    line = cli_fails(args[0], str(sg3_file), "--domain", "0", "--precision", precision, *args[1:])
    assert line.endswith(f"--precision {precision}: StyleGAN3 models run in fp32 only")
    assert sorted(tmp_path.rglob("*")) == before


def test_generate_and_render_frames_refuse_at_the_call(sg3_file):
    from gancraft.latent.domains import DomainSpec
    from gancraft.latent.generate import Frame, generate, render_frames

    G = load(sg3_file).generator()
    class0 = DomainSpec(name="0", c=torch.eye(2)[0])
    # no next(): the call itself raises, so callers may open files between it and the first batch
    with pytest.raises(GancraftError, match="fp32 only"):
        generate(G, [0], domain=class0, precision="mixed")
    with pytest.raises(GancraftError, match="choose a class"):
        generate(G, [0])
    with pytest.raises(GancraftError, match="fp32 only"):
        render_frames(G, [Frame(ws=torch.zeros(1, G.num_ws, G.w_dim))], precision="mixed")
    assert len(list(generate(G, [0, 1], domain=class0, batch_size=1))) == 2


def test_cli_translate_refuses_stylegan2(tmp_path):
    from conftest import make_tiny_checkpoint

    path = save(make_tiny_checkpoint(0, resolution=16), tmp_path / "sg2.st")
    assert "StyleGAN3" in cli_fails("sample", str(path), "--rotate", "10", "-o", str(tmp_path / "o"))


# ---------------------------------------------------------------- against NVIDIA's stylegan3 code


@pytest.fixture(scope="module")
def nv():
    sys.path.insert(0, str(Path(NVIDIA_SRC).expanduser().resolve()))
    import training.networks_stylegan3 as networks

    return networks


def _nvidia_pair(nv, cfg_kwargs: dict, seed: int):
    torch.manual_seed(seed)
    ref = nv.Generator(**cfg_kwargs).eval()
    with torch.no_grad():
        for _, p in ref.named_parameters():
            p.add_(torch.randn_like(p) * 0.3)  # NVIDIA's init zeroes the input affine: move it
        for key, b in ref.named_buffers():
            if key.endswith("magnitude_ema"):
                b.fill_(float(torch.rand([])) + 0.5)
            elif key.endswith("w_avg"):
                b.normal_()
    ours = Generator(StyleGAN3Config(**cfg_kwargs)).eval()
    own = ours.state_dict()
    for key, value in ref.state_dict().items():
        if key.endswith(("up_filter", "down_filter")):  # designed by each side from the config alone
            torch.testing.assert_close(own[key], value, rtol=0, atol=1e-7, msg=key)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@needs_stylegan3
@pytest.mark.parametrize("config", ["T", "R"])
@pytest.mark.parametrize("res", [16, 32])
def test_images_match_nvidia(nv, config, res):
    kw = dict(
        z_dim=8,
        c_dim=3,
        w_dim=8,
        img_resolution=res,
        img_channels=3,
        channel_base=512,
        channel_max=16,
        **(R if config == "R" else {}),
    )
    ref, ours = _nvidia_pair(nv, kw, seed=res)
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    c = torch.eye(3)
    with torch.no_grad():
        for psi, cutoff in ((1, None), (0.6, 4)):
            want = ref(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
            got = ours(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
            assert want.abs().max() > 0.1 and (got - want).abs().max() <= TOL, (psi, cutoff)
        m = torch.from_numpy(np.linalg.inv(gen_images_matrix((0.4, -0.3), 70.0)))
        ref.synthesis.input.transform.copy_(m)
        ours.synthesis.input.transform.copy_(input_transform((0.4, -0.3), 70.0))
        assert (ours(z, c) - ref(z, c)).abs().max() <= TOL


@needs_stylegan3
def test_a_pickle_written_by_nvidias_training_code_loads(nv, tmp_path):
    """As stylegan3's train.py builds and saves a snapshot: StyleGAN3 G, G_ema, its StyleGAN2 D."""
    import dnnlib

    torch.manual_seed(5)
    common = dict(c_dim=0, img_resolution=16, img_channels=3)
    G = (
        dnnlib.util.construct_class_by_name(
            class_name="training.networks_stylegan3.Generator",
            z_dim=8,
            w_dim=8,
            mapping_kwargs=dnnlib.EasyDict(num_layers=2),
            channel_base=512,
            channel_max=16,
            magnitude_ema_beta=0.5 ** (32 / 20e3),
            conv_kernel=1,
            use_radial_filters=True,
            num_fp16_res=4,
            conv_clamp=256,
            **common,
        )
        .eval()
        .requires_grad_(False)
    )
    D = (
        dnnlib.util.construct_class_by_name(
            class_name="training.networks_stylegan2.Discriminator",
            block_kwargs=dnnlib.EasyDict(freeze_layers=0),
            mapping_kwargs=dnnlib.EasyDict(),
            epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=4),
            channel_base=512,
            channel_max=16,
            num_fp16_res=4,
            conv_clamp=256,
            **common,
        )
        .eval()
        .requires_grad_(False)
    )
    with torch.no_grad():
        for _, p in G.named_parameters():
            p.add_(torch.randn_like(p) * 0.3)
    path = tmp_path / "network-snapshot-000000.pkl"
    with open(path, "wb") as fh:
        pickle.dump(
            {
                "G": G,
                "D": D,
                "G_ema": copy.deepcopy(G),
                "augment_pipe": None,
                "training_set_kwargs": dnnlib.EasyDict(path="x.zip"),
            },
            fh,
        )
    ckpt = load(path)
    assert ckpt.family == "stylegan3" and ckpt.nets == ["G_ema", "G", "D"]
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert (ckpt.generator()(z) - G(z, None)).abs().max() <= TOL
        img = torch.randn(2, 3, 16, 16)
        assert (ckpt.discriminator()(img) - D(img, None)).abs().max() <= TOL
    assert math.isclose(ckpt.g_config.magnitude_ema_beta, 0.5 ** (32 / 20e3))


def test_training_commands_refuse_stylegan3(tmp_path):
    from gancraft.nets import Discriminator, DiscriminatorConfig

    # as a stylegan3 training snapshot: StyleGAN3 generator, StyleGAN2 discriminator
    D = Discriminator(DiscriminatorConfig(img_resolution=16, channel_base=256, channel_max=8))
    sg3_file = save(Checkpoint.from_modules(G_ema=load(REF / "stylegan3_t16.st").generator(), D=D), tmp_path / "t16.st")
    other = save(load(sg3_file), tmp_path / "other.st")
    for args in (
        ["root", "--root", str(sg3_file), "--source", str(other), "-o", str(tmp_path / "r")],
        [
            "finetune",
            str(sg3_file),
            "--domain",
            f"a={sg3_file}",
            "--domain",
            f"b={sg3_file}",
            "-o",
            str(tmp_path / "u.st"),
        ],
    ):
        assert "StyleGAN3 models cannot be trained" in cli_fails(*args)
    assert not any((tmp_path / "r").rglob("*")) and not (tmp_path / "u.st").exists()
    with pytest.raises(GancraftError, match="cannot be trained"):
        load(sg3_file).generator().train()


def test_domain_vector_and_expansion_commands_refuse_stylegan3(tmp_path, monkeypatch):
    # unconditional, so that no class check answers first; refused before CLIP, LPIPS or SeFA run
    sg3 = str(save(Checkpoint.from_modules(G_ema=Generator(tiny())), tmp_path / "u.st"))
    (tmp_path / "p.txt").write_text("a cat\na dog\n")
    monkeypatch.chdir(tmp_path)
    for args, said in (
        (["expand", sg3, "--task", f"cat:model:{sg3}", "-o", "e.st"], "cannot be trained"),
        (["hyper", sg3, "--prompts", "p.txt", "-o", "h.st"], "cannot be trained"),
        (["finetune", sg3, "--prompt", "cat=a cat", "-o", "f.st"], "cannot be trained"),
        (["finetune", sg3, "--domain", f"cat={sg3}", "--params", "domain-vector", "-o", "g.st"], "not supported"),
    ):
        assert said in cli_fails(*args)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["p.txt", "u.st"]


# ---------------------------------------------------------------- merges, SeFA, render, FID


def _pair_of_models(tmp_path: Path) -> tuple[Path, Path, Checkpoint, Checkpoint]:
    """Two StyleGAN3 models of one architecture and one input (a fine-tune keeps the root's
    Fourier features), their layers different."""
    a = load(REF / "stylegan3_r16.st")
    b = Checkpoint(tensors=dict(a.tensors), g_config=a.g_config)
    gen = torch.Generator().manual_seed(7)
    for k, v in a.tensors.items():
        if not k.endswith(("freqs", "phases", "transform", "up_filter", "down_filter")):
            b.tensors[k] = v + torch.randn(v.shape, generator=gen) * 0.2
    return save(a, tmp_path / "a.st"), save(b, tmp_path / "b.st"), a, b


def _layer(key: str) -> int | None:
    """Layer index of a synthesis tensor, the input counting as L0 (the documented rule)."""
    if ".synthesis.input." in key:
        return 0
    part = key.split(".")[2] if ".synthesis.L" in key else None
    return int(part[1:].split("_")[0]) if part else None


@pytest.mark.parametrize("kwargs", [dict(switch=5), dict(switch=3, blend_width=1.5), dict(alpha="2:0.25,9:1")])
def test_blend_by_layer_index(tmp_path, kwargs):
    from gancraft.merge import blend_checkpoints

    _, _, a, b = _pair_of_models(tmp_path)
    out = blend_checkpoints(a, [b], **kwargs)
    checked = 0
    for key, v in out.tensors.items():
        i = _layer(key)
        if i is None or key.endswith(("up_filter", "down_filter")):
            assert torch.equal(v, a.tensors[key]), key  # mapping, w_avg, fixed filters: low model
            continue
        if "switch" in kwargs and "blend_width" not in kwargs:
            t = float(i >= kwargs["switch"])
        elif "blend_width" in kwargs:
            t = 1 / (1 + math.exp(-(i - kwargs["switch"]) / kwargs["blend_width"]))
        else:
            t = 0.0 if i < 2 else 0.25 if i < 9 else 1.0
        if key.endswith(("freqs", "phases", "transform")):
            assert torch.equal(v, (b if t > 0.5 else a).tensors[key]), key  # copied whole
        else:
            torch.testing.assert_close(
                v.double(),
                (1 - t) * a.tensors[key].double() + t * b.tensors[key].double(),
                rtol=1e-6,
                atol=1e-6,
                msg=key,
            )
            checked += 1
    assert checked > 60


def test_blend_cli_and_refusals(tmp_path):
    pa, pb, a, b = _pair_of_models(tmp_path)
    base = ["blend-layers", "--low", str(pa), "--high", str(pb)]
    out = load(cli_ok(*base, "--switch", "0", "--mapping-from", "high", "-o", str(tmp_path / "o.st"))[0])
    z, c = torch.randn(2, 8), torch.eye(2)
    assert torch.equal(out.generator()(z, c), b.generator()(z, c))  # everything from --high
    for extra, words in (
        (["--switch", "15"], "no layer 15"),
        (["--pinkney", "8"], "--pinkney"),
        (["--switch", "3", "--switch-level", "1"], "--switch-level"),
        (["--alpha", "16:1"], "no layer 16"),
        (["--cluster-layer", "L3_36_8", "--cluster-map", str(tmp_path / "c.png")], "clusters"),
    ):
        assert words in cli_fails(*base, *extra, "-o", str(tmp_path / "x.st"))
    assert not (tmp_path / "x.st").exists() and not (tmp_path / "c.png").exists()


def test_average_mixes_layers_and_copies_fixed_buffers(tmp_path):
    pa, pb, a, b = _pair_of_models(tmp_path)
    b.tensors["G_ema.synthesis.input.freqs"] = a.tensors["G_ema.synthesis.input.freqs"] * 1.5
    pb = save(b, tmp_path / "b2.st")
    out = load(cli_ok("average", str(pa), str(pb), "-o", str(tmp_path / "avg.st"))[0])
    assert out.family == "stylegan3"
    key = "G_ema.synthesis.L3_36_8.weight"
    torch.testing.assert_close(out.tensors[key], (a.tensors[key] + b.tensors[key]) / 2)
    freqs = out.tensors["G_ema.synthesis.input.freqs"]
    assert torch.equal(freqs, a.tensors["G_ema.synthesis.input.freqs"]) or torch.equal(
        freqs, b.tensors["G_ema.synthesis.input.freqs"]
    )


def test_sefa_render_and_fid(tmp_path):
    pa, _, a, _ = _pair_of_models(tmp_path)
    directions = cli_ok("sefa", str(pa), "-o", str(tmp_path / "d.st"))[0]
    from gancraft.latent.files import load_directions

    d = load_directions(directions)
    # every layer's affine but the input's, stacked: the right singular vectors of that matrix
    G = a.generator()
    M = torch.cat([getattr(G.synthesis, s.name).affine.weight.double() for s in G.synthesis.specs])
    _, _, vh = torch.linalg.svd(M, full_matrices=False)
    assert torch.allclose(
        (d.directions.double() @ vh.t()).abs().diagonal(), torch.ones(8, dtype=torch.float64), atol=1e-5
    )
    by_rate = load_directions(cli_ok("sefa", str(pa), "--layers", "16-16", "-o", str(tmp_path / "e.st"))[0])
    assert by_rate.layers == [s.name for s in G.synthesis.specs if s.out_sampling_rate == 16]

    video = cli_ok(
        "render",
        str(pa),
        "--seeds",
        "0,1",
        "--frames",
        "3",
        "--domain",
        "0",
        "--direction",
        f"{directions}:0",
        "-o",
        str(tmp_path / "v.gif"),
    )
    assert Path(video[0]).stat().st_size > 0

    samples = cli_ok("sample", str(pa), "--seeds", "0-7", "--domain", "0", "-o", str(tmp_path / "s"))
    feats = tmp_path / "feat.pt"
    torch.jit.script(
        torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    ).save(str(feats))
    res = json.loads(
        " ".join(
            cli_ok(
                "fid",
                str(pa),
                str(Path(samples[0]).parent),
                "--domain",
                "0",
                "--n",
                "8",
                "--extractor",
                str(feats),
                "--same-seeds",
                "--json",
            )
        )
    )
    assert abs(res["fid"] if "fid" in res else res["rows"][0]["fid"]) < 1e-3
