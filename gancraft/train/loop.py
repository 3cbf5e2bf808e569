"""The one StyleGAN2 training loop behind `train`, `root`, `finetune` and `expand`.

What differs between those commands lives in a `Method` (gancraft.train.methods): the starting
networks, which parameters train, where the real images come from, extra penalties, and what
the output checkpoint records. A method whose update is not the adversarial G/D step (domain
expansion) also brings a `Trainer` subclass with its own `train_step`, passed to `run_training`
as `trainer_cls`; the driver (run folder, snapshots, resume, log, divergence checks) is shared.
The default step is NVIDIA's StyleGAN2 recipe:

- non-saturating logistic loss for G and D;
- lazy R1 on real images every `r1_interval` steps, as its own D update, the penalty
  multiplied by the interval; D's Adam lr and betas corrected by c = interval / (interval + 1);
- Adam betas (0, 0.99), eps 1e-8; style mixing; EMA generator with a half-life in kimg;
- lazy path-length regularisation every `pl_interval` steps, as its own G update on a batch
  shrunk by `pl_batch_shrink`: the penalty (|J_w^T y| - a)^2 with y image-sized noise scaled by
  1/sqrt(H*W), a the running mean of the lengths (decay `pl_decay`), weight `pl_weight`,
  multiplied by the interval; G's Adam lr and betas corrected like D's;
- G's running w_avg updated during G steps;
- optionally NVIDIA's adaptive discriminator augmentation (`aug`, gancraft.train.ada): every
  image D sees in every phase goes through the pipeline at probability p (R1's gradient still
  taken with respect to the un-augmented reals); with "ada", every 4 steps p rises by
  batch * 4 / 500k when the mean sign of D's logits on reals since the last move (share
  positive minus share negative) is above `ada_target`, and falls by as much (not below 0)
  when it is below.

Every random draw of step s on rank r comes from generators seeded with (seed, s, r), so a run
resumed from the snapshot at step s continues bit for bit (on CPU) as if never stopped.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import distributed as dist_util
from ..checkpoint import Checkpoint, load, save
from ..errors import GancraftError
from ..io_util import atomic_write
from ..nets.ops import exact_fp32, minibatch_std_group
from ..nets.stylegan2 import DEFAULT_MODULATION
from . import ada
from .augment import diff_augment, parse_policy
from .configs import r1_gamma_heuristic
from .data import step_seed

SNAPSHOT_RE = re.compile(r"^snapshot-(\d{6,})\.st$")


class TrainingDiverged(GancraftError):
    """A loss or weight became NaN/Inf: the run stops and keeps its last good snapshot."""


@dataclass
class TrainOptions:
    kimg: float = 25.0
    batch: int = 32  # global batch, split over ranks
    snap_kimg: float = 5.0
    seed: int = 0
    lr_g: float = 0.002
    lr_d: float = 0.002
    gamma: float | None = None  # None: 0.0002 * res^2 / batch
    r1_interval: int = 16
    pl_weight: float = 2.0  # NVIDIA's stylegan2 default; 0 turns path-length regularisation off
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    ema_kimg: float | None = None  # None: batch * 10 / 32 (NVIDIA's default)
    style_mixing: float = 0.9
    diffaug: str = ""  # e.g. "color,translation,cutout"
    aug: str = "noaug"  # NVIDIA's --aug: noaug, ada (its default) or fixed
    aug_p: float = 0.0  # the augmentation probability for "fixed"; where "ada" starts
    ada_target: float = 0.6  # "ada": the mean sign of D's logits on reals that p steers towards
    augpipe: str = "bgc"  # the operations (gancraft.train.ada.PIPELINES)
    amp: bool = True  # bfloat16 autocast for forward passes, CUDA only (the mapping stays float32)
    grid_cols: int = 8

    def total_steps(self) -> int:
        return max(1, math.ceil(self.kimg * 1000 / self.batch))

    def snap_steps(self) -> int:
        return max(1, round(self.snap_kimg * 1000 / self.batch))

    def validate(self, world: int) -> "TrainOptions":
        if self.batch < 1 or self.batch % world:
            raise GancraftError(
                f"--batch {self.batch} must be a positive multiple of the number of processes ({world})"
            )
        if self.kimg <= 0:
            raise GancraftError(f"--kimg must be positive, got {self.kimg}")
        if self.snap_kimg <= 0:
            raise GancraftError(f"--snap must be positive, got {self.snap_kimg}")
        for name, flag in (("lr_g", "--lr"), ("lr_d", "--lr-d")):
            if not getattr(self, name) > 0:
                raise GancraftError(f"{flag} must be positive, got {getattr(self, name)}")
        if self.gamma is not None and not self.gamma >= 0:
            raise GancraftError(f"--gamma must be >= 0, got {self.gamma}")
        if not 0 <= self.style_mixing <= 1:
            raise GancraftError(f"--style-mixing must be a probability in [0, 1], got {self.style_mixing}")
        if not (self.pl_weight >= 0 and math.isfinite(self.pl_weight)):
            raise GancraftError(f"--pl-weight must be a finite number >= 0, got {self.pl_weight}")
        if self.pl_interval < 1 or self.pl_batch_shrink < 1 or not 0 < self.pl_decay <= 1:
            raise GancraftError(
                "path-length regularisation: interval and batch shrink must be >= 1, "
                f"decay in (0, 1] (got {self.pl_interval}, {self.pl_batch_shrink}, {self.pl_decay})"
            )
        parse_policy(self.diffaug)
        if self.aug not in ada.AUG_MODES:
            raise GancraftError(f"--aug: unknown mode {self.aug!r} (choose from {', '.join(ada.AUG_MODES)})")
        ada.check_pipeline(self.augpipe)
        if not 0 <= self.aug_p <= 1:
            raise GancraftError(f"--p must be a probability in [0, 1], got {self.aug_p}")
        if not 0 < self.ada_target < 1:
            raise GancraftError(f"--target must be in (0, 1), got {self.ada_target}")
        if self.diffaug and self.aug != "noaug":
            raise GancraftError(
                f"--diffaug and --aug {self.aug} both augment D's inputs; use one of them "
                "(--aug noaug keeps DiffAugment)"
            )
        return self


class Method:
    """Base class: train every parameter of G and D on `self.data`, unconditional, no penalty.

    Subclasses set `self.data`, build the networks in `networks()`, and override what differs.
    """

    name = "scratch"
    data: Any = None
    update_w_avg = True  # False keeps G's running w_avg fixed (when G itself is frozen)
    path_length_reg = True  # False: this method's G step never takes NVIDIA's path-length term
    modulation = DEFAULT_MODULATION  # how g_conditioning's style scales meet G's conv layers

    def networks(self) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module | None]:
        """(G, D, G_ema or None to start G_ema as a copy of G), on the CPU."""
        raise NotImplementedError

    def setup(self, G: torch.nn.Module, D: torch.nn.Module, device: torch.device) -> None:
        """Called once the networks are on `device` (e.g. to compute EWC's Fisher information)."""

    def g_params(self, G: torch.nn.Module) -> list[torch.nn.Parameter]:
        return list(G.parameters())

    def d_params(self, D: torch.nn.Module) -> list[torch.nn.Parameter]:
        return list(D.parameters())

    def extra_modules(self) -> dict[str, torch.nn.Module]:
        """Trainable modules outside G and D (saved as `<name>.*` tensors, optimised with G)."""
        return {}

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def g_conditioning(
        self, labels: torch.Tensor | None, G: torch.nn.Module
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(c for G's mapping, style_scale for G's synthesis) for these class labels."""
        if labels is None or G.c_dim == 0:
            return None, None
        return F.one_hot(labels, G.c_dim).float(), None

    def d_conditioning(self, labels: torch.Tensor | None, D: torch.nn.Module) -> torch.Tensor | None:
        if labels is None or D.c_dim == 0:
            return None
        return F.one_hot(labels, D.c_dim).float()

    def sample_labels(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Class labels of the generated images of a step (balanced over the classes)."""
        from .data import balanced_labels

        return balanced_labels(n, self.num_classes, gen)

    def g_penalty(self, G: torch.nn.Module) -> torch.Tensor | None:
        return None

    def d_penalty(self, D: torch.nn.Module) -> torch.Tensor | None:
        """Added to D's logistic loss (e.g. EWC on D)."""
        return None

    def domains(self) -> dict[str, dict]:
        return {}

    def describe(self) -> dict[str, Any]:
        """JSON-able settings that must match when a run is resumed (and go into the history)."""
        return {"method": self.name}

    def history(self) -> list[dict[str, Any]]:
        """The history the trained model continues (a starting checkpoint's own); empty by default."""
        return []


def _set_trainable(module: torch.nn.Module, params: list[torch.nn.Parameter], on: bool) -> None:
    module.requires_grad_(False)
    if on:
        for p in params:
            p.requires_grad_(True)


def _zero_grad(params: list[torch.nn.Parameter]) -> None:
    for p in params:
        p.grad = None


class Trainer:
    """One run: networks, optimisers, the step function, snapshots. Use `run_training` normally."""

    def __init__(
        self, method: Method, opts: TrainOptions, run_dir: Path, device: torch.device, info: dist_util.DistInfo
    ):
        self.method, self.opts, self.run_dir, self.device, self.info = method, opts, run_dir, device, info
        # options changed when the run resumed ({"step", "option", "from", "to"}), as run.json records them
        self.changes: list[dict[str, Any]] = []
        torch.manual_seed(opts.seed)
        G, D, G_ema = method.networks()
        self.G = G.to(device).train()
        self.D = D.to(device).train()
        self.G_ema = (G_ema if G_ema is not None else copy.deepcopy(G)).to(device).eval().requires_grad_(False)
        self.extras = {k: m.to(device) for k, m in method.extra_modules().items()}
        self.g_params = method.g_params(self.G) + [p for m in self.extras.values() for p in m.parameters()]
        self.d_params = method.d_params(self.D)
        self.policy = parse_policy(opts.diffaug)
        self.augment = ada.AugmentPipe(opts.augpipe) if opts.aug != "noaug" else None
        self.aug_p = opts.aug_p
        # (sum of the signs, count) of D's logits on real images since p last moved
        self.ada_signs = torch.zeros(2, device=device)
        self.local_batch = opts.batch // info.world
        self.resolution = self.G.img_resolution
        self.gamma = opts.gamma if opts.gamma is not None else r1_gamma_heuristic(self.resolution, opts.batch)
        ema_kimg = opts.ema_kimg if opts.ema_kimg is not None else opts.batch * 10 / 32
        self.ema_beta = 0.5 ** (opts.batch / (ema_kimg * 1000)) if ema_kimg > 0 else 0.0
        c = opts.r1_interval / (opts.r1_interval + 1)
        self.use_pl = self.pl_enabled()
        cg = opts.pl_interval / (opts.pl_interval + 1) if self.use_pl else 1.0
        # one fused kernel per optimiser step instead of a dozen ops per parameter: at 32 px the
        # per-parameter loop took 5.6% of a CPU step (bench_train_vs_nvidia.py --profile, toy)
        fused = device.type in ("cpu", "cuda")
        self.opt_g = (
            torch.optim.Adam(self.g_params, lr=opts.lr_g * cg, betas=(0.0, 0.99**cg), eps=1e-8, fused=fused)
            if self.g_params
            else None
        )
        self.pl_mean = torch.zeros([], device=device)
        self.opt_d = torch.optim.Adam(self.d_params, lr=opts.lr_d * c, betas=(0.0, 0.99**c), eps=1e-8, fused=fused)
        self.amp = opts.amp and device.type == "cuda"
        self.step = 0

    def pl_enabled(self) -> bool:
        """Path-length regularisation runs only where G's synthesis trains (a frozen or
        modulation-only G keeps NVIDIA's plain G step)."""
        synthesis = {id(p) for p in self.G.synthesis.parameters()}
        return (
            self.opts.pl_weight > 0 and self.method.path_length_reg and any(id(p) in synthesis for p in self.g_params)
        )

    # -- state --------------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        ckpt = Checkpoint.from_modules(
            G_ema=self.G_ema,
            G=self.G,
            D=self.D,
            domains=self.method.domains(),
            history=list(self.method.history()),
            extra={
                "training": {"step": self.step, "kimg": self.step * self.opts.batch / 1000, "method": self.method.name}
            },
        )
        for name, module in self.extras.items():
            for k, v in module.state_dict().items():
                ckpt.tensors[f"{name}.{k}"] = v.detach().cpu().contiguous().clone()
        return ckpt

    def load_snapshot(self, snapshot: Path, state_path: Path) -> None:
        ckpt = load(snapshot)
        for name, module in (("G", self.G), ("G_ema", self.G_ema), ("D", self.D), *self.extras.items()):
            sd = ckpt.state_dict(name)
            own = module.state_dict()
            if set(sd) != set(own) or any(sd[k].shape != own[k].shape for k in own):
                raise GancraftError(f"{snapshot}: {name} does not match the networks of this run")
            module.load_state_dict(sd)
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a torn or foreign file: say which one
            raise GancraftError(f"{state_path}: cannot read training state ({exc})") from None
        # the saved state carries the learning rate it ran with; the run's options (which --lr may
        # have changed on resume) decide the one that goes on
        for opt, key in ((self.opt_g, "opt_g"), (self.opt_d, "opt_d")):
            if opt is not None:
                lrs = [g["lr"] for g in opt.param_groups]
                opt.load_state_dict(state[key])
                for g, lr in zip(opt.param_groups, lrs):
                    g["lr"] = lr
        self.pl_mean.fill_(float(state.get("pl_mean", 0.0)))
        self.aug_p = float(state.get("augment_p", self.opts.aug_p))
        self.ada_signs.copy_(state.get("ada_signs", torch.zeros(2)))
        self.step = int(state["step"])

    def save_snapshot(self) -> Path | None:
        """snapshot-N.st first, then state-N.pt: a snapshot counts only once both exist.

        Every rank calls this and only rank 0 writes (returning the path; the others None). Rank 0
        checks the weights and every rank raises TrainingDiverged when they are not finite, so no
        rank is left waiting for the others at the next barrier.
        """
        ckpt = self.checkpoint() if self.info.is_main else None
        bad = ckpt.non_finite() if ckpt is not None else []
        if dist_util.any_flag(bool(bad), self.info, self.device):
            where = bad[0] if bad else "on rank 0"
            raise TrainingDiverged(
                f"weights became non-finite at step {self.step} ({where}); {_last_good_hint(self.run_dir, self.opts)}"
            )
        if ckpt is None:
            return None
        snap = self.run_dir / f"snapshot-{self.step:06d}.st"
        save(ckpt, snap, force=True)
        state = {
            "step": self.step,
            "opt_g": self.opt_g.state_dict() if self.opt_g else {},
            "opt_d": self.opt_d.state_dict(),
            "pl_mean": float(self.pl_mean),
            "augment_p": self.aug_p,
            "ada_signs": self.ada_signs.cpu(),
        }
        with atomic_write(self.run_dir / f"state-{self.step:06d}.pt", force=True) as tmp:
            torch.save(state, tmp)
        self.save_grid()
        return snap

    @torch.no_grad()
    def save_grid(self) -> None:
        from ..media.images import make_grid, save_png, to_uint8

        cols = self.opts.grid_cols
        rows = max(self.method.num_classes, 1) if self.method.num_classes else 4
        gen = torch.Generator().manual_seed(self.opts.seed)
        z = torch.randn([cols, self.G.z_dim], generator=gen).repeat(rows, 1).to(self.device)
        labels = torch.arange(rows).repeat_interleave(cols).to(self.device) if self.method.num_classes else None
        if labels is None:
            z = torch.randn([rows * cols, self.G.z_dim], generator=gen).to(self.device)
        c, scale = self.method.g_conditioning(labels, self.G_ema)
        img = self.G_ema(z, c, noise_mode="const", style_scale=scale, modulation=self.method.modulation)
        grid = make_grid(to_uint8(img), rows, cols)
        save_png(grid, self.run_dir / f"grid-{self.step:06d}.png", force=True)

    # -- one step -----------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _labels(self, gen: torch.Generator) -> torch.Tensor | None:
        if not self.method.num_classes:
            return None
        return self.method.sample_labels(self.local_batch, gen).to(self.device)

    def _generate(self, z: torch.Tensor, labels: torch.Tensor | None, update_w_avg: bool, return_ws: bool = False):
        c, scale = self.method.g_conditioning(labels, self.G)
        ws = self.G.mapping(z, c, update_w_avg=update_w_avg)
        if self.opts.style_mixing > 0 and torch.rand([]).item() < self.opts.style_mixing:
            cutoff = int(torch.randint(1, ws.shape[1], []).item())
            ws2 = self.G.mapping(torch.randn_like(z), c, update_w_avg=False)
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        img = self.G.synthesis(ws, noise_mode="random", style_scale=scale, modulation=self.method.modulation)
        return (img, ws) if return_ws else img

    def path_length_step(self, gen: torch.Generator, stats: dict[str, float]) -> None:
        """NVIDIA's lazy path-length regulariser as its own G update (phase 'Greg')."""
        o = self.opts
        n = max(1, self.local_batch // o.pl_batch_shrink)
        z = torch.randn([n, self.G.z_dim], generator=gen).to(self.device)
        labels = self._labels(gen)
        labels = labels[:n] if labels is not None else None
        img, ws = self._generate(z, labels, update_w_avg=self.method.update_w_avg, return_ws=True)
        noise = torch.randn(img.shape, generator=gen).to(self.device)
        loss = self.path_length_loss(img, ws, noise)
        stats["pl_penalty"] = loss.item() / o.pl_weight
        _zero_grad(self.g_params)
        loss.mul(o.pl_interval).backward()
        dist_util.average_gradients(self.g_params, self.info)
        self.opt_g.step()

    def path_length_loss(self, img: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """pl_weight * mean over the batch of (|J_w^T y| - a)^2, y = noise / sqrt(H*W); updates a."""
        o = self.opts
        y = noise / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
        lengths = grad.square().sum(2).mean(1).sqrt()
        # not detached: as in NVIDIA's loss, the running mean's own gradient is part of the update
        pl_mean = self.pl_mean.lerp(lengths.mean(), o.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        return (lengths - pl_mean).square().mean() * o.pl_weight

    def _d(self, img: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.policy:
            img = diff_augment(img, self.policy)
        if self.augment is not None:
            img = self.augment(img, self.aug_p)
        return self.D(img, self.method.d_conditioning(labels, self.D)).float()

    def _observe_reals(self, logits: torch.Tensor) -> None:
        """Count the signs of D's logits on (augmented) reals for ADA, in every phase that scores
        them, as NVIDIA's loss reports Loss/signs/real in its Dmain and Dreg phases alike."""
        if self.opts.aug == "ada":
            signs = logits.detach().float().sign()
            self.ada_signs += torch.stack([signs.sum(), torch.tensor(float(signs.numel()), device=signs.device)])

    def _adapt_augment(self) -> None:
        """ADA's adjustment of p, every ada.ADA_INTERVAL steps, from the signs of all ranks."""
        if self.opts.aug != "ada" or self.step % ada.ADA_INTERVAL:
            return
        total, count = dist_util.average_tensor(self.ada_signs, self.info).tolist()
        if count > 0:
            self.aug_p = ada.adjust_p(self.aug_p, total / count, self.opts.ada_target, self.opts.batch)
        self.ada_signs.zero_()

    def _d_pair(
        self, fake: torch.Tensor, labels: torch.Tensor | None, real: torch.Tensor, real_labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """D's logits for the fakes and for the reals, as two passes would give them, in one pass
        over both batches where the minibatch-std groups allow it (D fwd+bwd at 32 px, batch 16:
        250 vs 279 ms for toy, 275 vs 320 ms for tiny).

        The minibatch-std layer groups samples i, i + n/g, i + 2n/g, ...; blocks of n/g fakes and
        n/g reals are interleaved so that every group of the joint batch is one group of the fakes
        or of the reals alone, exactly the groups that two passes form."""
        n = fake.shape[0]
        g = _mbstd_groups(self.D, n)
        if (
            real.shape[0] != n
            or (labels is None) != (real_labels is None)
            or g != _mbstd_groups(self.D, 2 * n)
            or g is None
        ):
            return self._d(fake, labels), self._d(real, real_labels)

        def interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.stack([a.reshape(g, n // g, *a.shape[1:]), b.reshape(g, n // g, *b.shape[1:])], dim=1).reshape(
                2 * n, *a.shape[1:]
            )

        both = interleave(fake, real)
        if both.dim() == 4 and fake.is_contiguous(memory_format=torch.channels_last):
            both = both.contiguous(memory_format=torch.channels_last)
        both_labels = None if labels is None else interleave(labels, real_labels)
        logits = self._d(both, both_labels).reshape(g, 2, n // g, -1)
        return logits[:, 0].reshape(n, -1), logits[:, 1].reshape(n, -1)

    def train_step(self) -> dict[str, float]:
        o, info, s = self.opts, self.info, self.step
        torch.manual_seed(step_seed(o.seed, s, info.rank, 1))
        gen = torch.Generator().manual_seed(step_seed(o.seed, s, info.rank, 5))
        stats: dict[str, float] = {}

        # G: non-saturating loss (+ method penalty)
        if self.opt_g is not None:
            _set_trainable(self.D, [], False)
            _set_trainable(self.G, self.g_params, True)
            z = torch.randn([self.local_batch, self.G.z_dim], generator=gen).to(self.device)
            labels = self._labels(gen)
            with self._autocast():
                logits = self._d(self._generate(z, labels, update_w_avg=self.method.update_w_avg), labels)
            loss_g = F.softplus(-logits).mean()
            stats["loss_G"] = loss_g.item()
            penalty = self.method.g_penalty(self.G)
            if penalty is not None:
                stats["penalty_G"] = penalty.item()
                loss_g = loss_g + penalty
            _zero_grad(self.g_params)
            loss_g.backward()
            dist_util.average_gradients(self.g_params, info)
            self.opt_g.step()
            if self.use_pl and s % o.pl_interval == 0:
                self.path_length_step(gen, stats)
            if self.method.update_w_avg and self.G.mapping.w_avg_beta is not None and info.enabled:
                dist_util.average_tensor(self.G.mapping.w_avg.data, info)

        # D: logistic loss on generated and real images
        z = torch.randn([self.local_batch, self.G.z_dim], generator=gen).to(self.device)
        labels = self._labels(gen)
        real, real_labels = self.method.data.batch(self.local_batch, o.seed, s, info.rank, info.world, self.device)
        with torch.no_grad(), self._autocast():
            fake = self._generate(z, labels, update_w_avg=False)
        self.discriminator_step(fake, labels, real, real_labels, stats)

        self._update_ema()
        self.step += 1
        self._adapt_augment()
        for k, v in list(stats.items()):
            stats[k] = dist_util.average_tensor(torch.tensor([v], device=self.device), info).item()
        if self.augment is not None:
            stats["augment"] = self.aug_p  # NVIDIA's Progress/augment: the p the next step uses
        return stats

    def discriminator_step(
        self,
        fake: torch.Tensor,
        labels: torch.Tensor | None,
        real: torch.Tensor,
        real_labels: torch.Tensor | None,
        stats: dict[str, float],
    ) -> None:
        """D's logistic loss on these fakes and reals (+ the method's D penalty), then lazy R1 as
        its own D update every `r1_interval` steps, the penalty scaled by the interval."""
        o, info = self.opts, self.info
        _set_trainable(self.G, [], False)
        _set_trainable(self.D, self.d_params, True)
        with self._autocast():
            logits_fake, logits_real = self._d_pair(fake.detach(), labels, real, real_labels)
            loss_fake = F.softplus(logits_fake).mean()
            loss_real = F.softplus(-logits_real).mean()
        loss_d = loss_fake + loss_real
        self._observe_reals(logits_real)
        stats["loss_D"] = loss_d.item()
        stats["D_real"] = loss_real.item()
        stats["D_fake"] = loss_fake.item()
        penalty = self.method.d_penalty(self.D)
        if penalty is not None:
            stats["penalty_D"] = penalty.item()
            loss_d = loss_d + penalty
        _zero_grad(self.d_params)
        loss_d.backward()
        dist_util.average_gradients(self.d_params, info)
        self.opt_d.step()

        if o.r1_interval > 0 and self.gamma > 0 and self.step % o.r1_interval == 0:
            real_r1 = real.detach().requires_grad_(True)
            out = self._d(real_r1, real_labels)
            self._observe_reals(out)
            (grad,) = torch.autograd.grad(out.sum(), real_r1, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            stats["r1"] = r1.item()
            _zero_grad(self.d_params)
            (r1 * (self.gamma / 2) * o.r1_interval).backward()
            dist_util.average_gradients(self.d_params, info)
            self.opt_d.step()

    @torch.no_grad()
    def _update_ema(self) -> None:
        ema = list(self.G_ema.parameters())
        torch._foreach_copy_(ema, torch._foreach_lerp([p.detach() for p in self.G.parameters()], ema, self.ema_beta))
        torch._foreach_copy_(list(self.G_ema.buffers()), list(self.G.buffers()))


def _mbstd_groups(D: torch.nn.Module, n: int) -> int | None:
    """The minibatch-std group size D's epilogue uses for a batch of n: 1 where it has no such
    layer (samples are independent), None for a D of another kind."""
    epilogue = getattr(D, "b4", None)
    if not hasattr(epilogue, "mbstd_group_size"):
        return None
    if epilogue.mbstd_num_channels <= 0:
        return 1
    return minibatch_std_group(n, epilogue.mbstd_group_size)


def _last_good_hint(run_dir: Path, opts: TrainOptions) -> str:
    found = latest_snapshot(run_dir)
    if found is None:
        return f"no snapshot was written yet in {run_dir}"
    # D's own rate differs only where --lr-d set it, so only then is that option there to lower
    rates = "--lr, --lr-d" if opts.lr_d != opts.lr_g else "--lr"
    return f"last good snapshot: {found[1]} (continue with --resume {run_dir} and a lower {rates} or --gamma)"


def run_dir_for(output: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> Path:
    """The folder where the run that writes `output` keeps its snapshots, state and log:
    `run_dir` if given, else beside `output`, named after it (cat.st -> cat-run)."""
    if run_dir is not None:
        return Path(run_dir)
    out = Path(output)
    return out.with_name(out.stem + "-run")


def latest_snapshot(run_dir: Path) -> tuple[int, Path, Path] | None:
    """(step, snapshot, state) of the newest snapshot whose state file was also completed."""
    if not run_dir.is_dir():
        return None
    best = None
    for p in run_dir.iterdir():
        m = SNAPSHOT_RE.match(p.name)
        if m and (run_dir / f"state-{m.group(1)}.pt").exists():
            step = int(m.group(1))
            if best is None or step > best[0]:
                best = (step, p, run_dir / f"state-{m.group(1)}.pt")
    return best


def _truncate_log(log_path: Path, step: int) -> None:
    """Drop log lines past the resumed step, so the log reads as one uninterrupted run."""
    if not log_path.exists():
        return
    kept = []
    for line in log_path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line torn by the kill
    with atomic_write(log_path, force=True) as tmp:
        Path(tmp).write_text("".join(k + "\n" for k in kept))


# what a resumed run may change: schedules of its optimisation, not what it trains or on what
RESUME_CHANGEABLE = ("gamma", "lr_g", "lr_d", "snap_kimg")


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """run.json of a training run folder: {"options": TrainOptions, "method": the method's description,
    "changes": [...]}, refused with the file named when it is missing or not one run_training wrote."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        raise GancraftError(f"--resume {run_dir}: not a training run folder (no run.json)")
    try:
        stored = json.loads(path.read_text())
        fields = {f.name for f in dataclasses.fields(TrainOptions)}
        options, method = stored["options"], stored["method"]
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ValueError(f"unknown options {', '.join(unknown)}")
        changes = stored.get("changes", [])
        if not isinstance(method, dict) or any(
            not isinstance(c, dict) or c.get("option") not in RESUME_CHANGEABLE or not isinstance(c.get("step"), int)
            for c in changes
        ):
            raise ValueError("malformed method or changes")
        return {"options": TrainOptions(**options), "method": method, "changes": changes}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GancraftError(f"{path}: not a run record gancraft wrote ({e})") from None


def _option_changes(
    opts: TrainOptions, earlier: list[dict[str, Any]], asked: dict[str, Any], step: int, run_dir: Path
) -> list[dict[str, Any]]:
    """The changes `asked` makes to the options in force at `step` (the run's, then `earlier`)."""
    now = dataclasses.asdict(dataclasses.replace(opts, **{c["option"]: c["to"] for c in earlier}))
    fixed = [k for k, v in asked.items() if k not in RESUME_CHANGEABLE and v != now[k]]
    if fixed:
        diffs = "; ".join(f"{k}: {now[k]} in the run, {asked[k]} now" for k in fixed)
        raise GancraftError(
            f"--resume {run_dir}: {diffs}; a resumed run can change only {', '.join(RESUME_CHANGEABLE)} "
            "(--gamma, the learning rates, --snap); start a new run for the rest"
        )
    return [
        {"step": step, "option": k, "from": now[k], "to": v}
        for k, v in asked.items()
        if k in RESUME_CHANGEABLE and v != now[k]
    ]


def run_training(
    method: Method,
    opts: TrainOptions,
    run_dir: str | os.PathLike,
    device: torch.device | str = "cpu",
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
    trainer_cls: type[Trainer] = Trainer,
    resume_kimg: float | None = None,
    resume_options: dict[str, Any] | None = None,
) -> Trainer:
    """Train `method` in `run_dir` (created; must hold no run unless `resume`). Returns the Trainer.

    With `resume`, the newest complete snapshot in run_dir is loaded and the options stored with
    the run are used (the method's settings must match), except that `resume_kimg` sets a new
    total length (to train a finished run longer, or end a long one sooner); the new length is
    stored in run.json. `resume_options` (TrainOptions field -> value, the ones asked for) may
    change gamma, lr_g, lr_d and snap_kimg from the resumed step on: run.json and the history
    record each change with its step, and a later resume from an earlier snapshot undoes it.
    Any other field that differs from the run's is refused. `max_steps` stops early after that many
    steps in total (tests and time-boxed jobs); the run can be resumed later.
    `trainer_cls` swaps in a Trainer subclass whose `train_step` (and grid) differ, e.g. a method
    without a discriminator step; snapshots, resume, logging and divergence checks stay these.
    Under torchrun every rank calls this; only rank 0 writes files.
    """
    device = dist_util.device_for(dist_util.from_env(), torch.device(device))
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before joining the group: nccl binds each rank to its GPU
    info = dist_util.init(device)
    # float32 where autocast does not reach (R1, path length, optimisers) means float32, as in
    # NVIDIA's training; TF32 stays off until the run returns
    with exact_fp32():
        resuming = (resume, resume_kimg, resume_options)
        return _run(method, opts, Path(run_dir), device, info, progress, max_steps, trainer_cls, *resuming)


def _run(
    method: Method,
    opts: TrainOptions,
    run_dir: Path,
    device: torch.device,
    info: dist_util.DistInfo,
    progress: bool,
    max_steps: int | None,
    trainer_cls: type[Trainer],
    resume: bool,
    resume_kimg: float | None,
    resume_options: dict[str, Any] | None,
) -> Trainer:
    run_json = run_dir / "run.json"
    found = None
    changes: list[dict[str, Any]] = []
    rewrite = not resume or resume_kimg is not None
    if resume:
        stored = read_run_record(run_dir)
        now = _jsonable(method.describe())
        if stored["method"] != now:
            diffs = _differences(stored["method"], now)
            more = f" (and {len(diffs) - 5} more)" if len(diffs) > 5 else ""
            raise GancraftError(
                f"--resume {run_dir}: the run was started with other settings: {'; '.join(diffs[:5])}{more}"
            )
        opts = stored["options"]
        found = latest_snapshot(run_dir)
        step = found[0] if found else 0
        recorded = stored["changes"]
        changes = [c for c in recorded if c["step"] <= step]  # changes made after this snapshot are undone
        changes += _option_changes(
            opts, changes, {k: v for k, v in (resume_options or {}).items() if v is not None}, step, run_dir
        )
        rewrite = rewrite or changes != recorded
        if resume_kimg is not None:
            done = step * opts.batch / 1000
            if not resume_kimg >= done:
                raise GancraftError(f"--kimg {resume_kimg}: the run in {run_dir} is already at {done:g} kimg")
            opts = dataclasses.replace(opts, kimg=resume_kimg)
    else:
        if run_dir.exists() and (run_json.exists() or latest_snapshot(run_dir) is not None):
            raise GancraftError(
                f"{run_dir}: already holds a training run (continue it with --resume {run_dir}, "
                "or choose another folder)"
            )
    started = opts  # run.json keeps the options the run started with, and the changes apart
    opts = dataclasses.replace(opts, **{c["option"]: c["to"] for c in changes})
    opts.validate(info.world)
    dist_util.barrier(info)  # every rank has checked the folder before rank 0 starts writing to it
    trainer = trainer_cls(method, opts, run_dir, device, info)
    trainer.changes = changes
    method.setup(trainer.G, trainer.D, device)
    if found is not None:
        trainer.load_snapshot(found[1], found[2])
    for m in (trainer.G, trainer.D, trainer.G_ema, *trainer.extras.values()):
        dist_util.broadcast_module(m, info)

    log_path = run_dir / "log.jsonl"
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if rewrite:
            record = {"options": dataclasses.asdict(started), "method": _jsonable(method.describe())}
            with atomic_write(run_json, force=True) as tmp:
                Path(tmp).write_text(json.dumps({**record, **({"changes": changes} if changes else {})}, indent=1))
        if resume:
            _truncate_log(log_path, trainer.step)
    if found is None:
        trainer.save_snapshot()  # step 0: the starting point is always recoverable
    dist_util.barrier(info)

    total = opts.total_steps() if max_steps is None else min(opts.total_steps(), max_steps)
    snap_every = opts.snap_steps()
    bar = None
    if progress and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=opts.total_steps(), initial=trainer.step, unit="step", dynamic_ncols=True, leave=False)
    t0, s0 = time.time(), trainer.step
    log_fh = open(log_path, "a") if info.is_main else None
    try:
        while trainer.step < total:
            stats = trainer.train_step()
            bad = [k for k, v in stats.items() if not math.isfinite(v)]
            if dist_util.any_flag(bool(bad), info, device):
                name = bad[0] if bad else "a loss on another process"
                raise TrainingDiverged(
                    f"training diverged at step {trainer.step}: {name} is not finite; {_last_good_hint(run_dir, opts)}"
                )
            kimg = trainer.step * opts.batch / 1000
            if log_fh is not None:
                log_fh.write(
                    json.dumps(
                        {"step": trainer.step, "kimg": round(kimg, 4), "sec": round(time.time() - t0, 2), **stats}
                    )
                    + "\n"
                )
                log_fh.flush()
            if bar is not None:
                rate = (trainer.step - s0) * opts.batch / 1000 / max(time.time() - t0, 1e-9)
                # whatever the step reports: the adversarial losses, or a method's own terms
                bar.set_postfix(
                    {"kimg": f"{kimg:.2f}", "kimg_s": f"{rate:.3f}", **{k: f"{v:.3f}" for k, v in stats.items()}},
                    refresh=False,
                )
                bar.update(1)
            if trainer.step % snap_every == 0 or trainer.step == total:
                trainer.save_snapshot()
                dist_util.barrier(info)
    finally:
        if log_fh is not None:
            log_fh.close()
        if bar is not None:
            bar.close()
    return trainer


def _differences(stored: Any, now: Any, path: str = "") -> list[str]:
    """Where two JSON-like settings differ, as 'path: X in the run, Y now' lines."""
    if isinstance(stored, dict) and isinstance(now, dict):
        return [
            line
            for key in sorted(set(stored) | set(now), key=str)
            for line in _differences(stored.get(key), now.get(key), f"{path}.{key}" if path else str(key))
        ]
    if isinstance(stored, list) and isinstance(now, list) and len(stored) == len(now):
        return [line for i, (a, b) in enumerate(zip(stored, now)) for line in _differences(a, b, f"{path}[{i}]")]
    return [] if stored == now else [f"{path or 'settings'}: {stored!r} in the run, {now!r} now"]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def finish(
    trainer: Trainer,
    out: str | os.PathLike,
    command: str,
    params: dict[str, Any],
    inputs: list[str | os.PathLike] = (),
    force: bool = False,
) -> Path | None:
    """Write the trained model to `out` with a history entry (rank 0 only; others return None)."""
    if not trainer.info.is_main:
        return None
    ckpt = trainer.checkpoint()
    ckpt.extra = {"training": ckpt.extra["training"], "run_dir": str(trainer.run_dir)}
    ckpt = ckpt.with_operation(
        command, {**params, **trainer.method.describe(), **history_options(trainer)}, list(inputs)
    )
    return save(ckpt, out, force=force, inputs=tuple(inputs))


def history_options(trainer: Trainer) -> dict[str, Any]:
    """What a history entry says about the run's options: those it started with, and the changes
    made on resume with their steps (when there were any)."""
    started = dataclasses.replace(trainer.opts, **{c["option"]: c["from"] for c in reversed(trainer.changes)})
    return {"options": dataclasses.asdict(started), **({"changes": trainer.changes} if trainer.changes else {})}
