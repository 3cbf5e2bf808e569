"""Training from random weights: `train`'s method, and the scratch baseline of `finetune`."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Sequence

import torch

from ...checkpoint import Checkpoint
from ...errors import GancraftError
from ...nets.config import STYLEGAN3_NOT_TRAINABLE, DiscriminatorConfig, GeneratorConfig
from ...nets.stylegan2 import Discriminator, Generator
from ..loop import Method
from .base import register
from .start import require_discriminator
from .union import UnionMethod


class ScratchMethod(Method):
    """Every parameter trained, from random weights (NVIDIA's `train.py` without a resume file) or
    from a checkpoint's networks (`train --init`, NVIDIA's `--resume PKL`). `train` builds it
    directly, having no method to choose; the registry's 'scratch' is finetune's baseline below."""

    name = "scratch"

    def __init__(
        self,
        data: Any,
        g_cfg: GeneratorConfig,
        d_cfg: DiscriminatorConfig,
        domain_names: Sequence[str] = (),
        init: Checkpoint | None = None,
    ):
        if g_cfg.img_resolution != data.resolution:
            raise GancraftError(f"data resolution {data.resolution} does not match the model's {g_cfg.img_resolution}")
        self.data, self.g_cfg, self.d_cfg = data, g_cfg, d_cfg
        self.domain_names = list(domain_names)
        self.init = init

    def networks(self):
        if self.init is None:
            return Generator(self.g_cfg), Discriminator(self.d_cfg), None
        # as NVIDIA's resume: G from G, G_ema from G_ema; a file without the training copy G
        # (the bundled examples) starts G from its G_ema
        G_ema = self.init.generator()
        G = self.init.generator("G") if "G" in self.init.nets else copy.deepcopy(G_ema)
        D = dataclasses.replace(self.init, d_config=self.d_cfg).discriminator()
        return G.requires_grad_(True), D.requires_grad_(True), G_ema

    def domains(self) -> dict[str, dict]:
        return {n: {"kind": "class", "class": i} for i, n in enumerate(self.domain_names)}

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "g_config": self.g_cfg.__dict__,
            "d_config": self.d_cfg.__dict__,
            "domains": self.domain_names,
            **({"init": str(self.init.path)} if self.init is not None else {}),
        }

    def history(self) -> list[dict[str, Any]]:
        return self.init.history if self.init is not None else []


def init_checkpoint(path: str | Path, resolution: int) -> Checkpoint:
    """The checkpoint `train --init` starts from, refused unless `train` can continue it."""
    from ...checkpoint import load

    ckpt = load(path)
    if ckpt.family == "stylegan3":
        raise GancraftError(f"{path}: {STYLEGAN3_NOT_TRAINABLE}")
    if ckpt.g_config.c_dim:
        raise GancraftError(
            f"{path}: a class-conditional model; train continues unconditional ones (finetune takes conditional models)"
        )
    require_discriminator(ckpt, "train --init")
    if ckpt.g_config.img_resolution != resolution:
        raise GancraftError(f"{path}: a {ckpt.g_config.img_resolution} px model, but --resolution is {resolution}")
    return ckpt


@register
class UnionScratchMethod(UnionMethod):
    """The union model's architecture from random weights, trained on the sources' images (the
    baseline of GAN Cocktail's tables that starts from nothing)."""

    name = "scratch"
    summary = "scratch"

    def networks(self):
        # the start model still fixes the architecture (and checks the class table)
        G, D, _ = super().networks()
        torch.manual_seed(self.seed)
        G, D = Generator(G.cfg), Discriminator(D.cfg)
        return G, D, copy.deepcopy(G)
