"""Generator throughput: images/s and achieved GFLOP/s for FFHQ-sized StyleGAN2 configurations.

    python benchmarks/bench_generator.py                       # 256 and 1024 px, batch 1 and 8
    python benchmarks/bench_generator.py --resolutions 256 --batches 8 --repeats 5 --json out/gen.json
    python benchmarks/bench_generator.py --compile             # also time torch.compile'd synthesis
    python benchmarks/bench_generator.py --precision mixed,bf16  # also time G(..., precision=...) vs fp32

--precision times the generator's own reduced-precision modes (SynthesisNetwork.forward): "mixed"
runs the num_fp16_res highest-resolution blocks in float16 as NVIDIA does on GPU, "bf16" the same
blocks in bfloat16 (every block with --num-fp16-res 0). Each is checked against eager fp32 on the
same latents: max |diff|, printed with the largest |pixel| of the fp32 image for scale.

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

from malloc_option import add_malloc_option, apply_malloc_option


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def half_block_resolutions(G: Generator, precision: str) -> list[int]:
    return [
        b.resolution
        for b, dtype in zip(G.synthesis.blocks(), G.synthesis.block_dtypes(precision))
        if dtype != torch.float32
    ]


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


def time_forward(
    fn: Callable[[], torch.Tensor], device: torch.device, repeats: int, single_run_above: float
) -> dict[str, Any]:
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
    cfg = GeneratorConfig(img_resolution=resolution, num_fp16_res=args.num_fp16_res)
    torch.manual_seed(0)
    G = Generator(cfg).eval().requires_grad_(False).to(device)
    z = torch.randn([batch, cfg.z_dim], generator=torch.Generator().manual_seed(1)).to(device)
    flops = counted_flops(cfg, batch)
    variants: list[tuple[str, str, Callable[[], torch.Tensor]]] = [("eager fp32", "fp32", lambda: G(z, None))]
    if args.compile:
        synth = torch.compile(G.synthesis)
        t0 = time.perf_counter()
        with torch.inference_mode():
            synth(G.mapping(z, None))  # compilation is not what is being timed
        print(f"  {resolution:5d}px batch {batch:2d} torch.compile took {time.perf_counter() - t0:.0f} s", flush=True)
        variants.append(("torch.compile fp32", "fp32", lambda: synth(G.mapping(z, None))))
    for precision in args.precision:
        variants.append((f"eager {precision}", precision, lambda p=precision: G(z, None, precision=p)))
    rows = []
    reference = None
    scale = None
    for name, precision, fn in variants:
        diff = None
        with torch.inference_mode():
            t = time_forward(fn, device, args.repeats, args.single_run_above)
            if len(variants) > 1:
                out = fn()
                if reference is None:
                    reference = out
                    scale = out.abs().max().item()
                else:
                    diff = (out - reference).abs().max().item()
        row = {
            "resolution": resolution,
            "batch": batch,
            "variant": name,
            "seconds_per_batch": t["seconds"],
            "images_per_s": batch / t["seconds"],
            "gflop_per_forward": flops / 1e9,
            "achieved_gflop_per_s": flops / t["seconds"] / 1e9,
            "runs_s": t["runs"],
            "cold_single_run": t["cold_single_run"],
            "max_abs_diff_vs_eager_fp32": diff,
            "fp32_image_absmax": scale,
            "precision": precision,
            "num_fp16_res": cfg.num_fp16_res,
            "reduced_precision_blocks": half_block_resolutions(G, precision),
            # reduced-precision blocks fuse only single images (NVIDIA's default)
            "fused_modulation": device.type == "cuda" and (precision == "fp32" or batch == 1),
            "channels_last": device.type == "cpu",
        }
        note = " (one cold run)" if t["cold_single_run"] else f" (median of {len(t['runs'])})"
        print(
            f"  {resolution:5d}px batch {batch:2d} {name:20s} {row['images_per_s']:9.3f} images/s "
            f"{row['achieved_gflop_per_s']:8.1f} GFLOP/s of {flops / batch / 1e9:7.1f} GFLOP/image{note}"
            + (
                f"  max|diff| vs eager fp32 {diff:.2e} (|img| up to {scale:.2f}, reduced precision at "
                f"{','.join(map(str, row['reduced_precision_blocks'])) or 'no'} px)"
                if diff is not None
                else ""
            ),
            flush=True,
        )
        rows.append(row)
    return rows


def _precisions(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in ("mixed", "bf16")]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown precision {bad[0]!r} (expected mixed or bf16)")
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolutions", default="256,1024", help="comma-separated (default 256,1024)")
    ap.add_argument("--batches", default="1,8", help="comma-separated (default 1,8)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--single-run-above", type=float, default=15.0, metavar="SECONDS")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(G.synthesis)")
    ap.add_argument(
        "--precision",
        default="",
        type=_precisions,
        metavar="LIST",
        help="also time these generator precisions, comma-separated from mixed,bf16",
    )
    ap.add_argument(
        "--num-fp16-res",
        type=int,
        default=4,
        metavar="N",
        help="blocks NVIDIA runs in float16 (default 4, as in its FFHQ pickles); fp32 ignores it",
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    add_malloc_option(ap)
    args = ap.parse_args()
    malloc = apply_malloc_option(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    info = {**machine(), "malloc": malloc}
    print(
        f"generator benchmark on {device} ({info['cuda'] or info['cpu']}), torch {info['torch']}, "
        f"{torch.get_num_threads()} threads, allocator {malloc}"
    )
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
