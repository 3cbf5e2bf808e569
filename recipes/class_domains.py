"""Which toy domain each class of a conditional model draws: a Markdown table for the
cocktail-table recipe. A swapped or unlearnt class shows here, where a per-class FID only
shows a bad number: the domain probe of examples/report.py (a logistic regression on the
toy-domain network's features, fitted on real renders of the three domains on a seed no model
trained on) labels N samples per class.

    python class_domains.py OUT_DIR --methods union,transfer,... --extractor toy-features.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import gancraft
from gancraft import toy
from gancraft.errors import run_script
from gancraft.latent.domains import domain_names, resolve_domain
from gancraft.latent.generate import generate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from report import apply, domain_probe  # noqa: E402


def class_shares(path: Path, net: torch.jit.ScriptModule, probe, n: int) -> dict[str, np.ndarray]:
    """For each class of the model: the share of its samples labelled face, cat, dog."""
    ckpt = gancraft.load(path)
    G = ckpt.generator()
    shares = {}
    for name in domain_names(ckpt):
        spec = resolve_domain(ckpt, name, G)
        images = torch.cat([b.images for b in generate(G, range(n), domain=spec, batch_size=50)])
        labels = probe.predict(apply(net, images.clamp(-1, 1), True))
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
    probe = domain_probe(net)
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
    run_script(main)
