"""ties: TIES-merging (Yadav et al. 2023, arXiv:2306.01708) of task vectors, as mergekit's `ties`.

Trim each task vector to its largest-magnitude `density` fraction, elect each element's sign,
and take the disjoint mean of the agreeing weighted task vectors (taskvec.py).
"""

from __future__ import annotations

from typing import Mapping

import torch

from ...errors import GancraftError
from ..stream import Apply
from .base import REQUIRED, MergeMethod, check_fraction, register
from .taskvec import RESCALE_RULES, merge_task_vectors, rescale


def trim(delta: torch.Tensor, density: float, rule: str = "none") -> torch.Tensor:
    """Keep the k = floor(density * numel) largest |delta| (at least one; mergekit stops with an
    error instead), equal magnitudes taken in element order; the rest become zero."""
    k = max(1, int(density * delta.numel()))
    order = torch.argsort(delta.abs().reshape(-1), descending=True, stable=True)
    kept = torch.zeros(delta.numel(), dtype=torch.bool)
    kept[order[:k]] = True
    return rescale(delta, kept.reshape(delta.shape), rule, density)


@register
class Ties(MergeMethod):
    name = "ties"
    summary = (
        "TIES-merging of the task vectors MODEL - PARENT: keep each one's largest --density fraction, "
        "elect each element's sign by the weighted sum, average the agreeing ones"
    )
    needs_base = True
    # mergekit's defaults, bar density (its 1.0 would trim nothing)
    parameters = {"density": REQUIRED, "lambda": 1.0, "rescale": "none"}

    def mix(
        self, weights: tuple[float, ...], has_base: bool, params: Mapping[str, object], what: str
    ) -> tuple[Apply, int]:
        density = check_fraction(params["density"], "--density")
        rule, scale = str(params["rescale"]), float(params["lambda"])
        if rule not in RESCALE_RULES:
            raise GancraftError(f"--rescale: unknown rule {rule!r} (choose {', '.join(RESCALE_RULES)})")

        def fn(key: str, xs: list[torch.Tensor]) -> torch.Tensor:
            return merge_task_vectors(
                xs, weights, lambda i, d: trim(d, density, rule), consensus=True, normalize=True, scale=scale, key=key
            )

        return Apply(fn), 0
