"""gancraft expand: add new domains to a generator along its dormant SeFA directions."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..errors import GancraftError
from ..io_util import check_output_path
from .common import device_option, emit_path, force_option, log, resolve_device
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


def _measured_changes(
    spec: str, dirs, singular_values, G, distance: float, samples: int, lpips_weights: str | None, device, quiet: bool
) -> np.ndarray:
    """Each direction's mean image change: from a `sefa --measure` CSV, or measured now at --distance."""

    from ..latent.generate import map_latents
    from ..latent.seeds import z_from_seeds
    from ..latent.sefa import measure_directions, read_measure_csv
    from ..metrics.perceptual import perceptual_metric

    if spec.startswith("dormant:"):
        path = spec.split(":", 1)[1]
        changes, svs = read_measure_csv(path)
        if changes.size != dirs.shape[0]:
            raise GancraftError(
                f"--directions {spec}: the CSV measures {changes.size} directions, the directions have {dirs.shape[0]}"
            )
        # the CSV keeps 6 significant digits; other singular values mean another model or factorisation
        if singular_values is not None and not np.allclose(svs, singular_values.numpy(), rtol=1e-4, atol=1e-6):
            raise GancraftError(
                f"--directions {spec}: its singular values are not those of the directions "
                "(measured on another model or --layers?)"
            )
        log(f"dormancy: mean change per direction from {path}")
        return changes
    metric = perceptual_metric(lpips_weights, device=device)
    G = G.to(device)
    ws = map_latents(G, z_from_seeds(list(range(samples)), G.z_dim))
    log(
        f"dormancy: measuring {dirs.shape[0]} directions on {samples} samples moved by +-{distance:g} "
        f"({metric.description})"
    )
    changes, _ = measure_directions(G, dirs, ws, distance, metric, progress=not quiet)
    return changes


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
@click.option("--kimg", type=float, default=4.0, show_default=True, help="Training length in thousands of images.")
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
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its newest snapshot.")
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
    kimg: float,
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
    from ..latent.files import load_directions
    from ..latent.sefa import sefa
    from ..latent.subspace import choose_directions, expansion_table, least_changing
    from ..metrics.perceptual import backbone_cache_path, load_lpips, missing_lpips_message
    from ..train.expansion import (
        ExpansionMethod,
        ExpansionSettings,
        check_parent,
        check_tasks,
        finish_expansion,
        parse_task,
        run_expansion,
    )
    from ..train.loop import TrainOptions, run_dir_for

    dev = resolve_device(device)
    specs = [parse_task(t) for t in tasks]
    check_tasks(specs)
    if output is None:
        output = derived_name([stem(ckpt), *(t.split(":", 1)[0] for t in tasks)], "expand")
    out = check_output_path(output, force, inputs=(ckpt,))
    extractor = None
    if report is not None:
        from ..metrics.features import load_extractor

        check_output_path(report, force)
        # before training, so that missing weights cost no run
        extractor = load_extractor(report_extractor, device=dev)
    settings = ExpansionSettings(
        distance, replay_l2, replay_lpips, source_weight, expansion_weight, source_text, templates, invert_steps
    ).validate()
    parent = load(ckpt)
    check_parent(parent)
    G = parent.generator()
    if sefa_path is not None:
        loaded = load_directions(sefa_path)
        dirs, singular_values = loaded.directions, loaded.singular_values
        if dirs.shape[1] != G.w_dim:
            raise GancraftError(f"{sefa_path}: directions have {dirs.shape[1]} dimensions, {ckpt} has w_dim {G.w_dim}")
        source = str(sefa_path)
    else:
        factorised = sefa(G, "all")
        dirs, singular_values = factorised.directions, factorised.singular_values
        source = "sefa --layers all (computed by expand)"
        log(f"no --sefa given: factorised {ckpt}'s modulations (all but the toRGB ones after 4x4)")
    if isinstance(directions, str):  # 'dormant' or 'dormant:CSV'; indices come as a list
        changes = _measured_changes(
            directions, dirs, singular_values, G, distance, dormant_samples, lpips_weights, dev, quiet
        )
        indices = least_changing(changes, len(specs))
        source += f"; directions by measured dormancy ({directions})"
        log("least image change: " + ", ".join(f"direction {k} ({changes[k]:.4g})" for k in indices))
    else:
        indices = choose_directions(dirs.shape[0], len(specs), directions)
    table = expansion_table([t.name for t in specs], dirs, indices, distance)
    log("repurposing " + ", ".join(f"{t.name}: direction {k}" for t, k in zip(specs, indices)))

    lpips = load_lpips(lpips_weights, device=dev)
    if lpips is None:
        log("LPIPS unavailable: replay and reconstruction use pixel losses only (" + missing_lpips_message() + ")")
    else:
        log(f"LPIPS: alex, ImageNet backbone {lpips_weights or backbone_cache_path('alex')}")
    clips = []
    if any(t.kind == "clip" for t in specs):
        from ..metrics.clip import load_clip

        clip_models, clip_weights = clip.clip_model, clip.clip_weights
        if clip_weights and len(clip_weights) != len(clip_models):
            raise GancraftError(
                f"--clip-weights: {len(clip_weights)} files for {len(clip_models)} --clip-model; "
                "give one per model, in order"
            )
        for i, name in enumerate(clip_models):
            clips.append(
                load_clip(
                    name, weights=clip_weights[i] if clip_weights else None, device=dev, download=clip.download_clip
                )
            )
            log(f"CLIP: {clips[-1].description}")

    method = ExpansionMethod(parent, specs, table, settings, lpips=lpips, clips=clips, directions_source=source)
    opts = TrainOptions(
        kimg=kimg, batch=batch, snap_kimg=snap_kimg, seed=seed, lr_g=lr, lr_d=lr, ema_kimg=ema_kimg, gamma=10.0
    )
    rdir = run_dir_for(out, run_dir)
    trainer = run_expansion(method, opts, rdir, dev, resume=resume, progress=not quiet)
    inputs = [ckpt] + ([sefa_path] if sefa_path else []) + [t.arg for t in specs if t.kind == "model"]
    written = finish_expansion(trainer, out, {"tasks": list(tasks)}, inputs, force=force)
    emit_path(written)
    if report is not None:
        from ..io_util import atomic_write
        from ..train.expansion_report import expansion_report, format_report

        rows, floor = expansion_report(method, trainer.G_ema, extractor, n=report_n, seed=seed)
        text = format_report(rows, floor, report_n, extractor.name)
        with atomic_write(report, force=force) as tmp:
            Path(tmp).write_text(text)
        log(text.rstrip())
        emit_path(report)
