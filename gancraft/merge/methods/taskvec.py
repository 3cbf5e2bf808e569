"""The task-vector frame TIES and DARE share: mergekit's generalized task arithmetic, per tensor.

For one tensor with parent `base` and models x_i: the task vectors tau_i = x_i - base are each
sparsified (TIES keeps the largest magnitudes, DARE a random subset) and weighted by W_i, then
combined either linearly, sum_i W_i tau_i, or with TIES's sign consensus: every element takes
the sign of sum_i W_i tau_i (+ on a tie at zero) and only the weighted task vectors of that
sign are summed, divided by the sum of their weights when normalising (the "disjoint mean").
The result is base + lambda * combined. Arithmetic is float64, rounded to the parent's dtype
once.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ...errors import GancraftError

# how the kept elements of a sparsified task vector are scaled: not at all; by 1/density, DARE's
# rule (an unbiased estimate of the task vector: each element survives with probability density);
# or so that the L1 norm is the one before sparsifying, mergekit's rule since 2024 (its #245)
RESCALE_RULES = ("none", "density", "l1")
# mergekit's threshold under which an L1 norm counts as zero and nothing is rescaled
_L1_EPS = 1e-7


def rescale(delta: torch.Tensor, kept: torch.Tensor, rule: str, density: float) -> torch.Tensor:
    """`delta` with the elements outside the boolean mask `kept` zeroed, scaled by `rule`."""
    masked = delta * kept
    if rule == "density":
        return masked / density
    if rule == "l1":
        before, after = delta.abs().sum(), masked.abs().sum()
        if before < _L1_EPS or after < _L1_EPS:
            return masked
        return masked * (before / after)
    if rule == "none":
        return masked
    raise GancraftError(f"--rescale: unknown rule {rule!r} (choose {', '.join(RESCALE_RULES)})")


def elect(weighted: torch.Tensor) -> torch.Tensor:
    """Which of the stacked weighted task vectors agree with the elected sign, element by element.

    The sign is that of the sum (TIES: the sign with the larger total magnitude); an element that
    is exactly zero agrees with neither sign, so it adds nothing to a disjoint mean's divisor.
    """
    elected = torch.where(weighted.sum(0) >= 0, 1.0, -1.0).to(weighted.dtype)
    return weighted.sign() == elected


def merge_task_vectors(
    inputs: Sequence[torch.Tensor],
    weights: Sequence[float],
    sparsify: Callable[[int, torch.Tensor], torch.Tensor],
    consensus: bool,
    normalize: bool,
    scale: float,
    key: str,
) -> torch.Tensor:
    """base + scale * combine(sparsify(i, x_i - base)) for inputs [base, x_1, ..., x_N].

    `normalize` (with `consensus` only) divides by the summed weights of the agreeing models,
    where that sum is not zero.
    """
    base = inputs[0]
    if not base.is_floating_point():
        raise GancraftError(f"cannot merge the task vectors of a non-floating tensor ({key}, {base.dtype})")
    b = base.to(torch.float64)
    taus = torch.stack([sparsify(i, x.to(torch.float64) - b) for i, x in enumerate(inputs[1:])])
    w = torch.tensor(weights, dtype=torch.float64).reshape(-1, *[1] * b.dim())
    weighted = taus * w
    if consensus:
        agree = elect(weighted)
        mixed = (weighted * agree).sum(0)
        if normalize:
            divisor = (w * agree).sum(0)
            mixed = mixed / torch.where(divisor == 0, 1.0, divisor)
    else:
        mixed = weighted.sum(0)
    return (b + scale * mixed).to(base.dtype)
