"""gancraft sample: naming, determinism, latent round trip, edits, domains, mixing and bad inputs."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from gancraft.latent.files import load_latents
from gancraft.latent.sefa import save_directions

from conftest import cli_fails, cli_invoke, cli_ok


def run(*args):
    return cli_invoke("sample", *args)


def ok(*args) -> list[str]:
    return cli_ok("sample", *args)


def fails(*args) -> str:
    return cli_fails("sample", *args)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_names_paths_grid_and_latents(ckpt, tmp_path):
    out = tmp_path / "out"
    printed = ok(
        ckpt,
        "--seeds",
        "3,10-12",
        "--batch",
        "3",
        "-o",
        out,
        "--grid",
        tmp_path / "g.png",
        "--latents",
        tmp_path / "l.npz",
        "--trunc",
        "0.7",
    )
    names = [f"seed{s:04d}.png" for s in (3, 10, 11, 12)]
    assert printed == [str(out / n) for n in names] + [str(tmp_path / "l.npz"), str(tmp_path / "g.png")]
    assert sorted(p.name for p in out.iterdir()) == names
    assert pixels(tmp_path / "g.png").shape == (32, 32, 3)  # 4 images, 2 x 2 of 16 px
    lat = load_latents(tmp_path / "l.npz")
    assert lat.seeds.tolist() == [3, 10, 11, 12] and lat.batch == 3 and lat.w.dtype == np.float32
    assert lat.w.shape == (4, 6, 32) and lat.z.shape == (4, 32)
    assert np.array_equal(lat.z[0], np.random.RandomState(3).randn(32).astype(np.float32))


def test_from_latents_reproduces_pixels_exactly(ckpt, tmp_path):
    ok(ckpt, "--seeds", "0-4", "--batch", "2", "--trunc", "0.5", "-o", tmp_path / "a", "--latents", tmp_path / "l.npz")
    ok(ckpt, "--from-latents", tmp_path / "l.npz", "-o", tmp_path / "b")
    for s in range(5):
        assert np.array_equal(pixels(tmp_path / "a" / f"seed{s:04d}.png"), pixels(tmp_path / "b" / f"seed{s:04d}.png"))


def test_deterministic_and_batch_size_independent(ckpt, tmp_path):
    ok(ckpt, "--seeds", "0-7", "--batch", "8", "-o", tmp_path / "b8")
    ok(ckpt, "--seeds", "0-7", "--batch", "8", "-o", tmp_path / "again")
    ok(ckpt, "--seeds", "0-7", "--batch", "1", "-o", tmp_path / "b1")
    for s in range(8):
        name = f"seed{s:04d}.png"
        assert np.array_equal(pixels(tmp_path / "b8" / name), pixels(tmp_path / "again" / name))
        diff = np.abs(pixels(tmp_path / "b8" / name).astype(int) - pixels(tmp_path / "b1" / name).astype(int))
        assert diff.max() <= 1  # float agreement ~1e-5; see gancraft.latent.generate


def test_edit_alpha_zero_changes_nothing_and_nonzero_does(ckpt, tmp_path):
    dirs = save_directions(tmp_path / "d.st", torch.eye(32)[:4], {"names": ["a", "b", "c", "d"]})
    ok(ckpt, "--seeds", "1,2", "-o", tmp_path / "plain")
    ok(ckpt, "--seeds", "1,2", "-o", tmp_path / "zero", "--edit", f"{dirs}:2:0")
    ok(ckpt, "--seeds", "1,2", "-o", tmp_path / "moved", "--edit", f"{dirs}:b:-8")
    for name in ("seed0001.png", "seed0002.png"):
        assert np.array_equal(pixels(tmp_path / "plain" / name), pixels(tmp_path / "zero" / name))
        assert not np.array_equal(pixels(tmp_path / "plain" / name), pixels(tmp_path / "moved" / name))


def test_multi_domain_folders_and_grid_rows(union, tmp_path):
    printed = ok(union, "--seeds", "0-2", "-o", tmp_path / "o", "--grid", tmp_path / "g.png")
    assert printed[:6] == [str(tmp_path / "o" / d / f"seed{s:04d}.png") for d in ("cat", "dog") for s in range(3)]
    assert pixels(tmp_path / "g.png").shape == (32, 48, 3)  # one row per domain, 3 seeds each
    assert not np.array_equal(
        pixels(tmp_path / "o" / "cat" / "seed0000.png"), pixels(tmp_path / "o" / "dog" / "seed0000.png")
    )
    ok(union, "--class", "dog", "--seeds", "0", "-o", tmp_path / "one")
    assert np.array_equal(
        pixels(tmp_path / "one" / "dog" / "seed0000.png"), pixels(tmp_path / "o" / "dog" / "seed0000.png")
    )
    ok(union, "--seeds", "0-2", "--latents", tmp_path / "u.npz", "--batch", "2")
    assert load_latents(tmp_path / "u.npz").domains == ["cat"] * 3 + ["dog"] * 3
    ok(union, "--from-latents", tmp_path / "u.npz", "-o", tmp_path / "re")
    assert np.array_equal(
        pixels(tmp_path / "re" / "dog" / "seed0002.png"), pixels(tmp_path / "o" / "dog" / "seed0002.png")
    )


def test_style_mixing_grid(ckpt, tmp_path):
    printed = ok(ckpt, "--mix-rows", "1,2", "--mix-cols", "3,4,5", "--mix-layers", "0-3", "-o", tmp_path / "m.png")
    assert printed == [str(tmp_path / "m.png")]
    assert pixels(tmp_path / "m.png").shape == (48, 64, 3)


def test_bad_inputs_exit_2_with_one_line(ckpt, union, tmp_path):
    assert "'fox'" in fails(union, "--domain", "fox", "-o", tmp_path / "x")
    assert "ends before it starts" in fails(ckpt, "--seeds", "5-1", "-o", tmp_path / "x")
    assert "not a non-negative integer" in fails(ckpt, "--seeds", "1,x", "-o", tmp_path / "x")
    (tmp_path / "file").write_text("a file")
    assert "file" in fails(ckpt, "--seeds", "0", "-o", tmp_path / "file" / "sub")
    assert "is a file" in fails(ckpt, "--seeds", "0", "-o", tmp_path / "file")
    ok(ckpt, "--seeds", "0", "-o", tmp_path / "done")
    assert "already exists" in fails(ckpt, "--seeds", "0", "-o", tmp_path / "done")
    assert "FILE:INDEX:ALPHA" in fails(ckpt, "--seeds", "0", "-o", tmp_path / "y", "--edit", "nofile")
    assert "does not exist" in fails(ckpt, "--from-latents", tmp_path / "none.npz", "-o", tmp_path / "y")
    assert "one domain" in fails(union, "--mix-rows", "1", "--mix-cols", "2", "-o", tmp_path / "m.png")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
