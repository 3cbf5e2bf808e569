"""Methods plugged into the training loop: from scratch, GAN Cocktail's rooting and union
fine-tuning, the paper's baselines (TransferGAN, Freeze-D, EWC) and HyperDomainNet-style
domain vectors.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..checkpoint import Checkpoint
from ..errors import GancraftError
from ..nets.config import DiscriminatorConfig, GeneratorConfig
from ..nets.stylegan2 import Discriminator, Generator
from .data import GeneratedData
from .loop import Method


class ScratchMethod(Method):
    """Random initialisation, every parameter trained (NVIDIA's `train.py` without a resume file)."""

    name = "scratch"

    def __init__(self, data: Any, g_cfg: GeneratorConfig, d_cfg: DiscriminatorConfig,
                 domain_names: Sequence[str] = ()):
        if g_cfg.img_resolution != data.resolution:
            raise GancraftError(f"data resolution {data.resolution} does not match the model's {g_cfg.img_resolution}")
        self.data, self.g_cfg, self.d_cfg = data, g_cfg, d_cfg
        self.domain_names = list(domain_names)

    def networks(self):
        return Generator(self.g_cfg), Discriminator(self.d_cfg), None

    def domains(self) -> dict[str, dict]:
        return {n: {"kind": "class", "class": i} for i, n in enumerate(self.domain_names)}

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "g_config": self.g_cfg.__dict__, "d_config": self.d_cfg.__dict__,
                "domains": self.domain_names}
