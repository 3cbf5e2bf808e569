"""mean: the weighted mean of every tensor; with --base, task arithmetic against the parent."""

from __future__ import annotations

from typing import Mapping

from ...errors import GancraftError
from ..stream import Linear, dominant
from .base import MergeMethod, register


@register
class Mean(MergeMethod):
    name = "mean"
    summary = "weighted mean of every tensor (with --base: PARENT + sum_i W_i (MODEL_i - PARENT))"

    def mix(
        self, weights: tuple[float, ...], has_base: bool, params: Mapping[str, object], what: str
    ) -> tuple[Linear, int]:
        if has_base:
            # parent + sum_i w_i (child_i - parent), written as the equivalent linear combination
            return Linear((1.0 - sum(weights), *weights)), 0
        total = sum(weights)
        if total == 0:
            raise GancraftError(f"{what}: the weights sum to zero, so their mean is undefined")
        coeffs = tuple(w / total for w in weights)
        return Linear(coeffs), dominant(coeffs)

    def suffix(self, has_base: bool) -> str:
        return "task" if has_base else "avg"
