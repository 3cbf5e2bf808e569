"""Images from seeds or stored latents written as PNG folders, contact sheets and latents files, and
style-mixing grids: what `gancraft sample` does, callable from Python.

    from gancraft import load
    from gancraft.latent.sampling import Synthesis, sample_images
    paths = sample_images(load("ffhq.pkl"), seeds=range(8), out_dir="out", synthesis=Synthesis(psi=0.7))
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..errors import GancraftError
from ..media.images import ImageWriter, make_grid, save_png, seed_filename, to_uint8
from . import domains as dom
from .files import Edit, Latents, save_latents
from .generate import generate, layer_indices, resolution_indices, style_mix
from .hyper import has_hyper

# seeds sampled when none are given, as NVIDIA's gen_images.py examples start
DEFAULT_SEEDS = range(8)
DEFAULT_BATCH = 8


@dataclass(frozen=True)
class Synthesis:
    """How latents become pixels: truncation (psi, cutoff: the first N ws only), noise, batch, arithmetic.

    `batch` None means the batch stored with the latents being replayed, else DEFAULT_BATCH.
    """

    psi: float = 1.0
    cutoff: int | None = None
    noise_mode: str = "const"
    batch: int | None = None
    precision: str = "fp32"


@dataclass(frozen=True)
class Placement:
    """A StyleGAN3 model's input transform, as NVIDIA's gen_images.py --translate/--rotate: the
    input layer's Fourier features are sampled shifted by `translate` (image widths) and turned
    by `rotate` degrees."""

    translate: tuple[float, float] = (0.0, 0.0)
    rotate: float = 0.0


def image_name(seed: int, row: int) -> str:
    """seed0042.png; rows replayed from latents without a seed are latent0007.png by their row."""
    return seed_filename(seed) if seed >= 0 else f"latent{row:04d}.png"


def placed_generator(model, device: torch.device, placement: Placement | None = None) -> torch.nn.Module:
    """The model's generator on `device`, with a StyleGAN3 input transform applied when one is given."""
    G = model.generator(device=device)
    if placement is not None:
        if model.family != "stylegan3":
            raise GancraftError(
                f"moves a StyleGAN3 model's input grid; {model.path} is {model.family}", field="placement"
            )
        from ..nets.stylegan3 import input_transform

        G.synthesis.input.transform.copy_(input_transform(placement.translate, placement.rotate))
    return G


def check_prompts(prompts: Sequence[str]) -> None:
    """Prompts that are empty, or whose folders would collide, refused before any work."""
    if any(not p.strip() for p in prompts):
        raise GancraftError("expected non-empty text", field="prompts")
    folders: dict[str, str] = {}
    for p in prompts:
        folder = dom.prompt_folder_name(p)
        if folder in folders:
            what = "is given twice" if folders[folder] == p else f"and {folders[folder]!r} share one folder name"
            raise GancraftError(f"{p!r} {what} ({folder}); reword one", field="prompts")
        folders[folder] = p


def domain_specs(
    model, G: torch.nn.Module, domain: str | None, prompts: Sequence[str], get_prompts: dom.PromptSource
) -> list[dom.DomainSpec]:
    """`domain`'s specs (all of them by default, unless only prompts are asked for), then one per prompt."""
    specs = dom.resolve_domains(model, domain, G, prompts=get_prompts) if domain is not None or not prompts else []
    specs += [dom.prompt_domain(model, p, G, prompts=get_prompts) for p in prompts]
    folders = [dom.check_folder_name(s) for s in specs if s.name]
    if len(set(folders)) != len(folders):
        clash = next(f for f in folders if folders.count(f) > 1)
        raise GancraftError(f"two domains would write to the same folder {clash!r}; reword one", field="prompts")
    return specs


def _jobs_from_latents(model, G: torch.nn.Module, stored: Latents, source: str, get_prompts: dom.PromptSource) -> list:
    """Group stored rows by domain, keeping file order within each group.

    A name outside the domain table of a hyper-network model is a prompt it was sampled with.
    """
    groups: dict[str, list[tuple[int, int]]] = {}
    for i, (seed, name) in enumerate(zip(stored.seeds.tolist(), stored.domains)):
        groups.setdefault(name, []).append((int(seed), i))
    jobs = []
    for name, rows in groups.items():
        if name and has_hyper(model) and name not in (model.domains or {}):
            spec = dom.prompt_domain(model, name, G, prompts=get_prompts, option=f"{source}: domain")
        elif name:
            spec = dom.resolve_domain(model, name, G, option=f"{source}: domain", prompts=get_prompts)
        else:
            spec = dom.DomainSpec(name="")
        ws = torch.from_numpy(stored.w[[i for _, i in rows]])
        jobs.append((spec, rows, ws))
    return jobs


def _plan_paths(out_dir: Path, jobs: list, multi: bool, force: bool) -> list[Path]:
    """Every image path, checked before any work: existing files (without force), unwritable folders."""
    if out_dir.exists() and not out_dir.is_dir():
        raise GancraftError(f"{out_dir}: is a file, expected a folder for the images")
    paths: list[Path] = []
    folders: list[Path] = []
    for spec, rows, _ in jobs:
        folder = out_dir / dom.check_folder_name(spec) if multi and spec.name else out_dir
        folders.append(folder)
        for k, row in enumerate(rows):
            seed, index = (row, k) if isinstance(row, int) else row
            paths.append(folder / image_name(seed, index))
    if len(set(paths)) != len(paths):
        raise GancraftError(f"{out_dir}: two images would get the same file name (repeated seeds in the latents?)")
    for folder in dict.fromkeys(folders):
        existing = next((p for p in folder.parents if p.exists()), None) if not folder.exists() else folder
        if existing is not None and not os.access(existing, os.W_OK):
            raise GancraftError(f"{folder}: cannot write there ({existing} is not writable)")
    if not force:
        for p in paths:
            if p.exists():
                raise GancraftError(f"{p}: already exists (use --force to replace it)")
    for folder in dict.fromkeys(folders):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GancraftError(f"{folder}: cannot create the output folder ({exc.strerror})") from None
    return paths


def _stack_z(parts: list[np.ndarray]) -> np.ndarray:
    width = max(p.shape[1] for p in parts)
    # rows synthesised from stored w may carry no z; keep one rectangular array
    return np.concatenate([p if p.shape[1] == width else np.zeros((p.shape[0], width), np.float32) for p in parts])


def contact_sheet(images: list[np.ndarray], jobs: list, multi: bool, cols: int | None) -> np.ndarray:
    """One grid: about square, or one row (wrapped at `cols`) per domain for multi-domain models."""
    arr = np.stack(images)
    if multi and len(jobs) > 1:
        per_row = cols or max(len(rows) for _, rows, _ in jobs)
        cells, r = [], 0
        blank = np.zeros_like(arr[0])
        lines = 0
        for _, rows, _ in jobs:
            block = list(arr[r : r + len(rows)])
            r += len(rows)
            n_lines = max(1, math.ceil(len(block) / per_row))
            block += [blank] * (n_lines * per_row - len(block))
            cells.extend(block)
            lines += n_lines
        return make_grid(np.stack(cells), lines, per_row)
    n = arr.shape[0]
    cols = cols or math.ceil(math.sqrt(n))
    return make_grid(arr, math.ceil(n / cols), cols)


def sample_images(
    model,
    *,
    seeds: Iterable[int] | None = None,
    latents: Latents | None = None,
    latents_name: str = "latents",
    out_dir: str | Path | None = None,
    grid: str | Path | None = None,
    grid_cols: int | None = None,
    latents_out: str | Path | None = None,
    synthesis: Synthesis = Synthesis(),
    domain: str | None = None,
    prompts: Sequence[str] = (),
    clip_weights: str | None = None,
    download_clip: bool = False,
    edits: Sequence[Edit] = (),
    placement: Placement | None = None,
    device: torch.device | str = "cpu",
    force: bool = False,
) -> list[Path]:
    """Synthesise `seeds` (default 0-7) or replay the w of `latents` (named `latents_name` in
    messages) and write what is asked for; returns the written paths: the images
    (`out_dir`/seed0042.png, `out_dir`/<domain>/seed0042.png for models with domains), then
    `latents_out` (z, w, seeds, domain, batch), then the contact sheet `grid`.

    `domain` is a name, 'a+b', a comma list or 'all' (the default for multi-domain models);
    `prompts` are texts for hyper-network models, whose CLIP comes from `clip_weights` (or
    open_clip's cache; `download_clip` lets it download). Truncation does not apply to
    `latents`: the stored w already carries it, and its domain.
    """
    device = torch.device(device)
    check_prompts(prompts)
    G = placed_generator(model, device, placement)
    get_prompts = dom.lazy_prompt_vectors(model, clip_weights, device, download_clip)
    if latents is not None:
        jobs = _jobs_from_latents(model, G, latents, latents_name, get_prompts)
        batch = synthesis.batch or latents.batch or DEFAULT_BATCH
    else:
        seed_list = list(DEFAULT_SEEDS if seeds is None else seeds)
        jobs = [(spec, seed_list, None) for spec in domain_specs(model, G, domain, prompts, get_prompts)]
        batch = synthesis.batch or DEFAULT_BATCH
    # generate() refuses what the model cannot run now, before any folder or file is made
    runs = []
    for spec, rows, ws in jobs:
        kwargs = dict(
            domain=spec,
            noise_mode=synthesis.noise_mode,
            edits=list(edits),
            batch_size=batch,
            precision=synthesis.precision,
        )
        if ws is None:
            batches = generate(G, rows, psi=synthesis.psi, cutoff=synthesis.cutoff, **kwargs)
        else:
            batches = generate(
                G, [s for s, _ in rows], ws=ws, z=torch.from_numpy(latents.z[[i for _, i in rows]]), **kwargs
            )
        runs.append((spec, batches))
    multi = dom.is_multi_domain(model)
    out_dir = Path(out_dir) if out_dir is not None else None
    targets = _plan_paths(out_dir, jobs, multi, force) if out_dir is not None else []

    total = sum(len(rows) for _, rows, _ in jobs)
    keep_images = grid is not None
    images: list[np.ndarray] = []
    rows_z, rows_w, rows_seed, rows_domain = [], [], [], []
    written: list[Path] = []
    writer = ImageWriter(force=force) if out_dir is not None else None
    target_iter = iter(targets)
    try:
        with tqdm(total=total, file=sys.stderr, unit="img", desc="sample", leave=False) as bar:
            for spec, batches in runs:
                for b in batches:
                    pixels = to_uint8(b.images)
                    if writer is not None:
                        for img in pixels:
                            path = next(target_iter)
                            writer.write(img, path)
                            written.append(path)
                    if keep_images:
                        images.extend(pixels)
                    rows_z.append(b.z.numpy())
                    rows_w.append(b.ws.numpy())
                    rows_seed.extend(b.seeds)
                    rows_domain.extend([spec.name] * len(b.seeds))
                    bar.update(len(b.seeds))
    finally:
        if writer is not None:
            writer.close()
    if latents_out is not None:
        stored = Latents(
            z=_stack_z(rows_z), w=np.concatenate(rows_w), seeds=np.asarray(rows_seed), domains=rows_domain, batch=batch
        )
        written.append(Path(save_latents(latents_out, stored, force=force)))
    if grid is not None:
        written.append(Path(save_png(contact_sheet(images, jobs, multi, grid_cols), grid, force=force)))
    return written


def style_mixing_grid(
    model,
    rows: Sequence[int],
    cols: Sequence[int],
    output: str | Path,
    *,
    layers: str | None = None,
    resolutions: str | None = None,
    synthesis: Synthesis = Synthesis(),
    domain: str | None = None,
    prompts: Sequence[str] = (),
    clip_weights: str | None = None,
    download_clip: bool = False,
    placement: Placement | None = None,
    device: torch.device | str = "cpu",
    force: bool = False,
) -> tuple[Path, list[int]]:
    """NVIDIA's style-mixing figure as one PNG: the first row shows the column seeds, the first
    column the row seeds, and each other cell the row seed with the column seed's styles at the
    mixed ws; returns the PNG's path and the mixed w indices.

    The mixed ws are `layers` (w indices: 0-6, 1,3,5) or `resolutions` (4-32: coarse, the
    default; StyleGAN3 models have no resolution blocks and need `layers`). One domain only.
    """
    if layers is not None and resolutions is not None:
        raise GancraftError("give the mixed layers by index or by resolution, not both", field="layers")
    device = torch.device(device)
    check_prompts(prompts)
    G = placed_generator(model, device, placement)
    if layers is None and model.family == "stylegan3":
        raise GancraftError(
            f"{model.path} is a StyleGAN3 model, whose layers have no resolution blocks; "
            f"give the mixed layers as w indices 0-{G.num_ws - 1}",
            field="resolutions",
        )
    get_prompts = dom.lazy_prompt_vectors(model, clip_weights, device, download_clip)
    specs = domain_specs(model, G, domain, prompts, get_prompts)
    if len(specs) != 1:
        raise GancraftError(
            f"style mixing uses one domain; choose one (known: {', '.join(dom.domain_names(model))})", field="domain"
        )
    mixed = (
        layer_indices(G, layers)
        if layers is not None
        else resolution_indices(G, resolutions if resolutions is not None else "4-32")
    )
    images = style_mix(
        G,
        list(rows),
        list(cols),
        mixed,
        specs[0],
        psi=synthesis.psi,
        cutoff=synthesis.cutoff,
        noise_mode=synthesis.noise_mode,
        batch_size=synthesis.batch or DEFAULT_BATCH,
        precision=synthesis.precision,
    )
    sheet = make_grid(to_uint8(images), len(rows) + 1, len(cols) + 1)
    return Path(save_png(sheet, output, force=force)), mixed
