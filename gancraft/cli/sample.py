"""gancraft sample: images from seeds or stored latents, contact sheets, latents files, style mixing."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from .. import load
from ..errors import GancraftError
from ..io_util import check_output_path
from ..latent import domains as dom
from ..latent.files import Latents, load_latents, parse_edit, save_latents
from ..latent.generate import NOISE_MODES, generate, layer_indices, resolution_indices, style_mix
from ..latent.hyper import has_hyper
from ..latent.seeds import parse_seeds
from ..media.images import ImageWriter, make_grid, save_png, seed_filename, to_uint8
from .common import device_option, emit_path, force_option, log, precision_option, resolve_device
from .paths import InputFile, OutputFile, spec_with_stdin, stem

EPILOG = """\b
Examples:
  gancraft sample ffhq.pkl --seeds 0-63 -o out/
  gancraft sample ffhq.pkl --seeds 0-7                                   # writes ffhq-samples/
  gancraft sample models/*.st --seeds 0-7 -o out/                        # out/<model>/seed0000.png
  gancraft convert ffhq.pkl -o - | gancraft sample - --seeds 0-3 --latents - > z.npz
  gancraft sample ffhq.pkl --seeds 0-15 --trunc 0.7 --grid sheet.png --latents z.npz -o out/
  gancraft sample union.st --domain all --seeds 0-7 --grid domains.png   # one row per domain
  gancraft sample union.st --domain cat+dog --seeds 1,5,9 -o out/        # composed domains
  gancraft sample ffhq-hyper.st --prompt "a pencil sketch" --prompt "a bronze statue" \\
      --clip-weights ViT-B-32.pt --seeds 0-7 -o out/                        # any text, one folder each
  gancraft sample ffhq.pkl --from-latents z.npz -o again/                # the same pixels again
  gancraft sample ffhq.pkl --from-latents z.npz --edit ffhq.sefa.st:3:2.5 -o edited/
  gancraft sample ffhq.pkl --mix-rows 85,100,75 --mix-cols 55,821,1789 --mix-res 4-32 -o mix.png
  gancraft sample stylegan3-r-ffhq.pkl --seeds 0-3 --translate 0.3,0 --rotate 15 -o moved/

\b
Files: DIR/seed0042.png; models with domains write DIR/<domain>/seed0042.png; a prompt's
folder is its text with spaces and other unsafe characters replaced by '_'.
Latents (.npz): z, w (exactly what was synthesised, float32), seeds, domain, batch.
Same latents at the same --batch give identical pixels; across batch sizes, equal to ~1e-5.
"""


def _image_name(seed: int, row: int) -> str:
    return seed_filename(seed) if seed >= 0 else f"latent{row:04d}.png"


@click.command("sample", epilog=EPILOG)
@click.argument("ckpts", nargs=-1, required=True, type=InputFile(), metavar="CKPT...")
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    default=None,
    help="Folder for the images (created if missing); with --mix-rows, the grid PNG to write "
    "[default: CKPT's name + '-samples' in the current folder, unless only --grid or --latents "
    "is asked for; CKPT's name + '.mix.png' with --mix-rows].",
)
@click.option("--seeds", default=None, metavar="SEEDS", help="Seeds and ranges, e.g. 0-63 or 1,5,9-12 [default: 0-7].")
@click.option(
    "--from-latents",
    "from_latents",
    type=InputFile(),
    default=None,
    metavar="FILE.npz",
    help="Synthesise the w stored in a latents file (from --latents) instead of seeds ('-': standard input).",
)
@click.option("--trunc", "psi", type=float, default=None, metavar="PSI", help="Truncation psi [default: 1, none].")
@click.option(
    "--trunc-cutoff",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Truncate only the first N ws (coarse layers).",
)
@click.option(
    "--noise-mode",
    type=click.Choice(NOISE_MODES),
    default="const",
    show_default=True,
    help="const: deterministic stored noise; random: fresh noise; none: no noise.",
)
@click.option(
    "--batch",
    "batch_size",
    type=click.IntRange(min=1),
    default=None,
    help="Images per batch [default: 8, or the batch stored in --from-latents].",
)
@precision_option
@device_option
@click.option(
    "--domain",
    "--class",
    "domain",
    default=None,
    metavar="NAME|all",
    help="Domain(s) of a multi-domain model: a name, 'a+b', a comma list or 'all' [default: all].",
)
@click.option(
    "--prompt",
    "prompts",
    multiple=True,
    metavar="TEXT",
    help="Hyper-network models (gancraft hyper): a domain described by any text, seen in training "
    "or not. Repeatable; with --domain, adds to those domains [default: --domain's default].",
)
@click.option(
    "--clip-weights",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="PATH",
    help="CLIP weights the hyper-network was trained with [default: a cached open_clip download].",
)
@click.option("--download-clip", is_flag=True, help="Allow open_clip to download the CLIP weights.")
@click.option(
    "--grid",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE.png",
    help="Also write one contact sheet (one row per domain for multi-domain models).",
)
@click.option(
    "--grid-cols",
    type=click.IntRange(min=1),
    default=None,
    help="Columns of the contact sheet [default: about square; seeds per row with domains].",
)
@click.option(
    "--latents",
    "latents_out",
    type=OutputFile(".npz"),
    default=None,
    metavar="OUT.npz",
    help="Also write the latents (z, w, seeds, domain) for --from-latents ('-': standard output).",
)
@click.option(
    "--edit",
    "edits",
    multiple=True,
    metavar="DIRFILE:INDEX:ALPHA",
    help="Move w by ALPHA along direction INDEX (number or name) of a directions file ('-': standard "
    "input). Repeatable.",
)
@click.option("--mix-rows", default=None, metavar="SEEDS", help="Style mixing: seeds of the grid's rows.")
@click.option(
    "--mix-cols",
    default=None,
    metavar="SEEDS",
    help="Style mixing: seeds of the columns, whose styles replace the rows' at the mixed layers.",
)
@click.option(
    "--mix-layers",
    default=None,
    metavar="LIST",
    help="Mixed layers as w indices (0-6, 1,3,5), as NVIDIA's style_mixing.py counts them.",
)
@click.option(
    "--mix-res",
    default=None,
    metavar="LO-HI",
    help="Mixed layers by resolution, e.g. 4-32 (coarse) or 64-1024 (fine) [default: 4-32; StyleGAN3 "
    "models have no resolution blocks: give --mix-layers].",
)
@click.option(
    "--translate",
    default=None,
    metavar="X,Y",
    help="StyleGAN3 only: move the image by X,Y (in image widths, e.g. 0.3,1), as NVIDIA's "
    "gen_images.py --translate: the input layer's Fourier features are sampled further along.",
)
@click.option(
    "--rotate",
    type=float,
    default=None,
    metavar="DEGREES",
    help="StyleGAN3 only: turn the image by this angle, as gen_images.py --rotate.",
)
@force_option
def command(ckpts: tuple[str, ...], output: str | None, edits: tuple[str, ...], **kw) -> None:
    """Generate images from CKPT for seeds or stored latents.

    Writes DIR/seed0042.png per seed (DIR/<domain>/seed0042.png for models with domains),
    optionally a contact sheet and a latents file; PNGs are encoded on background threads while
    the next batch is generated. With --mix-rows/--mix-cols, writes one style-mixing grid to -o
    instead: the first row shows the column seeds, the first column the row seeds, and each
    other cell the row seed with the column seed's styles at the mixed layers.

    Several CKPTs write DIR/<model name>/seed0042.png each (default: <model name>-samples/).
    """
    edits = tuple(spec_with_stdin(e) for e in edits)  # stdin is read once, for every model
    if len(ckpts) == 1:
        _sample(ckpts[0], output, edits=edits, **kw)
        return
    for option, name in (
        ("--grid", "grid"),
        ("--latents", "latents_out"),
        ("--from-latents", "from_latents"),
        ("--mix-rows", "mix_rows"),
        ("--mix-cols", "mix_cols"),
    ):
        if kw[name] is not None:
            raise GancraftError(f"{option} writes or reads one model's file; give one CKPT with it")
    names = [stem(c) for c in ckpts]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise GancraftError(f"two models are named {twice!r}; their images would share a folder")
    for ckpt, name in zip(ckpts, names):
        _sample(ckpt, str(Path(output) / name) if output is not None else None, edits=edits, **kw)


def _sample(
    ckpt: str,
    output: str | None,
    seeds: str | None,
    from_latents: str | None,
    psi: float | None,
    trunc_cutoff: int | None,
    noise_mode: str,
    batch_size: int | None,
    precision: str,
    device: str | None,
    domain: str | None,
    prompts: tuple[str, ...],
    clip_weights: str | None,
    download_clip: bool,
    grid: str | None,
    grid_cols: int | None,
    latents_out: str | None,
    edits: tuple[str, ...],
    mix_rows: str | None,
    mix_cols: str | None,
    mix_layers: str | None,
    mix_res: str | None,
    translate: str | None,
    rotate: float | None,
    force: bool,
) -> None:
    dev = resolve_device(device)
    place = _input_transform(translate, rotate)
    _check_prompts(prompts)
    prompt_args = (prompts, clip_weights, download_clip)
    mixing = mix_rows is not None or mix_cols is not None
    if output is None and (mixing or (grid is None and latents_out is None)):
        output = stem(ckpt) + (".mix.png" if mixing else "-samples")
    if mixing:
        _style_mixing(
            ckpt,
            output,
            mix_rows,
            mix_cols,
            mix_layers,
            mix_res,
            seeds,
            from_latents,
            grid,
            latents_out,
            psi,
            trunc_cutoff,
            noise_mode,
            batch_size,
            dev,
            domain,
            edits,
            force,
            prompt_args,
            precision,
            place,
        )
        return
    if mix_layers is not None or mix_res is not None:
        raise GancraftError("--mix-layers/--mix-res need --mix-rows and --mix-cols")
    if from_latents is not None:
        if seeds is not None:
            raise GancraftError("--seeds and --from-latents exclude each other")
        if domain is not None or prompts or psi is not None or trunc_cutoff is not None:
            raise GancraftError(
                "--domain/--prompt/--trunc/--trunc-cutoff do not apply to --from-latents "
                "(the stored w already carries them)"
            )
    seed_list = parse_seeds(seeds if seeds is not None else "0-7")
    parsed_edits = [parse_edit(e) for e in edits]
    for p in (grid, latents_out):
        if p is not None:
            check_output_path(p, force=force, inputs=(ckpt,) + ((from_latents,) if from_latents else ()))

    model = load(ckpt)
    G = _placed_generator(model, dev, place)
    get_prompts = dom.lazy_prompt_vectors(model, clip_weights, dev, download_clip)
    stored = load_latents(from_latents) if from_latents is not None else None
    if stored is not None:
        jobs = _jobs_from_latents(model, G, stored, from_latents, get_prompts)
        batch = batch_size or stored.batch or 8
    else:
        jobs = [(spec, seed_list, None) for spec in _specs(model, G, domain, prompts, get_prompts)]
        batch = batch_size or 8
    # generate() refuses what the model cannot run now, before any folder or file is made
    runs = []
    for spec, rows, ws in jobs:
        kwargs = dict(domain=spec, noise_mode=noise_mode, edits=parsed_edits, batch_size=batch, precision=precision)
        if ws is None:
            batches = generate(G, rows, psi=1.0 if psi is None else psi, cutoff=trunc_cutoff, **kwargs)
        else:
            batches = generate(
                G, [s for s, _ in rows], ws=ws, z=torch.from_numpy(stored.z[[i for _, i in rows]]), **kwargs
            )
        runs.append((spec, batches))
    multi = dom.is_multi_domain(model)
    out_dir = Path(output) if output is not None else None
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
    for path in written:
        emit_path(path)
    if latents_out is not None:
        z_all = _stack_z(rows_z)
        emit_path(
            save_latents(
                latents_out,
                Latents(
                    z=z_all, w=np.concatenate(rows_w), seeds=np.asarray(rows_seed), domains=rows_domain, batch=batch
                ),
                force=force,
            )
        )
    if grid is not None:
        emit_path(save_png(_contact_sheet(images, jobs, multi, grid_cols), grid, force=force))


def _input_transform(translate: str | None, rotate: float | None) -> torch.Tensor | None:
    """The StyleGAN3 input transform --translate/--rotate ask for; None when neither is given."""
    if translate is None and rotate is None:
        return None
    from ..nets.stylegan3 import input_transform

    xy = (0.0, 0.0)
    if translate is not None:
        try:
            xy = tuple(float(v) for v in translate.split(","))
        except ValueError:
            xy = ()
        if len(xy) != 2 or not all(math.isfinite(v) for v in xy):
            raise GancraftError(f"--translate {translate!r}: expected two numbers X,Y, e.g. 0.3,1")
    return input_transform(xy, rotate or 0.0)


def _placed_generator(model, dev: torch.device, place: torch.Tensor | None) -> torch.nn.Module:
    G = model.generator(device=dev)
    if place is not None:
        if model.family != "stylegan3":
            raise GancraftError(
                f"--translate/--rotate move a StyleGAN3 model's input grid; {model.path} is {model.family}"
            )
        G.synthesis.input.transform.copy_(place)
    return G


def _stack_z(parts: list[np.ndarray]) -> np.ndarray:
    width = max(p.shape[1] for p in parts)
    # rows synthesised from stored w may carry no z; keep one rectangular array
    return np.concatenate([p if p.shape[1] == width else np.zeros((p.shape[0], width), np.float32) for p in parts])


def _check_prompts(prompts: tuple[str, ...]) -> None:
    if any(not p.strip() for p in prompts):
        raise GancraftError("--prompt: expected non-empty text")
    folders: dict[str, str] = {}
    for p in prompts:
        folder = dom.prompt_folder_name(p)
        if folder in folders:
            what = "is given twice" if folders[folder] == p else f"and {folders[folder]!r} share one folder name"
            raise GancraftError(f"--prompt {p!r} {what} ({folder}); reword one")
        folders[folder] = p


def _specs(
    model, G: torch.nn.Module, domain: str | None, prompts: tuple[str, ...], get_prompts: dom.PromptSource
) -> list[dom.DomainSpec]:
    """--domain's specs (all of them by default, unless only prompts are asked for), then one per --prompt."""
    specs = dom.resolve_domains(model, domain, G, prompts=get_prompts) if domain is not None or not prompts else []
    specs += [dom.prompt_domain(model, p, G, prompts=get_prompts) for p in prompts]
    folders = [dom.check_folder_name(s) for s in specs if s.name]
    if len(set(folders)) != len(folders):
        clash = next(f for f in folders if folders.count(f) > 1)
        raise GancraftError(f"two domains would write to the same folder {clash!r}; reword the --prompt")
    return specs


def _jobs_from_latents(model, G: torch.nn.Module, stored: Latents, source: str, get_prompts: dom.PromptSource) -> list:
    """Group stored rows by domain, keeping file order within each group.

    A name outside the domain table of a hyper-network model is a prompt that was given with --prompt.
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
    """Every image path, checked before any work: existing files (without --force), unwritable folders."""
    if out_dir.exists() and not out_dir.is_dir():
        raise GancraftError(f"{out_dir}: is a file, expected a folder for the images")
    paths: list[Path] = []
    folders: list[Path] = []
    for spec, rows, _ in jobs:
        folder = out_dir / dom.check_folder_name(spec) if multi and spec.name else out_dir
        folders.append(folder)
        for k, row in enumerate(rows):
            seed, index = (row, k) if isinstance(row, int) else row
            paths.append(folder / _image_name(seed, index))
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


def _contact_sheet(images: list[np.ndarray], jobs: list, multi: bool, cols: int | None) -> np.ndarray:
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


def _style_mixing(
    ckpt,
    output,
    mix_rows,
    mix_cols,
    mix_layers,
    mix_res,
    seeds,
    from_latents,
    grid,
    latents_out,
    psi,
    trunc_cutoff,
    noise_mode,
    batch_size,
    dev,
    domain,
    edits,
    force,
    prompt_args,
    precision,
    place,
) -> None:
    if mix_rows is None or mix_cols is None:
        raise GancraftError("style mixing needs both --mix-rows and --mix-cols")
    for name, value in (
        ("--seeds", seeds),
        ("--from-latents", from_latents),
        ("--grid", grid),
        ("--latents", latents_out),
    ):
        if value is not None:
            raise GancraftError(f"{name} does not apply to style mixing (--mix-rows/--mix-cols)")
    if edits:
        raise GancraftError("--edit does not apply to style mixing")
    if mix_layers is not None and mix_res is not None:
        raise GancraftError("give --mix-layers or --mix-res, not both")
    rows = parse_seeds(mix_rows, "--mix-rows", allow_duplicates=True)
    cols = parse_seeds(mix_cols, "--mix-cols", allow_duplicates=True)
    check_output_path(output, force=force, inputs=(ckpt,))
    model = load(ckpt)
    G = _placed_generator(model, dev, place)
    if mix_layers is None and model.family == "stylegan3":
        raise GancraftError(
            f"--mix-res: {ckpt} is a StyleGAN3 model, whose layers have no resolution blocks; "
            f"give --mix-layers (w indices 0-{G.num_ws - 1})"
        )
    prompts, clip_weights, download_clip = prompt_args
    specs = _specs(model, G, domain, prompts, dom.lazy_prompt_vectors(model, clip_weights, dev, download_clip))
    if len(specs) != 1:
        raise GancraftError(
            f"style mixing uses one domain; choose one with --domain or --prompt "
            f"(known: {', '.join(dom.domain_names(model))})"
        )
    layers = (
        layer_indices(G, mix_layers)
        if mix_layers is not None
        else resolution_indices(G, mix_res if mix_res is not None else "4-32")
    )
    log(f"mixing ws {','.join(map(str, layers))} from the column seeds")
    images = style_mix(
        G,
        rows,
        cols,
        layers,
        specs[0],
        psi=1.0 if psi is None else psi,
        cutoff=trunc_cutoff,
        noise_mode=noise_mode,
        batch_size=batch_size or 8,
        precision=precision,
    )
    sheet = make_grid(to_uint8(images), len(rows) + 1, len(cols) + 1)
    emit_path(save_png(sheet, output, force=force))
