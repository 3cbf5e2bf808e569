"""Does a model's ``conv_clamp`` ever change what it computes? Measured on samples.

stylegan2-ada-pytorch trains every config with ``conv_clamp=256``: each synthesis, toRGB and
discriminator conv layer clips its output to +-256 (times the gain it is called with). Codes
that never clamp (rosinality's) compute the same function exactly as long as no activation
reaches the clamp. This module runs the networks with the clamps lifted and records, per
network, the largest activation a clamp would have seen, in the clamp's own units (divided by
the call's gain), so it compares directly with ``conv_clamp``.

Generators run at truncation 1 (the whole latent distribution) with their stored noise; the
discriminator sees the generated images, since a checkpoint carries no real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..nets.stylegan2 import Conv2dLayer, SynthesisLayer, ToRGBLayer
from .core import Checkpoint

DEFAULT_SAMPLES = 256
DEFAULT_SEED = 0
# activations per batch: ~4096 images at 32 px, 4 at 1024 px
_PIXELS_PER_BATCH = 1 << 22
_MAX_BATCH = 64


@dataclass
class ClampReport:
    """The largest pre-clamp activation of every clamped network, over ``samples`` latents."""

    conv_clamp: float
    samples: int
    seed: int
    # net -> (largest |activation| / gain, the layer it occurred in)
    peaks: dict[str, tuple[float, str]] = field(default_factory=dict)

    @property
    def peak(self) -> tuple[float, str]:
        """(value, "net.layer") of the largest activation over all networks."""
        value, where = max(((v, f"{net}.{layer}") for net, (v, layer) in self.peaks.items()), default=(0.0, ""))
        return value, where

    @property
    def engaged(self) -> bool:
        return self.peak[0] > self.conv_clamp

    def describe(self) -> str:
        value, where = self.peak
        verb = "engages" if self.engaged else "never engages"
        return (
            f"conv_clamp {self.conv_clamp:g} {verb} over {self.samples} samples (seed {self.seed}): "
            f"largest pre-clamp activation {value:.4g} in {where}"
        )


def _clamped_layers(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    kinds = (SynthesisLayer, ToRGBLayer, Conv2dLayer)
    return [(n, m) for n, m in module.named_modules() if isinstance(m, kinds) and m.conv_clamp is not None]


class _PeakRecorder:
    """Lifts the clamps of a network's layers and records the largest |output| / gain of each."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.peak = (0.0, "")
        self._handles = []
        for name, layer in _clamped_layers(module):
            layer.conv_clamp = None
            self._handles.append(layer.register_forward_hook(self._hook(name), with_kwargs=True))

    def _hook(self, name: str) -> Any:
        def record(layer: torch.nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
            # Conv2dLayer takes gain as its second positional argument, SynthesisLayer by keyword
            gain = kwargs.get("gain", args[1] if isinstance(layer, Conv2dLayer) and len(args) > 1 else 1.0)
            value = out.detach().abs().max().item() / gain
            if value > self.peak[0]:
                self.peak = (value, name)

        return record

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _batch_size(resolution: int) -> int:
    return max(1, min(_MAX_BATCH, _PIXELS_PER_BATCH // (resolution * resolution * 64)))


@torch.no_grad()
def measure_clamp(
    ckpt: Checkpoint, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED, device: str | torch.device = "cpu"
) -> ClampReport | None:
    """How close every clamped network of `ckpt` comes to its clamp; None when nothing is clamped."""
    g, d = ckpt.g_config, ckpt.d_config
    nets = [n for n in ("G_ema", "G") if n in ckpt.nets]
    clamps = {x.conv_clamp for x in (g, d) if x is not None and x.conv_clamp is not None}
    if not clamps:
        return None
    if samples < 1:
        raise ValueError("samples must be at least 1")
    # gancraft's configs give G and D one clamp each; a file where they differ reports the smaller
    report = ClampReport(conv_clamp=min(clamps), samples=samples, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([samples, g.z_dim], generator=gen)
    c = None
    if g.c_dim:
        c = torch.nn.functional.one_hot(torch.randint(g.c_dim, [samples], generator=gen), g.c_dim).float()
    batch = _batch_size(g.img_resolution)
    images = []
    for net in nets:
        G = ckpt.generator(net, device=device)
        recorder = _PeakRecorder(G)
        for i in range(0, samples, batch):
            cb = c[i : i + batch].to(device) if c is not None else None
            img = G(z[i : i + batch].to(device), cb, noise_mode="const")
            if net == nets[0]:
                images.append(img.cpu())
        recorder.close()
        if g.conv_clamp is not None:
            report.peaks[net] = recorder.peak
    if "D" in ckpt.nets and d is not None and d.conv_clamp is not None:
        D = ckpt.discriminator(device=device)
        recorder = _PeakRecorder(D)
        imgs = torch.cat(images)
        # minibatch-std statistics are taken over groups as in training; chunks of one group
        # also keep every chunk's size acceptable to it
        step = d.mbstd_group_size or batch
        for i in range(0, samples, step):
            cb = c[i : i + step].to(device) if c is not None and d.c_dim else None
            D(imgs[i : i + step].to(device), cb)
        recorder.close()
        report.peaks["D"] = recorder.peak
    return report
