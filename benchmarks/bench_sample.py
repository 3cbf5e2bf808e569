"""Images/s of the `gancraft sample` path: seeds -> mapping -> synthesis -> PNG files.

Generators have random weights (speed does not depend on them): an FFHQ-sized 256 px
configuration (GeneratorConfig(img_resolution=256) defaults: z/w 512, channels up to 512) and
a small one (64 px, w 128, channels up to 128). Each runs at batch 1 and 8 after one warm-up
batch; PNGs are written by the same background ImageWriter the command uses.

    python benchmarks/bench_sample.py                       (defaults: 8 images at 256 px, 32 small)
    python benchmarks/bench_sample.py --n-ffhq 64 --n-small 512 --device cuda
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from gancraft.latent.generate import generate
from gancraft.media.images import ImageWriter, seed_filename, to_uint8
from gancraft.nets import Generator, GeneratorConfig

from malloc_option import add_malloc_option, apply_malloc_option

CONFIGS = {
    "ffhq256": GeneratorConfig(img_resolution=256),
    "small64": GeneratorConfig(
        z_dim=128, w_dim=128, img_resolution=64, channel_base=4096, channel_max=128, mapping_layers=4
    ),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(G: torch.nn.Module, n: int, batch: int, device: torch.device, folder: Path) -> tuple[float, float]:
    """(wall, process CPU) seconds to sample n images at this batch size and write them as PNGs.

    CPU seconds are reported too because on a shared machine wall time also counts other jobs.
    """
    list(generate(G, list(range(10_000, 10_000 + batch)), batch_size=batch))  # warm-up: kernels, allocator
    sync(device)
    folder.mkdir()
    start, cpu_start = time.perf_counter(), time.process_time()
    with ImageWriter() as writer:
        for b in generate(G, list(range(n)), batch_size=batch):
            for seed, img in zip(b.seeds, to_uint8(b.images)):
                writer.write(img, folder / seed_filename(seed))
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-ffhq", type=int, default=8, help="images per run for ffhq256")
    ap.add_argument("--n-small", type=int, default=32, help="images per run for small64")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path, default=None)
    add_malloc_option(ap)
    args = ap.parse_args()
    malloc = apply_malloc_option(args)
    print(f"allocator: {malloc}", flush=True)
    device = torch.device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    command = "python benchmarks/bench_sample.py " + shlex.join(sys.argv[1:])
    results = {
        "command": command.strip(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "malloc": malloc,
        "runs": [],
    }
    torch.manual_seed(0)
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        for name, cfg in CONFIGS.items():
            n = args.n_ffhq if name == "ffhq256" else args.n_small
            G = Generator(cfg).to(device).eval().requires_grad_(False)
            for batch in batches:
                secs, cpu = measure(G, n, batch, device, Path(tmp) / f"{name}_b{batch}")
                row = {
                    "config": name,
                    "resolution": cfg.img_resolution,
                    "batch": batch,
                    "images": n,
                    "seconds": round(secs, 3),
                    "images_per_s": round(n / secs, 3),
                    "cpu_seconds": round(cpu, 3),
                }
                results["runs"].append(row)
                print(
                    f"{name:8s} {cfg.img_resolution:4d}px batch {batch:3d}: {n / secs:8.2f} images/s "
                    f"({n} images in {secs:.1f} s wall, {cpu:.1f} s process CPU; {device}, "
                    f"{torch.get_num_threads()} threads)",
                    flush=True,
                )
    print(f"reproduce: {results['command']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
