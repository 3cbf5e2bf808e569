"""Architecture configs: everything needed to rebuild a network, nothing more.

Field names follow NVIDIA's stylegan2-ada-pytorch constructor arguments so that the configs
of NVIDIA pickles carry over one to one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import CheckpointError

# gancraft generates from StyleGAN3 models but has no StyleGAN3 training (its loss, magnitude EMAs);
# every training method builds or trains a network, and both places refuse with this line
STYLEGAN3_NOT_TRAINABLE = (
    "StyleGAN3 models cannot be trained or fine-tuned in gancraft (they can be sampled, "
    "rendered, averaged, blended, factorised with sefa, scored with fid and converted to "
    "native)"
)


@dataclass
class GeneratorConfig:
    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 256
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    embed_features: int | None = None  # None: w_dim (NVIDIA's default)
    layer_features: int | None = None  # None: w_dim
    w_avg_beta: float = 0.995
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: float | None = None
    num_fp16_res: int = 0
    resample_filter: list[int] = field(default_factory=lambda: [1, 3, 3, 1])
    architecture: str = "skip"
    use_noise: bool = True

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, self.img_resolution.bit_length())]

    @property
    def num_ws(self) -> int:
        # one w per conv layer, plus one for the final toRGB (NVIDIA's count)
        return 2 * len(self.block_resolutions)

    def validate(self) -> "GeneratorConfig":
        r = self.img_resolution
        if r < 4 or r & (r - 1):
            raise CheckpointError(f"generator resolution {r} is not a power of two >= 4")
        if self.architecture != "skip":
            raise CheckpointError(
                f"generator architecture '{self.architecture}' is not supported (only 'skip', the StyleGAN2 default)"
            )
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers", "channel_base", "channel_max"):
            value = getattr(self, name)
            # a damaged file can hold any JSON value here: a string, a float, a list
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise CheckpointError(f"generator config: {name} must be a positive integer, got {value!r}")
        return self


@dataclass
class DiscriminatorConfig:
    c_dim: int = 0
    img_resolution: int = 256
    img_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: float | None = None
    num_fp16_res: int = 0
    cmap_dim: int | None = None  # None: channels at 4x4 when conditional
    mbstd_group_size: int | None = 4  # None: whole batch (TF-converted pickles)
    mbstd_num_channels: int = 1
    mapping_layers: int = 8  # only for the conditional projection
    mapping_lr_multiplier: float = 0.01
    resample_filter: list[int] = field(default_factory=lambda: [1, 3, 3, 1])
    architecture: str = "resnet"

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(self.img_resolution.bit_length() - 1, 2, -1)]

    @property
    def resolved_cmap_dim(self) -> int:
        if self.c_dim == 0:
            return 0
        return self.cmap_dim if self.cmap_dim is not None else self.channels(4)

    def validate(self) -> "DiscriminatorConfig":
        r = self.img_resolution
        if r < 8 or r & (r - 1):
            raise CheckpointError(f"discriminator resolution {r} is not a power of two >= 8")
        if self.architecture != "resnet":
            raise CheckpointError(
                f"discriminator architecture '{self.architecture}' is not supported "
                "(only 'resnet', the StyleGAN2 default)"
            )
        return self


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type, data: dict, what: str) -> Any:
    """Build a config, refusing unknown keys so that a typo never silently changes an architecture."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CheckpointError(f"{what} config has unknown fields: {', '.join(unknown)}")
    try:
        return cls(**data).validate()
    except TypeError as exc:
        raise CheckpointError(f"{what} config is invalid: {exc}") from None
