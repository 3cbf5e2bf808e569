"""Do the bundled example models show what the papers need? The figures of issue #16, measured.

For each model (one toy domain each: face, cat, dog) against held-out renders of its own domain
(seeds the training data never used), with the bundled toy-domain networks:

- FID on `toy-features.pt` features, N vs N samples (and a larger N), next to the floor: two
  independent sets of real renders scored against each other;
- collapse: per toy factor, the standard deviation of `toy-factors.pt` predictions over the
  model's samples divided by the same figure on real renders (1.0 = as varied as the data);
- domain probe: a logistic-regression probe on `toy-features.pt` features, trained on real
  renders of the three domains, classifies every sample; the share labelled as the model's own;
- image quality, with the damage-aware `toy-quality.pt`: FID N vs N next to its floor, and the
  share of samples that a probe on its features (real renders of the three domains against
  damaged renders) calls a clean drawing of the model's own domain;
- dormant SeFA directions: read from the CSV that `gancraft sefa MODEL --measure N` wrote
  (the recipe runs it), the count marked dormant.

    python examples/report.py examples/face.st examples/cat.st examples/dog.st \\
        --measure-csv out/examples-report/face.measure.csv ... -o out/examples-report/report.md

`make -C recipes examples-report` runs the whole measurement and prints the table.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from make_quality_extractor import TRAINED, damage
from sklearn.linear_model import LogisticRegression

import gancraft
from gancraft import toy
from gancraft.errors import run_script
from gancraft.io_util import load_torchscript
from gancraft.latent.generate import generate
from gancraft.metrics.fid import fid_from_stats, stats_from_features

HERE = Path(__file__).resolve().parent
# Held-out seeds: the example models were trained on seeds 0, 1, 2 (face, cat, dog).
SEED_REF, SEED_FLOOR, SEED_PROBE = 777, 778, 779


def model_domain(model: str) -> str:
    """The toy domain a checkpoint is named after (DOMAIN.st or DOMAIN-*.st; exits otherwise)."""
    domain = Path(model).stem.split("-")[0]
    if domain not in toy.DOMAINS:
        raise SystemExit(f"{model}: name the file after a toy domain ({', '.join(toy.DOMAINS)})")
    return domain


def real_images(domain: str, n: int, seed: int, ranges: dict[str, tuple[float, float]] | None = None) -> torch.Tensor:
    """N x 3 x 32 x 32 renders in [-1, 1] (`ranges`: factors drawn from part of their range)."""
    arr, _ = toy.render_batch(domain, n, seed, resolution=32, ranges=ranges)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1


def fake_images(model: str, n: int) -> torch.Tensor:
    """N samples of the model's G_ema (seeds 0..N-1, psi 1, random noise as NVIDIA's FID), quantised to
    8 bits as a PNG would be, in [-1, 1]."""
    G = gancraft.load(model).generator()
    out = []
    for batch in generate(G, range(n), batch_size=100, noise_mode="random"):
        out.append(((batch.images.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1)
    return torch.cat(out)


@torch.no_grad()
def apply(net: torch.jit.ScriptModule, images: torch.Tensor, unit_range: bool) -> np.ndarray:
    outs = []
    for chunk in images.split(250):
        outs.append(net((chunk + 1) / 2 if unit_range else chunk))
    return torch.cat(outs).double().numpy()


def domain_probe(feats: torch.jit.ScriptModule, n: int = 1000) -> LogisticRegression:
    """A logistic-regression probe on `feats` features labelling the toy domains (indices of
    toy.DOMAINS), fitted on n held-out renders of each."""
    x = np.concatenate([apply(feats, real_images(d, n, SEED_PROBE), True) for d in toy.DOMAINS])
    return LogisticRegression(max_iter=2000).fit(x, np.repeat(np.arange(len(toy.DOMAINS)), n))


def dormant_count(csv_path: Path) -> tuple[int, int, str]:
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    metric = next(k for k in rows[0] if k.startswith("mean_"))[len("mean_") :]
    return sum(r["dormant"] in ("1", "True", "true") for r in rows), len(rows), metric


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="checkpoints named DOMAIN.st (face, cat, dog)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--n-large", type=int, default=2000)
    ap.add_argument("--n-collapse", type=int, default=1000)
    ap.add_argument("--measure-csv", nargs="*", default=[], help="sefa --measure CSVs, one per model, same order")
    ap.add_argument("--features", default=str(HERE / "toy-features.pt"))
    ap.add_argument("--factors", default=str(HERE / "toy-factors.pt"))
    ap.add_argument("--quality", default=str(HERE / "toy-quality.pt"))
    ap.add_argument("-o", "--output", required=True, help="markdown table to write")
    args = ap.parse_args()
    torch.manual_seed(0)
    feats = load_torchscript(args.features, "feature extractor")
    factors = load_torchscript(args.factors, "factor regressor")
    domains = [model_domain(m) for m in args.models]

    probe = domain_probe(feats)
    # clean-drawing probe: the three domains' renders, and the same renders damaged as a fourth class
    quality = load_torchscript(args.quality, "quality network")
    gen = torch.Generator().manual_seed(0)
    clean = [real_images(d, 1000, SEED_PROBE) for d in toy.DOMAINS]
    damaged = [damage((x + 1) / 2, TRAINED, gen) * 2 - 1 for x in clean]
    clean_probe = LogisticRegression(max_iter=3000).fit(
        np.concatenate([apply(quality, x, True) for x in clean + damaged]),
        np.concatenate([np.repeat(np.arange(len(toy.DOMAINS)), 1000), np.full(3000, len(toy.DOMAINS))]),
    )

    n_max = max(args.n, args.n_large, args.n_collapse)
    rows = []
    for i, (model, domain) in enumerate(zip(args.models, domains)):
        fake = fake_images(model, n_max)
        real = real_images(domain, n_max, SEED_REF)
        floor_real = real_images(domain, n_max, SEED_FLOOR)
        f_fake, f_real, f_floor = (apply(feats, x, True) for x in (fake, real, floor_real))
        k = args.n_collapse
        q_fake = apply(quality, fake[: max(args.n, k)], True)  # FID takes the first n, the probe the first k
        q_real, q_floor = (apply(quality, x[: args.n], True) for x in (real, floor_real))
        fid = {
            "quality": fid_from_stats(stats_from_features([q_fake[: args.n]]), stats_from_features([q_real])),
            "quality floor": fid_from_stats(stats_from_features([q_floor]), stats_from_features([q_real])),
        }
        for n in (args.n, args.n_large):
            fid[n] = fid_from_stats(stats_from_features([f_fake[:n]]), stats_from_features([f_real[:n]]))
            fid[f"floor{n}"] = fid_from_stats(stats_from_features([f_floor[:n]]), stats_from_features([f_real[:n]]))
        std_ratio = apply(factors, fake[:k], False).std(0) / apply(factors, real[:k], False).std(0)
        own = float((probe.predict(f_fake[:k]) == toy.DOMAINS.index(domain)).mean())
        clean_share = float((clean_probe.predict(q_fake[:k]) == toy.DOMAINS.index(domain)).mean())
        dormant = dormant_count(Path(args.measure_csv[i])) if i < len(args.measure_csv) else None
        rows.append((domain, fid, std_ratio, own, dormant, clean_share))

    n, nl = args.n, args.n_large
    lines = [
        f"| model | FID {n} vs {n} (floor) | FID {nl} vs {nl} (floor) | factor spread, model / real "
        f"({', '.join(toy.FACTORS)}; {args.n_collapse} samples) | own domain ({args.n_collapse} samples) "
        f"| dormant SeFA directions | damage-aware FID {n} vs {n} (floor) | clean drawings of its domain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for domain, fid, ratio, own, dormant, clean_share in rows:
        dorm = f"{dormant[0]} of {dormant[1]} ({dormant[2]})" if dormant else "not measured"
        lines.append(
            f"| {domain} | {fid[n]:.2f} ({fid[f'floor{n}']:.2f}) | {fid[nl]:.2f} ({fid[f'floor{nl}']:.2f}) | "
            + ", ".join(f"{r:.2f}" for r in ratio)
            + f" | {100 * own:.1f}% | {dorm} | {fid['quality']:.1f} ({fid['quality floor']:.2f}) | "
            f"{100 * clean_share:.1f}% |"
        )
    text = "\n".join(lines) + "\n"
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    print(text, end="")


if __name__ == "__main__":
    run_script(main)
