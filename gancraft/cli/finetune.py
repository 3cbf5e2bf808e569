"""gancraft finetune: GAN Cocktail stage 2 (union model) and the baselines of its tables."""

from __future__ import annotations

from typing import Any

import click

from ..errors import GancraftError
from ..train.methods import help_text as method_help
from .common import modulation_option
from .finetune_text import check_text_mode, run_text_vectors, text_vector_options
from .options import trunc_option
from .paths import InputFile, NamedOutput, stem
from .train import build_options, train_and_save, training_options


def _parse_domains(specs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise GancraftError(f"--domain {spec!r}: expected NAME=SOURCE_CHECKPOINT")
        if name in out:
            raise GancraftError(f"--domain {name}: given twice")
        out[name] = path
    return out


@click.command("finetune")
@click.argument("start", type=InputFile())
@click.option(
    "--domain",
    "domains",
    multiple=True,
    metavar="NAME=SOURCE",
    help="A domain of the union model and the source generator whose images define it (repeat; "
    "required unless --prompt).",
)
@click.option(
    "-o",
    "--output",
    type=NamedOutput(),
    help="Checkpoint to write [default: START's name + '.' + the method + .st, e.g. avg.union.st, in the "
    "current folder]. Not '-': the run folder is named after it.",
)
@click.option(
    "--method",
    "method_spec",
    default="union",
    show_default=True,
    help=method_help("finetune"),
)
@click.option(
    "--params",
    type=click.Choice(["all", "domain-vector"]),
    default="all",
    show_default=True,
    help="domain-vector: train only one modulation vector per domain (HyperDomainNet); G stays frozen.",
)
@trunc_option("truncation_psi", help="Truncation psi of the source generators' images.")
@click.option(
    "--fisher-samples",
    type=click.IntRange(min=1),
    default=50000,
    show_default=True,
    help="ewc: generated images the Fisher information is estimated from (official: 50000).",
)
@modulation_option
@training_options
@text_vector_options
def command(
    start: str,
    domains: tuple[str, ...],
    output: str | None,
    method_spec: str,
    params: str,
    truncation_psi: float,
    fisher_samples: int,
    modulation: str,
    **kw: Any,
) -> None:
    """Turn START into one class-conditional union GAN, trained only on images the source
    generators produce on the fly. Training starts from START's G_ema (G_ema starts equal to G).

    START is normally the average of rooted models (`gancraft root`, `gancraft average`): it
    already has one class per domain, and the --domain names must be its classes (in any
    order; its class table decides which label each source gets). An unconditional START
    (TransferGAN and the other baselines) is made conditional first, as the official code does:
    D becomes a projection discriminator whose output rows start as START's D's and whose class
    mapping starts at random, so each class starts as START's D times a factor of its own; G gets
    a class embedding and new fc0 columns at random, so each class starts as START's generator
    moved along its own random class pathway (zeroing those columns gives START's G back). The
    same conversion starts every rooting run (`gancraft root`). Domain names are
    recorded, so `gancraft sample union.st --domain cat` works. Defaults are the official
    union_gan config: batch 32, R1 gamma 10, EMA half-life 10 kimg, lr 0.002, path length 2.

    Domain vectors (HyperDomainNet: G frozen, one scale per conv input channel per domain)
    come two ways. --params domain-vector with --domain NAME=SOURCE trains them adversarially
    against SOURCE's images (gancraft's variant, with a discriminator). --prompt NAME=TEXT
    trains them from text alone with the official td_single recipe (MACderRu/HyperDomainNet,
    td_single_ffhq.yaml): directional CLIP loss summed over ViT-B/32 and ViT-B/16, text
    averaged over 79 ImageNet prompt templates, Adam lr 0.1 betas (0.9, 0.999), 300 steps of
    batch 4, style mixing 0.9, vector starting at zero. As in the official code (the paper does
    not say), source and adapted images get independent random noise, which is what keeps the
    first step's loss defined. Both apply the vectors in the official code's order, after
    demodulation (--modulation-order), and record it in the checkpoint.

    \b
    Examples:
      gancraft finetune avg.st --domain face=face.st --domain cat=cat.st -o union.st --kimg 50
      gancraft finetune face.st --domain face=face.st --domain cat=cat.st --method transfer -o tgan.st
      gancraft finetune face.st --domain face=face.st --domain cat=cat.st --method freeze-d=4 -o fd.st
      gancraft finetune face.st --domain face=face.st --domain cat=cat.st --method ewc=1e4 -o ewc.st
      gancraft finetune face.st --domain toon=toon.st --params domain-vector -o toon.st
      gancraft finetune ffhq.pkl --prompt pixar='3D Render in the Style of Pixar' \\
          --clip-weights ViT-B-32.pt --clip-weights ViT-B-16.pt -o ffhq-pixar.st
    """
    from ..checkpoint import load
    from ..train.methods import build, parse_method

    ctx = click.get_current_context()
    if kw["text_prompts"]:
        check_text_mode(ctx, {"params": params, **kw})
        return run_text_vectors(start, kw["text_prompts"], output, {"modulation": modulation, **kw})
    if params != "domain-vector" and ctx.get_parameter_source("modulation") == click.core.ParameterSource.COMMANDLINE:
        raise GancraftError(
            "--modulation-order applies to domain vectors: use it with --params domain-vector or --prompt"
        )
    if not domains:
        raise GancraftError("give at least one --domain NAME=SOURCE (or --prompt NAME=TEXT for text-driven vectors)")
    method, value = parse_method(method_spec)
    if output is None:
        output = f"{stem(start)}.{method.name}{'-dv' if params == 'domain-vector' else ''}.st"
    paths = _parse_domains(domains)
    sources = {n: load(p) for n, p in paths.items()}
    um = build(
        method,
        value,
        params,
        load(start),
        sources,
        seed=kw["seed"],
        truncation_psi=truncation_psi,
        fisher_samples=fisher_samples,
        modulation=modulation,
    )
    opts = build_options(kw, batch=32, kimg=50.0, snap_kimg=10.0, lr=0.002, gamma=10.0, ema_kimg=10.0)
    train_and_save(
        um,
        opts,
        output,
        kw,
        "finetune",
        {
            "start": start,
            "domains": paths,
            "method": method_spec,
            "params": params,
            **({"modulation": modulation} if params == "domain-vector" else {}),
        },
        inputs=[start, *paths.values()],
    )
