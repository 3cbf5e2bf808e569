"""Adaptive discriminator augmentation (Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data"), as NVIDIA's stylegan2-ada-pytorch runs it.

Every image D sees, real or generated and in every phase D runs, goes through one random
pipeline in which each transformation is switched on per image with probability p. The
pipeline is differentiable, so G learns through it, and it does not leak into G's images as
long as p stays below about 0.8 (the paper's analysis); ADA therefore tunes p during training
from an overfitting heuristic: the mean sign of D's logits on real images (the share it scores
positive minus the share it scores negative).

The random draws follow NVIDIA's AugmentPipe in order, shape and distribution, so the same torch
seed gives the same transformations (tests/test_ada.py compares the two when
GANCRAFT_NVIDIA_SRC is set). Randomness comes from torch's global generator, which the loop
reseeds every step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import GancraftError

AUG_MODES = ("noaug", "ada", "fixed")

GEOMETRIC_OPS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOUR_OPS = ("brightness", "contrast", "lumaflip", "hue", "saturation")

# NVIDIA's train.py --augpipe choices whose operations are all implemented here (bgc is its
# default; the filter, noise and cutout stages of bgcf.. are not)
PIPELINES: dict[str, tuple[str, ...]] = {
    "blit": GEOMETRIC_OPS[:3],
    "geom": GEOMETRIC_OPS[3:],
    "color": COLOUR_OPS,
    "bg": GEOMETRIC_OPS,
    "bgc": GEOMETRIC_OPS + COLOUR_OPS,
}

# NVIDIA's AugmentPipe defaults: ranges are relative to the image size, stds of scales in log2 units,
# angles as a fraction of a full turn
XINT_MAX = 0.125
SCALE_STD = 0.2
ROTATE_MAX = 1.0
ANISO_STD = 0.2
XFRAC_STD = 0.125
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5
HUE_MAX = 1.0
SATURATION_STD = 1.0

# NVIDIA's ada_interval and ada_kimg: p moves every 4 steps, by at most 1 per 500 kimg of reals
ADA_INTERVAL = 4
ADA_KIMG = 500.0

# Daubechies' symlet 6 low-pass filter, the orthogonal wavelet NVIDIA resamples with: upsampling
# with it and downsampling with its mirror image gives the input back, so only the warp itself
# changes an image
SYM6 = (
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
)
# how far (in pixels of the image) the filters reach beyond a sample
_SUPPORT = len(SYM6) // 4


def check_pipeline(name: str) -> tuple[str, ...]:
    if name not in PIPELINES:
        raise GancraftError(f"--augpipe: unknown pipeline {name!r} (choose from {', '.join(PIPELINES)})")
    return PIPELINES[name]


def adjust_p(
    p: float, rt: float, target: float, batch: int, interval: int = ADA_INTERVAL, kimg: float = ADA_KIMG
) -> float:
    """ADA's update of p after `interval` steps of `batch` images in which D's logits on real
    images had the mean sign `rt` (share positive minus share negative): one step of
    batch * interval / (kimg * 1000) toward more augmentation when D is too sure of the reals
    (rt above target), toward less otherwise; never below 0 (NVIDIA sets no upper bound: p above
    1 switches every operation on)."""
    sign = (rt > target) - (rt < target)
    return max(0.0, p + sign * batch * interval / (kimg * 1000))


# -- transformation matrices ([n, 3, 3] on pixel coordinates centred on the image, [n, 4, 4] on RGB) --


def _homogeneous(rows: list[list[torch.Tensor | float]], like: torch.Tensor) -> torch.Tensor:
    """A batch of matrices whose entries are per-image values (tensors shaped like `like`) or constants."""
    entries = [e if isinstance(e, torch.Tensor) else torch.full_like(like, e) for row in rows for e in row]
    return torch.stack(entries, dim=-1).reshape(*like.shape, len(rows), len(rows[0]))


def translation(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _homogeneous([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scaling(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _homogeneous([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def rotation(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _homogeneous([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def _luma_axis(device: torch.device) -> torch.Tensor:
    """The grey axis (1, 1, 1) / sqrt(3) in homogeneous RGB, as a column."""
    return torch.tensor([[1.0], [1.0], [1.0], [0.0]], device=device) / math.sqrt(3)


def hue_rotation(theta: torch.Tensor) -> torch.Tensor:
    """Rotations of RGB about the grey axis v (Rodrigues: cos I + sin [v]x + (1 - cos) v v^T), [n, 4, 4]."""
    dev = theta.device
    v = _luma_axis(dev)
    cross = torch.tensor([[0, -1, 1, 0], [1, 0, -1, 0], [-1, 1, 0, 0], [0, 0, 0, 0]], device=dev) / math.sqrt(3)
    rgb = torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev))
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    return c * rgb + s * cross + (1 - c) * (v @ v.T) + (torch.eye(4, device=dev) - rgb)


# -- random parameters (module functions, so tests can force the draws) ------------------------


def _uniform(shape: list[int], device: torch.device) -> torch.Tensor:
    return torch.rand(shape, device=device)


def _normal(shape: list[int], device: torch.device) -> torch.Tensor:
    return torch.randn(shape, device=device)


def _gated(value: torch.Tensor, neutral: float, prob: float) -> torch.Tensor:
    """`value` for the images whose own uniform draw falls below `prob`, `neutral` for the rest."""
    gate_shape = [value.shape[0]] + [1] * (value.dim() - 1)
    return torch.where(_uniform(gate_shape, value.device) < prob, value, torch.full_like(value, neutral))


def sample_geometry(
    n: int, ops: tuple[str, ...], p: float, size: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """[n, 3, 3]: for each image, the map from its output pixels to where they are read in the input."""
    h, w = size
    m = torch.eye(3, device=device).expand(n, 3, 3)
    if "xflip" in ops:
        flip = _gated(torch.floor(_uniform([n], device) * 2), 0, p)
        m = m @ scaling(1 - 2 * flip, torch.ones_like(flip))
    if "rotate90" in ops:
        quarter = _gated(torch.floor(_uniform([n], device) * 4), 0, p)
        m = m @ rotation(math.pi / 2 * quarter)
    if "xint" in ops:
        t = _gated((_uniform([n, 2], device) * 2 - 1) * XINT_MAX, 0, p)
        m = m @ translation(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h))
    if "scale" in ops:
        s = _gated(torch.exp2(_normal([n], device) * SCALE_STD), 1, p)
        m = m @ scaling(1 / s, 1 / s)
    # two rotations, before and after the anisotropic scaling, each with a probability that makes
    # "at least one of them" happen with probability p
    p_rot = 1 - math.sqrt(min(max(1 - p, 0.0), 1.0))
    if "rotate" in ops:
        theta = _gated((_uniform([n], device) * 2 - 1) * math.pi * ROTATE_MAX, 0, p_rot)
        m = m @ rotation(theta)
    if "aniso" in ops:
        s = _gated(torch.exp2(_normal([n], device) * ANISO_STD), 1, p)
        m = m @ scaling(1 / s, s)
    if "rotate" in ops:
        theta = _gated((_uniform([n], device) * 2 - 1) * math.pi * ROTATE_MAX, 0, p_rot)
        m = m @ rotation(theta)
    if "xfrac" in ops:
        t = _gated(_normal([n, 2], device) * XFRAC_STD, 0, p)
        m = m @ translation(-t[:, 0] * w, -t[:, 1] * h)
    return m


def sample_colour(n: int, ops: tuple[str, ...], p: float, channels: int, device: torch.device) -> torch.Tensor:
    """[n, 4, 4]: for each image, the affine map of its homogeneous RGB values."""
    eye = torch.eye(4, device=device)
    m = eye.expand(n, 4, 4)
    grey = _luma_axis(device) @ _luma_axis(device).T
    if "brightness" in ops:
        b = _gated(_normal([n], device) * BRIGHTNESS_STD, 0, p)
        m = _homogeneous([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], b) @ m
    if "contrast" in ops:
        c = _gated(torch.exp2(_normal([n], device) * CONTRAST_STD), 1, p)
        m = _homogeneous([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], c) @ m
    if "lumaflip" in ops:
        # a reflection through the plane orthogonal to grey: luminance inverted, hue kept
        flip = _gated(torch.floor(_uniform([n, 1, 1], device) * 2), 0, p)
        m = (eye - 2 * grey * flip) @ m
    if channels > 1 and "hue" in ops:
        theta = _gated((_uniform([n], device) * 2 - 1) * math.pi * HUE_MAX, 0, p)
        m = hue_rotation(theta) @ m
    if channels > 1 and "saturation" in ops:
        s = _gated(torch.exp2(_normal([n, 1, 1], device) * SATURATION_STD), 1, p)
        m = (grey + (eye - grey) * s) @ m
    return m


# -- applying them --------------------------------------------------------------------------------


def _filter_matrix(taps: torch.Tensor, rows: int, cols: int, up: bool) -> torch.Tensor:
    """Filtering and 2x resampling of one axis as a [rows, cols] matrix (banded: 12 taps a row).

    Up (cols -> 2 * cols): sample j is the sum of x[i] * taps[j + 5 - 2i], which is NVIDIA's
    upfirdn2d with up=2 (zeros inserted, padded 6 and 5, convolved). Down (cols -> cols / 2 - 6):
    sample j is the sum of x[2j + 1 + k] * taps[k], its downsample2d with flip_filter (the taps
    mirrored) with the render's margin cropped. As dense matrix products these are about 4x faster on
    the CPU, forward and backward, than the equivalent single-channel strided convolutions.
    """
    r = torch.arange(rows, device=taps.device)[:, None]
    c = torch.arange(cols, device=taps.device)[None, :]
    k = r + len(SYM6) // 2 - 1 - 2 * c if up else c - 2 * r - 1
    inside = (k >= 0) & (k < len(SYM6))
    return torch.where(inside, taps[k.clamp(0, len(SYM6) - 1)], torch.zeros((), device=taps.device))


def _resample(x: torch.Tensor, taps: torch.Tensor, size: tuple[int, int], up: bool) -> torch.Tensor:
    """Both axes of every channel through `_filter_matrix` to `size` (height, width)."""
    rows_h = _filter_matrix(taps, size[0], x.shape[2], up)
    rows_w = _filter_matrix(taps, size[1], x.shape[3], up)
    return rows_h @ x @ rows_w.T


def warp(images: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Each image resampled so that output pixel q shows the input at inverse @ q (centred pixel
    coordinates), as NVIDIA's AugmentPipe does: reflect-pad far enough that every output pixel
    reads image content, upsample 2x with the sym6 wavelet, sample bilinearly, downsample 2x with
    the mirrored filter (which keeps the warp from aliasing).

    Where it differs: NVIDIA's upfirdn2d zero-inserts, pads and convolves; here the same sums
    are banded matrix products (`_filter_matrix`). grid_sample is PyTorch's own (NVIDIA wraps it
    only to get double backward, for R1, on old PyTorch).
    """
    n, _, h, w = images.shape
    dev = images.device
    taps = torch.tensor(SYM6, device=dev) / sum(SYM6)
    # the pad must cover where the output's corners come from, plus the filters' reach; reflect
    # padding cannot exceed the image itself
    cx, cy = (w - 1) / 2, (h - 1) / 2
    corners = torch.tensor([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1.0, 1.0, 1.0, 1.0]], device=dev)
    src = (inverse @ corners)[:, :2]
    centre = torch.tensor([cx, cy], device=dev)
    need = torch.cat([(-src).amax(dim=(0, 2)), src.amax(dim=(0, 2))]) - centre.repeat(2) + 2 * _SUPPORT
    limit = torch.tensor([w - 1, h - 1], device=dev).repeat(2)
    x0, y0, x1, y1 = need.clamp(min=0).minimum(limit).ceil().int().tolist()
    x = F.pad(images, [x0, x1, y0, y1], mode="reflect")
    ph, pw = x.shape[2:]

    # 2x, each axis's gain 2 keeping the mean; sample j lands at input position j / 2
    x = _resample(x, taps * 2, (2 * ph, 2 * pw), up=True)

    # output render of (size + 2 * support) * 2 samples, cropped by the downsampling below
    out_h, out_w = (h + 2 * _SUPPORT) * 2, (w + 2 * _SUPPORT) * 2
    ones = torch.ones([n], device=dev)

    def s(a: float, b: float) -> torch.Tensor:
        return scaling(ones * a, ones * b)

    def t(a: float, b: float) -> torch.Tensor:
        return translation(ones * a, ones * b)

    # normalised output -> 2x output pixels -> image pixels -> padded image pixels -> 2x padded
    # pixels -> normalised input (grid_sample's align_corners=False coordinates)
    theta = (
        s(1 / pw, 1 / ph)
        @ t(-0.5, -0.5)
        @ s(2, 2)
        @ t((x0 - x1) / 2, (y0 - y1) / 2)
        @ inverse
        @ s(0.5, 0.5)
        @ t(0.5, 0.5)
        @ s(out_w / 2, out_h / 2)
    )
    grid = F.affine_grid(theta[:, :2], [n, images.shape[1], out_h, out_w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _resample(x, taps, (h, w), up=False)


def recolour(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Each image's RGB values through its [4, 4] affine colour map; a grey image through the mean
    of the three output channels for a grey input, as NVIDIA's pipeline treats one channel."""
    n, c, h, w = images.shape
    x = images.reshape(n, c, h * w)
    if c == 3:
        x = matrix[:, :3, :3] @ x + matrix[:, :3, 3:]
    elif c == 1:
        mean = matrix[:, :3, :].mean(dim=1, keepdim=True)
        x = x * mean[:, :, :3].sum(dim=2, keepdim=True) + mean[:, :, 3:]
    else:
        raise GancraftError(f"augmentation needs RGB or grey images, not {c} channels")
    return x.reshape(n, c, h, w)


class AugmentPipe:
    """NVIDIA's augmentation pipeline for one --augpipe choice, applied at probability p."""

    def __init__(self, pipeline: str = "bgc"):
        self.ops = check_pipeline(pipeline)
        self.geometric = any(op in GEOMETRIC_OPS for op in self.ops)
        self.colour = any(op in COLOUR_OPS for op in self.ops)

    def __call__(self, images: torch.Tensor, p: float) -> torch.Tensor:
        """Augmented images (differentiable), computed in float32 even under autocast and returned
        in the input's dtype and memory format. p = 0 returns `images` itself (NVIDIA still
        resamples them through the identity, which changes them only by rounding)."""
        if p <= 0:
            return images
        n, c, h, w = images.shape
        channels_last = images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, enabled=False):
            x = images.float()
            if self.geometric:
                x = warp(x, sample_geometry(n, self.ops, p, (h, w), x.device))
            if self.colour:
                x = recolour(x, sample_colour(n, self.ops, p, c, x.device))
        x = x.to(images.dtype)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x
