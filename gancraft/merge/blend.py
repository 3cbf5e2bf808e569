"""Layer swapping and resolution-dependent interpolation between generators (Pinkney's blend).

Synthesis layers are ordered by *position*: two per resolution, as in Pinkney's blend_models.py
- level 0 is the block's first layer (the 4x4 const, or conv0 which upsamples) and level 1 is
conv1 with the block's toRGB. The switch is level 0 (or 1) of the chosen resolution. With no
blend width, positions at and above the switch come from the high model and those below from
the low model (gancraft's documented rule). With a width W, the high model's weight at
position p is sigmoid((p - p_switch) / W).

The reference script's hard branch is `1 if x > 1 else 0` with x = p - p_switch, so it starts
the high model two positions later, a whole resolution: its `resolution=32, level=0` keeps the
32 px layers low and takes 64 px and up from the high model. `pinkney=(res, level)` reproduces
the script exactly. Besides that offset, the script only blends the trainable variables it
lists by level: the 4x4 block's conv (TF name `4x4/Conv`, neither `Conv0_up` nor `Conv1`) is
not listed and stays the low model's even in a soft blend, and the noise images are not
trainable, so they stay the low model's too.

StyleGAN3 has no resolution blocks: its synthesis layers L0 ... LN (LN the toRGB) are numbered
by their index, one position each, and the switch, the blend width and --alpha speak in those
indices. The Fourier-feature input goes with L0 (it places the image, as the 4x4 const does in
StyleGAN2), and its fixed frequencies and phases are copied whole from the model that dominates
L0, never mixed.

The output starts as the low model: the mapping network and w_avg come from it unless asked
otherwise (w_avg follows the mapping network by default, since it is that network's mean
output). Per-resolution interpolation generalises both: each resolution gets a weight per
high model, the low model keeping the rest.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..checkpoint.core import Checkpoint
from ..checkpoint.io import load
from ..errors import GancraftError
from ..io_util import check_output_path
from .stream import (
    Linear,
    Recipe,
    Source,
    dominant,
    merge_to_checkpoint,
    merge_to_file,
    open_sources,
    output_skeleton,
    select_keys,
)

_SYN = re.compile(r"^(?:G|G_ema)\.synthesis\.b(\d+)\.(?:(const|conv0|conv1|torgb)\b)?")
_SYN3 = re.compile(r"^(?:G|G_ema)\.synthesis\.(?:L(\d+)_\d+_\d+|(input))\.")
# StyleGAN3's fixed input buffers: one model's set, never a mix of two random frequency sets
_SG3_INPUT_BUFFERS = ("freqs", "phases", "transform")


def layer_position(
    name: str, resolutions: Sequence[int], family: str = "stylegan2"
) -> tuple[int, int, str | None] | None:
    """(resolution, level, part) of a generator synthesis tensor; None outside synthesis.

    part is 'const', 'conv0', 'conv1', 'torgb', or None for block-level buffers. For StyleGAN3,
    `resolutions` are the layer indices and the answer is (index, 0, 'input' | 'conv' | 'torgb').
    """
    if family == "stylegan3":
        m3 = _SYN3.match(name)
        if not m3:
            return None
        if m3.group(2):
            return resolutions[0], 0, "input"
        index = int(m3.group(1))
        return index, 0, "torgb" if index == resolutions[-1] else "conv"
    m = _SYN.match(name)
    if not m:
        return None
    res, part = int(m.group(1)), m.group(2)
    if res not in resolutions:
        return None
    level = 0 if part in ("const", "conv0") else 1
    return res, level, part


def position_index(res: int, level: int, resolutions: Sequence[int], family: str = "stylegan2") -> int:
    if family == "stylegan3":
        return res
    return 2 * list(resolutions).index(res) + level


def switch_weight(position: int, switch_position: int, width: float | None, *, first: int = 0) -> float:
    """Weight of the high model at a layer position.

    The hard switch takes the high model from `switch_position + first` on: 0 is gancraft's
    rule, 2 the reference script's `x > 1`.
    """
    x = position - switch_position
    if width is None:
        return 1.0 if x >= first else 0.0
    return 1.0 / (1.0 + math.exp(-x / width))


def parse_pinkney(spec: str) -> tuple[int, int]:
    """'32' or '32:1' -> (resolution, level) as blend_models.py's --res and --level."""
    res_s, sep, level_s = spec.partition(":")
    try:
        res, level = int(res_s), int(level_s) if sep else 0
    except ValueError:
        raise GancraftError(f"--pinkney: cannot read {spec!r} (expected RES or RES:LEVEL, e.g. 32 or 32:1)") from None
    if level not in (0, 1):
        raise GancraftError(f"--pinkney: level must be 0 or 1, got {level}")
    return res, level


def parse_alpha(
    spec: str, n_high: int, resolutions: Sequence[int], unit: str = "resolution"
) -> dict[int, tuple[float, ...]]:
    """'4:0,8:0,16:0.3,32:1' -> {res: weights of the high models}; several highs as '16:0.3/0.2'.

    A resolution that is not listed takes the value of the nearest listed resolution below it
    (the low model alone below the first one listed), so '32:1' alone is a hard switch at 32.
    StyleGAN3 models list layer indices instead (unit 'layer').
    """
    given: dict[int, tuple[float, ...]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        res_s, sep, val_s = part.partition(":")
        try:
            res = int(res_s)
            vals = tuple(float(v) for v in val_s.split("/")) if sep else ()
        except ValueError:
            raise GancraftError(f"--alpha: cannot read {part!r} (expected RES:WEIGHT, e.g. 16:0.3)") from None
        if not vals:
            raise GancraftError(f"--alpha: {part!r} has no weight (expected RES:WEIGHT, e.g. 16:0.3)")
        if res not in resolutions:
            raise GancraftError(
                f"--alpha: the model has no {unit} {res} (its layers are at {_units(resolutions, unit)})"
            )
        if len(vals) != n_high:
            raise GancraftError(
                f"--alpha: {part!r} gives {len(vals)} weights for {n_high} high model(s) (separate them with '/')"
            )
        if not all(math.isfinite(v) for v in vals):
            raise GancraftError(f"--alpha: {part!r} has a weight that is not a finite number")
        if res in given:
            raise GancraftError(f"--alpha: {unit} {res} is given twice")
        given[res] = vals
    if not given:
        raise GancraftError("--alpha: no RES:WEIGHT pairs given")
    out = {}
    current = (0.0,) * n_high
    for res in resolutions:
        current = given.get(res, current)
        out[res] = current
    return out


def _units(resolutions: Sequence[int], unit: str) -> str:
    if unit == "layer":
        return f"{resolutions[0]}-{resolutions[-1]}, L{resolutions[-1]} the toRGB"
    return ", ".join(map(str, resolutions))


def _model_index(ref: str | int, n_models: int, what: str) -> int:
    if isinstance(ref, int):
        idx = ref
    elif ref == "low":
        idx = 0
    elif ref == "high":
        idx = 1
    else:
        try:
            idx = int(ref)
        except ValueError:
            raise GancraftError(f"{what}: expected low, high or a model index, got {ref!r}") from None
    if not 0 <= idx < n_models:
        raise GancraftError(f"{what}: model index {idx} is out of range (0 = low, 1..{n_models - 1} = high models)")
    return idx


def default_switch(resolutions: Sequence[int]) -> int:
    """The switch used when none is given: the block a third of the way up the synthesis network.

    Pinkney's layer swapping takes the pose (the low-resolution layers) from one model and the
    texture and style (the high-resolution layers) from the other. For his 1024 px ukiyo-e
    portraits that split is at 32 (gancraft's documented example, `--switch 32`): the 4, 8 and 16
    blocks, a third of the nine, keep the pose. The same fraction, rounded, gives 32 at 512 px,
    16 at 256 px and 8 at 32 px.
    """
    return resolutions[round(len(resolutions) / 3)]  # StyleGAN3: layer 5 of 15, L5


def blend_recipes(
    keys: Sequence[str],
    resolutions: Sequence[int],
    n_models: int,
    *,
    switch: int | None = None,
    blend_width: float | None = None,
    level: int = 0,
    alpha: dict[int, Sequence[float]] | None = None,
    mapping_from: str | int = "low",
    w_avg_from: str | int | None = None,
    torgb_from: str | int = "blend",
    channel_swap: "ChannelSwap | None" = None,
    pinkney: tuple[int, int] | None = None,
    family: str = "stylegan2",
) -> dict[str, Recipe]:
    """Per-tensor weights over [low, *highs] for a layer blend.

    Exactly one of `switch` (two models), `pinkney` ((res, level) of the reference script, two
    models) and `alpha` ({res: weights of the highs}) is given. For StyleGAN3 (`family`),
    `resolutions` are the layer indices 0..N and `switch` and `alpha` speak in them.
    """
    n_high = n_models - 1
    if n_high < 1:
        raise GancraftError("blend-layers needs a low model and at least one high model")
    sg3 = family == "stylegan3"
    if sg3:
        for value, what in (
            (pinkney, "--pinkney (blend_models.py has StyleGAN2's layers only)"),
            (channel_swap, "channel clusters and swaps"),
            (level or None, "--switch-level (its layers have one level each)"),
        ):
            if value is not None:
                raise GancraftError(f"{what}: not available for StyleGAN3 models")
    if pinkney is not None:
        if switch is not None or alpha is not None or level != 0:
            raise GancraftError("blend-layers: --pinkney RES[:LEVEL] replaces --switch, --switch-level and --alpha")
        if n_high != 1:
            raise GancraftError("--pinkney blends exactly two models, as blend_models.py does")
        switch, level = pinkney
    if switch is not None and alpha is not None:
        raise GancraftError("blend-layers: give either --switch RES or --alpha RES:WEIGHT,..., not both")
    if switch is None and alpha is None:
        if channel_swap is None:
            raise GancraftError("blend-layers: give --switch RES, --alpha RES:WEIGHT,... or a channel swap")
        # a pure channel swap: the low model everywhere else
        alpha = {res: (0.0,) * n_high for res in resolutions}
    if switch is not None:
        if n_high != 1:
            raise GancraftError("--switch blends exactly two models; use --alpha for more")
        if switch not in resolutions:
            unit = "layer" if sg3 else "resolution"
            raise GancraftError(
                f"{'--pinkney' if pinkney else '--switch'}: the model has no {unit} {switch} "
                f"(its layers are at {_units(resolutions, unit)})"
            )
        if level not in (0, 1):
            raise GancraftError("--switch-level must be 0 (first conv of the block) or 1 (second conv and toRGB)")
        if blend_width is not None and not blend_width > 0:
            raise GancraftError("--blend-width must be a positive number")
    elif blend_width is not None:
        raise GancraftError("--blend-width only applies to --switch")
    if alpha is not None:
        for res, w in alpha.items():
            if len(tuple(w)) != n_high:
                raise GancraftError(f"--alpha: resolution {res} has {len(tuple(w))} weights for {n_high} high model(s)")
    mapping_idx = _model_index(mapping_from, n_models, "--mapping-from")
    w_avg_idx = mapping_idx if w_avg_from is None else _model_index(w_avg_from, n_models, "--w-avg-from")
    torgb_idx = None if torgb_from == "blend" else _model_index(torgb_from, n_models, "--torgb-from")

    def onehot(i: int) -> tuple[float, ...]:
        return tuple(1.0 if j == i else 0.0 for j in range(n_models))

    def layer_weights(res: int, lvl: int) -> tuple[float, ...]:
        if switch is not None:
            sw = position_index(switch, level, resolutions, family)
            t = switch_weight(position_index(res, lvl, resolutions, family), sw, blend_width, first=2 if pinkney else 0)
            highs = (t,)
        else:
            highs = tuple(float(a) for a in alpha[res])
        return (1.0 - sum(highs), *highs)

    recipes: dict[str, Recipe] = {}
    for key in keys:
        net = key.split(".", 1)[0]
        pos = layer_position(key, resolutions, family) if net in ("G", "G_ema") else None
        if net == "D":
            w = onehot(0)
        elif pos is None:
            w = onehot(w_avg_idx if key.endswith("mapping.w_avg") else mapping_idx)
        else:
            res, lvl, part = pos
            w = layer_weights(res, lvl)
            if pinkney and res == resolutions[0] and part == "conv1":
                w = onehot(0)  # the script never lists TF's 4x4/Conv
            if part == "torgb" and torgb_idx is not None:
                w = onehot(torgb_idx)
            if key.endswith(("resample_filter", "up_filter", "down_filter")) or (
                pinkney and key.endswith("noise_const")
            ):
                w = onehot(0)
            elif key.endswith("noise_const") or (part == "input" and key.endswith(_SG3_INPUT_BUFFERS)):
                # a fixed noise image is copied from the model that dominates its layer, so the
                # layer is reproduced exactly at a hard switch and never gets a blurred mixture
                w = onehot(dominant(w))
        recipes[key] = Linear(w)
    if channel_swap is not None:
        channel_swap.apply(recipes, n_models, resolutions)
    return recipes


class ChannelSwap:
    """Replace chosen output channels of one conv layer by those of another model.

    The layer's modulated conv weight rows and biases for those channels come from model
    `source` (1 = the first high model), so exactly those feature maps are computed as the
    source model computes them while every other channel keeps the blend's value.
    """

    def __init__(self, layer: str, channels: Sequence[int], source: int = 1):
        self.layer = layer
        self.channels = sorted(set(int(c) for c in channels))
        self.source = source

    def apply(self, recipes: dict[str, Recipe], n_models: int, resolutions: Sequence[int]) -> None:
        if not 0 < self.source < n_models:
            raise GancraftError(f"channel swap: model index {self.source} is not a high model")
        targets = [
            k
            for k in recipes
            if k.split(".", 1)[0] in ("G", "G_ema")
            and k.split(".", 1)[1] in (f"synthesis.{self.layer}.weight", f"synthesis.{self.layer}.bias")
        ]
        if not targets:
            raise GancraftError(
                f"--cluster-layer: no conv layer {self.layer!r} in the model (names look like b32.conv0 or b32.conv1)"
            )
        row = tuple(1.0 if j == self.source else 0.0 for j in range(n_models))
        for k in targets:
            base = recipes[k]
            recipes[k] = Linear(base.weights, {**base.rows, **{c: row for c in self.channels}})


def _prepare(low, highs, nets, keep_d, **kw) -> tuple[list[Source], list[str], dict[str, Recipe], dict]:
    sources = open_sources([low, *highs])
    try:
        if nets is not None and "D" in nets:
            raise GancraftError("--nets: blends only mix generators; use --keep-d to copy the low model's D")
        if nets is None:
            nets = [n for n in ("G_ema", "G") if all(any(k.startswith(n + ".") for k in s.shapes) for s in sources)]
            if not nets:
                raise GancraftError("the inputs have no generator network (G_ema or G) in common")
        keys = select_keys(sources, nets)
        if keep_d:
            d_keys = [k for k in sources[0].shapes if k.startswith("D.")]
            if not d_keys:
                raise GancraftError(f"--keep-d: {sources[0].name} has no discriminator")
            keys = keys + d_keys
        family = sources[0].skeleton.family
        if any(s.skeleton.family != family for s in sources):
            raise GancraftError("blend-layers: the inputs mix StyleGAN2 and StyleGAN3 models")
        g = sources[0].skeleton.g_config
        resolutions = list(range(g.num_layers + 1)) if family == "stylegan3" else g.block_resolutions
        alpha = kw.get("alpha")
        if isinstance(alpha, str):
            kw["alpha"] = parse_alpha(
                alpha, len(highs), resolutions, "layer" if family == "stylegan3" else "resolution"
            )
        if isinstance(kw.get("pinkney"), str):
            kw["pinkney"] = parse_pinkney(kw["pinkney"])
        if (
            kw.get("switch") is None
            and kw.get("alpha") is None
            and kw.get("channel_swap") is None
            and kw.get("pinkney") is None
            and len(highs) == 1
        ):
            kw["switch"] = default_switch(resolutions)
        recipes = blend_recipes(keys, resolutions, len(sources), family=family, **kw)
    except BaseException:
        for s in sources:
            s.close()
        raise
    params = {
        k: (v if not isinstance(v, ChannelSwap) else {"layer": v.layer, "channels": v.channels, "source": v.source})
        for k, v in kw.items()
    }
    params["keep_d"] = keep_d
    return sources, keys, recipes, params


def blend_layers(
    low: str | os.PathLike,
    highs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    switch: int | None = None,
    blend_width: float | None = None,
    level: int = 0,
    alpha: str | dict[int, Sequence[float]] | None = None,
    mapping_from: str | int = "low",
    w_avg_from: str | int | None = None,
    torgb_from: str | int = "blend",
    nets: Sequence[str] | None = None,
    keep_d: bool = False,
    channel_swap: ChannelSwap | None = None,
    pinkney: str | tuple[int, int] | None = None,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Blend generator files layer by layer into `out` (native safetensors), streaming."""
    check_output_path(out, force=force, inputs=(low, *highs))
    sources, keys, recipes, params = _prepare(
        low,
        highs,
        nets,
        keep_d,
        switch=switch,
        blend_width=blend_width,
        level=level,
        alpha=alpha,
        mapping_from=mapping_from,
        w_avg_from=w_avg_from,
        torgb_from=torgb_from,
        channel_swap=channel_swap,
        pinkney=pinkney,
    )
    try:
        return merge_to_file(
            sources,
            recipes,
            out,
            output_skeleton(sources, keys),
            "blend-layers",
            params,
            force=force,
            progress=progress,
        )
    finally:
        for s in sources:
            s.close()


def blend_checkpoints(
    low: Checkpoint,
    highs: Sequence[Checkpoint],
    *,
    switch: int | None = None,
    blend_width: float | None = None,
    level: int = 0,
    alpha: str | dict[int, Sequence[float]] | None = None,
    mapping_from: str | int = "low",
    w_avg_from: str | int | None = None,
    torgb_from: str | int = "blend",
    nets: Sequence[str] | None = None,
    keep_d: bool = False,
    channel_swap: ChannelSwap | None = None,
    pinkney: str | tuple[int, int] | None = None,
) -> Checkpoint:
    """In-memory `blend_layers` for Python callers (no files, no history entry)."""
    sources, keys, recipes, _ = _prepare(
        low,
        highs,
        nets,
        keep_d,
        switch=switch,
        blend_width=blend_width,
        level=level,
        alpha=alpha,
        mapping_from=mapping_from,
        w_avg_from=w_avg_from,
        torgb_from=torgb_from,
        channel_swap=channel_swap,
        pinkney=pinkney,
    )
    return merge_to_checkpoint(sources, recipes, output_skeleton(sources, keys))


def z_for_seeds(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """One z per seed, drawn as NVIDIA's scripts do, so seeds mean the same pictures everywhere."""
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])).float()


def render_preview(
    models: Sequence[Checkpoint | str | os.PathLike],
    path: str | os.PathLike,
    seeds: Sequence[int] = (0, 1, 2, 3),
    truncation_psi: float = 1.0,
    device: str | torch.device = "cpu",
    force: bool = False,
) -> Path:
    """One PNG: a row per seed, a column per model (e.g. low | blended | high)."""
    from ..media.images import make_grid, save_png, to_uint8

    check_output_path(path, force=force)
    columns = []
    for m in models:
        ckpt = m if isinstance(m, Checkpoint) else load(m)
        G = ckpt.generator(device=device)
        z = z_for_seeds(seeds, G.z_dim).to(device)
        c = None
        if G.c_dim:
            c = torch.zeros(len(seeds), G.c_dim, device=device)
            c[:, 0] = 1  # class 0: a preview compares models, not classes
        with torch.no_grad():
            columns.append(to_uint8(G(z, c, truncation_psi=truncation_psi, noise_mode="const").cpu()))
        del G
    # rows = seeds, columns = models
    stacked = torch.stack([torch.as_tensor(col) for col in columns], dim=1)
    grid = make_grid(stacked.reshape(-1, *stacked.shape[2:]).numpy(), len(seeds), len(models), pad=2, pad_value=255)
    return save_png(grid, path, force=force)
