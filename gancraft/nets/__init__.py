"""StyleGAN2 networks with NVIDIA's numerics and layer names."""

from .config import DiscriminatorConfig, GeneratorConfig
from .stylegan2 import Discriminator, Generator

__all__ = ["DiscriminatorConfig", "Discriminator", "GeneratorConfig", "Generator"]
