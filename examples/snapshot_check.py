"""A quick look at training snapshots of one toy domain: toy FID and factor spread.

For each snapshot (or any model file): toy-extractor FID of its first 500 and 1,000 samples
against the first 500 and 1,000 of 1,000 held-out renders (seed 777), and the factor spread of
its 1,000 samples against those renders', as `report.py` measures them (its figures differ by a
little: it draws 2,000 references, so its first 500 are other renders). With --range, the
renders draw that factor from part of its range, as `python -m gancraft.toy --range` does for
training data.

    python examples/snapshot_check.py cat RUN/snapshot-012480.st RUN/snapshot-013104.st
    python examples/snapshot_check.py face --range yaw=-0.15,0.15 RUN/snapshot-*.st
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from gancraft import toy
from gancraft.errors import run_script
from gancraft.io_util import load_torchscript
from gancraft.metrics.fid import fid_from_stats, stats_from_features

from report import HERE, SEED_REF, apply, fake_images, real_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("domain", choices=toy.DOMAINS)
    ap.add_argument("models", nargs="+", help="snapshots or model files of that domain")
    ap.add_argument("--range", action="append", default=[], metavar="FACTOR=LOW,HIGH", help="narrow the renders")
    args = ap.parse_args()
    missing = [m for m in args.models if not Path(m).is_file()]
    if missing:
        raise SystemExit(f"{missing[0]}: no such file")
    ranges = toy.parse_ranges(args.range)
    real = real_images(args.domain, 1000, SEED_REF, ranges)
    factors = load_torchscript(HERE / "toy-factors.pt", "factor regressor")
    feats = load_torchscript(HERE / "toy-features.pt", "feature extractor")
    f_real, spread_real = apply(feats, real, True), apply(factors, real, False).std(0)
    print(f"model  FID 500  FID 1000  spread ({', '.join(toy.FACTORS)})")
    for model in args.models:
        torch.manual_seed(0)  # the noise inputs' draw: each row is the same whatever comes before it
        fake = fake_images(model, 1000)
        f_fake = apply(feats, fake, True)
        fid = [
            fid_from_stats(stats_from_features([f_fake[:n]]), stats_from_features([f_real[:n]])) for n in (500, 1000)
        ]
        spread = apply(factors, fake, False).std(0) / spread_real
        print(f"{model}  {fid[0]:.2f}  {fid[1]:.2f}  {', '.join(f'{s:.2f}' for s in spread)}", flush=True)


if __name__ == "__main__":
    run_script(main)
