"""CLIP losses for text-driven adaptation (StyleGAN-NADA's directional loss).

The directional loss asks the change between a source image and its adapted counterpart, in
CLIP's image space, to point the same way as the change between a source and a target prompt
in CLIP's text space. The text direction is, as in NADA's and Domain Expansion's official code,
the mean over the ImageNet prompt templates ('a sketch of a {}.', ...) of the change between
the templated prompts' unit embeddings. Several CLIP models can be used together (NADA uses
ViT-B/32 and ViT-B/16); their losses are summed, as the official code does with weights 1.0.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import GancraftError

# NADA's reference setup; each needs weights available locally (see metrics.clip.load_clip)
NADA_CLIP_MODELS = ("ViT-B-32", "ViT-B-16")


def nada_templates() -> list[str]:
    """The official code's templates: OpenAI's 80 ImageNet ones without 'a photo of many {}.' (79),
    the same list HyperDomainNet's code uses."""
    from .text_domain import prompt_templates

    return prompt_templates()


class DirectionalClipLoss:
    """1 - cos(E_I(adapted) - E_I(source), text direction), summed over CLIP models.

    ``templates``: sentence templates with one '{}' the prompts are put into, the text direction
    being the mean over them; None uses the prompts as they are.
    """

    def __init__(self, clips: Sequence, source_text: str, target_text: str, templates: Sequence[str] | None = None):
        if not clips:
            raise GancraftError("the directional CLIP loss needs at least one CLIP model")
        if source_text.strip() == target_text.strip():
            raise GancraftError(f"CLIP task: source and target text are both {target_text!r}; nothing to learn")
        self.clips = list(clips)
        self.source_text, self.target_text = source_text, target_text
        self.templates = list(templates) if templates else ["{}"]
        with torch.no_grad():
            self.text_dirs = [self._text_direction(c) for c in self.clips]

    def _text_direction(self, clip) -> torch.Tensor:
        src = clip.encode_text([t.format(self.source_text) for t in self.templates])
        tgt = clip.encode_text([t.format(self.target_text) for t in self.templates])
        return F.normalize((tgt - src).mean(dim=0, keepdim=True), dim=-1)

    def __call__(self, source: torch.Tensor, adapted: torch.Tensor) -> torch.Tensor:
        """Per-image losses [N] for source/adapted image batches (NCHW in [-1, 1]; source gets no gradient)."""
        total = None
        for clip, text_dir in zip(self.clips, self.text_dirs):
            with torch.no_grad():
                src = clip.encode_images(source)
            img_dir = F.normalize(clip.encode_images(adapted) - src, dim=-1)
            loss = 1 - (img_dir * text_dir.to(img_dir)).sum(dim=-1)
            total = loss if total is None else total + loss
        return total
