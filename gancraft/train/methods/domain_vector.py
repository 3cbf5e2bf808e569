"""domain-vector: HyperDomainNet's domain vectors trained adversarially, the union fine-tune with G
frozen and one modulation vector per domain trained instead (`finetune --params domain-vector`)."""

from __future__ import annotations

from typing import Any

import torch

from ...checkpoint import Checkpoint
from ...errors import GancraftError
from ...latent.domains import check_modulation_order
from ...nets.stylegan2 import DEFAULT_MODULATION
from .base import register
from .start import conditional_from_unconditional, start_nets
from .union import UnionMethod


@register
class DomainVectorMethod(UnionMethod):
    """G and its w_avg stay frozen; one vector per domain, applied as G.synthesis style_scale to
    every conv layer in the `modulation` order (default the official code's, after demodulation;
    recorded in each domain's entry), is trained (D is trained too, conditional when there are
    several domains). The text-driven td_single recipe (`finetune --prompt`) trains the same
    vectors without a discriminator, in its own loop (train/text_domain.py)."""

    name = "domain-vector"
    option = "--params"
    params = "domain-vector"
    settings = (*UnionMethod.settings, "modulation")
    update_w_avg = False

    def __init__(
        self,
        start: Checkpoint,
        sources: dict[str, Checkpoint],
        modulation: str = DEFAULT_MODULATION,
        **settings: Any,
    ):
        super().__init__(start, sources, **settings)
        self.modulation = check_modulation_order(modulation)
        if start.g_config.c_dim:
            raise GancraftError(f"{start.path or 'start model'}: domain vectors need an unconditional model")
        style_dim = start.generator().synthesis.style_dim
        self.vectors = torch.nn.ParameterDict({n: torch.nn.Parameter(torch.zeros(style_dim)) for n in self.names})

    def networks(self):
        G, D, G_ema = start_nets(self.start, "domain-vector training")
        G.requires_grad_(False)
        if len(self.names) > 1:
            _, D, _ = conditional_from_unconditional(self.start, len(self.names), self.seed)
        return G, D, G_ema

    def g_params(self, G):
        return []

    def extra_modules(self):
        return {"domain_vectors": self.vectors}

    def g_conditioning(self, labels, G):
        table = torch.stack([self.vectors[n] for n in self.names])
        return None, table[labels]

    def domains(self) -> dict[str, dict]:
        return {
            n: {"kind": "vector", "tensor": f"domain_vectors.{n}", "modulation": self.modulation} for n in self.names
        }

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "modulation": self.modulation}
