"""gancraft average: weighted mean, slerp or task arithmetic of compatible checkpoints."""

from __future__ import annotations

import click

from ..errors import GancraftError
from ..io_util import check_output_path
from ..merge.average import METHODS, W_AVG_MODES, average
from .common import emit_path, force_option, log
from .paths import InputFile, OutputFile, derived_name, stem


def parse_floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise GancraftError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def parse_nets(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


@click.command("average")
@click.argument("models", nargs=-1, required=True, type=InputFile())
@click.option("-o", "--output", type=OutputFile(".st"),
              help="Checkpoint to write (native); '-' writes it to standard output [default: the inputs' names "
                   "joined by '+' with .avg.st (.slerp.st, .task.st with --base), in the current folder].")
@click.option("--weights", metavar="W1,W2,...",
              help="One weight per MODEL. mean: normalised to sum 1 (default equal). --base: used as given "
                   "(default 1/N each).")
@click.option("--method", type=click.Choice(METHODS), default="mean", show_default=True,
              help="mean: weighted mean of every tensor; slerp: spherical interpolation of two models, "
                   "t = W2 / (W1 + W2).")
@click.option("--base", type=InputFile(), metavar="PARENT",
              help="Common parent: write PARENT + sum_i W_i (MODEL_i - PARENT) ('task arithmetic').")
@click.option("--nets", metavar="G_ema,G,D", help="Networks to merge (default: every network all inputs have).")
@click.option("--w-avg", "w_avg", type=click.Choice(W_AVG_MODES), default="mean", show_default=True,
              help="mean: combine w_avg like other tensors; recompute: re-estimate it from 10,000 samples of the "
                   "merged mapping network.")
@force_option
def command(models: tuple[str, ...], output: str | None, weights: str | None, method: str, base: str | None,
            nets: str | None, w_avg: str, force: bool) -> None:
    """Average MODELS (two or more; one with --base) into one checkpoint.

    The merge streams tensor by tensor (native inputs are never loaded whole); inputs whose
    tensors or architectures differ are refused before anything is written. Buffers (fixed
    noise images, filters) are copied from the input with the largest weight, or from PARENT.

    \b
    Examples:
      gancraft average ffhq.st cat-rooted.st dog-rooted.st -o avg.st
      gancraft average a.st b.st                      # writes a+b.avg.st
      cat b.st | gancraft average a.st - -o - > mix.st
      gancraft average a.st b.st --weights 0.7,0.3 -o mix.st
      gancraft average a.st b.st --method slerp --weights 1,1 -o mid.st
      gancraft average --base ffhq.st cat.st toon.st --weights 1,0.5 -o task.st
    """
    ws = parse_floats(weights, "--weights")
    if base is None and len(models) < 2:
        raise GancraftError("average needs at least two models (or --base PARENT and one model)")
    if output is None:
        output = derived_name([stem(m) for m in models], "task" if base else "avg" if method == "mean" else method)
    check_output_path(output, force=force, inputs=(*models, *([base] if base else [])))
    log(f"averaging {len(models)} model(s){' onto ' + base if base else ''} ({method})")
    emit_path(average(list(models), output, weights=ws, method=method, base=base, nets=parse_nets(nets),
                      w_avg=w_avg, force=force, progress=True))
