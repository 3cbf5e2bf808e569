"""`gancraft finetune --prompt NAME=TEXT`: text-driven domain vectors (HyperDomainNet's td_single recipe)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from ..errors import GancraftError
from .common import emit_path, log, resolve_device
from .options import clip_options
from .types import primary_name

# the official recipe's encoders (td_single_ffhq.yaml: ViT-B/32 and ViT-B/16)
DEFAULT_CLIP_MODELS = ("ViT-B-32", "ViT-B-16")
# as --domain names (train/methods.py): they become tensor and folder names
_DOMAIN_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# finetune's adversarial options that mean nothing to the text recipe
_ADVERSARIAL_ONLY = (
    "kimg",
    "snap_kimg",
    "gamma",
    "pl_weight",
    "ema_kimg",
    "diffaug",
    "aug",
    "aug_p",
    "ada_target",
    "augpipe",
    "run_dir",
    "resume",
)


def text_vector_options(f):
    """--prompt/--source-prompt/--clip-model/--clip-weights/--download-clip/--steps/--style-mixing/--no-templates."""
    opts = [
        click.option(
            "--prompt",
            "text_prompts",
            multiple=True,
            metavar="NAME=TEXT",
            help="Train domain vector NAME from the text TEXT alone (repeat for several; each is "
            "trained on its own): HyperDomainNet's text-driven single-domain recipe, no "
            "--domain sources and no discriminator.  [default recipe: td_single_ffhq.yaml]",
        ),
        click.option(
            "--source-prompt",
            default="Photo",
            show_default=True,
            help="--prompt: what START makes now (official: Photo).",
        ),
        clip_options(
            model=(),
            several=True,
            model_help="--prompt: open_clip model(s) whose directional losses are summed (repeat). "
            "[default: ViT-B-32 and ViT-B-16, as the official config]",
            weights_help="--prompt: weights file of each --clip-model, in the same order; default: earlier "
            "open_clip downloads found in the local caches.",
            download_help="--prompt: allow open_clip to download OpenAI weights.",
        ),
        click.option(
            "--steps",
            type=int,
            default=300,
            show_default=True,
            help="--prompt: optimisation steps per vector (official: 300; batch 4, lr 0.1 unless "
            "--batch/--lr say otherwise).",
        ),
        click.option(
            "--style-mixing",
            type=float,
            default=0.9,
            show_default=True,
            help="--prompt: probability that a batch mixes two latents at a random layer.",
        ),
        click.option(
            "--no-templates",
            is_flag=True,
            help="--prompt: use the bare prompts instead of averaging them over the 79 ImageNet prompt templates.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def parse_prompts(specs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text:
            raise GancraftError(f"--prompt {spec!r}: expected NAME=TEXT, e.g. pixar='3D Render in the Style of Pixar'")
        if not _DOMAIN_NAME.match(name):
            raise GancraftError(f"--prompt {name}: names may use letters, digits, '-' and '_' only")
        if name in out:
            raise GancraftError(f"--prompt {name}: given twice")
        out[name] = text
    return out


def check_text_mode(ctx: click.Context, kw: dict[str, Any]) -> None:
    """Refuse options of the adversarial recipe given together with --prompt."""
    given = [
        n
        for n in ("domains", "method_spec", "truncation_psi", *_ADVERSARIAL_ONLY)
        if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        opt = next(primary_name(p) for p in ctx.command.params if p.name == given[0])
        raise GancraftError(
            f"{opt} belongs to adversarial fine-tuning; --prompt trains text-driven vectors "
            "(use --steps, --batch, --lr)"
        )
    if ctx.get_parameter_source("params") == click.core.ParameterSource.COMMANDLINE and kw["params"] != "domain-vector":
        raise GancraftError("--prompt trains domain vectors only; drop --params or use --params domain-vector")


def run_text_vectors(start: str, specs: tuple[str, ...], output: str | None, kw: dict[str, Any]) -> None:
    from ..checkpoint import load, save
    from ..io_util import check_output_path
    from ..metrics import clip as clip_mod
    from ..train import text_domain as td

    prompts = parse_prompts(specs)
    settings = td.TextVectorSettings(
        steps=kw["steps"],
        batch=kw["batch"] if kw["batch"] is not None else 4,
        lr=kw["lr"] if kw["lr"] is not None else 0.1,
        source_prompt=kw["source_prompt"],
        style_mixing=kw["style_mixing"],
        templates=not kw["no_templates"],
        seed=kw["seed"],
        modulation=kw["modulation"],
    ).validate()
    for text in prompts.values():
        td.check_target(text, settings.source_prompt)
    models = kw["clip"].clip_model or DEFAULT_CLIP_MODELS
    weights = kw["clip"].clip_weights
    if weights and len(weights) != len(models):
        raise GancraftError(f"--clip-weights: give one file per CLIP model ({', '.join(models)}), got {len(weights)}")
    output = output or f"{Path(start).name.split('.')[0]}.text-vector.st"
    check_output_path(output, force=kw["force"], inputs=(start,))
    dev = resolve_device(kw["device"])
    parent = load(start)
    td.check_vector_parent(parent, "text-driven domain vectors")
    clips = [
        clip_mod.load_clip(m, weights=weights[i] if weights else None, device=dev, download=kw["clip"].download_clip)
        for i, m in enumerate(models)
    ]
    results = {}
    for name, text in prompts.items():
        log(f"finetune: domain vector {name!r} <- {text!r} ({len(models)} CLIP: {', '.join(models)})")
        results[name] = td.train_text_vector(parent, text, clips, settings, device=dev, progress=not kw["quiet"])
        log(
            f"finetune: {name}: direction {results[name].log[0]['direction']:.4f} -> "
            f"{results[name].log[-1]['direction']:.4f}"
        )
    ckpt = td.vector_checkpoint(
        parent,
        results,
        {"start": start, "prompts": prompts, "clip_models": list(models), "clip": [c.name for c in clips]},
        inputs=[start],
    )
    emit_path(save(ckpt, output, force=kw["force"], inputs=(start,)))
