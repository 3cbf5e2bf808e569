"""Options and helpers shared by the subcommands, so every command reads the same way."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click
import torch

from ..errors import GancraftError
from ..nets.stylegan2 import DEFAULT_MODULATION, MODULATION_ORDERS, PRECISIONS


def force_option(f):
    return click.option("--force", is_flag=True, help="Replace OUTPUT if it already exists.")(f)


def device_option(f):
    return click.option(
        "--device",
        default=None,
        metavar="DEV",
        help="Torch device (cpu, cuda, cuda:1). Default: cuda when available, else cpu.",
    )(f)


modulation_option = click.option(
    "--modulation-order",
    "modulation",
    type=click.Choice(MODULATION_ORDERS),
    default=DEFAULT_MODULATION,
    show_default=True,
    help="Where the trained domain vector d meets each conv layer. after-demod: the modulated and "
    "demodulated weight is multiplied by (1 + d) along its input channels, as the official code "
    "(MACderRu/HyperDomainNet gan_models/StyleGAN2/offsets_model.py ModModulatedConv2d, patch "
    "'cin_mult' of core/stylegan_patches.py), so its vectors mean the same here. before-demod: the "
    "styles are scaled by (1 + d) before demodulation, as the paper's figure draws it. The order is "
    "stored with the vectors and sample, render and fid apply it when they read them back (files "
    "written before it was stored: before-demod).",
)


precision_option = click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="Synthesis arithmetic. fp32 is exact (NVIDIA's reference numerics). mixed runs the model's "
    "num_fp16_res highest-resolution blocks in float16 (none if it is 0), as NVIDIA runs them on GPU; "
    "bf16 runs those blocks (every block if there are none) in bfloat16. Both are meant for GPUs (on "
    "this project's CPU, without AMX, they were slower than fp32) and move pixels slightly (up to "
    "~0.2% and ~1.5% of the peak value in tests). StyleGAN3 models run in fp32 only.",
)


def resolve_device(name: str | None) -> torch.device:
    """--device as a torch.device that this machine has (checked here, before any work starts)."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise GancraftError(f"--device: unknown device {name!r} (expected cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GancraftError(f"--device {name}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise GancraftError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise GancraftError(f"--device {name}: Apple's MPS is not available on this machine")
    elif dev.type != "cpu":
        raise GancraftError(f"--device {name}: expected cpu, cuda, cuda:N or mps")
    return dev


def emit_path(path: str | Path) -> None:
    """Print a written path on stdout: the one thing scripts capture.

    The file written for '-o -' goes to stdout as bytes instead; while stdout carries such a
    file, other written paths are printed on stderr so they cannot corrupt it.
    """
    from .paths import is_stdout, send_to_stdout, stdout_taken

    if is_stdout(path):
        send_to_stdout(path)
    else:
        click.echo(str(path), err=stdout_taken())


def log(msg: str) -> None:
    click.echo(msg, err=True)


@contextmanager
def naming_options(**flags: str) -> Iterator[None]:
    """Put the option's name in front of a library error about one of `flags` (parameter = '--flag')."""
    try:
        yield
    except GancraftError as exc:
        flag = flags.get(exc.field or "")
        if flag is None:
            raise
        raise GancraftError(f"{flag}: {exc}") from None
