"""ewc: elastic weight consolidation (Li et al.'s few-shot GAN adaptation), the union fine-tune
with every weight held near its start value in proportion to its Fisher information."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...checkpoint import Checkpoint
from ...errors import GancraftError
from .base import register
from .union import UnionMethod


@register
class EWCMethod(UnionMethod):
    """Adds lambda * sum_i F_i (theta_i - theta*_i)^2 with separate lambdas for G's mapping, G's
    synthesis and D (the D term joins D's loss); F is the diagonal Fisher information of G's
    non-saturating loss at the start weights theta*, over `fisher_samples` generated images
    (random noise) in batches of `fisher_batch`. The class embeddings are not held (the
    official code skips them)."""

    name = "ewc"
    summary = "ewc=LAMBDA or ewc=MAPPING,SYNTHESIS,D"
    metavar = "LAMBDA"
    settings = (*UnionMethod.settings, "fisher_samples", "fisher_batch")

    def __init__(
        self,
        start: Checkpoint,
        sources: dict[str, Checkpoint],
        value: float | tuple[float, float, float] | None,
        fisher_samples: int = 50000,
        fisher_batch: int = 32,
        **settings: Any,
    ):
        if fisher_samples < fisher_batch:
            raise GancraftError(f"--fisher-samples {fisher_samples}: needs at least one batch of {fisher_batch}")
        super().__init__(start, sources, **settings)
        # one lambda sets all three
        self.value = value if isinstance(value, tuple) else (float(value or 0.0),) * 3
        self.fisher_samples, self.fisher_batch = fisher_samples, fisher_batch
        self.fisher: dict[str, dict[str, torch.Tensor]] = {}
        self.anchor: dict[str, dict[str, torch.Tensor]] = {}

    @classmethod
    def parse_value(cls, spec: str, values: list[float]) -> tuple[float, float, float]:
        """One lambda, or the official code's three (mapping, synthesis, D)."""
        if len(values) not in (1, 3):
            raise GancraftError(f"--method {spec}: give one lambda or three (mapping,synthesis,D)")
        return tuple(values * 3 if len(values) == 1 else values)

    @staticmethod
    def _held(net: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        """Parameters EWC holds to their start values: all but the class embedding."""
        return {k: p for k, p in net.named_parameters() if not k.startswith("mapping.embed.")}

    def setup(self, G, D, device):
        nets = {"G": G, "D": D}
        self.anchor = {k: {n: p.detach().clone() for n, p in self._held(net).items()} for k, net in nets.items()}
        self.fisher = {k: {n: torch.zeros_like(p) for n, p in self._held(net).items()} for k, net in nets.items()}
        gen = torch.Generator().manual_seed(self.seed)
        noise_seed = int(torch.randint(0, 2**62, [], generator=gen))
        batches = self.fisher_samples // self.fisher_batch
        G.requires_grad_(True)
        D.requires_grad_(True)
        for i in range(batches):
            labels = torch.randint(0, len(self.names), [self.fisher_batch], generator=gen).to(device)
            z = torch.randn([self.fisher_batch, G.z_dim], generator=gen).to(device)
            torch.manual_seed(noise_seed + i)
            c, scale = self.g_conditioning(labels, G)
            img = G(z, c, noise_mode="random", style_scale=scale)
            loss = F.softplus(-D(img, self.d_conditioning(labels, D))).mean()
            params = {k: self._held(net) for k, net in nets.items()}
            flat = [p for ps in params.values() for p in ps.values()]
            grads = iter(torch.autograd.grad(loss, flat, allow_unused=True))
            for k, ps in params.items():
                for n in ps:
                    g = next(grads)
                    if g is not None:
                        self.fisher[k][n] += g.detach().square() / batches

    def _ewc(self, net: torch.nn.Module, which: str, prefix: str = "") -> torch.Tensor:
        return sum(
            ((p - self.anchor[which][n]).square() * self.fisher[which][n]).sum()
            for n, p in self._held(net).items()
            if n.startswith(prefix)
        )

    def g_penalty(self, G):
        lam_map, lam_syn, _ = self.value
        return lam_map * self._ewc(G, "G", "mapping.") + lam_syn * self._ewc(G, "G", "synthesis.")

    def d_penalty(self, D):
        if not self.value[2]:
            return None
        return self.value[2] * self._ewc(D, "D")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "fisher_samples": self.fisher_samples}
