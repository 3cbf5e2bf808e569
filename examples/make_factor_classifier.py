"""Build the bundled toy-factor regressor (TorchScript) used to label images for `gancraft direction`.

It reuses the toy-domain feature network and fits a linear read-out of every shared factor
(least squares on held-out renders), so it needs no further training:

    python examples/make_factor_classifier.py -o examples/toy-factors.pt

Input: images N x 3 x H x W in [-1, 1] (what generators produce, what `direction --classifier`
passes). Output: N x 5 factor estimates, columns in gancraft.toy.FACTORS order
(yaw, size, hue, expression, background); `--class-index 0` selects yaw.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from gancraft import toy
from gancraft.errors import run_script
from gancraft.io_util import load_torchscript


class FactorReadout(nn.Module):
    def __init__(self, features: torch.jit.ScriptModule, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.features = features
        self.head = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x + 1) / 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", default="examples/toy-features.pt")
    ap.add_argument("-o", "--output", default="examples/toy-factors.pt")
    ap.add_argument("--n", type=int, default=1000, help="renders per domain for the fit")
    args = ap.parse_args()
    feats = load_torchscript(args.features, "feature extractor")
    xs, ys = [], []
    for i, d in enumerate(toy.DOMAINS):
        imgs, factors = toy.render_batch(d, args.n, 5000 + i, 32)
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            xs.append(torch.cat([feats(x[j : j + 200]) for j in range(0, len(x), 200)]))
        ys.append(torch.from_numpy(np.stack([factors[k] for k in toy.FACTORS], 1)).float())
    x, y = torch.cat(xs), torch.cat(ys)
    n_fit = int(0.8 * len(x))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    fit, held = perm[:n_fit], perm[n_fit:]
    a = torch.cat([x[fit], torch.ones(n_fit, 1)], 1)
    sol = torch.linalg.lstsq(a, y[fit]).solution  # (D+1) x 5
    pred = torch.cat([x[held], torch.ones(len(held), 1)], 1) @ sol
    for k, name in enumerate(toy.FACTORS):
        r = np.corrcoef(pred[:, k].numpy(), y[held, k].numpy())[0, 1]
        print(f"{name:<11} held-out correlation {r:.3f}")
    model = FactorReadout(feats, sol[:-1].t().contiguous(), sol[-1].contiguous()).eval()
    torch.jit.script(model).save(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    run_script(main)
