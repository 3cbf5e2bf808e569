"""Train the bundled quality-sensitive toy feature network (TorchScript) for `gancraft fid --extractor`.

`toy-features.pt` was trained to tell the domains apart and to regress their factors, so its
features reward a domain's palette and pose without its drawing: coloured noise in a cat's
colours scores 8.2 against real cats, and soft cat-coloured blobs score near a real cat model.
This network has the same architecture and tasks plus one more class, "damaged": renders of
every domain passed through one of five damages (blur, pixel noise, patch shuffle, blending two
renders, down- and up-sampling) at a random strength. Its features therefore also measure how
far an image is from a clean drawing.

Two further damages are held out of training to check that it responds to damage in general and
not only to the kinds it saw: a smooth random warp (the geometric wobble of a half-trained
generator) and a cut-out patch filled with the image's mean colour. The script ends by printing
FID (N vs N, against held-out renders) of each damage with both networks, and the real-vs-real
floor, so the two can be compared.

    python examples/make_quality_extractor.py -o examples/toy-quality.pt

Input: float32 RGB N x 3 x H x W in [0, 1] at any size (resized to 32 px inside).
Output: N x 128 features.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from make_feature_extractor import ToyFeatures, make_data
from torch import nn

from gancraft import toy
from gancraft.errors import run_script
from gancraft.io_util import load_torchscript
from gancraft.metrics.fid import fid_from_stats, stats_from_features

Damage = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=gen)


def blur(x: torch.Tensor, other: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    sigma = _uniform(len(x), 0.6, 2.0, gen).view(-1)
    t = torch.arange(-4, 5, dtype=x.dtype)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)  # N x 9, one kernel per image
    out = x.reshape(1, -1, *x.shape[2:])
    kh = k.repeat_interleave(3, 0)[:, None, None, :]
    kv = k.repeat_interleave(3, 0)[:, None, :, None]
    out = F.conv2d(F.pad(out, (4, 4, 0, 0), mode="reflect"), kh, groups=out.shape[1])
    out = F.conv2d(F.pad(out, (0, 0, 4, 4), mode="reflect"), kv, groups=out.shape[1])
    return out.view_as(x)


def pixel_noise(x: torch.Tensor, other: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return (x + _uniform(len(x), 0.04, 0.25, gen) * torch.randn(x.shape, generator=gen)).clamp(0, 1)


def patch_shuffle(x: torch.Tensor, other: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Permute 8 x 8 patches: the palette and the patches' content stay, the drawing's layout goes."""
    n, c, h, w = x.shape
    p = 8
    patches = x.unfold(2, p, p).unfold(3, p, p).reshape(n, c, -1, p, p)
    order = torch.argsort(torch.rand(n, patches.shape[2], generator=gen), 1)
    patches = torch.gather(patches, 2, order[:, None, :, None, None].expand_as(patches))
    g = h // p
    return patches.view(n, c, g, g, p, p).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def ghost(x: torch.Tensor, other: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    a = _uniform(len(x), 0.25, 0.75, gen)
    return a * x + (1 - a) * other


def low_resolution(x: torch.Tensor, other: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    size = int(torch.randint(6, 17, (1,), generator=gen))
    small = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(small, size=x.shape[2:], mode="bilinear", align_corners=False)


def warp(x: torch.Tensor, other: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Held out: displace pixels by a smooth random field of up to a few pixels."""
    n = len(x)
    field = torch.randn(n, 2, 4, 4, generator=gen) * _uniform(n, 0.04, 0.12, gen)
    field = F.interpolate(field, size=x.shape[2:], mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    base = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, base + field, mode="bilinear", padding_mode="border", align_corners=False)


def cut_out(x: torch.Tensor, other: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Held out: a square of 8-14 px filled with the image's mean colour."""
    out = x.clone()
    for i in range(len(x)):
        s = int(torch.randint(8, 15, (1,), generator=gen))
        r, c = (int(v) for v in torch.randint(0, x.shape[-1] - s + 1, (2,), generator=gen))
        out[i, :, r : r + s, c : c + s] = x[i].mean((1, 2), keepdim=True)
    return out


TRAINED: dict[str, Damage] = {
    "blur": blur,
    "pixel noise": pixel_noise,
    "patch shuffle": patch_shuffle,
    "two renders blended": ghost,
    "low resolution": low_resolution,
}
HELD_OUT: dict[str, Damage] = {"warp": warp, "cut-out": cut_out}


def damage(x: torch.Tensor, damages: dict[str, Damage], gen: torch.Generator) -> torch.Tensor:
    """Each image gets one damage, chosen at random; `other` is another image of the batch."""
    other = x[torch.randperm(len(x), generator=gen)]
    kind = torch.randint(len(damages), (len(x),), generator=gen)
    out = x.clone()
    for k, fn in enumerate(damages.values()):
        sel = (kind == k).nonzero().view(-1)
        if len(sel):
            out[sel] = fn(x[sel], other[sel], gen)
    return out


@torch.no_grad()
def features(net: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    return torch.cat([net(c) for c in x.split(250)]).double().numpy()


def fid(net: torch.nn.Module, a: torch.Tensor, b: torch.Tensor) -> float:
    return fid_from_stats(stats_from_features([features(net, a)]), stats_from_features([features(net, b)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="examples/toy-quality.pt")
    ap.add_argument("--n", type=int, default=4000, help="training renders per domain")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compare", default="examples/toy-features.pt", help="network to print the FID table beside")
    ap.add_argument("--n-fid", type=int, default=500, help="images per side in the closing FID table")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    # seeds apart from the example models' training data (0-2) and the recipes' references (777-779)
    x, y, f = make_data(args.n, 2000 + 1000 * args.seed)
    xt, yt, _ = make_data(500, 2500 + 1000 * args.seed)
    damaged_class = len(toy.DOMAINS)
    net = ToyFeatures()
    heads = nn.ModuleDict({"class": nn.Linear(128, damaged_class + 1), "factors": nn.Linear(128, len(toy.FACTORS))})
    opt = torch.optim.Adam([*net.parameters(), *heads.parameters()], lr=2e-3)
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            bad = damage(x[torch.randint(len(x), (len(idx),), generator=gen)], TRAINED, gen)
            h = net(torch.cat([x[idx], bad]))
            labels = torch.cat([y[idx], torch.full((len(bad),), damaged_class)])
            loss = F.cross_entropy(heads["class"](h), labels) + F.mse_loss(heads["factors"](h[: len(idx)]), f[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            clean = (heads["class"](net(xt)).argmax(1) == yt).float().mean().item()
            caught = {}
            for name, fn in {**TRAINED, **HELD_OUT}.items():
                predicted = heads["class"](net(damage(xt, {name: fn}, gen))).argmax(1)
                caught[name] = (predicted == damaged_class).float().mean().item()
        print(
            f"epoch {epoch + 1}: clean renders classified right {clean:.3f}; damaged caught: "
            + ", ".join(f"{k} {v:.2f}" for k, v in caught.items()),
            flush=True,
        )
    scripted = torch.jit.script(net.eval())
    scripted.save(args.output)
    print(f"wrote {args.output} in {time.time() - t0:.0f} s")

    compare = load_torchscript(args.compare, "feature extractor")
    n = args.n_fid
    print(f"\nFID, {n} vs {n} against held-out renders of the same domain (lower: nearer the real renders)")
    print(f"| images | {args.compare} | {args.output} |\n|---|---|---|")
    for d_i, domain in enumerate(toy.DOMAINS):
        real = torch.from_numpy(toy.render_batch(domain, n, 777 + 100 * d_i, 32)[0]).permute(0, 3, 1, 2).float() / 255
        floor = torch.from_numpy(toy.render_batch(domain, n, 778 + 100 * d_i, 32)[0]).permute(0, 3, 1, 2).float() / 255
        rows = {"real renders (floor)": floor}
        for name, fn in {**TRAINED, **HELD_OUT}.items():
            held = " (held out)" if name in HELD_OUT else ""
            rows[f"{name}{held}"] = damage(floor, {name: fn}, gen)
        for name, imgs in rows.items():
            print(f"| {domain}: {name} | {fid(compare, imgs, real):.2f} | {fid(scripted, imgs, real):.2f} |")


if __name__ == "__main__":
    run_script(main)
