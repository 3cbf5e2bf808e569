"""gancraft.latent.sampling: what `gancraft sample` does, from Python, with errors that name values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gancraft import load
from gancraft.cli.common import naming_options
from gancraft.errors import GancraftError
from gancraft.latent.files import load_latents
from gancraft.latent.sampling import Placement, Synthesis, sample_images, style_mixing_grid

from conftest import cli_fails, cli_ok


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_library_writes_what_the_command_writes(ckpt, tmp_path):
    cli = cli_ok("sample", ckpt, "--seeds", "3,4", "--trunc", "0.6", "--batch", "1", "-o", tmp_path / "cli")
    written = sample_images(
        load(ckpt),
        seeds=[3, 4],
        out_dir=tmp_path / "api",
        latents_out=tmp_path / "l.npz",
        grid=tmp_path / "g.png",
        synthesis=Synthesis(psi=0.6, batch=1),
    )
    assert [p.name for p in written] == ["seed0003.png", "seed0004.png", "l.npz", "g.png"]
    for a, b in zip(cli, written):
        assert np.array_equal(pixels(a), pixels(b))
    assert load_latents(written[2]).batch == 1
    # replaying the stored w gives the same pixels again
    again = sample_images(load(ckpt), latents=load_latents(written[2]), out_dir=tmp_path / "again")
    assert np.array_equal(pixels(again[0]), pixels(written[0]))


def test_style_mixing_grid_returns_the_mixed_ws(ckpt, tmp_path):
    path, mixed = style_mixing_grid(load(ckpt), [1, 2], [3], tmp_path / "m.png", layers="0-2")
    assert mixed == [0, 1, 2] and pixels(path).shape == (48, 32, 3)  # 3 x 2 cells of 16 px


def test_library_errors_name_the_value_and_the_command_adds_the_option(ckpt, tmp_path):
    with pytest.raises(GancraftError) as caught:
        sample_images(load(ckpt), placement=Placement(rotate=10), out_dir=tmp_path / "x")
    assert caught.value.field == "placement" and "--" not in str(caught.value)
    with pytest.raises(GancraftError) as caught:
        sample_images(load(ckpt), prompts=["  "], out_dir=tmp_path / "x")
    assert caught.value.field == "prompts" and str(caught.value) == "expected non-empty text"
    line = cli_fails("sample", ckpt, "--rotate", "10", "-o", tmp_path / "x")
    assert "error: --translate/--rotate: moves a StyleGAN3 model's input grid;" in line
    line = cli_fails("sample", ckpt, "--prompt", " ", "-o", tmp_path / "x")
    assert line.endswith("error: --prompt: expected non-empty text")


def test_naming_options_prefixes_only_the_named_fields():
    with pytest.raises(GancraftError, match=r"^--trunc: too large$"):
        with naming_options(psi="--trunc"):
            raise GancraftError("too large", field="psi")
    with pytest.raises(GancraftError, match=r"^too small$"):
        with naming_options(psi="--trunc"):
            raise GancraftError("too small", field="batch")
    with pytest.raises(GancraftError, match=r"^no field$"):
        with naming_options(psi="--trunc"):
            raise GancraftError("no field")
