"""FID resize conventions: clean-fid's own resize functions, TF1's bilinear rule, and the refusal
to compare statistics made under different conventions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cleanfid.resize import build_resizer

from gancraft.errors import GancraftError
from gancraft.metrics.fid import FeatureStats, save_stats
from gancraft.metrics.resize import CONVENTIONS, DEFAULT_CONVENTION, get_convention, tf1_bilinear

from conftest import cli_fails, cli_invoke

SIZES = [(64, 48), (512, 400), (299, 299), (17, 300)]


def _uint8_images(seed: int, h: int, w: int, n: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _ours(name: str, images: np.ndarray) -> np.ndarray:
    # the way images reach a convention in gancraft: [0, 1] floats from 8 bits, scaled back to 255
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return CONVENTIONS[name].resize(x * 255.0).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("name", ["clean", "legacy_pytorch"])
@pytest.mark.parametrize("h, w", SIZES)
def test_resizes_equal_clean_fids_own(name, h, w):
    images = _uint8_images(h * w, h, w)
    theirs = np.stack([build_resizer(name)(im) for im in images])
    ours = _ours(name, images)
    assert ours.shape == theirs.shape == (2, 299, 299, 3) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


def _tf1_reference(img: np.ndarray, out: int = 299) -> np.ndarray:
    """TensorFlow 1's resize_bilinear(align_corners=False) from its definition, per axis in float64:
    output j samples input j * in / out, neighbours clamped to the last pixel."""

    def axis_weights(n_in: int) -> np.ndarray:
        src = np.arange(out) * (n_in / out)
        lo = np.floor(src).astype(int)
        frac = src - lo
        m = np.zeros((out, n_in))
        m[np.arange(out), np.minimum(lo, n_in - 1)] += 1 - frac
        m[np.arange(out), np.minimum(lo + 1, n_in - 1)] += frac
        return m

    rows, cols = axis_weights(img.shape[0]), axis_weights(img.shape[1])
    return np.stack([rows @ img[:, :, c].astype(np.float64) @ cols.T for c in range(img.shape[2])], axis=-1)


@pytest.mark.parametrize("h, w", SIZES)
def test_legacy_tensorflow_is_tf1_bilinear(h, w):
    images = _uint8_images(h + w, h, w, n=1)
    ours = _ours("legacy_tensorflow", images)[0]
    # grid_sample's float32 coordinates cost a few thousandths of a level out of 255
    np.testing.assert_allclose(ours, _tf1_reference(images[0]), atol=2e-2)


def test_input_ranges():
    x = torch.tensor([0.0, 127.5, 128.0, 255.0]).reshape(1, 1, 2, 2).expand(1, 3, 2, 2)
    for name in ("clean", "legacy_tensorflow"):
        assert torch.allclose(
            CONVENTIONS[name].to_input_range(x)[0, 0].flatten(), torch.tensor([-1.0, -0.00390625, 0.0, 0.9921875])
        )
    assert torch.allclose(
        CONVENTIONS["legacy_pytorch"].to_input_range(x)[0, 0].flatten(),
        torch.tensor([-1.0, 0.0, 1 / 255, 1.0]),
        atol=1e-6,
    )
    assert get_convention(DEFAULT_CONVENTION) is CONVENTIONS["legacy_tensorflow"]
    with pytest.raises(GancraftError, match="clean, legacy_tensorflow, legacy_pytorch"):
        get_convention("bilinear")


def test_tf1_bilinear_keeps_299_and_its_batch():
    x = torch.rand(3, 3, 299, 299) * 255
    # grid_sample's float32 coordinates move pixels by up to ~0.01 of 255, in NVIDIA's network too
    torch.testing.assert_close(tf1_bilinear(x), x, rtol=0, atol=2e-2)
    big = torch.rand(3, 3, 40, 50) * 255
    torch.testing.assert_close(tf1_bilinear(big)[1:2], tf1_bilinear(big[1:2]))


def _stats(path, resize: str):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(8, 4))
    save_stats(
        path,
        FeatureStats(
            feats.mean(0), np.cov(feats, rowvar=False), n=8, extractor="inception-v3-fid-pool3", resize=resize
        ),
    )
    return path


def test_fid_refuses_statistics_of_two_conventions(tmp_path):
    a = _stats(tmp_path / "a.npz", "clean")
    b = _stats(tmp_path / "b.npz", "legacy_tensorflow")
    message = cli_fails("fid", a, b)
    assert "resize 'clean'" in message and "'legacy_tensorflow'" in message
    same = cli_invoke("fid", a, _stats(tmp_path / "c.npz", "clean"), "--json")
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout)["resize"] == "clean"


def test_fid_folder_takes_the_convention_of_the_statistics_side(tmp_path):
    from PIL import Image

    from gancraft.metrics.weights import _inception_template

    weights = tmp_path / "random-inception.pth"
    torch.manual_seed(0)
    torch.save(_inception_template(), weights)  # the keys of pytorch-fid's file, random values
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(_uint8_images(5, 24, 24, n=3)):
        Image.fromarray(im).save(folder / f"{i}.png")
    ref = tmp_path / "ref.npz"
    res = cli_invoke("fid", "stats", folder, "-o", ref, "--weights", weights, "--resize", "clean")
    assert res.exit_code == 0 and "resize: clean" in res.stderr, res.output
    assert str(np.load(ref)["resize"]) == "clean"
    # another --resize than the file's is refused before any image is read
    message = cli_fails("fid", folder, ref, "--weights", weights, "--resize", "legacy_pytorch")
    assert "resize 'clean'" in message and "'legacy_pytorch'" in message
    # without --resize the images follow the file's convention
    res = cli_invoke("fid", folder, ref, "--weights", weights)
    assert res.exit_code == 0, res.output
    assert "resize: clean (PIL bicubic" in res.stdout and float(res.stdout.split()[5]) < 1e-6


def test_resize_is_for_the_inception_only(tmp_path):
    from gancraft.metrics.features import load_extractor

    with pytest.raises(GancraftError, match="--resize applies to the inception extractor only"):
        load_extractor("clip", resize="clean")
