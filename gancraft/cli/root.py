"""gancraft root: GAN Cocktail stage 1 (model rooting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import GancraftError
from ..io_util import check_output_path
from .common import emit_path, log
from .paths import NamedOutput, stem
from .train import build_options, training_options


@click.command("root")
@click.option("--root", "root_path", required=True, type=click.Path(dir_okay=False),
              help="The root model (G and D) whose copies are trained toward each source.")
@click.option("--source", "sources", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="A source generator (repeat for several). Only its generated images are used.")
@click.option("-o", "--output", type=NamedOutput(file_okay=False, dir_okay=True),
              help="Folder for the rooted models, one <source name>.st each (created if missing) [default: "
                   "ROOT's name + '-rooted' in the current folder].")
@click.option("--truncation", "truncation_psi", type=float, default=1.0, show_default=True,
              help="Truncation psi of the source generators' images.")
@training_options
def command(root_path: str, sources: tuple[str, ...], output: str | None, truncation_psi: float, **kw: Any) -> None:
    """Root each SOURCE to the root model: fine-tune copies of the root's G and D on images the
    source generates on the fly, so that all rooted models share the root's weight space and
    can be averaged (`gancraft average`) before the union fine-tune (`gancraft finetune`).

    Writes OUTPUT/<source stem>.st, with its run folder OUTPUT/<source stem>-run. With --resume
    OUTPUT (the same folder as -o), finished sources are skipped and unfinished runs continue
    from their last snapshot.

    \b
    Examples:
      gancraft root --root face.st --source cat.st --source dog.st -o rooted/ --kimg 50
      gancraft average rooted/*.st face.st -o avg.st
    """
    from ..checkpoint import load
    from ..train import distributed
    from ..train.loop import finish, latest_snapshot, run_training
    from ..train.methods import RootingMethod
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
    info = distributed.from_env()
    targets = [out_dir / f"{s}.st" for s in stems]
    # when resuming, finished sources are kept and skipped
    todo = [(src, stem, t) for src, stem, t in zip(sources, stems, targets) if not (resume and t.exists())]
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        for _, _, t in todo:
            check_output_path(t, force=kw["force"], inputs=(root_path, *sources))
    device = resolve_device(kw["device"])
    root = load(root_path)
    opts_kw = dict(batch=16, kimg=50.0, snap_kimg=10.0, lr=0.002, gamma=None, ema_kimg=None)
    for src, stem, target in todo:
        run_dir = out_dir / f"{stem}-run"
        method = RootingMethod(root, load(src), truncation_psi=truncation_psi)
        log(f"rooting {src} to {root_path}")
        trainer = run_training(method, build_options(kw, **opts_kw), run_dir, device=device,
                               resume=resume and latest_snapshot(run_dir) is not None,
                               progress=not kw["quiet"])
        written = finish(trainer, target, "root", {"root": root_path, "source": src}, inputs=[root_path, src],
                         force=kw["force"])
        if written is not None:
            emit_path(written)
    distributed.shutdown(info)
