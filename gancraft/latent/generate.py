"""Generation from seeds or stored latents: truncation, noise, domains, edits, interpolation, style mixing.

Determinism: with noise_mode 'const' an image depends only on its latent, the batch size and the
device. Batches are always run at the full batch size (a short last batch is padded with copies),
because CPU and GPU kernels pick different summation orders for different batch sizes; so the
same latents at the same batch size give bit-identical pixels, whatever else is in the batch.
Across batch sizes the same seed agrees to about 1e-5 in [-1, 1] units (at most one level in
uint8, and rarely that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import GancraftError
from ..nets.stylegan2 import DEFAULT_MODULATION, PRECISIONS
from .domains import DomainSpec, apply_domain, interpolate_domains
from .files import Direction, Edit
from .seeds import z_from_seeds
from .timing import frame_times

NOISE_MODES = ("const", "random", "none")


def check_precision(precision: str, G: torch.nn.Module | None = None) -> None:
    """Refuse a precision that does not exist, or (given G) that G's synthesis network cannot run."""
    if precision not in PRECISIONS:
        raise GancraftError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if G is not None:
        G.synthesis.check_precision(precision)


@dataclass
class Batch:
    """One generated batch, on the CPU. `ws` is exactly what was synthesised (float32)."""

    seeds: list[int]
    z: torch.Tensor
    ws: torch.Tensor
    images: torch.Tensor
    domain: str


def _device_of(G: torch.nn.Module) -> torch.device:
    return next(G.parameters()).device


def map_latents(
    G: torch.nn.Module, z: torch.Tensor, spec: DomainSpec | None = None, psi: float = 1.0, cutoff: int | None = None
) -> torch.Tensor:
    """z [N, z_dim] -> ws [N, num_ws, w_dim]: mapping (with the domain's class), truncation, domain transform."""
    dev = _device_of(G)
    z = z.to(dev, torch.float32)
    _check_class(G, spec)
    c = None if G.c_dim == 0 else spec.c.to(dev).reshape(1, -1).expand(z.shape[0], -1)
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
        return apply_domain(ws, spec.to(dev) if spec is not None else None)


def _check_class(G: torch.nn.Module, spec: DomainSpec | None) -> None:
    if G.c_dim > 0 and (spec is None or spec.c is None):
        raise GancraftError("conditional model: choose a class with --domain (a name, an index or 'all')")


def synthesize(
    G: torch.nn.Module,
    ws: torch.Tensor,
    spec: DomainSpec | None = None,
    noise_mode: str = "const",
    style_scale: torch.Tensor | None = None,
    precision: str = "fp32",
    modulation: str = DEFAULT_MODULATION,
) -> torch.Tensor:
    """ws -> NCHW float32 images on G's device, with the domain's style scales in the domain's
    modulation order (or explicit per-row ones, in order `modulation`).

    precision: "fp32" (exact, the default), "mixed" (the model's num_fp16_res blocks in float16,
    as NVIDIA runs them on GPU) or "bf16" (those blocks, or all when there are none, in bfloat16);
    see SynthesisNetwork.forward.
    """
    if noise_mode not in NOISE_MODES:
        raise GancraftError(f"--noise-mode {noise_mode!r}: expected one of {', '.join(NOISE_MODES)}")
    check_precision(precision, G)
    dev = _device_of(G)
    if style_scale is None and spec is not None and spec.style_scale is not None:
        style_scale, modulation = spec.style_scale, spec.modulation
    with torch.no_grad():
        return G.synthesis(
            ws.to(dev, torch.float32),
            noise_mode=noise_mode,
            style_scale=None if style_scale is None else style_scale.to(dev),
            precision=precision,
            modulation=modulation,
        )


def edit_layer_mask(G: torch.nn.Module, layers: Sequence[int | str] | None, what: str = "direction") -> torch.Tensor:
    """Boolean [num_ws]: which ws an edit moves. Layers are w indices or names like 'b16.conv0'; None: all."""
    mask = torch.zeros(G.num_ws, dtype=torch.bool)
    if layers is None:
        mask[:] = True
        return mask
    by_name = {info.name: info.w_index for info in G.synthesis.layers()}
    for layer in layers:
        if isinstance(layer, int):
            if not 0 <= layer < G.num_ws:
                raise GancraftError(f"{what}: layer index {layer} is out of range (model has {G.num_ws} ws)")
            mask[layer] = True
        elif layer in by_name:
            mask[by_name[layer]] = True
        else:
            raise GancraftError(f"{what}: unknown layer {layer!r} (layers are like {next(iter(by_name))})")
    return mask


def check_direction(G: torch.nn.Module, direction: Direction) -> None:
    if direction.vector.numel() != G.w_dim:
        raise GancraftError(
            f"{direction.source}: direction has {direction.vector.numel()} dimensions, the model's w has {G.w_dim}"
        )
    edit_layer_mask(G, direction.layers, direction.source)


def apply_edits(G: torch.nn.Module, ws: torch.Tensor, edits: Sequence[Edit]) -> torch.Tensor:
    """Move ws along each edit's direction by its alpha, on that direction's layers."""
    for edit in edits:
        check_direction(G, edit.direction)
        mask = edit_layer_mask(G, edit.direction.layers, edit.direction.source).to(ws.device)
        step = edit.alpha * edit.direction.vector.to(ws)
        ws = torch.where(mask[None, :, None], ws + step, ws)
    return ws


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _pad(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[0] >= size:
        return x
    return torch.cat([x, x[-1:].expand(size - x.shape[0], *x.shape[1:])])


def generate(
    G: torch.nn.Module,
    seeds: Sequence[int] | None = None,
    *,
    ws: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    domain: DomainSpec | None = None,
    psi: float = 1.0,
    cutoff: int | None = None,
    noise_mode: str = "const",
    edits: Sequence[Edit] = (),
    batch_size: int = 8,
    precision: str = "fp32",
) -> Iterator[Batch]:
    """An iterator of Batches for `seeds` (z from NVIDIA's seed convention) or for given `ws` (then z is only carried).

    precision applies to synthesis only (see `synthesize`); mapping and the stored ws stay float32.

    From seeds: mapping with the domain's class, truncation, domain transform, edits, synthesis.
    From ws: edits and synthesis only (the domain contributes its style scales), so stored ws
    reproduce their images exactly.

    Every refusal is raised by this call, before the first image: callers open progress bars
    and output files between the call and the first batch, and a refusal there would leave
    them half made.
    """
    if batch_size < 1:
        raise GancraftError(f"--batch must be >= 1, got {batch_size}")
    if noise_mode not in NOISE_MODES:
        raise GancraftError(f"--noise-mode {noise_mode!r}: expected one of {', '.join(NOISE_MODES)}")
    check_precision(precision, G)
    for edit in edits:
        check_direction(G, edit.direction)
    if ws is None:
        if seeds is None:
            raise ValueError("generate needs seeds or ws")
        _check_class(G, domain)
        seeds = [int(s) for s in seeds]
    else:
        if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
            raise GancraftError(
                f"latents have shape {tuple(ws.shape[1:])} per row, the model needs "
                f"{(G.num_ws, G.w_dim)} (num_ws x w_dim)"
            )
        seeds = [-1] * ws.shape[0] if seeds is None else [int(s) for s in seeds]
    return _generate_batches(G, seeds, ws, z, domain, psi, cutoff, noise_mode, edits, batch_size, precision)


def _generate_batches(
    G: torch.nn.Module,
    seeds: list[int],
    ws: torch.Tensor | None,
    z: torch.Tensor | None,
    domain: DomainSpec | None,
    psi: float,
    cutoff: int | None,
    noise_mode: str,
    edits: Sequence[Edit],
    batch_size: int,
    precision: str,
) -> Iterator[Batch]:
    """generate's batches, its arguments already checked."""
    n = len(seeds) if ws is None else ws.shape[0]
    name = domain.name if domain is not None else ""
    for sl in _batches(n, batch_size):
        count = sl.stop - sl.start
        batch_seeds = seeds[sl]
        if ws is None:
            zb = z_from_seeds(batch_seeds, G.z_dim)
            wb = map_latents(G, _pad(zb, batch_size), domain, psi, cutoff)
        else:
            zb = z[sl] if z is not None else torch.zeros([count, 0])
            wb = _pad(ws[sl], batch_size).to(_device_of(G), torch.float32)
        wb = apply_edits(G, wb, edits)
        images = synthesize(G, wb, domain, noise_mode, precision=precision)
        yield Batch(seeds=batch_seeds, z=zb.cpu(), ws=wb[:count].cpu(), images=images[:count].cpu(), domain=name)


# ---- interpolation -------------------------------------------------------------------------------


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation along the great circle between the directions of a and b (last dim).

    Gaussian z keep their typical norm along the path, which linear interpolation would shrink
    midway (mapping normalises z anyway, but the angle is what moves evenly).
    """
    a64, b64 = a.double(), b.double()
    an = a64 / a64.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    bn = b64 / b64.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1, 1))
    so = torch.sin(omega)
    near = so.abs() < 1e-6
    safe = torch.where(near, torch.ones_like(so), so)
    out = (torch.sin((1 - t) * omega) / safe) * a64 + (torch.sin(t * omega) / safe) * b64
    out = torch.where(near, lerp(a64, b64, t), out)
    return out.to(a.dtype)


@dataclass
class Frame:
    """The ws of every cell in one video frame, with per-row style scales when domains morph."""

    ws: torch.Tensor
    style_scale: torch.Tensor | None = None
    modulation: str = DEFAULT_MODULATION


PATHS = ("cubic", "linear")


def cubic_path(keys: torch.Tensor, frames: int, loop: bool) -> torch.Tensor:
    """`frames` points on a cubic spline through the keyframes `keys` (K x ...), as NVIDIA's gen_video.

    The spline is twice differentiable, so speed and direction change smoothly at the keyframes
    instead of jumping there as on a piecewise-linear path. With loop it is periodic: the last
    keyframe leads back to the first as smoothly. Frames sit where `frame_times` puts them.
    """
    from scipy.interpolate import CubicSpline

    n = keys.shape[0]
    y = keys.double().numpy()
    if loop:
        spline = CubicSpline(np.arange(n + 1), np.concatenate([y, y[:1]]), bc_type="periodic")
    else:
        spline = CubicSpline(np.arange(n), y, bc_type="not-a-knot")
    positions = [i + t for i, _, t in frame_times(n, frames, loop)]
    return torch.from_numpy(spline(np.asarray(positions))).to(keys.dtype)


def interpolation_plan(
    G: torch.nn.Module,
    cells: Sequence[Sequence[int]],
    frames: int,
    loop: bool = False,
    space: str = "w",
    domain: DomainSpec | None = None,
    psi: float = 1.0,
    cutoff: int | None = None,
    path: str = "cubic",
) -> list[Frame]:
    """Each cell walks through its own seed list: a cubic spline through the keyframes' w, or
    piecewise slerp in z (then mapping) or lerp in w."""
    if space not in ("z", "w"):
        raise GancraftError(f"--space {space!r}: expected z or w")
    if path not in PATHS:
        raise GancraftError(f"--path {path!r}: expected {' or '.join(PATHS)}")
    if path == "cubic" and space != "w":
        raise GancraftError("a cubic path runs through the keyframes' w; use --path linear for z")
    per_cell = []
    for seeds in cells:
        if len(seeds) < 2:
            raise GancraftError(f"--seeds {','.join(map(str, seeds))}: interpolation needs at least two seeds")
        z = z_from_seeds(seeds, G.z_dim)
        times = frame_times(len(seeds), frames, loop)
        if path == "cubic":
            per_cell.append(cubic_path(map_latents(G, z, domain, psi, cutoff).cpu(), frames, loop))
        elif space == "z":
            zt = torch.stack([slerp(z[i], z[j], t) for i, j, t in times])
            per_cell.append(map_latents(G, zt, domain, psi, cutoff).cpu())
        else:
            keys = map_latents(G, z, domain, psi, cutoff).cpu()
            per_cell.append(torch.stack([lerp(keys[i], keys[j], t) for i, j, t in times]))
    return _frames_from_cells(per_cell, domain)


def traversal_plan(
    G: torch.nn.Module,
    seeds: Sequence[int],
    direction: Direction,
    lo: float,
    hi: float,
    frames: int,
    loop: bool = False,
    domain: DomainSpec | None = None,
    psi: float = 1.0,
    cutoff: int | None = None,
) -> list[Frame]:
    """Each seed is a cell moving along the direction from lo to hi (and back with loop)."""
    check_direction(G, direction)
    base = map_latents(G, z_from_seeds(seeds, G.z_dim), domain, psi, cutoff).cpu()
    ends = (float(lo), float(hi))
    alphas = [ends[i] + (ends[j] - ends[i]) * t for i, j, t in frame_times(2, frames, loop)]
    out = []
    for a in alphas:
        ws = apply_edits(G, base, [Edit(direction, a)])
        out.append(Frame(ws=ws, style_scale=_rows(domain, len(seeds)), modulation=_order(domain)))
    return out


def domain_morph_plan(
    G: torch.nn.Module,
    seeds: Sequence[int],
    domains: Sequence[DomainSpec],
    frames: int,
    loop: bool = False,
    psi: float = 1.0,
    cutoff: int | None = None,
) -> list[Frame]:
    """Each seed is a cell; the same z moves through the domains in order (class vectors, shifts or
    style scales interpolated)."""
    if len(domains) < 2:
        raise GancraftError("--domains: a morph needs at least two domains")
    z = z_from_seeds(seeds, G.z_dim)
    out = []
    for i, j, t in frame_times(len(domains), frames, loop):
        spec = interpolate_domains(domains[i], domains[j], t)
        out.append(
            Frame(
                ws=map_latents(G, z, spec, psi, cutoff).cpu(),
                style_scale=_rows(spec, len(seeds)),
                modulation=spec.modulation,
            )
        )
    return out


def style_scale_plan(
    G: torch.nn.Module,
    seeds: Sequence[int],
    scales: torch.Tensor,
    psi: float = 1.0,
    cutoff: int | None = None,
    modulation: str = DEFAULT_MODULATION,
) -> list[Frame]:
    """Each seed is a cell with fixed ws; frame f applies domain vector scales[f] ([frames, style_dim]) in
    order `modulation` to every cell, e.g. vectors moving between text prompts (`domains.prompt_morph_vectors`)."""
    if scales.ndim != 2 or scales.shape[1] != G.synthesis.style_dim:
        raise GancraftError(
            f"style scales have shape {tuple(scales.shape)}, expected [frames, {G.synthesis.style_dim}]"
        )
    ws = map_latents(G, z_from_seeds(seeds, G.z_dim), None, psi, cutoff).cpu()
    return [
        Frame(ws=ws, style_scale=s.reshape(1, -1).expand(len(seeds), -1).cpu(), modulation=modulation) for s in scales
    ]


def _rows(spec: DomainSpec | None, n: int) -> torch.Tensor | None:
    if spec is None or spec.style_scale is None:
        return None
    return spec.style_scale.reshape(1, -1).expand(n, -1).cpu()


def _order(spec: DomainSpec | None) -> str:
    return DEFAULT_MODULATION if spec is None else spec.modulation


def _frames_from_cells(per_cell: list[torch.Tensor], domain: DomainSpec | None) -> list[Frame]:
    n_frames = per_cell[0].shape[0]
    return [
        Frame(
            ws=torch.stack([c[f] for c in per_cell]),
            style_scale=_rows(domain, len(per_cell)),
            modulation=_order(domain),
        )
        for f in range(n_frames)
    ]


def render_frames(
    G: torch.nn.Module, plan: Sequence[Frame], noise_mode: str = "const", batch_size: int = 8, precision: str = "fp32"
) -> Iterator[torch.Tensor]:
    """An iterator that synthesises a plan batch by batch across frame boundaries and yields each
    frame's cells [cells, C, H, W].

    precision as in `synthesize`. Refusals are raised by this call, before the first frame (see `generate`).
    """
    if batch_size < 1:
        raise GancraftError(f"--batch must be >= 1, got {batch_size}")
    if noise_mode not in NOISE_MODES:
        raise GancraftError(f"--noise-mode {noise_mode!r}: expected one of {', '.join(NOISE_MODES)}")
    check_precision(precision, G)
    orders = {f.modulation for f in plan if f.style_scale is not None}
    if len(orders) > 1:
        raise GancraftError("a video cannot mix domain vectors of different modulation orders")
    modulation = orders.pop() if orders else DEFAULT_MODULATION
    scales = None
    if any(f.style_scale is not None for f in plan):
        dim = G.synthesis.style_dim
        cells = plan[0].ws.shape[0]
        scales = torch.cat([f.style_scale if f.style_scale is not None else torch.zeros(cells, dim) for f in plan])
    return _render_batches(G, plan, scales, modulation, noise_mode, batch_size, precision)


def _render_batches(
    G: torch.nn.Module,
    plan: Sequence[Frame],
    scales: torch.Tensor | None,
    modulation: str,
    noise_mode: str,
    batch_size: int,
    precision: str,
) -> Iterator[torch.Tensor]:
    """render_frames' frames, its arguments already checked."""
    if not plan:
        return
    ws = torch.cat([f.ws for f in plan])
    cells = plan[0].ws.shape[0]
    pending: list[torch.Tensor] = []
    done = 0
    for sl in _batches(ws.shape[0], batch_size):
        count = sl.stop - sl.start
        scale = None if scales is None else _pad(scales[sl], batch_size)
        imgs = synthesize(
            G,
            _pad(ws[sl], batch_size),
            noise_mode=noise_mode,
            style_scale=scale,
            precision=precision,
            modulation=modulation,
        )[:count].cpu()
        pending.extend(imgs)
        while len(pending) - done >= cells:
            yield torch.stack(pending[done : done + cells])
            done += cells
        if done:
            pending, done = pending[done:], 0


# ---- style mixing --------------------------------------------------------------------------------

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _int_list(text: str, option: str) -> list[int]:
    out: list[int] = []
    for item in str(text).split(","):
        m = _RANGE.match(item.strip())
        if not m:
            raise GancraftError(f"{option} {text!r}: {item.strip()!r} is not a number or a range like 0-6")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo:
            raise GancraftError(f"{option} {text!r}: range {item.strip()!r} ends before it starts")
        out.extend(range(lo, hi + 1))
    return out


def layer_indices(G: torch.nn.Module, text: str, option: str = "--mix-layers") -> list[int]:
    """w indices from '0-6' or '1,3,5-7' (NVIDIA's --styles numbering)."""
    idx = sorted(set(_int_list(text, option)))
    bad = [i for i in idx if i >= G.num_ws]
    if bad:
        raise GancraftError(f"{option} {text!r}: index {bad[0]} is out of range (model has ws 0-{G.num_ws - 1})")
    return idx


def resolution_indices(G: torch.nn.Module, text: str, option: str = "--mix-res") -> list[int]:
    """w indices of the layers whose resolution lies in 'LO-HI' (e.g. 4-32: the coarse styles)."""
    bounds = _int_list(text, option)
    lo, hi = min(bounds), max(bounds)
    valid = [info.resolution for info in G.synthesis.layers()]
    if hi < min(valid) or lo > max(valid):
        raise GancraftError(f"{option} {text!r}: the model's resolutions are {min(valid)}-{max(valid)}")
    top = G.synthesis.layers()[-1]
    idx = {
        info.w_index
        for info in G.synthesis.layers()
        if lo <= info.resolution <= hi and (info.kind == "conv" or info is top)
    }
    return sorted(idx)


def style_mix(
    G: torch.nn.Module,
    row_seeds: Sequence[int],
    col_seeds: Sequence[int],
    layers: Sequence[int],
    domain: DomainSpec | None = None,
    psi: float = 1.0,
    cutoff: int | None = None,
    noise_mode: str = "const",
    batch_size: int = 8,
    precision: str = "fp32",
) -> torch.Tensor:
    """Images [(R+1)*(C+1), C, H, W] row-major for a mixing grid: cell (r, c) takes the row seed's ws
    with the column seed's ws at `layers`; the first row holds the column seeds' own images, the
    first column the row seeds', and the corner is blank (-1, black). precision as in `synthesize`."""
    layers = list(layers)
    if not layers:
        raise GancraftError("style mixing needs at least one layer to take from the column seeds")
    seeds = list(row_seeds) + list(col_seeds)
    all_ws = map_latents(G, z_from_seeds(seeds, G.z_dim), domain, psi, cutoff).cpu()
    row_ws, col_ws = all_ws[: len(row_seeds)], all_ws[len(row_seeds) :]
    cells = [col_ws[0]]  # placeholder for the corner, replaced by black below
    cells += list(col_ws)
    for r in range(len(row_seeds)):
        cells.append(row_ws[r])
        for c in range(len(col_seeds)):
            mixed = row_ws[r].clone()
            mixed[layers] = col_ws[c][layers]
            cells.append(mixed)
    ws = torch.stack(cells)
    images = torch.cat(
        [
            b.images
            for b in generate(
                G, ws=ws, domain=domain, noise_mode=noise_mode, batch_size=batch_size, precision=precision
            )
        ]
    )
    images[0] = -1
    return images
