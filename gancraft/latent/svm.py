"""Semantic directions from labelled latents: a linear SVM boundary, InterFaceGAN style.

Samples are ranked by a score (a label column, a CLIP prompt pair, a user classifier); the
top and bottom fractions become positives and negatives, a held-out part of each measures
the boundary, and the unit normal of the separating hyperplane -- pointing towards the
positives -- is the editing direction. GAN Cocktail computes such a direction on one domain
of a merged model and applies it to another, which works because the domains share w.
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import GancraftError, first_line
from ..io_util import load_torchscript


@dataclass
class Boundary:
    direction: np.ndarray  # [w_dim] unit normal, towards higher scores
    intercept: float  # decision = direction . w + intercept (in w units)
    train_accuracy: float
    val_accuracy: float | None
    n_positive: int
    n_negative: int
    n_val: int
    binary_labels: bool
    converged: bool

    def summary(self) -> dict:
        return {
            "train_accuracy": round(self.train_accuracy, 6),
            "val_accuracy": None if self.val_accuracy is None else round(self.val_accuracy, 6),
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "n_val": self.n_val,
            "binary_labels": self.binary_labels,
            "intercept": self.intercept,
            "converged": self.converged,
        }


def project_out(direction: np.ndarray, others: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Remove from ``direction`` its component in the span of ``others`` (InterFaceGAN's
    conditional editing), renormalised. Fails if nothing is left."""
    d = np.asarray(direction, dtype=np.float64).reshape(-1)
    basis = np.atleast_2d(np.asarray(others, dtype=np.float64))
    if basis.shape[1] != d.size:
        raise GancraftError(f"--orthogonal-to: direction has {basis.shape[1]} dimensions, latents have {d.size}")
    q, _ = np.linalg.qr(basis.T)  # orthonormal basis of the span, so several conditions combine correctly
    rest = d - q @ (q.T @ d)
    norm = np.linalg.norm(rest)
    if norm < 1e-6 * max(np.linalg.norm(d), 1e-12):
        raise GancraftError(
            "--orthogonal-to: the learnt direction lies in the span of the given directions; "
            "nothing is left after projecting them out"
        )
    return rest / norm


def split_extremes(scores: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """Indices of positives (highest scores) and negatives (lowest), and whether labels were binary.

    Scores with only two distinct values are labels already: every sample is used.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(scores)):
        raise GancraftError("labels contain NaN or infinite values")
    values = np.unique(scores)
    if values.size < 2:
        raise GancraftError(f"labels are all equal ({values[0] if values.size else 'none'}); nothing to separate")
    if values.size == 2:
        return np.flatnonzero(scores == values[1]), np.flatnonzero(scores == values[0]), True
    if not 0 < fraction <= 0.5:
        raise GancraftError(f"--fraction must be in (0, 0.5], got {fraction}")
    k = int(round(fraction * scores.size))
    order = np.argsort(scores, kind="stable")
    return order[::-1][:k], order[:k], False


def train_boundary(
    latents: np.ndarray,
    scores: np.ndarray,
    fraction: float = 0.25,
    val_split: float = 0.3,
    C: float = 1.0,
    seed: int = 0,
    orthogonal_to: np.ndarray | None = None,
) -> Boundary:
    """Fit a linear SVM between the top and bottom ``fraction`` of samples by score.

    ``latents``: [N, w_dim]; ``val_split`` of each class is held out for the reported accuracy.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    x = np.asarray(latents, dtype=np.float64)
    if x.ndim != 2:
        raise GancraftError(f"latents must be N x w_dim, got shape {x.shape}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size != x.shape[0]:
        raise GancraftError(f"{scores.size} labels for {x.shape[0]} latents")
    if not 0 <= val_split < 1:
        raise GancraftError(f"--val-split must be in [0, 1), got {val_split}")
    pos, neg, binary = split_extremes(scores, fraction)
    rng = np.random.default_rng(seed)
    pos, neg = rng.permutation(pos), rng.permutation(neg)
    n_val_pos, n_val_neg = int(round(val_split * pos.size)), int(round(val_split * neg.size))
    if min(pos.size - n_val_pos, neg.size - n_val_neg) < 2 or (val_split > 0 and min(n_val_pos, n_val_neg) < 1):
        raise GancraftError(
            f"too few samples per class ({pos.size} positive, {neg.size} negative after "
            f"--fraction {fraction}); use more latents or a larger --fraction"
        )
    train_idx = np.concatenate([pos[n_val_pos:], neg[n_val_neg:]])
    val_idx = np.concatenate([pos[:n_val_pos], neg[:n_val_neg]])
    y = np.zeros(x.shape[0], dtype=np.int64)
    y[pos] = 1
    # Centre and scale by one global number: the geometry (hence the normal) is unchanged,
    # while liblinear sees well-conditioned inputs whatever w_avg is.
    centre = x[train_idx].mean(axis=0)
    scale = float(x[train_idx].std()) or 1.0
    xs = (x - centre) / scale
    svm = LinearSVC(C=C, max_iter=20000, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        svm.fit(xs[train_idx], y[train_idx])
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    coef = svm.coef_.reshape(-1)
    norm = np.linalg.norm(coef)
    if norm == 0:
        raise GancraftError("the SVM found no separating direction (all weights zero)")
    direction = coef / norm
    # decision(w) = coef.(w - centre)/scale + b  ->  in w units along the unit normal
    intercept = float((svm.intercept_[0] * scale / norm) - direction @ centre)
    train_acc = float((svm.predict(xs[train_idx]) == y[train_idx]).mean())
    val_acc = float((svm.predict(xs[val_idx]) == y[val_idx]).mean()) if val_idx.size else None
    if orthogonal_to is not None and np.size(orthogonal_to):
        direction = project_out(direction, orthogonal_to)
    return Boundary(
        direction.astype(np.float64),
        intercept,
        train_acc,
        val_acc,
        int(pos.size),
        int(neg.size),
        int(val_idx.size),
        binary,
        converged,
    )


def read_label_csv(
    path: str | os.PathLike, seeds: np.ndarray | None, n: int, column: str | None = None
) -> tuple[np.ndarray, str]:
    """Scores from a CSV with a header: matched to latents by a ``seed`` column when both have
    seeds, else by row order. ``column`` defaults to the only non-seed column."""
    p = Path(path)
    if not p.is_file():
        raise GancraftError(f"{p}: labels file not found")
    try:
        with open(p, newline="") as fh:
            table = [r for r in csv.reader(fh) if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GancraftError(f"{p}: cannot read as CSV ({exc})") from None
    if len(table) < 2:
        raise GancraftError(f"{p}: no label rows (expected a header line, then one row per latent)")
    header = [h.strip() for h in table[0]]
    rows = []
    for line, r in enumerate(table[1:], start=2):
        if len(r) != len(header):
            raise GancraftError(f"{p}: line {line} has {len(r)} fields, the header has {len(header)}")
        rows.append(dict(zip(header, (cell.strip() for cell in r))))
    candidates = [h for h in header if h.lower() != "seed"]
    if column is None:
        if len(candidates) != 1:
            raise GancraftError(f"{p}: choose the label column with --label-column (columns: {', '.join(header)})")
        column = candidates[0]
    elif column not in header:
        raise GancraftError(f"{p}: no column {column!r} (columns: {', '.join(header)})")

    def number(row: dict, key: str, line: int) -> float:
        try:
            return float(row[key])
        except (TypeError, ValueError):
            raise GancraftError(f"{p}: line {line}: {key} value {row[key]!r} is not a number") from None

    seed_key = next((h for h in header if h.lower() == "seed"), None)
    if seed_key is not None and seeds is not None:
        by_seed = {}
        for line, row in enumerate(rows, start=2):
            by_seed[int(number(row, seed_key, line))] = number(row, column, line)
        missing = [int(s) for s in seeds if int(s) not in by_seed]
        if missing:
            raise GancraftError(
                f"{p}: no label for seed {missing[0]} ({len(missing)} seeds of the latents file have no row)"
            )
        return np.array([by_seed[int(s)] for s in seeds], dtype=np.float64), column
    if len(rows) != n:
        raise GancraftError(f"{p}: {len(rows)} label rows for {n} latents (add a seed column to match by seed)")
    return np.array([number(row, column, line) for line, row in enumerate(rows, start=2)]), column


def clip_scorer(clip, positive: str, negative: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Zero-shot score: cosine to the positive prompt minus cosine to the negative one."""
    with torch.no_grad():
        text = clip.encode_text([positive, negative])
    axis = text[0] - text[1]

    def score(images: torch.Tensor) -> torch.Tensor:
        return clip.encode_images(images) @ axis

    return score


def load_classifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    return load_torchscript(path, "classifier", device)


def classifier_scorer(
    model: torch.jit.ScriptModule, path: str | os.PathLike, class_index: int | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Scores from a user's TorchScript classifier taking NCHW images in [-1, 1]: its output [N]
    or [N, 1], or column ``class_index`` of [N, K] logits."""

    def score(images: torch.Tensor) -> torch.Tensor:
        try:
            out = model(images)
        except Exception as exc:  # whatever the user's scripted code raises
            raise GancraftError(
                f"{path}: classifier failed on images {tuple(images.shape)} ({first_line(exc)})"
            ) from None
        if not isinstance(out, torch.Tensor) or out.shape[0] != images.shape[0] or out.ndim > 2:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise GancraftError(f"{path}: classifier must return N or N x K scores, got {got}")
        if out.ndim == 2 and out.shape[1] > 1:
            if class_index is None:
                raise GancraftError(f"{path}: classifier returns {out.shape[1]} classes; choose one with --class-index")
            if not 0 <= class_index < out.shape[1]:
                raise GancraftError(f"--class-index {class_index} out of range (classifier has {out.shape[1]})")
            return out[:, class_index]
        return out.reshape(-1)

    return score


@torch.no_grad()
def score_latents(
    G: torch.nn.Module,
    ws: torch.Tensor,
    scorer: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 16,
    spec=None,
    progress: bool = True,
) -> np.ndarray:
    """Render ``ws`` [N, num_ws, w_dim] (in DomainSpec ``spec``'s synthesis) and score the images."""
    import sys

    from tqdm import tqdm

    from .generate import synthesize

    out = []
    for i in tqdm(range(0, ws.shape[0], batch_size), desc="score", unit="batch", disable=not progress, file=sys.stderr):
        imgs = synthesize(G, ws[i : i + batch_size], spec)
        out.append(scorer(imgs).float().cpu())
    return torch.cat(out).double().numpy()
