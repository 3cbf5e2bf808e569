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
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import gancraft
from gancraft import toy

from report import HERE, apply


def intended_and_read(model: str, n: int, regressor: torch.jit.ScriptModule) -> tuple[np.ndarray, np.ndarray]:
    """N x 5 intended factors of z (seed 0) and N x 5 readings of G_ema's samples, both in [-1, 1]."""
    G = gancraft.load(model).generator()
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = torch.cat([G(chunk, None, noise_mode="const") for chunk in z.split(250)]).clamp(-1, 1)
    read = apply(regressor, images, unit_range=False)
    lo = np.array([r[0] for r in toy.FACTOR_RANGES.values()])
    hi = np.array([r[1] for r in toy.FACTOR_RANGES.values()])
    intended = torch.distributions.Normal(0.0, 1.0).cdf(z[:, : len(toy.FACTORS)]).double().numpy() * 2 - 1
    return intended, (read - lo) / (hi - lo) * 2 - 1


def slope_and_correlation(intended: np.ndarray, read: np.ndarray) -> list[tuple[float, float]]:
    return [
        (float(np.polyfit(intended[:, i], read[:, i], 1)[0]), float(np.corrcoef(intended[:, i], read[:, i])[0, 1]))
        for i in range(intended.shape[1])
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="a draw_capacity.py --save model and snapshots of runs from it")
    ap.add_argument("--n", type=int, default=2000, help="samples per model")
    args = ap.parse_args()
    missing = [m for m in args.models if not Path(m).is_file()]
    if missing:
        raise SystemExit(f"intended_factors.py: {missing[0]}: no such file")
    regressor = torch.jit.load(HERE / "toy-factors.pt").eval()
    print("model  " + "  ".join(f"{name} slope / corr" for name in toy.FACTORS))
    for model in args.models:
        fits = slope_and_correlation(*intended_and_read(model, args.n, regressor))
        print(f"{model}  " + "  ".join(f"{s:.2f} / {c:.2f}" for s, c in fits), flush=True)


if __name__ == "__main__":
    main()
