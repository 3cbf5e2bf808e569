"""gancraft direction: a semantic editing direction from labelled latents (linear SVM, InterFaceGAN style)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from .. import load
from ..errors import GancraftError
from ..io_util import check_output_path, display_name, sha256_file
from ..latent import svm
from ..latent.domains import resolve_domain
from ..latent.files import load_direction, load_latents
from ..latent.generate import map_latents
from ..latent.seeds import parse_seeds, z_from_seeds
from ..latent.sefa import save_directions
from .common import emit_path, force_option, log, resolve_device
from .options import ClipOptions, GenerationOptions, clip_options, generation_options
from .paths import InputFile, OutputFile, spec_with_stdin, stem


def _domain_rows(domains: list[str], domain: str | None, path: str) -> np.ndarray:
    """Row indices of the latents belonging to --domain (all rows without one)."""
    if domain is None:
        return np.arange(len(domains))
    labels = np.asarray(domains)
    rows = np.flatnonzero(labels == domain)
    if rows.size == 0:
        known = ", ".join(sorted(set(domains) - {""})) or "none recorded"
        raise GancraftError(f"{path}: no latents of domain {domain!r} (domains in the file: {known})")
    return rows


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
    dev = resolve_device(gen.device)

    scorer = None
    if labels is None:
        if clip_prompts:
            from ..metrics.clip import load_clip

            model = load_clip(clip.clip_model, clip.clip_weights, device=dev, download=clip.download_clip)
            log(f"labels: zero-shot {model.description}: '{clip_prompts[0]}' vs '{clip_prompts[1]}'")
            scorer = svm.clip_scorer(model, *clip_prompts)
            label_desc = {"kind": "clip", "model": model.name, "positive": clip_prompts[0], "negative": clip_prompts[1]}
            default_name = clip_prompts[0]
        else:
            ts = svm.load_classifier(classifier, dev)
            scorer = svm.classifier_scorer(ts, classifier, class_index)
            label_desc = {
                "kind": "classifier",
                "file": str(classifier),
                "sha256": sha256_file(classifier),
                "class_index": class_index,
            }
            default_name = Path(classifier).stem + (f"[{class_index}]" if class_index is not None else "")

    checkpoint = G = None
    if ckpt is not None:
        checkpoint = load(ckpt)
        G = checkpoint.generator(device=dev)
    spec = resolve_domain(checkpoint, domain, G) if (domain and checkpoint is not None and seeds) else None
    if latents is not None:
        lat = load_latents(latents)
        rows = _domain_rows(lat.domains, domain, latents)
        w_all = lat.w[rows]
        seed_array = lat.seeds[rows] if np.all(lat.seeds[rows] >= 0) else None
        ws = torch.from_numpy(np.ascontiguousarray(w_all))
        if G is not None:
            if ws.shape[-1] != G.w_dim:
                raise GancraftError(f"{latents}: w has {ws.shape[-1]} dimensions, {ckpt} has w_dim {G.w_dim}")
            if ws.shape[1] == 1:
                ws = ws.repeat(1, G.num_ws, 1)
            elif ws.shape[1] != G.num_ws:
                raise GancraftError(f"{latents}: w holds {ws.shape[1]} layers, {ckpt} uses {G.num_ws}")
            # stored w already carries the domain's class and subspace; a domain vector acts in synthesis
            spec = resolve_domain(checkpoint, domain, G) if domain and checkpoint.domains else None
        w_train = w_all[:, 0].astype(np.float64)
    else:
        seed_array = np.array(parse_seeds(seeds))
        ws = map_latents(G, z_from_seeds(seed_array, G.z_dim), spec, gen.psi)
        w_train = ws[:, 0].cpu().double().numpy()  # float64 only on the CPU (MPS has none)

    ortho = None
    if orthogonal_to:
        vectors = [
            load_direction(spec_with_stdin(spec_text), "--orthogonal-to").vector.double().numpy()
            for spec_text in orthogonal_to
        ]
        if any(v.size != w_train.shape[1] for v in vectors):
            raise GancraftError(f"--orthogonal-to: directions must have {w_train.shape[1]} dimensions like the latents")
        ortho = np.stack(vectors)

    if scorer is None:
        scores, column = svm.read_label_csv(labels, seed_array, w_train.shape[0], label_column)
        label_desc = {"kind": "csv", "file": str(labels), "sha256": sha256_file(labels), "column": column}
        default_name = column
    else:
        scores = svm.score_latents(G, ws.to(dev), scorer, gen.batch, spec)

    boundary = svm.train_boundary(
        w_train, scores, fraction=fraction, val_split=val_split, C=svm_c, seed=seed, orthogonal_to=ortho
    )
    val = "n/a" if boundary.val_accuracy is None else f"{boundary.val_accuracy:.3f}"
    log(
        f"svm: {boundary.n_positive} positive / {boundary.n_negative} negative"
        f"{' (0/1 labels)' if boundary.binary_labels else f' (top/bottom {fraction:g})'}; "
        f"train accuracy {boundary.train_accuracy:.3f}, held-out accuracy {val} on {boundary.n_val}"
    )
    if not boundary.converged:
        log("svm: warning: liblinear did not converge; try a smaller --svm-c")
    meta = {
        "kind": "svm",
        "names": [name or default_name],
        "labels": label_desc,
        "domain": domain,
        "fraction": fraction,
        "val_split": val_split,
        "svm_c": svm_c,
        "orthogonal_to": list(orthogonal_to),
        "latents": None if latents is None else {"path": display_name(latents), "sha256": sha256_file(latents)},
        "seeds": None if seeds is None else seeds,
        **boundary.summary(),
    }
    if ckpt is not None:
        meta["source"] = {"path": display_name(ckpt), "sha256": sha256_file(ckpt)}
    direction = torch.from_numpy(boundary.direction).float().unsqueeze(0)
    emit_path(save_directions(output, direction, meta, force=force, inputs=inputs))
