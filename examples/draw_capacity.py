"""Can a model's synthesis network draw its domain, mouths included, when told what to draw?

The face model samples too few strong expressions, and its D gives no gradient on them (see
examples/README.md). Two explanations remain: the 64-channel synthesis network cannot draw the
toy mouths cleanly at every pose (a capacity limit), or it can and the adversarial game never
asks it to (a training-dynamics limit). This script takes the adversary out: a synthesis network
of the model's shape learns, by pixel regression, to draw the render of given factors. The five
true factors go through a small MLP to one w (broadcast to every layer), and the loss is the mean
squared error against the render of those factors, which is deterministic given them.

Every `--every` kimg it prints, on held-out factors: the pixel MSE, the MSE on the mouth's rows,
the toy FID of the drawings against held-out renders (500 vs 500, as `report.py`), and for each
factor the toy-factor regressor's spread on the drawings over its spread on the renders of the
same factors, and the correlation of the two readings. If the spread and correlation of
expression reach the renders', the network can draw the expressions, and the GAN's narrow
expression is not a capacity limit of the synthesis network.

    python examples/draw_capacity.py examples/face.st --kimg 40
    python examples/draw_capacity.py examples/face.st --channels 128 --kimg 40
    python examples/draw_capacity.py examples/face.st --init --kimg 20

With `--save OUT.st` it then makes the drawer an unconditional generator: G's mapping network
learns to send z to the w the drawer would use for the factors that z's first five coordinates
stand for (each through the normal CDF, so the factors come out uniform over their ranges, as
the data draws them). OUT.st is the model file with that G_ema; its D is the model's. It starts a
GAN from a generator that already samples the data's spread of every factor (`gancraft train
--init OUT.st`): does the adversarial game keep that spread? The mapping learns from factor
labels, so OUT.st is a diagnostic, never a model trained as a GAN.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import gancraft
from gancraft import toy
from gancraft.errors import run_script
from gancraft.io_util import load_torchscript
from gancraft.media.images import make_grid, to_uint8
from gancraft.metrics.fid import fid_from_stats, stats_from_features
from gancraft.nets.stylegan2 import Generator

from report import HERE, SEED_REF, apply, model_domain, real_images

SEED_TRAIN, SEED_TEST = 903, 904  # neither a training seed (0-2) nor report.py's (777-779)
# Rows of a 32-px face render that expression changes (d_saliency.py: rows 16-27).
MOUTH_ROWS = slice(16, 28)


def to_unit_range(values: np.ndarray) -> np.ndarray:
    """N x 5 factor values (columns in toy.FACTORS order), each scaled from its range to [-1, 1]."""
    lo, hi = np.array(list(toy.FACTOR_RANGES.values())).T
    return (values - lo) / (hi - lo) * 2 - 1


def factor_vectors(factors: dict[str, np.ndarray]) -> torch.Tensor:
    """N x 5 factors, each scaled from its range to [-1, 1]."""
    return torch.from_numpy(to_unit_range(np.stack([factors[name] for name in toy.FACTORS], 1))).float()


def intended(z: torch.Tensor) -> torch.Tensor:
    """The factors (in [-1, 1]) a --save generator's z stands for: its first five coordinates
    through the normal CDF, so that they come out uniform, as the data draws them."""
    return torch.distributions.Normal(0.0, 1.0).cdf(z[:, : len(toy.FACTORS)]) * 2 - 1


def renders(domain: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    arr, factors = toy.render_batch(domain, n, seed, resolution=32)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1, factor_vectors(factors)


class Drawer(torch.nn.Module):
    """Factors -> w (an MLP) -> the synthesis network, one w for every layer."""

    def __init__(self, G: Generator):
        super().__init__()
        w_dim = G.w_dim
        self.embed = torch.nn.Sequential(
            torch.nn.Linear(len(toy.FACTORS), w_dim),
            torch.nn.LeakyReLU(0.2),
            torch.nn.Linear(w_dim, w_dim),
            torch.nn.LeakyReLU(0.2),
            torch.nn.Linear(w_dim, w_dim),
        )
        self.synthesis = G.synthesis
        self.num_ws = G.num_ws

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        w = self.embed(f).unsqueeze(1).expand(-1, self.num_ws, -1)
        return self.synthesis(w, noise_mode="const")


def fit_mapping(G: Generator, drawer: Drawer, steps: int, batch: int = 256) -> float:
    """Regress G.mapping onto z -> factors(z) -> drawer.embed; returns the final mean squared
    error over the targets' variance. w_avg becomes the new mapping's mean w."""
    torch.manual_seed(1)
    # a fresh mapping: the model's own sends z to a W region the drawer's w need not be near
    G.mapping = mapping = Generator(G.cfg).mapping.train()
    lr_multiplier = mapping.fc0.bias_gain  # the layer's lr_multiplier
    # the stored weights are scaled by 1 / lr_multiplier: this step size moves the function as
    # Adam at 0.01 moves an ordinary network
    opt = torch.optim.Adam(mapping.parameters(), lr=0.01 / lr_multiplier, betas=(0.9, 0.99))

    def targets(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return drawer.embed(intended(z))

    for step in range(steps):
        z = torch.randn(batch, G.z_dim)
        want = targets(z)
        loss = (mapping(z, None, broadcast=False) - want).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 500 == 0:
            err = float(loss.detach() / want.var(0).mean())
            print(f"mapping step {step}: w error {err:.4f} of the target variance", flush=True)
    mapping.requires_grad_(False).eval()
    with torch.no_grad():
        z = torch.randn(10_000, G.z_dim)
        w, want = mapping(z, None, broadcast=False), targets(z)
        mapping.w_avg.copy_(w.mean(0))
    return float((w - want).square().mean() / want.var(0).mean())


def save_generator(model: str, G: Generator, path: str, params: dict) -> None:
    ck = gancraft.load(model)
    tensors = dict(ck.tensors)
    for key, value in G.state_dict().items():
        tensors[f"G_ema.{key}"] = value.detach().clone()
    ck = dataclasses.replace(ck, tensors=tensors).with_operation("draw-capacity", params, [model])
    gancraft.save(ck, path, force=True)


def references(test_images: torch.Tensor, real_ref: torch.Tensor, nets: dict) -> dict:
    """What `evaluate` compares the drawings with, read once for the whole run: the regressor on
    the test renders, and the FID statistics of 500 held-out renders."""
    return {
        "read": apply(nets["factors"], test_images, False),
        "stats": stats_from_features([apply(nets["features"], real_ref[:500], True)]),
    }


def evaluate(drawer: Drawer, test: tuple[torch.Tensor, torch.Tensor], ref: dict, nets: dict) -> dict:
    images, f = test
    with torch.no_grad():
        out = torch.cat([drawer(chunk) for chunk in f.split(250)]).clamp(-1, 1)
    out = ((out + 1) * 127.5).round() / 127.5 - 1  # 8 bits, as report.py's samples
    read_out, read_real = apply(nets["factors"], out, False), ref["read"]
    feats_out = apply(nets["features"], out[:500], True)
    return {
        "mse": float((out - images).square().mean()),
        "mouth_mse": float((out - images)[:, :, MOUTH_ROWS].square().mean()),
        "fid": fid_from_stats(stats_from_features([feats_out]), ref["stats"]),
        "spread": read_out.std(0) / read_real.std(0),
        "corr": [np.corrcoef(read_out[:, i], read_real[:, i])[0, 1] for i in range(len(toy.FACTORS))],
        "images": out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="an example model named DOMAIN.st: its generator's shape (and weights with --init)")
    ap.add_argument("--init", action="store_true", help="start the synthesis network from the model's G_ema")
    ap.add_argument("--channels", type=int, help="channel_max instead of the model's (channel_base grows with it)")
    ap.add_argument("--kimg", type=float, default=40.0, help="images drawn in training, thousands")
    ap.add_argument("--every", type=float, default=10.0, help="evaluate every this many kimg")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--train", type=int, default=20000, help="distinct training renders")
    ap.add_argument("--test", type=int, default=1000, help="held-out renders for the figures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", help="PNG at the end: held-out renders above their drawings, 16 of each")
    ap.add_argument("--save", metavar="OUT.st", help="then fit G's mapping to the drawer and write the model (above)")
    ap.add_argument("--mapping-steps", type=int, default=3000, help="Adam steps of 256 z for --save")
    args = ap.parse_args()
    domain = model_domain(args.model)
    if args.save and Path(args.save).resolve() == Path(args.model).resolve():
        raise SystemExit(f"--save {args.save} would overwrite the model it reads")
    if args.save and args.channels:
        raise SystemExit("--save writes the model's own architecture; drop --channels")
    if args.init and args.channels:
        raise SystemExit("--init keeps the model's width; drop --channels")
    torch.manual_seed(args.seed)
    ck = gancraft.load(args.model)
    if args.init:
        G = ck.generator().requires_grad_(True).train()
    else:
        cfg = ck.g_config
        if args.channels:
            scale = args.channels / cfg.channel_max
            cfg = dataclasses.replace(cfg, channel_max=args.channels, channel_base=int(cfg.channel_base * scale))
        G = Generator(cfg)
    drawer = Drawer(G)
    nets = {
        "factors": load_torchscript(HERE / "toy-factors.pt", "factor regressor"),
        "features": load_torchscript(HERE / "toy-features.pt", "feature extractor"),
    }
    t0 = time.time()
    train_images, train_f = renders(domain, args.train, SEED_TRAIN)
    test = renders(domain, args.test, SEED_TEST)
    ref = references(test[0], real_images(domain, 500, SEED_REF), nets)
    print(f"{args.train} training and {args.test} test renders of {domain} in {time.time() - t0:.0f} s", flush=True)
    # betas as the GAN's (NVIDIA's 0, 0.99), so a supervised step is comparable to one of training's G steps
    opt = torch.optim.Adam(drawer.parameters(), lr=args.lr, betas=(0.0, 0.99))
    gen = torch.Generator().manual_seed(args.seed)
    names = ", ".join(toy.FACTORS)
    print(f"kimg  s  MSE  mouth MSE  toy FID 500  spread ({names})  corr ({names})", flush=True)
    shown, next_eval, t0 = 0, args.every, time.time()
    while shown < args.kimg * 1000:
        idx = torch.randint(len(train_images), (args.batch,), generator=gen)
        loss = (drawer(train_f[idx]) - train_images[idx]).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        shown += args.batch
        if shown >= next_eval * 1000 or shown >= args.kimg * 1000:
            r = evaluate(drawer.eval(), test, ref, nets)
            drawer.train()
            print(
                f"{shown / 1000:.1f}  {time.time() - t0:.0f}  {r['mse']:.4f}  {r['mouth_mse']:.4f}  {r['fid']:.2f}  "
                + ", ".join(f"{s:.2f}" for s in r["spread"])
                + "  "
                + ", ".join(f"{c:.2f}" for c in r["corr"]),
                flush=True,
            )
            next_eval += args.every
    if args.output:
        grid = make_grid(to_uint8(torch.cat([test[0][:16], r["images"][:16]])), rows=2, cols=16)
        Image.fromarray(grid).save(args.output)
    if args.save:
        t0 = time.time()
        err = fit_mapping(G, drawer.eval(), args.mapping_steps)
        params = {k: v for k, v in vars(args).items() if k not in ("model", "output", "save")}
        save_generator(args.model, G, args.save, params)
        print(f"{args.save}: mapping fitted in {time.time() - t0:.0f} s, w error {err:.4f} of the target variance")


if __name__ == "__main__":
    run_script(main)
