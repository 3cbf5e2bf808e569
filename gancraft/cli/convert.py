"""gancraft convert: rewrite a checkpoint in another format."""

from __future__ import annotations

import click

from ..checkpoint import load, save
from ..checkpoint.clamp import DEFAULT_SAMPLES
from ..checkpoint.io import WRITE_FORMATS
from ..checkpoint.rosinality import check_rosinality_export
from ..errors import GancraftError
from .common import emit_path, force_option, log, resolve_device
from .paths import InputFile, OutputFile, stem

SUFFIXES = {"native": ".st", "rosinality": ".pt", "nvidia": ".pkl"}
# options that only one output format takes
_FORMAT_OPTIONS = {"allow_custom_channels": "rosinality", "clamp_samples": "rosinality", "allow_clamp": "rosinality",
                   "fresh_d": "nvidia"}


@click.command("convert")
@click.argument("src", type=InputFile(dir_okay=True))
@click.option("-o", "--output", type=OutputFile(), help="File to write; '-' writes it to standard output "
              "[default: SRC's name with .st (native), .pt (rosinality) or .pkl (nvidia), in the current folder].")
@click.option("--to", "to", type=click.Choice(WRITE_FORMATS), default="native", show_default=True,
              help="native: gancraft safetensors; rosinality: a .pt that loads in rosinality's stylegan2-pytorch; "
                   "nvidia: a network pickle (G, D, G_ema) that NVIDIA's stylegan2-ada-pytorch and stylegan3 tools "
                   "load with their checkout on the path.")
@click.option("--allow-custom-channels", is_flag=True,
              help="rosinality only: write a channel layout no channel_multiplier produces (the loading code "
                   "must then be given the same channel table).")
@click.option("--clamp-samples", type=click.IntRange(min=1), default=None, metavar="N",
              help=f"rosinality only: latents (seed 0) on which to check that conv_clamp never engages "
                   f"[default: {DEFAULT_SAMPLES}].")
@click.option("--allow-clamp", is_flag=True,
              help="rosinality only: convert even when conv_clamp engages (rosinality never clamps, so images then "
                   "differ where it did).")
@click.option("--fresh-d", is_flag=True,
              help="nvidia only: when SRC has no discriminator, add a newly initialised one (NVIDIA's loader "
                   "requires a D; fine for generating and fine-tuning, not for resuming training).")
@force_option
def command(src: str, output: str | None, to: str, allow_custom_channels: bool, clamp_samples: int | None,
            allow_clamp: bool, fresh_d: bool, force: bool) -> None:
    """Convert SRC (any supported format) to a native, rosinality or NVIDIA checkpoint.

    A model trained with conv_clamp (every stylegan2-ada-pytorch model) goes to rosinality format
    only when the clamp never engages on --clamp-samples generated images: the largest
    activation before the clamp is printed, and the conversion is refused (unless --allow-clamp)
    when it exceeds the clamp.

    An NVIDIA pickle stores each network's constructor arguments and tensors as data and names
    NVIDIA's classes by import path; it carries no NVIDIA source, so loading it needs their
    stylegan2-ada-pytorch or stylegan3 checkout on the path, as their tools have anyway.

    \b
    Examples:
      gancraft convert network-snapshot.pkl -o ffhq.st
      gancraft convert ffhq.pkl                       # writes ffhq.st
      gancraft convert ffhq.pkl -o - | gancraft sample - --seeds 0-3 -o out/
      gancraft convert ffhq.st --to rosinality -o ffhq.pt
      gancraft convert ada-snapshot.pkl --to rosinality --clamp-samples 1000 -o ada.pt
      gancraft convert nada.pt --to nvidia --fresh-d -o nada.pkl
    """
    _check_format_options(to, allow_custom_channels=allow_custom_channels, clamp_samples=clamp_samples,
                          allow_clamp=allow_clamp, fresh_d=fresh_d)
    if output is None:
        output = stem(src) + SUFFIXES[to]
    ckpt = load(src)
    if ckpt.family == "stylegan3" and to != "native":
        raise GancraftError(f"{src}: a StyleGAN3 model converts --to native only (rosinality's code has no StyleGAN3 "
                            f"network, and the model's NVIDIA pickle is the file it came from)")
    ckpt = ckpt.with_operation("convert", {"to": to, "from": ckpt.source_format}, [src])
    options: dict = {}
    if to == "rosinality":
        clamp = check_rosinality_export(ckpt, allow_custom_channels, samples=clamp_samples or DEFAULT_SAMPLES,
                                        allow_clamp=allow_clamp, device=resolve_device(None))
        if clamp is not None:
            log(clamp.describe())
        options = {"allow_custom_channels": allow_custom_channels, "clamp": clamp, "allow_clamp": allow_clamp}
    elif to == "nvidia":
        options = {"fresh_d": fresh_d}
    emit_path(save(ckpt, output, to=to, force=force, inputs=(src,), **options))


def _check_format_options(to: str, **given: object) -> None:
    for name, value in given.items():
        if value not in (None, False) and _FORMAT_OPTIONS[name] != to:
            option = "--" + name.replace("_", "-")
            raise GancraftError(f"{option} applies to --to {_FORMAT_OPTIONS[name]} only, not --to {to}")
