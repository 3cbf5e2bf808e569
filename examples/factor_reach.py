"""Where does a toy factor's range get lost: in the mapping's distribution or in the synthesis?

`examples/report.py` finds that the example models vary some factors much less than the data
(yaw most). This separates two explanations, for one model and one factor, read with the bundled
toy-factor regressor:

1. samples: the factor's percentiles over N samples of the model, next to real renders;
2. the latent path: the least-squares direction of the factor in W (fitted on those samples),
   walked K standard deviations of W along it from the first 8 samples; the factor reached;
3. inversion: real renders spread over the factor's range, projected into W and into W+ by
   pixel MSE (Adam from w_avg); the factor read back from the projections, and their MSE.

If the walk or the projections reach the real range, the synthesis network can draw the
factor and the samples' narrow range comes from where the mapping puts W; if they stop short,
the synthesis network itself does not draw the factor's extremes. The regressor also reads a
blurred image as less extreme (a 3x3 blur shrinks its yaw spread by 13-28% on real renders),
so look at the written image too.

    python examples/factor_reach.py examples/face.st --factor yaw -o out/face-yaw.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import gancraft
from gancraft import toy
from gancraft.errors import run_script
from gancraft.io_util import load_torchscript
from gancraft.media.images import make_grid, to_uint8

from report import apply, model_domain  # examples/report.py: the regressor in chunks, as its spread column reads it

HERE = Path(__file__).resolve().parent
SEED_REAL = 901  # not a training seed (0, 1, 2) nor one of report.py's (777-779)


def read_factor(regressor: torch.jit.ScriptModule, images: torch.Tensor, column: int) -> np.ndarray:
    return apply(regressor, images.clamp(-1, 1), unit_range=False)[:, column]


def project(G: torch.nn.Module, target: torch.Tensor, w_avg: torch.Tensor, per_layer: bool, steps: int) -> torch.Tensor:
    """Latents whose images are nearest `target` in pixel MSE: one w per image (W) or per layer (W+)."""
    shape = (len(target), G.num_ws if per_layer else 1, w_avg.numel())
    w = w_avg.expand(shape).clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=0.03)
    for _ in range(steps):
        loss = (G.synthesis(w.expand(-1, G.num_ws, -1), noise_mode="const") - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach().expand(-1, G.num_ws, -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="an example model named DOMAIN.st")
    ap.add_argument("--factor", default="yaw", choices=toy.FACTORS)
    ap.add_argument("--n", type=int, default=4000, help="samples for the percentiles and the direction fit")
    ap.add_argument("--walk", type=float, nargs="+", default=[4.0, 8.0], help="walk lengths in standard deviations")
    ap.add_argument("--steps", type=int, default=400, help="Adam steps per projection")
    ap.add_argument("--regressor", default=str(HERE / "toy-factors.pt"))
    ap.add_argument("-o", "--output", help="PNG: real renders, W projections, W+ projections, then the walk")
    args = ap.parse_args()
    domain = model_domain(args.model)
    torch.manual_seed(0)
    regressor = load_torchscript(args.regressor, "factor regressor")
    column = toy.FACTORS.index(args.factor)
    G = gancraft.load(args.model).generator().eval().requires_grad_(False)

    with torch.no_grad():
        ws = G.mapping(torch.randn(args.n, G.z_dim), None)
        fake = torch.cat([G.synthesis(chunk, noise_mode="const") for chunk in ws.split(200)])
    fake_f = read_factor(regressor, fake, column)
    arr, truth = toy.render_batch(domain, args.n, SEED_REAL, resolution=32)
    real = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1
    real_f = read_factor(regressor, real, column)
    pct = [1, 10, 50, 90, 99]
    print(f"{args.model}, {args.factor} read by the regressor (percentiles {pct})")
    print("| what | " + " | ".join(f"p{p}" for p in pct) + " | std |")
    print("|---|" + "---|" * (len(pct) + 1))
    for name, values in (("real renders", real_f), (f"{args.n} samples", fake_f)):
        print(f"| {name} | " + " | ".join(f"{v:+.2f}" for v in np.percentile(values, pct)) + f" | {values.std():.3f} |")

    w = ws[:, 0].numpy().astype(np.float64)
    centred = w - w.mean(0)
    coef = np.linalg.lstsq(centred, fake_f - fake_f.mean(), rcond=None)[0]
    fit = centred @ coef
    r2 = 1 - ((fake_f - fake_f.mean() - fit) ** 2).mean() / fake_f.var()
    direction = torch.from_numpy(coef / np.linalg.norm(coef)).float()
    sd = float((centred @ (coef / np.linalg.norm(coef))).std())
    walked = []
    for k in [-s for s in reversed(args.walk)] + [0.0] + list(args.walk):
        with torch.no_grad():
            images = G.synthesis(ws[:8] + direction * k * sd, noise_mode="const")
        walked.append((k, images, read_factor(regressor, images, column)))
    print(f"\nlinear direction in W: R^2 {r2:.2f} over the samples, W's std along it {sd:.3f}")
    print("| walk (std of W) | " + " | ".join(f"{k:+g}" for k, _, _ in walked) + " |")
    print("|---|" + "---|" * len(walked))
    print("| mean factor | " + " | ".join(f"{f.mean():+.2f}" for _, _, f in walked) + " |")

    order = np.argsort(truth[args.factor])
    pick = order[np.linspace(0, args.n - 1, 8).round().astype(int)]
    target = real[pick]
    w_avg = G.mapping.w_avg.detach() if hasattr(G.mapping, "w_avg") else ws[:, 0].mean(0)
    rows = [("real renders", target, float("nan"))]
    for name, per_layer in (("projected into W", False), ("projected into W+", True)):
        proj = project(G, target, w_avg, per_layer, args.steps)
        with torch.no_grad():
            images = G.synthesis(proj, noise_mode="const")
        rows.append((name, images, float((images - target).square().mean())))
    print(f"\n{args.factor} of 8 real renders across its range, and of their projections ({args.steps} steps)")
    print("| images | " + " | ".join(f"#{i}" for i in range(8)) + " | pixel MSE |")
    print("|---|" + "---|" * 9)
    print("| true factor | " + " | ".join(f"{v:+.2f}" for v in truth[args.factor][pick]) + " | |")
    for name, images, mse in rows:
        read = read_factor(regressor, images, column)
        print(f"| {name} | " + " | ".join(f"{v:+.2f}" for v in read) + (f" | {mse:.4f} |" if mse == mse else " | |"))

    if args.output:
        sets = [images for _, images, _ in rows] + [images for _, images, _ in walked]
        grid = make_grid(to_uint8(torch.cat(sets)), len(sets), 8)
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(args.output)
        print(f"\nwrote {args.output}: real, W projections, W+ projections, then walk rows from -{max(args.walk)} std")


if __name__ == "__main__":
    run_script(main)
