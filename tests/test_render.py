"""gancraft render: frame counts and sizes read back, traversal and morph end frames, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gancraft import load
from gancraft.errors import GancraftError
from gancraft.latent.sampling import Synthesis
from gancraft.latent.sefa import save_directions
from gancraft.latent.video import render_video
from gancraft.media.video import read_video_info

from conftest import cli_fails, cli_invoke, cli_ok


def ok(*args) -> list[str]:
    return cli_ok("render", *args)


def fails(*args) -> str:
    return cli_fails("render", *args)


def frame(folder, i) -> np.ndarray:
    return np.asarray(Image.open(folder / f"frame{i:05d}.png")).astype(int)


def test_mp4_has_requested_frames_and_size(ckpt, tmp_path):
    out = tmp_path / "walk.mp4"
    assert ok(ckpt, "--seeds", "1,2,3", "--frames", "9", "--fps", "12", "-o", out) == [str(out)]
    assert read_video_info(out) == (9, 16, 16)


def test_grid_video_of_several_cells(ckpt, tmp_path):
    out = tmp_path / "grid.mp4"
    ok(ckpt, "--seeds", "1,2", "--seeds", "3,4", "--seeds", "5,6", "--space", "w", "--loop", "--frames", "6", "-o", out)
    assert read_video_info(out) == (6, 32, 32)  # 3 cells on a 2 x 2 grid
    ok(ckpt, "--seeds", "1,2", "--seeds", "3,4", "--cols", "2", "--frames", "4", "-o", tmp_path / "row.gif")
    assert read_video_info(tmp_path / "row.gif") == (4, 32, 16)


def test_interpolation_ends_on_the_keyframe_images(ckpt, tmp_path):
    ok(ckpt, "--seeds", "4,9", "--frames", "5", "--batch", "1", "-o", tmp_path / "frames")
    assert read_video_info(tmp_path / "frames") == (5, 16, 16)
    cli_invoke("sample", ckpt, "--seeds", "4,9", "--batch", "1", "-o", tmp_path / "s")
    for i, seed in ((0, 4), (4, 9)):
        still = np.asarray(Image.open(tmp_path / "s" / f"seed{seed:04d}.png")).astype(int)
        assert np.abs(frame(tmp_path / "frames", i) - still).max() <= 1
    assert np.abs(frame(tmp_path / "frames", 2) - frame(tmp_path / "frames", 0)).max() > 0


def test_direction_traversal_passes_through_the_unedited_image(ckpt, tmp_path):
    dirs = save_directions(tmp_path / "d.st", torch.eye(32)[:2], {})
    ok(ckpt, "--direction", f"{dirs}:1", "--range", "-4:4", "--seeds", "7", "--frames", "3", "-o", tmp_path / "t")
    cli_invoke("sample", ckpt, "--seeds", "7", "-o", tmp_path / "s")
    still = np.asarray(Image.open(tmp_path / "s" / "seed0007.png")).astype(int)
    assert np.abs(frame(tmp_path / "t", 1) - still).max() <= 1
    assert np.abs(frame(tmp_path / "t", 0) - still).max() > 1


def test_domain_morph_starts_and_ends_in_the_domains(union, tmp_path):
    ok(union, "--domains", "cat,dog", "--seeds", "3,5", "--frames", "4", "-o", tmp_path / "m")
    assert read_video_info(tmp_path / "m") == (4, 32, 16)
    cli_invoke("sample", union, "--seeds", "3,5", "-o", tmp_path / "s")
    for i, name in ((0, "cat"), (3, "dog")):
        cells = [np.asarray(Image.open(tmp_path / "s" / name / f"seed{s:04d}.png")).astype(int) for s in (3, 5)]
        assert np.abs(frame(tmp_path / "m", i) - np.concatenate(cells, axis=1)).max() <= 1


def test_bad_inputs_exit_2_with_one_line(ckpt, union, tmp_path):
    assert "'fox'" in fails(union, "--domains", "cat,fox", "-o", tmp_path / "a.mp4")
    assert "'fox'" in fails(union, "--domain", "fox", "-o", tmp_path / "a.mp4")
    assert "at least two seeds" in fails(ckpt, "--seeds", "3", "-o", tmp_path / "a.mp4")
    assert "ends before" in fails(ckpt, "--seeds", "3-1", "-o", tmp_path / "a.mp4")
    assert "LO:HI" in fails(ckpt, "--direction", "x.st:0", "--range", "3", "-o", tmp_path / "a.mp4")
    assert "unsupported video extension" in fails(ckpt, "-o", tmp_path / "a.avi")
    assert "does not exist" in fails(ckpt, "-o", tmp_path / "no" / "a.mp4")
    assert "at least two domains" in fails(union, "--domains", "cat", "-o", tmp_path / "a.mp4")
    (tmp_path / "taken.mp4").write_bytes(b"")
    assert "already exists" in fails(ckpt, "-o", tmp_path / "taken.mp4")
    assert not (tmp_path / "a.mp4").exists()


def test_library_writes_what_the_command_writes(union, tmp_path):
    """Two cells walking in the union model's dog domain, as the command and as render_video."""
    cli = ok(
        union,
        "--seeds",
        "1,2",
        "--seeds",
        "3,4",
        "--domain",
        "dog",
        "--frames",
        "3",
        "--trunc",
        "0.7",
        "-o",
        tmp_path / "c",
    )
    api = render_video(
        load(union), tmp_path / "a", seeds=[[1, 2], [3, 4]], domain="dog", frames=3, synthesis=Synthesis(psi=0.7)
    )
    assert cli == [str(tmp_path / "c")] and api == tmp_path / "a"
    for i in range(3):
        assert np.array_equal(frame(api, i), frame(tmp_path / "c", i))


def test_library_errors_name_the_value_and_the_command_adds_the_option(union, tmp_path):
    with pytest.raises(GancraftError) as caught:
        render_video(load(union), tmp_path / "a.mp4", domain="cat,dog")
    assert caught.value.field == "domain" and "--" not in str(caught.value)
    line = fails(union, "--domain", "cat,dog", "-o", tmp_path / "a.mp4")
    assert line.endswith("error: --domain: give one domain here, not 'cat,dog'; a morph runs through several"), line
    assert not (tmp_path / "a.mp4").exists()
