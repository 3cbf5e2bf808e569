"""A semantic editing direction learnt from labelled latents (linear SVM in w, InterFaceGAN style):
what `gancraft direction` does, callable from Python.

    from gancraft import load
    from gancraft.latent.direction import learn_direction
    found = learn_direction("smile.st", latents="faces.npz", labels="faces.csv")
    print(found.path, found.boundary.val_accuracy)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..checkpoint.core import Checkpoint
from ..errors import GancraftError
from ..io_util import display_name, no_log, sha256_file
from . import svm
from .domains import resolve_domain
from .files import Direction, load_latents
from .generate import map_latents
from .seeds import parse_seeds, z_from_seeds
from .sefa import save_directions


@dataclass(frozen=True)
class LearntDirection:
    """The directions file written and the SVM boundary whose unit normal it holds."""

    path: Path
    boundary: svm.Boundary


def domain_rows(domains: list[str], domain: str | None, path: str | os.PathLike) -> np.ndarray:
    """Row indices of the latents belonging to `domain` (all rows without one)."""
    if domain is None:
        return np.arange(len(domains))
    labels = np.asarray(domains)
    rows = np.flatnonzero(labels == domain)
    if rows.size == 0:
        known = ", ".join(sorted(set(domains) - {""})) or "none recorded"
        raise GancraftError(f"{path}: no latents of domain {domain!r} (domains in the file: {known})")
    return rows


def learn_direction(
    output: str | os.PathLike,
    model: Checkpoint | None = None,
    *,
    latents: str | os.PathLike | None = None,
    seeds: str | Sequence[int] | None = None,
    labels: str | os.PathLike | None = None,
    label_column: str | None = None,
    clip_prompts: tuple[str, str] | None = None,
    clip_model: str = "ViT-B-32",
    clip_weights: str | os.PathLike | None = None,
    download_clip: bool = False,
    classifier: str | os.PathLike | None = None,
    class_index: int | None = None,
    domain: str | None = None,
    fraction: float = 0.25,
    val_split: float = 0.3,
    svm_c: float = 1.0,
    orthogonal_to: Sequence[Direction] = (),
    name: str | None = None,
    seed: int = 0,
    psi: float = 1.0,
    batch: int = 16,
    device: str | torch.device = "cpu",
    force: bool = False,
    log: Callable[[str], None] = no_log,
) -> LearntDirection:
    """Train a linear SVM boundary in w and write its unit normal, pointing towards higher scores,
    to `output` as a one-row directions file.

    The samples are `latents` (a latents file; w[:, 0] when stored per layer) or `seeds` sampled
    from `model` (a Checkpoint) at truncation `psi`. Their scores come from exactly one of a
    `labels` CSV (matched by a 'seed' column or by row order), zero-shot CLIP on the generated
    images (`clip_prompts`: positive, negative) or a TorchScript `classifier`; the last two need
    `model`. The top and bottom `fraction` become the classes and `val_split` of each is held out
    for the accuracy; `orthogonal_to` directions are projected out (conditional editing).
    """
    if (latents is None) == (seeds is None):
        raise GancraftError("expected either a latents file or seeds to sample", field="latents")
    if sum(x is not None for x in (labels, clip_prompts, classifier)) != 1:
        raise GancraftError("expected one source of labels: a CSV, CLIP prompts or a classifier", field="labels")
    if labels is None and model is None:
        raise GancraftError("a model is needed to generate the images that CLIP or the classifier score", field="model")
    if seeds is not None and model is None:
        raise GancraftError("a model is needed to sample seeds", field="model")
    device = torch.device(device)
    source = model.path if model is not None else None
    inputs = tuple(x for x in (source, latents, labels) if x)

    scorer = None
    if clip_prompts is not None:
        from ..metrics.clip import load_clip

        clip = load_clip(clip_model, clip_weights, device=device, download=download_clip)
        log(f"labels: zero-shot {clip.description}: '{clip_prompts[0]}' vs '{clip_prompts[1]}'")
        scorer = svm.clip_scorer(clip, *clip_prompts)
        label_desc = {"kind": "clip", "model": clip.name, "positive": clip_prompts[0], "negative": clip_prompts[1]}
        default_name = clip_prompts[0]
    elif classifier is not None:
        scorer = svm.classifier_scorer(svm.load_classifier(classifier, device), classifier, class_index)
        label_desc = {
            "kind": "classifier",
            "file": str(classifier),
            "sha256": sha256_file(classifier),
            "class_index": class_index,
        }
        default_name = Path(classifier).stem + (f"[{class_index}]" if class_index is not None else "")

    G = model.generator(device=device) if model is not None else None
    spec = resolve_domain(model, domain, G) if (domain and model is not None and seeds is not None) else None
    if latents is not None:
        lat = load_latents(latents)
        rows = domain_rows(lat.domains, domain, latents)
        w_all = lat.w[rows]
        seed_array = lat.seeds[rows] if np.all(lat.seeds[rows] >= 0) else None
        ws = torch.from_numpy(np.ascontiguousarray(w_all))
        if G is not None:
            if ws.shape[-1] != G.w_dim:
                raise GancraftError(
                    f"{latents}: w has {ws.shape[-1]} dimensions, {source or 'the model'} has w_dim {G.w_dim}"
                )
            if ws.shape[1] == 1:
                ws = ws.repeat(1, G.num_ws, 1)
            elif ws.shape[1] != G.num_ws:
                raise GancraftError(f"{latents}: w holds {ws.shape[1]} layers, {source or 'the model'} uses {G.num_ws}")
            # stored w already carries the domain's class and subspace; a domain vector acts in synthesis
            spec = resolve_domain(model, domain, G) if domain and model.domains else None
        w_train = w_all[:, 0].astype(np.float64)
    else:
        seed_array = np.array(parse_seeds(seeds) if isinstance(seeds, str) else list(seeds))
        ws = map_latents(G, z_from_seeds(seed_array, G.z_dim), spec, psi)
        w_train = ws[:, 0].cpu().double().numpy()  # float64 only on the CPU (MPS has none)

    ortho = None
    if orthogonal_to:
        vectors = [d.vector.double().numpy() for d in orthogonal_to]
        if any(v.size != w_train.shape[1] for v in vectors):
            raise GancraftError(
                f"directions must have {w_train.shape[1]} dimensions like the latents", field="orthogonal_to"
            )
        ortho = np.stack(vectors)

    if scorer is None:
        scores, column = svm.read_label_csv(labels, seed_array, w_train.shape[0], label_column)
        label_desc = {"kind": "csv", "file": str(labels), "sha256": sha256_file(labels), "column": column}
        default_name = column
    else:
        scores = svm.score_latents(G, ws.to(device), scorer, batch, spec)

    boundary = svm.train_boundary(
        w_train, scores, fraction=fraction, val_split=val_split, C=svm_c, seed=seed, orthogonal_to=ortho
    )
    meta = {
        "kind": "svm",
        "names": [name or default_name],
        "labels": label_desc,
        "domain": domain,
        "fraction": fraction,
        "val_split": val_split,
        "svm_c": svm_c,
        "orthogonal_to": [d.source for d in orthogonal_to],
        "latents": None if latents is None else {"path": display_name(latents), "sha256": sha256_file(latents)},
        "seeds": None if seeds is None else (seeds if isinstance(seeds, str) else ",".join(map(str, seeds))),
        **boundary.summary(),
    }
    if source is not None:
        meta["source"] = {"path": display_name(source), "sha256": sha256_file(source)}
    direction = torch.from_numpy(boundary.direction).float().unsqueeze(0)
    path = save_directions(output, direction, meta, force=force, inputs=inputs)
    return LearntDirection(Path(path), boundary)
