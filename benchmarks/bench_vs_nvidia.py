"""gancraft's StyleGAN2 generator side by side with NVIDIA's stylegan2-ada-pytorch code.

NVIDIA's code is not part of gancraft and is never copied into it: point --nvidia-src at a
stylegan2-ada-pytorch or stylegan3 checkout (its ``training/networks.py`` or
``training/networks_stylegan2.py``, ``torch_utils/`` and ``dnnlib/``; see benchmarks/nvidia_reference/README.md).

    python benchmarks/bench_vs_nvidia.py --nvidia-src ~/src/stylegan2-ada-pytorch --threads 2

The script builds NVIDIA's Generator, gives every parameter and buffer random values, loads the
same state dict into gancraft's Generator (the names are identical) and

1. checks the images agree in fp32 (max abs difference, limit 1e-4) on small configurations,
   unconditional and conditional with conv_clamp=256 and truncation psi 0.7, and at the timed
   configuration itself;
2. times both at the timed configuration (default 256 px, batch 8), interleaving the runs so that
   load from other processes hits both alike, and reports the median images/s and the ratio.
   The timing runs twice, each in a fresh process: once with glibc's default allocator and
   once with the allocator setting the gancraft command line applies (gancraft.runtime), which
   speeds up both implementations. The ratios under one setting compare the implementations;
   "as shipped" compares gancraft's command line with NVIDIA's code run in a default process.

On CPU NVIDIA's custom ops take their portable reference path; the script checks afterwards that
no CUDA plugin was built. On a GPU NVIDIA's CUDA kernels are used when they compile.

--precision mixed compares mixed precision instead: num_fp16_res 4 (2 in the small checks), NVIDIA's
float16 blocks against G(..., precision="mixed"), agreeing to float16 precision (max |diff| within
5e-3 of the image's largest value) rather than 1e-4. NVIDIA's code runs float16 only on CUDA; on
CPU the script lifts that one condition (nvidia_forward_with_fp16_off_cuda) so both sides compute
in float16.

    python benchmarks/bench_vs_nvidia.py --nvidia-src DIR --device cuda --precision mixed
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from gancraft.nets import GeneratorConfig
from gancraft.runtime import keep_freed_memory

# the pairing and comparing helpers live beside the tests that use them too
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from nvidia_pairs import (  # noqa: E402
    MIXED_REL_TOLERANCE,
    TOLERANCE,
    load_nvidia,
    make_pair,
    max_abs_diff,
    nvidia_forward_with_fp16_off_cuda,
    nvidia_numerics,
    plugins_built,
)

MALLOC_MODES = {"system": "glibc defaults", "keep": "gancraft.runtime.keep_freed_memory()"}

CHECKS = [
    ("16px unconditional", dict(img_resolution=16, channel_base=512, channel_max=64, z_dim=32, w_dim=32), {}),
    (
        "32px c_dim=4 conv_clamp=256 psi=0.7",
        dict(img_resolution=32, channel_base=1024, channel_max=64, z_dim=32, w_dim=32, c_dim=4, conv_clamp=256),
        dict(psi=0.7),
    ),
    (
        "32px c_dim=4 conv_clamp=256 psi=0.7 cutoff=4 noise=none",
        dict(img_resolution=32, channel_base=1024, channel_max=64, z_dim=32, w_dim=32, c_dim=4, conv_clamp=256),
        dict(psi=0.7, cutoff=4, noise_mode="none"),
    ),
]


def run_checks(
    nv: dict[str, Any], timed_cfg: GeneratorConfig, batch: int, device: str, precision: str = "fp32"
) -> list[dict]:
    out = []
    cases = CHECKS + [(f"{timed_cfg.img_resolution}px timed config", dict(img_resolution=timed_cfg.img_resolution), {})]
    for name, cfg_kw, call_kw in cases:
        if precision == "mixed":
            cfg_kw = {**cfg_kw, "num_fp16_res": timed_cfg.num_fp16_res if "timed" in name else 2}
        cfg = GeneratorConfig(**cfg_kw)
        ref, ours = make_pair(nv, cfg, seed=1, device=device)
        gen = torch.Generator().manual_seed(2)
        for n in sorted({1, batch}):
            z = torch.randn([n, cfg.z_dim], generator=gen).to(device)
            c = None
            if cfg.c_dim:
                c = torch.nn.functional.one_hot(torch.arange(n) % cfg.c_dim, cfg.c_dim).float().to(device)
            d = max_abs_diff(ref, ours, z, c, precision=precision, **call_kw)
            limit = TOLERANCE if precision == "fp32" else MIXED_REL_TOLERANCE * d["image_absmax"]
            row = {"case": name, "batch": n, **d, "limit": limit, "ok": d["image"] <= limit and d["w"] <= TOLERANCE}
            print(
                f"  {name:58s} batch {n}: max|dw| {d['w']:.2e}  max|dimg| {d['image']:.2e} "
                f"(|img| up to {d['image_absmax']:.2f}, limit {limit:.1e})  {'ok' if row['ok'] else 'FAIL'}",
                flush=True,
            )
            out.append(row)
    return out


def time_side_by_side(
    nv: dict[str, Any], cfg: GeneratorConfig, batch: int, repeats: int, device: str, precision: str = "fp32"
) -> dict[str, Any]:
    ref, ours = make_pair(nv, cfg, seed=3, device=device)
    z = torch.randn([batch, cfg.z_dim], generator=torch.Generator().manual_seed(4)).to(device)

    def nvidia(**kw: Any) -> Callable:
        def run() -> torch.Tensor:
            with nvidia_numerics(precision):  # the same arithmetic as gancraft's
                return ref(z, None, noise_mode="const", **kw)

        return run

    runs = {
        "nvidia (default modconv)": nvidia(),
        "nvidia (fused_modconv=False)": nvidia(fused_modconv=False),
        "gancraft": lambda: ours(z, None, noise_mode="const", precision=precision),
    }
    sync = torch.device(device).type == "cuda"  # also cuda:N
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        for fn in runs.values():
            fn()  # warm-up: oneDNN primitive caches, allocator
        for _ in range(repeats):
            for name, fn in runs.items():
                if sync:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn()
                if sync:
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)
    result = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        result[name] = {"median_s": med, "images_per_s": batch / med, "all_s": ts}
    best_ref = min(result[k]["median_s"] for k in result if k.startswith("nvidia"))
    result["speedup_vs_fastest_nvidia"] = best_ref / result["gancraft"]["median_s"]
    return result


def time_in_subprocess(args: argparse.Namespace, malloc: str) -> dict[str, Any]:
    """One interleaved timing in a fresh process, so the allocator setting applies from its start."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.json"
        cmd = [
            sys.executable,
            __file__,
            "--nvidia-src",
            str(args.nvidia_src),
            "--resolution",
            str(args.resolution),
            "--batch",
            str(args.batch),
            "--threads",
            str(args.threads),
            "--repeats",
            str(args.repeats),
            "--device",
            args.device,
            "--precision",
            args.precision,
            "--timing-only",
            "--malloc",
            malloc,
            "--json",
            str(out),
        ]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())["timing"]


def summarise(timings: dict[str, dict[str, Any]]) -> dict[str, float]:
    def best_nvidia(t: dict[str, Any]) -> float:
        return min(v["median_s"] for k, v in t.items() if k.startswith("nvidia"))

    summary = {f"speedup_{mode}": best_nvidia(t) / t["gancraft"]["median_s"] for mode, t in timings.items()}
    if {"system", "keep"} <= timings.keys():
        summary["speedup_as_shipped"] = best_nvidia(timings["system"]) / timings["keep"]["gancraft"]["median_s"]
    print("summary (median images/s; speed-up over the faster NVIDIA mode):")
    for mode, t in timings.items():
        ips = "  ".join(f"{k} {v['images_per_s']:.3f}" for k, v in t.items() if isinstance(v, dict))
        print(f"  allocator {mode:6s} ({MALLOC_MODES[mode]}): {ips}  -> {summary[f'speedup_{mode}']:.2f}x")
    if "speedup_as_shipped" in summary:
        print(
            f"  as shipped (gancraft with its allocator setting, NVIDIA in a default process): "
            f"{summary['speedup_as_shipped']:.2f}x"
        )
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nvidia-src", required=True, help="folder with NVIDIA's training/, torch_utils/, dnnlib/")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each, interleaved (median reported)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--precision",
        choices=["fp32", "mixed"],
        default="fp32",
        help="fp32 (exact comparison) or mixed (NVIDIA's float16 blocks, num_fp16_res 4)",
    )
    ap.add_argument("--skip-timing", action="store_true", help="only run the exactness checks")
    ap.add_argument("--timing-only", action="store_true", help="one timing in this process, no checks")
    ap.add_argument(
        "--malloc",
        choices=sorted(MALLOC_MODES),
        default="system",
        help="with --timing-only: the allocator setting for this process",
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.malloc == "keep" and not keep_freed_memory():
        raise SystemExit("--malloc keep: the allocator setting is not available here (glibc only)")
    torch.set_num_threads(args.threads)
    on_cpu = torch.device(args.device).type == "cpu"
    nv = load_nvidia(args.nvidia_src)
    if args.precision == "mixed" and on_cpu:
        nv["networks"].SynthesisBlock.forward = nvidia_forward_with_fp16_off_cuda(nv["networks"])
    cfg = GeneratorConfig(img_resolution=args.resolution, num_fp16_res=4 if args.precision == "mixed" else 0)
    results: dict[str, Any] = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "config": {
            "img_resolution": args.resolution,
            "batch": args.batch,
            "precision": args.precision,
            "num_fp16_res": cfg.num_fp16_res,
        },
        "tolerance": TOLERANCE if args.precision == "fp32" else MIXED_REL_TOLERANCE,
    }
    if args.timing_only:
        print(
            f"timing {args.resolution}px batch {args.batch}, {args.precision}, allocator {args.malloc}, "
            f"{args.repeats} interleaved runs each:",
            flush=True,
        )
        timing = time_side_by_side(nv, cfg, args.batch, args.repeats, args.device, args.precision)
        for name, r in timing.items():
            if isinstance(r, dict):
                runs = ", ".join(f"{t:.2f}" for t in r["all_s"])
                print(f"  {name:34s} {r['images_per_s']:8.3f} images/s  (runs: {runs} s)", flush=True)
        results["timing"] = timing
        checks = []
    else:
        print(
            f"gancraft vs NVIDIA ({args.nvidia_src}) on {args.device}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads"
        )
        print(f"agreement ({args.precision}, same weights, same w):")
        checks = run_checks(nv, cfg, args.batch, args.device, args.precision)
        results["checks"] = checks
        if not args.skip_timing:
            modes = ["system", "keep"] if on_cpu else ["system"]
            results["timing"] = {mode: time_in_subprocess(args, mode) for mode in modes}
            results["summary"] = summarise(results["timing"])
    results["nvidia_cuda_plugins_built"] = plugins_built(nv)
    if on_cpu and results["nvidia_cuda_plugins_built"]:
        raise SystemExit("NVIDIA's CUDA plugin was built on a CPU run: the comparison is not the portable path")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    if not all(r["ok"] for r in checks):
        raise SystemExit("images differ by more than the limit")


if __name__ == "__main__":
    main()
