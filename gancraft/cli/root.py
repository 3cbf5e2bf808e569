"""gancraft root: GAN Cocktail stage 1 (model rooting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import GancraftError
from ..io_util import check_output_path
from .common import emit_path, log
from .options import trunc_option
from .paths import NamedOutput, stem
from .train import build_options, resume_options, training_options


@click.command("root")
@click.option(
    "--root",
    "root_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The root model (G and D) whose copies are trained toward each source.",
)
@click.option(
    "--source",
    "sources",
    required=True,
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A source generator (repeat for several). Only its generated images are used.",
)
@click.option(
    "-o",
    "--output",
    type=NamedOutput(file_okay=False, dir_okay=True),
    help="Folder for the rooted models, one <source name>.st each (created if missing) [default: "
    "ROOT's name + '-rooted' in the current folder].",
)
@trunc_option("truncation_psi", help="Truncation psi of the source generators' images.")
@click.option(
    "--classes",
    "classes_spec",
    default=None,
    metavar="NAME,NAME,...",
    help="The union model's domains in class order; each source is the class named by its file "
    "stem. Default: the root's stem, then each source's.",
)
@training_options
def command(
    root_path: str,
    sources: tuple[str, ...],
    output: str | None,
    truncation_psi: float,
    classes_spec: str | None,
    **kw: Any,
) -> None:
    """Root each SOURCE to the root model (GAN Cocktail stage 1, as the official code runs it):
    the root's G and D (training starts from its G_ema) get one class per domain of the
    future union model, with a new random class pathway, and a copy is trained on images the
    source generates on the fly, all labelled with the source's class. The rooted models
    share the root's weight space and class table; average them (`gancraft average`) before
    the union fine-tune (`gancraft finetune`).

    Writes OUTPUT/<root stem>.st (the root with the class pathway added, untrained: the
    common start of every rooted model, averaged with them as in the paper) and
    OUTPUT/<source stem>.st for each source, with its run folder OUTPUT/<source stem>-run.
    With --resume OUTPUT (the same folder as -o), finished files are kept and unfinished
    runs continue from their last snapshot. Defaults are the official union_gan config:
    batch 32, R1 gamma 10, EMA half-life 10 kimg, lr 0.002, path-length weight 2.

    \b
    Examples:
      gancraft root --root face.st --source cat.st --source dog.st -o rooted/ --kimg 50
      gancraft average rooted/face.st rooted/cat.st rooted/dog.st -o avg.st
    """
    from .. import distributed
    from ..checkpoint import load
    from ..train.loop import finish, latest_snapshot, run_dir_for, run_training
    from ..train.methods import RootingMethod, save_rooting_start
    from .common import resolve_device

    out_dir = Path(output) if output is not None else Path(stem(root_path) + "-rooted")
    if out_dir.exists() and not out_dir.is_dir():
        raise GancraftError(f"-o {out_dir}: is a file, expected a folder")
    stems = [Path(s).stem for s in sources]
    dup = next((s for s in stems if stems.count(s) > 1), None)
    if dup is not None:
        raise GancraftError(f"--source: two sources are named {dup!r}; their rooted files would collide")
    if kw["run_dir"] is not None:
        raise GancraftError("--run-dir: root keeps one run folder per source under OUTPUT")
    resume = kw["resume"] is not None
    if resume and Path(kw["resume"]).resolve() != out_dir.resolve():
        raise GancraftError(f"--resume {kw['resume']}: for root, resume names the -o folder ({out_dir})")
    root_stem = Path(root_path).stem
    if root_stem in stems:
        raise GancraftError(
            f"--source: a source is named like the root ({root_stem!r}); its rooted file would collide with the root's"
        )
    classes = [c.strip() for c in classes_spec.split(",")] if classes_spec else [root_stem, *stems]
    info = distributed.from_env()
    # checked before the output folder and the rooting start file are made, so a bad number
    # leaves nothing behind
    opts_kw = dict(batch=32, kimg=50.0, snap_kimg=10.0, lr=0.002, gamma=10.0, ema_kimg=10.0)
    build_options(kw, **opts_kw).validate(info.world)
    start_target = out_dir / f"{root_stem}.st"
    targets = [out_dir / f"{s}.st" for s in stems]
    # when resuming, finished files are kept and skipped
    todo = [t for t in [start_target, *targets] if not (resume and t.exists())]
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        for t in todo:
            check_output_path(t, force=kw["force"], inputs=(root_path, *sources))
    device = resolve_device(kw["device"])
    root = load(root_path)
    methods = [
        (RootingMethod(root, load(src), classes, name, seed=kw["seed"], truncation_psi=truncation_psi), src, name, t)
        for src, name, t in zip(sources, stems, targets)
    ]
    if start_target in todo and info.is_main:
        emit_path(
            save_rooting_start(
                methods[0][0], start_target, {"root": root_path, "classes": classes}, [root_path], force=kw["force"]
            )
        )
    # not `stem`: a loop variable of that name would make paths.stem, used above, a local of this function
    for method, src, name, target in methods:
        if target not in todo:
            continue
        run_dir = run_dir_for(target)
        log(f"rooting {src} to {root_path} as class {method.label} ({name}) of {', '.join(classes)}")
        trainer = run_training(
            method,
            build_options(kw, **opts_kw),
            run_dir,
            device=device,
            resume=resume and latest_snapshot(run_dir) is not None,
            progress=not kw["quiet"],
            resume_options=resume_options(kw),
        )
        written = finish(
            trainer, target, "root", {"root": root_path, "source": src}, inputs=[root_path, src], force=kw["force"]
        )
        if written is not None:
            emit_path(written)
    distributed.shutdown(info)
