"""Training speed: seconds per step and kimg/s of the one training loop, tiny and small configs.

    python benchmarks/bench_train.py [--resolution 32] [--steps 40] [--device cuda] [--json PATH]
    python benchmarks/bench_train.py --compile --configs toy [--steps 8] [--repeats 3]
    python benchmarks/bench_train.py --configs toy --aug-p 0.5

--aug-p P times each config a second time with NVIDIA's ADA pipeline (`bgc`) held at p = P
(`gancraft train --aug fixed --p P`), next to the same run without augmentation.

Trains from scratch on procedural toy images (written to a temporary folder) through
`gancraft.train.loop.run_training`, exactly what `gancraft train` runs: G step, D step, lazy R1
every 16 steps (so the average includes its cost), EMA, no snapshots inside the timed window.

--compile asks whether `torch.compile` of the networks would pay: two trainers from the same
start, one with G's mapping and synthesis and D compiled, time blocks of `--steps` steps in
turn (fastest of `--repeats`). R1 and path length are off in both, since compiled graphs have
no double backward; the compile time is reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from gancraft import toy
from gancraft.train.configs import architecture, get_preset
from gancraft.train.data import ImageFolderData
from gancraft.train.loop import TrainOptions, run_training
from gancraft.train.methods import ScratchMethod

from malloc_option import add_malloc_option, apply_malloc_option


def bench(
    config: str, resolution: int, steps: int, device: str, data_dir: Path, run_dir: Path, aug_p: float | None = None
) -> dict:
    preset = get_preset(config)
    g, d = architecture(config, resolution)
    method = ScratchMethod(ImageFolderData(data_dir, resolution), g, d)
    aug = {"aug": "fixed", "aug_p": aug_p} if aug_p is not None else {}
    opts = TrainOptions(kimg=1000, batch=preset.batch, snap_kimg=1000, seed=0, lr_g=preset.lr, lr_d=preset.lr, **aug)
    warm = 3
    name = config + ("-aug" if aug else "")
    run_training(method, opts, run_dir / f"{name}-warm", device=device, progress=False, max_steps=warm)
    t0 = time.perf_counter()
    run_training(method, opts, run_dir / f"{name}-timed", device=device, progress=False, max_steps=steps)
    dt = time.perf_counter() - t0
    # the timed run also writes its step-0 snapshot and grid once; that is included (honest upper bound)
    return {
        "config": config,
        "resolution": resolution,
        "batch": preset.batch,
        "steps": steps,
        "seconds": dt,
        "sec_per_step": dt / steps,
        "kimg_per_s": steps * preset.batch / 1000 / dt,
        "aug_p": aug_p,
    }


def compile_comparison(
    config: str, resolution: int, steps: int, repeats: int, device: str, data_dir: Path, run_dir: Path
) -> dict:
    preset = get_preset(config)
    g, d = architecture(config, resolution)
    opts = TrainOptions(kimg=1000, batch=preset.batch, snap_kimg=1000, seed=0, lr_g=preset.lr, lr_d=preset.lr)
    trainers = {}
    for name in ("eager", "compiled"):
        t = run_training(
            ScratchMethod(ImageFolderData(data_dir, resolution), g, d),
            opts,
            run_dir / f"{config}-{name}",
            device=device,
            progress=False,
            max_steps=0,
        )
        t.gamma, t.use_pl = 0.0, False
        trainers[name] = t
    c = trainers["compiled"]
    c.G.mapping, c.G.synthesis, c.D = torch.compile(c.G.mapping), torch.compile(c.G.synthesis), torch.compile(c.D)
    t0 = time.perf_counter()
    for _ in range(2):  # the first steps compile (and recompile where update_w_avg flips)
        c.train_step()
    compile_s = time.perf_counter() - t0
    trainers["eager"].train_step()
    best = {name: float("inf") for name in trainers}
    for _ in range(repeats):
        for name, t in trainers.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                t.train_step()
            best[name] = min(best[name], (time.perf_counter() - t0) / steps)
    return {
        "config": config,
        "compile_seconds": compile_s,
        "sec_per_step": best,
        "speedup": best["eager"] / best["compiled"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--configs", default="tiny,small")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="eager against torch.compile'd networks (see above)")
    ap.add_argument("--repeats", type=int, default=3, help="timed blocks per side with --compile")
    ap.add_argument("--aug-p", type=float, help="also time each config with ADA held at this p (see above)")
    ap.add_argument("--json", type=Path)
    add_malloc_option(ap)
    args = ap.parse_args()
    malloc = apply_malloc_option(args)
    print(f"allocator: {malloc}", flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"command: python benchmarks/bench_train.py --resolution {args.resolution} --steps {args.steps} "
        f"--configs {args.configs} --device {args.device} --malloc {args.malloc}"
        + (f" --compile --repeats {args.repeats}" if args.compile else "")
        + (f" --aug-p {args.aug_p}" if args.aug_p is not None else "")
    )
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = toy.write_dataset("face", 256, 0, args.resolution, tmp / "data")
        for config in args.configs.split(","):
            if args.compile:
                r = compile_comparison(config, args.resolution, args.steps, args.repeats, args.device, data, tmp)
                results.append(r)
                sec = r["sec_per_step"]
                print(
                    f"{config:>6} {args.resolution}px, no R1 or path length: eager {sec['eager']:.3f} s/step, "
                    f"compiled {sec['compiled']:.3f} s/step ({r['speedup']:.2f}x) after {r['compile_seconds']:.0f} s "
                    "of compiling",
                    flush=True,
                )
                continue
            for aug_p in [None] if args.aug_p is None else [None, args.aug_p]:
                r = bench(config, args.resolution, args.steps, args.device, data, tmp, aug_p)
                results.append(r)
                what = "" if aug_p is None else f", ADA bgc at p {aug_p}"
                print(
                    f"{config:>6} {args.resolution}px batch {r['batch']}{what}: {r['sec_per_step']:.3f} s/step, "
                    f"{r['kimg_per_s']:.4f} kimg/s ({r['steps']} steps in {r['seconds']:.1f} s)",
                    flush=True,
                )
    if args.json:
        args.json.write_text(
            json.dumps({"train": results, "threads": torch.get_num_threads(), "malloc": malloc}, indent=2)
        )


if __name__ == "__main__":
    sys.exit(main())
