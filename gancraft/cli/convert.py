"""gancraft convert: rewrite a checkpoint in another format."""

from __future__ import annotations

import click

from ..checkpoint import load, save
from .common import emit_path, force_option
from .paths import InputFile, OutputFile, stem


@click.command("convert")
@click.argument("src", type=InputFile(dir_okay=True))
@click.option("-o", "--output", type=OutputFile(), help="File to write; '-' writes it to standard output "
              "[default: SRC's name with .st (native) or .pt (rosinality), in the current folder].")
@click.option("--to", "to", type=click.Choice(["native", "rosinality"]), default="native", show_default=True,
              help="native: gancraft safetensors; rosinality: a .pt that loads in rosinality's stylegan2-pytorch.")
@click.option("--allow-custom-channels", is_flag=True,
              help="rosinality only: write a channel layout no channel_multiplier produces (the loading code "
                   "must then be given the same channel table).")
@force_option
def command(src: str, output: str | None, to: str, allow_custom_channels: bool, force: bool) -> None:
    """Convert SRC (any supported format) to a native or rosinality checkpoint.

    \b
    Examples:
      gancraft convert network-snapshot.pkl -o ffhq.st
      gancraft convert ffhq.pkl                       # writes ffhq.st
      gancraft convert ffhq.pkl -o - | gancraft sample - --seeds 0-3 -o out/
      gancraft convert ffhq.st --to rosinality -o ffhq.pt
    """
    if output is None:
        output = stem(src) + (".st" if to == "native" else ".pt")
    ckpt = load(src)
    ckpt = ckpt.with_operation("convert", {"to": to, "from": ckpt.source_format}, [src])
    emit_path(save(ckpt, output, to=to, force=force, inputs=(src,), allow_custom_channels=allow_custom_channels))
