"""gancraft's generator against NVIDIA's own stylegan2-ada-pytorch code, same weights, fp32.

NVIDIA's code is not shipped with gancraft: set GANCRAFT_NVIDIA_SRC to a folder holding its
training/networks_stylegan2.py, torch_utils/ and dnnlib/ (benchmarks/nvidia_reference/README.md).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gancraft.nets import Generator, GeneratorConfig

import nvidia_pairs
from conftest import NVIDIA_SRC, needs_nvidia

pytestmark = needs_nvidia

TOL = 1e-4


@pytest.fixture(scope="module")
def nv():
    return nvidia_pairs.load_nvidia(NVIDIA_SRC)


def tiny(**kw) -> GeneratorConfig:
    base = dict(img_resolution=16, channel_base=256, channel_max=32, z_dim=16, w_dim=16, mapping_layers=2)
    base.update(kw)
    return GeneratorConfig(**base)


@pytest.mark.parametrize("batch", [1, 3])
def test_unconditional_images_match(nv, batch):
    ref, ours = nvidia_pairs.make_pair(nv, tiny(img_resolution=32), seed=0)
    z = torch.randn([batch, 16], generator=torch.Generator().manual_seed(1))
    for mode in ("const", "none"):
        d = nvidia_pairs.max_abs_diff(ref, ours, z, None, noise_mode=mode)
        assert d["w"] <= TOL and d["image"] <= TOL, (mode, d)
        assert d["image_absmax"] > 0.1  # the comparison is not between two blank images


@pytest.mark.parametrize("batch", [1, 4])
def test_conditional_clamped_truncated_images_match(nv, batch):
    cfg = tiny(c_dim=3, conv_clamp=256)
    ref, ours = nvidia_pairs.make_pair(nv, cfg, seed=2)
    # push one layer past the clamp so that conv_clamp actually shapes the image
    with torch.no_grad():
        ref.synthesis.b8.conv1.bias += 400
        ours.synthesis.b8.conv1.bias += 400
    gen = torch.Generator().manual_seed(3)
    z = torch.randn([batch, 16], generator=gen)
    c = torch.nn.functional.one_hot(torch.arange(batch) % 3, 3).float()
    for psi, cutoff in ((0.7, None), (0.7, 2), (1.0, None)):
        d = nvidia_pairs.max_abs_diff(ref, ours, z, c, psi=psi, cutoff=cutoff)
        # values reach the clamp (hundreds), where one float32 ulp is already ~3e-5: compare relative to scale
        assert d["w"] <= TOL and d["image"] <= TOL * max(1.0, d["image_absmax"] / 10), (psi, cutoff, d)
    unclamped = Generator(dataclasses.replace(cfg, conv_clamp=None)).eval()
    unclamped.load_state_dict(ours.state_dict())
    with torch.no_grad():
        assert not torch.allclose(unclamped(z, c), ours(z, c), atol=1e-2)


def test_random_noise_mode_matches_with_same_seed(nv):
    ref, ours = nvidia_pairs.make_pair(nv, tiny(), seed=4)
    z = torch.randn([2, 16], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ws = ref.mapping(z, None)
        torch.manual_seed(6)
        a = ref.synthesis(ws, noise_mode="random")
        torch.manual_seed(6)
        b = ours.synthesis(ws, noise_mode="random")
    assert (a - b).abs().max().item() <= TOL


def test_portable_path_builds_no_cuda_plugin(nv):
    ref, _ = nvidia_pairs.make_pair(nv, tiny(), seed=7)
    with torch.no_grad():
        ref(torch.randn([1, 16]), None)
    assert not nvidia_pairs.plugins_built(nv)
