"""gancraft convert: rewrite a checkpoint in another format."""

from __future__ import annotations

import click

from ..checkpoint import load, save
from .common import emit_path, force_option


@click.command("convert")
@click.argument("src", type=click.Path(dir_okay=True))
@click.option("-o", "--output", required=True, type=click.Path(), help="File to write.")
@click.option("--to", "to", type=click.Choice(["native", "rosinality"]), default="native", show_default=True,
              help="native: gancraft safetensors; rosinality: a .pt that loads in rosinality's stylegan2-pytorch.")
@click.option("--allow-custom-channels", is_flag=True,
              help="rosinality only: write a channel layout no channel_multiplier produces (the loading code "
                   "must then be given the same channel table).")
@force_option
def command(src: str, output: str, to: str, allow_custom_channels: bool, force: bool) -> None:
    """Convert SRC (any supported format) to a native or rosinality checkpoint.

    \b
    Examples:
      gancraft convert network-snapshot.pkl -o ffhq.st
      gancraft convert ffhq.st --to rosinality -o ffhq.pt
    """
    ckpt = load(src)
    ckpt = ckpt.with_operation("convert", {"to": to, "from": ckpt.source_format}, [src])
    emit_path(save(ckpt, output, to=to, force=force, inputs=(src,), allow_custom_channels=allow_custom_channels))
