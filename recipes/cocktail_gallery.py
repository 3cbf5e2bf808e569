"""The cocktail-table gallery: one band per method, one row per class (its domains in the
checkpoint's order), the same seeds in every row, the method's name on the left.

    python cocktail_gallery.py OUT_DIR --methods union,transfer,... --seeds 8 -o gallery.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import gancraft
from gancraft.errors import run_script
from gancraft.latent.domains import domain_names, resolve_domain
from gancraft.latent.generate import generate
from gancraft.media.images import make_grid, save_png, to_uint8


def method_rows(path: Path, seeds: list[int]) -> np.ndarray:
    """The model's classes as one grid, a row per domain."""
    ckpt = gancraft.load(path)
    G = ckpt.generator()
    rows = []
    for name in domain_names(ckpt):
        spec = resolve_domain(ckpt, name, G)
        rows.append(np.concatenate([to_uint8(b.images) for b in generate(G, seeds, domain=spec)]))
    images = np.concatenate(rows)
    return make_grid(images, rows=len(rows), cols=len(seeds), pad=1, pad_value=255)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="the cocktail-table folder (METHOD.st for every method)")
    ap.add_argument("--methods", required=True, help="comma list, top to bottom")
    ap.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1 in every row")
    ap.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the images")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    seeds = list(range(args.seeds))
    bands = [(m, method_rows(args.folder / f"{m}.st", seeds)) for m in args.methods.split(",")]
    label_width, gap = 70, 6
    width = label_width + max(b.shape[1] for _, b in bands) * args.scale
    height = sum(b.shape[0] * args.scale + gap for _, b in bands) - gap
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for name, band in bands:
        img = Image.fromarray(band).resize((band.shape[1] * args.scale, band.shape[0] * args.scale), Image.NEAREST)
        sheet.paste(img, (label_width, y))
        draw.text((8, y + img.height // 2 - 6), name, fill="black")
        y += img.height + gap
    save_png(np.asarray(sheet), args.output, force=True)
    print(args.output)


if __name__ == "__main__":
    run_script(main)
