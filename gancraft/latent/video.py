"""Interpolation, direction-traversal and cross-domain morph videos: what `gancraft render` does,
callable from Python.

    from gancraft import load
    from gancraft.latent.video import render_video
    render_video(load("ffhq.pkl"), "walk.mp4", seeds=[[1, 2, 3]], frames=60)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from ..checkpoint.core import Checkpoint
from ..errors import GancraftError
from ..io_util import no_log
from ..media.images import make_grid, to_uint8
from ..media.video import write_video
from . import domains as dom
from .files import Direction
from .generate import domain_morph_plan, interpolation_plan, render_frames, style_scale_plan, traversal_plan
from .hyper import has_hyper
from .sampling import DEFAULT_BATCH, Synthesis


def single_domain(
    model: Checkpoint, name: str | None, G: torch.nn.Module, get_prompts: dom.PromptSource, log: Callable[[str], None]
) -> dom.DomainSpec | None:
    """The one domain a walk or traversal runs in: `name`, else a multi-domain model's first."""
    if not dom.is_multi_domain(model):
        if name is not None:
            dom.resolve_domain(model, name, G)  # raises: the model has no domains
        return None
    if name is None:
        name = dom.domain_names(model)[0]
        log(f"domain: {name} (the model's first)")
    if name == "all" or "," in name:
        raise GancraftError(f"give one domain here, not {name!r}; a morph runs through several", field="domain")
    return dom.resolve_domain(model, name, G, prompts=get_prompts)


def render_video(
    model: Checkpoint,
    output: str | os.PathLike,
    *,
    seeds: Sequence[Sequence[int]] = ((0, 1),),
    path: str = "cubic",
    space: str | None = None,
    frames: int = 120,
    fps: float = 30.0,
    loop: bool = False,
    direction: Direction | None = None,
    alpha_range: tuple[float, float] = (-3.0, 3.0),
    domains: str | None = None,
    domain: str | None = None,
    prompts: Sequence[str] = (),
    prompt_space: str = "vector",
    clip_weights: str | os.PathLike | None = None,
    download_clip: bool = False,
    synthesis: Synthesis = Synthesis(),
    cols: int | None = None,
    quality: float = 7,
    device: str | torch.device = "cpu",
    force: bool = False,
    log: Callable[[str], None] = no_log,
) -> Path:
    """Render one video (.mp4, .gif, or a folder of PNG frames) from `model`; returns its path.

    The mode: `direction` traverses it over `alpha_range` from each seed; `domains` ('a,b' or
    'all') morphs each seed through them; two or more `prompts` (hyper-network models) morph
    through their text domains (`prompt_space` vector or text); otherwise each list in `seeds` is
    one cell walking through its seeds along `path` (cubic in w, or linear in `space` z or w).
    One prompt, or `domain`, is the domain of the walk or traversal. Several cells make a grid.
    """
    morph_prompts = len(prompts) > 1
    if direction is not None and domains is not None:
        raise GancraftError("a direction traversal and a domain morph exclude each other", field="domains")
    if domains is not None and domain is not None:
        raise GancraftError("one domain and a morph through several exclude each other", field="domain")
    if prompts and (domain is not None or domains is not None):
        raise GancraftError("prompts and named domains exclude each other", field="prompts")
    if morph_prompts and direction is not None:
        raise GancraftError("a direction traversal and a prompt morph exclude each other", field="prompts")
    if space is None:
        space = "w" if path == "cubic" else "z"
    out = Path(output)
    if out.suffix and out.suffix.lower() not in (".mp4", ".gif"):
        raise GancraftError(f"{out}: unsupported video extension {out.suffix!r}; use .mp4, .gif or a folder")
    if not out.suffix and out.exists() and not out.is_dir():
        raise GancraftError(f"{out}: is a file, expected a folder for the frames")
    if not out.suffix and not out.exists() and not out.parent.is_dir():
        raise GancraftError(f"{out}: folder {out.parent} does not exist")
    lo, hi = alpha_range
    all_seeds = [s for lst in seeds for s in lst]

    device = torch.device(device)
    G = model.generator(device=device)
    get_prompts = dom.lazy_prompt_vectors(model, clip_weights, device, download_clip)
    if prompts and not has_hyper(model):
        dom.prompt_domain(model, prompts[0], G, prompts=get_prompts)  # raises: the model has no hyper-network
    psi, cutoff = synthesis.psi, synthesis.cutoff
    if morph_prompts:
        vectors = dom.prompt_morph_vectors(get_prompts(), list(prompts), frames, loop, prompt_space)
        plan = style_scale_plan(G, all_seeds, vectors, psi, cutoff, get_prompts().modulation)
    elif domains is not None:
        specs = dom.resolve_domains(model, domains, G, option="--domains", prompts=get_prompts)
        plan = domain_morph_plan(G, all_seeds, specs, frames, loop, psi, cutoff)
    else:
        if prompts:
            spec = dom.prompt_domain(model, prompts[0], G, prompts=get_prompts)
        else:
            spec = single_domain(model, domain, G, get_prompts, log)
        if direction is not None:
            plan = traversal_plan(G, all_seeds, direction, lo, hi, frames, loop, spec, psi, cutoff)
        else:
            plan = interpolation_plan(G, [list(s) for s in seeds], frames, loop, space, spec, psi, cutoff, path=path)
    cells = plan[0].ws.shape[0]
    n_cols = cols or math.ceil(math.sqrt(cells))
    n_rows = math.ceil(cells / n_cols)

    # render_frames refuses what the model cannot run now, before the log line and the video file
    frames_of_cells = render_frames(
        G,
        plan,
        noise_mode=synthesis.noise_mode,
        batch_size=synthesis.batch or DEFAULT_BATCH,
        precision=synthesis.precision,
    )

    def video_frames() -> Iterator[np.ndarray]:
        for images in frames_of_cells:
            pixels = to_uint8(images)
            yield pixels[0] if cells == 1 else make_grid(pixels, n_rows, n_cols)

    log(f"rendering {frames} frames of {cells} cell(s) at {G.img_resolution}px")
    return write_video(video_frames(), out, fps=fps, quality=quality, force=force, progress=True, total=frames)
