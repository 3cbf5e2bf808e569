"""Domain expansion (Nitzan et al., CVPR 2023): one generator, new domains on dormant directions.

Each task owns one dormant SeFA direction d_k. Its adaptation loss only ever sees latents on its
repurposed subspace (the base subspace moved by s along d_k); the base subspace is held to the
frozen source generator by replay alignment (L2 + LPIPS) and, when the checkpoint has a
discriminator, the generator's original non-saturating loss against it. Task kinds:

- ``clip``: StyleGAN-NADA's directional CLIP loss (prompt templates, CLIP models summed, as the
  official code); the source images are the expanded model's own base-subspace images for the
  same latents (paper App. D.2), not a frozen copy's.
- ``images``: MyStyle-style few-shot personalisation: the images are inverted into W of the
  source generator once, then the generator learns to reconstruct them (MSE + LPIPS) from the
  inversions moved onto the task's subspace.
- ``model``: a fine-tuned child of the same parent (or any model of the same resolution): for
  the same z, the repurposed subspace learns to give the child's image. No data is needed.

The mapping network is frozen, so W, w_avg and the subspaces mean the same before and after.
Expansion's step has phases of its own (task and replay losses, the source adversarial loss on
base-subspace images, D on those), so `ExpansionTrainer` replaces the loop's `train_step` and
`run_expansion` hands it to `loop.run_training` (snapshots, resume, EMA and logging are the loop's).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed as dist_util
from ..checkpoint import Checkpoint, load, save
from ..errors import GancraftError
from ..io_util import no_log
from ..latent.subspace import subspaces_from_table
from ..nets.config import STYLEGAN3_NOT_TRAINABLE
from .clip_losses import DirectionalClipLoss, nada_templates
from .data import GeneratedData, balanced_labels, step_seed
from .loop import (
    Method,
    Trainer,
    TrainOptions,
    _set_trainable,
    _zero_grad,
    history_options,
    run_dir_for,
    run_training,
)

TASK_KINDS = ("clip", "images", "model")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_RESERVED = {"base", "all"}


@dataclass
class TaskSpec:
    name: str
    kind: str
    arg: str


def parse_task(text: str) -> TaskSpec:
    """'NAME:KIND:ARG' (ARG may itself hold ':', e.g. a Windows path or a prompt)."""
    parts = text.split(":", 2)
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise GancraftError(
            f"--task {text!r}: expected NAME:KIND:ARG with KIND one of {', '.join(TASK_KINDS)} "
            "(e.g. sketch:clip:a pencil sketch, me:images:photos/, toon:model:toon.pkl)"
        )
    name, kind, arg = parts[0].strip(), parts[1].strip(), parts[2].strip()
    if not _NAME.match(name) or name in _RESERVED:
        raise GancraftError(
            f"--task {text!r}: domain name {name!r} must be letters, digits, '_', '-' or '.', "
            f"and not {' or '.join(sorted(_RESERVED))}"
        )
    if kind not in TASK_KINDS:
        raise GancraftError(f"--task {text!r}: unknown kind {kind!r} (expected {', '.join(TASK_KINDS)})")
    return TaskSpec(name, kind, arg)


def check_tasks(tasks: Sequence[TaskSpec]) -> None:
    names = [t.name for t in tasks]
    if not names:
        raise GancraftError("give at least one --task NAME:KIND:ARG")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise GancraftError(f"--task: domain name {dup[0]!r} is used twice")


def check_parent(parent: Checkpoint) -> None:
    """Refuse a model that cannot be expanded; `expand` calls this as soon as the model is read,
    before its factorisation, dormancy measurement and log lines."""
    if parent.family == "stylegan3":
        raise GancraftError(STYLEGAN3_NOT_TRAINABLE)
    if parent.g_config.c_dim:
        raise GancraftError(
            f"{parent.path or 'checkpoint'}: class-conditional generators cannot be expanded "
            "(their latents depend on the class)"
        )


@dataclass
class ExpansionSettings:
    distance: float = 20.0
    replay_l2: float = 10.0
    replay_lpips: float = 10.0
    source_weight: float = 1.0  # the generator's original (adversarial) loss on the base subspace
    expansion_weight: float = 1.0
    source_text: str = "a photo"  # CLIP tasks whose ARG has no 'SOURCE->TARGET'
    templates: bool = True  # NADA's prompt templates for CLIP tasks (False: the bare prompts)
    invert_steps: int = 300
    invert_lr: float = 0.05

    def validate(self) -> "ExpansionSettings":
        if not self.distance > 0:
            raise GancraftError(f"must be positive, got {self.distance}", field="distance")
        for name in ("replay_l2", "replay_lpips", "source_weight", "expansion_weight"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise GancraftError(f"must be a finite number >= 0, got {v}", field=name)
        if self.invert_steps < 1:
            raise GancraftError(f"must be at least 1, got {self.invert_steps}", field="invert_steps")
        return self


class _SizedLpips:
    """LPIPS on images upsampled to at least 64 px: AlexNet's pooling leaves nothing of smaller ones."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def to(self, device: torch.device | str) -> "_SizedLpips":
        self.model = self.model.to(device)
        return self

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if min(a.shape[-2:]) < 64:
            scale = math.ceil(64 / min(a.shape[-2:]))
            a = F.interpolate(a, scale_factor=scale, mode="bilinear", align_corners=False)
            b = F.interpolate(b, scale_factor=scale, mode="bilinear", align_corners=False)
        return self.model(a, b).flatten()


def _recon(lpips, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MSE + LPIPS (MyStyle's loss as the official code weights it; MSE alone without an LPIPS
    model), one value per image."""
    loss = (a - b).square().flatten(1).mean(dim=1)
    if lpips is not None:
        loss = loss + lpips(a, b)
    return loss


def _broadcast(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    return w.unsqueeze(1).expand(-1, num_ws, -1)


def invert_images(
    G: torch.nn.Module, images: torch.Tensor, steps: int = 300, lr: float = 0.05, lpips=None, progress: bool = False
) -> torch.Tensor:
    """One w per image ([N, w_dim]) found by Adam from w_avg, minimising L2 + LPIPS to the image."""
    import sys

    from tqdm import tqdm

    if lpips is not None and not isinstance(lpips, _SizedLpips):
        lpips = _SizedLpips(lpips)
    G = G.eval().requires_grad_(False)
    w = G.mapping.w_avg.detach().clone().unsqueeze(0).repeat(images.shape[0], 1).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))
    for _ in tqdm(range(steps), desc="invert", disable=not progress, file=sys.stderr, leave=False):
        img = G.synthesis(_broadcast(w, G.num_ws), noise_mode="const")
        loss = (img - images).square().flatten(1).mean(dim=1)
        if lpips is not None:
            loss = loss + lpips(img, images)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
    return w.detach()


def _read_images(folder: str, resolution: int) -> torch.Tensor:
    from ..media.images import read_image_folder

    arrays = [arr for _, arr in read_image_folder(folder, resolution=resolution)]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1


def _split_prompt(arg: str, default_source: str) -> tuple[str, str]:
    if "->" in arg:
        src, tgt = (p.strip() for p in arg.split("->", 1))
        if not src or not tgt:
            raise GancraftError(f"CLIP task text {arg!r}: expected 'TARGET' or 'SOURCE->TARGET'")
        return src, tgt
    return default_source, arg


def _placeholder_discriminator(resolution: int) -> torch.nn.Module:
    """The loop's Trainer wants a D; a checkpoint without one gets this tiny one, never trained or saved."""
    from ..nets.config import DiscriminatorConfig
    from ..nets.stylegan2 import Discriminator

    return Discriminator(DiscriminatorConfig(img_resolution=resolution, channel_base=4 * resolution, channel_max=4))


class ExpansionMethod(Method):
    """Networks, subspaces and task losses of one expansion run (plugged into `ExpansionTrainer`)."""

    name = "expand"
    update_w_avg = False  # the mapping is frozen; so is w_avg, which the subspaces are built around

    def __init__(
        self,
        parent: Checkpoint,
        tasks: Sequence[TaskSpec],
        table: dict[str, dict],
        settings: ExpansionSettings | None = None,
        lpips=None,
        clips: Sequence | None = None,
        directions_source: str | None = None,
    ):
        check_tasks(tasks)
        self.settings = (settings or ExpansionSettings()).validate()
        check_parent(parent)
        if any(isinstance(e, dict) and e.get("kind") == "repurposed" for e in (parent.domains or {}).values()):
            raise GancraftError(
                f"{parent.path or 'checkpoint'}: already an expanded model; expanding it again "
                "is not supported (expand its parent with all tasks at once)"
            )
        self.parent, self.tasks, self.table = parent, list(tasks), table
        self.lpips = None if lpips is None else _SizedLpips(lpips)
        self.clips = list(clips or [])
        self.directions_source = directions_source
        self.has_d = "D" in parent.nets and parent.d_config is not None
        self.source = parent.generator()
        self.resolution = self.source.img_resolution
        # D's "real" images: the parent's own (Domain Expansion needs no data set of its own here)
        self.data = GeneratedData([self.source], self.resolution)
        self.subspaces = subspaces_from_table(table, self.source.mapping.w_avg)
        missing = [t.name for t in self.tasks if t.name not in self.subspaces.shifts]
        if missing:
            raise GancraftError(f"task {missing[0]!r} has no repurposed direction in the domain table")
        self.children: dict[str, torch.nn.Module] = {}
        self.images: dict[str, torch.Tensor] = {}
        self.clip_losses: dict[str, DirectionalClipLoss] = {}
        for t in self.tasks:
            if t.kind == "model":
                self.children[t.name] = self._load_child(t)
            elif t.kind == "images":
                self.images[t.name] = _read_images(t.arg, self.resolution)
            elif t.kind == "clip":
                if not self.clips:
                    raise GancraftError(f"--task {t.name}:clip needs CLIP weights (see --clip-model/--clip-weights)")
                src, tgt = _split_prompt(t.arg, self.settings.source_text)
                self.clip_losses[t.name] = DirectionalClipLoss(
                    self.clips, src, tgt, nada_templates() if self.settings.templates else None
                )
        self.inverted: dict[str, torch.Tensor] = {}

    def _load_child(self, t: TaskSpec) -> torch.nn.Module:
        child = load(t.arg)
        cfg, own = child.g_config, self.source.cfg
        if cfg.img_resolution != own.img_resolution or cfg.z_dim != own.z_dim or cfg.c_dim:
            raise GancraftError(
                f"--task {t.name}:model:{t.arg}: the model must be unconditional with resolution "
                f"{own.img_resolution} and z_dim {own.z_dim} like the parent "
                f"(it has {cfg.img_resolution}, {cfg.z_dim}, c_dim {cfg.c_dim})"
            )
        return child.generator()

    # -- Method hooks -------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return 0

    def networks(self):
        G = copy.deepcopy(self.source).requires_grad_(True)
        D = self.parent.discriminator() if self.has_d else _placeholder_discriminator(self.resolution)
        return G, D, None

    def setup(self, G: torch.nn.Module, D: torch.nn.Module, device: torch.device) -> None:
        self.source = self.source.to(device)
        self.subspaces = self.subspaces.to(device)
        self.children = {k: g.to(device) for k, g in self.children.items()}
        if self.lpips is not None:
            self.lpips = self.lpips.to(device)
        for name, imgs in self.images.items():
            self.images[name] = imgs.to(device)
            if name not in self.inverted:
                self.inverted[name] = invert_images(
                    self.source, self.images[name], self.settings.invert_steps, self.settings.invert_lr, self.lpips
                )

    def g_params(self, G: torch.nn.Module) -> list[torch.nn.Parameter]:
        # the mapping stays frozen: W, w_avg and hence every subspace keep their meaning
        return list(G.synthesis.parameters())

    def domains(self) -> dict[str, dict]:
        return self.table

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "tasks": [dataclasses.asdict(t) for t in self.tasks],
            "directions": {n: e["index"] for n, e in self.table.items() if e.get("kind") == "repurposed"},
            "directions_source": self.directions_source,
            "settings": dataclasses.asdict(self.settings),
            "lpips": self.lpips is not None,
            "clip": [c.name for c in self.clips],
        }

    # -- losses -------------------------------------------------------------------------------

    def task_latents(self, task: TaskSpec, z: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, Any]:
        """The W latents a task trains on for these samples (before projection), and its context:
        `images` tasks use their inversions (drawn with replacement, as the official sampler), the
        others map z. The base replay uses the same latents' base projections."""
        if task.kind == "images":
            w_inv = self.inverted[task.name]
            idx = torch.randint(0, w_inv.shape[0], [z.shape[0]], generator=gen).to(w_inv.device)
            return _broadcast(w_inv[idx], self.source.num_ws), idx
        with torch.no_grad():
            return self.source.mapping(z), z

    def task_loss(self, task: TaskSpec, edit_img: torch.Tensor, base_img: torch.Tensor, context: Any) -> torch.Tensor:
        """The task's adaptation loss per sample, from G's images on the task's repurposed subspace."""
        if task.kind == "model":
            with torch.no_grad():
                target = self.children[task.name](context, None, noise_mode="random")
            return _recon(self.lpips, edit_img, target)
        if task.kind == "images":
            return _recon(self.lpips, edit_img, self.images[task.name][context])
        return self.clip_losses[task.name](base_img.detach(), edit_img)


class ExpansionTrainer(Trainer):
    """The loop's Trainer with the expansion step in place of the adversarial G/D step."""

    method: ExpansionMethod

    def train_step(self) -> dict[str, float]:
        """The official phases of one step: expansion + base replay (one G update), the source
        adversarial loss on base-subspace images (its own G update), lazy path length on full
        latents, D on base-subspace fakes against the parent's own images, lazy R1."""
        o, info, s, m = self.opts, self.info, self.step, self.method
        st = m.settings
        torch.manual_seed(step_seed(o.seed, s, info.rank, 1))
        gen = torch.Generator().manual_seed(step_seed(o.seed, s, info.rank, 5))
        stats: dict[str, float] = {}
        B = self.local_batch
        self.D.requires_grad_(False)
        _set_trainable(self.G, self.g_params, True)

        # G: expansion and replay. The batch is split over the tasks (each about 1/T of it), and
        # each task's per-sample losses are summed and divided by B, as the official sampler does.
        z = torch.randn([B, self.G.z_dim], generator=gen).to(self.device)
        owner = balanced_labels(B, len(m.tasks), gen).to(self.device)
        ws = torch.empty([B, self.G.num_ws, self.G.w_dim], device=self.device)
        contexts = []
        for k, task in enumerate(m.tasks):
            sel = (owner == k).nonzero().flatten()
            w, ctx = m.task_latents(task, z[sel], gen)
            ws[sel] = w
            contexts.append((sel, ctx))
        wb = m.subspaces.base(ws)
        with self._autocast():
            base_img = self.G.synthesis(wb, noise_mode="random").float()
        with torch.no_grad():
            ref = m.source.synthesis(wb, noise_mode="random")
        replay_l2 = (base_img - ref).square().mean()
        loss = st.replay_l2 * replay_l2
        stats["replay_l2"] = replay_l2.item()
        if m.lpips is not None and st.replay_lpips > 0:
            replay_lp = m.lpips(base_img, ref).mean()
            loss = loss + st.replay_lpips * replay_lp
            stats["replay_lpips"] = replay_lp.item()
        if st.expansion_weight > 0:
            expand = 0.0
            for task, (sel, ctx) in zip(m.tasks, contexts):
                if sel.numel() == 0:
                    continue
                with self._autocast():
                    edit = self.G.synthesis(m.subspaces.domain(ws[sel], task.name), noise_mode="random").float()
                per_sample = m.task_loss(task, edit, base_img[sel], ctx).float()
                stats[f"loss_{task.name}"] = per_sample.mean().item()
                expand = expand + per_sample.sum() / B
            loss = loss + st.expansion_weight * expand
        _zero_grad(self.g_params)
        loss.backward()
        dist_util.average_gradients(self.g_params, info)
        self.opt_g.step()

        if m.has_d and st.source_weight > 0:
            # G: the original adversarial loss, on base-subspace images only
            z = torch.randn([B, self.G.z_dim], generator=gen).to(self.device)
            with self._autocast():
                img = self.G.synthesis(m.subspaces.base(self.G.mapping(z)), noise_mode="random")
                adv = F.softplus(-self._d(img, None)).mean()
            stats["source_G"] = adv.item()
            _zero_grad(self.g_params)
            (st.source_weight * adv).backward()
            dist_util.average_gradients(self.g_params, info)
            self.opt_g.step()
        if self.use_pl and s % o.pl_interval == 0:
            self.path_length_step(gen, stats)

        if m.has_d and st.source_weight > 0:
            z = torch.randn([B, self.G.z_dim], generator=gen).to(self.device)
            real, _ = m.data.batch(B, o.seed, s, info.rank, info.world, self.device)
            with torch.no_grad(), self._autocast():
                fake = self.G.synthesis(m.subspaces.base(self.G.mapping(z)), noise_mode="random")
            self.discriminator_step(fake, None, real, None, stats)

        self._update_ema()
        self.step += 1
        return stats

    def path_length_step(self, gen: torch.Generator, stats: dict[str, float]) -> None:
        """The loop's path-length update on full latents; the frozen mapping joins the graph only so
        that the lengths can be taken with respect to w (its gradients are dropped)."""
        self.G.mapping.requires_grad_(True)
        try:
            super().path_length_step(gen, stats)
        finally:
            self.G.mapping.requires_grad_(False)
            _zero_grad(list(self.G.mapping.parameters()))

    @torch.no_grad()
    def save_grid(self) -> None:
        """One row per domain (base first), the same latents in every row."""
        from ..media.images import make_grid, save_png, to_uint8

        cols = self.opts.grid_cols
        gen = torch.Generator().manual_seed(self.opts.seed)
        z = torch.randn([cols, self.G.z_dim], generator=gen).to(self.device)
        ws = self.G_ema.mapping(z)
        rows = [self.method.subspaces.base(ws)] + [self.method.subspaces.domain(ws, t.name) for t in self.method.tasks]
        img = torch.cat([self.G_ema.synthesis(w, noise_mode="const") for w in rows])
        save_png(make_grid(to_uint8(img), len(rows), cols), self.run_dir / f"grid-{self.step:06d}.png", force=True)


def run_expansion(
    method: ExpansionMethod,
    opts: TrainOptions,
    run_dir: str | os.PathLike,
    device: torch.device | str = "cpu",
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
    resume_kimg: float | None = None,
    resume_options: dict[str, Any] | None = None,
) -> ExpansionTrainer:
    """Expand in `run_dir` with `loop.run_training` (run.json, snapshots, log.jsonl, resume), one process."""
    # ExpansionTrainer's step logs per-rank losses and was never checked across processes
    if dist_util.from_env().enabled:
        raise GancraftError("expand runs in a single process; start it without torchrun")
    return run_training(
        method,
        opts,
        run_dir,
        device,
        resume=resume,
        progress=progress,
        max_steps=max_steps,
        trainer_cls=ExpansionTrainer,
        resume_kimg=resume_kimg,
        resume_options=resume_options,
    )


def expanded_checkpoint(
    trainer: ExpansionTrainer, params: dict[str, Any], inputs: Sequence[str | os.PathLike] = ()
) -> Checkpoint:
    """The output model: trained G/G_ema, the parent's D (never the placeholder), the domain table, history."""
    m = trainer.method
    ckpt = trainer.checkpoint()
    if not m.has_d:
        ckpt.tensors = {k: v for k, v in ckpt.tensors.items() if not k.startswith("D.")}
        ckpt.d_config = None
    ckpt.history = list(m.parent.history)
    ckpt.extra = {
        "training": ckpt.extra["training"],
        "run_dir": str(trainer.run_dir),
        "expansion": {
            "distance": m.settings.distance,
            "directions_source": m.directions_source,
            "tasks": [dataclasses.asdict(t) for t in m.tasks],
        },
    }
    return ckpt.with_operation("expand", {**params, **m.describe(), **history_options(trainer)}, list(inputs))


def finish_expansion(
    trainer: ExpansionTrainer,
    out: str | os.PathLike,
    params: dict[str, Any],
    inputs: Sequence[str | os.PathLike] = (),
    force: bool = False,
) -> Path:
    return save(expanded_checkpoint(trainer, params, inputs), out, force=force, inputs=tuple(inputs))


def _measured_changes(
    spec: str,
    dirs: torch.Tensor,
    singular_values: torch.Tensor | None,
    G: torch.nn.Module,
    distance: float,
    samples: int,
    lpips_weights: str | os.PathLike | None,
    device: torch.device,
    progress: bool,
    log: Callable[[str], None],
) -> np.ndarray:
    """Each direction's mean image change: from a `sefa --measure` CSV ('dormant:CSV'), or measured
    now at `distance` on `samples` samples ('dormant')."""
    from ..latent.generate import map_latents
    from ..latent.seeds import z_from_seeds
    from ..latent.sefa import measure_directions, read_measure_csv
    from ..metrics.perceptual import perceptual_metric

    if spec.startswith("dormant:"):
        path = spec.split(":", 1)[1]
        changes, svs = read_measure_csv(path)
        if changes.size != dirs.shape[0]:
            raise GancraftError(
                f"{spec}: the CSV measures {changes.size} directions, the directions have {dirs.shape[0]}",
                field="directions",
            )
        # the CSV keeps 6 significant digits; other singular values mean another model or factorisation
        if singular_values is not None and not np.allclose(svs, singular_values.numpy(), rtol=1e-4, atol=1e-6):
            raise GancraftError(
                f"{spec}: its singular values are not those of the directions (measured on another model or layers?)",
                field="directions",
            )
        log(f"dormancy: mean change per direction from {path}")
        return changes
    metric = perceptual_metric(lpips_weights, device=device)
    G = G.to(device)
    ws = map_latents(G, z_from_seeds(list(range(samples)), G.z_dim))
    log(
        f"dormancy: measuring {dirs.shape[0]} directions on {samples} samples moved by +-{distance:g} "
        f"({metric.description})"
    )
    changes, _ = measure_directions(G, dirs, ws, distance, metric, progress=progress)
    return changes


def expand(
    parent: Checkpoint,
    tasks: Sequence[str],
    output: str | os.PathLike,
    *,
    directions_file: str | os.PathLike | None = None,
    directions: Sequence[int] | str | None = None,
    dormant_samples: int = 16,
    settings: ExpansionSettings = ExpansionSettings(),
    clip_models: Sequence[str] = ("ViT-B-32", "ViT-B-16"),
    clip_weights: Sequence[str | os.PathLike] = (),
    download_clip: bool = False,
    lpips_weights: str | os.PathLike | None = None,
    # expand's own defaults: 4 kimg, the official stylegan2 config's lr 0.001, R1 gamma 10
    options: TrainOptions = TrainOptions(
        kimg=4.0, batch=32, snap_kimg=1.0, lr_g=0.001, lr_d=0.001, ema_kimg=10.0, gamma=10.0
    ),
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
    resume_kimg: float | None = None,
    resume_options: dict[str, Any] | None = None,
    report: str | os.PathLike | None = None,
    report_n: int = 1000,
    report_extractor: str = "inception",
    report_real: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = no_log,
) -> list[Path]:
    """Expand `parent` with one new domain per task ('NAME:KIND:ARG', kinds clip, images, model),
    each on its own repurposed SeFA direction, train for `options` in `run_dir` (default beside
    `output`, continued from its newest snapshot with `resume`, to a new total of `resume_kimg`
    when given, with `resume_options` changed as `loop.run_training` allows) and write the model to `output`;
    with `report`, the paper's evaluation table as well (with `report_real`, a folder of real
    images of the parent's domain, the base subspace's FID to them too). Returns the paths written.

    The directions come from `directions_file` (a `sefa` output), else are factorised now over
    every modulation (`sefa --layers all`, as the official code). `directions` picks them: indices
    one per task, 'dormant' (the least image change, measured now on `dormant_samples` samples),
    'dormant:CSV' (from a `sefa --measure` CSV), or by default the last ones (smallest singular
    value). Every check runs, and the report's feature extractor loads, before training starts.
    """
    from ..latent.files import load_directions
    from ..latent.sefa import sefa
    from ..latent.subspace import choose_directions, expansion_table, least_changing
    from ..metrics.perceptual import backbone_cache_path, load_lpips, missing_lpips_message

    device = torch.device(device)
    specs = [parse_task(t) for t in tasks]
    check_tasks(specs)
    extractor = real_feats = None
    if report is not None:
        from ..io_util import check_output_path
        from ..metrics.features import load_extractor

        check_output_path(report, force)
        # before training, so that missing weights or a wrong folder cost no run
        extractor = load_extractor(report_extractor, device=device)
        if report_real is not None:
            from ..metrics.features import features_from_folder

            real_feats = torch.cat(list(features_from_folder(report_real, extractor)))
            if real_feats.shape[0] < 2:
                raise GancraftError(f"{report_real}: one image; FID needs at least two", field="report_real")
    elif report_real is not None:
        raise GancraftError("a folder of real images only serves the report; give --report too", field="report_real")
    settings = settings.validate()
    check_parent(parent)
    G = parent.generator()
    if directions_file is not None:
        loaded = load_directions(directions_file)
        dirs, singular_values = loaded.directions, loaded.singular_values
        if dirs.shape[1] != G.w_dim:
            raise GancraftError(
                f"{directions_file}: directions have {dirs.shape[1]} dimensions, {parent.path} has w_dim {G.w_dim}"
            )
        source = str(directions_file)
    else:
        factorised = sefa(G, "all")
        dirs, singular_values = factorised.directions, factorised.singular_values
        source = "sefa --layers all (computed by expand)"
        log(f"no directions file given: factorised {parent.path}'s modulations (all but the toRGB ones after 4x4)")
    if isinstance(directions, str):  # 'dormant' or 'dormant:CSV'; indices come as a sequence
        changes = _measured_changes(
            directions,
            dirs,
            singular_values,
            G,
            settings.distance,
            dormant_samples,
            lpips_weights,
            device,
            progress,
            log,
        )
        indices = least_changing(changes, len(specs))
        source += f"; directions by measured dormancy ({directions})"
        log("least image change: " + ", ".join(f"direction {k} ({changes[k]:.4g})" for k in indices))
    else:
        indices = choose_directions(dirs.shape[0], len(specs), None if directions is None else list(directions))
    table = expansion_table([t.name for t in specs], dirs, indices, settings.distance)
    log("repurposing " + ", ".join(f"{t.name}: direction {k}" for t, k in zip(specs, indices)))

    lpips = load_lpips(lpips_weights, device=device)
    if lpips is None:
        log("LPIPS unavailable: replay and reconstruction use pixel losses only (" + missing_lpips_message() + ")")
    else:
        log(f"LPIPS: alex, ImageNet backbone {lpips_weights or backbone_cache_path('alex')}")
    clips = []
    if any(t.kind == "clip" for t in specs):
        from ..metrics.clip import load_clip

        if clip_weights and len(clip_weights) != len(clip_models):
            raise GancraftError(
                f"{len(clip_weights)} files for {len(clip_models)} CLIP models; give one per model, in order",
                field="clip_weights",
            )
        for i, name in enumerate(clip_models):
            weights = clip_weights[i] if clip_weights else None
            clips.append(load_clip(name, weights=weights, device=device, download=download_clip))
            log(f"CLIP: {clips[-1].description}")

    method = ExpansionMethod(parent, specs, table, settings, lpips=lpips, clips=clips, directions_source=source)
    trainer = run_expansion(
        method,
        options,
        run_dir_for(output, run_dir),
        device,
        resume=resume,
        progress=progress,
        resume_kimg=resume_kimg,
        resume_options=resume_options,
    )
    inputs = (
        [parent.path] + ([directions_file] if directions_file else []) + [t.arg for t in specs if t.kind == "model"]
    )
    written = [finish_expansion(trainer, output, {"tasks": list(tasks)}, inputs, force=force)]
    if report is not None:
        from ..io_util import atomic_write
        from .expansion_report import expansion_report, format_report

        rows, floor = expansion_report(
            method,
            trainer.G_ema,
            extractor,
            n=report_n,
            seed=options.seed,
            real=real_feats,
            real_name=str(report_real),
        )
        text = format_report(rows, floor, report_n, extractor.name)
        with atomic_write(report, force=force) as tmp:
            Path(tmp).write_text(text)
        log(text.rstrip())
        written.append(Path(report))
    return written
