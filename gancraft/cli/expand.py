"""gancraft expand: add new domains to a generator along its dormant SeFA directions."""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from ..io_util import check_output_path
from .common import device_option, emit_path, force_option, log, naming_options, resolve_device
from .options import ClipOptions, batch_option, clip_options
from .paths import InputFile, NamedOutput, derived_name, stem
from .types import IntList

EPILOG = """\b
Examples:
  gancraft sefa face.st -o face-sefa.st
  gancraft expand face.st --sefa face-sefa.st --task cat:model:cat.st --task dog:model:dog.st -o face-x.st
  gancraft expand ffhq.pkl --task sketch:clip:"a pencil sketch" --task me:images:photos/ \\
      --clip-weights b32.bin --clip-weights b16.bin -o ffhq-x.st --report report.txt
  gancraft sample face-x.st --domain cat --seeds 0-7 -o samples/
  gancraft sample face-x.st --domain cat+dog --seeds 0-7 -o mix/

\b
Task kinds (NAME:KIND:ARG; NAME becomes the domain's name):
  clip    ARG is a target prompt, or 'SOURCE->TARGET' (StyleGAN-NADA directional loss)
  images  ARG is a folder of a few images (MyStyle: inverted, then reconstructed)
  model   ARG is a model of the same resolution, e.g. a fine-tuned child of CKPT:
          for the same z the new domain learns to give that model's image
"""


@click.command(epilog=EPILOG, context_settings={"max_content_width": 100})
@click.argument("ckpt", type=InputFile())
@click.option(
    "--task",
    "tasks",
    multiple=True,
    required=True,
    metavar="NAME:KIND:ARG",
    help="A new domain (repeat for several). KIND: clip, images or model (see below).",
)
@click.option(
    "-o",
    "--output",
    type=NamedOutput(),
    help="Expanded model (.st) [default: CKPT's name and the task names joined by '+' with .expand.st, "
    "e.g. face+cat+dog.expand.st, in the current folder]. Not '-': the run folder is named after it.",
)
@click.option(
    "--sefa",
    "sefa_path",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="DIRS",
    help="Directions file from 'gancraft sefa' (default: factorise now as the official code does: "
    "every modulation except the toRGB ones after 4x4, i.e. `sefa --layers all`; the paper's "
    "text says the first layer only: `sefa --layers first`).",
)
@click.option(
    "--directions",
    type=IntList("direction indices (e.g. 511,510)", words=("dormant",)),
    default=None,
    metavar="I,J,...|dormant[:CSV]",
    help="Directions to repurpose, one per task in order: indices; 'dormant': the ones that change "
    "the images least, measured now (--dormant-samples samples moved by +-DISTANCE, LPIPS, else "
    "pixels); 'dormant:CSV': least mean change in a 'sefa --measure' CSV of the same directions "
    "[default: the last ones, smallest singular value].",
)
@click.option(
    "--dormant-samples",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    metavar="N",
    help="Samples per direction when --directions dormant measures.",
)
@click.option(
    "--distance",
    type=float,
    default=20.0,
    show_default=True,
    help="s: how far each repurposed subspace lies from the base one (paper: 10-30 useful).",
)
@click.option("--replay-l2", type=float, default=10.0, show_default=True, help="Weight of base-subspace replay L2.")
@click.option(
    "--replay-lpips", type=float, default=10.0, show_default=True, help="Weight of base-subspace replay LPIPS."
)
@click.option(
    "--source-weight",
    type=float,
    default=1.0,
    show_default=True,
    help="Weight of the original adversarial G loss on the base subspace (needs D in CKPT).",
)
@click.option("--expansion-weight", type=float, default=1.0, show_default=True, help="Weight of the task losses.")
@click.option(
    "--source-text", default="a photo", show_default=True, help="Source prompt of clip tasks that give only a target."
)
@click.option(
    "--templates/--no-templates",
    default=True,
    show_default=True,
    help="Clip tasks: the text direction is the mean over the official code's 79 ImageNet prompt "
    "templates ('a sketch of a {}.', ...); --no-templates uses the bare prompts.",
)
@clip_options(
    model=("ViT-B-32", "ViT-B-16"),
    several=True,
    model_help="CLIP models for clip tasks (repeat; NADA uses both defaults; their losses are summed).",
    weights_help="Weights for each --clip-model, in order (default: local open_clip caches). A file is taken "
    "as OpenAI's, with QuickGELU, unless its name says another source (laion2b..., datacomp...).",
    download_help="Let open_clip download missing CLIP weights.",
)
@click.option(
    "--lpips-weights",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="PATH",
    help="LPIPS backbone (torchvision alexnet) weights; default: torch hub cache, else pixel losses only.",
)
@click.option("--invert-steps", type=int, default=300, show_default=True, help="Inversion steps for images tasks.")
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Evaluate as the paper does and write the table to FILE, parent before, expanded model "
    "after: FID of the base subspace against the parent, of each model task's domain against "
    "its model; a linear domain probe on the features (parent, models, images) labelling every "
    "subspace's samples; for clip tasks the share nearer the target prompt (CLIP zero-shot).",
)
@click.option(
    "--report-n",
    type=click.IntRange(min=10),
    default=1000,
    show_default=True,
    metavar="N",
    help="Samples per set for --report (the paper: 50000; fewer raise every FID, the floor line says by how much).",
)
@click.option(
    "--report-extractor",
    default="inception",
    show_default=True,
    metavar="NAME|PATH",
    help="Features for --report: inception (from the local cache; 'gancraft weights' gets it), "
    "clip, or a TorchScript file as 'gancraft fid --extractor' takes.",
)
@click.option(
    "--report-real",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Real images of CKPT's domain: --report adds the paper's quality check (Sec. 4.5), the base "
    "subspace's FID to them beside the parent's own (all of W).",
)
@click.option(
    "--kimg",
    type=float,
    default=None,
    help="Training length in thousands of images [default: 4]. With --resume: a new total length "
    "(default: the run's own).",
)
@batch_option(default=32, help="Latents per step, split over the tasks (each task gets about batch/tasks).")
@click.option(
    "--lr",
    type=float,
    default=0.001,
    show_default=True,
    help="Adam learning rate (official stylegan2 config; lazy path length makes G's 0.0008, betas (0, 0.99^0.8)).",
)
@click.option(
    "--ema",
    "ema_kimg",
    type=float,
    default=10.0,
    show_default=True,
    metavar="KIMG",
    help="EMA half-life in kimg; the output is G_ema (0: the trained generator itself).",
)
@click.option(
    "--snap",
    "snap_kimg",
    type=float,
    default=1.0,
    show_default=True,
    metavar="KIMG",
    help="Snapshot (weights, optimiser state, per-domain grid) every KIMG.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (runs are reproducible).")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for snapshots, log.jsonl and grids (default: OUTPUT's name + '-run').",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --run-dir from its newest snapshot. --kimg sets a new total length; --lr and "
    "--snap given with it change the run from that step on (recorded in run.json and the history); other "
    "training options must match the run's.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@device_option
@force_option
def command(
    ckpt: str,
    tasks: tuple[str, ...],
    output: str | None,
    sefa_path: str | None,
    directions: list[int] | str | None,
    dormant_samples: int,
    distance: float,
    replay_l2: float,
    replay_lpips: float,
    source_weight: float,
    expansion_weight: float,
    source_text: str,
    templates: bool,
    clip: ClipOptions,
    lpips_weights: str | None,
    invert_steps: int,
    report: str | None,
    report_n: int,
    report_extractor: str,
    report_real: str | None,
    kimg: float | None,
    batch: int,
    lr: float,
    ema_kimg: float,
    snap_kimg: float,
    seed: int,
    run_dir: str | None,
    resume: bool,
    quiet: bool,
    device: str | None,
    force: bool,
) -> None:
    """Expand CKPT with new domains, each on a repurposed dormant direction (Domain Expansion).

    The base subspace keeps CKPT's domain (replay against a frozen copy); every task trains only
    on latents moved by --distance along its own direction. The output's domain table lets
    'sample --domain NAME', 'render --domains base,NAME' and compositions 'a+b' pick domains.
    """
    from ..checkpoint import load
    from ..train.expansion import ExpansionSettings, check_tasks, expand, parse_task
    from ..train.loop import TrainOptions

    dev = resolve_device(device)
    check_tasks([parse_task(t) for t in tasks])
    if output is None:
        output = derived_name([stem(ckpt), *(t.split(":", 1)[0] for t in tasks)], "expand")
    out = check_output_path(output, force, inputs=(ckpt,))
    settings = ExpansionSettings(
        distance, replay_l2, replay_lpips, source_weight, expansion_weight, source_text, templates, invert_steps
    )
    opts = TrainOptions(
        kimg=4.0 if kimg is None else kimg,
        batch=batch,
        snap_kimg=snap_kimg,
        seed=seed,
        lr_g=lr,
        lr_d=lr,
        ema_kimg=ema_kimg,
        gamma=10.0,
    )
    flags = naming_options(
        directions="--directions",
        clip_weights="--clip-weights",
        distance="--distance",
        replay_l2="--replay-l2",
        replay_lpips="--replay-lpips",
        source_weight="--source-weight",
        expansion_weight="--expansion-weight",
        invert_steps="--invert-steps",
        report_real="--report-real",
    )
    with flags:
        written = expand(
            load(ckpt),
            tasks,
            out,
            directions_file=sefa_path,
            directions=directions,
            dormant_samples=dormant_samples,
            settings=settings,
            clip_models=clip.clip_model,
            clip_weights=clip.clip_weights or (),
            download_clip=clip.download_clip,
            lpips_weights=lpips_weights,
            options=opts,
            run_dir=run_dir,
            resume=resume,
            resume_kimg=kimg if resume else None,
            resume_options=_given(
                lr_g=("lr", lr),
                lr_d=("lr", lr),
                snap_kimg=("snap_kimg", snap_kimg),
                batch=("batch", batch),
                ema_kimg=("ema_kimg", ema_kimg),
            )
            if resume
            else None,
            report=report,
            report_n=report_n,
            report_extractor=report_extractor,
            report_real=report_real,
            device=dev,
            force=force,
            progress=not quiet,
            log=log,
        )
    for path in written:
        emit_path(path)


def _given(**fields: tuple[str, Any]) -> dict[str, Any]:
    """TrainOptions field -> value, for the (parameter, value) pairs typed on this command line: the
    defaults are not None, so only the parameter's source tells a given value from a default."""
    ctx = click.get_current_context()
    return {f: v for f, (p, v) in fields.items() if ctx.get_parameter_source(p) == ParameterSource.COMMANDLINE}
