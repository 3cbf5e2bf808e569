"""open_clip wrapper: local weights only unless a download is asked for, differentiable image input.

``encode_images`` takes generator output (NCHW in [-1, 1]) and does CLIP's preprocessing in
torch (bicubic antialiased resize of the shorter side, centre crop, CLIP mean/std), so losses
such as StyleGAN-NADA's can backpropagate through it into the generator.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import GancraftError, first_line
from ..io_util import sha256_file

# open_clip keeps hub downloads under these names; we look for them without touching the network
_HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _pretrained_cfg(open_clip, model: str, tag: str) -> dict:
    try:
        return open_clip.get_pretrained_cfg(model, tag) or {}
    except Exception:  # an unknown model/tag pair simply has no download recipe
        return {}


def cached_weights(model: str = "ViT-B-32", tag: str = "openai") -> Path | None:
    """The weights file an earlier open_clip download left on this machine, if any (no network)."""
    import open_clip

    cfg = _pretrained_cfg(open_clip, model, tag)
    hub = (cfg.get("hf_hub") or "").strip("/")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            for name in _HF_WEIGHT_FILES:
                found = try_to_load_from_cache(hub, name)
                if isinstance(found, str) and Path(found).is_file():
                    return Path(found)
    url = cfg.get("url") or ""
    if url:
        legacy = Path(os.path.expanduser("~/.cache/clip")) / url.rsplit("/", 1)[-1]
        if legacy.is_file():
            return legacy
    return None


def missing_clip_message(model: str = "ViT-B-32", tag: str = "openai") -> str:
    import open_clip

    cfg = _pretrained_cfg(open_clip, model, tag)
    hub = (cfg.get("hf_hub") or "").strip("/")
    where = f"open_clip_pytorch_model.bin from hf-hub:{hub}" if hub else f"the {tag} weights of {model}"
    return f"CLIP {model} weights are needed: {where}; pass --clip-weights PATH (no download is attempted)"


class ClipModel:
    """A frozen open_clip model with text/image encoders returning unit-norm embeddings."""

    def __init__(self, model: torch.nn.Module, tokenizer, name: str, description: str, device: torch.device) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.description = description
        self.device = device
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = cfg.get("size", getattr(model.visual, "image_size", 224))
        self.size = int(size[0] if isinstance(size, (tuple, list)) else size)
        import open_clip

        self.mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD), device=device).view(1, 3, 1, 1)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Generator images (NCHW, [-1, 1]) to CLIP input, differentiably."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise GancraftError(f"CLIP takes RGB batches N x 3 x H x W, got {tuple(images.shape)}")
        x = (images.to(self.device, torch.float32) + 1) / 2
        h, w = x.shape[-2:]
        scale = self.size / min(h, w)
        new_h, new_w = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        if (new_h, new_w) != (h, w):
            # antialias only matters (and is only defined) when shrinking
            x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=new_h < h)
        top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
        x = x[..., top : top + self.size, left : left + self.size]
        return (x - self.mean) / self.std

    def encode_images(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        emb = self.model.encode_image(self.preprocess(images)).float()
        return F.normalize(emb, dim=-1) if normalize else emb

    def encode_text(self, prompts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise GancraftError("CLIP prompts must be non-empty strings")
        tokens = self.tokenizer(list(prompts)).to(self.device)
        emb = self.model.encode_text(tokens).float()
        return F.normalize(emb, dim=-1) if normalize else emb


def _create(open_clip, model: str, pretrained: str | None, quick_gelu: bool, model_kwargs: dict, what: str):
    try:
        return open_clip.create_model(model, pretrained=pretrained, force_quick_gelu=quick_gelu, **model_kwargs)
    except GancraftError:
        raise
    except Exception as exc:  # open_clip raises RuntimeError, OSError, KeyError, hub errors...
        raise GancraftError(f"{what}: cannot build CLIP {model} ({first_line(exc)})") from None


# words in the file names of open_clip's non-OpenAI weights (hub folders, release files)
_OTHER_SOURCES = ("laion", "datacomp", "commonpool", "metaclip")


def _openai_file(open_clip, model: str, source: Path, tag: str) -> bool:
    """Whether a weights file holds OpenAI's weights, which need QuickGELU.

    A file does not say which activation it was trained with, so its name decides: 'openai' or
    'quickgelu' in the path says yes; another pretrained tag of the model or another source's
    name (laion2b_s34b_b79k, datacomp...) says no; a neutral name (b32.bin) is what ``tag``
    claims, OpenAI's by default.
    """
    path = str(source).lower().replace("-", "_")
    if "openai" in path or "quickgelu" in path:
        return True
    others = [t.lower() for t in open_clip.list_pretrained_tags_by_model(model) if t != "openai"]
    if any(word in path for word in (*others, *_OTHER_SOURCES)):
        return False
    return tag == "openai"


def load_clip(
    model: str = "ViT-B-32",
    weights: str | os.PathLike | None = None,
    random_init: bool = False,
    device: str | torch.device = "cpu",
    tag: str = "openai",
    download: bool = False,
    quick_gelu: bool | None = None,
    seed: int = 0,
    **model_kwargs,
) -> ClipModel:
    """Build an open_clip model with real weights (or random ones for tests), frozen, in eval mode.

    Weights come from ``weights`` (an open_clip/OpenAI checkpoint file), else from a file an
    earlier open_clip download left in the local caches, else -- only with ``download=True`` --
    from open_clip's usual download of ``tag``. Nothing found is a GancraftError naming the file.
    ``quick_gelu``: OpenAI's CLIP models were trained with QuickGELU and give wrong embeddings
    without it; None means "yes when the weights are OpenAI's": tag ``openai`` (the default)
    for cached and downloaded weights; for a file, see `_openai_file`. ``model_kwargs`` override
    the open_clip config (tests shrink the towers).
    """
    try:
        import open_clip
    except ImportError:
        raise GancraftError("CLIP needs the open_clip_torch package (pip install open_clip_torch)") from None
    if model not in open_clip.list_models():
        raise GancraftError(f"unknown CLIP model {model!r} (open_clip knows e.g. ViT-B-32, ViT-B-16, ViT-L-14)")
    dev = torch.device(device)
    openai_cfg = _pretrained_cfg(open_clip, model, "openai")
    if random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _create(open_clip, model, None, bool(quick_gelu), model_kwargs, "random init")
        name, description = f"clip-{model}-RANDOM-seed{seed}", f"open_clip {model}, random weights (seed {seed})"
    else:
        source = Path(weights) if weights is not None else cached_weights(model, tag)
        if source is None and not download:
            raise GancraftError(missing_clip_message(model, tag))
        if source is not None:
            if not source.is_file():
                raise GancraftError(f"{source}: CLIP weights file not found")
            if quick_gelu is None:
                quick_gelu = bool(openai_cfg.get("quick_gelu")) and _openai_file(open_clip, model, source, tag)
            net = _create(open_clip, model, str(source), quick_gelu, model_kwargs, str(source))
            name = f"clip-{model}:sha256={sha256_file(source)[:16]}"
            description = f"open_clip {model}, weights {source}" + (" (QuickGELU)" if quick_gelu else "")
        else:
            if quick_gelu is None:
                quick_gelu = bool(_pretrained_cfg(open_clip, model, tag).get("quick_gelu"))
            net = _create(open_clip, model, tag, quick_gelu, model_kwargs, f"download of {model} {tag}")
            name, description = f"clip-{model}:{tag}", f"open_clip {model}, {tag} weights"
    net = net.eval().to(dev)
    for p in net.parameters():
        p.requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(model)
    return ClipModel(net, tokenizer, name, description, dev)
