"""union: GAN Cocktail stage 2, one class-conditional union GAN fine-tuned on its sources' images;
the other `finetune` methods are this one with one thing changed."""

from __future__ import annotations

from typing import Any

from ...checkpoint import Checkpoint
from ...errors import GancraftError
from ..data import GeneratedData
from .base import MethodValue, TrainingMethod, check_names, register
from .start import class_names, union_start


@register
class UnionMethod(TrainingMethod):
    """Fine-tune the start model on every source's generated images, one class per source. With
    the average of rooted models (already conditional, one class per domain) as start this is
    GAN Cocktail; with one pretrained unconditional model (converted by
    `conditional_from_unconditional`) it is TransferGAN, which is why `transfer` names it too."""

    name = "union"
    command = "finetune"
    summary = (
        "union (GAN Cocktail from an average of rooted models; TransferGAN from a pretrained one, "
        "also accepted as 'transfer')"
    )
    aliases = ("transfer",)
    settings = ("seed", "truncation_psi")
    # what --params names: every parameter of G and D trains
    params = "all"
    # what `describe` records after the method's name (a --method value, e.g. freeze-d's K)
    value: MethodValue = None

    def __init__(self, start: Checkpoint, sources: dict[str, Checkpoint], seed: int = 0, truncation_psi: float = 1.0):
        if not sources:
            raise GancraftError("give at least one --domain NAME=SOURCE")
        check_names(list(sources), "--domain")
        have = class_names(start) if start.g_config.c_dim else None
        if have is not None:
            # a rooted/averaged start fixes which class is which domain: follow its order
            if set(have) != set(sources):
                raise GancraftError(
                    f"{start.path or 'start model'}: its classes are {', '.join(have)}; "
                    f"--domain gives {', '.join(sources)}"
                )
            sources = {n: sources[n] for n in have}
        self.start, self.names, self.seed = start, list(sources), seed
        res = start.g_config.img_resolution
        self.data = GeneratedData(
            [c.generator() for c in sources.values()], res, labelled=True, truncation_psi=truncation_psi
        )
        self.source_paths = {n: str(c.path) if c.path else n for n, c in sources.items()}

    def networks(self):
        return union_start(self.start, self.names, self.seed, "fine-tuning")

    def domains(self) -> dict[str, dict]:
        return {n: {"kind": "class", "class": i} for i, n in enumerate(self.names)}

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "value": self.value,
            "params": self.params,
            "domains": self.source_paths,
            "truncation_psi": self.data.truncation_psi,
        }
