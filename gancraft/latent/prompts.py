"""Domain vectors from text, for checkpoints written by `gancraft hyper` (HyperDomainNet).

`sample` and `render` take ``--prompt TEXT``: the checkpoint's hyper-network turns the CLIP
text embedding of TEXT into a domain vector, used as the generator's ``style_scale`` in the
order it was trained for (`PromptVectors.modulation`). Any
text works, seen in training or not. Loading CLIP is the slow part, so callers that need
several prompts (a video morphing between them) keep one `PromptVectors`.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import GancraftError
from ..nets.stylegan2 import stored_modulation

INTERPOLATION_SPACES = ("vector", "text")


class PromptVectors:
    """A checkpoint's hyper-network together with the CLIP text encoder it was trained with."""

    def __init__(
        self,
        ckpt,
        clip_weights: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        clip=None,
        download: bool = False,
    ):
        from .hyper import check_clip_matches, load_hyper

        self.ckpt = ckpt
        self.hyper = load_hyper(ckpt, device=device)
        if clip is None:
            from ..metrics import clip as clip_mod

            model = ckpt.extra["hyper"].get("clip_model", "ViT-B-32")
            clip = clip_mod.load_clip(model, weights=clip_weights, device=device, download=download)
        check_clip_matches(ckpt, clip)
        self.clip = clip
        self.hyper = self.hyper.to(clip.device)

    @property
    def modulation(self) -> str:
        """The order the hyper-network's vectors were trained for (nets.stylegan2.MODULATION_ORDERS)."""
        return stored_modulation(self.ckpt.extra["hyper"], f"{self.ckpt.path or 'checkpoint'}: hyper-network: ")

    @property
    def prompts(self) -> list[str]:
        """The prompts the hyper-network was trained on."""
        return list(self.ckpt.extra["hyper"].get("prompts", []))

    @torch.no_grad()
    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        if isinstance(prompts, str) or not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise GancraftError("--prompt: expected non-empty text")
        return self.clip.encode_text(list(prompts))

    @torch.no_grad()
    def vectors(self, prompts: Sequence[str]) -> torch.Tensor:
        """[len(prompts), style_dim] domain vectors."""
        return self.hyper(self.embed(prompts))

    def vector(self, prompt: str) -> torch.Tensor:
        return self.vectors([prompt])[0]

    @torch.no_grad()
    def interpolate(self, a: str, b: str, ts: Sequence[float] | torch.Tensor, space: str = "vector") -> torch.Tensor:
        """[len(ts), style_dim] domain vectors from prompt a (t=0) to prompt b (t=1).

        space 'vector' blends the two domain vectors linearly (the generator's modulations mix);
        'text' walks the great circle between the two unit text embeddings and asks the
        hyper-network at every point, i.e. it visits the unseen domains "between" the prompts.
        """
        if space not in INTERPOLATION_SPACES:
            raise GancraftError(
                f"prompt interpolation space must be one of {', '.join(INTERPOLATION_SPACES)}, got {space!r}"
            )
        t = torch.as_tensor(ts, dtype=torch.float32, device=self.clip.device).reshape(-1, 1)
        if space == "vector":
            va, vb = self.vectors([a, b])
            return torch.lerp(va.unsqueeze(0), vb.unsqueeze(0), t)
        ea, eb = self.embed([a, b])
        return self.hyper(_slerp(ea, eb, t))


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Unit vectors on the great circle from a to b at fractions t ([T, 1]); linear when a ~ b."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    omega = torch.arccos((a * b).sum().clamp(-1.0, 1.0))
    if omega.item() < 1e-4:
        return F.normalize(torch.lerp(a.unsqueeze(0), b.unsqueeze(0), t), dim=-1)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def style_scale_for_prompt(
    ckpt,
    prompt: str,
    clip_weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    clip=None,
    download: bool = False,
) -> torch.Tensor:
    """The domain vector [style_dim] for `prompt`: pass it as ``G(z, style_scale=..., modulation=...)`` with
    the order `PromptVectors.modulation` reads from the checkpoint."""
    return PromptVectors(ckpt, clip_weights, device, clip, download).vector(prompt)


def interpolate_prompts(
    ckpt,
    a: str,
    b: str,
    ts: Sequence[float] | torch.Tensor,
    clip_weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    clip=None,
    space: str = "vector",
    download: bool = False,
) -> torch.Tensor:
    """[len(ts), style_dim] domain vectors between prompts a and b (see `PromptVectors.interpolate`)."""
    return PromptVectors(ckpt, clip_weights, device, clip, download).interpolate(a, b, ts, space)
