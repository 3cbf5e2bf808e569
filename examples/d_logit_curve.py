"""Does a model's discriminator push its generator towards a factor's missing range?

A generator that samples too little of some range of a factor (the face model's strong smiles
and frowns) is pushed there only if D's logit is higher on real images in that range than
elsewhere: the logit of an ideal non-saturating D is log p_data / p_G, so where G samples 10
times too little, it is about log 10 = 2.3 higher. Per model this prints:

- D's mean logit on real renders passed through each of make_quality_extractor.py's damages,
  and on the model's samples, relative to its mean on clean renders;
- per factor, D's mean logit on real renders whose other factors are drawn as the data draws
  them and this one is set to each value of a grid, relative to the mean over the grid (a flat
  row: D does not care where in its range the factor lies);
- the ideal D's curve for the generator's own distribution of the factor (the toy-factor
  regressor's readings of its samples, binned on the same grid), log(density of real / density
  of samples) relative to its mean, where G samples the bin at all; the samples per bin; and D's
  mean logit on the samples of each bin, relative to clean renders.

    python examples/d_logit_curve.py examples/face.st examples/cat.st examples/dog.st
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from make_quality_extractor import HELD_OUT, TRAINED

import gancraft
from gancraft import toy
from gancraft.errors import run_script
from gancraft.io_util import load_torchscript

from report import apply, fake_images, model_domain, real_images

SEED_CURVE = 5151  # base factor rows neither the models nor the bundled extractors were trained on


def models_parser(doc: str, factors: str) -> argparse.ArgumentParser:
    """The command line these D diagnostics share: checkpoints named after their domains, and --factors."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="checkpoints with a discriminator, named DOMAIN.st (or DOMAIN-*.st)")
    ap.add_argument("--factors", default=factors, help="comma-separated toy factors")
    return ap


def factor_names(spec: str) -> list[str]:
    """The toy factors of a comma-separated --factors value (exits naming the unknown one)."""
    names = spec.split(",")
    for name in names:
        if name not in toy.FACTORS:
            raise SystemExit(f"--factors: unknown factor {name!r} (one of {', '.join(toy.FACTORS)})")
    return names


def factor_grid(name: str, points: int) -> np.ndarray:
    lo, hi = toy.FACTOR_RANGES[name]
    return np.linspace(lo, hi, points)


def render_factors(domain: str, factors: dict[str, np.ndarray]) -> torch.Tensor:
    """Renders of every row of `factors`, N x 3 x 32 x 32 in [-1, 1] (as report.real_images)."""
    n = len(next(iter(factors.values())))
    arr = np.stack([np.asarray(toy.render(domain, factors, i)) for i in range(n)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1


def grid_renders(domain: str, name: str, grid: np.ndarray, n: int) -> list[torch.Tensor]:
    """Per value of `grid`: `n` renders with factor `name` set to it, the others drawn as the data's."""
    base = toy.sample_factors(n, SEED_CURVE)
    return [render_factors(domain, dict(base, **{name: np.full(n, value)})) for value in grid]


@torch.no_grad()
def d_chunks(D: torch.nn.Module, images: torch.Tensor, size: int = 200) -> Iterator[tuple[torch.Tensor, int]]:
    """`images` in chunks for D, each a whole number of D's minibatch-std groups as in training:
    a chunk the group size does not divide makes minibatch_std fall back to smaller groups, which
    shifts every logit in the chunk (the face D's mean logit on 2,000 renders: +0.74 in groups of
    4, +0.33 in groups of 2). A last chunk that is short is padded with the set's first images.
    Yields (chunk, how many of its leading rows are the chunk's own images)."""
    epilogue = getattr(D, "b4", None)  # any other callable: no minibatch-std layer, no groups to keep
    group = 1
    if epilogue is not None and epilogue.mbstd_num_channels > 0 and epilogue.mbstd_group_size:
        group = epilogue.mbstd_group_size
    step = group * max(1, size // group)
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        own, short = len(chunk), -len(chunk) % group
        if short:
            filler = images.repeat(-(-short // len(images)), 1, 1, 1)[:short]
            chunk = torch.cat([chunk, filler])
        yield chunk, own


def logits(D: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([D(chunk)[:own].flatten() for chunk, own in d_chunks(D, images)]).double()


def logit_curve(D: torch.nn.Module, renders: list[torch.Tensor]) -> np.ndarray:
    """D's mean logit on each set of `grid_renders`, relative to their mean."""
    means = np.array([logits(D, x).mean().item() for x in renders])
    return means - means.mean()


def bin_edges(grid: np.ndarray) -> np.ndarray:
    step = grid[1] - grid[0]
    return np.concatenate([[grid[0] - step / 2], (grid[:-1] + grid[1:]) / 2, [grid[-1] + step / 2]])


def bin_counts(readings: np.ndarray, grid: np.ndarray) -> np.ndarray:
    edges = bin_edges(grid)
    return np.histogram(np.clip(readings, edges[0], edges[-1]), bins=edges)[0]


def binned_mean(values: np.ndarray, readings: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mean of `values` over the samples whose reading falls in each bin of `grid` (NaN: none)."""
    edges = bin_edges(grid)
    index = np.clip(np.digitize(readings, edges[1:-1]), 0, len(grid) - 1)
    return np.array([values[index == i].mean() if (index == i).any() else np.nan for i in range(len(grid))])


def ideal_curve(readings: np.ndarray, grid: np.ndarray, name: str) -> np.ndarray:
    """log(real density / sample density) in bins centred on `grid` (real: uniform over the range),
    NaN where no sample falls."""
    lo, hi = toy.FACTOR_RANGES[name]
    edges = bin_edges(grid)
    counts = bin_counts(readings, grid)
    width = np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo)
    real = width / (hi - lo)
    with np.errstate(divide="ignore"):
        return np.where(counts > 0, np.log(real / np.maximum(counts, 1) * len(readings)), np.nan)


def damage_logits(D: torch.nn.Module, domain: str, n: int) -> tuple[float, float, dict[str, float]]:
    """D's mean logit on `n` clean real renders, the mean sign of those logits (what NVIDIA's ADA
    steers towards its target of 0.6), and D's mean logit on the same renders passed through each
    of make_quality_extractor.py's damages (one random strength per image) relative to the first."""
    clean = real_images(domain, n, SEED_CURVE + 1)
    clean_logits = logits(D, clean)
    base, sign = clean_logits.mean().item(), clean_logits.sign().mean().item()
    gen = torch.Generator().manual_seed(0)
    unit = (clean + 1) / 2
    other = unit.roll(1, 0)
    damaged = {name: fn(unit, other, gen) * 2 - 1 for name, fn in (TRAINED | HELD_OUT).items()}
    return base, sign, {name: logits(D, x).mean().item() - base for name, x in damaged.items()}


def main() -> None:
    ap = models_parser(__doc__, "yaw,expression")
    ap.add_argument("--points", type=int, default=9, help="grid values over each factor's range")
    ap.add_argument("--n", type=int, default=300, help="real renders per grid value")
    ap.add_argument("--samples", type=int, default=2000, help="generator samples for the ideal curve")
    ap.add_argument("--regressor", default=str(Path(__file__).with_name("toy-factors.pt")))
    args = ap.parse_args()
    names = factor_names(args.factors)
    regressor = load_torchscript(args.regressor, "factor regressor")
    for model in args.models:
        domain = model_domain(model)
        D = gancraft.load(model).discriminator().eval()
        torch.manual_seed(0)  # the samples' noise inputs: a model's rows do not depend on the ones before
        fakes = fake_images(model, args.samples)
        readings = apply(regressor, fakes, unit_range=False)
        fake_logits = logits(D, fakes).numpy()
        clean, sign, cues = damage_logits(D, domain, 4 * args.n)
        cues["the model's samples"] = float(fake_logits.mean()) - clean
        print(
            f"{model} D's mean logit relative to clean renders: " + ", ".join(f"{k} {v:+.2f}" for k, v in cues.items())
        )
        print(f"{model} mean sign of D's logits on clean renders (ADA's measure, target 0.6): {sign:+.3f}")
        for name in names:
            grid = factor_grid(name, args.points)
            measured = logit_curve(D, grid_renders(domain, name, grid, args.n))
            read = readings[:, toy.FACTORS.index(name)]
            ideal = ideal_curve(read, grid, name)
            on_samples = binned_mean(fake_logits, read, grid)
            print(f"{model} {name} at {' '.join(f'{v:+.2f}' for v in grid)}")
            print(f"  D's logit - mean:       {' '.join(f'{v:+.2f}' for v in measured)}")
            print(f"  ideal D's logit - mean: {' '.join(f'{v:+.2f}' for v in ideal - np.nanmean(ideal))}")
            print(f"  samples per bin:        {' '.join(f'{v:5d}' for v in bin_counts(read, grid))}")
            print(
                f"  D's logit on samples - clean renders': {' '.join(f'{v:+.2f}' for v in on_samples - clean)}",
                flush=True,
            )


if __name__ == "__main__":
    run_script(main)
