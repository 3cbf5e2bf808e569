"""CLIP losses for text-driven adaptation (StyleGAN-NADA's directional loss).

The directional loss asks the change between a source image and its adapted counterpart, in
CLIP's image space, to point the same way as the change between a source and a target prompt
in CLIP's text space. Several CLIP models can be used together (NADA uses ViT-B/32 and
ViT-B/16); their losses are averaged.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import GancraftError

# NADA's reference setup; each needs weights available locally (see metrics.clip.load_clip)
NADA_CLIP_MODELS = ("ViT-B-32", "ViT-B-16")


class DirectionalClipLoss:
    """1 - cos(E_I(adapted) - E_I(source), E_T(target) - E_T(source)), averaged over CLIP models."""

    def __init__(self, clips: Sequence, source_text: str, target_text: str):
        if not clips:
            raise GancraftError("the directional CLIP loss needs at least one CLIP model")
        if source_text.strip() == target_text.strip():
            raise GancraftError(f"CLIP task: source and target text are both {target_text!r}; nothing to learn")
        self.clips = list(clips)
        self.source_text, self.target_text = source_text, target_text
        with torch.no_grad():
            self.text_dirs = [self._text_direction(c) for c in self.clips]

    @staticmethod
    def _direction(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.normalize(b - a, dim=-1)

    def _text_direction(self, clip) -> torch.Tensor:
        emb = clip.encode_text([self.source_text, self.target_text])
        return self._direction(emb[0:1], emb[1:2])

    def __call__(self, source: torch.Tensor, adapted: torch.Tensor) -> torch.Tensor:
        """Per-image losses [N] for source/adapted image batches (NCHW in [-1, 1]; source gets no gradient)."""
        total = None
        for clip, text_dir in zip(self.clips, self.text_dirs):
            with torch.no_grad():
                src = clip.encode_images(source)
            img_dir = self._direction(src, clip.encode_images(adapted))
            loss = 1 - (img_dir * text_dir.to(img_dir)).sum(dim=-1)
            total = loss if total is None else total + loss
        return total / len(self.clips)
