"""How images reach the FID Inception: the three conventions clean-fid defines.

FID values differ between implementations mostly through the step that brings images to the
network's 299 x 299 input (Parmar et al., "On Aliased Resizing and Surprising Subtleties in GAN
Evaluation", 2022). Each convention here is a resize plus the scaling into the network's input
range, and is named as clean-fid names its modes:

- ``clean``: PIL bicubic on float32 channels (antialiased when shrinking), clipped to [0, 255],
  then (x - 128) / 128 as the TensorFlow graph does. clean-fid's default.
- ``legacy_tensorflow``: the resize of TensorFlow 1's ``resize_bilinear`` (align_corners=False
  without half-pixel centres: output pixel j samples input position j * in / out, no
  antialiasing), as NVIDIA's FID network does it, then (x - 128) / 128. The convention of
  NVIDIA's metrics code and so of the StyleGAN2/ADA/3 papers' figures.
- ``legacy_pytorch``: torch bilinear interpolation (half-pixel centres, no antialiasing), then
  2 x / 255 - 1: pytorch-fid's convention (`python -m pytorch_fid`).

Every function takes float32 N x 3 x H x W batches on the [0, 255] scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GancraftError

SIZE = 299


def pil_bicubic(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """clean-fid's resize: each channel as a PIL float image, bicubic, clipped to [0, 255]."""
    from PIL import Image

    arr = x.detach().to("cpu", torch.float32).numpy()
    out = np.empty((arr.shape[0], arr.shape[1], size, size), dtype=np.float32)
    for i in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            # a 2-D float32 array becomes a mode 'F' image: no rounding to 8 bits before resizing
            channel = Image.fromarray(np.ascontiguousarray(arr[i, c]))
            out[i, c] = np.asarray(channel.resize((size, size), resample=Image.Resampling.BICUBIC))
    return torch.from_numpy(out.clip(0, 255)).to(x.device)


def torch_bilinear(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """pytorch-fid's resize: torch bilinear, align_corners=False, no antialiasing."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 255)


def tf1_bilinear(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """TensorFlow 1's resize_bilinear(align_corners=False), as NVIDIA's FID network computes it.

    Output pixel j samples input position j * in / out (no half-pixel offset), interpolating
    linearly and repeating the border. It is computed the way NVIDIA's network does, with
    grid_sample on a grid shifted by 1/in - 1/out in normalised coordinates, so the float
    round-off is the same as theirs.
    """
    n, c, h, w = x.shape
    # the shifts in float32 tensor arithmetic, as NVIDIA's network computes them
    one = torch.ones((), dtype=torch.float32)
    theta = torch.zeros(2, 3, dtype=torch.float32)
    theta[0, 0] = theta[1, 1] = one
    theta[0, 2] = one / w - one / size
    theta[1, 2] = one / h - one / size
    theta = theta.to(x.device, x.dtype)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _tf_range(x: torch.Tensor) -> torch.Tensor:
    return (x - 128.0) / 128.0


def _pytorch_fid_range(x: torch.Tensor) -> torch.Tensor:
    return 2.0 * (x / 255.0) - 1.0


@dataclass(frozen=True)
class ResizeConvention:
    """A resize to 299 x 299 and the scaling into the network's input range."""

    name: str
    summary: str
    resize: Callable[[torch.Tensor], torch.Tensor]
    to_input_range: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, x255: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W on the [0, 255] scale -> the network's N x 3 x 299 x 299 input."""
        return self.to_input_range(self.resize(x255))


CONVENTIONS: dict[str, ResizeConvention] = {
    c.name: c
    for c in (
        ResizeConvention("clean", "PIL bicubic, antialiased; clean-fid's default", pil_bicubic, _tf_range),
        ResizeConvention(
            "legacy_tensorflow",
            "TF1 bilinear, no antialiasing; NVIDIA's metrics, the StyleGAN papers' figures",
            tf1_bilinear,
            _tf_range,
        ),
        ResizeConvention(
            "legacy_pytorch", "torch bilinear, no antialiasing; pytorch-fid's", torch_bilinear, _pytorch_fid_range
        ),
    )
}

# NVIDIA's metrics code produced the StyleGAN2/ADA/3 figures and those of the merging papers
# built on it, so scores under this convention compare with the published ones.
DEFAULT_CONVENTION = "legacy_tensorflow"


def get_convention(name: str) -> ResizeConvention:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise GancraftError(f"unknown resize convention {name!r}: choose one of {', '.join(CONVENTIONS)}") from None


def describe(resize: str | None) -> str | None:
    """A recorded resize name with its summary, for printing next to a score."""
    if resize in CONVENTIONS:
        return f"{resize} ({CONVENTIONS[resize].summary})"
    return resize
