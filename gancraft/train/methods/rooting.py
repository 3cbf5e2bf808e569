"""root: GAN Cocktail's model rooting (stage 1)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ...checkpoint import Checkpoint, save
from ...errors import GancraftError
from ..data import GeneratedData
from .base import TrainingMethod, check_names, register
from .start import union_start


class _OneClassData(GeneratedData):
    """One source generator's images, every one labelled with the same class of a K-class model."""

    def __init__(
        self, generator: torch.nn.Module, resolution: int, label: int, num_classes: int, truncation_psi: float = 1.0
    ):
        super().__init__([generator], resolution, truncation_psi=truncation_psi)
        self.label, self.num_classes = label, num_classes

    def batch(
        self, n: int, seed: int, step: int, rank: int, world: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        imgs, _ = super().batch(n, seed, step, rank, world, device)
        return imgs, torch.full([n], self.label, dtype=torch.int64, device=device)


@register
class RootingMethod(TrainingMethod):
    """GAN Cocktail stage 1 (model rooting), as the official code runs it: the root's G and D
    are made class-conditional with one class per domain of the future union model (new class
    pathway at random, `conditional_from_unconditional`), then trained on one source
    generator's images (drawn on the fly, the only data), all labelled with that source's
    class; generated images are drawn for that class only. Rooted models therefore share the
    root's weight space and class table, and their average starts class-aware."""

    name = "root"
    command = "root"
    # `root` runs this method only
    option = ""

    def __init__(
        self,
        root: Checkpoint,
        source: Checkpoint,
        classes: Sequence[str],
        source_class: str,
        seed: int = 0,
        truncation_psi: float = 1.0,
    ):
        check_names(classes, "--classes")
        if source_class not in classes:
            raise GancraftError(f"--classes {','.join(classes)}: the source {source_class!r} is not one of them")
        self.root, self.classes, self.seed = root, list(classes), seed
        self.label = self.classes.index(source_class)
        self.data = _OneClassData(
            source.generator(),
            root.g_config.img_resolution,
            self.label,
            len(self.classes),
            truncation_psi=truncation_psi,
        )
        self.source_name = str(source.path) if source.path else "source"

    def networks(self):
        return union_start(self.root, self.classes, self.seed, "rooting")

    def sample_labels(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.full([n], self.label, dtype=torch.int64)

    def domains(self) -> dict[str, dict]:
        return {n: {"kind": "class", "class": i} for i, n in enumerate(self.classes)}

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "source": self.source_name,
            "classes": self.classes,
            "label": self.label,
            "truncation_psi": self.data.truncation_psi,
        }


def save_rooting_start(
    method: RootingMethod,
    out: str | os.PathLike,
    params: dict[str, Any],
    inputs: Sequence[str | os.PathLike],
    force: bool = False,
) -> Path:
    """Write the common start of every rooting run (the root with its new class pathway, G_ema = G):
    the paper averages the root itself with the rooted models, and this is its conditional form."""
    G, D, G_ema = method.networks()
    ckpt = Checkpoint.from_modules(G_ema=G_ema, G=G, D=D, domains=method.domains())
    ckpt = ckpt.with_operation("root", {**params, "seed": method.seed}, list(inputs))
    return save(ckpt, out, force=force, inputs=tuple(inputs))
