"""`average`: merge N models (or N models and their common parent) with a registered method.

The methods live in methods/ (one module each); the streaming reader, the recipes and their
chunked evaluator, and the streaming writer in stream.py. This module picks each tensor's
weights (--weights, or --weights-by-res for synthesis blocks), asks the method for its recipe,
copies buffers instead of mixing them, and optionally re-estimates w_avg.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..checkpoint.core import Checkpoint
from ..errors import GancraftError
from ..io_util import check_output_path
from . import methods
from .res_weights import block_resolution, check_table, weights_at
from .stream import (
    Linear,
    Recipe,
    Source,
    evaluate,
    merge_to_checkpoint,
    merge_to_file,
    open_sources,
    output_skeleton,
    select_keys,
)

# Buffers are not learned (fixed filters, the frozen per-layer noise images, StyleGAN3's
# resampling filters and the random frequencies and phases of its Fourier-feature input): they
# are copied from one input rather than mixed, because a mix of two independent noise images has
# a smaller variance than either and matches neither model, and a mix of two frequency sets is
# neither model's input.
BUFFER_SUFFIXES = ("resample_filter", "noise_const", "up_filter", "down_filter", "freqs", "phases", "transform")


def is_buffer(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in BUFFER_SUFFIXES


W_AVG_MODES = ("mean", "recompute")


def average_recipes(
    keys: Sequence[str],
    n: int,
    weights: Sequence[float] | None = None,
    method: str = "mean",
    base: bool = False,
    params: Mapping[str, object] | None = None,
    weights_by_res: Mapping[int, Sequence[float]] | None = None,
) -> dict[str, Recipe]:
    """Per-tensor recipes for averaging n models (with `base`, input 0 is the common parent).

    `weights` follow the models (not the base) and default to the method's (1/N each against a
    parent, else equal); `params` are the method's own options (methods/); `weights_by_res`
    gives the synthesis blocks' tensors weights by resolution (res_weights.py), every other
    tensor takes `weights`. Buffers are copied from the input the method names for the weights
    of their tensor.
    """
    m = methods.get(method)
    n_models = n - 1 if base else n
    if n_models < 1 or (not base and n_models < 2):
        raise GancraftError("average needs at least two models (or a --base parent and one model)")
    weights = m.default_weights(n_models, base) if weights is None else [float(w) for w in weights]
    if len(weights) != n_models:
        raise GancraftError(f"--weights: got {len(weights)} weights for {n_models} models")
    if any(not math.isfinite(w) for w in weights):
        raise GancraftError("--weights: weights must be finite numbers")
    m.check(n_models, base)
    resolved = methods.resolve_params(m, params or {})
    plans: dict[tuple[float, ...], tuple[Recipe, Linear]] = {}

    def plan(ws: tuple[float, ...], what: str) -> tuple[Recipe, Linear]:
        if ws not in plans:
            recipe, buffer_from = m.mix(ws, base, resolved, what)
            plans[ws] = (recipe, Linear(_onehot(buffer_from, n)))
        return plans[ws]

    default = plan(tuple(weights), "--weights")
    out = {}
    for k in keys:
        res = block_resolution(k) if weights_by_res else None
        recipe, copy = default if res is None else plan(weights_at(weights_by_res, res), f"--weights-by-res (at {res})")
        out[k] = copy if is_buffer(k) else recipe
    return out


def _onehot(i: int, n: int) -> tuple[float, ...]:
    return tuple(1.0 if j == i else 0.0 for j in range(n))


def recompute_w_avg(
    sources: Sequence[Source], recipes: dict[str, Recipe], keys: Sequence[str], samples: int = 10000, seed: int = 0
) -> dict[str, torch.Tensor]:
    """The mean w of each merged mapping network, estimated from `samples` z (uniform classes)."""
    from ..nets.stylegan2 import MappingNetwork

    g = sources[0].skeleton.g_config
    out = {}
    for net in ("G_ema", "G"):
        key = f"{net}.mapping.w_avg"
        if key not in recipes:
            continue
        mapping = MappingNetwork(
            g.z_dim,
            g.c_dim,
            g.w_dim,
            None,
            g.mapping_layers,
            g.embed_features,
            g.layer_features,
            g.mapping_lr_multiplier,
            None,
        )
        prefix = f"{net}.mapping."
        sd = {k[len(prefix) :]: evaluate(recipes[k], k, sources) for k in keys if k.startswith(prefix) and k != key}
        mapping.load_state_dict(sd, strict=True)
        gen = torch.Generator().manual_seed(seed)
        total = torch.zeros(g.w_dim, dtype=torch.float64)
        with torch.no_grad():
            for start in range(0, samples, 1000):
                b = min(1000, samples - start)
                z = torch.randn(b, g.z_dim, generator=gen)
                c = None
                if g.c_dim:
                    c = torch.nn.functional.one_hot(torch.randint(g.c_dim, (b,), generator=gen), g.c_dim).float()
                total += mapping(z, c).to(torch.float64).sum(0)
        out[key] = (total / samples).to(sources[0].dtypes[key])
    return out


def _prepare_average(inputs: Sequence, weights, method, base, nets, w_avg, params, weights_by_res):
    if w_avg not in W_AVG_MODES:
        raise GancraftError(f"--w-avg: unknown mode {w_avg!r} (choose {', '.join(W_AVG_MODES)})")
    all_inputs = ([base] if base is not None else []) + list(inputs)
    sources = open_sources(all_inputs)
    try:
        keys = select_keys(sources, nets)
        if weights_by_res:
            if sources[0].skeleton.family != "stylegan2":
                raise GancraftError(
                    f"--weights-by-res: the models have no resolution blocks ({sources[0].skeleton.family})"
                )
            check_table(weights_by_res, len(inputs), sources[0].skeleton.g_config.block_resolutions)
        recipes = average_recipes(keys, len(sources), weights, method, base is not None, params, weights_by_res)
        overrides = recompute_w_avg(sources, recipes, keys) if w_avg == "recompute" else {}
    except BaseException:
        for s in sources:
            s.close()
        raise
    record = {
        "method": method,
        "weights": list(weights) if weights is not None else None,
        "base": str(base) if base is not None and not isinstance(base, Checkpoint) else None,
        "nets": sorted({k.split(".", 1)[0] for k in keys}),
        "w_avg": w_avg,
    }
    # only what a method or option adds, so the history of a plain mean keeps its old shape
    record.update(methods.resolve_params(methods.get(method), params or {}))
    if weights_by_res:
        record["weights_by_res"] = {str(r): list(w) for r, w in sorted(weights_by_res.items())}
    return sources, keys, recipes, overrides, record


def average(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    weights: Sequence[float] | None = None,
    method: str = "mean",
    base: str | os.PathLike | None = None,
    nets: Sequence[str] | None = None,
    w_avg: str = "mean",
    force: bool = False,
    progress: bool = False,
    params: Mapping[str, object] | None = None,
    weights_by_res: Mapping[int, Sequence[float]] | None = None,
) -> Path:
    """Average checkpoints into `out` (native safetensors), streaming tensor by tensor.

    `weights` follow `inputs` (not the base); `method` is a registered method's name and
    `params` its options (e.g. {"density": 0.5} for ties); `weights_by_res` gives the synthesis
    blocks weights by resolution (res_weights.py). `w_avg='mean'` combines the mapping's w_avg
    like every other tensor; 'recompute' re-estimates it from the merged mapping network, which
    is what a truncation centre should be when the mapping networks differ a lot. Only network
    tensors (G_ema, G, D) are merged: extra tensors such as domain vectors are left out, and
    the domain table is kept only when every input has the same one.
    """
    paths = [*inputs, *([base] if base is not None else [])]
    check_output_path(out, force=force, inputs=tuple(paths))
    sources, keys, recipes, overrides, record = _prepare_average(
        inputs, weights, method, base, nets, w_avg, params, weights_by_res
    )
    try:
        return merge_to_file(
            sources,
            recipes,
            out,
            output_skeleton(sources, keys),
            "average",
            record,
            force=force,
            overrides=overrides,
            progress=progress,
        )
    finally:
        for s in sources:
            s.close()


def average_checkpoints(
    ckpts: Sequence[Checkpoint],
    weights: Sequence[float] | None = None,
    method: str = "mean",
    base: Checkpoint | None = None,
    nets: Sequence[str] | None = None,
    w_avg: str = "mean",
    params: Mapping[str, object] | None = None,
    weights_by_res: Mapping[int, Sequence[float]] | None = None,
) -> Checkpoint:
    """In-memory `average` for Python callers (no files, no history entry)."""
    sources, keys, recipes, overrides, _ = _prepare_average(
        ckpts, weights, method, base, nets, w_avg, params, weights_by_res
    )
    skel = output_skeleton(sources, keys)
    return merge_to_checkpoint(sources, recipes, skel, overrides)
