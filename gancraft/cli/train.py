"""gancraft train: a StyleGAN2 on a folder of images, from scratch or from a checkpoint (--init).

Also home of the options every training command shares (`train`, `root`, `finetune`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import click

from ..errors import GancraftError
from ..io_util import check_output_path
from ..train.ada import AUG_MODES, PIPELINES
from .common import device_option, emit_path, force_option, log, resolve_device
from .options import batch_option
from .paths import NamedOutput


def training_options(f):
    """--kimg/--batch/--snap/--seed/--lr/--lr-d/--gamma/--pl-weight/--ema/--diffaug/--aug/--p/--target/--augpipe/
    --run-dir/--resume/--device/--force."""
    opts = [
        click.option("--kimg", type=float, default=None, help="Training length in thousands of images shown to D."),
        batch_option(help="Global batch size (split over torchrun processes)."),
        click.option(
            "--snap",
            "snap_kimg",
            type=float,
            default=None,
            metavar="KIMG",
            help="Write a snapshot (weights, optimiser state, sample grid) every KIMG.",
        ),
        click.option("--seed", type=int, default=0, show_default=True, help="Random seed (runs are reproducible)."),
        click.option("--lr", type=float, default=None, help="Adam learning rate for G and D (D's: see --lr-d)."),
        click.option(
            "--lr-d",
            type=float,
            default=None,
            help="D's own Adam learning rate, for a D that learns faster or slower than G (as TTUR); default: --lr.",
        ),
        click.option(
            "--gamma",
            type=float,
            default=None,
            help="R1 weight. Default: the config's, else 0.0002 * resolution^2 / batch.",
        ),
        click.option(
            "--pl-weight",
            type=float,
            default=None,
            help="Path-length regularisation weight, lazy every 4 steps as NVIDIA's "
            "StyleGAN2 (default 2; 0 turns it off).",
        ),
        click.option(
            "--ema",
            "ema_kimg",
            type=float,
            default=None,
            metavar="KIMG",
            help="Half-life of the EMA generator in kimg (default: batch * 10 / 32).",
        ),
        click.option(
            "--diffaug",
            default="",
            metavar="POLICY",
            help="DiffAugment policy, e.g. color,translation,cutout (default: none). Not with --aug ada or fixed.",
        ),
        click.option(
            "--aug",
            type=click.Choice(AUG_MODES),
            default=None,
            help="Discriminator augmentation as NVIDIA's stylegan2-ada-pytorch: every image D sees (reals "
            "and fakes, R1 included) goes through the --augpipe pipeline, each operation per image with "
            "probability p. ada: p starts at 0 and moves every 4 steps so that the mean sign of D's "
            "outputs on reals is --target (p rises when D overfits); fixed: p is --p throughout.  "
            "[default: noaug (NVIDIA's train.py defaults to ada)]",
        ),
        click.option(
            "--p",
            "aug_p",
            type=click.FloatRange(0, 1),
            default=None,
            metavar="FLOAT",
            help="--aug fixed: the augmentation probability (required there).",
        ),
        click.option(
            "--target",
            "ada_target",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            default=None,
            metavar="FLOAT",
            help="--aug ada: the mean sign of D's outputs on real images (share positive minus share "
            "negative) that p steers towards.  [default: 0.6]",
        ),
        click.option(
            "--augpipe",
            type=click.Choice(tuple(PIPELINES)),
            default=None,
            help="--aug ada/fixed: the operations. blit: x-flip, 90-degree rotations, integer translation; "
            "geom: isotropic and anisotropic scaling, rotation, fractional translation; color: brightness, "
            "contrast, luma flip, hue, saturation; bg: blit+geom; bgc: all three. NVIDIA's image filtering, "
            "noise and cutout stages (its bgcf.. pipelines) are not implemented.  [default: bgc]",
        ),
        click.option("--no-amp", is_flag=True, help="Disable bfloat16 mixed precision on GPU."),
        click.option(
            "--run-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Folder for snapshots, log.jsonl and grids (default: OUTPUT's name + '-run').",
        ),
        click.option(
            "--resume",
            type=click.Path(file_okay=False, exists=True),
            default=None,
            metavar="RUN_DIR",
            help="Continue the run in RUN_DIR from its newest snapshot, with the options it started with. "
            "--kimg there sets a new total length; --gamma, --lr, --lr-d and --snap change the run from that step "
            "on (run.json and the history record the change); other options must match.",
        ),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        device_option,
        force_option,
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def build_options(
    kw: dict[str, Any],
    batch: int,
    kimg: float,
    snap_kimg: float,
    lr: float,
    gamma: float | None,
    ema_kimg: float | None,
):
    """TrainOptions from the shared CLI options, falling back to the given defaults."""
    from ..train.loop import TrainOptions

    aug = kw["aug"] or "noaug"
    # NVIDIA's train.py refuses these combinations too: each names a setting the mode ignores
    if aug == "fixed" and kw["aug_p"] is None:
        raise GancraftError("--aug fixed needs --p (the augmentation probability)")
    if kw["aug_p"] is not None and aug != "fixed":
        raise GancraftError("--p sets the probability of --aug fixed; add --aug fixed (--aug ada tunes p itself)")
    if kw["ada_target"] is not None and aug != "ada":
        raise GancraftError("--target belongs to --aug ada; add --aug ada")
    if kw["augpipe"] is not None and aug == "noaug":
        raise GancraftError("--augpipe needs --aug ada or --aug fixed")
    lr = kw["lr"] if kw["lr"] is not None else lr
    lr_d = kw["lr_d"] if kw["lr_d"] is not None else lr
    return TrainOptions(
        kimg=kw["kimg"] if kw["kimg"] is not None else kimg,
        batch=kw["batch"] if kw["batch"] is not None else batch,
        snap_kimg=kw["snap_kimg"] if kw["snap_kimg"] is not None else snap_kimg,
        seed=kw["seed"],
        lr_g=lr,
        lr_d=lr_d,
        gamma=kw["gamma"] if kw["gamma"] is not None else gamma,
        ema_kimg=kw["ema_kimg"] if kw["ema_kimg"] is not None else ema_kimg,
        diffaug=kw["diffaug"],
        aug=aug,
        amp=not kw["no_amp"],
        **{k: kw[k] for k in ("aug_p", "ada_target", "augpipe") if kw[k] is not None},
        **({"pl_weight": kw["pl_weight"]} if kw["pl_weight"] is not None else {}),
    )


def resume_options(kw: dict[str, Any]) -> dict[str, Any]:
    """The TrainOptions fields given on the command line of a resumed run (None: not given)."""
    return {
        "gamma": kw["gamma"],
        "lr_g": kw["lr"],
        "lr_d": kw["lr_d"] if kw["lr_d"] is not None else kw["lr"],
        "snap_kimg": kw["snap_kimg"],
        "batch": kw["batch"],
        "ema_kimg": kw["ema_kimg"],
        "pl_weight": kw["pl_weight"],
        "diffaug": kw["diffaug"] or None,
        "aug": kw["aug"],
        "aug_p": kw["aug_p"],
        "ada_target": kw["ada_target"],
        "augpipe": kw["augpipe"],
    }


def _run_folder(output: str | Path, kw: dict[str, Any]) -> tuple[Path, bool]:
    """(run folder, resume?) from --resume / --run-dir / the output path."""
    from ..train.loop import run_dir_for

    if kw["resume"]:
        if kw["run_dir"] and Path(kw["run_dir"]).resolve() != Path(kw["resume"]).resolve():
            raise GancraftError("--run-dir and --resume name different folders; give only --resume")
        return Path(kw["resume"]), True
    return run_dir_for(output, kw["run_dir"] or None), False


def train_and_save(
    method, opts, output: str, kw: dict[str, Any], command: str, params: dict[str, Any], inputs: list
) -> None:
    from .. import distributed
    from ..train.loop import finish, run_training

    info = distributed.from_env()
    if info.is_main:
        check_output_path(output, force=kw["force"], inputs=tuple(inputs))
    run_dir, resume = _run_folder(output, kw)
    device = resolve_device(kw["device"])
    trainer = run_training(
        method,
        opts,
        run_dir,
        device=device,
        resume=resume,
        progress=not kw["quiet"],
        resume_kimg=kw["kimg"] if resume else None,
        resume_options=resume_options(kw) if resume else None,
    )
    written = finish(trainer, output, command, params, inputs=inputs, force=kw["force"])
    distributed.shutdown(info)
    if written is not None:
        log(f"run folder: {run_dir}")
        emit_path(written)


def _recorded_init(run_dir: Path) -> str | None:
    """The --init a run folder was started with; None when it was not."""
    from ..train.loop import read_run_record

    init = read_run_record(run_dir)["method"].get("init")
    return init if isinstance(init, str) else None


@click.command("train")
@click.argument("images", type=click.Path())
@click.option(
    "-o",
    "--output",
    type=NamedOutput(),
    help="Checkpoint to write [default: IMAGES' folder name + .st in the current folder]. Not '-': the "
    "run folder is named after it.",
)
@click.option("--resolution", type=int, required=True, help="Image and model resolution (power of two).")
@click.option(
    "--config",
    "config_name",
    default="tiny",
    show_default=True,
    help="Architecture and hyper-parameters: tiny, small (CPU-sized), toy (the bundled examples: "
    "512-d z and w, 8 mapping layers, 64 channels), paper256, stylegan2 (NVIDIA's).",
)
@click.option("--mirror", is_flag=True, help="Also train on horizontally flipped images.")
@click.option(
    "--subset",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Train on the first N images only (in sorted path order).",
)
@click.option(
    "--style-mixing",
    type=float,
    default=0.9,
    show_default=True,
    help="Probability that a batch mixes two latents at a random layer (NVIDIA's style-mixing "
    "regularisation; 0 turns it off).",
)
@click.option(
    "--mbstd-group",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Samples per minibatch-standard-deviation group in D (NVIDIA's --mbstd; the largest divisor "
    "of the batch up to N is used). Default: the config's, 4; NVIDIA's 32 px cifar preset uses 32.",
)
@click.option(
    "--init",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="CKPT",
    help="Start from CKPT's networks instead of random weights, as NVIDIA's train.py --resume PKL: G "
    "from its G (from its G_ema when the file has no training copy), G_ema and D from its own. CKPT's "
    "architecture replaces --config's, which still sets batch, learning rate, R1 weight and EMA. The "
    "new run counts kimg from 0; the written model's history continues CKPT's. --resume of such a run "
    "reads CKPT again from the absolute path the run recorded, unless --init names it.",
)
@training_options
def command(
    images: str,
    output: str | None,
    resolution: int,
    config_name: str,
    mirror: bool,
    subset: int | None,
    style_mixing: float,
    mbstd_group: int | None,
    init: str | None,
    **kw: Any,
) -> None:
    """Train a StyleGAN2 on the images in IMAGES (a folder, searched recursively), from random
    weights or, with --init, from a model's networks.

    Images of another size are centre-cropped and resized to RESOLUTION. Snapshots go to the
    run folder every --snap kimg; a killed run continues exactly with --resume RUN_DIR. Runs
    unchanged under `torchrun --nproc-per-node N` (gloo on CPU, nccl on GPU).

    \b
    Examples:
      gancraft train faces/ -o face.st --resolution 32 --config tiny --kimg 200
      gancraft train faces/ -o face.st --resolution 32 --resume face-run
      gancraft train faces/ -o face2.st --resolution 32 --config toy --init face.st --kimg 20
      torchrun --nproc-per-node 2 -m gancraft train faces/ -o face.st --resolution 32
    """
    from ..train.configs import architecture, get_preset
    from ..train.data import ImageFolderData
    from ..train.methods import ScratchMethod
    from ..train.methods.scratch import init_checkpoint

    if output is None:
        output = (Path(images).resolve().name or "model") + ".st"
    preset = get_preset(config_name)
    if init is None and kw["resume"]:
        init = _recorded_init(Path(kw["resume"]))  # as recorded (older runs kept it as given)
    elif init is not None:
        init = os.path.abspath(init)  # recorded in run.json, so that a resume from another folder finds it
    start = init_checkpoint(init, resolution) if init is not None else None
    g_cfg, d_cfg = (start.g_config, start.d_config) if start is not None else architecture(config_name, resolution)
    if mbstd_group is not None:
        d_cfg = dataclasses.replace(d_cfg, mbstd_group_size=mbstd_group)
    opts = build_options(
        kw,
        batch=preset.batch,
        kimg=1000.0,
        snap_kimg=preset.snap_kimg,
        lr=preset.lr,
        gamma=preset.gamma,
        ema_kimg=preset.ema_kimg,
    )
    opts = dataclasses.replace(opts, style_mixing=style_mixing)
    data = ImageFolderData(images, resolution, xflip=mirror, subset=subset)
    method = ScratchMethod(data, g_cfg, d_cfg, init=start)
    train_and_save(
        method,
        opts,
        output,
        kw,
        "train",
        {
            "images": str(images),
            "resolution": resolution,
            "config": config_name,
            "mirror": mirror,
            "subset": subset,
            "num_images": len(data),
        },
        inputs=[init] if init is not None else [],
    )
