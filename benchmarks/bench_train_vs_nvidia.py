"""gancraft's training step side by side with NVIDIA's StyleGAN2 training loop, same networks and batch.

    python benchmarks/bench_train_vs_nvidia.py --nvidia-src DIR [--configs toy,tiny] [--repeats 3]
        [--cycles 1] [--check-steps 5] [--profile] [--json PATH]

NVIDIA's code is not part of gancraft and is never copied into it (see
benchmarks/nvidia_reference/README.md): this script imports its networks and its
`training/loss.py` StyleGAN2Loss from DIR and drives them the way its `training_loop.py` does:
phases Gmain, Greg (every 4 steps), Dmain, Dreg (every 16), each phase zeroing the gradients,
switching requires_grad on its module, calling `accumulate_gradients` with gain = the phase
interval, replacing non-finite gradients and stepping one Adam per network whose lr and betas are
corrected for the lazy interval; then the EMA generator. On CPU its custom ops take their
portable path. gancraft runs `Trainer.train_step` (what `gancraft train` runs).

1. Same start, same inputs: both get the same initial weights, latents, real images and
   path-length noise (synthesis noise off, no style mixing, so that nothing else is random) and
   the script reports the largest relative difference of G loss, path-length penalty, D loss and
   R1 over `--check-steps` steps, and the largest weight difference after them.
2. Speed: the config as `gancraft train --config NAME` trains it (noise and style mixing on),
   batch 16, `--cycles` blocks of 16 steps (each block holds one R1 and four path-length steps),
   gancraft and NVIDIA interleaved block by block, fastest of `--repeats` blocks each.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib
import inspect
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gancraft import toy
from gancraft.nets.config import DiscriminatorConfig
from gancraft.train.configs import architecture, get_preset
from gancraft.train.data import ImageFolderData, step_seed
from gancraft.train.loop import Trainer, TrainOptions, run_training
from gancraft.train.methods import ScratchMethod

from malloc_option import add_malloc_option, apply_malloc_option

# NVIDIA's generator is built by the helpers the reference tests use
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nvidia_pairs import build_nvidia, load_nvidia  # noqa: E402

CYCLE = 16  # steps per timed block: one R1 step (every 16) and four path-length steps (every 4)


def build_nvidia_d(networks: Any, cfg: DiscriminatorConfig) -> torch.nn.Module:
    return networks.Discriminator(
        cfg.c_dim,
        cfg.img_resolution,
        cfg.img_channels,
        architecture=cfg.architecture,
        channel_base=cfg.channel_base,
        channel_max=cfg.channel_max,
        num_fp16_res=cfg.num_fp16_res,
        conv_clamp=cfg.conv_clamp,
        cmap_dim=cfg.cmap_dim,
        mapping_kwargs=dict(num_layers=cfg.mapping_layers, lr_multiplier=cfg.mapping_lr_multiplier),
        epilogue_kwargs=dict(mbstd_group_size=cfg.mbstd_group_size, mbstd_num_channels=cfg.mbstd_num_channels),
    )


class Recorder:
    """Stands in for torch_utils.training_stats in NVIDIA's loss module: keeps each reported mean."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def report(self, name: str, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            self.values[name] = value.detach().float().mean().item()
        return value


class NvidiaLoop:
    """NVIDIA's training loop (phases, Adam, EMA) around its StyleGAN2Loss, on copies of gancraft's nets."""

    def __init__(self, src: str, nv: dict[str, Any], trainer: Trainer, style_mixing: float):
        sys.path.insert(0, str(Path(src).expanduser().resolve()))
        self.loss_module = importlib.import_module("training.loss")
        self.misc = importlib.import_module("torch_utils.misc")
        self.stats = Recorder()
        self.loss_module.training_stats = self.stats
        self.G = build_nvidia(nv, trainer.G.cfg).train().requires_grad_(False)
        self.G.load_state_dict(trainer.G.state_dict())
        self.D = build_nvidia_d(nv["networks"], trainer.D.cfg).train().requires_grad_(False)
        self.D.load_state_dict(trainer.D.state_dict())
        self.G_ema = copy.deepcopy(self.G).eval()
        self.G_ema.load_state_dict(trainer.G_ema.state_dict())
        o = trainer.opts
        kw = dict(
            r1_gamma=trainer.gamma,
            style_mixing_prob=style_mixing,
            pl_weight=o.pl_weight,
            pl_batch_shrink=o.pl_batch_shrink,
            pl_decay=o.pl_decay,
        )
        cls = self.loss_module.StyleGAN2Loss
        if "G_mapping" in inspect.signature(cls).parameters:  # stylegan2-ada-pytorch
            self.loss = cls("cpu", self.G.mapping, self.G.synthesis, self.D, **kw)
            self.call = lambda gain: dict(sync=True, gain=gain)
        else:  # stylegan3 repository
            self.loss = cls("cpu", self.G, self.D, **kw)
            self.call = lambda gain: dict(gain=gain, cur_nimg=0)
        self.phases = []
        for name, module, interval, lr in (("G", self.G, o.pl_interval, o.lr_g), ("D", self.D, o.r1_interval, o.lr_d)):
            c = interval / (interval + 1)
            opt = torch.optim.Adam(module.parameters(), lr=lr * c, betas=(0.0, 0.99**c), eps=1e-8)
            self.phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
        self.ema_beta = trainer.ema_beta
        self.batch_idx = 0

    def step(self, real: torch.Tensor, z: dict[str, torch.Tensor], pl_noise: torch.Tensor | None = None) -> dict:
        """One iteration; z maps each phase name to its latents. pl_noise stands in for the
        penalty's torch.randn_like (the check gives both sides the same noise)."""
        self.stats.values.clear()
        for name, module, opt, interval in self.phases:
            if self.batch_idx % interval:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            c = torch.zeros([real.shape[0], 0])
            with _randn_like_returning(pl_noise) if name == "Greg" else contextlib.nullcontext():
                self.loss.accumulate_gradients(name, real, c, z[name], c, **self.call(interval))
            module.requires_grad_(False)
            for p in module.parameters():
                if p.grad is not None:
                    self.misc.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            opt.step()
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, self.ema_beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        self.batch_idx += 1
        v = self.stats.values
        return {
            "loss_G": v.get("Loss/G/loss"),
            "pl_penalty": v.get("Loss/pl_penalty"),
            "loss_D": v.get("Loss/D/loss"),
            "r1": v.get("Loss/r1_penalty"),
        }


@contextlib.contextmanager
def _randn_like_returning(noise: torch.Tensor | None):
    if noise is None:
        yield
        return
    real = torch.randn_like
    torch.randn_like = lambda t, **kw: noise.clone() if t.shape == noise.shape else real(t, **kw)
    try:
        yield
    finally:
        torch.randn_like = real


def gancraft_inputs(trainer: Trainer, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
    """The real batch, latents and path-length noise that Trainer.train_step draws at `step`
    (unconditional, one process), in its order."""
    o, n = trainer.opts, trainer.local_batch
    gen = torch.Generator().manual_seed(step_seed(o.seed, step, 0, 5))
    z = {"Gmain": torch.randn([n, trainer.G.z_dim], generator=gen)}
    noise = None
    if trainer.use_pl and step % o.pl_interval == 0:
        m = max(1, n // o.pl_batch_shrink)
        z["Greg"] = torch.randn([m, trainer.G.z_dim], generator=gen)
        res = trainer.resolution
        noise = torch.randn([m, trainer.G.img_channels, res, res], generator=gen)
        z["Greg"] = torch.cat([z["Greg"], z["Greg"]])  # NVIDIA takes the first batch // shrink
    z["Dmain"] = z["Dreg"] = torch.randn([n, trainer.G.z_dim], generator=gen)  # Dreg reads only reals
    real, _ = trainer.method.data.batch(n, o.seed, step, 0, 1, trainer.device)
    return real, z, noise


def make_trainer(config: str, resolution: int, data: Path, run_dir: Path, check: bool) -> Trainer:
    preset = get_preset(config)
    g, d = architecture(config, resolution)
    if check:
        g = dataclasses.replace(g, use_noise=False)
    opts = TrainOptions(
        kimg=1000,
        batch=preset.batch,
        snap_kimg=1000,
        seed=0,
        lr_g=preset.lr,
        lr_d=preset.lr,
        gamma=preset.gamma,
        ema_kimg=preset.ema_kimg,
        style_mixing=0.0 if check else 0.9,
    )
    return run_training(
        ScratchMethod(ImageFolderData(data, resolution), g, d), opts, run_dir, progress=False, max_steps=0
    )


def check(src: str, nv: dict, config: str, resolution: int, steps: int, data: Path, tmp: Path) -> dict:
    trainer = make_trainer(config, resolution, data, tmp / f"{config}-check", check=True)
    ref = NvidiaLoop(src, nv, trainer, style_mixing=0.0)
    worst: dict[str, float] = {}
    per_step = []  # largest relative difference of any loss at each step
    for s in range(steps):
        real, z, noise = gancraft_inputs(trainer, s)
        theirs = ref.step(real, z, noise)
        ours = trainer.train_step()
        rels = {k: abs(ours[k] - v) / max(abs(v), 1e-12) for k, v in theirs.items() if v is not None}
        for k, rel in rels.items():
            worst[k] = max(worst.get(k, 0.0), rel)
        per_step.append(max(rels.values()))
    weights = {}
    for name, a, b in (("G", trainer.G, ref.G), ("D", trainer.D, ref.D), ("G_ema", trainer.G_ema, ref.G_ema)):
        sa, sb = a.state_dict(), b.state_dict()
        weights[name] = max((sa[k] - sb[k]).abs().max().item() for k in sa if not k.endswith("w_avg"))
    return {"steps": steps, "max_rel_diff": worst, "per_step": per_step, "max_weight_diff": weights}


def time_block(fn, steps: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for `steps` calls."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        fn()
    return time.perf_counter() - t0, time.process_time() - c0


def speed(
    src: str, nv: dict, config: str, resolution: int, repeats: int, cycles: int, data: Path, tmp: Path, profile: bool
) -> dict:
    trainer = make_trainer(config, resolution, data, tmp / f"{config}-speed", check=False)
    ref = NvidiaLoop(src, nv, trainer, style_mixing=0.9)
    n, zdim = trainer.local_batch, trainer.G.z_dim

    def ours():
        trainer.train_step()

    def theirs():
        # what NVIDIA's loop does per iteration: fetch reals, draw latents for every phase
        real, _ = trainer.method.data.batch(n, 0, ref.batch_idx, 0, 1, trainer.device)
        ref.step(real, {p: torch.randn([n, zdim]) for p in ("Gmain", "Greg", "Dmain", "Dreg")})

    for fn in (ours, theirs):  # warm-up: one path-length and one R1 step each, off the clock
        fn()
    steps = CYCLE * cycles
    best = {"gancraft": float("inf"), "nvidia": float("inf")}
    cpu = dict(best)
    for _ in range(repeats):
        # start both at the same phase of the 16-step cycle
        for name, fn, at in (("gancraft", ours, lambda: trainer.step), ("nvidia", theirs, lambda: ref.batch_idx)):
            while at() % CYCLE:
                fn()
            wall, used = time_block(fn, steps)
            best[name] = min(best[name], wall / steps)
            cpu[name] = min(cpu[name], used / steps)
    # CPU seconds stay meaningful on a loaded machine (at one thread they are the work done)
    result = {
        "sec_per_step": best,
        "img_per_s": {k: n / v for k, v in best.items()},
        "ratio": best["nvidia"] / best["gancraft"],
        "cpu_sec_per_step": cpu,
        "cpu_ratio": cpu["nvidia"] / cpu["gancraft"],
        "steps_per_block": steps,
    }
    if profile:
        for name, fn in (("gancraft", ours), ("nvidia", theirs)):
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                time_block(fn, CYCLE)
            print(f"\n-- {config} {name}: {CYCLE} steps, top ops by self CPU time")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nvidia-src", required=True, help="folder with NVIDIA's training/, torch_utils/, dnnlib/")
    ap.add_argument("--configs", default="toy,tiny")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cycles", type=int, default=1, help="16-step blocks per timing")
    ap.add_argument("--check-steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--profile", action="store_true", help="print torch.profiler tables of 16 steps each")
    ap.add_argument("--json", type=Path)
    add_malloc_option(ap)
    args = ap.parse_args()
    malloc = apply_malloc_option(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    nv = load_nvidia(args.nvidia_src)
    print(
        f"command: python benchmarks/bench_train_vs_nvidia.py --nvidia-src DIR --configs {args.configs} "
        f"--resolution {args.resolution} --repeats {args.repeats} --cycles {args.cycles} "
        f"--check-steps {args.check_steps} --malloc {args.malloc}"
    )
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, allocator {malloc}, OMP_WAIT_POLICY "
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = toy.write_dataset("face", 256, 0, args.resolution, tmp / "data")
        for config in args.configs.split(","):
            c = check(args.nvidia_src, nv, config, args.resolution, args.check_steps, data, tmp)
            print(
                f"{config}: same start and inputs, {c['steps']} steps: largest relative difference "
                + ", ".join(f"{k} {v:.1e}" for k, v in c["max_rel_diff"].items())
                + " (by step: "
                + ", ".join(f"{v:.0e}" for v in c["per_step"])
                + ")"
                + "; weights after them "
                + ", ".join(f"{k} {v:.1e}" for k, v in c["max_weight_diff"].items()),
                flush=True,
            )
            s = speed(args.nvidia_src, nv, config, args.resolution, args.repeats, args.cycles, data, tmp, args.profile)
            print(
                f"{config} {args.resolution}px batch {get_preset(config).batch}: gancraft "
                f"{s['sec_per_step']['gancraft']:.3f} s/step ({s['img_per_s']['gancraft']:.1f} img/s), NVIDIA "
                f"{s['sec_per_step']['nvidia']:.3f} s/step ({s['img_per_s']['nvidia']:.1f} img/s): "
                f"{s['ratio']:.2f}x; CPU time {s['cpu_sec_per_step']['gancraft']:.3f} vs "
                f"{s['cpu_sec_per_step']['nvidia']:.3f} s/step: {s['cpu_ratio']:.2f}x",
                flush=True,
            )
            results.append({"config": config, "check": c, **s})
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"train_vs_nvidia": results, "malloc": malloc}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
