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
import contextlib
import importlib
import inspect
import json
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import torch

from gancraft.nets import Generator, GeneratorConfig
from gancraft.nets.ops import exact_fp32
from gancraft.runtime import keep_freed_memory

MALLOC_MODES = {"system": "glibc defaults", "keep": "gancraft.runtime.keep_freed_memory()"}

TOLERANCE = 1e-4
MIXED_REL_TOLERANCE = 5e-3


# the StyleGAN2 networks module in each NVIDIA repository
NVIDIA_NETWORK_MODULES = {"stylegan3": "training.networks_stylegan2", "stylegan2-ada-pytorch": "training.networks"}


def nvidia_networks_module(src: str | Path) -> str | None:
    """The import path of the StyleGAN2 networks in an NVIDIA checkout, or None when it is neither kind."""
    for module in NVIDIA_NETWORK_MODULES.values():
        if (Path(src).expanduser() / (module.replace(".", "/") + ".py")).is_file():
            return module
    return None


def load_nvidia(src: str | Path) -> dict[str, Any]:
    """Import NVIDIA's generator modules from a checkout folder (added to sys.path)."""
    src = Path(src).expanduser().resolve()
    module = nvidia_networks_module(src)
    if module is None:
        raise SystemExit(f"--nvidia-src {src}: neither training/networks_stylegan2.py (stylegan3) nor "
                         "training/networks.py (stylegan2-ada-pytorch) there (see benchmarks/nvidia_reference/README.md)")
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    return {
        "networks": importlib.import_module(module),
        "upfirdn2d": importlib.import_module("torch_utils.ops.upfirdn2d"),
        "bias_act": importlib.import_module("torch_utils.ops.bias_act"),
    }


def nvidia_forward_with_fp16_off_cuda(networks: Any) -> Callable:
    """NVIDIA's SynthesisBlock.forward with its "float16 only on CUDA" condition removed and nothing
    else changed, so that its float16 blocks can be compared with gancraft's on a CPU.

    stylegan3's code has that condition; stylegan2-ada-pytorch's runs float16 on any device, so
    its forward is returned unchanged."""
    cls = networks.SynthesisBlock
    if networks.__name__ == NVIDIA_NETWORK_MODULES["stylegan2-ada-pytorch"]:
        return cls.forward
    source = textwrap.dedent(inspect.getsource(cls.forward))
    patched, count = re.subn(r"ws\.device\.type\s*!=\s*['\"]cuda['\"]", "False", source)
    if count != 1:
        raise SystemExit("NVIDIA's SynthesisBlock.forward no longer has the CUDA-only float16 check")
    namespace: dict[str, Any] = {}
    exec(compile(patched, inspect.getsourcefile(cls.forward), "exec"), vars(networks), namespace)
    return namespace["forward"]


def plugins_built(nv: dict[str, Any]) -> bool:
    return nv["upfirdn2d"]._plugin is not None or nv["bias_act"]._plugin is not None


def build_nvidia(nv: dict[str, Any], cfg: GeneratorConfig) -> torch.nn.Module:
    """NVIDIA's Generator for a gancraft config (both repositories' constructor styles)."""
    mapping = dict(num_layers=cfg.mapping_layers, embed_features=cfg.embed_features,
                   layer_features=cfg.layer_features, lr_multiplier=cfg.mapping_lr_multiplier,
                   w_avg_beta=cfg.w_avg_beta)
    synthesis = dict(channel_base=cfg.channel_base, channel_max=cfg.channel_max, num_fp16_res=cfg.num_fp16_res,
                     conv_clamp=cfg.conv_clamp, architecture=cfg.architecture,
                     resample_filter=list(cfg.resample_filter), use_noise=cfg.use_noise)
    cls = nv["networks"].Generator
    args = (cfg.z_dim, cfg.c_dim, cfg.w_dim, cfg.img_resolution, cfg.img_channels)
    # the persistence decorator's __init__ takes (*args, **kwargs): read the decorated class's own
    params = inspect.signature(_undecorated(cls).__init__).parameters
    if "synthesis_kwargs" in params and params["synthesis_kwargs"].kind != inspect.Parameter.VAR_KEYWORD:
        return cls(*args, mapping_kwargs=mapping, synthesis_kwargs=synthesis)  # stylegan2-ada-pytorch
    return cls(*args, mapping_kwargs=mapping, **synthesis)  # stylegan3 repository


def _undecorated(cls: type) -> type:
    """The class that torch_utils.persistence.persistent_class wrapped (its only base), or cls itself."""
    return cls.__bases__[0] if hasattr(cls, "_orig_class_name") else cls


def randomize_(G: torch.nn.Module, seed: int) -> None:
    """Give every tensor a random value, so that no zero-initialised part (biases, noise strengths,
    w_avg) goes untested."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(G.named_parameters()) + list(G.named_buffers()):
            if name.endswith("resample_filter"):
                continue
            r = torch.randn(t.shape, generator=gen)
            if name.endswith("noise_strength"):
                r = 0.3 * r
            elif name.endswith("affine.bias"):
                r = 1 + 0.2 * r
            elif name.endswith(".bias") or name.endswith("w_avg"):
                r = 0.5 * r
            t.copy_(r)


def make_pair(nv: dict[str, Any], cfg: GeneratorConfig, seed: int = 0,
              device: str = "cpu") -> tuple[torch.nn.Module, Generator]:
    """NVIDIA's and gancraft's generators holding the same random weights, both in eval mode."""
    ref = build_nvidia(nv, cfg)
    randomize_(ref, seed)
    ours = Generator(cfg)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref.eval().requires_grad_(False).to(device), ours.eval().requires_grad_(False).to(device)


def nvidia_numerics(precision: str) -> contextlib.AbstractContextManager:
    """True float32 for NVIDIA's code in the fp32 comparison: its code leaves TF32 as torch sets it
    (cuDNN: on), which moves images by ~1e-3 on Ampere and newer GPUs."""
    return exact_fp32() if precision == "fp32" else contextlib.nullcontext()


def max_abs_diff(ref: torch.nn.Module, ours: Generator, z: torch.Tensor, c: torch.Tensor | None,
                 psi: float = 1.0, cutoff: int | None = None, noise_mode: str = "const",
                 precision: str = "fp32") -> dict[str, float]:
    """Largest |NVIDIA - gancraft| over w (mapping) and the images, with the image scale for context.

    gancraft runs as users run it (no global flags set here), so its fp32 check covers TF32 too."""
    with torch.no_grad():
        with nvidia_numerics(precision):
            w_ref = ref.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
            img_ref = ref.synthesis(w_ref, noise_mode=noise_mode)
        w_ours = ours.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
        img_ours = ours.synthesis(w_ours, noise_mode=noise_mode, precision=precision)
    return {"w": (w_ref - w_ours).abs().max().item(), "image": (img_ref - img_ours).abs().max().item(),
            "image_absmax": img_ref.abs().max().item()}


CHECKS = [
    ("16px unconditional", dict(img_resolution=16, channel_base=512, channel_max=64, z_dim=32, w_dim=32), {}),
    ("32px c_dim=4 conv_clamp=256 psi=0.7", dict(img_resolution=32, channel_base=1024, channel_max=64, z_dim=32,
                                                 w_dim=32, c_dim=4, conv_clamp=256), dict(psi=0.7)),
    ("32px c_dim=4 conv_clamp=256 psi=0.7 cutoff=4 noise=none",
     dict(img_resolution=32, channel_base=1024, channel_max=64, z_dim=32, w_dim=32, c_dim=4, conv_clamp=256),
     dict(psi=0.7, cutoff=4, noise_mode="none")),
]


def run_checks(nv: dict[str, Any], timed_cfg: GeneratorConfig, batch: int, device: str,
               precision: str = "fp32") -> list[dict]:
    out = []
    cases = CHECKS + [(f"{timed_cfg.img_resolution}px timed config", dict(img_resolution=timed_cfg.img_resolution),
                       {})]
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
            print(f"  {name:58s} batch {n}: max|dw| {d['w']:.2e}  max|dimg| {d['image']:.2e} "
                  f"(|img| up to {d['image_absmax']:.2f}, limit {limit:.1e})  {'ok' if row['ok'] else 'FAIL'}",
                  flush=True)
            out.append(row)
    return out


def time_side_by_side(nv: dict[str, Any], cfg: GeneratorConfig, batch: int, repeats: int,
                      device: str, precision: str = "fp32") -> dict[str, Any]:
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
        cmd = [sys.executable, __file__, "--nvidia-src", str(args.nvidia_src), "--resolution", str(args.resolution),
               "--batch", str(args.batch), "--threads", str(args.threads), "--repeats", str(args.repeats),
               "--device", args.device, "--precision", args.precision, "--timing-only", "--malloc", malloc,
               "--json", str(out)]
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
        print(f"  as shipped (gancraft with its allocator setting, NVIDIA in a default process): "
              f"{summary['speedup_as_shipped']:.2f}x")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nvidia-src", required=True, help="folder with NVIDIA's training/, torch_utils/, dnnlib/")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each, interleaved (median reported)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=["fp32", "mixed"], default="fp32",
                    help="fp32 (exact comparison) or mixed (NVIDIA's float16 blocks, num_fp16_res 4)")
    ap.add_argument("--skip-timing", action="store_true", help="only run the exactness checks")
    ap.add_argument("--timing-only", action="store_true", help="one timing in this process, no checks")
    ap.add_argument("--malloc", choices=sorted(MALLOC_MODES), default="system",
                    help="with --timing-only: the allocator setting for this process")
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
    results: dict[str, Any] = {"device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
                               "config": {"img_resolution": args.resolution, "batch": args.batch,
                                          "precision": args.precision, "num_fp16_res": cfg.num_fp16_res},
                               "tolerance": TOLERANCE if args.precision == "fp32" else MIXED_REL_TOLERANCE}
    if args.timing_only:
        print(f"timing {args.resolution}px batch {args.batch}, {args.precision}, allocator {args.malloc}, "
              f"{args.repeats} interleaved runs each:", flush=True)
        timing = time_side_by_side(nv, cfg, args.batch, args.repeats, args.device, args.precision)
        for name, r in timing.items():
            if isinstance(r, dict):
                runs = ", ".join(f"{t:.2f}" for t in r["all_s"])
                print(f"  {name:34s} {r['images_per_s']:8.3f} images/s  (runs: {runs} s)", flush=True)
        results["timing"] = timing
        checks = []
    else:
        print(f"gancraft vs NVIDIA ({args.nvidia_src}) on {args.device}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")
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
