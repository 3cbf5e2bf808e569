"""Closed-form factorisation (SeFA) of the style-modulation weights, and directions files.

Every style-modulated layer computes ``styles = A w + b``; moving w by ``t * d`` moves its
styles by ``t * A d``. Stacking the chosen layers' A gives one matrix M, and the directions
that change the styles most are the right singular vectors of M (the eigenvectors of
``M^T M``). Sorted by singular value, the tail of that basis holds the *dormant* directions
that Domain Expansion repurposes: they barely change any style, hence barely any image.

Two conventions are in use and users compare against both:

* rosinality's ``closed_form_factorization.py`` (our default): every modulation weight except
  the toRGB ones after 4x4, the stored weights as they are (no normalisation);
* genforce's SeFA: the chosen layers only, each style channel's weight row scaled to unit norm.

The basis always spans all of w: when the stacked matrix has fewer rows than ``w_dim`` the
missing directions are its null space, singular value 0 (the most dormant of all).
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from ..checkpoint.core import Checkpoint
from ..errors import GancraftError
from ..io_util import atomic_write, display_name, no_log, sha256_file
from ..media.images import save_png
from ..metrics.perceptual import perceptual_metric
from .domains import resolve_domain
from .generate import edit_layer_mask, map_latents
from .seeds import z_from_seeds

LAYER_SPEC_HELP = (
    "all (every conv layer plus the 4x4 toRGB, as rosinality's closed_form_factorization.py), "
    "first (the 4x4 conv only, as the Domain Expansion paper's text; its code uses all), "
    "RES-RES (e.g. 4-32: those resolutions, same rule), "
    "or a comma list of layer indices as genforce counts them (0 = b4.conv1, 1 = b8.conv0, ...) "
    "and/or layer names (b4.conv1,b8.torgb)"
)


@dataclass
class SefaResult:
    directions: torch.Tensor  # [w_dim, w_dim] float32, unit rows, most influential first
    singular_values: torch.Tensor  # [w_dim] descending, zeros for the null space
    layers: list[str]  # layer names whose modulation weights were stacked
    normalized: bool = False
    edit_layers: list[str] | None = None  # where edits along these directions apply; None: every w
    metadata: dict[str, Any] = field(default_factory=dict)


def _conv_layers(layers: Sequence) -> list:
    return [info for info in layers if info.kind == "conv"]


def select_layers(G: torch.nn.Module, spec: str = "all") -> list:
    """Resolve a ``--layers`` spec to the generator's LayerInfo entries, in network order."""
    layers = list(G.synthesis.layers())
    first_torgb = next(info for info in layers if info.kind == "torgb")
    spec = (spec or "").strip()
    if spec == "all":
        chosen = [info for info in layers if info.kind == "conv" or info is first_torgb]
    elif spec == "first":
        chosen = [_conv_layers(layers)[0]]
    elif re.fullmatch(r"\d+-\d+", spec):
        lo, hi = (int(x) for x in spec.split("-"))
        resolutions = {info.resolution for info in layers}
        for res in (lo, hi):
            if res not in resolutions:
                raise GancraftError(
                    f"{spec}: {res} is not a resolution of this generator "
                    f"(it has {', '.join(str(r) for r in sorted(resolutions))})",
                    field="layers",
                )
        if lo > hi:
            raise GancraftError(f"{spec}: the first resolution must not exceed the second", field="layers")
        chosen = [
            info for info in layers if lo <= info.resolution <= hi and (info.kind == "conv" or info is first_torgb)
        ]
    else:
        convs = _conv_layers(layers)
        by_name = {info.name: info for info in layers}
        picked: dict[str, Any] = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                raise GancraftError(f"{spec!r}: empty entry; expected {LAYER_SPEC_HELP}", field="layers")
            if item.isdigit():
                idx = int(item)
                if idx >= len(convs):
                    raise GancraftError(
                        f"{spec}: layer index {idx} out of range (this generator has conv layers 0-{len(convs) - 1})",
                        field="layers",
                    )
                info = convs[idx]
            elif item in by_name:
                info = by_name[item]
            else:
                raise GancraftError(f"unknown layer {item!r}; expected {LAYER_SPEC_HELP}", field="layers")
            picked[info.name] = info
        chosen = [info for info in layers if info.name in picked]
    return chosen


def _affine(G: torch.nn.Module, name: str) -> torch.nn.Module:
    module = G.synthesis
    for part in name.split("."):  # StyleGAN2's b16.conv0, StyleGAN3's L3_36_512
        module = getattr(module, part)
    return module.affine


def modulation_matrix(G: torch.nn.Module, layers: Sequence, normalize: bool = False) -> torch.Tensor:
    """The chosen layers' affine weights ([style channels, w_dim] each) stacked along channels.

    The stored weights are used as they are: the runtime gain 1/sqrt(w_dim) is the same for every
    layer, so it would only rescale the singular values (and rosinality's script leaves it out).
    """
    mats = []
    for info in layers:
        # to the CPU first: MPS has no float64
        weight = _affine(G, info.name).weight.detach().cpu().to(torch.float64)
        if normalize:
            # genforce: each style channel counts equally, however large its weights are
            weight = weight / weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
        mats.append(weight)
    if not mats:
        raise GancraftError("selected no layer", field="layers")
    return torch.cat(mats, dim=0)


def factorize_matrix(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right singular vectors of M as unit rows (descending), with a full-rank basis of R^w_dim."""
    _, S, Vh = torch.linalg.svd(M.cpu().to(torch.float64), full_matrices=True)
    w_dim = M.shape[1]
    sv = torch.zeros(w_dim, dtype=torch.float64)
    sv[: S.numel()] = S
    # a sign convention makes files reproducible across LAPACK builds: largest |entry| positive
    rows = Vh.clone()
    pivot = rows.abs().argmax(dim=1)
    signs = torch.sign(rows[torch.arange(w_dim), pivot])
    rows = rows * signs.unsqueeze(1)
    return rows.to(torch.float32), sv.to(torch.float32)


def sefa(G: torch.nn.Module, layers: str = "all", normalize: bool = False) -> SefaResult:
    """Closed-form factorisation of a generator's modulation weights (see the module docstring)."""
    chosen = select_layers(G, layers)
    M = modulation_matrix(G, chosen, normalize=normalize)
    directions, singular_values = factorize_matrix(M)
    names = [info.name for info in chosen]
    # rosinality's apply_factor and Domain Expansion move the whole w; genforce edits a chosen
    # subset of layers only on those layers
    edit_layers = None if layers.strip() in ("all", "first") else names
    return SefaResult(directions, singular_values, names, normalize, edit_layers, {"layer_spec": layers})


def save_directions(
    path: str | os.PathLike,
    directions: torch.Tensor,
    metadata: dict[str, Any],
    singular_values: torch.Tensor | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    force: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
) -> Path:
    """Write a directions file: ``directions`` [K, w_dim] unit rows, optional ``singular_values`` [K].

    Metadata values are stored as JSON strings (safetensors metadata is str -> str); the readers in
    ``latent.files`` take ``names`` and ``layers`` (where edits apply; absent: every w) from it.
    """
    d = torch.as_tensor(directions).detach().to(torch.float32).cpu()
    if d.ndim != 2:
        raise GancraftError(f"directions must be K x w_dim, got shape {tuple(d.shape)}")
    norms = d.norm(dim=1)
    if not torch.all(torch.isfinite(d)) or torch.any(norms < 1e-8):
        raise GancraftError("directions contain a zero or non-finite row; nothing was written")
    tensors = {"directions": (d / norms.unsqueeze(1)).contiguous()}
    if singular_values is not None:
        sv = torch.as_tensor(singular_values).detach().to(torch.float32).cpu().contiguous()
        if sv.shape != (d.shape[0],):
            raise GancraftError(f"singular_values must have {d.shape[0]} entries, got {tuple(sv.shape)}")
        tensors["singular_values"] = sv
    for name, t in (extra_tensors or {}).items():
        tensors[name] = torch.as_tensor(t).detach().cpu().contiguous()
    meta = {key: json.dumps(value) for key, value in metadata.items()}
    with atomic_write(path, force=force, inputs=tuple(inputs)) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def sefa_metadata(
    result: SefaResult, source: str | os.PathLike | None, source_sha256: str | None, net: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "kind": "sefa",
        "factorized_layers": result.layers,
        "layer_spec": result.metadata.get("layer_spec"),
        "normalize": "per-row (genforce)" if result.normalized else "none (rosinality)",
        "names": [f"sefa{i:03d}" for i in range(result.directions.shape[0])],
    }
    if result.edit_layers is not None:
        meta["layers"] = result.edit_layers
    if source is not None:
        meta["source"] = {"path": str(source), "sha256": source_sha256, "net": net}
    return meta


def _synthesize(G: torch.nn.Module, ws: torch.Tensor, spec) -> torch.Tensor:
    from .generate import synthesize

    return synthesize(G, ws, spec)


def _step(direction: torch.Tensor, num_ws: int, layer_mask: torch.Tensor | None) -> torch.Tensor:
    """A direction as a [1, num_ws, w_dim] step, zero on the ws an edit must leave alone."""
    step = direction.view(1, 1, -1).expand(1, num_ws, -1)
    return step if layer_mask is None else step * layer_mask.to(step).view(1, -1, 1)


@torch.no_grad()
def measure_directions(
    G: torch.nn.Module,
    directions: torch.Tensor,
    ws: torch.Tensor,
    distance: float,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int = 16,
    spec=None,
    layer_mask: torch.Tensor | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over samples and both signs of metric(G(w), G(w +- distance * d)) per direction.

    ``ws``: base latents [N, num_ws, w_dim]; the step moves every layer's w (a w-space edit) unless
    ``layer_mask`` [num_ws] limits it. ``spec``: the DomainSpec to synthesise in. Returns two
    float64 arrays of length K.
    """
    if ws.ndim != 3:
        raise GancraftError(f"measure: base latents must be N x num_ws x w_dim, got {tuple(ws.shape)}")
    device = ws.device
    dirs = directions.to(device, torch.float32)
    n = ws.shape[0]
    base = torch.cat([_synthesize(G, ws[i : i + batch_size], spec) for i in range(0, n, batch_size)])
    means, stds = [], []
    for k in tqdm(range(dirs.shape[0]), desc="measure", unit="dir", disable=not progress, file=sys.stderr):
        step = distance * _step(dirs[k], ws.shape[1], layer_mask)
        values = []
        for i in range(0, n, batch_size):
            chunk = ws[i : i + batch_size]
            moved = torch.cat([chunk + step, chunk - step])
            imgs = _synthesize(G, moved, spec)
            ref = base[i : i + batch_size]
            values.append(metric(torch.cat([ref, ref]), imgs).float().cpu())
        v = torch.cat(values).double()
        means.append(v.mean().item())
        stds.append(v.std(unbiased=False).item())
    return np.array(means), np.array(stds)


def dormant_mask(changes: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Directions whose mean change is below ``fraction`` of the largest one's.

    Domain Expansion (App. C.1) notes there is no sharp cut-off; this threshold is a reading
    aid, and the CSV keeps every number.
    """
    changes = np.asarray(changes, dtype=np.float64)
    return changes < fraction * changes.max() if changes.size else np.zeros(0, dtype=bool)


def write_measure_csv(
    path: str | os.PathLike,
    changes: np.ndarray,
    stds: np.ndarray,
    singular_values: np.ndarray,
    dormant: np.ndarray,
    metric_name: str,
    force: bool = False,
) -> Path:
    with atomic_write(path, force=force) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["index", "singular_value", f"mean_{metric_name}", f"std_{metric_name}", "dormant"])
            for i, (c, s, sv, d) in enumerate(zip(changes, stds, singular_values, dormant)):
                writer.writerow([i, f"{sv:.6g}", f"{c:.6g}", f"{s:.6g}", int(bool(d))])
    return Path(path)


def read_measure_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The mean change and singular value per direction from a ``write_measure_csv`` file."""
    p = Path(path)
    if not p.is_file():
        raise GancraftError(f"{p}: measure CSV not found (write one with 'gancraft sefa --measure N')")
    try:
        with open(p, newline="") as fh:
            rows = list(csv.reader(fh))
        header = rows[0]
        change_col = next(i for i, name in enumerate(header) if name.startswith("mean_"))
        sv_col, idx_col = header.index("singular_value"), header.index("index")
        body = rows[1:]
        indices = [int(r[idx_col]) for r in body]
        changes = np.array([float(r[change_col]) for r in body])
        svs = np.array([float(r[sv_col]) for r in body])
    except (IndexError, StopIteration, ValueError, OSError, UnicodeDecodeError):
        raise GancraftError(
            f"{p}: not a 'gancraft sefa --measure' CSV (index, singular_value, mean_METRIC, ...)"
        ) from None
    if indices != list(range(len(body))) or not np.isfinite(changes).all():
        raise GancraftError(f"{p}: rows must be directions 0, 1, 2, ... with finite changes")
    return changes, svs


def plot_measure_png(
    path: str | os.PathLike, changes: np.ndarray, dormant: np.ndarray, threshold: float, title: str, force: bool = False
) -> Path:
    """Bar chart of the change per direction (dormant ones grey), like Domain Expansion's Fig. 12."""
    from PIL import Image, ImageDraw

    width, height = 960, 420
    left, right, top, bottom = 70, 20, 40, 50
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    k = len(changes)
    ymax = float(max(changes.max(), 1e-12)) * 1.05
    pw, ph = width - left - right, height - top - bottom

    def y_of(v: float) -> float:
        return top + ph * (1 - v / ymax)

    bar = pw / max(k, 1)
    for i, (v, d) in enumerate(zip(changes, dormant)):
        x0 = left + i * bar
        x1 = max(x0 + bar - (1 if bar > 3 else 0), x0 + 1)
        draw.rectangle([x0, y_of(float(v)), x1, top + ph], fill=(170, 170, 170) if d else (40, 90, 180))
    ty = y_of(threshold)
    for x in range(left, left + pw, 8):
        draw.line([x, ty, min(x + 4, left + pw), ty], fill=(200, 40, 40))
    draw.line([left, top, left, top + ph], fill="black")
    draw.line([left, top + ph, left + pw, top + ph], fill="black")
    for frac in (0.0, 0.5, 1.0):
        v = ymax / 1.05 * frac
        y = y_of(v)
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((4, y - 6), f"{v:.3g}", fill="black")
    for i in sorted({0, k - 1, *range(0, k, max(1, k // 8))}):
        x = left + (i + 0.5) * bar
        draw.line([x, top + ph, x, top + ph + 4], fill="black")
        draw.text((x - 8, top + ph + 6), str(i), fill="black")
    draw.text((left, 12), title, fill="black")
    draw.text((left + pw // 2 - 60, height - 20), "direction (descending singular value)", fill="black")
    with atomic_write(path, force=force) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


@torch.no_grad()
def traversal_sheet(
    G: torch.nn.Module,
    directions: torch.Tensor,
    indices: Sequence[int],
    ws: torch.Tensor,
    distance: float,
    steps: int = 7,
    spec=None,
    batch_size: int = 16,
    layer_mask: torch.Tensor | None = None,
) -> np.ndarray:
    """One row per (sample, direction), ``steps`` columns from -distance to +distance; HWC uint8."""
    from ..media.images import make_grid, to_uint8

    if steps < 2:
        raise GancraftError("must be at least 2", field="steps")
    offsets = torch.linspace(-distance, distance, steps, device=ws.device)
    rows = []
    for w in ws:
        for idx in indices:
            step = _step(directions[idx].to(ws.device, torch.float32), ws.shape[1], layer_mask)
            rows.append(w.unsqueeze(0) + offsets.view(-1, 1, 1) * step)
    all_ws = torch.cat(rows)
    imgs = torch.cat([_synthesize(G, all_ws[i : i + batch_size], spec) for i in range(0, all_ws.shape[0], batch_size)])
    return make_grid(to_uint8(imgs), rows=len(rows), cols=steps, pad=2, pad_value=255)


def write_sefa(
    model: Checkpoint,
    output: str | os.PathLike,
    *,
    layers: str = "all",
    normalize: bool = False,
    net: str | None = None,
    measure: int | None = None,
    distance: float = 5.0,
    measure_csv: str | os.PathLike | None = None,
    plot: str | os.PathLike | None = None,
    dormant_fraction: float = 0.05,
    lpips_weights: str | os.PathLike | None = None,
    sheet: str | os.PathLike | None = None,
    top_k: int = 8,
    indices: Sequence[int] | None = None,
    steps: int = 7,
    seeds: Sequence[int] | None = None,
    domain: str | None = None,
    psi: float = 1.0,
    batch: int = 16,
    device: str | torch.device = "cpu",
    force: bool = False,
    log: Callable[[str], None] = no_log,
) -> list[Path]:
    """Factorise `model`'s generator (`net`, default G_ema else G) over `layers` and write the
    directions file `output`; returns the paths written, in order.

    With `measure` N, every direction's mean perceptual change over N samples (`seeds`, default
    0..N-1) moved by +-`distance` also goes to `measure_csv` and `plot` (default: beside `output`),
    directions below `dormant_fraction` of the largest change marked dormant. With `sheet`, a
    traversal contact sheet of the first `top_k` directions (or `indices`) at the first seed.
    Latents are sampled, and every value checked, before anything is written.
    """
    if not 0 < dormant_fraction < 1:
        raise GancraftError(f"must be in (0, 1), got {dormant_fraction}", field="dormant_fraction")
    device = torch.device(device)
    net_name = net or model.generator_net()
    G = model.generator(net_name, device=device)
    result = sefa(G, layers, normalize=normalize)
    spec = resolve_domain(model, domain, G) if domain else None
    mask = None if result.edit_layers is None else edit_layer_mask(G, result.edit_layers).to(device)
    if measure is not None:
        mseeds = list(seeds) if seeds else list(range(measure))
        if len(mseeds) < measure:
            raise GancraftError(f"gives {len(mseeds)} seeds, {measure} are to be measured", field="seeds")
        measure_ws = map_latents(G, z_from_seeds(mseeds[:measure], G.z_dim), spec, psi)
        metric = perceptual_metric(lpips_weights, device=device)
        out = Path(output)
        measure_csv = measure_csv or out.with_name(out.stem + ".measure.csv")
        plot = plot or out.with_name(out.stem + ".measure.png")
    if sheet:
        if steps < 2:  # checked here too so that nothing is written before the sheet would fail
            raise GancraftError("must be at least 2", field="steps")
        k = result.directions.shape[0]
        outside = [i for i in indices or () if not 0 <= i < k]
        if outside:
            raise GancraftError(f"direction {outside[0]} is outside 0-{k - 1}", field="indices")
        chosen = list(indices) if indices else list(range(min(top_k, k)))
        sheet_seed = seeds[0] if seeds else 0
        sheet_ws = map_latents(G, z_from_seeds([sheet_seed], G.z_dim), spec, psi)
    sv = result.singular_values
    log(
        f"sefa: {len(result.layers)} layer(s) ({', '.join(result.layers)}), "
        f"{'per-row normalised' if normalize else 'no normalisation'}; singular values "
        f"{sv[0]:.4g} .. {sv[-1]:.4g}"
    )
    source = model.path
    meta = sefa_metadata(
        result, display_name(source) if source else None, sha256_file(source) if source else None, net_name
    )
    inputs = (source,) if source else ()
    written = [save_directions(output, result.directions, meta, singular_values=sv, force=force, inputs=inputs)]

    if measure is not None:
        log(f"measure: {metric.description}")
        means, stds = measure_directions(G, result.directions, measure_ws, distance, metric, batch, spec, mask)
        dormant = dormant_mask(means, dormant_fraction)
        write_measure_csv(measure_csv, means, stds, sv.numpy(), dormant, metric.name, force=force)
        written.append(Path(measure_csv))
        title = (
            f"mean {metric.name} change per direction, {measure} samples, step +-{distance:g} "
            f"({int(dormant.sum())} dormant: < {dormant_fraction:g} x max)"
        )
        plot_measure_png(plot, means, dormant, dormant_fraction * float(np.max(means)), title, force=force)
        written.append(Path(plot))
        first = int(np.argmax(dormant)) if dormant.any() else None
        log(
            f"measure ({metric.name}): largest change {means.max():.4g} (direction {int(np.argmax(means))}), "
            f"smallest {means.min():.4g} (direction {int(np.argmin(means))}); {int(dormant.sum())} of "
            f"{len(means)} dormant" + (f", the first at index {first}" if first is not None else "")
        )

    if sheet:
        grid = traversal_sheet(G, result.directions, chosen, sheet_ws, distance, steps, spec, batch, mask)
        written.append(Path(save_png(grid, sheet, force=force)))
        log(
            f"sheet: rows = directions {','.join(str(i) for i in chosen)} (seed {sheet_seed}), "
            f"columns = -{distance:g}..+{distance:g} in {steps} steps"
        )
    return written
