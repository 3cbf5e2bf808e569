"""Generator throughput: images/s and achieved GFLOP/s for FFHQ-sized StyleGAN2 configurations.

    python benchmarks/bench_generator.py                       # 256 and 1024 px, batch 1 and 8
    python benchmarks/bench_generator.py --resolutions 256 --batches 8 --repeats 5 --json out/gen.json
    python benchmarks/bench_generator.py --compile             # also time torch.compile'd synthesis
    python benchmarks/bench_generator.py --amp bf16            # also time autocast, checked against fp32

Weights are random (GeneratorConfig(img_resolution=R) defaults: 512-d z/w, channel_base 32768,
channel_max 512); speed does not depend on their values. FLOPs are counted once per configuration
with torch.utils.flop_counter on the meta device (every convolution, transposed convolution, FIR
filter and matrix product of mapping + synthesis; elementwise work is not counted), so achieved
GFLOP/s = counted FLOPs x images / seconds.

A forward that takes longer than --single-run-above seconds (1024 px on 2 CPU cores) is timed
once, cold; faster ones get a warm-up and the median of --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from gancraft.nets import Generator, GeneratorConfig


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def counted_flops(cfg: GeneratorConfig, batch: int) -> int:
    """FLOPs (2 per multiply-add) of one forward of `batch` images, counted without computing."""
    with torch.device("meta"):
        G = Generator(cfg).eval().requires_grad_(False)
        z = torch.empty([batch, cfg.z_dim])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        G(z, None)
    return counter.get_total_flops()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int,
                 single_run_above: float) -> dict[str, Any]:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    if first > single_run_above:
        return {"seconds": first, "runs": [first], "cold_single_run": True}
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        runs.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(runs), "runs": runs, "cold_single_run": False}


def bench_config(resolution: int, batch: int, device: torch.device, args: argparse.Namespace) -> list[dict]:
    cfg = GeneratorConfig(img_resolution=resolution)
    torch.manual_seed(0)
    G = Generator(cfg).eval().requires_grad_(False).to(device)
    z = torch.randn([batch, cfg.z_dim], generator=torch.Generator().manual_seed(1)).to(device)
    flops = counted_flops(cfg, batch)
    variants: list[tuple[str, Callable[[], torch.Tensor]]] = [("eager fp32", lambda: G(z, None))]
    if args.compile:
        synth = torch.compile(G.synthesis)
        variants.append(("torch.compile fp32", lambda: synth(G.mapping(z, None))))
    if args.amp:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]

        def amp_forward() -> torch.Tensor:
            with torch.autocast(device.type, dtype=dtype):
                return G(z, None).float()
        variants.append((f"autocast {args.amp}", amp_forward))
    rows = []
    reference = None
    for name, fn in variants:
        diff = None
        with torch.inference_mode():
            t = time_forward(fn, device, args.repeats, args.single_run_above)
            if len(variants) > 1:
                out = fn().float()
                if reference is None:
                    reference = out
                else:
                    diff = (out - reference).abs().max().item()
        row = {"resolution": resolution, "batch": batch, "variant": name, "seconds_per_batch": t["seconds"],
               "images_per_s": batch / t["seconds"], "gflop_per_forward": flops / 1e9,
               "achieved_gflop_per_s": flops / t["seconds"] / 1e9, "runs_s": t["runs"],
               "cold_single_run": t["cold_single_run"], "max_abs_diff_vs_eager_fp32": diff,
               "fused_modulation": device.type == "cuda" or batch == 1,
               "channels_last": device.type == "cpu"}
        note = " (one cold run)" if t["cold_single_run"] else f" (median of {len(t['runs'])})"
        print(f"  {resolution:5d}px batch {batch:2d} {name:20s} {row['images_per_s']:9.3f} images/s "
              f"{row['achieved_gflop_per_s']:8.1f} GFLOP/s of {flops / batch / 1e9:7.1f} GFLOP/image{note}"
              + (f"  max|diff| vs eager fp32 {diff:.2e}" if diff is not None else ""), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolutions", default="256,1024", help="comma-separated (default 256,1024)")
    ap.add_argument("--batches", default="1,8", help="comma-separated (default 1,8)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--single-run-above", type=float, default=15.0, metavar="SECONDS")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(G.synthesis)")
    ap.add_argument("--amp", choices=["bf16", "fp16"], help="also time autocast at this precision")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    info = machine()
    print(f"generator benchmark on {device} ({info['cuda'] or info['cpu']}), torch {info['torch']}, "
          f"{torch.get_num_threads()} threads")
    rows = []
    for res in (int(r) for r in args.resolutions.split(",")):
        for batch in (int(b) for b in args.batches.split(",")):
            rows.extend(bench_config(res, batch, device, args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "device": str(device), "results": rows}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
