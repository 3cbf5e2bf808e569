"""dare-linear and dare-ties: DARE (Yu et al. 2023, arXiv:2311.03099) as mergekit's `dare_linear`
and `dare_ties`.

Each task vector MODEL - PARENT loses every element with probability p = 1 - density and the
survivors are scaled so that the task vector keeps its L1 norm (mergekit's rule; the DARE paper's
1/(1 - p) is `rescale="density"`); the pruned task vectors are then summed with their weights
(dare-linear) or through TIES's sign election (dare-ties), neither normalised by the weights,
as mergekit does.

The drop is reproducible: the mask of model i for tensor KEY comes from a generator seeded with
a hash of (seed, KEY, i), so it does not depend on the order tensors are merged in, on the
other tensors, or on the torch global random state.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

import torch

from ...errors import GancraftError
from ..stream import Apply
from .base import REQUIRED, MergeMethod, check_fraction, register
from .taskvec import RESCALE_RULES, merge_task_vectors, rescale


def keep_mask(shape: torch.Size | tuple[int, ...], density: float, seed: int, key: str, index: int) -> torch.Tensor:
    """The elements of model `index`'s task vector for tensor `key` that survive the drop."""
    digest = hashlib.sha256(f"{seed}:{key}:{index}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
    return torch.rand(shape, generator=gen, dtype=torch.float64) < density


class _Dare(MergeMethod):
    needs_base = True
    consensus: bool
    # mergekit's defaults (rescale true: its L1 rule), bar density (its 1.0 would drop nothing)
    parameters = {"density": REQUIRED, "lambda": 1.0, "seed": 0, "rescale": "l1"}

    def mix(
        self, weights: tuple[float, ...], has_base: bool, params: Mapping[str, object], what: str
    ) -> tuple[Apply, int]:
        density = check_fraction(params["density"], "--density")
        rule, scale, seed = str(params["rescale"]), float(params["lambda"]), int(params["seed"])
        if rule not in RESCALE_RULES:
            raise GancraftError(f"--rescale: unknown rule {rule!r} (choose {', '.join(RESCALE_RULES)})")

        def fn(key: str, xs: list[torch.Tensor]) -> torch.Tensor:
            def drop(i: int, d: torch.Tensor) -> torch.Tensor:
                return rescale(d, keep_mask(d.shape, density, seed, key, i), rule, density)

            return merge_task_vectors(
                xs, weights, drop, consensus=self.consensus, normalize=False, scale=scale, key=key
            )

        return Apply(fn), 0


@register
class DareLinear(_Dare):
    name = "dare-linear"
    summary = (
        "DARE: drop each task-vector element with probability 1 - --density, scale the rest by "
        "1/density, add the weighted sum to PARENT"
    )
    consensus = False


@register
class DareTies(_Dare):
    name = "dare-ties"
    summary = "DARE's drop, then TIES's sign election; the agreeing weighted task vectors are summed, not averaged"
    consensus = True
