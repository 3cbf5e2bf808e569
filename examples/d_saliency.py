"""Where in the image does a model's discriminator look, and is it where a factor is drawn?

`d_logit_curve.py` shows that the face model's D hardly responds to expression. This measures
what D's logit responds to instead: the absolute gradient of the logit with respect to each
pixel (summed over colour), on real renders and on the model's own samples, in bands of rows
(1 = D's gradient spread evenly over the image; 4 = four times its share of the area). For each
factor asked, the same bands show where the renders change when only that factor moves over its
range, and D's share of gradient on exactly those pixels, per real render.

    python examples/d_saliency.py examples/face.st examples/cat.st examples/dog.st
"""

from __future__ import annotations

import numpy as np
import torch
from d_logit_curve import d_chunks, factor_grid, factor_names, models_parser, render_factors

import gancraft
from gancraft import toy
from gancraft.errors import run_script

from report import fake_images, model_domain

SEED_SALIENCY = 7373  # factor rows neither the models nor the bundled extractors were trained on
CHANGED = 8 / 127.5  # a pixel counts as changed by a factor when a channel moves by 8 of 255


def saliency(D: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """|d logit / d pixel| summed over colour, N x H x W."""
    maps = []
    for chunk, own in d_chunks(D, images):
        x = chunk.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(D(x)[:own].sum(), x)
        maps.append(grad[:own].abs().sum(dim=1))
    return torch.cat(maps)


def band_profile(maps: torch.Tensor, rows: int) -> np.ndarray:
    """Each band of `rows` rows' share of the total, over its share of the area (1 = uniform)."""
    per_row = maps.double().sum(dim=(0, 2))
    bands = per_row.reshape(-1, rows).sum(dim=1)
    return (bands / bands.sum() * len(bands)).numpy()


def factor_pixels(domain: str, name: str, base: dict[str, np.ndarray], points: int = 5) -> torch.Tensor:
    """Per row of `base`, the pixels that change when factor `name` moves over its range with the
    others held (N x H x W, bool). Several values, not only the two ends: hue and background are
    circular, and their ends draw the same colour."""
    n = len(base[name])
    renders = [render_factors(domain, dict(base, **{name: np.full(n, v)})) for v in factor_grid(name, points)]
    return torch.stack([(x - renders[0]).abs().amax(dim=1) for x in renders[1:]]).amax(dim=0) > CHANGED


def main() -> None:
    ap = models_parser(__doc__, "expression")
    ap.add_argument("--n", type=int, default=500, help="real renders and samples")
    ap.add_argument("--rows", type=int, default=4, help="rows per band (must divide the resolution)")
    args = ap.parse_args()
    names = factor_names(args.factors)
    base = toy.sample_factors(args.n, SEED_SALIENCY)
    for model in args.models:
        domain = model_domain(model)
        D = gancraft.load(model).discriminator().eval()
        real = render_factors(domain, base)
        if real.shape[-2] % args.rows:
            raise SystemExit(f"--rows {args.rows}: does not divide the resolution {real.shape[-2]}")
        torch.manual_seed(0)
        on_real, on_fake = saliency(D, real), saliency(D, fake_images(model, args.n))
        print(f"{model}: D's |d logit / d pixel| per band of {args.rows} rows, top to bottom (1 = uniform)")
        print(f"  real renders:   {' '.join(f'{v:5.2f}' for v in band_profile(on_real, args.rows))}")
        print(f"  its samples:    {' '.join(f'{v:5.2f}' for v in band_profile(on_fake, args.rows))}")
        for name in names:
            mask = factor_pixels(domain, name, base)
            area = mask.double().mean(dim=(1, 2))
            share = (on_real * mask).double().sum(dim=(1, 2)) / on_real.double().sum(dim=(1, 2))
            print(f"  {name:<14}  {' '.join(f'{v:5.2f}' for v in band_profile(mask, args.rows))}  (where it changes)")
            print(
                f"  on the pixels {name} changes ({100 * area.mean():.1f}% of the image): "
                f"{100 * share.mean():.1f}% of D's gradient on real renders ({(share / area).mean():.2f}x uniform)",
                flush=True,
            )


if __name__ == "__main__":
    run_script(main)
