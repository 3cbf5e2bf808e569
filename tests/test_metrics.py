"""FID/KID maths against independent references, statistics files, extractors and image feeding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image

from gancraft.errors import GancraftError
from gancraft.media.images import to_uint8
from gancraft.metrics import (
    ClipExtractor,
    FeatureStats,
    InceptionExtractor,
    RunningStats,
    TorchScriptExtractor,
    features_from_batches,
    features_from_folder,
    fid_from_stats,
    frechet_distance,
    iter_folder_batches,
    kernel_inception_distance,
    load_extractor,
    load_stats,
    mmd2_unbiased,
    save_stats,
    stats_from_features,
)
from gancraft.metrics.features import INCEPTION_WEIGHTS_FILE
from gancraft.metrics.inference import fold_batchnorm

from conftest import cli_invoke


def scipy_fd(mu1, s1, mu2, s2):
    """Reference: the textbook formula with scipy's general matrix square root."""
    root = scipy.linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(root).real)


def gaussian_stats(rng, n, d, scale=1.0, shift=0.0):
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d) * scale + shift
    return x.mean(0), np.cov(x, rowvar=False)


# ---------------------------------------------------------------- Fréchet distance


@pytest.mark.parametrize("n,d", [(400, 32), (300, 96)])
def test_fd_matches_scipy_full_rank(n, d):
    rng = np.random.default_rng(n + d)
    m1, s1 = gaussian_stats(rng, n, d)
    m2, s2 = gaussian_stats(rng, n, d, scale=1.3, shift=0.2)
    ours = frechet_distance(m1, s1, m2, s2)
    ref = scipy_fd(m1, s1, m2, s2)
    assert ours > 1.0
    assert ours == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("n1,n2,d", [(20, 30, 64), (10, 10, 100), (50, 200, 128)])
def test_fd_matches_scipy_rank_deficient(n1, n2, d):
    # Fewer samples than dimensions: singular covariances, the case that breaks naive code.
    rng = np.random.default_rng(n1 * n2 + d)
    m1, s1 = gaussian_stats(rng, n1, d)
    m2, s2 = gaussian_stats(rng, n2, d, scale=0.8, shift=0.1)
    assert np.linalg.matrix_rank(s1) < d
    ours = frechet_distance(m1, s1, m2, s2)
    assert np.isfinite(ours)
    assert ours == pytest.approx(scipy_fd(m1, s1, m2, s2), rel=1e-6)


def test_fd_matches_pytorch_fid_on_near_singular_covariance():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(7)
    d = 48
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    # Eigenvalues spanning twelve orders of magnitude, the last ones at round-off level.
    spectrum = np.logspace(1, -11, d)
    s1 = (basis * spectrum) @ basis.T
    s2 = (basis * spectrum[::-1] * 0.5) @ basis.T + 1e-3 * np.eye(d)
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    ours = frechet_distance(m1, s1, m2, s2)
    assert ours == pytest.approx(scipy_fd(m1, s1, m2, s2), rel=1e-6)
    assert ours == pytest.approx(calculate_frechet_distance(m1, s1, m2, s2), rel=1e-6)


def test_fd_of_identical_stats_is_zero_even_when_singular():
    rng = np.random.default_rng(3)
    for n, d in [(500, 16), (12, 64)]:
        m, s = gaussian_stats(rng, n, d, shift=5.0)
        assert abs(frechet_distance(m, s, m, s)) < 1e-6


def test_fd_mean_term_and_shape_errors():
    d = 5
    eye = np.eye(d)
    m1, m2 = np.zeros(d), np.arange(d, dtype=float)
    assert frechet_distance(m1, eye, m2, eye) == pytest.approx(float(m2 @ m2), abs=1e-9)
    # Isotropic covariances: Tr(a I + b I - 2 sqrt(ab) I) = d (sqrt a - sqrt b)^2.
    assert frechet_distance(m1, 4 * eye, m1, 9 * eye) == pytest.approx(d * 1.0, rel=1e-12)
    with pytest.raises(GancraftError, match="do not match"):
        frechet_distance(m1, eye, np.zeros(d + 1), np.eye(d + 1))


# ---------------------------------------------------------------- running statistics


def test_running_stats_matches_numpy_over_uneven_batches():
    rng = np.random.default_rng(0)
    # A large common offset is where sum-of-squares accumulation loses the covariance.
    x = rng.normal(size=(203, 12)) * 0.01 + 1e4
    acc = RunningStats()
    for start, stop in [(0, 1), (1, 50), (50, 51), (51, 160), (160, 203)]:
        acc.update(torch.from_numpy(x[start:stop]) if start % 2 else x[start:stop])
    assert acc.n == 203
    np.testing.assert_allclose(acc.mean, x.mean(0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(acc.covariance(), np.cov(x, rowvar=False), rtol=1e-7, atol=1e-12)


def test_running_stats_merge_equals_single_pass_and_keeps_features():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 6))
    left, right, whole = RunningStats(keep_features=True), RunningStats(keep_features=True), RunningStats()
    left.update(x[:40])
    right.update(x[40:70])
    right.update(x[70:])
    left.merge(right)
    whole.update(x)
    np.testing.assert_allclose(left.covariance(), whole.covariance(), rtol=1e-12)
    stats = left.to_stats("ex", "rz")
    np.testing.assert_array_equal(stats.features, x.astype(np.float32))
    assert (stats.n, stats.extractor, stats.resize) == (90, "ex", "rz")


def test_running_stats_rejects_bad_batches():
    acc = RunningStats()
    acc.update(np.zeros((3, 4)))
    with pytest.raises(GancraftError, match="4"):
        acc.update(np.zeros((3, 5)))
    with pytest.raises(GancraftError, match="NaN"):
        acc.update(np.full((2, 4), np.nan))
    with pytest.raises(GancraftError, match="no features"):
        RunningStats().to_stats()


# ---------------------------------------------------------------- statistics files


def test_stats_round_trip_with_metadata_and_features(tmp_path):
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(30, 8)).astype(np.float32)
    stats = stats_from_features(
        [feats[:10], feats[10:]], extractor="torchscript:sha256=ab", resize="none", keep_features=True
    )
    path = save_stats(tmp_path / "ref.npz", stats)
    back = load_stats(path)
    np.testing.assert_array_equal(back.mu, stats.mu)
    np.testing.assert_array_equal(back.sigma, stats.sigma)
    np.testing.assert_array_equal(back.features, feats)
    assert (back.n, back.extractor, back.resize) == (30, "torchscript:sha256=ab", "none")
    # The written file is what pytorch-fid expects: mu and sigma readable without pickle.
    with np.load(path, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["mu"], stats.mu)
    with pytest.raises(GancraftError, match="already exists"):
        save_stats(path, stats)
    save_stats(path, stats, force=True)


def test_reads_plain_mu_sigma_files(tmp_path):
    rng = np.random.default_rng(4)
    m, s = gaussian_stats(rng, 100, 10)
    # pytorch-fid writes savez_compressed, clean-fid plain savez; float32 in some versions.
    np.savez_compressed(tmp_path / "pf.npz", mu=m, sigma=s)
    np.savez(tmp_path / "cf.npz", mu=m.astype(np.float32), sigma=s.astype(np.float32))
    a, b = load_stats(tmp_path / "pf.npz"), load_stats(tmp_path / "cf.npz")
    assert a.extractor is None and a.resize is None and a.n is None and a.features is None
    np.testing.assert_allclose(b.sigma, s, rtol=1e-6)
    tagged = FeatureStats(mu=m, sigma=s, extractor="inception-v3-fid-pool3", resize="x")
    assert fid_from_stats(a, tagged) < 1e-6  # unknown metadata does not block a comparison


def test_bad_stats_files_name_the_file(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    np.savez(tmp_path / "nosigma.npz", mu=np.zeros(3))
    np.savez(tmp_path / "shape.npz", mu=np.zeros(3), sigma=np.eye(4))
    for name, pattern in [
        ("notes.npz", "cannot read"),
        ("nosigma.npz", "missing sigma"),
        ("shape.npz", "shape"),
        ("absent.npz", "not found"),
    ]:
        with pytest.raises(GancraftError, match=pattern) as info:
            load_stats(tmp_path / name)
        assert name in str(info.value)


def test_incomparable_stats_are_refused():
    eye = np.eye(3)
    a = FeatureStats(np.zeros(3), eye, extractor="inception-v3-fid-pool3", resize="pytorch-fid")
    b = FeatureStats(np.zeros(3), eye, extractor="inception-v3-fid-pool3", resize="clean-fid")
    with pytest.raises(GancraftError, match="resize"):
        fid_from_stats(a, b, "gen", "ref.npz")
    with pytest.raises(GancraftError, match="dimensional"):
        fid_from_stats(a, FeatureStats(np.zeros(4), np.eye(4)))


# ---------------------------------------------------------------- KID


def direct_mmd2(x, y):
    """The unbiased estimator written out pair by pair."""

    def k(a, b):
        return (np.dot(a, b) / len(a) + 1.0) ** 3

    m = len(x)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_mmd2_matches_direct_formula():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(9, 4)) + 0.3
    assert mmd2_unbiased(x, y) == pytest.approx(direct_mmd2(x, y), rel=1e-12)


def test_kid_subsets_match_direct_formula():
    rng = np.random.default_rng(6)
    f1, f2 = rng.normal(size=(14, 5)), rng.normal(size=(11, 5)) * 1.5
    # One subset as large as the smaller set: MMD is order-free, so this is the full estimate.
    mean, std = kernel_inception_distance(f1[:11], f2, num_subsets=1, max_subset_size=100)
    assert mean == pytest.approx(direct_mmd2(f1[:11], f2), rel=1e-12) and std == 0.0
    mean, std = kernel_inception_distance(f1, f2, num_subsets=4, max_subset_size=6, seed=3)
    draws = np.random.default_rng(3)
    values = []
    for _ in range(4):
        i = draws.choice(14, 6, replace=False)
        j = draws.choice(11, 6, replace=False)
        values.append(direct_mmd2(f1[i], f2[j]))
    assert mean == pytest.approx(np.mean(values), rel=1e-12)
    assert std == pytest.approx(np.std(values), rel=1e-9)


def test_kid_separates_distributions_and_rejects_tiny_sets():
    rng = np.random.default_rng(8)
    a, b, c = rng.normal(size=(300, 16)), rng.normal(size=(300, 16)), rng.normal(size=(300, 16)) + 1.0
    same, _ = kernel_inception_distance(a, b, num_subsets=20, max_subset_size=100)
    far, _ = kernel_inception_distance(a, c, num_subsets=20, max_subset_size=100)
    assert abs(same) < 0.05 < far
    with pytest.raises(GancraftError, match="at least 2"):
        kernel_inception_distance(a[:1], b)


# ---------------------------------------------------------------- TorchScript extractor and folders


class _TinyFeatures(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x))
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)


class _WrongShape(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


@pytest.fixture
def scripted(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny_features.pt"
    torch.jit.script(_TinyFeatures()).save(str(path))
    return path


def write_images(folder, images_uint8):
    folder.mkdir()
    for i, img in enumerate(images_uint8):
        Image.fromarray(img).save(folder / f"seed{i:04d}.png")
    return folder


def test_folder_against_itself_is_zero_and_differs_from_another(tmp_path, scripted):
    rng = np.random.default_rng(9)
    a = write_images(tmp_path / "a", rng.integers(0, 256, size=(23, 16, 16, 3), dtype=np.uint8))
    b = write_images(tmp_path / "b", (rng.random(size=(23, 16, 16, 3)) ** 3 * 255).astype(np.uint8))
    ex = TorchScriptExtractor(scripted, device="cpu")
    sa = stats_from_features(features_from_folder(a, ex, batch=5), ex.name, ex.resize)
    sa2 = stats_from_features(features_from_folder(a, ex, batch=7), ex.name, ex.resize)
    sb = stats_from_features(features_from_folder(b, ex, batch=5), ex.name, ex.resize)
    assert sa.n == 23 and sa.dim == 12
    assert abs(fid_from_stats(sa, sa2)) < 1e-6
    assert fid_from_stats(sa, sb) > 1e-3


def test_generated_batches_score_like_their_saved_pngs(tmp_path, scripted):
    torch.manual_seed(1)
    gen = [torch.rand(4, 3, 16, 16) * 2.2 - 1.1 for _ in range(3)]  # a little out of range, like a GAN
    ex = TorchScriptExtractor(scripted, device="cpu")
    direct = torch.cat(list(features_from_batches(gen, ex)))
    pngs = [to_uint8(g) for g in gen]
    folder = write_images(tmp_path / "gen", np.concatenate(pngs))
    from_folder = torch.cat(list(features_from_folder(folder, ex, batch=5)))
    torch.testing.assert_close(direct, from_folder, rtol=0, atol=1e-6)


def test_folder_batches_split_on_size_change_and_errors(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, size in enumerate([8, 8, 8, 12, 12]):
        Image.fromarray(np.full((size, size), i * 40, dtype=np.uint8), mode="L").save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    shapes = [tuple(b.shape) for b in iter_folder_batches(folder, batch=2)]
    assert shapes == [(2, 3, 8, 8), (1, 3, 8, 8), (2, 3, 12, 12)]
    first = next(iter_folder_batches(folder, batch=1))
    assert first.dtype == torch.float32 and float(first.max()) == 0.0
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    with pytest.raises(GancraftError, match="no images.*cat"):
        list(iter_folder_batches(empty))
    (folder / "9.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(GancraftError, match="9.png"):
        list(iter_folder_batches(folder))


def test_torchscript_errors_name_the_file(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(GancraftError, match="junk.pt"):
        TorchScriptExtractor(junk, device="cpu")
    wrong = tmp_path / "wrong.pt"
    torch.jit.script(_WrongShape()).save(str(wrong))
    ex = TorchScriptExtractor(wrong, device="cpu")
    with pytest.raises(GancraftError, match="wrong.pt.*N x D"):
        ex(torch.rand(2, 3, 8, 8))
    with pytest.raises(GancraftError, match="N x 3 x H x W"):
        ex(torch.rand(2, 8, 8))


def test_load_extractor_dispatch(tmp_path, scripted):
    ex = load_extractor(str(scripted), device="cpu")
    assert isinstance(ex, TorchScriptExtractor) and ex.name.startswith("torchscript:sha256=")
    # Same bytes under another name is the same extractor.
    copy = tmp_path / "renamed.pt"
    copy.write_bytes(scripted.read_bytes())
    assert load_extractor(str(copy), device="cpu").name == ex.name
    with pytest.raises(GancraftError, match="unknown feature extractor"):
        load_extractor("dinov2")


# ---------------------------------------------------------------- Inception and CLIP


def test_missing_inception_weights_message(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(GancraftError) as info:
        InceptionExtractor(device="cpu")
    message = str(info.value)
    assert INCEPTION_WEIGHTS_FILE in message and "--weights" in message
    with pytest.raises(GancraftError, match="nope.pth.*not found"):
        InceptionExtractor(weights=tmp_path / "nope.pth", device="cpu")
    torch.save({"fc.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(GancraftError, match="other.pth: not the FID Inception weights"):
        InceptionExtractor(weights=tmp_path / "other.pth", device="cpu")


def test_failed_inception_download_gives_the_same_advice(tmp_path, monkeypatch):
    from pytorch_fid import inception as pf_inception

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(pf_inception, "load_state_dict_from_url", offline)
    with pytest.raises(GancraftError, match=f"could not be downloaded.*{INCEPTION_WEIGHTS_FILE}.*--weights"):
        InceptionExtractor(device="cpu", download=True)


@pytest.fixture(scope="module")
def random_inception():
    return InceptionExtractor.random(seed=0, device="cpu")


def test_inception_feature_path_and_resize(random_inception):
    ex = random_inception
    torch.manual_seed(2)
    # Larger than 299, so antialiasing (which pytorch-fid does not do) would change the input.
    x = torch.rand(1, 3, 320, 320)
    feats = ex(x)
    assert feats.shape == (1, 2048) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and float(feats.std()) > 0
    assert ex.resize == "legacy_tensorflow" and "RANDOM" in ex.name
    # The same network under pytorch-fid's convention: bilinear to 299 without antialiasing, 2x - 1.
    legacy = InceptionExtractor.random(seed=0, device="cpu", resize="legacy_pytorch")
    feats = legacy(x)
    resized = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    with torch.inference_mode():
        direct = legacy.model(resized * 2 - 1)[0].flatten(1)
    torch.testing.assert_close(direct, feats, rtol=1e-4, atol=1e-5)
    antialiased = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
    assert not torch.allclose(legacy(antialiased), feats, rtol=1e-4, atol=1e-5)


def test_inception_loads_local_weights_file(tmp_path, monkeypatch, random_inception):
    import torchvision
    from pytorch_fid import inception as pf_inception

    # Produce a file with exactly the keys of pytorch-fid's FID weights by catching the
    # state-dict load inside its own constructor.
    captured = {}
    monkeypatch.setattr(pf_inception, "load_state_dict_from_url", lambda *a, **k: {})
    monkeypatch.setattr(
        torchvision.models.inception.Inception3,
        "load_state_dict",
        lambda self, sd, *a, **k: captured.setdefault("net", self),
        raising=False,
    )
    torch.manual_seed(3)
    pf_inception.fid_inception_v3()
    monkeypatch.undo()
    path = tmp_path / INCEPTION_WEIGHTS_FILE
    torch.save(captured["net"].state_dict(), path)
    ex = InceptionExtractor(weights=path, device="cpu")
    assert ex.name == "inception-v3-fid-pool3"
    # on the CPU each BatchNorm is folded into its convolution (metrics/inference.py)
    loaded = dict(ex.model.named_parameters())["blocks.3.2.branch_pool.conv.weight"]
    unit = captured["net"].Mixed_7c.branch_pool
    torch.testing.assert_close(loaded, fold_batchnorm(unit.conv, unit.bn.eval()).weight)
    # Found in torch hub's cache without --weights, as after a pytorch-fid download.
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    path.rename(tmp_path / "checkpoints" / INCEPTION_WEIGHTS_FILE)
    assert InceptionExtractor(device="cpu").name == "inception-v3-fid-pool3"


TINY_CLIP = dict(
    embed_dim=16,
    vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
    text_cfg=dict(context_length=8, vocab_size=64, width=16, heads=2, layers=1),
)


def test_clip_extractor_tiny_random():
    ex = ClipExtractor.random("ViT-B-32", seed=0, device="cpu", **TINY_CLIP)
    torch.manual_seed(4)
    tall = torch.rand(3, 3, 48, 32)
    feats = ex(tall)
    assert feats.shape == (3, 16) and torch.isfinite(feats).all()
    # Shorter side to 32 leaves a 48-pixel height whose centre crop is all that is seen.
    padded = tall.clone()
    padded[:, :, :8] = 0.5
    padded[:, :, -8:] = 0.5
    torch.testing.assert_close(ex(padded), feats, rtol=1e-4, atol=1e-5)
    again = ClipExtractor.random("ViT-B-32", seed=0, device="cpu", **TINY_CLIP)
    torch.testing.assert_close(again(tall), feats)
    assert "centre crop 32x32" in ex.resize


def test_clip_without_weights_says_what_to_pass(tmp_path, monkeypatch):
    from gancraft.metrics import clip as clip_mod

    # As on a machine where open_clip never downloaded anything.
    monkeypatch.setattr(clip_mod, "cached_weights", lambda *a, **k: None)
    with pytest.raises(GancraftError, match="--weights PATH"):
        ClipExtractor("ViT-B-32", device="cpu")
    with pytest.raises(GancraftError, match="missing.bin"):
        ClipExtractor("ViT-B-32", weights=tmp_path / "missing.bin", device="cpu")


# ---------------------------------------------------------------- the extractor registry


class _Mean:
    """Per-channel means: a stand-in extractor of a kind registered from outside the package."""

    name = resize = description = "mean"
    device = torch.device("cpu")

    def __call__(self, batch):
        return batch.mean(dim=(2, 3))


@pytest.fixture
def mean_kind():
    from gancraft.metrics import extractors

    with extractors.REGISTRY.scoped():

        @extractors.register
        class Mean(extractors.ExtractorKind):
            name = "mean"
            spellings = ("mean", "mean:N")
            summary = "mean (channel means)"
            takes_resize = True

            def accepts(self, spec):
                return spec.split(":")[0] == "mean"

            def build(self, spec, weights, device, download, resize):
                self.seen = (spec, resize)
                return _Mean()

        yield extractors.REGISTRY["mean"]


def test_a_registered_extractor_kind_is_found_by_load_extractor(mean_kind):
    from gancraft.metrics import extractors

    ex = load_extractor("mean:3", resize="clean")
    assert ex.name == "mean" and mean_kind.seen == ("mean:3", "clean")
    assert torch.equal(ex(torch.ones(2, 3, 4, 4)), torch.ones(2, 3))
    with pytest.raises(
        GancraftError, match="use inception, clip, clip:MODEL, the path of a TorchScript file, mean or mean:N$"
    ):
        load_extractor("dinov2")
    with pytest.raises(GancraftError, match="--resize applies to the inception or mean extractor only; 'clip'"):
        load_extractor("clip", resize="clean")
    assert extractors.help_text().endswith(
        ", a TorchScript file taking float32 N x 3 x H x W in [0, 1] and returning N x D, or mean (channel means)."
    )
    with pytest.raises(RuntimeError, match="registered twice"):
        extractors.register(type(mean_kind))


def test_fid_help_lists_the_extractor_kinds():
    from gancraft.metrics import extractors

    text = "".join(cli_invoke("fid", "--help").output.split())
    assert "".join(extractors.help_text().split()) in text
    assert [k.name for k in extractors.kinds()] == ["inception", "clip", "torchscript"]


def test_clip_model_spelling_reaches_the_clip_kind():
    # without weights the CLIP kind refuses, naming the model it parsed from clip:MODEL
    with pytest.raises(GancraftError, match="CLIP RN50 weights are needed"):
        load_extractor("clip:RN50", device="cpu")
    with pytest.raises(GancraftError, match="CLIP ViT-B-32 weights are needed"):
        load_extractor("clip", device="cpu")
