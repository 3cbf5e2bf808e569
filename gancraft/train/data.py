"""Where the "real" images of a training step come from: an image folder or source generators.

Both sources are indexed by (seed, step, rank) rather than consumed from an iterator, so a run
resumed at step N draws exactly the batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

import os
from typing import Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GancraftError


def step_seed(seed: int, step: int, rank: int, stream: int = 0) -> int:
    """A 63-bit seed that depends on every argument, so streams never overlap across steps or ranks."""
    state = np.random.SeedSequence([int(seed), int(step), int(rank), int(stream)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


class DataSource(Protocol):
    resolution: int
    num_classes: int  # 0: unconditional

    def batch(
        self, n: int, seed: int, step: int, rank: int, world: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images NCHW float in [-1, 1] and class labels (int64, N) or None."""
        ...


class ImageFolderData:
    """All images of a folder held in memory as uint8 (the toy and few-shot sets this is for are small).

    Each epoch is a fresh permutation drawn from (seed, epoch); global batch b of step s takes
    positions [s*B, (s+1)*B) of the endless sequence of epochs, and each rank its own slice.
    Horizontal flips (`xflip`) double the data as in NVIDIA's --mirror.
    """

    def __init__(self, path: str | os.PathLike, resolution: int, xflip: bool = False, subset: int | None = None):
        from ..media.images import read_image_folder

        folder = read_image_folder(path, resolution=resolution)
        if subset is not None:
            if subset < 1 or subset > len(folder):
                raise GancraftError(f"--subset {subset}: {path} holds {len(folder)} images")
            folder = folder.subset(subset)
        arrays = [arr for _, arr in folder]
        self.images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        self.resolution = resolution
        self.num_classes = 0
        self.xflip = xflip
        self.path = str(path)

    def __len__(self) -> int:
        return self.images.shape[0]

    def _indices(self, start: int, n: int, seed: int) -> np.ndarray:
        size = len(self)
        out = np.empty(n, dtype=np.int64)
        filled = 0
        while filled < n:
            epoch, offset = divmod(start + filled, size)
            perm = np.random.default_rng([int(seed), 0x1D, epoch]).permutation(size)
            take = min(n - filled, size - offset)
            out[filled : filled + take] = perm[offset : offset + take]
            filled += take
        return out

    def batch(
        self, n: int, seed: int, step: int, rank: int, world: int, device: torch.device
    ) -> tuple[torch.Tensor, None]:
        idx = self._indices((step * world + rank) * n, n, seed)
        imgs = self.images[torch.from_numpy(idx)].to(device=device, dtype=torch.float32) / 127.5 - 1
        if self.xflip:
            flip = torch.from_numpy(np.random.default_rng(step_seed(seed, step, rank, 2)).random(n) < 0.5)
            imgs = torch.where(flip.to(device).view(-1, 1, 1, 1), imgs.flip(3), imgs)
        return imgs, None


class GeneratedData:
    """Images drawn on the fly from source generators (G_ema, random noise), never written to disk.

    Each sample's source is its class label (returned when `labelled`); labels are balanced
    within a batch (every source gets batch/len(sources) samples, the remainder at random).
    Sources must be unconditional generators.
    """

    def __init__(
        self,
        generators: Sequence[torch.nn.Module],
        resolution: int,
        labelled: bool = False,
        truncation_psi: float = 1.0,
    ):
        if not generators:
            raise GancraftError("no source generators given")
        if any(G.c_dim for G in generators):
            raise GancraftError("source generators must be unconditional (c_dim 0)")
        self.generators = list(generators)
        self.resolution = resolution
        self.num_classes = len(generators) if labelled else 0
        self.truncation_psi = truncation_psi
        self._device: torch.device | None = None

    @torch.no_grad()
    def batch(
        self, n: int, seed: int, step: int, rank: int, world: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._device != device:  # the sources follow the training device, moved once
            self.generators = [G.to(device) for G in self.generators]
            self._device = device
        gen = torch.Generator().manual_seed(step_seed(seed, step, rank, 3))
        labels = balanced_labels(n, len(self.generators), gen)
        out = torch.empty([n, 3, self.resolution, self.resolution], device=device)
        for k, G in enumerate(self.generators):
            sel = (labels == k).nonzero().flatten()
            if sel.numel() == 0:
                continue
            z = torch.randn([sel.numel(), G.z_dim], generator=gen).to(device)
            torch.manual_seed(step_seed(seed, step, rank, 4 + k))
            img = G(z, None, truncation_psi=self.truncation_psi, noise_mode="random").float()
            out[sel.to(device)] = resize(img, self.resolution)
        return out, (labels.to(device) if self.num_classes else None)


def balanced_labels(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """n labels in [0, k): each class n//k times, the remainder to random classes, shuffled."""
    base = torch.arange(n) % k
    extra = torch.randperm(k, generator=gen)[: n % k]
    labels = torch.cat([base[: n - n % k], extra])
    return labels[torch.randperm(n, generator=gen)]


def resize(img: torch.Tensor, resolution: int) -> torch.Tensor:
    if img.shape[-1] == resolution:
        return img
    return F.interpolate(img, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
