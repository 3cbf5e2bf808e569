"""gancraft sample: images from seeds or stored latents, contact sheets, latents files, style mixing."""

from __future__ import annotations

from pathlib import Path

import click

from .. import load
from ..errors import GancraftError
from ..io_util import check_output_path
from ..latent.files import load_latents, parse_edit
from ..latent.sampling import Placement, Synthesis, sample_images, style_mixing_grid
from ..latent.seeds import parse_seeds
from .common import emit_path, force_option, log, naming_options, resolve_device
from .options import ClipOptions, GenerationOptions, clip_options, generation_options
from .paths import InputFile, OutputFile, spec_with_stdin, stem
from .types import FloatPair

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
@generation_options(
    psi=None,
    psi_help="Truncation psi [default: 1, none].",
    batch=None,
    batch_help="Images per batch [default: 8, or the batch stored in --from-latents].",
)
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
@clip_options(weights_help="CLIP weights the hyper-network was trained with [default: a cached open_clip download].")
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
    type=FloatPair(",", ("X", "Y"), "0.3,1"),
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
def command(
    ckpts: tuple[str, ...],
    output: str | None,
    edits: tuple[str, ...],
    gen: GenerationOptions,
    clip: ClipOptions,
    **kw,
) -> None:
    """Generate images from CKPT for seeds or stored latents.

    Writes DIR/seed0042.png per seed (DIR/<domain>/seed0042.png for models with domains),
    optionally a contact sheet and a latents file; PNGs are encoded on background threads while
    the next batch is generated. With --mix-rows/--mix-cols, writes one style-mixing grid to -o
    instead: the first row shows the column seeds, the first column the row seeds, and each
    other cell the row seed with the column seed's styles at the mixed layers.

    Several CKPTs write DIR/<model name>/seed0042.png each (default: <model name>-samples/).
    """
    edits = tuple(spec_with_stdin(e) for e in edits)  # stdin is read once, for every model
    kw.update(gen=gen, clip=clip)
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
    gen: GenerationOptions,
    domain: str | None,
    prompts: tuple[str, ...],
    clip: ClipOptions,
    grid: str | None,
    grid_cols: int | None,
    latents_out: str | None,
    edits: tuple[str, ...],
    mix_rows: str | None,
    mix_cols: str | None,
    mix_layers: str | None,
    mix_res: str | None,
    translate: tuple[float, float] | None,
    rotate: float | None,
    force: bool,
) -> None:
    dev = resolve_device(gen.device)
    placement = _placement(translate, rotate)
    mixing = mix_rows is not None or mix_cols is not None
    if output is None and (mixing or (grid is None and latents_out is None)):
        output = stem(ckpt) + (".mix.png" if mixing else "-samples")
    synthesis = Synthesis(
        psi=1.0 if gen.psi is None else gen.psi,
        cutoff=gen.trunc_cutoff,
        noise_mode=gen.noise_mode,
        batch=gen.batch,
        precision=gen.precision,
    )
    shared = dict(
        synthesis=synthesis,
        prompts=prompts,
        clip_weights=clip.clip_weights,
        download_clip=clip.download_clip,
        placement=placement,
        device=dev,
        force=force,
    )
    flags = naming_options(
        placement="--translate/--rotate",
        prompts="--prompt",
        domain="--domain",
        layers="--mix-layers/--mix-res",
        resolutions="--mix-res",
    )
    if mixing:
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
        rows = parse_seeds(mix_rows, "--mix-rows", allow_duplicates=True)
        cols = parse_seeds(mix_cols, "--mix-cols", allow_duplicates=True)
        check_output_path(output, force=force, inputs=(ckpt,))
        with flags:
            path, mixed = style_mixing_grid(
                load(ckpt), rows, cols, output, layers=mix_layers, resolutions=mix_res, domain=domain, **shared
            )
        log(f"mixed ws {','.join(map(str, mixed))} from the column seeds")
        emit_path(path)
        return
    if mix_layers is not None or mix_res is not None:
        raise GancraftError("--mix-layers/--mix-res need --mix-rows and --mix-cols")
    if from_latents is not None:
        if seeds is not None:
            raise GancraftError("--seeds and --from-latents exclude each other")
        if domain is not None or prompts or gen.psi is not None or gen.trunc_cutoff is not None:
            raise GancraftError(
                "--domain/--prompt/--trunc/--trunc-cutoff do not apply to --from-latents "
                "(the stored w already carries them)"
            )
    seed_list = parse_seeds(seeds) if seeds is not None else None
    parsed_edits = [parse_edit(e) for e in edits]
    for p in (grid, latents_out):
        if p is not None:
            check_output_path(p, force=force, inputs=(ckpt,) + ((from_latents,) if from_latents else ()))
    model = load(ckpt)
    with flags:
        written = sample_images(
            model,
            seeds=seed_list,
            latents=load_latents(from_latents) if from_latents is not None else None,
            latents_name=str(from_latents),
            out_dir=output,
            grid=grid,
            grid_cols=grid_cols,
            latents_out=latents_out,
            domain=domain,
            edits=parsed_edits,
            **shared,
        )
    for path in written:
        emit_path(path)


def _placement(translate: tuple[float, float] | None, rotate: float | None) -> Placement | None:
    """The StyleGAN3 input transform --translate/--rotate ask for; None when neither is given."""
    if translate is None and rotate is None:
        return None
    return Placement(translate or (0.0, 0.0), rotate or 0.0)
