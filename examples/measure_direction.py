"""Measure how a semantic direction transfers across the domains of a multi-domain model.

For each domain: the bundled toy-factor regressor's mean estimate of one factor on images moved
by -ALPHA, 0 and +ALPHA along the direction (same seeds). A direction found on one domain
transfers when the factor moves the same way in the others (GAN Cocktail's application).

    python examples/measure_direction.py union.st yaw.st examples/toy-factors.pt --domains face,cat,dog
"""

from __future__ import annotations

import argparse

import torch

import gancraft
from gancraft import toy
from gancraft.errors import run_script
from gancraft.io_util import load_torchscript
from gancraft.latent.domains import resolve_domain
from gancraft.latent.files import parse_edit
from gancraft.latent.generate import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("directions")
    ap.add_argument("regressor")
    ap.add_argument("--domains", required=True)
    ap.add_argument("--index", type=int, default=0, help="direction index in the file")
    ap.add_argument("--factor", default="yaw", choices=toy.FACTORS)
    ap.add_argument("--alpha", type=float, default=3.0)
    ap.add_argument("--seeds", type=int, default=64)
    args = ap.parse_args()
    ckpt = gancraft.load(args.model)
    G = ckpt.generator()
    reg = load_torchscript(args.regressor, "factor regressor")
    col = toy.FACTORS.index(args.factor)
    print(f"mean {args.factor} estimate over {args.seeds} seeds, moved along {args.directions}:{args.index}")
    print(f"{'domain':<10}{-args.alpha:>10.1f}{0.0:>10.1f}{args.alpha:>10.1f}   change")
    for name in args.domains.split(","):
        spec = resolve_domain(ckpt, name, G)
        means = []
        for alpha in (-args.alpha, 0.0, args.alpha):
            edits = [parse_edit(f"{args.directions}:{args.index}:{alpha}")] if alpha else []
            vals = []
            for batch in generate(G, range(args.seeds), domain=spec, edits=edits, batch_size=16):
                with torch.no_grad():
                    vals.append(reg(batch.images.clamp(-1, 1))[:, col])
            means.append(torch.cat(vals).mean().item())
        print(f"{name:<10}" + "".join(f"{m:>10.3f}" for m in means) + f"   {means[2] - means[0]:+.3f}")


if __name__ == "__main__":
    run_script(main)
