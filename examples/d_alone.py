"""Can a discriminator learn to push the generator towards a factor's missing range?

`d_logit_curve.py` shows whether a model's own D rewards real images more where G samples too
little. This trains a D alone against the model's frozen G_ema (its samples against real
renders, the training loop's logistic loss and lazy R1, Adam as the loop sets it up) and prints
the same curve as it goes: if D, given all the time it needs against a generator that does not
move, still does not reward the missing range, no amount of joint training can push G there
through D's logit. Start from the model's own D (default) or a fresh one of the same shape
(`--fresh`), either made wider with `--channel-max`, with the R1 weight of your choice. `--noise`
(instance noise) and `--diffaug` (DiffAugment, as `gancraft train --diffaug`) change every image D
trains on, real and fake alike, to test whether hiding a cue D relies on makes it turn to the
factor; the curve is measured on clean renders. `--hide-rows` blanks rows of every image D sees,
the curve's renders included (`8-11`: the band the face D's gradient gathers in, see
`d_saliency.py`; `0-15,28-31`: all but the mouth's band).

    python examples/d_alone.py examples/face.st --kimg 32 --gamma 0.05
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from d_logit_curve import factor_grid, grid_renders, ideal_curve, logit_curve, render_factors

import gancraft
from gancraft import toy
from gancraft.errors import run_script
from gancraft.io_util import load_torchscript
from gancraft.latent.generate import generate
from gancraft.train.augment import diff_augment, parse_policy

from report import apply, fake_images, model_domain, real_images

SEED_REAL = 6262  # D's training renders
SEED_FAKES = 100_000  # D's training samples; the curve's ideal uses seeds 0..N-1


def renders_like(domain: str, name: str, readings: np.ndarray, n: int) -> torch.Tensor:
    """`n` real renders whose factor `name` is resampled from `readings` (clipped to its range), the
    others drawn as the data draws them."""
    lo, hi = toy.FACTOR_RANGES[name]
    rng = np.random.default_rng(SEED_FAKES)
    factors = dict(toy.sample_factors(n, SEED_FAKES), **{name: np.clip(rng.choice(readings, n), lo, hi)})
    return render_factors(domain, factors)


def row_mask(spec: str, height: int) -> torch.Tensor:
    """1 x 1 x height x 1: zero on the rows `spec` names (e.g. "0-15,28-31"), one elsewhere."""
    keep = torch.ones(1, 1, height, 1)
    for part in filter(None, spec.split(",")):
        first, _, last = part.partition("-")
        try:
            a, b = int(first), int(last or first)
        except ValueError:
            raise SystemExit(f"--hide-rows: {part!r} is not a row or a range of rows like 8-11") from None
        if not 0 <= a <= b < height:
            raise SystemExit(f"--hide-rows: {part!r} is outside rows 0-{height - 1}")
        keep[:, :, a : b + 1] = 0
    return keep


def fresh_like(D: torch.nn.Module, channel_max: int | None = None) -> torch.nn.Module:
    """A randomly initialised D of `D`'s architecture, its channel cap raised to `channel_max`
    (channel_base kept: the extra width goes to the low resolutions, where the face D's last layer
    loses expression, see `d_factor_probe.py`)."""
    return type(D)(dataclasses.replace(D.cfg, channel_max=channel_max or D.cfg.channel_max).validate())


def widened(D: torch.nn.Module, channel_max: int) -> torch.nn.Module:
    """`D` with its channel cap raised to `channel_max`, computing the same logits (within 0.01: the
    new channels at zero add the minibatch-std's epsilon to their standard deviation):
    each old unit keeps its weights, scaled by the square root of its growth in fan-in so that the
    equalised learning rate's gain leaves it as it was, and ignores the new inputs; the new units
    start as a fresh D's. The channels that reach the last (4 px) block are the exception, because
    the minibatch-std feature averages over all of them: there the new ones start at zero (so the
    feature is the old one over the wider count, which its weights undo) and the 4 px block reads
    them through fresh weights, so that they learn from the first step."""
    wide = fresh_like(D, channel_max)
    old_sd, new_sd = D.state_dict(), wide.state_dict()
    mbstd = D.b4.mbstd_num_channels
    c_old, c_new = D.cfg.channels(4), wide.cfg.channels(4)
    last = f"b{D.block_resolutions[-1]}."  # the block whose output the 4 px block reads
    for name, old in old_sd.items():
        new = new_sd[name].clone()
        if old.shape == new.shape:
            new_sd[name] = old.clone()
            continue
        o = old.shape[0]
        feeds_b4 = name.startswith(last) and name.split(".")[1] in ("conv1", "skip")
        if old.dim() == 1:  # a bias
            new[:o] = old
            if feeds_b4:
                new[o:] = 0
            new_sd[name] = new
            continue
        i = old.shape[1]
        gain = (new.shape[1] / i) ** 0.5  # the kernel's area cancels in the fan-in ratio
        if name == "b4.conv.weight":
            # the old features, then fresh weights from the new ones (zero at the start), then the
            # minibatch-std channels, which come last and now average over c_new channels
            feats = i - mbstd
            new[:o, :feats] = old[:, :feats] * gain
            if mbstd:
                new[:o, -mbstd:] = old[:, feats:] * gain * (c_new / c_old)
        else:
            new[:o] = 0
            new[:o, :i] = old * gain  # b4.fc's input is flattened channel-major: old channels first
            if feeds_b4:
                new[o:] = 0
        new_sd[name] = new
    wide.load_state_dict(new_sd)
    return wide


def seen(images: torch.Tensor, policy: tuple[str, ...], noise: float, keep: torch.Tensor | None = None) -> torch.Tensor:
    """What D trains on: the images with the hidden rows blanked, through DiffAugment, then with
    instance noise of sigma `noise`."""
    images = diff_augment(images if keep is None else images * keep, policy)
    return images + noise * torch.randn_like(images) if noise > 0 else images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="checkpoint with a discriminator, named DOMAIN.st (or DOMAIN-*.st)")
    ap.add_argument("--factor", default="expression")
    ap.add_argument("--kimg", type=float, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--gamma", type=float, default=0.05)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--fresh", action="store_true", help="a randomly initialised D of the same shape")
    ap.add_argument(
        "--channel-max",
        type=int,
        help="the D's channel cap instead of the model's (channel_base kept, so 512 gives 64, 128, 256, 512"
        " channels at 32, 16, 8, 4 px for the toy models): the model's D widened, its function kept but for"
        " the minibatch-std feature, or with --fresh a fresh D of that width",
    )
    ap.add_argument(
        "--fakes",
        choices=("samples", "renders"),
        default="samples",
        help="what D learns to call fake: G's samples, or real renders whose factor is drawn as G's samples"
        " read (the factor's marginal is then the only difference D can find)",
    )
    ap.add_argument("--noise", type=float, default=0.0, help="instance noise: Gaussian sigma added to D's inputs")
    ap.add_argument("--diffaug", default="", help="DiffAugment policy for D's inputs, e.g. cutout")
    ap.add_argument("--hide-rows", default="", help="rows to blank in all D sees, e.g. 8-11 or 0-15,28-31")
    ap.add_argument("--pool", type=int, default=20000, help="real renders and G samples D trains on")
    ap.add_argument("--every", type=float, default=4, help="kimg between curves")
    ap.add_argument("--n", type=int, default=200, help="real renders per grid value")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    policy = parse_policy(args.diffaug)
    domain = model_domain(args.model)
    torch.manual_seed(args.seed)
    ckpt = gancraft.load(args.model)
    D = ckpt.discriminator()
    if args.fresh:
        D = fresh_like(D, args.channel_max)
    elif args.channel_max:
        D = widened(D, args.channel_max)
    D.train().requires_grad_(True)
    G = ckpt.generator()
    keep = row_mask(args.hide_rows, G.img_resolution)
    grid = factor_grid(args.factor, 9)
    regressor = load_torchscript(Path(__file__).with_name("toy-factors.pt"), "factor regressor")
    readings = apply(regressor, fake_images(args.model, 2000), unit_range=False)[:, toy.FACTORS.index(args.factor)]
    ideal = ideal_curve(readings, grid, args.factor)
    print(f"{args.factor} at {' '.join(f'{v:+.2f}' for v in grid)}")
    print(f"  ideal D:   {' '.join(f'{v:+.2f}' for v in ideal - np.nanmean(ideal))}")
    probe = [x * keep for x in grid_renders(domain, args.factor, grid, args.n)]
    print(f"  0 kimg:    {' '.join(f'{v:+.2f}' for v in logit_curve(D.eval(), probe))}", flush=True)
    D.train()

    reals = real_images(domain, args.pool, SEED_REAL)
    if args.fakes == "samples":
        fakes = torch.cat(
            [
                b.images.clamp(-1, 1)
                for b in generate(G, range(SEED_FAKES, SEED_FAKES + args.pool), batch_size=200, noise_mode="random")
            ]
        )
    else:
        fakes = renders_like(domain, args.factor, readings, args.pool)
    interval = 16
    c = interval / (interval + 1)
    opt = torch.optim.Adam(D.parameters(), lr=args.lr * c, betas=(0.0, 0.99**c), eps=1e-8)
    steps = int(args.kimg * 1000 / args.batch)
    every = max(1, int(args.every * 1000 / args.batch))
    gen = torch.Generator().manual_seed(args.seed)
    t0, losses = time.time(), []
    for step in range(1, steps + 1):
        real = seen(reals[torch.randint(len(reals), (args.batch,), generator=gen)], policy, args.noise, keep)
        fake = seen(fakes[torch.randint(len(fakes), (args.batch,), generator=gen)], policy, args.noise, keep)
        loss = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if args.gamma > 0 and step % interval == 0:
            x = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
            opt.zero_grad(set_to_none=True)
            (grad.square().sum(dim=[1, 2, 3]).mean() * (args.gamma / 2) * interval).backward()
            opt.step()
        if step % every == 0 or step == steps:
            kimg = step * args.batch / 1000
            shape = logit_curve(D.eval(), probe)
            D.train()
            print(
                f"  {kimg:g} kimg:  {' '.join(f'{v:+.2f}' for v in shape)}   (D loss {np.mean(losses):.3f}, "
                f"{time.time() - t0:.0f} s)",
                flush=True,
            )
            losses = []


if __name__ == "__main__":
    run_script(main)
