"""freeze-d: Freeze-D (Mo et al.), the union fine-tune with D's first K layers from the image side frozen."""

from __future__ import annotations

from typing import Any

import torch

from ...checkpoint import Checkpoint
from ...errors import GancraftError
from ...nets.stylegan2 import Discriminator
from .base import register
from .union import UnionMethod


def freeze_d_layers(D: Discriminator, k: int) -> list[torch.nn.Module]:
    """The first K layers of D counted from the image side, as the official Freeze-D counts them:
    per block (highest resolution first) fromrgb (first block only), conv0, conv1, skip."""
    layers = [m for b in D.blocks() for m in ([b.fromrgb] if b.in_channels == 0 else []) + [b.conv0, b.conv1, b.skip]]
    if k > len(layers):
        raise GancraftError(f"--method freeze-d={k}: D has only {len(layers)} layers before its epilogue")
    return layers[:k]


@register
class FreezeDMethod(UnionMethod):
    name = "freeze-d"
    summary = "freeze-d=K (K layers of D from the image side)"
    metavar = "K"

    def __init__(self, start: Checkpoint, sources: dict[str, Checkpoint], value: float, **settings: Any):
        super().__init__(start, sources, **settings)
        self.value = value

    @classmethod
    def parse_value(cls, spec: str, values: list[float]) -> float:
        if len(values) != 1 or values[0] != int(values[0]):
            raise GancraftError(f"--method {spec}: K must be a whole number of D layers >= 0")
        return values[0]

    def d_params(self, D):
        frozen = {id(p) for layer in freeze_d_layers(D, int(self.value)) for p in layer.parameters()}
        return [p for p in D.parameters() if id(p) not in frozen]
