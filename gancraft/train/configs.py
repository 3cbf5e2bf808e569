"""Named training configurations: architecture plus the hyper-parameters that go with it.

`stylegan2` and `paper256` follow NVIDIA's stylegan2-ada-pytorch presets of the same names.
`tiny` and `small` are for 16-64 px models trained on a CPU: narrow, shallow mapping, and a
batch that keeps a step well under a second. `toy` is the bundled examples' shape: the latent
side of a real StyleGAN2 (z and w of 512, 8 mapping layers at lr multiplier 0.01), because
dormant SeFA directions and meaningful merges need a W much wider than the data's factors,
and a synthesis network narrow enough for a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import GancraftError
from ..nets.config import DiscriminatorConfig, GeneratorConfig


@dataclass(frozen=True)
class Preset:
    w_dim: int
    mapping_layers: int
    channel_base: int
    channel_max: int
    batch: int
    lr: float
    gamma: float | None  # None: NVIDIA's heuristic 0.0002 * res^2 / batch
    ema_kimg: float
    snap_kimg: float


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        w_dim=64,
        mapping_layers=2,
        channel_base=2048,
        channel_max=64,
        batch=16,
        lr=0.002,
        gamma=None,
        ema_kimg=2.0,
        snap_kimg=10.0,
    ),
    "toy": Preset(
        w_dim=512,
        mapping_layers=8,
        channel_base=2048,
        channel_max=64,
        batch=16,
        lr=0.002,
        gamma=None,
        ema_kimg=5.0,
        snap_kimg=20.0,
    ),
    "small": Preset(
        w_dim=128,
        mapping_layers=4,
        channel_base=4096,
        channel_max=128,
        batch=16,
        lr=0.002,
        gamma=None,
        ema_kimg=5.0,
        snap_kimg=25.0,
    ),
    "paper256": Preset(
        w_dim=512,
        mapping_layers=8,
        channel_base=16384,
        channel_max=512,
        batch=64,
        lr=0.0025,
        gamma=1.0,
        ema_kimg=20.0,
        snap_kimg=200.0,
    ),
    "stylegan2": Preset(
        w_dim=512,
        mapping_layers=8,
        channel_base=32768,
        channel_max=512,
        batch=32,
        lr=0.002,
        gamma=10.0,
        ema_kimg=10.0,
        snap_kimg=200.0,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise GancraftError(f"--config: unknown config {name!r} (choose from {', '.join(PRESETS)})") from None


def architecture(name: str, resolution: int, c_dim: int = 0) -> tuple[GeneratorConfig, DiscriminatorConfig]:
    p = get_preset(name)
    if resolution < 8 or resolution & (resolution - 1):
        raise GancraftError(f"--resolution: {resolution} is not a power of two >= 8")
    g = GeneratorConfig(
        z_dim=p.w_dim,
        w_dim=p.w_dim,
        c_dim=c_dim,
        img_resolution=resolution,
        mapping_layers=p.mapping_layers,
        channel_base=p.channel_base,
        channel_max=p.channel_max,
    )
    d = DiscriminatorConfig(
        c_dim=c_dim,
        img_resolution=resolution,
        channel_base=p.channel_base,
        channel_max=p.channel_max,
        mapping_layers=p.mapping_layers,
    )
    return g.validate(), d.validate()


def r1_gamma_heuristic(resolution: int, batch: int) -> float:
    return 0.0002 * resolution**2 / batch
