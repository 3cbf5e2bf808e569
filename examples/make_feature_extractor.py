"""Train the bundled toy-domain feature extractor (TorchScript) used by `gancraft fid --extractor`.

Inception features are meaningless on 32 px drawings and their weights cannot be downloaded
here, so FID on the toy domains uses this small CNN instead: trained to tell the domains apart
and to regress every shared factor (pose, size, colour, expression, background), its 128-d
penultimate layer responds to exactly what a good generator must get right.

    python examples/make_feature_extractor.py -o examples/toy-features.pt

Input: float32 RGB N x 3 x H x W in [0, 1] at any size (resized to 32 px inside).
Output: N x 128 features.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gancraft import toy
from gancraft.errors import run_script


class ToyFeatures(nn.Module):
    def __init__(self, dim: int = 128):
        super().__init__()
        ch = [3, 32, 64, 128]
        layers = []
        for a, b in zip(ch[:-1], ch[1:]):
            layers += [
                nn.Conv2d(a, b, 3, padding=1),
                nn.BatchNorm2d(b),
                nn.ReLU(),
                nn.Conv2d(b, b, 3, padding=1),
                nn.BatchNorm2d(b),
                nn.ReLU(),
                nn.AvgPool2d(2),
            ]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(128 * 4 * 4, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 32 or x.shape[-2] != 32:
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        x = (x - 0.5) / 0.25
        return F.relu(self.fc(self.body(x).flatten(1)))


def make_data(n_per_domain: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, fs = [], [], []
    for i, d in enumerate(toy.DOMAINS):
        imgs, factors = toy.render_batch(d, n_per_domain, seed + i, 32)
        xs.append(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255)
        ys.append(torch.full((n_per_domain,), i))
        fs.append(torch.from_numpy(np.stack([factors[k] for k in toy.FACTORS], 1)).float())
    return torch.cat(xs), torch.cat(ys), torch.cat(fs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="examples/toy-features.pt")
    ap.add_argument("--n", type=int, default=4000, help="training images per domain")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    t0 = time.time()
    x, y, f = make_data(args.n, 1000 * args.seed)
    xt, yt, ft = make_data(500, 1000 * args.seed + 500)
    net = ToyFeatures()
    heads = nn.ModuleDict({"domain": nn.Linear(128, len(toy.DOMAINS)), "factors": nn.Linear(128, len(toy.FACTORS))})
    opt = torch.optim.Adam([*net.parameters(), *heads.parameters()], lr=2e-3)
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            h = net(x[idx])
            loss = F.cross_entropy(heads["domain"](h), y[idx]) + F.mse_loss(heads["factors"](h), f[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            h = net(xt)
            acc = (heads["domain"](h).argmax(1) == yt).float().mean().item()
            err = (heads["factors"](h) - ft).abs().mean(0)
        print(
            f"epoch {epoch + 1}: domain accuracy {acc:.3f}, factor MAE "
            + ", ".join(f"{k} {e:.3f}" for k, e in zip(toy.FACTORS, err.tolist()))
        )
    scripted = torch.jit.script(net.eval())
    scripted.save(args.output)
    print(f"wrote {args.output} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    run_script(main)
