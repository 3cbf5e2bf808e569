"""Training from random weights: `train`'s method, and the scratch baseline of `finetune`."""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch

from ...errors import GancraftError
from ...nets.config import DiscriminatorConfig, GeneratorConfig
from ...nets.stylegan2 import Discriminator, Generator
from ..loop import Method
from .base import register
from .union import UnionMethod


class ScratchMethod(Method):
    """Random initialisation, every parameter trained (NVIDIA's `train.py` without a resume file).
    `train` builds it directly, having no method to choose; the registry's 'scratch' is
    finetune's baseline below."""

    name = "scratch"

    def __init__(self, data: Any, g_cfg: GeneratorConfig, d_cfg: DiscriminatorConfig, domain_names: Sequence[str] = ()):
        if g_cfg.img_resolution != data.resolution:
            raise GancraftError(f"data resolution {data.resolution} does not match the model's {g_cfg.img_resolution}")
        self.data, self.g_cfg, self.d_cfg = data, g_cfg, d_cfg
        self.domain_names = list(domain_names)

    def networks(self):
        return Generator(self.g_cfg), Discriminator(self.d_cfg), None

    def domains(self) -> dict[str, dict]:
        return {n: {"kind": "class", "class": i} for i, n in enumerate(self.domain_names)}

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "g_config": self.g_cfg.__dict__,
            "d_config": self.d_cfg.__dict__,
            "domains": self.domain_names,
        }


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
