"""Fréchet distance, KID, streaming feature statistics and statistics files.

Everything here works on feature vectors; which network made them lives in features.py.
Statistics are accumulated in float64 because FID subtracts large, nearly equal traces:
float32 sums over 50k images lose the digits the score is made of.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..errors import GancraftError
from ..io_util import atomic_write, read_npz

ArrayLike = np.ndarray | torch.Tensor


def _as_float64(batch: ArrayLike) -> np.ndarray:
    if isinstance(batch, torch.Tensor):
        batch = batch.detach().cpu().to(torch.float64).numpy()  # float64 only on the CPU (MPS has none)
    return np.asarray(batch, dtype=np.float64)


@dataclass
class FeatureStats:
    """Mean and covariance of a feature set, plus what is needed to know if two are comparable.

    `extractor` and `resize` are None for files written by other tools (pytorch-fid,
    clean-fid), which store only mu and sigma. `features` is kept only when KID is wanted.
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None = None
    extractor: str | None = None
    resize: str | None = None
    features: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


class RunningStats:
    """Mean and covariance of feature batches, merged one batch at a time.

    Memory stays at one D x D matrix however many images pass through. Batches are merged
    with the pairwise (Chan et al.) update of mean and centred scatter, which avoids the
    cancellation of the textbook sum-of-squares formula when features have a large mean.
    """

    def __init__(self, keep_features: bool = False) -> None:
        self.n = 0
        self._mean: np.ndarray | None = None
        self._scatter: np.ndarray | None = None
        self._kept: list[np.ndarray] | None = [] if keep_features else None

    @property
    def dim(self) -> int | None:
        return None if self._mean is None else int(self._mean.shape[0])

    def update(self, batch: ArrayLike) -> None:
        x = _as_float64(batch)
        if x.ndim != 2:
            raise GancraftError(f"feature batch must be N x D, got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            return
        if not np.isfinite(x).all():
            raise GancraftError("the feature extractor returned NaN or infinite values")
        if self._mean is not None and x.shape[1] != self._mean.shape[0]:
            raise GancraftError(f"feature batch has {x.shape[1]} dimensions, earlier batches had {self._mean.shape[0]}")
        if self._kept is not None:
            self._kept.append(x.astype(np.float32))
        mean_b = x.mean(axis=0)
        centred = torch.from_numpy(x - mean_b)
        # in place on the running D x D scatter, through torch: numpy's temporaries were three
        # fresh 32 MB arrays per batch at D = 2048, and its BLAS threads spun against torch's
        self._fold(x.shape[0], mean_b, lambda scatter: scatter.addmm_(centred.T, centred))

    def merge(self, other: "RunningStats") -> None:
        """Fold in statistics gathered elsewhere (another process, another shard)."""
        if other.n == 0:
            return
        if self._mean is not None and other.dim != self.dim:
            raise GancraftError(f"cannot merge statistics of dimension {other.dim} into {self.dim}")
        if self._kept is not None:
            if other._kept is None:
                raise GancraftError("cannot merge statistics without kept features into ones that keep them")
            self._kept.extend(other._kept)
        self._fold(other.n, other._mean, lambda scatter: scatter.add_(torch.from_numpy(other._scatter)))

    def _fold(self, nb: int, mean_b: np.ndarray, add_scatter: Callable[[torch.Tensor], object]) -> None:
        """Chan et al.'s update for `nb` more samples of mean `mean_b`; `add_scatter` adds their
        own centred scatter into the running one, in place."""
        if self._mean is None:
            self.n, self._mean = nb, mean_b.copy()
            self._scatter = np.zeros((mean_b.shape[0],) * 2)
            add_scatter(torch.from_numpy(self._scatter))
            return
        na = self.n
        n = na + nb
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (nb / n)
        self.n = n
        scatter = torch.from_numpy(self._scatter)
        add_scatter(scatter)
        scatter.addr_(torch.from_numpy(delta), torch.from_numpy(delta), alpha=na * nb / n)

    @property
    def mean(self) -> np.ndarray:
        if self._mean is None:
            raise GancraftError("no features were accumulated (no images?)")
        return self._mean.copy()

    def covariance(self) -> np.ndarray:
        """Unbiased covariance, the same estimator as np.cov(features, rowvar=False)."""
        if self._scatter is None or self.n < 2:
            raise GancraftError(f"need at least 2 images for a covariance, got {self.n}")
        return self._scatter / (self.n - 1)

    def to_stats(self, extractor: str | None = None, resize: str | None = None) -> FeatureStats:
        features = None
        if self._kept is not None:
            features = np.concatenate(self._kept, axis=0) if self._kept else None
        return FeatureStats(
            mu=self.mean,
            sigma=self.covariance(),
            n=self.n,
            extractor=extractor,
            resize=resize,
            features=features,
        )


def stats_from_features(
    feature_batches: Iterable[ArrayLike],
    extractor: str | None = None,
    resize: str | None = None,
    keep_features: bool = False,
) -> FeatureStats:
    """Consume an iterable of N x D feature batches into FeatureStats."""
    acc = RunningStats(keep_features=keep_features)
    for batch in feature_batches:
        acc.update(batch)
    return acc.to_stats(extractor=extractor, resize=resize)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(sigma)
    # Covariances are PSD; negative eigenvalues here are round-off around zero.
    vals = np.clip(vals, 0.0, None)
    return (vecs * np.sqrt(vals)) @ vecs.T


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) for two Gaussians, in float64.

    Tr((S1 S2)^{1/2}) equals the sum of square roots of the eigenvalues of
    S1^{1/2} S2 S1^{1/2}, a symmetric PSD matrix; computing it with symmetric
    eigendecompositions stays real and stable when the covariances are rank-deficient
    (fewer images than feature dimensions), where a general matrix square root of the
    non-symmetric product S1 S2 can fail or turn complex.
    """
    m1, m2 = _as_float64(mu1).reshape(-1), _as_float64(mu2).reshape(-1)
    s1, s2 = _as_float64(sigma1), _as_float64(sigma2)
    d = m1.shape[0]
    if m2.shape[0] != d or s1.shape != (d, d) or s2.shape != (d, d):
        raise GancraftError(
            f"statistics do not match: means of length {m1.shape[0]} and {m2.shape[0]}, "
            f"covariances {s1.shape} and {s2.shape}"
        )
    s1 = (s1 + s1.T) / 2
    s2 = (s2 + s2.T) / 2
    root1 = _psd_sqrt(s1)
    inner = root1 @ s2 @ root1
    inner = (inner + inner.T) / 2
    eig = np.clip(np.linalg.eigvalsh(inner), 0.0, None)
    diff = m1 - m2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.sqrt(eig).sum())
    # Identical inputs can land a few ulps below zero; a distance is never negative.
    return max(value, 0.0)


def check_comparable(a: FeatureStats, b: FeatureStats, a_name: str = "A", b_name: str = "B") -> None:
    """Refuse to compare statistics made by different extractors or resize conventions."""
    if a.dim != b.dim:
        raise GancraftError(f"{a_name} has {a.dim}-dimensional features but {b_name} has {b.dim}")
    for field in ("extractor", "resize"):
        va, vb = getattr(a, field), getattr(b, field)
        if va is not None and vb is not None and va != vb:
            raise GancraftError(
                f"{a_name} was computed with {field} '{va}' but {b_name} with '{vb}'; "
                "scores only compare under the same extractor and resize convention"
            )


def fid_from_stats(a: FeatureStats, b: FeatureStats, a_name: str = "A", b_name: str = "B") -> float:
    check_comparable(a, b, a_name, b_name)
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x . y / d + 1)^3, the kernel of the KID paper."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(x: ArrayLike, y: ArrayLike) -> float:
    """Unbiased MMD^2 between two equal-size samples under the cubic polynomial kernel."""
    x, y = _as_float64(x), _as_float64(y)
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise GancraftError(f"MMD needs two samples of the same size >= 2, got {x.shape[0]} and {y.shape[0]}")
    kxx = polynomial_kernel(x, x)
    kyy = polynomial_kernel(y, y)
    kxy = polynomial_kernel(x, y)
    # The unbiased estimator leaves out each point paired with itself.
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.sum() / (m * m))


def kernel_inception_distance(
    feats1: ArrayLike,
    feats2: ArrayLike,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID as mean and standard deviation of unbiased MMD^2 over random subsets.

    Each subset draws min(n1, n2, max_subset_size) rows without replacement from each
    set, first from feats1 then from feats2, with numpy's default_rng(seed); the defaults
    (100 subsets of at most 1000) are those of the KID paper and clean-fid.
    """
    f1, f2 = _as_float64(feats1), _as_float64(feats2)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise GancraftError(f"KID needs two N x D feature sets of the same D, got {f1.shape} and {f2.shape}")
    if num_subsets < 1:
        raise GancraftError(f"KID needs at least one subset, got {num_subsets}")
    m = min(f1.shape[0], f2.shape[0], max_subset_size)
    if m < 2:
        raise GancraftError(f"KID needs at least 2 images on each side, got {f1.shape[0]} and {f2.shape[0]}")
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = f1[rng.choice(f1.shape[0], m, replace=False)]
        y = f2[rng.choice(f2.shape[0], m, replace=False)]
        values[i] = mmd2_unbiased(x, y)
    return float(values.mean()), float(values.std())


_META_KEYS = ("extractor", "resize", "n")


def save_stats(path: str | os.PathLike, stats: FeatureStats, force: bool = False) -> Path:
    """Write mu/sigma (the names pytorch-fid and clean-fid read) plus gancraft metadata."""
    arrays: dict[str, np.ndarray] = {
        "mu": np.asarray(stats.mu, dtype=np.float64),
        "sigma": np.asarray(stats.sigma, dtype=np.float64),
    }
    if stats.extractor is not None:
        arrays["extractor"] = np.array(stats.extractor)
    if stats.resize is not None:
        arrays["resize"] = np.array(stats.resize)
    if stats.n is not None:
        arrays["n"] = np.array(str(int(stats.n)))
    if stats.features is not None:
        arrays["features"] = np.asarray(stats.features, dtype=np.float32)
    out = Path(path)
    with atomic_write(out, force=force) as tmp:
        # np.savez appends ".npz" to a bare name, so hand it an open file instead.
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return out


def load_stats(path: str | os.PathLike) -> FeatureStats:
    """Read a statistics file written by gancraft, pytorch-fid or clean-fid."""
    p = Path(path)
    if not p.is_file():
        raise GancraftError(f"{p}: statistics file not found")
    data = read_npz(p, "statistics")
    keys = set(data)
    missing = [k for k in ("mu", "sigma") if k not in keys]
    if missing:
        raise GancraftError(
            f"{p}: not a statistics file (missing {', '.join(missing)}; found {', '.join(sorted(keys)) or 'nothing'})"
        )
    try:
        mu = np.asarray(data["mu"], dtype=np.float64).reshape(-1)
        sigma = np.atleast_2d(np.asarray(data["sigma"], dtype=np.float64))
        features = np.asarray(data["features"], dtype=np.float32) if "features" in keys else None
    except (ValueError, TypeError) as exc:
        raise GancraftError(f"{p}: mu, sigma and features must be numbers ({exc})") from None
    meta = {k: str(data[k]) for k in _META_KEYS if k in keys}
    d = mu.shape[0]
    if sigma.shape != (d, d):
        raise GancraftError(f"{p}: mu has length {d} but sigma has shape {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise GancraftError(f"{p}: mu or sigma contains NaN or infinite values")
    if features is not None and (features.ndim != 2 or features.shape[1] != d):
        raise GancraftError(f"{p}: stored features have shape {features.shape}, expected N x {d}")
    n = None
    if "n" in meta:
        try:
            n = int(meta["n"])
        except ValueError:
            raise GancraftError(f"{p}: metadata 'n' is not an integer: {meta['n']!r}") from None
    return FeatureStats(
        mu=mu,
        sigma=sigma,
        n=n,
        extractor=meta.get("extractor"),
        resize=meta.get("resize"),
        features=features,
    )
