"""Methods plugged into the training loop, one module each, registered by name (see base.py):
from scratch, GAN Cocktail's rooting and union fine-tuning, the paper's baselines (TransferGAN,
Freeze-D, EWC) and HyperDomainNet-style domain vectors."""

# importing a method's module registers it; --help lists the methods in this order
from . import union, freeze_d, ewc, scratch, domain_vector, rooting  # noqa: F401, I001
from .base import REGISTRY, MethodValue, TrainingMethod, build, help_text, methods, parse_method, register
from .domain_vector import DomainVectorMethod
from .ewc import EWCMethod
from .freeze_d import FreezeDMethod, freeze_d_layers
from .rooting import RootingMethod, save_rooting_start
from .scratch import ScratchMethod, UnionScratchMethod
from .start import class_names, conditional_from_unconditional, union_start
from .union import UnionMethod

__all__ = [
    "REGISTRY",
    "DomainVectorMethod",
    "EWCMethod",
    "FreezeDMethod",
    "MethodValue",
    "RootingMethod",
    "ScratchMethod",
    "TrainingMethod",
    "UnionMethod",
    "UnionScratchMethod",
    "build",
    "class_names",
    "conditional_from_unconditional",
    "freeze_d_layers",
    "help_text",
    "methods",
    "parse_method",
    "register",
    "save_rooting_start",
    "union_start",
]
