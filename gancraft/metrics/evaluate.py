"""FID/KID between image sources: image folders, statistics files and checkpoints.

A source is detected from its path: a folder is a set of images, a `.npz` file holds
statistics (gancraft, pytorch-fid or clean-fid layout), anything else is read as a checkpoint
whose generator makes the images, batch by batch, so 50k images never sit in memory.

Under torchrun (WORLD_SIZE > 1) every rank takes every WORLD_SIZE-th image or seed, and the
per-rank running statistics are gathered with an all-gather and merged in rank order, so all
ranks end with the statistics of the whole set.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from tqdm import tqdm

from .. import distributed as tdist
from ..checkpoint.core import Checkpoint
from ..errors import GancraftError
from .features import FeatureExtractor, features_from_batches, iter_image_batches, list_images
from .fid import FeatureStats, RunningStats, check_comparable, fid_from_stats, kernel_inception_distance, load_stats


@dataclass
class Source:
    """What a command-line source turned out to be. `label` names it in messages ('A', a path)."""

    kind: str  # "folder", "stats" or "checkpoint"
    label: str
    path: Path | None = None
    checkpoint: Checkpoint | None = None
    stats: FeatureStats | None = None


SourceLike = str | os.PathLike | Checkpoint | FeatureStats | Source


def open_source(source: SourceLike, label: str | None = None) -> Source:
    """Classify a source; checkpoints and statistics files are read now so bad files fail early."""
    if isinstance(source, Source):
        return source
    if isinstance(source, Checkpoint):
        return Source("checkpoint", label or str(getattr(source, "path", None) or "checkpoint"), checkpoint=source)
    if isinstance(source, FeatureStats):
        return Source("stats", label or "statistics", stats=source)
    path = Path(source)
    label = label or str(path)
    if path.is_dir():
        return Source("folder", label, path=path)
    if not path.exists():
        raise GancraftError(f"{path}: not found (expected an image folder, a statistics .npz or a checkpoint)")
    if path.suffix.lower() == ".npz":
        return Source("stats", label, path=path, stats=load_stats(path))
    from ..checkpoint.io import load

    return Source("checkpoint", label, path=path, checkpoint=load(path))


def _progress(total: int | None, desc: str, enabled: bool):
    if not enabled:
        return nullcontext(None)
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)


def _counted(batches: Iterable[torch.Tensor], bar) -> Iterator[torch.Tensor]:
    for b in batches:
        yield b
        if bar is not None:
            bar.update(int(b.shape[0]))


def _gather(acc: RunningStats, info: tdist.DistInfo) -> RunningStats:
    """Every rank's statistics merged in rank order (a no-op for one process)."""
    if not info.enabled:
        return acc
    import torch.distributed as dist

    parts: list[Any] = [None] * info.world
    dist.all_gather_object(parts, acc)
    merged = RunningStats(keep_features=acc._kept is not None)
    for part in parts:
        merged.merge(part)
    return merged


def _checkpoint_domain(ckpt: Checkpoint, G: torch.nn.Module, domain: str | None, label: str):
    from ..latent import domains as dom

    if domain is None:
        if dom.is_multi_domain(ckpt):
            names = ", ".join(dom.domain_names(ckpt))
            raise GancraftError(f"{label}: multi-domain model ({names}): choose --domain NAME or --domain all")
        return None
    return dom.resolve_domain(ckpt, domain, G)


def _check_stats(src: Source, extractor: FeatureExtractor | None, keep_features: bool) -> None:
    stats = src.stats
    if keep_features and stats.features is None:
        raise GancraftError(
            f"{src.label}: statistics file has no stored features, which KID needs "
            "(write it with 'gancraft fid stats --kid')"
        )
    if extractor is not None:
        check_comparable(
            stats,
            FeatureStats(stats.mu, stats.sigma, extractor=extractor.name, resize=extractor.resize),
            src.label,
            "the chosen --extractor",
        )


def compute_stats(
    source: SourceLike,
    extractor: FeatureExtractor | None,
    *,
    n: int = 50000,
    batch: int = 32,
    trunc: float = 1.0,
    trunc_cutoff: int | None = None,
    domain: str | None = None,
    seed_offset: int = 0,
    noise_mode: str = "const",
    keep_features: bool = False,
    device: str | torch.device | None = None,
    progress: bool = False,
    dist: tdist.DistInfo | None = None,
    label: str | None = None,
) -> FeatureStats:
    """Feature statistics of a folder, a statistics file or `n` images of a checkpoint.

    Checkpoint images come from seeds seed_offset .. seed_offset + n - 1 (NVIDIA's seed
    convention), are quantised to 8 bits as saved PNGs are, and reach the extractor one batch
    at a time. `domain` picks a domain of a multi-domain model (a name or 'a+b').
    """
    src = open_source(source, label)
    info = dist or tdist.DistInfo()
    if src.kind == "stats":
        _check_stats(src, extractor, keep_features)
        return src.stats
    if extractor is None:
        raise GancraftError(f"{src.label}: images need a feature extractor (--extractor)")
    if batch < 1:
        raise GancraftError(f"--batch must be >= 1, got {batch}")
    acc = RunningStats(keep_features=keep_features)
    show = progress and info.is_main
    if src.kind == "folder":
        files = list_images(src.path)[info.rank :: info.world]
        with _progress(len(files), f"features {src.label}", show) as bar:
            for feats in (extractor(x) for x in _counted(iter_image_batches(files, batch), bar)):
                acc.update(feats)
    else:
        if n < 2:
            raise GancraftError(f"--n must be at least 2 (a covariance needs two images), got {n}")
        from ..latent.generate import generate

        dev = torch.device(device) if device is not None else extractor.device
        G = src.checkpoint.generator(device=dev)
        spec = _checkpoint_domain(src.checkpoint, G, domain, src.label)
        seeds = list(range(seed_offset, seed_offset + n))[info.rank :: info.world]
        images = (
            b.images
            for b in generate(
                G, seeds, domain=spec, psi=trunc, cutoff=trunc_cutoff, noise_mode=noise_mode, batch_size=batch
            )
        )
        desc = f"generate {src.label}" + (f" [{domain}]" if domain else "")
        with _progress(len(seeds), desc, show) as bar:
            for feats in features_from_batches(_counted(images, bar), extractor):
                acc.update(feats)
    acc = _gather(acc, info)
    return acc.to_stats(extractor=extractor.name, resize=extractor.resize)


def _domain_part(src: Source, name: str | None, required: bool) -> Source:
    """A folder's part for one domain, DIR/<name>/ or DIR/<name>.npz; other sources as they are.

    With one named domain a folder without such a part is used whole (it is that domain's
    reference); with several, each domain needs its own part.
    """
    if src.kind != "folder" or name is None:
        return src
    for candidate in (src.path / name, src.path / f"{name}.npz"):
        if candidate.exists():
            return open_source(candidate)
    if required:
        raise GancraftError(
            f"{src.path}: no reference for domain {name!r} (expected the folder "
            f"{src.path / name} or the statistics file {src.path / (name + '.npz')})"
        )
    return src


def _default_label(source: SourceLike, side: str) -> str | None:
    return None if isinstance(source, (str, os.PathLike, Source)) else side


def fid(
    a: SourceLike,
    b: SourceLike,
    extractor: FeatureExtractor | None = None,
    *,
    kid: bool = False,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    domain: str | None = None,
    same_seeds: bool = False,
    **options: Any,
) -> dict:
    """FID (and KID) between two sources; a domain applies to whichever side is a checkpoint.

    `options` go to compute_stats (n, batch, trunc, trunc_cutoff, seed_offset, noise_mode,
    device, progress, dist). When both sides are checkpoints, B's seeds follow A's
    (seed_offset + n ..) unless `same_seeds`: the same seeds would score a model against
    itself as exactly 0, hiding the sampling noise every FID has. Returns a row: domain, fid,
    kid, kid_std, n_a, n_b, extractor, resize, a, b (None where it does not apply).
    """
    sa, sb = open_source(a, _default_label(a, "A")), open_source(b, _default_label(b, "B"))
    # Statistics files are checked against the extractor before any image is generated.
    for s in (sa, sb):
        if s.kind == "stats":
            _check_stats(s, extractor, kid)
    b_options = dict(options)
    if sa.kind == sb.kind == "checkpoint" and not same_seeds:
        b_options["seed_offset"] = options.get("seed_offset", 0) + options.get("n", 50000)
    stats = [
        compute_stats(s, extractor, keep_features=kid, domain=_side_domain(s, o, domain), **opts)
        for s, o, opts in ((sa, sb, options), (sb, sa, b_options))
    ]
    value = fid_from_stats(stats[0], stats[1], sa.label, sb.label)
    row = {
        "domain": domain,
        "fid": value,
        "kid": None,
        "kid_std": None,
        "n_a": stats[0].n,
        "n_b": stats[1].n,
        "extractor": stats[0].extractor or stats[1].extractor or (extractor.name if extractor else None),
        "resize": stats[0].resize or stats[1].resize or (extractor.resize if extractor else None),
        "a": sa.label,
        "b": sb.label,
    }
    if kid:
        row["kid"], row["kid_std"] = kernel_inception_distance(
            stats[0].features, stats[1].features, num_subsets=kid_subsets, max_subset_size=kid_subset_size
        )
    return row


def _side_domain(src: Source, other: Source, domain: str | None) -> str | None:
    """The domain for one side: a single-domain checkpoint compared with a multi-domain one
    (`fid union.st cat.st --domain cat`) is that domain's reference and is used whole."""
    if domain is None or src.kind != "checkpoint":
        return domain
    from ..latent import domains as dom

    if not dom.is_multi_domain(src.checkpoint) and other.kind == "checkpoint" and dom.is_multi_domain(other.checkpoint):
        return None
    return domain


def domain_list(source: SourceLike, domain: str | None) -> list[str | None]:
    """'all' or a comma list expanded over the domains of a checkpoint source; else [domain]."""
    if domain is None or (domain != "all" and "," not in domain):
        return [domain]
    src = open_source(source)
    if src.kind != "checkpoint":
        raise GancraftError(f"--domain {domain}: {src.label} is not a checkpoint, so it has no domains to list")
    from ..latent import domains as dom

    if not dom.is_multi_domain(src.checkpoint):
        raise GancraftError(f"--domain {domain}: {src.label} has a single domain")
    if domain == "all":
        return list(dom.domain_names(src.checkpoint))
    names = [d.strip() for d in domain.split(",")]
    if any(not d for d in names) or len(set(names)) != len(names):
        raise GancraftError(f"--domain {domain!r}: empty or repeated domain name")
    return names


def fid_domains(
    a: SourceLike,
    b: SourceLike,
    extractor: FeatureExtractor | None = None,
    *,
    domain: str | None = None,
    **options: Any,
) -> list[dict]:
    """One fid() row per domain: `domain` may be 'all', a comma list, one name or None.

    With several domains, A (or B) must be a multi-domain checkpoint; a folder on the other
    side holds one subfolder or statistics file per domain (`gancraft sample --domain all`
    and `gancraft fid stats --domain all` write those layouts).
    """
    sa, sb = open_source(a), open_source(b)
    names = domain_list(sa if sa.kind == "checkpoint" else sb, domain)
    several = len(names) > 1 or domain == "all"
    return [
        fid(_domain_part(sa, name, several), _domain_part(sb, name, several), extractor, domain=name, **options)
        for name in names
    ]


def write_domain_stats(
    source: SourceLike,
    extractor: FeatureExtractor,
    output: str | os.PathLike,
    *,
    domain: str | None = None,
    force: bool = False,
    **options: Any,
) -> list[Path]:
    """Save statistics of a source; with several domains, OUTPUT is a folder of <domain>.npz files.

    Only rank 0 writes; every rank must call this under torchrun since all take part in gathering.
    """
    from ..io_util import check_output_path
    from .fid import save_stats

    src = open_source(source)
    if src.kind == "stats":
        raise GancraftError(f"{src.label}: is already a statistics file")
    info = options.get("dist") or tdist.DistInfo()
    names = domain_list(src, domain)
    out = Path(output)
    if domain is None or (domain != "all" and "," not in domain):
        targets = [(domain, out)]
    else:
        if out.exists() and not out.is_dir():
            raise GancraftError(f"{out}: with several domains, -o must be a folder (for <domain>.npz files)")
        # Every rank creates it, so that no rank's output check fails while rank 0 is behind.
        out.mkdir(parents=True, exist_ok=True)
        targets = [(name, out / f"{name}.npz") for name in names]
    inputs = (src.path,) if src.path is not None else ()
    for _, path in targets:
        check_output_path(path, force=force, inputs=inputs)
    written = []
    for name, path in targets:
        stats = compute_stats(src, extractor, domain=name, **options)
        if info.is_main:
            written.append(save_stats(path, stats, force=force))
    return written


def init_distributed(device: torch.device) -> tuple[tdist.DistInfo, torch.device]:
    """Join torchrun's process group when WORLD_SIZE > 1; each rank gets its own GPU."""
    info = tdist.from_env()
    dev = tdist.device_for(info, device)
    if info.enabled and dev.type == "cuda":
        torch.cuda.set_device(dev)
    return tdist.init(dev), dev


def shutdown_distributed(info: tdist.DistInfo) -> None:
    tdist.shutdown(info)


__all__ = [
    "Source",
    "compute_stats",
    "domain_list",
    "fid",
    "fid_domains",
    "init_distributed",
    "open_source",
    "shutdown_distributed",
    "write_domain_stats",
]
