"""gancraft render: interpolation, direction traversal and cross-domain morph videos."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .. import load
from ..errors import GancraftError
from ..io_util import check_output_path
from ..latent.files import load_direction
from ..latent.generate import PATHS
from ..latent.sampling import Synthesis
from ..latent.seeds import parse_seeds
from ..latent.video import render_video
from .common import emit_path, force_option, log, naming_options, resolve_device
from .options import ClipOptions, GenerationOptions, clip_options, generation_options
from .paths import InputFile, spec_with_stdin, stem
from .types import FloatPair

EPILOG = """\b
Examples:
  gancraft render ffhq.pkl --seeds 1,2,3,4 --loop --frames 240 -o walk.mp4
  gancraft render ffhq.pkl --seeds 1,2,3                                          # writes ffhq.mp4
  gancraft render models/*.st --seeds 0-7 --loop -o videos/                       # videos/<model>.mp4 each
  ls models/*.st | xargs -P 2 -n 1 gancraft render --seeds 0-7 -o videos/
  gancraft sefa ffhq.pkl -o - | gancraft render ffhq.pkl --direction -:0 -o pose.mp4
  gancraft render ffhq.pkl --seeds 1,2,3 --seeds 7,8,9 --space w -o pair.gif      # two cells side by side
  gancraft render ffhq.pkl --direction ffhq.sefa.st:0 --range -3:3 --seeds 1-4 -o pose.mp4
  gancraft render union.st --domains ffhq,cat,dog --seeds 1,2,3 --loop -o morph.mp4
  gancraft render union.st --seeds 5,6 --domain cat -o frames                     # PNG frames
  gancraft render ffhq-hyper.st --prompts "a pencil sketch,an oil painting,a bronze statue" \\
      --clip-weights ViT-B-32.pt --seeds 1,2 -o styles.mp4                       # morph between texts

\b
Modes: interpolation (default): each --seeds option is one cell walking through its seeds;
--direction: each seed is a cell moving along the direction over --range; --domains: each
seed is a cell morphing through the domains (class embeddings, repurposed shifts or domain
vectors are interpolated); --prompts (hyper-network models): each seed is a cell morphing
through the domains of the texts. One --prompt picks the domain of the other modes.
Several cells make a grid video (--cols to arrange it).
"""


@click.command("render", epilog=EPILOG)
@click.argument("ckpts", nargs=-1, required=True, type=InputFile(), metavar="CKPT...")
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    help="OUT.mp4, OUT.gif, a path without extension for a folder of frame00000.png, or a folder "
    "ending in '/' for one CKPT-name.mp4 per model [default: CKPT's name + .mp4 in the current "
    "folder; with several CKPTs, -o is their folder].",
)
@click.option(
    "--seeds",
    "seed_lists",
    multiple=True,
    metavar="SEEDS",
    help="Seeds (e.g. 1,2,3 or 0-3). Interpolation: one cell per --seeds option; "
    "--direction/--domains: one cell per seed [default: 0,1].",
)
@click.option(
    "--path",
    "path_kind",
    type=click.Choice(PATHS),
    default="cubic",
    show_default=True,
    help="Interpolation: cubic: a smooth spline through the keyframes' w (NVIDIA's gen_video; "
    "periodic with --loop); linear: straight segments between keyframes (--space).",
)
@click.option(
    "--space",
    type=click.Choice(["z", "w"]),
    default=None,
    help="--path linear: interpolate z (spherical) or w (linear, after truncation and the domain "
    "transform) [default: z; cubic paths run in w].",
)
@click.option("--frames", type=click.IntRange(min=1), default=120, show_default=True, help="Frames in the video.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True)
@click.option("--loop", is_flag=True, help="Return to the start: the last keyframe leads back to the first.")
@click.option(
    "--direction",
    default=None,
    metavar="FILE:INDEX",
    help="Traverse direction INDEX (number or name) of a directions file (sefa/direction output; "
    "'-:INDEX' reads it from standard input).",
)
@click.option(
    "--range",
    "alpha_range",
    type=FloatPair(":", ("LO", "HI"), "-3:3", distinct=True),
    default="-3:3",
    show_default=True,
    metavar="LO:HI",
    help="Traversal distances along --direction.",
)
@click.option("--domains", default=None, metavar="A,B,...", help="Morph through these domains ('all' for every one).")
@click.option(
    "--domain",
    "--class",
    "domain",
    default=None,
    metavar="NAME",
    help="Domain for interpolation/traversal in a multi-domain model [default: its first domain].",
)
@click.option(
    "--prompts",
    "prompt_csv",
    default=None,
    metavar="A,B,...",
    help="Hyper-network models: morph through the domains of these texts (comma separated).",
)
@click.option(
    "--prompt",
    "prompt_items",
    multiple=True,
    metavar="TEXT",
    help="One text domain for interpolation/traversal; repeated, a morph like --prompts (texts may then hold commas).",
)
@click.option(
    "--prompt-space",
    type=click.Choice(["vector", "text"]),
    default="vector",
    show_default=True,
    help="Morph by blending the prompts' domain vectors, or by walking between their CLIP text "
    "embeddings (every frame a domain of its own).",
)
@clip_options(weights_help="CLIP weights the hyper-network was trained with [default: a cached open_clip download].")
@click.option("--cols", type=click.IntRange(min=1), default=None, help="Grid columns [default: about square].")
@click.option(
    "--quality",
    type=click.FloatRange(1, 10),
    default=7,
    show_default=True,
    help="mp4 quality, 1 (small) to 10 (near lossless).",
)
@generation_options(batch_help="Images synthesised at a time (across frames).")
@force_option
def command(
    ckpts: tuple[str, ...],
    output: str | None,
    direction: str | None,
    force: bool,
    gen: GenerationOptions,
    clip: ClipOptions,
    **opts,
) -> None:
    """Render a video from each CKPT: latent interpolation, a direction traversal, or a cross-domain morph."""
    opts.update(
        psi=gen.psi,
        trunc_cutoff=gen.trunc_cutoff,
        noise_mode=gen.noise_mode,
        batch_size=gen.batch,
        precision=gen.precision,
        device=gen.device,
        clip_weights=clip.clip_weights,
        download_clip=clip.download_clip,
    )
    if direction is not None:
        direction = spec_with_stdin(direction)  # read once, used for every model
    for ckpt, out in _targets(ckpts, output, force):
        _render(ckpt, out, direction=direction, force=force, **opts)


def _targets(ckpts: tuple[str, ...], output: str | None, force: bool) -> list[tuple[str, Path]]:
    """(model, output) pairs; a folder output (several models, or a path ending in '/') gets NAME.mp4 each."""
    if len(ckpts) == 1 and (output is None or not output.endswith(("/", os.sep))):
        return [(ckpts[0], Path(output) if output is not None else Path(stem(ckpts[0]) + ".mp4"))]
    folder = Path(output if output is not None else ".")
    if folder.suffix.lower() in (".mp4", ".gif"):
        raise GancraftError(f"-o {output}: several models write one video each; give a folder for them")
    if folder.exists() and not folder.is_dir():
        raise GancraftError(f"-o {folder}: is a file, expected a folder for the videos")
    names = [stem(c) for c in ckpts]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise GancraftError(f"two models are named {twice!r}; their videos would collide")
    folder.mkdir(parents=True, exist_ok=True)
    targets = [(c, folder / f"{n}.mp4") for c, n in zip(ckpts, names)]
    for c, t in targets:
        check_output_path(t, force=force, inputs=(c,))
    return targets


def _render(
    ckpt: str,
    out: Path,
    seed_lists: tuple[str, ...],
    path_kind: str,
    direction: str | None,
    domains: str | None,
    domain: str | None,
    prompt_csv: str | None,
    prompt_items: tuple[str, ...],
    psi: float,
    trunc_cutoff: int | None,
    noise_mode: str,
    batch_size: int,
    precision: str,
    device: str | None,
    force: bool,
    **video,
) -> None:
    if direction is not None and domains is not None:
        raise GancraftError("--direction and --domains exclude each other")
    if domains is not None and domain is not None:
        raise GancraftError("--domain and --domains exclude each other (a morph runs through --domains)")
    prompts = _prompt_list(prompt_csv, prompt_items)
    morph_prompts = len(prompts) > 1 or prompt_csv is not None
    if prompts and (domain is not None or domains is not None):
        raise GancraftError("--prompt/--prompts and --domain/--domains exclude each other")
    if morph_prompts and direction is not None:
        raise GancraftError("--direction and a prompt morph exclude each other (give one --prompt to traverse)")
    if morph_prompts and len(prompts) < 2:
        raise GancraftError("--prompts: a morph needs at least two prompts")
    if out.suffix.lower() in (".mp4", ".gif"):
        check_output_path(out, force=force, inputs=(ckpt,))
    multiple = direction is None and domains is None and not morph_prompts
    lists = [parse_seeds(s, "--seeds", allow_duplicates=multiple) for s in (seed_lists or ("0,1",))]
    picked = load_direction(direction) if direction is not None else None
    model = load(ckpt)
    dev = resolve_device(device)
    synthesis = Synthesis(psi, trunc_cutoff, noise_mode, batch_size, precision)
    with naming_options(domain="--domain"):
        written = render_video(
            model,
            out,
            seeds=lists,
            path=path_kind,
            direction=picked,
            domains=domains,
            domain=domain,
            prompts=prompts,
            synthesis=synthesis,
            device=dev,
            force=force,
            log=log,
            **video,
        )
    emit_path(written)


def _prompt_list(csv: str | None, items: tuple[str, ...]) -> list[str]:
    if csv is not None and items:
        raise GancraftError("give --prompts A,B,... or repeated --prompt, not both")
    prompts = [p.strip() for p in csv.split(",")] if csv is not None else [p.strip() for p in items]
    if any(not p for p in prompts):
        raise GancraftError("--prompt/--prompts: empty prompt text")
    return prompts
