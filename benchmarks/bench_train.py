"""Training speed: seconds per step and kimg/s of the one training loop, tiny and small configs.

    python benchmarks/bench_train.py [--resolution 32] [--steps 40] [--device cuda] [--json PATH]

Trains from scratch on procedural toy images (written to a temporary folder) through
`gancraft.train.loop.run_training`, exactly what `gancraft train` runs: G step, D step, lazy R1
every 16 steps (so the average includes its cost), EMA, no snapshots inside the timed window.
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


def bench(config: str, resolution: int, steps: int, device: str, data_dir: Path, run_dir: Path) -> dict:
    preset = get_preset(config)
    g, d = architecture(config, resolution)
    method = ScratchMethod(ImageFolderData(data_dir, resolution), g, d)
    opts = TrainOptions(kimg=1000, batch=preset.batch, snap_kimg=1000, seed=0, lr_g=preset.lr, lr_d=preset.lr)
    warm = 3
    run_training(method, opts, run_dir / f"{config}-warm", device=device, progress=False, max_steps=warm)
    t0 = time.perf_counter()
    run_training(method, opts, run_dir / f"{config}-timed", device=device, progress=False, max_steps=steps)
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
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--configs", default="tiny,small")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
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
            r = bench(config, args.resolution, args.steps, args.device, data, tmp)
            results.append(r)
            print(
                f"{config:>6} {args.resolution}px batch {r['batch']}: {r['sec_per_step']:.3f} s/step, "
                f"{r['kimg_per_s']:.4f} kimg/s ({r['steps']} steps in {r['seconds']:.1f} s)",
                flush=True,
            )
    if args.json:
        args.json.write_text(
            json.dumps({"train": results, "threads": torch.get_num_threads(), "malloc": malloc}, indent=2)
        )


if __name__ == "__main__":
    sys.exit(main())
