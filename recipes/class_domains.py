"""Which toy domain each class of a conditional model draws: a Markdown table for the
cocktail-table recipe. A swapped or unlearnt class shows here, where a per-class FID only
shows a bad number: a logistic-regression probe on the toy-domain network's features, fitted
on real renders of the three domains (a seed no model trained on), labels N samples per class.

    python class_domains.py OUT_DIR --methods union,transfer,... --extractor toy-features.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

import gancraft
from gancraft import toy
from gancraft.latent.domains import domain_names, resolve_domain
from gancraft.latent.generate import generate

SEED_PROBE = 779  # examples/report.py's probe seed: held out from the example models' data


@torch.no_grad()
def features(net: torch.jit.ScriptModule, images: torch.Tensor) -> np.ndarray:
    """Features of images in [-1, 1] (the network takes [0, 1])."""
    return torch.cat([net((c.clamp(-1, 1) + 1) / 2) for c in images.split(250)]).double().numpy()


def class_shares(path: Path, net: torch.jit.ScriptModule, probe: LogisticRegression, n: int) -> dict[str, np.ndarray]:
    """For each class of the model: the share of its samples labelled face, cat, dog."""
    ckpt = gancraft.load(path)
    G = ckpt.generator()
    shares = {}
    for name in domain_names(ckpt):
        spec = resolve_domain(ckpt, name, G)
        images = torch.cat([b.images for b in generate(G, range(n), domain=spec, batch_size=50)])
        labels = probe.predict(features(net, images))
        shares[name] = np.bincount(labels, minlength=len(toy.DOMAINS)) / n
    return shares


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="the cocktail-table folder (METHOD.st for every method)")
    ap.add_argument("--methods", required=True, help="comma list")
    ap.add_argument("--extractor", type=Path, required=True, help="the toy-domain feature network")
    ap.add_argument("--n", type=int, default=200, help="samples per class (seeds 0..N-1)")
    args = ap.parse_args()
    net = torch.jit.load(str(args.extractor)).eval()
    real = []
    for d in toy.DOMAINS:
        arr, _ = toy.render_batch(d, 1000, SEED_PROBE, resolution=32)
        real.append(features(net, torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1))
    probe = LogisticRegression(max_iter=2000).fit(np.concatenate(real), np.repeat(np.arange(len(real)), 1000))
    print(
        f"What each class draws: share of {args.n} samples per class that a domain probe labels "
        f"{' / '.join(toy.DOMAINS)}\n"
    )
    rows = {m: class_shares(args.folder / f"{m}.st", net, probe, args.n) for m in args.methods.split(",")}
    names = list(next(iter(rows.values())))
    print("| method | " + " | ".join(f"{c} class" for c in names) + " |")
    print("|---|" + "---|" * len(names))
    for m, shares in rows.items():
        print(f"| {m} | " + " | ".join(" / ".join(f"{100 * s:.0f}%" for s in shares[c]) for c in names) + " |")


if __name__ == "__main__":
    main()
