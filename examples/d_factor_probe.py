"""Which toy factors can a model's discriminator read, and at which depth?

A generator learns a factor's full range only if D penalises it for missing part of it, and D's
logit is a linear read-out of its last hidden layer (`b4.fc`). This fits a ridge regression from
D's activations at each depth (each block's output, then `b4.fc`) to the five toy factors, on
real renders of the model's domain, and prints the held-out R^2 (1: the factor is linearly
readable there; 0: not at all). The same probe on a randomly initialised D of the same shape is
the baseline: what the architecture keeps without training.

    python examples/d_factor_probe.py examples/face.st examples/dog.st
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from d_logit_curve import d_chunks
from sklearn.linear_model import RidgeCV

import gancraft
from gancraft import toy
from gancraft.errors import run_script

from report import model_domain, real_images

SEED_PROBE_D = 4242  # renders neither the models nor the bundled extractors were trained on


@torch.no_grad()
def activations(D: torch.nn.Module, images: torch.Tensor) -> dict[str, np.ndarray]:
    """D's activations on `images`, flattened per sample: each block's output, then b4.fc."""
    layers = {f"b{r}": getattr(D, f"b{r}") for r in D.block_resolutions} | {"b4.fc": D.b4.fc}
    out: dict[str, list[torch.Tensor]] = {k: [] for k in layers}
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: out[k].append(o.flatten(1))) for k, m in layers.items()]
    try:
        for chunk, own in d_chunks(D, images, 500):
            D(chunk)
            for rows in out.values():
                rows[-1] = rows[-1][:own]  # drop the padding that keeps D's minibatch-std groups
    finally:
        for h in hooks:
            h.remove()
    return {k: torch.cat(v).double().numpy() for k, v in out.items()}


def held_out_r2(features: np.ndarray, targets: np.ndarray, n_fit: int) -> np.ndarray:
    """Per target column: R^2 on samples n_fit: of a ridge fit (alpha by cross-validation) on :n_fit."""
    mu, sd = features[:n_fit].mean(0), features[:n_fit].std(0) + 1e-6
    x = (features - mu) / sd
    r2 = []
    for y in targets.T:
        pred = RidgeCV(alphas=np.logspace(-1, 4, 12)).fit(x[:n_fit], y[:n_fit]).predict(x[n_fit:])
        r2.append(1 - ((pred - y[n_fit:]) ** 2).mean() / y[n_fit:].var())
    return np.array(r2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="checkpoints with a discriminator, named DOMAIN.st (or DOMAIN-*.st)")
    ap.add_argument("--n", type=int, default=4000, help="renders: 3/4 fit the probe, 1/4 test it")
    args = ap.parse_args()
    print(f"| model | D | layer | R^2: {' | '.join(toy.FACTORS)} |")
    print("|---|---|---|" + "---|" * len(toy.FACTORS))
    for model in args.models:
        domain = model_domain(model)
        trained = gancraft.load(model).discriminator().eval()
        torch.manual_seed(0)
        fresh = type(trained)(trained.cfg).eval()
        images = real_images(domain, args.n, SEED_PROBE_D)
        factors = toy.sample_factors(args.n, SEED_PROBE_D)  # the ones render_batch drew them from
        targets = np.stack([factors[k] for k in toy.FACTORS], 1)
        for name, D in (("trained", trained), ("random init", fresh)):
            for layer, feats in activations(D, images).items():
                r2 = held_out_r2(feats, targets, args.n * 3 // 4)
                cells = " | ".join(f"{v:.3f}" for v in r2)
                print(f"| {model} | {name} | {layer} ({feats.shape[1]}) | {cells} |", flush=True)


if __name__ == "__main__":
    run_script(main)
