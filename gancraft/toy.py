"""Procedural toy image domains that share factors of variation.

GAN-merging methods (GAN Cocktail, Domain Expansion) are about generators for *related*
domains: faces, cats and dogs all have a head that turns, grows, changes colour and smiles,
and a merged model is good when those shared factors line up across domains. Real datasets
and pretrained weights are out of reach here, so these three drawn domains stand in for them:
the same factor vector renders a face, a cat or a dog in the same pose, size, colour,
expression and background, which lets tests and benchmarks check alignment directly.

Factors (one float per image, see `FACTOR_RANGES`):

- ``yaw`` in [-1, 1]: head turned left (-1) to right (+1); eyes, nose and mouth shift sideways
  and the near eye grows while the far one shrinks.
- ``size`` in [0, 1]: head radius, from small to large.
- ``hue`` in [0, 1]: hue of the skin or fur (and hair / ears, darker).
- ``expression`` in [-1, 1]: mouth curvature, frown (-1) to smile (+1).
- ``background`` in [0, 1]: hue of the pale background.

Images are drawn at 4x the target size and reduced with a Lanczos filter, so edges are
anti-aliased and the output is a pure function of (domain, factors, resolution).
"""

from __future__ import annotations

import colorsys
import csv
import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from PIL import Image, ImageDraw

from .errors import GancraftError
from .io_util import atomic_write
from .media.images import ImageWriter

DOMAINS: tuple[str, ...] = ("face", "cat", "dog")

FACTOR_RANGES: dict[str, tuple[float, float]] = {
    "yaw": (-1.0, 1.0),
    "size": (0.0, 1.0),
    "hue": (0.0, 1.0),
    "expression": (-1.0, 1.0),
    "background": (0.0, 1.0),
}
FACTORS: tuple[str, ...] = tuple(FACTOR_RANGES)

_SUPERSAMPLE = 4
_MIN_RESOLUTION = 8


def sample_factors(n: int, seed: int, ranges: Mapping[str, tuple[float, float]] | None = None) -> dict[str, np.ndarray]:
    """Draw `n` factor vectors uniformly over `FACTOR_RANGES` (float64 arrays of length n).

    The same seed gives the same factors for every domain, so paired images across domains
    share pose, size, colour, expression and background. `ranges` narrows some factors (a
    sub-range of each one's own); the other factors come out as without it.
    """
    if n < 0:
        raise GancraftError(f"number of images must be >= 0, got {n}")
    bounds = dict(FACTOR_RANGES)
    for name, (lo, hi) in (ranges or {}).items():
        if name not in FACTOR_RANGES:
            raise GancraftError(f"unknown toy factor {name!r}; choose one of {', '.join(FACTORS)}")
        full = FACTOR_RANGES[name]
        if not full[0] <= lo <= hi <= full[1]:
            raise GancraftError(f"{name} range {lo:g},{hi:g}: needs {full[0]:g} <= low <= high <= {full[1]:g}")
        bounds[name] = (lo, hi)
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(lo, hi, size=n) for name, (lo, hi) in bounds.items()}


def parse_ranges(specs: Iterable[str]) -> dict[str, tuple[float, float]]:
    """['yaw=-0.15,0.15', ...] -> {'yaw': (-0.15, 0.15), ...}; the bounds are checked by
    `sample_factors`. A factor named twice is refused: which of the two was meant is a guess."""
    ranges: dict[str, tuple[float, float]] = {}
    for spec in specs:
        name, _, bounds = spec.partition("=")
        name = name.strip()
        parts = bounds.split(",")
        try:
            lo, hi = (float(v) for v in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            lo = hi = None
        if lo is None or not (np.isfinite(lo) and np.isfinite(hi)):
            raise GancraftError(f"--range {spec!r}: expected FACTOR=LOW,HIGH, e.g. yaw=-0.15,0.15")
        if name in ranges:
            raise GancraftError(f"--range {spec!r}: {name} already has a range; give each factor once")
        ranges[name] = (lo, hi)
    return ranges


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise GancraftError(f"unknown toy domain {domain!r}; choose one of {', '.join(DOMAINS)}")


def _check_resolution(resolution: int) -> None:
    if not isinstance(resolution, (int, np.integer)) or resolution < _MIN_RESOLUTION:
        raise GancraftError(f"toy resolution must be an integer >= {_MIN_RESOLUTION}, got {resolution!r}")


def _factor_row(factors: Mapping[str, np.ndarray], index: int) -> dict[str, float]:
    row = {}
    for name, (lo, hi) in FACTOR_RANGES.items():
        if name not in factors:
            raise GancraftError(f"toy factors are missing {name!r} (need {', '.join(FACTORS)})")
        value = float(np.asarray(factors[name]).reshape(-1)[index])
        # Clipping rather than refusing keeps interpolations slightly past the range usable.
        row[name] = min(max(value, lo), hi)
    return row


def _ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, fill) -> None:
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)


def _mouth(draw: ImageDraw.ImageDraw, cx: float, cy: float, half_width: float, bend: float, width: int, fill) -> None:
    # A parabola through the corners: positive bend drops the middle (smile), negative lifts it.
    xs = np.linspace(-1.0, 1.0, 17)
    points = [(cx + half_width * x, cy + bend * (1.0 - x * x)) for x in xs]
    draw.line(points, fill=fill, width=width, joint="curve")


def _eyes(draw, cx, cy, r, yaw, gap, eye_r, white, pupil, pupil_scale=0.55, slit=False) -> None:
    for side in (-1.0, 1.0):
        # The eye on the side the head turns towards comes nearer the viewer and looks larger.
        grow = 1.0 + 0.3 * side * yaw
        ex = cx + side * gap * r * (1.0 - 0.25 * side * yaw)
        rx = eye_r * r * grow
        _ellipse(draw, ex, cy, rx, eye_r * r, white)
        px = ex + 0.35 * rx * yaw
        if slit:
            _ellipse(draw, px, cy, 0.25 * rx, 0.85 * eye_r * r, pupil)
        else:
            _ellipse(draw, px, cy, pupil_scale * rx, pupil_scale * eye_r * r, pupil)


def _draw_face(draw, S, f) -> None:
    r = S * (0.24 + 0.12 * f["size"])
    cx = S * 0.5 + f["yaw"] * 0.05 * S
    cy = S * 0.54
    skin = _rgb(0.02 + 0.1 * f["hue"], 0.25 + 0.2 * f["hue"], 0.95)
    hair = _rgb(f["hue"], 0.7, 0.35)
    # Hair is a larger disc behind the head, peeking out above and at the sides.
    _ellipse(draw, cx, cy - 0.12 * r, 1.12 * r, 1.08 * r, hair)
    _ellipse(draw, cx, cy + 0.05 * r, 0.92 * r, 1.0 * r, skin)
    fx = cx + f["yaw"] * 0.32 * r
    # A fringe over the forehead separates the face silhouette from the animals'.
    draw.chord((cx - 0.95 * r, cy - 1.1 * r, cx + 0.95 * r, cy - 0.05 * r), 180, 360, fill=hair)
    _eyes(draw, fx, cy + 0.05 * r, r, f["yaw"], 0.36, 0.14, (255, 255, 255), (40, 30, 30))
    nose = _rgb(0.03 + 0.1 * f["hue"], 0.45, 0.75)
    draw.line(
        [(fx + 0.1 * r * f["yaw"], cy + 0.15 * r), (fx + 0.15 * r * f["yaw"], cy + 0.4 * r)],
        fill=nose,
        width=max(1, int(S * 0.02)),
    )
    _mouth(draw, fx, cy + 0.6 * r, 0.32 * r, 0.18 * r * f["expression"], max(1, int(S * 0.03)), (170, 40, 50))


def _draw_cat(draw, S, f) -> None:
    r = S * (0.22 + 0.11 * f["size"])
    cx = S * 0.5 + f["yaw"] * 0.05 * S
    cy = S * 0.58
    fur = _rgb(f["hue"], 0.55, 0.8)
    inner = (240, 170, 185)
    for side in (-1.0, 1.0):
        base_x = cx + side * 0.55 * r
        tip = (base_x + side * 0.2 * r + f["yaw"] * 0.15 * r, cy - 1.55 * r)
        draw.polygon([(base_x - 0.45 * r, cy - 0.55 * r), tip, (base_x + 0.45 * r, cy - 0.55 * r)], fill=fur)
        tip_in = (tip[0] - side * 0.05 * r, tip[1] + 0.3 * r)
        draw.polygon([(base_x - 0.25 * r, cy - 0.6 * r), tip_in, (base_x + 0.25 * r, cy - 0.6 * r)], fill=inner)
    _ellipse(draw, cx, cy, 1.08 * r, 0.9 * r, fur)
    fx = cx + f["yaw"] * 0.32 * r
    _eyes(draw, fx, cy - 0.2 * r, r, f["yaw"], 0.42, 0.17, (200, 220, 60), (20, 20, 20), slit=True)
    nose_y = cy + 0.15 * r
    draw.polygon([(fx - 0.12 * r, nose_y), (fx + 0.12 * r, nose_y), (fx, nose_y + 0.12 * r)], fill=inner)
    whisker = (250, 250, 250)
    ww = max(1, int(S * 0.01))
    for side in (-1.0, 1.0):
        for dy in (-0.08, 0.08):
            start = (fx + side * 0.25 * r, nose_y + 0.15 * r)
            draw.line([start, (fx + side * 1.1 * r, nose_y + 0.15 * r + dy * 3 * r)], fill=whisker, width=ww)
    _mouth(draw, fx, nose_y + 0.35 * r, 0.25 * r, 0.15 * r * f["expression"], max(1, int(S * 0.02)), (60, 30, 30))


def _draw_dog(draw, S, f) -> None:
    r = S * (0.23 + 0.11 * f["size"])
    cx = S * 0.5 + f["yaw"] * 0.05 * S
    cy = S * 0.52
    fur = _rgb(f["hue"], 0.6, 0.62)
    ear = _rgb(f["hue"], 0.65, 0.35)
    # Floppy ears hang down beside the head, so they are drawn first and partly covered.
    for side in (-1.0, 1.0):
        _ellipse(draw, cx + side * 0.95 * r, cy + 0.2 * r, 0.32 * r, 0.75 * r, ear)
    _ellipse(draw, cx, cy, 0.88 * r, 1.05 * r, fur)
    fx = cx + f["yaw"] * 0.3 * r
    _eyes(draw, fx, cy - 0.3 * r, r, f["yaw"], 0.36, 0.13, (245, 240, 225), (60, 35, 20), pupil_scale=0.7)
    muzzle = _rgb(f["hue"], 0.25, 0.9)
    _ellipse(draw, fx, cy + 0.4 * r, 0.5 * r, 0.4 * r, muzzle)
    _ellipse(draw, fx + 0.05 * r * f["yaw"], cy + 0.2 * r, 0.2 * r, 0.13 * r, (25, 20, 20))
    _mouth(draw, fx, cy + 0.55 * r, 0.3 * r, 0.15 * r * f["expression"], max(1, int(S * 0.025)), (40, 20, 20))


_DRAW = {"face": _draw_face, "cat": _draw_cat, "dog": _draw_dog}


def render(domain: str, factors: Mapping[str, np.ndarray], index: int = 0, resolution: int = 32) -> Image.Image:
    """Render image `index` of `factors` (as from `sample_factors`) in `domain` as an RGB image."""
    _check_domain(domain)
    _check_resolution(resolution)
    f = _factor_row(factors, index)
    S = int(resolution) * _SUPERSAMPLE
    canvas = Image.new("RGB", (S, S), _rgb(f["background"], 0.22, 0.9))
    _DRAW[domain](ImageDraw.Draw(canvas), S, f)
    return canvas.resize((int(resolution), int(resolution)), Image.Resampling.LANCZOS)


def render_batch(
    domain: str, n: int, seed: int, resolution: int = 32, ranges: Mapping[str, tuple[float, float]] | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Sample `n` factor vectors from `seed` (and `ranges`, as `sample_factors`) and render them:
    (uint8 N x H x W x 3, factors)."""
    _check_domain(domain)
    _check_resolution(resolution)
    factors = sample_factors(n, seed, ranges)
    images = np.empty((n, resolution, resolution, 3), dtype=np.uint8)
    for i in range(n):
        images[i] = np.asarray(render(domain, factors, i, resolution))
    return images, factors


def image_filename(index: int) -> str:
    return f"img{index:05d}.png"


def write_dataset(
    domain: str,
    n: int,
    seed: int,
    resolution: int,
    out_dir: str | os.PathLike,
    force: bool = False,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """Write `n` rendered images as `<out_dir>/img00000.png ...` plus `factors.csv` (factors drawn
    as `sample_factors(n, seed, ranges)`).

    The folder is created when missing. Existing files of the same names are refused unless
    `force`, and that check happens before anything is written so a refusal leaves no debris.
    Returns the folder.
    """
    _check_domain(domain)
    _check_resolution(resolution)
    factors = sample_factors(n, seed, ranges)  # a bad range is refused before the folder is made
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GancraftError(f"{out}: is a file, expected a folder for the toy dataset")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GancraftError(f"{out}: cannot create folder ({exc.strerror})") from None
    names = [image_filename(i) for i in range(n)] + ["factors.csv"]
    if not force:
        clash = next((name for name in names if (out / name).exists()), None)
        if clash is not None:
            raise GancraftError(f"{out / clash}: already exists (use --force to replace it)")
    # Each atomic write ends in an fsync; overlapping those with drawing is 2-3x faster.
    # Low compression: these images are tiny, and fast writing matters more than bytes.
    with ImageWriter(force=force, compress_level=1) as writer:
        for i in range(n):
            writer.write(np.asarray(render(domain, factors, i, resolution)), out / names[i])
    with atomic_write(out / "factors.csv", force=force) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["file", "domain", *FACTORS])
            for i in range(n):
                writer.writerow([names[i], domain, *(f"{factors[k][i]:.6f}" for k in FACTORS)])
    return out


def main(argv: list[str] | None = None) -> None:
    """`python -m gancraft.toy DOMAIN N -o DIR`: write a toy dataset (used by the recipes)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m gancraft.toy", description="Write a procedural toy-domain dataset.")
    ap.add_argument("domain", choices=DOMAINS)
    ap.add_argument("n", type=int, help="number of images")
    ap.add_argument("-o", "--output", required=True, help="folder to write (img00000.png ..., factors.csv)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--force", action="store_true")
    ap.add_argument(
        "--range",
        action="append",
        default=[],
        metavar="FACTOR=LOW,HIGH",
        help="draw FACTOR from LOW..HIGH only (a part of its range; repeatable), e.g. yaw=-0.15,0.15",
    )
    args = ap.parse_args(argv)
    try:
        ranges = parse_ranges(args.range)
        print(write_dataset(args.domain, args.n, args.seed, args.resolution, args.output, args.force, ranges))
    except GancraftError as exc:
        print(f"gancraft.toy: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
