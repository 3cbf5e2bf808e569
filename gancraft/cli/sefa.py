"""gancraft sefa: closed-form factorisation of the style modulation, optional measurement and sheet."""

from __future__ import annotations

from pathlib import Path

import click

from .. import load
from ..errors import GancraftError
from ..io_util import check_output_path
from ..latent import sefa as sefa_lib
from ..latent.seeds import parse_seeds
from .common import emit_path, force_option, log, naming_options, resolve_device
from .options import GenerationOptions, generation_options
from .paths import InputFile, OutputFile, is_stdout, stem
from .types import IntList


def _beside(output: str, suffix: str) -> Path:
    out = Path(output)
    return out.with_name(out.stem + suffix)


@click.command("sefa")
@click.argument("ckpt", type=InputFile())
@click.option(
    "-o",
    "--output",
    type=OutputFile(".st"),
    help="Directions file to write (safetensors: directions, singular_values); '-' writes it to "
    "standard output [default: CKPT's name + .sefa.st in the current folder].",
)
@click.option("--layers", default="all", show_default=True, metavar="SPEC", help=sefa_lib.LAYER_SPEC_HELP + ".")
@click.option(
    "--normalize", is_flag=True, help="Scale each style channel's weight row to unit norm first (genforce's SeFA)."
)
@click.option("--net", default=None, metavar="NAME", help="Generator to factorise (default G_ema, else G).")
@click.option(
    "--measure",
    "measure_n",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Measure every direction's mean perceptual change over N samples moved by +-DISTANCE; "
    "writes a CSV and a plot beside OUTPUT.",
)
@click.option(
    "--distance",
    type=float,
    default=5.0,
    show_default=True,
    metavar="S",
    help="Step along a direction for --measure and --sheet (w units).",
)
@click.option(
    "--measure-csv",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV for --measure (default: OUTPUT's stem + .measure.csv; CKPT's name + .sefa.measure.csv with -o -).",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    help="Plot PNG for --measure (default: OUTPUT's stem + .measure.png).",
)
@click.option(
    "--dormant-fraction",
    type=float,
    default=0.05,
    show_default=True,
    help="Mark a direction dormant when its change is below this fraction of the largest one's.",
)
@click.option(
    "--lpips-weights",
    type=click.Path(dir_okay=False),
    default=None,
    help="LPIPS AlexNet backbone file (torchvision's alexnet-owt-7be5be79.pth). Default: torch hub's "
    "cache; without it a pixel metric is used, and said so.",
)
@click.option(
    "--sheet",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE.png",
    help="Write a traversal contact sheet: one row per direction, -DISTANCE..+DISTANCE.",
)
@click.option(
    "--top-k", type=click.IntRange(min=1), default=8, show_default=True, help="Directions on the sheet: the first K."
)
@click.option(
    "--indices",
    type=IntList("direction indices"),
    default=None,
    metavar="I,J,...",
    help="Directions on the sheet, instead of --top-k.",
)
@click.option("--steps", type=click.IntRange(min=2), default=7, show_default=True, help="Columns of the sheet.")
@click.option(
    "--seeds",
    default=None,
    metavar="SEEDS",
    help="Seeds of the samples: for the sheet (default 0) and --measure (default 0..N-1).",
)
@click.option(
    "--domain",
    default=None,
    metavar="NAME",
    help="Domain of a multi-domain model to sample in (needed for class-conditional models).",
)
@generation_options(
    psi_help="Truncation psi of the samples (--measure, --sheet).",
    cutoff=False,
    noise_mode=False,
    batch=16,
    batch_help="Images synthesised at a time (--measure, --sheet).",
    precision=False,
)
@force_option
def command(
    ckpt: str,
    output: str | None,
    layers: str,
    normalize: bool,
    net: str | None,
    measure_n: int | None,
    distance: float,
    measure_csv: str | None,
    plot: str | None,
    dormant_fraction: float,
    lpips_weights: str | None,
    sheet: str | None,
    top_k: int,
    indices: list[int] | None,
    steps: int,
    seeds: str | None,
    domain: str | None,
    gen: GenerationOptions,
    force: bool,
) -> None:
    """Closed-form factorisation (SeFA) of CKPT's style modulation weights.

    The directions are the right singular vectors of the stacked modulation weights of the
    chosen layers, sorted by singular value. The default reproduces rosinality's
    closed_form_factorization.py (every modulation weight except the toRGB ones after 4x4,
    no normalisation), which is also what Domain Expansion's official code does; `--layers
    first` is the first layer only, as that paper's text says;
    `--normalize` is genforce's per-row normalisation. The last directions are the dormant
    ones: --measure shows how little each changes the images. Edits along directions of
    `all` or `first` move the whole w (as rosinality's apply_factor and Domain Expansion do);
    directions of a chosen layer subset are stored as editing those layers only (genforce).

    \b
    Examples:
      gancraft sefa ffhq.pkl -o ffhq.sefa.st
      gancraft sefa ffhq.pkl                          # writes ffhq.sefa.st too
      gancraft sefa ffhq.pkl -o - | gancraft render ffhq.pkl --direction -:0 -o walk.mp4
      gancraft sefa ffhq.pkl --layers first -o ffhq.first.st --measure 16
      gancraft sefa ffhq.pkl --layers 4-32 --normalize -o coarse.st --sheet coarse.png --top-k 5
      gancraft sefa union.st -o union.sefa.st --domain cat --sheet cat.png --indices 0,1,2,510
    """
    if measure_n is None and (measure_csv or plot):
        raise GancraftError("--measure-csv and --plot need --measure N")
    named = stem(ckpt) + ".sefa.st"
    output = output if output is not None else named
    outputs = [output]
    if measure_n is not None:
        # the file sent down a pipe has no folder of its own: the extras go where -o would default to
        beside = named if is_stdout(output) else output
        measure_csv = measure_csv or str(_beside(beside, ".measure.csv"))
        plot = plot or str(_beside(beside, ".measure.png"))
        outputs += [measure_csv, plot]
    if sheet:
        outputs.append(sheet)
    if len({str(Path(p).resolve()) for p in outputs}) != len(outputs):
        raise GancraftError("output files must differ (-o, --measure-csv, --plot, --sheet)")
    for path in outputs:
        check_output_path(path, force=force, inputs=(ckpt,))
    dev = resolve_device(gen.device)
    seed_list = parse_seeds(seeds) if seeds else None
    with naming_options(
        layers="--layers", dormant_fraction="--dormant-fraction", seeds="--seeds", indices="--indices", steps="--steps"
    ):
        written = sefa_lib.write_sefa(
            load(ckpt),
            output,
            layers=layers,
            normalize=normalize,
            net=net,
            measure=measure_n,
            distance=distance,
            measure_csv=measure_csv,
            plot=plot,
            dormant_fraction=dormant_fraction,
            lpips_weights=lpips_weights,
            sheet=sheet,
            top_k=top_k,
            indices=indices,
            steps=steps,
            seeds=seed_list,
            domain=domain,
            psi=gen.psi,
            batch=gen.batch,
            device=dev,
            force=force,
            log=log,
        )
    for path in written:
        emit_path(path)
