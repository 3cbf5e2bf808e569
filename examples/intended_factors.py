"""Do a generator's samples still draw the factors its z was meant to stand for?

For a model written by `draw_capacity.py --save`, and for GAN runs started from it (`gancraft
train --init`), each z has intended factors: its first five coordinates through the normal CDF,
scaled to each factor's range. For each factor this prints, over N samples, the least-squares
slope and the correlation of the toy-factor regressor's reading (scaled the same way, to
[-1, 1]) against the intended value. Slope 1 and correlation 1: the samples draw what z asks for.
A falling slope with a high correlation means the factor is drawn weaker across the board (a
flatter mouth for every z), not that the mapping sends z elsewhere; a falling correlation with
an unchanged spread means the mapping has reassigned the factor to other directions of z.

    python examples/intended_factors.py face-drawn.st RUN/snapshot-*.st
    python examples/intended_factors.py --ends expression face-drawn.st RUN/snapshot-*.st

`--ends FACTOR` adds, for one factor, its mean reading over the samples whose intended value is
below -0.5, between -0.5 and +0.5, and above +0.5: which end of the range a narrowing takes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from draw_capacity import intended, to_unit_range

import gancraft
from gancraft import toy
from gancraft.errors import run_script
from gancraft.io_util import load_torchscript

from report import HERE, apply


def intended_and_read(model: str, n: int, regressor: torch.jit.ScriptModule) -> tuple[np.ndarray, np.ndarray]:
    """N x 5 intended factors of z (seed 0) and N x 5 readings of G_ema's samples, both in [-1, 1]."""
    G = gancraft.load(model).generator()
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = torch.cat([G(chunk, None, noise_mode="const") for chunk in z.split(250)]).clamp(-1, 1)
    read = apply(regressor, images, unit_range=False)
    return intended(z).double().numpy(), to_unit_range(read)


def slope_and_correlation(intended: np.ndarray, read: np.ndarray) -> list[tuple[float, float]]:
    return [
        (float(np.polyfit(intended[:, i], read[:, i], 1)[0]), float(np.corrcoef(intended[:, i], read[:, i])[0, 1]))
        for i in range(intended.shape[1])
    ]


def thirds(intended: np.ndarray, read: np.ndarray) -> tuple[float, float, float]:
    """Mean reading where the intended value is below -0.5, within +-0.5, and above +0.5."""
    low, high = intended < -0.5, intended > 0.5
    return float(read[low].mean()), float(read[~low & ~high].mean()), float(read[high].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="a draw_capacity.py --save model and snapshots of runs from it")
    ap.add_argument("--n", type=int, default=2000, help="samples per model")
    ap.add_argument("--ends", choices=toy.FACTORS, help="also the mean reading of this factor by third of its range")
    args = ap.parse_args()
    missing = [m for m in args.models if not Path(m).is_file()]
    if missing:
        raise SystemExit(f"{missing[0]}: no such file")
    regressor = load_torchscript(HERE / "toy-factors.pt", "factor regressor")
    ends = f"  {args.ends} read where meant < -0.5 / within / > +0.5" if args.ends else ""
    print("model  " + "  ".join(f"{name} slope / corr" for name in toy.FACTORS) + ends)
    for model in args.models:
        intended, read = intended_and_read(model, args.n, regressor)
        line = "  ".join(f"{s:.2f} / {c:.2f}" for s, c in slope_and_correlation(intended, read))
        if args.ends:
            col = toy.FACTORS.index(args.ends)
            line += "  " + " / ".join(f"{v:+.2f}" for v in thirds(intended[:, col], read[:, col]))
        print(f"{model}  {line}", flush=True)


if __name__ == "__main__":
    run_script(main)
