"""Mixed precision in the generator: NVIDIA's num_fp16_res blocks in float16 (or bfloat16), fp32 untouched.

The NVIDIA comparison runs when GANCRAFT_NVIDIA_SRC points at its code (see test_nvidia_reference.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gancraft import Checkpoint, save
from gancraft.errors import GancraftError
from gancraft.latent.generate import synthesize
from gancraft.nets import Generator, GeneratorConfig

import nvidia_pairs
from conftest import NVIDIA_SRC, cli_invoke, needs_nvidia

# channels 64/64/32/16 at 4/8/16/32 px; num_fp16_res=2 puts b16 and b32 in half precision
CFG = GeneratorConfig(
    img_resolution=32,
    channel_base=512,
    channel_max=64,
    z_dim=32,
    w_dim=32,
    mapping_layers=2,
    conv_clamp=256,
    num_fp16_res=2,
)
HALF_BLOCKS = {16, 32}

# Measured max |mixed - fp32| / max |fp32| over three weight seeds, batch 1 and 3, fused or not:
# 6.4e-4 to 1.5e-3 (one or two float16 ulps); bfloat16, with 8 mantissa bits to float16's 11:
# 5.8e-3 to 1.4e-2. Against NVIDIA's float16 blocks: 5.2e-4 to 1.9e-3. Limits leave about 3x room.
MIXED_REL_TOL = 5e-3
BF16_REL_TOL = 4e-2


def randomized(cfg: GeneratorConfig, seed: int = 0) -> Generator:
    """Every bias, noise strength and w_avg non-zero, so no term of a layer goes unchecked."""
    G = Generator(cfg).eval().requires_grad_(False)
    nvidia_pairs.randomize_(G, seed)
    return G


def latents(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.randn([batch, CFG.z_dim], generator=torch.Generator().manual_seed(seed))


def conv_dtypes(G: torch.nn.Module, run) -> dict[int, set[torch.dtype]]:
    """Output dtypes of every modulated conv and toRGB layer, by block resolution, during run()."""
    seen: dict[int, set[torch.dtype]] = {}
    hooks = []
    for block in G.synthesis.blocks():
        for layer in block.conv_layers() + [block.torgb]:
            hooks.append(
                layer.register_forward_hook(lambda m, i, o, r=block.resolution: seen.setdefault(r, set()).add(o.dtype))
            )
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return seen


def rel_diff(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a - ref).abs().max() / ref.abs().max()).item()


def test_fp32_is_the_default_and_ignores_num_fp16_res():
    G = randomized(CFG)
    plain = randomized(dataclasses.replace(CFG, num_fp16_res=0))
    z = latents(3)
    with torch.no_grad():
        out = G(z)
        assert torch.equal(out, G(z, precision="fp32"))
        # the same weights without fp16 blocks, and "mixed" where there are none: bit for bit
        assert torch.equal(out, plain(z))
        assert torch.equal(out, plain(z, precision="mixed"))
    assert set().union(*conv_dtypes(G, lambda: G(z)).values()) == {torch.float32}


@pytest.mark.parametrize("batch, fused", [(1, None), (3, None), (3, True)])
def test_mixed_runs_high_res_blocks_in_float16(batch, fused):
    G = randomized(CFG)
    z = latents(batch)
    with torch.no_grad():
        ref = G(z, fused=fused)
        out = None

        def run():
            nonlocal out
            out = G(z, fused=fused, precision="mixed")

        dtypes = conv_dtypes(G, run)
    assert dtypes == {r: {torch.float16} if r in HALF_BLOCKS else {torch.float32} for r in (4, 8, 16, 32)}
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert 0 < rel_diff(out, ref) <= MIXED_REL_TOL


def test_mixed_survives_styles_that_overflow_float16():
    """Styles in the thousands push un-normalised float16 convolutions past 65504 (inf, then NaN);
    NVIDIA's pre-normalisation keeps them finite and the image unchanged, demodulation cancelling it."""
    G = randomized(dataclasses.replace(CFG, conv_clamp=None))
    with torch.no_grad():
        G.synthesis.b32.conv0.affine.bias += 4000
        ref = G(latents(2))
        out = G(latents(2), precision="mixed")
    assert torch.isfinite(out).all()
    assert rel_diff(out, ref) <= MIXED_REL_TOL


def test_mixed_keeps_gradients_finite():
    G = randomized(CFG).requires_grad_(True)
    G(latents(2), precision="mixed").square().mean().backward()
    grad = G.synthesis.b32.conv1.weight.grad
    assert grad is not None and grad.dtype == torch.float32
    assert torch.isfinite(grad).all() and grad.abs().max() > 0


def test_bf16_uses_the_fp16_blocks_or_all_blocks():
    z = latents(3)
    for cfg, half in ((CFG, HALF_BLOCKS), (dataclasses.replace(CFG, num_fp16_res=0), {4, 8, 16, 32})):
        G = randomized(cfg)
        with torch.no_grad():
            ref = G(z)
            out = None

            def run():
                nonlocal out
                out = G(z, precision="bf16")

            dtypes = conv_dtypes(G, run)
        assert dtypes == {r: {torch.bfloat16} if r in half else {torch.float32} for r in (4, 8, 16, 32)}
        assert out.dtype == torch.float32
        assert 0 < rel_diff(out, ref) <= BF16_REL_TOL


def test_unknown_precision_is_refused():
    G = randomized(CFG)
    with pytest.raises(ValueError, match="fp16"):
        G(latents(1), precision="fp16")


# ---- library and command line ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def half_ckpt(tmp_path_factory) -> Path:
    """A tiny 16 px checkpoint whose 8 and 16 px blocks NVIDIA would run in float16."""
    cfg = dataclasses.replace(CFG, img_resolution=16, num_fp16_res=2)
    path = tmp_path_factory.mktemp("ck") / "half.st"
    save(Checkpoint.from_modules(G_ema=randomized(cfg, seed=4)), path)
    return path


def test_synthesize_threads_precision_and_refuses_unknown_values():
    G = randomized(CFG)
    ws = G.mapping(latents(2), None)
    ref = synthesize(G, ws)
    assert 0 < rel_diff(synthesize(G, ws, precision="bf16"), ref) <= BF16_REL_TOL
    with pytest.raises(GancraftError, match="--precision 'half'"):
        synthesize(G, ws, precision="half")


def png_pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)).astype(int) for p in sorted(folder.glob("*.png"))}


def close_but_not_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys() and len(a) > 0
    diffs = np.stack([np.abs(a[k] - b[k]) for k in a])
    # measured: at most 4 uint8 levels, 0.5 on average; bfloat16 keeps ~3 significant digits
    assert diffs.max() <= 8 and diffs.mean() < 1 and diffs.max() > 0


def test_sample_cli_with_bf16_writes_near_fp32_images(half_ckpt, tmp_path):
    for precision in ("fp32", "bf16"):
        result = cli_invoke(
            "sample", half_ckpt, "--seeds", "0-3", "--batch", "2", "--precision", precision, "-o", tmp_path / precision
        )
        assert result.exit_code == 0, result.output
    assert len(result.stdout.split()) == 4
    close_but_not_equal(png_pixels(tmp_path / "bf16"), png_pixels(tmp_path / "fp32"))


def test_render_cli_with_bf16_writes_near_fp32_frames(half_ckpt, tmp_path):
    for precision in ("fp32", "bf16"):
        result = cli_invoke(
            "render", half_ckpt, "--seeds", "1,2", "--frames", "4", "--precision", precision, "-o", tmp_path / precision
        )
        assert result.exit_code == 0, result.output
    close_but_not_equal(png_pixels(tmp_path / "bf16"), png_pixels(tmp_path / "fp32"))


# ---- against NVIDIA's own float16 blocks ---------------------------------------------------------


@needs_nvidia
@pytest.mark.parametrize(
    "batch, fused, clamped", [(1, True, False), (3, False, False), (3, True, True), (3, False, True)]
)
def test_mixed_matches_nvidia_float16_blocks(monkeypatch, batch, fused, clamped):
    nv = nvidia_pairs.load_nvidia(NVIDIA_SRC)
    # NVIDIA's SynthesisBlock forces float32 off CUDA: lift that one condition for this test
    monkeypatch.setattr(
        nv["networks"].SynthesisBlock, "forward", nvidia_pairs.nvidia_forward_with_fp16_off_cuda(nv["networks"])
    )
    ref, ours = nvidia_pairs.make_pair(nv, CFG, seed=0)
    if clamped:
        # drive a float16 layer into conv_clamp, so that the clamp shapes the image
        with torch.no_grad():
            for G in (ref, ours):
                G.synthesis.b16.conv1.bias += 400
    seen: list[torch.dtype] = []
    hook = ref.synthesis.b32.conv1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    z = latents(batch, seed=3)
    with torch.no_grad():
        ws = ref.mapping(z, None)
        expected = ref.synthesis(ws, noise_mode="const", fused_modconv=fused)
        out = ours.synthesis(ws, noise_mode="const", fused=fused, precision="mixed")
    hook.remove()
    assert seen == [torch.float16]  # NVIDIA's block really ran in float16
    assert expected.dtype == out.dtype == torch.float32
    assert expected.abs().max() > (CFG.conv_clamp if clamped else 1)
    # both sides round to float16 at slightly different points (NVIDIA adds noise, bias and gain
    # in separate steps), so they agree to float16 precision at the image's scale, not bit for bit
    assert rel_diff(out, expected) <= MIXED_REL_TOL
