"""Option groups shared by the subcommands: one spelling per concept, handed to the command as a dataclass.

A concept that several commands take (truncation, noise, batch size, CLIP weights, ...) is declared
here once, so its name, type, bounds and wording cannot drift between commands. Spellings that
earlier versions used stay accepted as hidden aliases (`Option(aliases=...)`), so old scripts keep
working while --help and the man pages show only the current name.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import click

from ..latent.generate import NOISE_MODES
from .common import device_option, precision_option


class Option(click.Option):
    """A click option whose `aliases` parse like its other names but are left out of --help."""

    def __init__(self, param_decls, aliases: tuple[str, ...] = (), **attrs):
        super().__init__([*param_decls, *aliases], **attrs)
        self.aliases = tuple(aliases)

    def get_help_record(self, ctx: click.Context):
        every = self.opts
        self.opts = [o for o in every if o not in self.aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = every


# truncation psi: `--trunc`, as NVIDIA's gen_images.py, style_mixing.py and gen_video.py spell it and
# as the pair `--trunc-cutoff` reads; direction and sefa said --truncation-psi, root, finetune and
# hyper --truncation
TRUNC_ALIASES = ("--truncation", "--truncation-psi")
# allowing open_clip to fetch CLIP weights: direction and expand said --clip-download
DOWNLOAD_CLIP_ALIASES = ("--clip-download",)


def trunc_option(dest: str = "psi", default: float | None = 1.0, help: str = "Truncation psi (1: none)."):
    return click.option(
        "--trunc",
        dest,
        cls=Option,
        aliases=TRUNC_ALIASES,
        type=float,
        default=default,
        show_default=default is not None,
        metavar="PSI",
        help=help,
    )


def batch_option(dest: str = "batch", default: int | None = None, help: str = "Images per batch."):
    return click.option(
        "--batch",
        dest,
        type=click.IntRange(min=1),
        default=default,
        show_default=default is not None,
        metavar="N",
        help=help,
    )


def _grouped(cls, into: str, options: list):
    """Add `options` to a command and hand their values to it as one `cls` named `into`.

    Each option's destination is the dataclass field of the same name; fields without an
    option keep their defaults.
    """
    names = {f.name for f in fields(cls)}

    def decorate(f):
        @functools.wraps(f)
        def command(*args, **kw):
            given = {k: kw.pop(k) for k in list(kw) if k in names}
            return f(*args, **{into: cls(**given)}, **kw)

        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@dataclass(frozen=True)
class GenerationOptions:
    """How a command turns latents into images (the fields its options do not set keep these values)."""

    psi: float | None = 1.0
    trunc_cutoff: int | None = None
    noise_mode: str = "const"
    batch: int | None = None
    precision: str = "fp32"
    device: str | None = None


def generation_options(
    *,
    psi: float | None = 1.0,
    psi_help: str = "Truncation psi (1: none).",
    cutoff: bool = True,
    noise_mode: bool = True,
    noise_help: str = "const: deterministic stored noise; random: fresh noise; none: no noise.",
    batch: int | None = 8,
    batch_help: str = "Images synthesised at a time.",
    precision: bool = True,
    into: str = "gen",
):
    """--trunc [--trunc-cutoff] [--noise-mode] --batch [--precision] --device, as a GenerationOptions `into`."""
    options = [trunc_option(default=psi, help=psi_help)]
    if cutoff:
        options.append(
            click.option(
                "--trunc-cutoff",
                type=click.IntRange(min=0),
                default=None,
                metavar="N",
                help="Truncate only the first N ws (the coarse layers).",
            )
        )
    if noise_mode:
        options.append(
            click.option(
                "--noise-mode", type=click.Choice(NOISE_MODES), default="const", show_default=True, help=noise_help
            )
        )
    options.append(batch_option(default=batch, help=batch_help))
    if precision:
        options.append(precision_option)
    options.append(device_option)
    return _grouped(GenerationOptions, into, options)


@dataclass(frozen=True)
class ClipOptions:
    """Which CLIP a command loads: model name(s), weights file(s), and whether open_clip may download."""

    clip_model: str | tuple[str, ...] | None = None
    clip_weights: str | tuple[str, ...] | None = None
    download_clip: bool = False


def clip_options(
    *,
    model: str | tuple[str, ...] | None = None,
    model_help: str = "open_clip model name.",
    several: bool = False,
    weights_help: str = "CLIP weights file [default: an earlier open_clip download found in the local caches].",
    download_help: str = "Allow open_clip to download the CLIP weights.",
    into: str = "clip",
):
    """[--clip-model] --clip-weights --download-clip, as a ClipOptions `into`.

    `model` None leaves out --clip-model (the model is fixed by the file being read); `several`
    makes --clip-model and --clip-weights repeatable, one weights file per model.
    """
    options = []
    if model is not None:
        options.append(
            click.option(
                "--clip-model",
                multiple=several,
                default=model,
                show_default=bool(model),
                metavar="MODEL",
                help=model_help,
            )
        )
    options.append(
        click.option(
            "--clip-weights",
            multiple=several,
            type=click.Path(dir_okay=False),
            default=None,
            metavar="PATH",
            help=weights_help,
        )
    )
    options.append(
        click.option("--download-clip", cls=Option, aliases=DOWNLOAD_CLIP_ALIASES, is_flag=True, help=download_help)
    )
    return _grouped(ClipOptions, into, options)
