"""gancraft direction: a semantic editing direction from labelled latents (linear SVM, InterFaceGAN style)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from .. import load
from ..errors import GancraftError
from ..io_util import check_output_path
from ..latent.direction import learn_direction
from ..latent.files import load_direction
from .common import emit_path, force_option, log, naming_options, resolve_device
from .options import ClipOptions, GenerationOptions, clip_options, generation_options
from .paths import InputFile, OutputFile, spec_with_stdin, stem


@click.command("direction")
@click.argument("ckpt", required=False, type=InputFile())
@click.option(
    "-o",
    "--output",
    type=OutputFile(".st"),
    help="Directions file to write (one unit row, usable by sample --edit and render --direction); "
    "'-' writes it to standard output [default: CKPT's (else --latents') name + "
    ".direction.st in the current folder].",
)
@click.option(
    "--latents",
    type=InputFile(),
    default=None,
    help="Latents file from `sample --latents` (w is used; w[:, 0] when stored per layer).",
)
@click.option(
    "--labels",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV of scores or 0/1 labels, matched by a 'seed' column or by row order. Default with "
    "--latents and no other labeller: the .csv beside it.",
)
@click.option("--label-column", default=None, help="Column of --labels to use (default: the only non-seed one).")
@click.option(
    "--seeds",
    default=None,
    metavar="SEEDS",
    help="Sample these seeds from CKPT instead of reading --latents (e.g. 0-1999).",
)
@click.option(
    "--clip",
    "clip_prompts",
    nargs=2,
    default=None,
    metavar="POSITIVE NEGATIVE",
    help="Label by zero-shot CLIP: score = cos(image, POSITIVE) - cos(image, NEGATIVE).",
)
@clip_options(
    model="ViT-B-32",
    weights_help="CLIP weights file (e.g. open_clip_pytorch_model.bin of timm/vit_base_patch32_clip_224.openai). "
    "Default: an earlier open_clip download on this machine.",
    download_help="Allow open_clip to download the OpenAI weights.",
)
@click.option(
    "--classifier",
    type=click.Path(dir_okay=False),
    default=None,
    help="TorchScript classifier: images N x 3 x H x W in [-1, 1] -> scores N or logits N x K.",
)
@click.option("--class-index", type=int, default=None, help="Logit column of --classifier to use.")
@click.option(
    "--domain",
    default=None,
    metavar="NAME",
    help="Domain the labels come from: selects latents of that domain, or samples --seeds in it. "
    "The direction can then be applied to any domain of the model.",
)
@click.option(
    "--fraction",
    type=float,
    default=0.25,
    show_default=True,
    help="Positives = top FRACTION of scores, negatives = bottom FRACTION (0/1 labels: all samples).",
)
@click.option(
    "--val-split",
    type=float,
    default=0.3,
    show_default=True,
    help="Fraction of each class held out to report accuracy.",
)
@click.option(
    "--svm-c", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True, help="SVM regularisation C."
)
@click.option(
    "--orthogonal-to",
    multiple=True,
    metavar="DIRFILE:INDEX",
    help="Project out this direction (conditional editing). Repeatable.",
)
@click.option("--name", default=None, help="Name stored with the direction (default: the label column or prompt).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/validation split.")
@generation_options(
    psi_help="Truncation psi of the sampled latents (--seeds).",
    cutoff=False,
    noise_mode=False,
    batch=16,
    batch_help="Images scored at a time (--clip, --classifier).",
    precision=False,
)
@force_option
def command(
    ckpt: str | None,
    output: str | None,
    latents: str | None,
    labels: str | None,
    label_column: str | None,
    seeds: str | None,
    clip_prompts: tuple[str, str] | None,
    clip: ClipOptions,
    classifier: str | None,
    class_index: int | None,
    domain: str | None,
    fraction: float,
    val_split: float,
    svm_c: float,
    orthogonal_to: tuple[str, ...],
    name: str | None,
    seed: int,
    gen: GenerationOptions,
    force: bool,
) -> None:
    """Train a linear SVM boundary on latents and write its normal as an editing direction.

    Samples are ranked by a score; the top and bottom --fraction become the two classes
    (InterFaceGAN), a held-out part of each gives the accuracy printed on stderr, and the unit
    normal pointing towards higher scores is written. Scores come from a CSV beside the
    latents, from zero-shot CLIP on the generated images, or from your TorchScript classifier
    (the last two need CKPT). The SVM works in w space.

    \b
    Examples:
      gancraft direction --latents faces.npz --labels faces.csv -o smile.st
      gancraft direction ffhq.pkl --seeds 0-1999 --clip "a smiling face" "a face" -o smile.st
      gancraft direction union.st --seeds 0-999 --domain ffhq --classifier pose.pt -o pose.st
      gancraft direction --latents faces.npz --labels age.csv --orthogonal-to smile.st:0 -o age.st
    """
    labellers = [x for x in (labels, clip_prompts, classifier) if x]
    if len(labellers) > 1:
        raise GancraftError("choose one source of labels: --labels, --clip or --classifier")
    if (latents is None) == (seeds is None):
        raise GancraftError("give either --latents FILE or --seeds SEEDS (with CKPT)")
    if labels is None and latents is not None and not labellers:
        beside = Path(latents).with_suffix(".csv")
        if not beside.is_file():
            raise GancraftError(f"no labels: pass --labels CSV, --clip or --classifier (looked for {beside})")
        labels = str(beside)
    if labels is None and not clip_prompts and not classifier:
        raise GancraftError("--seeds needs --clip or --classifier to label the samples")
    if (clip_prompts or classifier or seeds) and ckpt is None:
        raise GancraftError("CKPT is needed to generate images (for --seeds, --clip or --classifier)")
    inputs = tuple(x for x in (ckpt, latents, labels) if x)
    output = output if output is not None else stem(ckpt or latents) + ".direction.st"
    check_output_path(output, force=force, inputs=inputs)
    # the stored record keeps the specs as typed ('-:0' rather than the file standard input became)
    ortho = [replace(load_direction(spec_with_stdin(text), "--orthogonal-to"), source=text) for text in orthogonal_to]
    with naming_options(orthogonal_to="--orthogonal-to"):
        found = learn_direction(
            output,
            load(ckpt) if ckpt is not None else None,
            latents=latents,
            seeds=seeds,
            labels=labels,
            label_column=label_column,
            clip_prompts=clip_prompts,
            clip_model=clip.clip_model,
            clip_weights=clip.clip_weights,
            download_clip=clip.download_clip,
            classifier=classifier,
            class_index=class_index,
            domain=domain,
            fraction=fraction,
            val_split=val_split,
            svm_c=svm_c,
            orthogonal_to=ortho,
            name=name,
            seed=seed,
            psi=gen.psi,
            batch=gen.batch,
            device=resolve_device(gen.device),
            force=force,
            log=log,
        )
    boundary = found.boundary
    val = "n/a" if boundary.val_accuracy is None else f"{boundary.val_accuracy:.3f}"
    log(
        f"svm: {boundary.n_positive} positive / {boundary.n_negative} negative"
        f"{' (0/1 labels)' if boundary.binary_labels else f' (top/bottom {fraction:g})'}; "
        f"train accuracy {boundary.train_accuracy:.3f}, held-out accuracy {val} on {boundary.n_val}"
    )
    if not boundary.converged:
        log("svm: warning: liblinear did not converge; try a smaller --svm-c")
    emit_path(found.path)
