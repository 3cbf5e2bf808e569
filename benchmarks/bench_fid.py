"""Throughput of the FID pipeline on this machine.

Measures feature-extraction images/s for pytorch-fid's Inception architecture (random
weights: the speed does not depend on them, and the real file cannot be downloaded here)
and for a small TorchScript extractor, then the end-to-end seconds to generate N images
with a randomly initialised StyleGAN2 generator, extract Inception features batch by batch
into float64 running statistics, and compute the Fréchet distance to a reference.

    python benchmarks/bench_fid.py --n 64 --batch 16 --resolution 64   (GPU: --n 50000 --batch 250)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from gancraft.metrics import (
    InceptionExtractor,
    RunningStats,
    TorchScriptExtractor,
    features_from_batches,
    frechet_distance,
)
from gancraft.nets import Generator, GeneratorConfig

from malloc_option import add_malloc_option, apply_malloc_option


class SmallFeatures(torch.nn.Module):
    """A toy-sized extractor: three strided convs and global pooling, 64-d output."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 3, stride=2, padding=1),
            torch.nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(extractor, batch: torch.Tensor, repeats: int) -> float:
    extractor(batch)  # warm-up: lazy allocations, cuDNN autotuning
    sync(extractor.device)
    start = time.perf_counter()
    for _ in range(repeats):
        extractor(batch)
    sync(extractor.device)
    return repeats * batch.shape[0] / (time.perf_counter() - start)


def generated_batches(gen: Generator, n: int, batch: int, device: torch.device, seed: int, timer: list[float]):
    rng = torch.Generator(device="cpu").manual_seed(seed)
    done = 0
    while done < n:
        b = min(batch, n - done)
        z = torch.randn(b, gen.z_dim, generator=rng).to(device)
        start = time.perf_counter()
        with torch.inference_mode():
            img = gen(z)
        sync(device)
        timer[0] += time.perf_counter() - start
        done += b
        yield img


def end_to_end(
    gen: Generator, extractor, n: int, batch: int, device: torch.device, seed: int, reference: RunningStats
) -> tuple[float, float, float, float]:
    gen_seconds = [0.0]
    start = time.perf_counter()
    acc = RunningStats()
    for feats in features_from_batches(generated_batches(gen, n, batch, device, seed, gen_seconds), extractor):
        acc.update(feats)
    fd_start = time.perf_counter()
    fid = frechet_distance(acc.mean, acc.covariance(), reference.mean, reference.covariance())
    total = time.perf_counter() - start
    return total, gen_seconds[0], time.perf_counter() - fd_start, fid


def vs_pytorch_fid(n: int, batch: int, repeats: int, folder: Path) -> dict:
    """pytorch-fid's own `calculate_activation_statistics` against gancraft's folder path (resize
    legacy_pytorch, pytorch-fid's convention) on the same PNG files and the same random weights."""
    import copy

    from pytorch_fid.fid_score import calculate_activation_statistics

    from gancraft import toy
    from gancraft.metrics.features import _build_pytorch_fid_inception, features_from_folder, list_images
    from gancraft.metrics.inference import prepare_for_cpu_inference

    toy.write_dataset("face", n, 0, 64, folder)
    files = [str(p) for p in list_images(folder)]
    torch.manual_seed(0)
    theirs = _build_pytorch_fid_inception(None).eval()
    for m in theirs.modules():  # He init keeps random features at a usable scale
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    ours = InceptionExtractor.random(seed=0, device="cpu", resize="legacy_pytorch")
    ours.model = prepare_for_cpu_inference(copy.deepcopy(theirs))
    theirs.resize_input = theirs.normalize_input = True  # pytorch-fid's own settings: it resizes and scales

    def run_theirs():
        return calculate_activation_statistics(files, theirs, batch, 2048, "cpu", num_workers=0)

    def run_ours():
        acc = RunningStats()
        for feats in features_from_folder(folder, ours, batch):
            acc.update(feats)
        return acc.mean, acc.covariance()

    best = {"gancraft": [float("inf")] * 2, "pytorch_fid": [float("inf")] * 2}
    out = {}
    for _ in range(repeats):  # interleaved, so that load from other processes hits both alike
        for name, fn in (("pytorch_fid", run_theirs), ("gancraft", run_ours)):
            t0, c0 = time.perf_counter(), time.process_time()
            out[name] = fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
    (mu0, s0), (mu1, s1) = out["pytorch_fid"], out["gancraft"]
    return {
        "images": n,
        "batch": batch,
        "images_per_s": {k: n / v[0] for k, v in best.items()},
        "cpu_s_per_image": {k: v[1] / n for k, v in best.items()},
        "ratio": best["pytorch_fid"][0] / best["gancraft"][0],
        "cpu_ratio": best["pytorch_fid"][1] / best["gancraft"][1],
        "mean_rel_diff": float(abs(mu1 - mu0).max() / abs(mu0).max()),
        "cov_rel_diff": float(abs(s1 - s0).max() / abs(s0).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="generated images for the end-to-end run")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=64, help="generator output size (power of two)")
    parser.add_argument("--repeats", type=int, default=2, help="timed batches per extractor")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--vs-n",
        type=int,
        default=32,
        help="PNG files for the comparison with pytorch-fid's own loop (CPU; 0 skips it)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    add_malloc_option(parser)
    args = parser.parse_args()
    malloc = apply_malloc_option(args)
    device = torch.device(args.device)
    results: dict = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "malloc": malloc,
        "resolution": args.resolution,
        "batch": args.batch,
    }

    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} cores"
    print(f"machine: {device} ({machine}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    inception = InceptionExtractor.random(seed=0, device=device)
    images = torch.rand(args.batch, 3, args.resolution, args.resolution, generator=torch.Generator().manual_seed(0))
    ips = images_per_second(inception, images, args.repeats)
    results["inception_images_per_s"] = ips
    print(
        f"inception (pytorch-fid architecture, random weights): {ips:.1f} images/s "
        f"at {args.resolution}x{args.resolution} input, batch {args.batch}; resize: {inception.resize}"
    )

    if args.vs_n and device.type == "cpu":
        with tempfile.TemporaryDirectory() as tmp:
            v = vs_pytorch_fid(args.vs_n, args.batch, args.repeats, Path(tmp) / "images")
        results["vs_pytorch_fid"] = v
        print(
            f"against pytorch-fid's calculate_activation_statistics ({v['images']} 64px PNGs, batch {v['batch']}, "
            f"same random weights, fastest of {args.repeats}): gancraft {v['images_per_s']['gancraft']:.1f} img/s, "
            f"pytorch-fid {v['images_per_s']['pytorch_fid']:.1f} img/s: {v['ratio']:.2f}x (CPU time "
            f"{v['cpu_ratio']:.2f}x); statistics differ by {v['mean_rel_diff']:.1e} (mean) and "
            f"{v['cov_rel_diff']:.1e} (covariance) of their largest value",
            flush=True,
        )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "small_features.pt"
        torch.manual_seed(0)
        torch.jit.script(SmallFeatures()).save(str(path))
        small = TorchScriptExtractor(path, device=device)
        ips = images_per_second(small, images, max(args.repeats, 10))
    results["torchscript_small_images_per_s"] = ips
    print(f"torchscript small extractor (3 convs, 64-d): {ips:.1f} images/s at {args.resolution}x{args.resolution}")

    torch.manual_seed(0)
    cfg = GeneratorConfig(z_dim=512, w_dim=512, img_resolution=args.resolution, channel_max=512)
    gen = Generator(cfg).eval().to(device)
    reference = RunningStats()
    for feats in features_from_batches(generated_batches(gen, args.batch * 2, args.batch, device, 1, [0.0]), inception):
        reference.update(feats)
    total, gen_s, fd_s, fid = end_to_end(gen, inception, args.n, args.batch, device, 2, reference)
    print(
        f"end to end: {args.n} generated images ({args.resolution}px StyleGAN2, random weights) -> Inception "
        f"-> running stats -> FD: {total:.1f} s ({args.n / total:.1f} images/s; generation {gen_s:.1f} s, "
        f"Fréchet distance {fd_s:.2f} s; value {fid:.4g}, meaningless with random weights)"
    )
    per_image = total / args.n
    print(f"extrapolated to 50000 images at this rate: {50000 * per_image / 60:.0f} min")
    results["end_to_end"] = {
        "images": args.n,
        "seconds": total,
        "images_per_s": args.n / total,
        "generation_s": gen_s,
        "frechet_distance_s": fd_s,
    }
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__)] + sys.argv[1:])
    results["command"] = command
    print("reproduce: " + command)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
