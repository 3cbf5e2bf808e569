"""slerp: spherical interpolation of two models, tensor by tensor."""

from __future__ import annotations

import math
from typing import Mapping

import torch

from ...errors import GancraftError
from ..stream import Apply, dominant
from .base import MergeMethod, register


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-7) -> torch.Tensor:
    """Great-circle interpolation of the flattened tensors, magnitudes interpolated linearly.

    The angle comes from the normalised vectors, the combination coefficients are applied to
    the raw ones (as model-merge tools do); nearly parallel tensors fall back to lerp, where
    slerp's division is ill-conditioned. t = 0 and t = 1 return the endpoints exactly.
    """
    if t == 0:
        return a
    if t == 1:
        return b
    a64, b64 = a.to(torch.float64).reshape(-1), b.to(torch.float64).reshape(-1)
    na, nb = a64.norm(), b64.norm()
    if na < eps or nb < eps:
        return torch.lerp(a64, b64, t).reshape(a.shape).to(a.dtype)
    cos = torch.clamp((a64 / na) @ (b64 / nb), -1.0, 1.0).item()
    if abs(cos) > 1 - 1e-6:
        return torch.lerp(a64, b64, t).reshape(a.shape).to(a.dtype)
    omega = math.acos(cos)
    s = math.sin(omega)
    out = (math.sin((1 - t) * omega) / s) * a64 + (math.sin(t * omega) / s) * b64
    return out.reshape(a.shape).to(a.dtype)


@register
class Slerp(MergeMethod):
    name = "slerp"
    summary = "spherical interpolation of two models, t = W2 / (W1 + W2)"

    def check(self, n_models: int, has_base: bool) -> None:
        if has_base or n_models != 2:
            raise GancraftError("--method slerp takes exactly two models and no --base")

    def mix(
        self, weights: tuple[float, ...], has_base: bool, params: Mapping[str, object], what: str
    ) -> tuple[Apply, int]:
        total = weights[0] + weights[1]
        if total == 0 or min(weights) < 0:
            raise GancraftError(f"{what}: slerp needs two non-negative weights that are not both zero")
        t = weights[1] / total
        return Apply(lambda key, xs: slerp(xs[0], xs[1], t)), dominant((1 - t, t))
