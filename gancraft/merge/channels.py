"""Per-channel swapping: find which channels of a layer draw which part of the picture.

Following Editing in Style (Collins et al. 2020), the feature vectors of one layer (one
C-dimensional vector per pixel, over many sampled images) are clustered with spherical
k-means, i.e. by direction, so clusters mean "which channels fire together here" rather than
"how strongly". Each cluster is a picture region (eyes, hair, background); its centroid says
how much every channel contributes to it. Each channel is then given to the cluster where its
centroid entry is largest, which partitions the channels: swapping the channels of the
"eyes" cluster from another model is Pinkney's suggested next step after layer swapping.

Cluster indices are sorted by cluster size (largest first) and everything is seeded, so the
same command reproduces the same numbering - the map is read once, the numbers reused.
"""

from __future__ import annotations

import colorsys
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..checkpoint.core import Checkpoint
from ..errors import GancraftError
from ..io_util import atomic_write, check_output_path


class _Captured(Exception):
    """Raised from a hook once the wanted layer has run: later layers are not needed."""


def conv_layer(G: torch.nn.Module, layer: str) -> torch.nn.Module:
    names = [f"b{info.resolution}.{info.name.split('.')[1]}" for info in G.synthesis.layers() if info.kind == "conv"]
    if layer not in names:
        raise GancraftError(f"--cluster-layer: no conv layer {layer!r} (choose one of {', '.join(names)})")
    block, part = layer.split(".")
    return getattr(getattr(G.synthesis, block), part)


def layer_features(
    G: torch.nn.Module, layer: str, z: torch.Tensor, batch: int = 8, truncation_psi: float = 1.0
) -> torch.Tensor:
    """The layer's output feature maps [N, C, H, W] for latents z (synthesis stops right after it)."""
    module = conv_layer(G, layer)
    out: list[torch.Tensor] = []

    def hook(_m, _inp, output):
        out.append(output.detach().float().cpu())
        raise _Captured

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            for start in range(0, len(z), batch):
                zb = z[start : start + batch]
                c = None
                if G.c_dim:
                    c = torch.zeros(len(zb), G.c_dim, device=zb.device)
                    c[:, 0] = 1
                try:
                    G(zb, c, truncation_psi=truncation_psi, noise_mode="const")
                except _Captured:
                    pass
    finally:
        handle.remove()
    return torch.cat(out)


def spherical_kmeans(x: torch.Tensor, k: int, iters: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster rows of x by direction. Returns unit centroids [k, C] and labels [M].

    Seeded k-means++ initialisation on cosine distance; clusters are renumbered by size,
    largest first. A cluster that empties is re-seeded with the worst-fitting point.
    """
    if x.ndim != 2 or len(x) < k:
        raise GancraftError(f"--clusters {k}: need at least {k} feature vectors, got {len(x)}")
    if k < 1:
        raise GancraftError("--clusters must be at least 1")
    gen = torch.Generator().manual_seed(seed)
    xn = torch.nn.functional.normalize(x.float(), dim=1)
    cent = xn[torch.randint(len(xn), (1,), generator=gen)]
    for _ in range(1, k):
        dist = (1 - (xn @ cent.T).max(dim=1).values).clamp_min(0)
        probs = dist / dist.sum() if dist.sum() > 0 else torch.full_like(dist, 1 / len(dist))
        cent = torch.cat([cent, xn[torch.multinomial(probs, 1, generator=gen)]])
    labels = None
    for _ in range(iters):
        sims = xn @ cent.T
        new = sims.argmax(dim=1)
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        sums = torch.zeros_like(cent).index_add_(0, labels, xn)
        counts = torch.bincount(labels, minlength=k)
        for j in torch.nonzero(counts == 0).flatten().tolist():
            worst = sims.max(dim=1).values.argmin()
            sums[j] = xn[worst]
        cent = torch.nn.functional.normalize(sums, dim=1)
    labels = (xn @ cent.T).argmax(dim=1)
    order = torch.argsort(torch.bincount(labels, minlength=k), descending=True, stable=True)
    remap = torch.empty_like(order)
    remap[order] = torch.arange(k)
    return cent[order], remap[labels]


@dataclass
class ChannelClusters:
    layer: str
    centroids: torch.Tensor  # [k, C], unit rows
    channel_cluster: torch.Tensor  # [C]: the cluster each channel belongs to
    sizes: list[int]  # feature vectors per cluster in the sample

    @property
    def k(self) -> int:
        return len(self.centroids)

    def channels(self, clusters: Sequence[int]) -> list[int]:
        """Channels of the chosen clusters (the channel mask, as indices)."""
        for c in clusters:
            if not 0 <= c < self.k:
                raise GancraftError(f"--channels: cluster {c} does not exist (there are {self.k}: 0..{self.k - 1})")
        chosen = torch.tensor(sorted(set(clusters)))
        return torch.nonzero(torch.isin(self.channel_cluster, chosen)).flatten().tolist()

    def label_maps(self, features: torch.Tensor) -> torch.Tensor:
        """Cluster of every pixel of feature maps [N, C, H, W] -> [N, H, W]."""
        flat = torch.nn.functional.normalize(features.permute(0, 2, 3, 1).float(), dim=-1)
        return (flat @ self.centroids.T).argmax(dim=-1)


def sample_z(n: int, z_dim: int, seed: int) -> torch.Tensor:
    from .blend import z_for_seeds

    return z_for_seeds(range(seed, seed + n), z_dim)


def cluster_channels(
    ckpt: Checkpoint,
    layer: str,
    k: int = 8,
    samples: int = 32,
    seed: int = 0,
    max_vectors: int = 200_000,
    device: str | torch.device = "cpu",
) -> ChannelClusters:
    """Cluster `layer`'s per-pixel features over `samples` images (seeds seed..seed+samples-1)."""
    if ckpt.family == "stylegan3":
        raise GancraftError("channel clusters are not available for StyleGAN3 models")
    G = ckpt.generator(device=device)
    feats = layer_features(G, layer, sample_z(samples, G.z_dim, seed).to(device))
    vecs = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
    if len(vecs) > max_vectors:
        # high-resolution layers give millions of pixels; a seeded subsample clusters the same
        keep = torch.randperm(len(vecs), generator=torch.Generator().manual_seed(seed))[:max_vectors]
        vecs = vecs[keep]
    cent, labels = spherical_kmeans(vecs, k, seed=seed)
    return ChannelClusters(layer, cent, cent.argmax(dim=0), torch.bincount(labels, minlength=k).tolist())


def palette(k: int) -> np.ndarray:
    """k well-separated colours (uint8 [k, 3])."""
    cols = [colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85 if i % 2 else 0.6, 1.0) for i in range(k)]
    return (np.array(cols) * 255).round().astype(np.uint8)


def write_cluster_map(
    ckpt: Checkpoint,
    clusters: ChannelClusters,
    path: str | os.PathLike,
    seeds: Sequence[int] = (0, 1, 2, 3),
    device: str | torch.device = "cpu",
    force: bool = False,
) -> Path:
    """PNG: generated images (top), their pixels coloured by cluster over the image (middle),
    and a legend strip of numbered colours with each cluster's channel count (bottom)."""
    from PIL import Image, ImageDraw

    from ..media.images import to_uint8
    from .blend import z_for_seeds

    check_output_path(path, force=force)
    G = ckpt.generator(device=device)
    z = z_for_seeds(seeds, G.z_dim).to(device)
    c = None
    if G.c_dim:
        c = torch.zeros(len(seeds), G.c_dim, device=device)
        c[:, 0] = 1
    with torch.no_grad():
        imgs = G(z, c, noise_mode="const").cpu()
    feats = layer_features(G, clusters.layer, z)
    labels = clusters.label_maps(feats)
    R = imgs.shape[-1]
    rgb = to_uint8(imgs)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    scale = R // labels.shape[-1]
    lab = labels.repeat_interleave(scale, 1).repeat_interleave(scale, 2).numpy()
    colours = palette(clusters.k)[lab]
    overlay = (0.35 * rgb[..., :3] + 0.65 * colours).round().astype(np.uint8)
    n = len(seeds)
    cell = max(R, 64)
    legend_h = 20 * ((clusters.k + 3) // 4) + 8
    canvas = Image.new("RGB", (n * cell, 2 * cell + legend_h), (255, 255, 255))
    for i in range(n):
        canvas.paste(Image.fromarray(rgb[i, ..., :3]).resize((cell, cell), Image.NEAREST), (i * cell, 0))
        canvas.paste(Image.fromarray(overlay[i]).resize((cell, cell), Image.NEAREST), (i * cell, cell))
    draw = ImageDraw.Draw(canvas)
    counts = torch.bincount(clusters.channel_cluster, minlength=clusters.k).tolist()
    col_w = max(canvas.width // 4, 60)
    for j, colour in enumerate(palette(clusters.k)):
        x, y = 4 + (j % 4) * col_w, 2 * cell + 4 + 20 * (j // 4)
        draw.rectangle([x, y, x + 14, y + 14], fill=tuple(int(v) for v in colour))
        draw.text((x + 18, y + 2), f"{j}: {counts[j]} ch", fill=(0, 0, 0))
    with atomic_write(path, force=force) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)
