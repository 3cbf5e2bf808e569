"""gancraft average: merge compatible checkpoints with a registered method (merge/methods/)."""

from __future__ import annotations

import click

from ..errors import GancraftError
from ..io_util import check_output_path
from ..merge import methods
from ..merge.average import W_AVG_MODES, average
from ..merge.methods.taskvec import RESCALE_RULES
from ..merge.res_weights import parse_weights_by_res
from .common import emit_path, force_option, log
from .paths import InputFile, OutputFile, derived_name, stem
from .types import FloatList


def parse_nets(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def _taken_by(parameter: str) -> str:
    return f"Taken by {', '.join(methods.taking(parameter))}."


def _method_help() -> str:
    return "; ".join(f"{m.name}: {m.summary}" for m in methods.methods()) + "."


@click.command("average")
@click.argument("models", nargs=-1, required=True, type=InputFile())
@click.option(
    "-o",
    "--output",
    type=OutputFile(".st"),
    help="Checkpoint to write (native); '-' writes it to standard output [default: the inputs' names "
    "joined by '+' with .avg.st (.task.st for mean with --base, .METHOD.st for the other methods), "
    "in the current folder].",
)
@click.option(
    "--weights",
    type=FloatList(),
    metavar="W1,W2,...",
    help="One weight per MODEL. mean: normalised to sum 1 (default equal). With --base: used as given "
    "(default 1/N each); ties normalises them per element over the agreeing models.",
)
@click.option(
    "--weights-by-res",
    "weights_by_res",
    metavar="RES:W1,W2,...;...",
    help="Weights per synthesis resolution for the generator's blocks (every other tensor takes "
    "--weights). Between two listed resolutions the weights are interpolated linearly in "
    "log2(RES); outside them the nearest listed ones hold. Example: '4:1,0;64:0,1' gives the "
    "blocks 4: 1,0; 8: 0.75,0.25; 16: 0.5,0.5; 32: 0.25,0.75; 64 and up: 0,1. A hard switch: "
    "'16:1,0;32:0,1'. Each resolution's weights then go to --method as --weights would.",
)
@click.option("--method", type=click.Choice(methods.names()), default="mean", show_default=True, help=_method_help())
@click.option(
    "--base",
    type=InputFile(),
    metavar="PARENT",
    help="Common parent: mean writes PARENT + sum_i W_i (MODEL_i - PARENT) ('task arithmetic'); "
    "ties and dare-* merge the task vectors MODEL_i - PARENT.",
)
@click.option(
    "--density",
    type=click.FloatRange(0, 1, min_open=True),
    metavar="D",
    help="Fraction of each task vector kept: ties keeps the largest magnitudes, dare-* each element "
    f"with probability D. {_taken_by('density')}",
)
@click.option(
    "--lambda",
    "lambda_",
    type=float,
    metavar="L",
    help=f"Scale of the merged task vector added to PARENT [default: 1]. {_taken_by('lambda')}",
)
@click.option(
    "--rescale",
    type=click.Choice(RESCALE_RULES),
    help="Scaling of the kept elements: none; density: by 1/D (the DARE paper's rule); l1: to the "
    "task vector's L1 norm before pruning (mergekit's rule since 2024, the default of dare-*). "
    f"ties defaults to none, as mergekit. {_taken_by('rescale')}",
)
@click.option("--seed", type=int, help=f"Seed of the random drop [default: 0]. {_taken_by('seed')}")
@click.option("--nets", metavar="G_ema,G,D", help="Networks to merge (default: every network all inputs have).")
@click.option(
    "--w-avg",
    "w_avg",
    type=click.Choice(W_AVG_MODES),
    default="mean",
    show_default=True,
    help="mean: combine w_avg like other tensors; recompute: re-estimate it from 10,000 samples of the "
    "merged mapping network.",
)
@force_option
def command(
    models: tuple[str, ...],
    output: str | None,
    weights: list[float] | None,
    weights_by_res: str | None,
    method: str,
    base: str | None,
    density: float | None,
    lambda_: float | None,
    rescale: str | None,
    seed: int | None,
    nets: str | None,
    w_avg: str,
    force: bool,
) -> None:
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
      gancraft average --base ffhq.st cat.st toon.st --method ties --density 0.2 -o ties.st
      gancraft average --base ffhq.st cat.st toon.st --method dare-ties --density 0.3 --seed 1 -o dare.st
      gancraft average ffhq.st toon.st --weights-by-res '4:1,0;64:0,1' -o coarse-ffhq.st
    """
    by_res = parse_weights_by_res(weights_by_res) if weights_by_res is not None else None
    params = {
        name: value
        for name, value in (("density", density), ("lambda", lambda_), ("rescale", rescale), ("seed", seed))
        if value is not None
    }
    merge_method = methods.get(method)
    methods.resolve_params(merge_method, params)  # an option the method does not take fails before any work
    if base is None and len(models) < 2:
        raise GancraftError("average needs at least two models (or --base PARENT and one model)")
    if output is None:
        output = derived_name([stem(m) for m in models], merge_method.suffix(base is not None))
    check_output_path(output, force=force, inputs=(*models, *([base] if base else [])))
    log(f"averaging {len(models)} model(s){' onto ' + base if base else ''} ({method})")
    emit_path(
        average(
            list(models),
            output,
            weights=weights,
            method=method,
            base=base,
            nets=parse_nets(nets),
            w_avg=w_avg,
            force=force,
            progress=True,
            params=params,
            weights_by_res=by_res,
        )
    )
