"""gancraft convert: rewrite a checkpoint in another format."""

from __future__ import annotations

import click

from ..checkpoint import load, save
from ..checkpoint.clamp import DEFAULT_SAMPLES
from ..checkpoint.formats import get_writer, writer_names, writers
from ..errors import GancraftError
from ..latent.hyperdomainnet import with_official_vectors
from .common import emit_path, force_option, log, resolve_device
from .paths import InputFile, OutputFile, stem

_SUFFIXES = [f"{f.suffix} ({f.name})" for f in writers()]
_SUFFIXES_HELP = ", ".join(_SUFFIXES[:-1]) + " or " + _SUFFIXES[-1]
_TO_HELP = "; ".join(f"{f.name}: {f.summary}" for f in writers()) + "."


@click.command("convert")
@click.argument("src", type=InputFile(dir_okay=True))
@click.option(
    "-o",
    "--output",
    type=OutputFile(),
    help="File to write; '-' writes it to standard output "
    f"[default: SRC's name with {_SUFFIXES_HELP}, in the current folder].",
)
@click.option("--to", "to", type=click.Choice(writer_names()), default="native", show_default=True, help=_TO_HELP)
@click.option(
    "--allow-custom-channels",
    is_flag=True,
    help="rosinality only: write a channel layout no channel_multiplier produces (the loading code "
    "must then be given the same channel table).",
)
@click.option(
    "--clamp-samples",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help=f"rosinality only: latents (seed 0) on which to check that conv_clamp never engages "
    f"[default: {DEFAULT_SAMPLES}].",
)
@click.option(
    "--allow-clamp",
    is_flag=True,
    help="rosinality only: convert even when conv_clamp engages (rosinality never clamps, so images then "
    "differ where it did).",
)
@click.option(
    "--fresh-d",
    is_flag=True,
    help="nvidia only: when SRC has no discriminator, add a newly initialised one (NVIDIA's loader "
    "requires a D; fine for generating and fine-tuning, not for resuming training).",
)
@click.option(
    "--domain-vector",
    "domain_vectors",
    multiple=True,
    metavar="NAME=FILE",
    help="native only: add the domain vector in FILE, a checkpoint of the official HyperDomainNet code "
    "(MACderRu/HyperDomainNet; text-driven, model_type 'parameterization', patch 'cin_mult'), as domain "
    "NAME (repeatable). Its conv_0, conv_1, ... scale SRC's conv layers in synthesis order, after "
    "demodulation as the official code applies them. Read as data (torch.load weights_only).",
)
@force_option
def command(
    src: str,
    output: str | None,
    to: str,
    allow_custom_channels: bool,
    clamp_samples: int | None,
    allow_clamp: bool,
    fresh_d: bool,
    domain_vectors: tuple[str, ...],
    force: bool,
) -> None:
    """Convert SRC (any supported format) to a native, rosinality or NVIDIA checkpoint.

    A model trained with conv_clamp (every stylegan2-ada-pytorch model) goes to rosinality format
    only when the clamp never engages on --clamp-samples generated images: the largest
    activation before the clamp is printed, and the conversion is refused (unless --allow-clamp)
    when it exceeds the clamp.

    An NVIDIA pickle stores each network's constructor arguments and tensors as data and names
    NVIDIA's classes by import path; it carries no NVIDIA source, so loading it needs their
    stylegan2-ada-pytorch or stylegan3 checkout on the path, as their tools have anyway.

    StyleGAN3 models convert --to native only: rosinality's code has no StyleGAN3 network, and
    their NVIDIA pickle is the file they came from.

    \b
    Examples:
      gancraft convert network-snapshot.pkl -o ffhq.st
      gancraft convert ffhq.pkl                       # writes ffhq.st
      gancraft convert ffhq.pkl -o - | gancraft sample - --seeds 0-3 -o out/
      gancraft convert ffhq.st --to rosinality -o ffhq.pt
      gancraft convert ada-snapshot.pkl --to rosinality --clamp-samples 1000 -o ada.pt
      gancraft convert nada.pt --to nvidia --fresh-d -o nada.pkl
      gancraft convert stylegan2-ffhq-config-f.pt --domain-vector pixar=pixar.pt -o ffhq+pixar.st
    """
    fmt = get_writer(to)
    given = {
        "allow_custom_channels": allow_custom_channels,
        "clamp_samples": clamp_samples,
        "allow_clamp": allow_clamp,
        "fresh_d": fresh_d,
    }
    _check_format_options(to, given)
    vectors = _vector_files(domain_vectors)
    if vectors and to != "native":
        raise GancraftError(f"--domain-vector applies to --to native only, not --to {to}")
    if output is None:
        output = stem(src) + fmt.suffix
    ckpt = load(src)
    if ckpt.family not in fmt.families:
        raise GancraftError(
            f"{src}: a StyleGAN3 model converts --to native only (rosinality's code has no StyleGAN3 "
            f"network, and the model's NVIDIA pickle is the file it came from)"
        )
    if vectors:
        ckpt = with_official_vectors(ckpt, vectors)
    params = {"to": to, "from": ckpt.source_format} | ({"domain_vectors": vectors} if vectors else {})
    ckpt = ckpt.with_operation("convert", params, [src, *vectors.values()])
    options, note = fmt.prepare(ckpt, device=resolve_device(None), **{k: given[k] for k in fmt.options})
    if note is not None:
        log(note)
    emit_path(save(ckpt, output, to=to, force=force, inputs=(src, *vectors.values()), **options))


def _vector_files(specs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise GancraftError(f"--domain-vector {spec!r}: expected NAME=FILE, e.g. pixar=pixar.pt")
        if name in out:
            raise GancraftError(f"--domain-vector {name}: given twice")
        out[name] = path
    return out


def _check_format_options(to: str, given: dict[str, object]) -> None:
    """Refuse a format's option given with another --to."""
    for name, value in given.items():
        owner = next(f.name for f in writers() if name in f.options)
        if value not in (None, False) and owner != to:
            option = "--" + name.replace("_", "-")
            raise GancraftError(f"{option} applies to --to {owner} only, not --to {to}")
